"""The running lab as the lab-tier tests see it (lab/up writes its description; lab/status says
whether it answers). tools/run-tests sets LAB_REQUIRED=1, so a missing lab fails there; run
alone, the lab tests skip."""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))


def running_lab_or_skip():
    import labcloud  # lab/files: the lab's client helpers (pytest.ini puts them on the path)
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


def run_lab_tool(*argv, timeout=300):
    """Run a lab/ tool (cloud, break, runbook) and return the completed process."""
    return subprocess.run([os.path.join(REPO, "lab", argv[0])] + list(argv[1:]),
                          capture_output=True, text=True, timeout=timeout)
