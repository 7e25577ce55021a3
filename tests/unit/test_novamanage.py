"""adapters.novamanage: connector validation, and get_connector / show / refresh over a real
sshd against fake `nova-manage` and `docker` scripts (canned output and exit codes). The real
nova-manage is exercised by the lab tier."""
import getpass
import json
import os
import sys

import pytest

from dvremedy.adapters import novamanage
from dvremedy.adapters.sshclient import SSHSession, SSHTarget
from dvremedy.errors import CommandError, InputError, NotFound, NovaManageError

SERVER = "03549f61-9cee-4bdf-b5e9-39c18d815a06"
VOLUME = "4abf2cfe-5208-47bb-9a72-15114a722113"
CONNECTOR = {"platform": "x86_64", "os_type": "linux", "ip": "192.0.2.11", "host": "cmp1",
             "multipath": False, "enforce_multipath": True,
             "initiator": "iqn.2005-03.org.open-iscsi:cmp1", "do_local_attach": False}
NM = ["nova-manage"]

# Records its arguments, and for refresh what the connector file looked like, then answers
# with the canned stdout/stderr/exit code the test set for that subcommand.
FAKE_NOVA_MANAGE = r"""#!/bin/sh
D='{state}'
printf '%s\n' "$*" >> "$D/calls"
if [ "$2" = refresh ]; then
  f="${{CONTAINER_ROOT:-}}$5"
  printf '%s\n' "$5" > "$D/connector.path"
  stat -c '%a' "$f" > "$D/connector.mode" 2>&1
  cat "$f" > "$D/connector.json" 2>&1
fi
[ ! -f "$D/sleep.$2" ] || sleep "$(cat "$D/sleep.$2")"
[ ! -f "$D/out.$2" ] || cat "$D/out.$2"
[ ! -f "$D/err.$2" ] || cat "$D/err.$2" >&2
exit "$(cat "$D/rc.$2" 2>/dev/null || echo 0)"
"""

# docker/podman stand-in: `cp SRC C:DST` copies into a directory playing the container's
# filesystem; `exec [-u U] C CMD...` runs CMD with that root mapped in. Logs argv as JSON.
FAKE_DOCKER = r"""#!{python}
import json, os, shutil, subprocess, sys
ROOT, LOG, FAIL = {root!r}, {log!r}, {fail!r}
args = sys.argv[1:]
with open(LOG, "a") as f:
    f.write(json.dumps(args) + "\n")
if args[0] in FAIL:
    sys.stderr.write("Error response from daemon: No such container\n")
    sys.exit(1)
if args[0] == "cp":
    path = args[2].partition(":")[2]
    os.makedirs(os.path.dirname(ROOT + path), exist_ok=True)
    shutil.copy(args[1], ROOT + path)
    sys.exit(0)
rest = args[1:]
while rest[0].startswith("-"):
    rest = rest[2:] if rest[0] in ("-u", "--user") else rest[1:]
cmd = rest[1:]
if cmd[0] == "timeout":    # the bound the pack puts inside the container
    bound, cmd = cmd[:3], cmd[3:]
else:
    bound = []
if cmd[0] in ("rm", "chown"):
    cmd = [cmd[0]] + [ROOT + a if a.startswith("/") else a for a in cmd[1:]]
sys.exit(subprocess.call(bound + cmd, env=dict(os.environ, CONTAINER_ROOT=ROOT)))
"""


class FakeNovaManage(object):
    def __init__(self, server):
        self.state = os.path.join(server.dir, "nm")
        os.makedirs(self.state)
        server.install("nova-manage", FAKE_NOVA_MANAGE.format(state=self.state))

    def answer(self, subcommand, rc=0, stdout="", stderr="", sleep=0):
        for kind, value in (("rc", str(rc)), ("out", stdout), ("err", stderr),
                            ("sleep", str(sleep))):
            with open(os.path.join(self.state, "%s.%s" % (kind, subcommand)), "w") as f:
                f.write(value)

    def read(self, name):
        with open(os.path.join(self.state, name)) as f:
            return f.read()

    def calls(self):
        return self.read("calls").splitlines()


@pytest.fixture
def fake(sshd):
    return FakeNovaManage(sshd)


@pytest.fixture
def session(sshd):
    with SSHSession(SSHTarget(**sshd.target_args(host="ctl1"))) as opened:
        yield opened


# -- connector validation ---------------------------------------------------------------------

def test_a_good_connector_parses_and_stray_lines_around_it_are_ignored():
    assert novamanage.parse_connector(json.dumps(CONNECTOR)) == CONNECTOR
    noisy = "Deprecated: something\n%s\n" % json.dumps(CONNECTOR, indent=2)
    assert novamanage.parse_connector(noisy, expected_host="cmp1") == CONNECTOR


@pytest.mark.parametrize("text, complaint", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (json.dumps({"host": "cmp1"}), "lacks platform, os_type, ip, multipath"),
    (json.dumps(dict(CONNECTOR, host="")), "'host' must be a non-empty string"),
    (json.dumps(dict(CONNECTOR, multipath="no")), "'multipath' must be true or false"),
])
def test_a_bad_connector_is_an_input_error_naming_the_problem(text, complaint):
    with pytest.raises(InputError, match=complaint):
        novamanage.parse_connector(text)


def test_a_connector_from_another_host_is_refused_before_refresh_could_fail_with_rc_7():
    with pytest.raises(InputError) as caught:
        novamanage.parse_connector(json.dumps(CONNECTOR), expected_host="cmp2")
    assert "rc 7" in caught.value.message and "cmp2" in caught.value.message
    assert caught.value.evidence()["connector_host"] == "cmp1"


# -- get_connector and show -------------------------------------------------------------------

def test_get_connector_runs_the_prefix_and_returns_the_dict(fake, session):
    fake.answer("get_connector", stdout=json.dumps(CONNECTOR) + "\n",
                stderr="DeprecationWarning: eventlet\n")
    assert novamanage.get_connector(session, NM, expected_host="cmp1") == CONNECTOR
    assert fake.calls() == ["volume_attachment get_connector --json"]


def test_get_connector_rc_1_points_at_the_log_and_the_multipath_pitfall(fake, session):
    fake.answer("get_connector", rc=1, stdout="Unexpected error, see nova-manage.log for the "
                "full trace: [Errno 2] No such file or directory: 'sudo'\n")
    with pytest.raises(NovaManageError) as caught:
        novamanage.get_connector(session, NM)
    err = caught.value.evidence()
    assert err["exit_code"] == 1 and err["meaning"] == "unexpected error"
    assert "multipath" in err["advice"] and "nova-manage.log" in err["advice"]
    assert "No such file or directory: 'sudo'" in caught.value.message
    assert err["host"] == "ctl1" and err["step"] == "get_connector"


def test_get_connector_from_the_wrong_host_is_an_input_error(fake, session):
    fake.answer("get_connector", stdout=json.dumps(CONNECTOR))
    with pytest.raises(InputError, match="rc 7"):
        novamanage.get_connector(session, NM, expected_host="cmp2")


def test_a_wrong_prefix_says_so(session):
    with pytest.raises(NovaManageError) as caught:
        novamanage.get_connector(session, ["no-such-nova-manage"])
    assert caught.value.evidence()["exit_code"] == 127
    assert "prefix" in caught.value.evidence()["advice"]


def test_show_returns_the_bdm_with_connection_info_as_a_json_string(fake, session):
    info = {"driver_volume_type": "iscsi", "data": {"target_lun": 1}}
    bdm = {"uuid": "b1", "attachment_id": "a1", "volume_id": VOLUME, "instance_uuid": SERVER,
           "connection_info": json.dumps(info)}
    fake.answer("show", stdout=json.dumps(bdm))
    got = novamanage.show(session, NM, SERVER, VOLUME)
    assert got == bdm and isinstance(got["connection_info"], str)
    assert novamanage.connection_info(got) == info
    assert novamanage.connection_info(dict(got, connection_info=None)) is None
    assert fake.calls() == ["volume_attachment show %s %s --json" % (SERVER, VOLUME)]


@pytest.mark.parametrize("rc, error, meaning", [
    (2, NotFound, "instance"), (3, NotFound, "not attached"), (1, NovaManageError, "unexpected"),
])
def test_show_exit_codes(fake, session, rc, error, meaning):
    fake.answer("show", rc=rc, stdout="something went wrong\n")
    with pytest.raises(error) as caught:
        novamanage.show(session, NM, SERVER, VOLUME)
    assert meaning in caught.value.evidence()["meaning"]
    assert caught.value.evidence()["exit_code"] == rc


def test_ids_must_be_uuids_so_nothing_can_pass_as_an_option(session):
    with pytest.raises(InputError, match="server_id must be a UUID"):
        novamanage.show(session, NM, "--help", VOLUME)
    with pytest.raises(InputError, match="prefix"):
        novamanage.show(session, "nova-manage", SERVER, VOLUME)


# -- refresh ----------------------------------------------------------------------------------

def test_refresh_writes_a_private_connector_file_and_removes_it(fake, session):
    result = novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR)
    assert result["exit_code"] == 0 and result["duration_s"] > 0
    path = fake.read("connector.path").strip()
    assert fake.calls() == ["volume_attachment refresh %s %s %s" % (SERVER, VOLUME, path)]
    assert os.path.basename(path).startswith("dvremedy-connector.")
    assert fake.read("connector.mode").strip() == "600"
    assert json.loads(fake.read("connector.json")) == CONNECTOR
    assert not os.path.exists(path)


REFRESH_CASES = [
    (1, "unexpected error", "nova-compute is down"),
    (2, "invalid input", "refresh again (that works from this state)"),
    (3, "cannot be read or is not valid JSON", "readable"),
    (4, "instance does not exist", "server UUID"),
    (5, "must be stopped", "openstack server stop"),
    (6, "not attached", "nothing to refresh"),
    (7, "connector's host is not the instance's host", "OS-EXT-SRV-ATTR:host"),
    (9, "undocumented exit code", "nova-manage.log"),
]


@pytest.mark.parametrize("rc, meaning, advice", REFRESH_CASES)
def test_refresh_exit_codes_carry_meaning_advice_and_both_output_tails(fake, session, rc,
                                                                       meaning, advice):
    fake.answer("refresh", rc=rc, stdout="The message for rc %d\nTraceback (most recent call "
                "last):\n  File \"x.py\"\n" % rc, stderr="a warning on stderr\n")
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, json.dumps(CONNECTOR))
    err = caught.value.evidence()
    assert err["exit_code"] == rc and meaning in err["meaning"] and advice in err["advice"]
    assert "The message for rc %d" % rc in caught.value.message
    assert "Traceback" in err["stdout_tail"] and "a warning" in err["stderr_tail"]
    assert err["step"] == "refresh" and err["host"] == "ctl1"
    assert fake.read("connector.mode").strip() == "600"
    assert not os.path.exists(fake.read("connector.path").strip())


def test_a_refresh_that_times_out_is_left_running_and_says_what_to_check(fake, session):
    fake.answer("refresh", sleep=1.5)
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, timeout=0.5)
    err = caught.value.evidence()
    assert err["meaning"] == "timed out" and err["timed_out"] is True
    assert "server event list" in err["advice"] and "may still be running" in err["message"]
    assert "SIGTERM" not in err["message"]
    assert not os.path.exists(fake.read("connector.path").strip())


@pytest.mark.parametrize("text, advice", [
    ("Invalid volume: Volume %s status must be available or downloading to reserve, but the "
     "current status is detaching. (HTTP 400)" % VOLUME, "reset it to 'in-use'"),
    ("Invalid input received: Invalid input received: Connector doesn't have required "
     "information: initiator", "/etc/iscsi/initiatorname.iscsi"),
    ("Connector file not found at /tmp/x", "staging"),
])
def test_refresh_rc_2_recognises_the_observed_causes(fake, session, text, advice):
    fake.answer("refresh", rc=2, stdout=text + "\n")
    with pytest.raises(NovaManageError) as caught:
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR)
    assert advice in caught.value.evidence()["advice"]
    assert text in caught.value.message


def test_refresh_refuses_a_connector_from_another_host_before_running(fake, session):
    with pytest.raises(InputError, match="rc 7"):
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, expected_host="cmp2")
    with pytest.raises(InputError, match="lacks"):
        novamanage.refresh(session, NM, SERVER, VOLUME, {"host": "cmp1"})
    assert not os.path.exists(os.path.join(fake.state, "calls"))


def _install_docker(sshd, tmp_path, fail=(), name="docker"):
    root, log = str(tmp_path / "container-root"), str(tmp_path / "docker.log")
    os.makedirs(root)
    script = FAKE_DOCKER.format(python=sys.executable, root=root, log=log, fail=list(fail))
    sshd.install(name, script)
    return root, log


def _docker_calls(log):
    with open(log) as f:
        return [json.loads(line) for line in f]


def test_refresh_with_docker_cp_staging_copies_in_and_removes_both_copies(
        sshd, fake, session, tmp_path):
    root, log = _install_docker(sshd, tmp_path)
    owner = getpass.getuser()
    staging = {"copy_into": {"engine": "docker", "container": "nova_conductor",
                             "owner": owner}}
    prefix = ["docker", "exec", "nova_conductor", "nova-manage"]
    novamanage.refresh(session, prefix, SERVER, VOLUME, CONNECTOR, staging=staging)
    inner = fake.read("connector.path").strip()
    assert inner.startswith("/tmp/dvremedy-connector.")
    calls = _docker_calls(log)
    host_copy = calls[0][1]
    bound = ["timeout", "--kill-after=5s"]
    assert calls == [
        ["cp", host_copy, "nova_conductor:" + inner],
        ["exec", "-u", "root", "nova_conductor"] + bound + ["20s", "chown", owner, inner],
        # refresh is never bounded: killing it would leave the instance locked
        prefix[1:] + ["volume_attachment", "refresh", SERVER, VOLUME, inner],
        # the host removes the copy when refresh ends, then this side does again
        ["exec", "-u", "root", "nova_conductor"] + bound + ["30s", "rm", "-f", inner],
        ["exec", "-u", "root", "nova_conductor"] + bound + ["20s", "rm", "-f", inner],
    ]
    assert fake.read("connector.mode").strip() == "600"
    assert json.loads(fake.read("connector.json")) == CONNECTOR
    assert not os.path.exists(host_copy) and not os.path.exists(root + inner)


def test_a_failed_podman_cp_still_removes_the_host_copy(sshd, fake, session, tmp_path):
    root, log = _install_docker(sshd, tmp_path, fail=["cp"], name="podman")
    staging = {"copy_into": {"engine": "podman", "container": "nova_api"}}
    with pytest.raises(CommandError, match="No such container"):
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, staging=staging)
    (call,) = _docker_calls(log)
    assert call[0] == "cp" and not os.path.exists(call[1])
    assert not os.path.exists(os.path.join(fake.state, "calls"))


def test_a_failed_refresh_in_a_container_removes_both_copies(sshd, fake, session, tmp_path):
    root, log = _install_docker(sshd, tmp_path)
    fake.answer("refresh", rc=5, stdout="Cannot refresh connection_info (must be stopped)\n")
    staging = {"copy_into": {"engine": "docker", "container": "nova_conductor",
                             "container_dir": "/var/tmp/stage"}}
    with pytest.raises(NovaManageError, match="must be stopped"):
        novamanage.refresh(session, ["docker", "exec", "nova_conductor", "nova-manage"],
                           SERVER, VOLUME, CONNECTOR, staging=staging)
    calls = _docker_calls(log)
    inner = fake.read("connector.path").strip()
    assert inner.startswith("/var/tmp/stage/dvremedy-connector.")
    assert calls[-1][:4] == ["exec", "-u", "root", "nova_conductor"]
    assert calls[-1][-3:] == ["rm", "-f", inner]
    assert not os.path.exists(calls[0][1]) and not os.path.exists(root + inner)


def test_a_copy_that_cannot_be_removed_is_reported_not_hidden(sshd, fake, session, tmp_path):
    root, log = _install_docker(sshd, tmp_path, fail=["exec"])
    staging = {"copy_into": {"engine": "docker", "container": "nova_conductor"}}
    result = novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, staging=staging)
    inner = fake.read("connector.path").strip()
    assert result["leftover_files"] == ["nova_conductor:" + inner]
    cp, rm_on_host, rm = _docker_calls(log)
    assert rm[:4] == rm_on_host[:4] == ["exec", "-u", "root", "nova_conductor"]
    assert not os.path.exists(cp[1]) and os.path.exists(root + inner)


def test_refresh_with_a_shared_directory(fake, session, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    view = tmp_path / "container-view"    # the container's mount of the same directory
    view.symlink_to(shared)
    staging = {"shared_dir": str(shared), "container_dir": str(view)}
    novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, staging=staging)
    path = fake.read("connector.path").strip()
    assert os.path.dirname(path) == str(view)
    assert fake.read("connector.mode").strip() == "600"
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("staging", [
    {"copy_into": {"engine": "lxc", "container": "c"}},
    {"copy_into": {"engine": "docker", "container": "-it"}},
    {"shared_dir": "relative", "container_dir": "/x"},
    {"shared_dir": "/x"},
    {"somewhere": "/x"},
    "docker",
])
def test_bad_staging_is_refused_before_anything_runs(fake, session, staging):
    with pytest.raises(InputError, match="staging"):
        novamanage.refresh(session, NM, SERVER, VOLUME, CONNECTOR, staging=staging)
    assert not os.path.exists(os.path.join(fake.state, "calls"))
