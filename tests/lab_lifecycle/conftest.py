"""The lab's life cycle, run after the lab tier (it restarts the lab)."""
import pytest

from testsupport.lab import running_lab_or_skip


@pytest.fixture(scope="session")
def lab():
    return running_lab_or_skip()
