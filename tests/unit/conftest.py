"""The unit tier: the pack's code without the lab (seconds, Python 3.8 and 3.11).

pytest.ini puts actions/lib on the path as st2 puts it on every python action's PYTHONPATH, so
the shared package imports the one way production imports it: `from dvremedy.x import y`."""
import os

import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS_DIR)

# the shared helpers' asserts report as the tests' own do (before any test module imports them)
pytest.register_assert_rewrite("testsupport.audit_fakes", "testsupport.workflows")

from testsupport import sshd as sshd_helper
from testsupport.st2api import serving


@pytest.fixture(scope="session")
def sshd_privsep_dir():
    """ensure() makes sshd's /run/sshd when missing (checked before every start). It is never
    removed: a lab's sshd, or any other sshd on this machine, needs it while it runs."""
    return sshd_helper.ensure_privsep_dir


@pytest.fixture
def make_sshd(tmp_path, sshd_privsep_dir):
    """Start real sshd servers (testsupport.sshd.SSHServer): make_sshd(name, env={...}, ...)."""
    sshd_helper.require_sshd()
    servers = []

    def make(name="sshd", env=None, **options):
        sshd_privsep_dir()
        server = sshd_helper.SSHServer(tmp_path, name=name, env=env, **options)
        servers.append(server)
        return server.start()
    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def sshd(make_sshd):
    """One started sshd on 127.0.0.1; fakes go in sshd.bin_dir via sshd.install(name, text)."""
    return make_sshd()


@pytest.fixture
def api():
    """A St2ApiStandIn (testsupport.st2api) serving on loopback for the test."""
    yield from serving()
