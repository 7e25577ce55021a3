"""The lab's pytest fixtures, shared by the tiers that run on it (tests/lab, tests/lab_faults):
each conftest imports them. `lab` skips without a running lab (LAB_REQUIRED=1: fails)."""
import pytest

import labcloud
from testsupport.lab import running_lab_or_skip


@pytest.fixture(scope="session")
def lab():
    return running_lab_or_skip()


@pytest.fixture(scope="session")
def conn(lab):
    return labcloud.connect(lab)


@pytest.fixture
def make_server(conn, request):
    """Create servers with data volumes; delete them (and their volumes) after the test."""
    made = []

    def make(data_volumes=1):
        name = "t-%s-%d" % (request.node.name[:40], len(made))
        info = labcloud.create_server(conn, name, data_volumes=data_volumes)
        made.append(info)
        return info
    yield make
    for info in made:
        labcloud.delete_server(conn, info["server_id"], info["volume_ids"])
