"""Stand-in for StackStorm/st2:st2common/st2common/runners/__init__.py @v3.9.0 (a package
marker here). Used only when the real st2common is not importable; the suite must pass unchanged
where real st2 is installed."""
