"""The lab tier: tests against the real services of the lab (lab/up). tools/run-tests starts
the lab and sets LAB_REQUIRED=1, so a missing lab fails there; run alone, these tests skip."""
import pytest

# the shared checks' asserts report as the tests' own do (before any test module imports them)
pytest.register_assert_rewrite("testsupport.labchecks")

# fixtures for the tests of this directory
from testsupport import labfixtures

lab, conn, make_server = labfixtures.lab, labfixtures.conn, labfixtures.make_server
