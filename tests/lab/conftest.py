"""The lab tier: tests against the real services of the lab (lab/up). tools/run-tests starts
the lab and sets LAB_REQUIRED=1, so a missing lab fails there; run alone, these tests skip."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import labcloud


@pytest.fixture(scope="session")
def lab():
    try:
        info = labcloud.load_lab()
    except OSError:
        info = None
    if info is None or subprocess.run([os.path.join(REPO, "lab", "status")],
                                      capture_output=True).returncode != 0:
        if os.environ.get("LAB_REQUIRED") == "1":
            pytest.fail("the lab is not up: tools/run-tests should have started it (lab/up)")
        pytest.skip("the lab is not up: run lab/up to run the lab tier")
    return info


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


def run_lab_tool(*argv, timeout=300):
    """Run a lab/ tool (cloud, break, runbook) and return the completed process."""
    return subprocess.run([os.path.join(REPO, "lab", argv[0])] + list(argv[1:]),
                          capture_output=True, text=True, timeout=timeout)
