"""The lab and the tests never take from each other: the unit tier's own sshd servers (real
sshd on free ports, tools/pylib/testsupport/sshd.py) start and stop while the lab is up, and the
lab's sshd still accepts new connections afterwards (sshd refuses every connection once its
privilege-separation directory /run/sshd is gone, which a test's clean-up once removed)."""
import os
import subprocess
import sys

import labcloud
from testsupport.lab import REPO


def test_the_lab_answers_ssh_after_the_unit_tiers_sshd_tests(lab):
    assert labcloud.ssh(lab, lab["compute_host"], "true").returncode == 0
    unit = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
         os.path.join(REPO, "tests", "unit", "test_sshclient.py")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert unit.returncode == 0, unit.stdout[-2000:] + unit.stderr[-2000:]
    assert " passed" in unit.stdout
    assert os.path.isdir("/run/sshd")
    for host in sorted(set(lab["ssh"]["hosts"])):
        after = labcloud.ssh(lab, host, "echo still-here")
        assert after.returncode == 0 and "still-here" in after.stdout, (host, after.stderr)
