"""Stand-in for StackStorm's `st2reactor` package (StackStorm/st2:st2reactor/st2reactor/
__init__.py @v3.9.0). On PYTHONPATH only when the real st2 is not importable; the suite must pass
unchanged where real st2 is installed. Contract: ../shared/reference/stackstorm.md §5."""
