"""Issue 17 items 2, 3 and 6 against a real sshd (tools/pylib/testsupport/sshd.py): SFTP set-up
is bounded, a timed-out command does not keep running on the host (coreutils `timeout`, inside
the container when there is one), and a transient connect failure is retried a bounded number
of times (a loopback TCP forwarder resets the first connections)."""
import os
import socket
import threading
import time

import pytest

from testsupport import sshd as sshd_helper
from dvremedy.adapters import sshclient
from dvremedy.adapters.remote_command import bound_on_host
from dvremedy.adapters.sshclient import SSHSession, SSHTarget
from dvremedy.errors import CommandError, HostKeyError, SSHError

JOIN_SECONDS = 15   # a hang fails the test instead of blocking the run


def target(server, **overrides):
    return SSHTarget(**server.target_args(**overrides))


def in_thread(call):
    """(exception or None, result) of call(), failing the test if it does not end in time."""
    box = {}

    def run():
        try:
            box["result"] = call()
        except Exception as exc:    # what the test inspects
            box["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive(), "still waiting: no bound applied"
    return box.get("error"), box.get("result")


# -- item 2: SFTP set-up ------------------------------------------------------------------------

class HangingSftpServer(sshd_helper.SSHServer):
    """An sshd whose sftp subsystem never answers the version handshake."""

    def _write_config(self):
        super(HangingSftpServer, self)._write_config()
        path = os.path.join(self.dir, "sshd_config")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("Subsystem sftp internal-sftp", "Subsystem sftp /bin/sleep 30"))


@pytest.fixture
def hanging_sftp(tmp_path, sshd_privsep_dir):
    sshd_helper.require_sshd()
    sshd_privsep_dir()
    server = HangingSftpServer(tmp_path, name="hangsftp")
    yield server.start()
    server.stop()


def test_an_sftp_subsystem_that_never_answers_is_a_command_error(hanging_sftp, tmp_path):
    with SSHSession(target(hanging_sftp, connect_timeout=1)) as session:
        error, _ = in_thread(lambda: session.upload("x", str(tmp_path / "f")))
        assert isinstance(error, CommandError), repr(error)
        evidence = error.evidence()
        assert "SFTP set-up on test-hangsftp failed: timed out after 1s" in error.message
        assert evidence["timed_out"] is True and evidence["command"] == "sftp"
        assert evidence["port"] == hanging_sftp.port
        assert session.run(["true"]).exit_code == 0     # the session stays usable
    assert not (tmp_path / "f").exists()


# -- item 3: the host bounds every command ------------------------------------------------------

def running(argv):
    """Processes on this machine (the sshd's host) whose argv is exactly argv."""
    wanted = "\0".join(argv) + "\0"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid) as f:
                if f.read() == wanted:
                    found.append(pid)
        except OSError:
            pass
    return found


def gone_within(argv, seconds):
    deadline = time.monotonic() + seconds
    while running(argv) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not running(argv)


def test_a_timed_out_command_is_gone_from_the_host(sshd):
    sleeper = ["sleep", "30.017"]     # a duration no other process uses
    with SSHSession(target(sshd)) as session:
        with pytest.raises(CommandError) as caught:
            session.run(sleeper, timeout=1)
    assert caught.value.evidence()["timed_out"] is True
    try:
        assert gone_within(sleeper, 3), "the command kept running on the host"
    finally:
        for pid in running(sleeper):
            os.kill(int(pid), 9)


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(sshd):
    script = "trap '' TERM; sleep 30.023"
    with SSHSession(target(sshd)) as session:
        with pytest.raises(CommandError) as caught:
            session.run(["sh", "-c", script], timeout=0.5)
    # 137, or -1 (paramiko) when the KILL to its process group ended `timeout` itself too
    assert caught.value.evidence()["host_exit_code"] in (137, -1)
    assert gone_within(["sleep", "30.023"], 3)


def test_a_command_that_ends_in_time_keeps_its_own_exit_code(sshd):
    with SSHSession(target(sshd)) as session:
        result = session.run(["sh", "-c", "exit 124"], timeout=20)
    assert result.exit_code == 124     # quick: not the bound's doing


@pytest.mark.parametrize("argv, expected", [
    (["virsh", "list"], ["T", "virsh", "list"]),
    (["sudo", "nova-manage", "x"], ["T", "sudo", "nova-manage", "x"]),
    (["docker", "exec", "nova_conductor", "nova-manage", "x"],
     ["docker", "exec", "nova_conductor", "T", "nova-manage", "x"]),
    (["podman", "exec", "-u", "nova", "-it", "nova_api", "nova-manage"],
     ["podman", "exec", "-u", "nova", "-it", "nova_api", "T", "nova-manage"]),
    (["sudo", "/usr/bin/docker", "exec", "--user=nova", "-e", "A=1", "nova_compute", "virsh"],
     ["sudo", "/usr/bin/docker", "exec", "--user=nova", "-e", "A=1", "nova_compute", "T",
      "virsh"]),
    (["docker", "cp", "/tmp/a", "c:/tmp/a"], ["T", "docker", "cp", "/tmp/a", "c:/tmp/a"]),
    (["kubectl", "exec", "-n", "openstack", "pod", "-c", "nova", "--", "nova-manage"],
     ["kubectl", "exec", "-n", "openstack", "pod", "-c", "nova", "--", "T", "nova-manage"]),
])
def test_the_bound_runs_inside_the_container(argv, expected):
    wrapper = ["timeout", "--kill-after=5s", "120s"]
    at = expected.index("T")
    assert bound_on_host(argv, 120) == expected[:at] + wrapper + expected[at + 1:]


def test_a_container_command_past_its_timeout_is_stopped_inside(sshd, tmp_path):
    # `docker exec` stand-in: drops `exec <container>` and runs the rest, so what runs is what
    # would run inside the container; `timeout` must be part of it
    sshd.install("docker", "#!/bin/sh\nshift 2\nexec \"$@\"\n")
    with SSHSession(target(sshd)) as session:
        with pytest.raises(CommandError, match="stopped on the host"):
            session.run(["docker", "exec", "nova_conductor", "sleep", "30.031"], timeout=0.5)
    assert gone_within(["sleep", "30.031"], 3)


# -- item 6: transient connect failures are retried ---------------------------------------------

class ResettingForwarder(object):
    """Loopback TCP forwarder to `port`: resets the first `resets` connections (RST at
    once), forwards the others. `accepted` counts connections."""

    def __init__(self, port, resets):
        self.port, self.resets, self.accepted = port, resets, 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listen_port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.resets:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(sshclient, "CONNECT_BACKOFF", (0.01,))


def forwarded(server, forwarder, tmp_path, **overrides):
    known = tmp_path / "known_hosts_fwd"
    known.write_text(server.known_hosts_line().replace(
        ":%d " % server.port, ":%d " % forwarder.listen_port) + "\n")
    return target(server, port=forwarder.listen_port, known_hosts_file=str(known), **overrides)


@pytest.fixture
def forwarder_to(sshd):
    made = []

    def make(resets):
        made.append(ResettingForwarder(sshd.port, resets))
        return made[-1]
    yield make
    for forwarder in made:
        forwarder.close()


def test_resets_during_the_banner_are_retried(sshd, forwarder_to, tmp_path, no_backoff):
    forwarder = forwarder_to(2)
    with SSHSession(forwarded(sshd, forwarder, tmp_path, connect_retries=2)) as session:
        assert session.run(["echo", "hi"]).stdout == "hi\n"
    assert forwarder.accepted == 3


def test_the_final_error_says_how_many_attempts_were_made(sshd, forwarder_to, tmp_path,
                                                          no_backoff):
    forwarder = forwarder_to(10)
    with pytest.raises(SSHError) as caught:
        SSHSession(forwarded(sshd, forwarder, tmp_path, connect_retries=2)).open()
    assert "3 attempts made" in caught.value.message
    assert caught.value.evidence()["attempts"] == 3 and forwarder.accepted == 3


def test_a_refused_connection_is_retried(tmp_path, no_backoff):
    key = sshd_helper.keygen(tmp_path / "k", "k")
    (tmp_path / "kh").write_text("")
    with pytest.raises(SSHError) as caught:
        SSHSession(SSHTarget("cmp9", address="127.0.0.1", port=sshd_helper.free_port(),
                             key_file=key, known_hosts_file=str(tmp_path / "kh"),
                             connect_retries=1)).open()
    assert caught.value.evidence()["attempts"] == 2


@pytest.mark.parametrize("failure", ["auth", "host key"])
def test_auth_and_host_key_failures_are_never_retried(sshd, forwarder_to, tmp_path, failure,
                                                      no_backoff):
    forwarder = forwarder_to(0)
    overrides = {"connect_retries": 2}
    if failure == "auth":
        overrides["key_file"] = sshd_helper.keygen(tmp_path / "stranger", "stranger")
    probe = forwarded(sshd, forwarder, tmp_path, **overrides)
    if failure == "host key":
        (tmp_path / "known_hosts_fwd").write_text("")
    with pytest.raises(SSHError) as caught:
        SSHSession(probe).open()
    assert isinstance(caught.value, HostKeyError) == (failure == "host key")
    assert forwarder.accepted == 1 and caught.value.evidence()["attempts"] == 1


def test_a_name_that_does_not_resolve_is_not_retried(tmp_path, no_backoff):
    key = sshd_helper.keygen(tmp_path / "k", "k")
    (tmp_path / "kh").write_text("")
    with pytest.raises(SSHError, match="cannot resolve") as caught:
        SSHSession(SSHTarget("cmp9", address="no-such-host.invalid", key_file=key,
                             known_hosts_file=str(tmp_path / "kh"),
                             connect_retries=2)).open()
    assert caught.value.evidence()["attempts"] == 1
