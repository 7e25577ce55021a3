"""Stand-in for StackStorm/st2:st2reactor/st2reactor/sensor/__init__.py @v3.9.0 (a package
marker). Used only when the real st2reactor is not importable; the suite must pass unchanged
where real st2 is installed."""
