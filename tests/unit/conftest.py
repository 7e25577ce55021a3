"""The unit tier: the pack's code without the lab (seconds, Python 3.8 and 3.11).

actions/lib goes on sys.path as st2 puts it on every python action's PYTHONPATH, so the
shared package imports the one way production imports it: `from dvremedy.x import y`."""
import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS_DIR)
for _path in (os.path.join(REPO, "actions", "lib"), TESTS_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import sshd as sshd_helper  # noqa: E402  (tests/sshd.py, on the path just above)


@pytest.fixture(scope="session")
def sshd_privsep_dir():
    """ensure() makes sshd's /run/sshd when missing (checked before every start, since a
    lab/down elsewhere may remove it); at the end of the run it is removed only if this run
    made it."""
    created = []

    def ensure():
        if sshd_helper.ensure_privsep_dir():
            created.append(sshd_helper.PRIVSEP_DIR)
    yield ensure
    if created:
        sshd_helper.remove_privsep_dir()


@pytest.fixture
def make_sshd(tmp_path, sshd_privsep_dir):
    """Start real sshd servers (tests/sshd.py SSHServer): make_sshd(name, env={...}, ...)."""
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
