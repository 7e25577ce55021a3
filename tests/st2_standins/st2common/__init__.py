"""Stand-in for StackStorm's `st2common` package (StackStorm/st2:st2common/st2common/__init__.py
@v3.9.0), only the parts pack code touches.

This directory (tests/st2_standins) goes on PYTHONPATH for tests and lint ONLY when the real
st2common cannot be imported; where st2 is installed the real package wins and the suite must
pass unchanged. Contract: ../shared/reference/stackstorm.md §4.
"""
