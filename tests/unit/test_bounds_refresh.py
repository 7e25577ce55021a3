"""Issue 17 items 3-5 and 8 for `nova-manage volume_attachment refresh` over a real sshd with a
fake nova-manage: refresh is never put under `timeout`, the host removes the staged connector
file when refresh ends even if this side was killed, the rc 3 advice names controller.owner,
and every error says whether refresh was started and whether the instance needs unlocking."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dvremedy.adapters import novamanage
from dvremedy.adapters.sshclient import SSHSession, SSHTarget
from dvremedy.errors import InputError, NovaManageError
from dvremedy.settings import Settings

SERVER = "03549f61-9cee-4bdf-b5e9-39c18d815a06"
VOLUME = "4abf2cfe-5208-47bb-9a72-15114a722113"
CONNECTOR = {"platform": "x86_64", "os_type": "linux", "ip": "192.0.2.11", "host": "cmp1",
             "multipath": False}
NM = ["nova-manage"]
LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "actions", "lib")
BOUND_SECONDS = 15      # polls give up after this: the test fails instead of hanging

# records the connector path it was given, then sleeps / prints / exits as the test says
FAKE_NOVA_MANAGE = r"""#!/bin/sh
D='{state}'
[ "$2" != refresh ] || printf '%s\n' "$5" > "$D/path"
[ ! -f "$D/sleep" ] || sleep "$(cat "$D/sleep")"
[ ! -f "$D/out" ] || cat "$D/out"
exit "$(cat "$D/rc" 2>/dev/null || echo 0)"
"""
# records every use of coreutils timeout on the host, then runs the real one
FAKE_TIMEOUT = """#!/bin/sh
printf '%s\\n' "$*" >> '{state}/timeout.calls'
exec /usr/bin/timeout "$@"
"""


class Fake(object):
    def __init__(self, server):
        self.state = os.path.join(server.dir, "nm")
        os.makedirs(self.state)
        server.install("nova-manage", FAKE_NOVA_MANAGE.format(state=self.state))
        server.install("timeout", FAKE_TIMEOUT.format(state=self.state))

    def set(self, **values):
        for name, value in values.items():
            with open(os.path.join(self.state, name), "w") as f:
                f.write(str(value))

    def read(self, name):
        try:
            with open(os.path.join(self.state, name)) as f:
                return f.read()
        except OSError:
            return ""


@pytest.fixture
def fake(sshd):
    return Fake(sshd)


@pytest.fixture
def session(sshd):
    with SSHSession(SSHTarget(**sshd.target_args(host="ctl1"))) as opened:
        yield opened


def poll(condition, seconds=BOUND_SECONDS):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


# -- item 3: refresh is never killed, its wait is waits.refresh ---------------------------------

def test_refresh_runs_without_a_timeout_wrapper_while_staging_has_one(fake, session):
    novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR)
    calls = fake.read("timeout.calls").splitlines()
    assert any(" mktemp " in " %s " % c for c in calls)
    assert not [c for c in calls if "nova-manage" in c or "refresh" in c]


def test_the_refresh_wait_defaults_to_waits_refresh_and_its_timeout_names_it(fake, session):
    assert novamanage.DEFAULT_REFRESH_WAIT == Settings({}).wait_refresh == 600
    assert Settings({"waits": {"refresh": 900}}).wait_refresh == 900
    fake.set(sleep=2)
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, timeout=0.5)
    err = caught.value.evidence()
    assert err["meaning"] == "timed out" and "waits.refresh" in err["advice"]
    assert err["refresh_started"] is True


# -- item 4: the host cleans up, whatever happens to this side ----------------------------------

KILLED_SIDE = """import json, sys
from dvremedy.adapters import novamanage
from dvremedy.adapters.sshclient import SSHSession, SSHTarget
with SSHSession(SSHTarget(**json.loads(sys.argv[1]))) as session:
    novamanage.refresh(session, ["nova-manage"], {server!r}, {volume!r}, json.loads(sys.argv[2]))
"""


def test_the_connector_file_is_removed_by_the_host_after_this_side_is_killed(
        sshd, fake, tmp_path):
    fake.set(sleep=2)
    script = tmp_path / "killed_side.py"
    script.write_text(KILLED_SIDE.format(server=SERVER, volume=VOLUME))
    side = subprocess.Popen([sys.executable, str(script), json.dumps(sshd.target_args()),
                             json.dumps(CONNECTOR)], env=dict(os.environ, PYTHONPATH=LIB))
    try:
        assert poll(lambda: fake.read("path").strip()), "refresh never started"
        path = fake.read("path").strip()
        side.send_signal(signal.SIGKILL)     # what st2 does at the action's timeout
        side.wait(BOUND_SECONDS)
        assert os.path.exists(path)          # refresh is still running on the host
        assert poll(lambda: not os.path.exists(path)), "the connector file was left behind"
    finally:
        if side.poll() is None:
            side.kill()


def test_a_failed_refresh_keeps_its_exit_code_through_the_cleanup(fake, session):
    fake.set(rc=6, out="Volume is not attached\n")
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR)
    assert caught.value.evidence()["exit_code"] == 6
    assert not os.path.exists(fake.read("path").strip())


# -- item 5: controller.owner ---------------------------------------------------------------

def test_the_rc_3_advice_names_controller_owner(fake, session):
    fake.set(rc=3, out="Failed to open /tmp/x: Permission denied\n")
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR)
    assert "controller.owner" in caught.value.evidence()["advice"]


@pytest.mark.parametrize("owner", ["-R", "a b", "../x", "nova;id", "$(id)"])
def test_an_owner_that_is_not_a_plain_word_is_refused_before_anything_runs(fake, session,
                                                                          owner):
    staging = {"copy_into": {"engine": "docker", "container": "nova_conductor",
                             "owner": owner}}
    with pytest.raises(InputError, match="owner") as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, staging=staging)
    assert caught.value.evidence()["refresh_started"] is False
    assert fake.read("timeout.calls") == ""


# -- item 8: refresh_started and needs_unlock ---------------------------------------------------

def test_a_staging_failure_says_refresh_was_not_started(fake, session, tmp_path):
    staging = {"shared_dir": str(tmp_path / "absent"), "container_dir": "/x"}
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, staging=staging)
    err = caught.value.evidence()
    assert err["refresh_started"] is False and err["meaning"] == "staging failed"
    assert "mktemp" in err["command"] and fake.read("path") == ""


def test_a_bad_connector_says_refresh_was_not_started(session):
    with pytest.raises(InputError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, {"host": "cmp1"})
    assert caught.value.evidence()["refresh_started"] is False


@pytest.mark.parametrize("output, needs_unlock", [
    ("Instance %s in locked True. Cannot refresh connection_info (must be unlocked) while "
     "the instance is in this state.\n" % SERVER, True),
    ("Instance %s in vm_state active. Cannot refresh connection_info (must be stopped) while "
     "the instance is in this state.\n" % SERVER, None),
])
def test_rc_5_says_whether_the_instance_must_be_unlocked(fake, session, output, needs_unlock):
    fake.set(rc=5, out=output)
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR)
    err = caught.value.evidence()
    assert err["refresh_started"] is True and err.get("needs_unlock") is needs_unlock
