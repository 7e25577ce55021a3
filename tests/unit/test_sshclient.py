"""adapters.sshclient against a real OpenSSH sshd (tools/pylib/testsupport/sshd.py): quoting,
exit codes, stdin, timeouts, SFTP upload/remove, host-key verification, auth failures, jump
hosts, the pool."""
import os
import socket
import stat
import threading
import time

import pytest

from testsupport import sshd as sshd_helper
from dvremedy.adapters.remote_command import quote_argv
from dvremedy.adapters.sshclient import SSHPool, SSHSession, SSHTarget
from dvremedy.errors import CommandError, HostKeyError, InputError, SSHError


def target(server, **overrides):
    return SSHTarget(**server.target_args(**overrides))


def accepted_logins(server):
    return server.log().count("Accepted publickey")


def test_runs_a_command_and_reports_output_exit_code_and_duration(sshd):
    with SSHSession(target(sshd)) as session:
        result = session.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.argv == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert result.duration > 0 and not result.ok
    assert result.command == "sh -c 'echo out; echo err >&2; exit 3'"


def test_arguments_arrive_literally_whatever_they_contain(sshd, tmp_path):
    marker = tmp_path / "injected"
    nasty = ["a b", "x; touch %s" % marker, "$(touch %s)" % marker, "`touch %s`" % marker,
             "'single'", '"double"', "back\\slash", "*", "", "new\nline", "&& exit 9", "$HOME"]
    with SSHSession(target(sshd)) as session:
        result = session.run(["printf", "%s\\0"] + nasty, check=True)
    assert result.stdout.split("\0")[:-1] == nasty
    assert not marker.exists()


def test_check_raises_command_error_with_the_evidence(sshd):
    with SSHSession(target(sshd)) as session:
        with pytest.raises(CommandError) as caught:
            session.run(["sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 4"],
                        check=True)
    evidence = caught.value.evidence()
    assert evidence["exit_code"] == 4 and evidence["host"] == "test-sshd"
    assert evidence["command"].startswith("sh -c ")
    assert "the reason" in evidence["stderr_tail"] and "the reason" in caught.value.message


def test_stdin_is_written_then_closed(sshd):
    with SSHSession(target(sshd)) as session:
        assert session.run(["cat"], stdin_text="line one\nline two\n").stdout == \
            "line one\nline two\n"
        assert session.run(["wc", "-c"], stdin_text=b"\x00\x01\x02").stdout.strip() == "3"
        # no stdin_text: stdin is closed at once, so a reader sees EOF instead of hanging
        assert session.run(["cat"], timeout=5).stdout == ""


def test_large_output_is_read_completely(sshd):
    with SSHSession(target(sshd)) as session:
        result = session.run(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; "
                                          "head -c 200000 /dev/zero | tr '\\0' y >&2"])
    assert len(result.stdout) == 3000000 and len(result.stderr) == 200000


def test_a_command_past_its_timeout_raises_command_error(sshd):
    with SSHSession(target(sshd)) as session:
        started = time.monotonic()
        with pytest.raises(CommandError) as caught:
            session.run(["sh", "-c", "echo started; sleep 3"], timeout=0.5)
        assert time.monotonic() - started < 2
        evidence = caught.value.evidence()
        assert evidence["timed_out"] is True and "exit_code" not in evidence
        assert "timed out after 0.5s" in caught.value.message
        # the session stays usable
        assert session.run(["true"]).exit_code == 0


def test_a_timed_out_command_is_stopped_on_the_host_unless_told_otherwise(make_sshd):
    server = make_sshd(log_level="DEBUG1")
    with SSHSession(target(server)) as session:
        with pytest.raises(CommandError, match="stopped on the host") as caught:
            session.run(["sleep", "2"], timeout=0.3)
        assert caught.value.evidence()["stopped_on_host"] is True
        with pytest.raises(CommandError) as caught:
            session.run(["sleep", "2"], timeout=0.3, kill_on_timeout=False)
        assert "may still be running" in caught.value.message
        assert "SIGTERM" not in caught.value.message
    # the host's `timeout` did the stopping: no signal request was needed
    assert server.log().count("req signal") == 0


def test_a_connection_lost_mid_command_is_an_ssh_error_not_an_exit_code(sshd):
    """Before: paramiko's -1 (no exit status) came back as the command's exit code, and the
    report said "exited -1 (undocumented exit code)" instead of naming the lost connection."""
    with SSHSession(target(sshd)) as session:
        transport = session._clients[-1].get_transport()
        cutter = threading.Timer(0.5, lambda: transport.sock.shutdown(socket.SHUT_RDWR))
        cutter.start()
        try:
            with pytest.raises(SSHError) as caught:
                session.run(["sh", "-c", "echo started; sleep 5"], timeout=10)
        finally:
            cutter.cancel()
    assert "broke while running" in caught.value.message
    assert caught.value.evidence()["host"] == "test-" + sshd.name


def test_the_target_command_timeout_is_the_default(sshd):
    with SSHSession(target(sshd, command_timeout=0.5)) as session:
        with pytest.raises(CommandError, match="timed out"):
            session.run(["sleep", "3"])


def test_upload_writes_a_private_file_and_remove_deletes_it(sshd, tmp_path):
    path = str(tmp_path / "connector.json")
    with SSHSession(target(sshd)) as session:
        session.upload('{"host": "cmp1"}', path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path) as f:
            assert f.read() == '{"host": "cmp1"}'
        # an existing wider file is made private before the new bytes go in
        os.chmod(path, 0o644)
        session.upload(b"\x00bytes", path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, "rb") as f:
            assert f.read() == b"\x00bytes"
        session.upload("x", path, mode=0o640)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        session.remove(path)
        assert not os.path.exists(path)
        session.remove(path)    # already gone: fine


def test_upload_into_a_missing_directory_is_a_command_error(sshd, tmp_path):
    with SSHSession(target(sshd)) as session:
        with pytest.raises(CommandError, match="upload to test-sshd:"):
            session.upload("x", str(tmp_path / "no" / "such" / "dir" / "f"))


def test_unknown_host_key_is_refused_before_anything_runs(sshd, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    marker = tmp_path / "ran"
    with pytest.raises(HostKeyError) as caught:
        with SSHSession(target(sshd, known_hosts_file=str(empty))) as session:
            session.run(["touch", str(marker)])
    message = caught.value.message
    assert str(empty) in message and "[127.0.0.1]:%d" % sshd.port in message
    assert "ssh-ed25519 SHA256:" in message     # the offered key's fingerprint, to verify
    assert caught.value.evidence()["known_hosts_file"] == str(empty)
    assert not marker.exists() and accepted_logins(sshd) == 0
    assert empty.read_text() == ""    # nothing learned or saved


def test_a_missing_or_broken_known_hosts_file_is_refused(sshd, tmp_path):
    with pytest.raises(HostKeyError, match="no known_hosts file"):
        SSHSession(target(sshd, known_hosts_file=None)).open()
    absent = str(tmp_path / "absent")
    with pytest.raises(HostKeyError, match="cannot use known_hosts file %s" % absent):
        SSHSession(target(sshd, known_hosts_file=absent)).open()
    broken = tmp_path / "broken"
    broken.write_text("[127.0.0.1]:%d ssh-ed25519 not-base64!\n" % sshd.port)
    with pytest.raises(HostKeyError, match="cannot use known_hosts file"):
        SSHSession(target(sshd, known_hosts_file=str(broken))).open()
    assert accepted_logins(sshd) == 0


def test_accepting_unknown_hosts_is_an_explicit_switch_and_saves_nothing(sshd, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with SSHSession(target(sshd, known_hosts_file=str(empty)),
                    accept_unknown_hosts=True) as session:
        assert session.run(["echo", "hi"]).stdout == "hi\n"
    assert empty.read_text() == ""


def test_a_changed_host_key_is_refused(sshd, tmp_path):
    other = sshd_helper.keygen(tmp_path / "other_host_key", "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(other) + "\n")
    with pytest.raises(HostKeyError) as caught:
        SSHSession(target(sshd, known_hosts_file=str(known))).open()
    assert "does NOT match" in caught.value.message and str(known) in caught.value.message
    assert accepted_logins(sshd) == 0


@pytest.mark.parametrize("change", ["user", "key", "missing key file"])
def test_authentication_failures_are_ssh_errors(sshd, tmp_path, change):
    if change == "user":
        overrides = {"user": "no-such-user-dv"}
    elif change == "key":
        overrides = {"key_file": sshd_helper.keygen(tmp_path / "stranger", "stranger")}
    else:
        overrides = {"key_file": str(tmp_path / "absent_key")}
    with pytest.raises(SSHError) as caught:
        SSHSession(target(sshd, **overrides)).open()
    assert not isinstance(caught.value, HostKeyError)
    evidence = caught.value.evidence()
    assert (evidence["host"], evidence["address"], evidence["port"]) == \
        ("test-sshd", "127.0.0.1", sshd.port)
    assert evidence["reason"] and evidence["reason"] in caught.value.message


def _key_and_empty_known_hosts(tmp_path):
    (tmp_path / "known_hosts").write_text("")
    return sshd_helper.keygen(tmp_path / "k", "k"), str(tmp_path / "known_hosts")


def test_a_closed_port_fails_fast_with_ssh_error(tmp_path):
    port = sshd_helper.free_port()
    key, known = _key_and_empty_known_hosts(tmp_path)
    started = time.monotonic()
    with pytest.raises(SSHError) as caught:
        SSHSession(SSHTarget("cmp9", address="127.0.0.1", port=port, user="root",
                             key_file=key, known_hosts_file=known, connect_timeout=3)).open()
    assert time.monotonic() - started < 3
    assert "cmp9" in caught.value.message and str(port) in caught.value.message


def test_a_silent_server_times_out_within_connect_timeout(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)    # accepts the TCP connection, never says a word
    try:
        key, known = _key_and_empty_known_hosts(tmp_path)
        started = time.monotonic()
        with pytest.raises(SSHError) as caught:
            SSHSession(SSHTarget("cmp9", address="127.0.0.1", port=listener.getsockname()[1],
                                 key_file=key, known_hosts_file=known, connect_timeout=1)).open()
        assert time.monotonic() - started < 4
        assert not isinstance(caught.value, HostKeyError)
    finally:
        listener.close()


def test_a_jump_host_carries_the_connection_and_both_keys_are_verified(make_sshd):
    jump_server, inner = make_sshd("jump", log_level="DEBUG1"), make_sshd("inner")
    jump = target(jump_server)
    with SSHSession(target(inner, jump=jump)) as session:
        assert session.run(["echo", "hi"]).stdout == "hi\n"
    assert accepted_logins(jump_server) == 1 and accepted_logins(inner) == 1
    assert "target 127.0.0.1 port %d" % inner.port in jump_server.log()   # direct-tcpip

    # the inner host's key is checked too, even though the jump host is trusted
    with pytest.raises(HostKeyError, match=r"\[127.0.0.1\]:%d" % inner.port):
        SSHSession(target(inner, jump=jump, known_hosts_file=jump_server.known_hosts)).open()
    # and an unknown jump host stops everything
    with pytest.raises(HostKeyError, match="test-jump"):
        SSHSession(target(inner, jump=target(
            jump_server, known_hosts_file=inner.known_hosts))).open()


def test_a_jump_host_that_cannot_reach_the_target_is_an_ssh_error(make_sshd):
    jump_server = make_sshd("jump")
    with pytest.raises(SSHError, match="jump host could not open"):
        SSHSession(SSHTarget("cmp9", address="127.0.0.1", port=sshd_helper.free_port(),
                             key_file=jump_server.client_key,
                             known_hosts_file=jump_server.known_hosts,
                             jump=target(jump_server), connect_timeout=3)).open()


def test_the_pool_keeps_one_connection_per_host(make_sshd):
    one, two = make_sshd("one"), make_sshd("two")
    targets = {"cmp1": target(one, host="cmp1"), "cmp2": target(two, host="cmp2")}
    with SSHPool(targets.get) as pool:
        first = pool.get("cmp1")
        assert pool.get("cmp1") is first
        first.run(["true"])
        pool.get("cmp1").run(["true"])
        assert pool.get("cmp2").run(["hostname"]).exit_code == 0
        with pytest.raises(InputError, match="cmp3"):
            pool.get("cmp3")
        first.close()    # a dropped session is replaced on the next get
        assert pool.get("cmp1") is not first and pool.get("cmp1").is_open
    assert accepted_logins(one) == 2 and accepted_logins(two) == 1
    assert not first.is_open


def test_quote_argv_refuses_strings():
    with pytest.raises(InputError):
        quote_argv("rm -rf /tmp/x")
    with pytest.raises(InputError):
        quote_argv([])
    assert quote_argv(["echo", "a b", "$x"]) == "echo 'a b' '$x'"
