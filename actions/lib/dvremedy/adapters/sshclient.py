"""SSH transport on paramiko: verified host keys, key-only auth, deadlines everywhere.

Commands are argv lists, quoted word by word (remote_command): callers never build shell
strings. Host keys come from a known_hosts file and unknown hosts are rejected unless the
caller explicitly passes accept_unknown_hosts=True. Keys, passphrases and stdin never reach
a log line or an error."""

import errno
import logging
import select
import socket
import time
from collections import namedtuple

import paramiko

from dvremedy.adapters.remote_command import KILL_AFTER, bound_on_host, quote_argv
from dvremedy.errors import CommandError, HostKeyError, InputError, SSHError, tail

LOG = logging.getLogger(__name__)
READ_CHUNK = 32768
POLL_SECONDS = 0.5    # upper bound of one wait for output; the deadline is checked between
HOST_GRACE = 2        # seconds we wait past the kill for the host to report the exit
TIMED_OUT_CODES = (124, 137, -1)    # timeout: TERM worked / KILL needed / KILL ended it too
CONNECT_BACKOFF = (1.0, 2.0)    # seconds before the 2nd, 3rd, ... connect attempt (last repeats)


class SSHTarget(object):
    """Where and how to reach one Nova host. `host` is the Nova host name (for messages and
    pool lookups); `address` is what we connect to (defaults to `host`)."""

    def __init__(self, host, address=None, port=22, user="root", key_file=None,
                 known_hosts_file=None, jump=None, connect_timeout=10, command_timeout=120,
                 connect_retries=0):
        if not host:
            raise InputError("an SSH target needs a host name")
        self.host = host
        self.address = address or host
        self.port = int(port)
        self.user = user
        self.key_file = key_file
        self.known_hosts_file = known_hosts_file
        self.jump = jump
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = float(command_timeout)
        self.connect_retries = int(connect_retries)

    @property
    def endpoint(self):
        return "%s@%s:%d" % (self.user, self.address, self.port)

    def where(self, **more):
        """The evidence every SSH error carries: which host, at which address and port."""
        return dict(more, host=self.host, address=self.address, port=self.port)

    def __repr__(self):
        via = " via %s" % self.jump.endpoint if self.jump else ""
        return "SSHTarget(%s, %s%s)" % (self.host, self.endpoint, via)


class CommandResult(namedtuple("CommandResult", "argv exit_code stdout stderr duration")):
    """One finished remote command; stdout/stderr are text (UTF-8, undecodable bytes replaced)."""

    __slots__ = ()

    @property
    def command(self):
        return quote_argv(self.argv)

    @property
    def ok(self):
        return self.exit_code == 0


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key):
        super(_UnknownHostKey, self).__init__("host key not in known_hosts")
        self.key = key


class _RejectUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy raising a type of its own, so we can tell it from other failures."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(key)


class _AcceptUnknownHost(paramiko.MissingHostKeyPolicy):
    """The explicit opt-out: accept an unknown host for this connection, save nothing."""

    def missing_host_key(self, client, hostname, key):
        LOG.warning("accepting the UNVERIFIED host key of %s (%s): accept_unknown_hosts is on",
                    hostname, _key_text(key))


def _key_text(key):
    """A host key as type and SHA256 fingerprint (public facts, as ssh-keygen -l shows them)."""
    return "%s %s" % (key.get_name(), key.fingerprint)


def _connect_client(target, sock, accept_unknown_hosts):
    """An authenticated SSHClient for target (over sock when going through a jump host)."""
    where = target.where()
    client = paramiko.SSHClient()
    hostport = "[%s]:%d" % (target.address, target.port)
    try:
        if target.known_hosts_file:
            _load_known_hosts(client, target, hostport)
        elif not accept_unknown_hosts:
            raise HostKeyError("no known_hosts file is configured for %s (%s): cannot verify "
                               "its host key" % (target.host, hostport), **where)
        client.set_missing_host_key_policy(
            _AcceptUnknownHost() if accept_unknown_hosts else _RejectUnknownHost())
        if not target.key_file:
            raise SSHError("no SSH key file is configured for %s" % target.host, **where)
        with open(target.key_file, "rb"):
            pass    # fail here with a clear message rather than deep inside paramiko
        client.connect(target.address, port=target.port, username=target.user,
                       key_filename=target.key_file, allow_agent=False, look_for_keys=False,
                       timeout=target.connect_timeout, banner_timeout=target.connect_timeout,
                       auth_timeout=target.connect_timeout, sock=sock)
        return client
    except SSHError:
        client.close()
        raise
    except (paramiko.SSHException, EnvironmentError, EOFError) as exc:   # socket errors too
        client.close()
        raise _connect_error(exc, target, hostport, where)


def _load_known_hosts(client, target, hostport):
    try:
        # "system" host keys are never written back: known_hosts stays read-only
        client.load_system_host_keys(target.known_hosts_file)
    except (EnvironmentError, paramiko.hostkeys.InvalidHostKey) as exc:
        raise HostKeyError("cannot use known_hosts file %s to verify %s (%s): %s" % (
            target.known_hosts_file, target.host, hostport, exc),
            known_hosts_file=target.known_hosts_file, **target.where())


def _is_transient(exc):
    """A connect failure worth another attempt: refused, reset, EOF, a broken banner. Never
    host keys, authentication or name resolution: retrying cannot fix those."""
    if isinstance(exc, (_UnknownHostKey, paramiko.BadHostKeyException,
                        paramiko.AuthenticationException, socket.gaierror, socket.timeout,
                        paramiko.ChannelException)):
        return False
    if isinstance(exc, (ConnectionError, EOFError, paramiko.ssh_exception.NoValidConnectionsError)):
        return True
    return isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower()


def _connect_error(exc, target, hostport, where):
    """The typed error for a failed connect, naming what to fix."""
    known = target.known_hosts_file
    if isinstance(exc, _UnknownHostKey):
        name = hostport if target.port != 22 else target.address
        return HostKeyError(
            "host key of %s (%s) is not in %s: refused to connect, nothing was run. It offered "
            "%s; verify that out of band, then add the line '%s <type> <key>' to %s "
            "(ssh-keyscan -p %d %s prints it)" % (
                target.host, hostport, known, _key_text(exc.key), name, known, target.port,
                target.address),
            known_hosts_file=known, **where)
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyError(
            "host key of %s (%s) does NOT match %s (got %s, expected %s): possible "
            "man-in-the-middle, or the host was reinstalled. Verify, then fix its line in %s" % (
                target.host, hostport, known, _key_text(exc.key),
                _key_text(exc.expected_key), known),
            known_hosts_file=known, **where)
    if isinstance(exc, paramiko.AuthenticationException):
        reason = "authentication as %r with key file %s was refused (%s)" % (
            target.user, target.key_file, exc)
    elif isinstance(exc, socket.gaierror):
        reason = "cannot resolve %r (%s)" % (target.address, exc)
    elif isinstance(exc, socket.timeout):
        reason = "timed out after %gs" % target.connect_timeout
    elif isinstance(exc, paramiko.ChannelException):
        reason = "the jump host could not open a connection to it (%s)" % exc
    elif isinstance(exc, EnvironmentError) and getattr(exc, "filename", None) == target.key_file:
        reason = "the key file %s cannot be read (%s)" % (target.key_file, exc.strerror)
    else:
        reason = str(exc) or type(exc).__name__
    return SSHError("SSH to %s (%s@%s) failed: %s" % (target.host, target.user, hostport, reason),
                    reason=reason, transient=_is_transient(exc) or None, **where)


class SSHSession(object):
    """One SSH connection to a target (through its jump host, if any). Use as a context
    manager, or call open()/close()."""

    def __init__(self, target, accept_unknown_hosts=False):
        self.target = target
        self.accept_unknown_hosts = accept_unknown_hosts
        self._clients = []      # jump clients first, the target's last
        self._sftp = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        self.close()

    @property
    def is_open(self):
        transport = self._clients[-1].get_transport() if self._clients else None
        return bool(transport and transport.is_active())

    def open(self):
        """Connect (the jump host first), retrying a transient failure (see _is_transient)
        connect_retries times with a short backoff."""
        attempts = self.target.connect_retries + 1
        attempt = 0
        while not self._clients:
            attempt += 1
            try:
                self._open_chain(self.target)
            except SSHError as exc:
                self.close()
                if not exc.details.get("transient") or attempt >= attempts:
                    raise _with_attempts(exc, attempt, attempts)
                LOG.warning("SSH to %s, attempt %d of %d: %s; trying again", self.target.host,
                            attempt, attempts, exc.message)
                time.sleep(CONNECT_BACKOFF[min(attempt, len(CONNECT_BACKOFF)) - 1])
            except BaseException:
                self.close()
                raise
        return self

    def _open_chain(self, target):
        sock = None
        if target.jump is not None:
            jump_transport = self._open_chain(target.jump).get_transport()
            try:
                sock = jump_transport.open_channel(
                    "direct-tcpip", (target.address, target.port), ("127.0.0.1", 0),
                    timeout=target.connect_timeout)
            except (paramiko.SSHException, socket.error) as exc:
                raise _connect_error(exc, target, "[%s]:%d" % (target.address, target.port),
                                     target.where(jump=target.jump.endpoint))
        client = _connect_client(target, sock, self.accept_unknown_hosts)
        self._clients.append(client)
        return client

    def close(self):
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        while self._clients:
            self._clients.pop().close()

    def _transport(self):
        if not self.is_open:
            raise SSHError("the SSH session to %s is not open" % self.target.host,
                           **self.target.where())
        return self._clients[-1].get_transport()

    def run(self, argv, timeout=None, stdin_text=None, check=False, kill_on_timeout=True):
        """Run argv on the host; returns a CommandResult. Raises CommandError on timeout, and
        on a non-zero exit when check is true. Unless kill_on_timeout is false (for commands
        that must not die half-way), the host itself stops the command after `timeout`
        (bound_on_host); should it not report back in time, SIGTERM is requested as well."""
        command = quote_argv(argv)
        timeout = self.target.command_timeout if timeout is None else float(timeout)
        host = self.target.host
        sent, wait = command, timeout
        if kill_on_timeout:
            sent = quote_argv(bound_on_host(argv, timeout))
            wait = timeout + KILL_AFTER + HOST_GRACE
        LOG.debug("ssh %s: %s", host, sent)
        started = time.monotonic()
        deadline = started + wait
        transport = self._transport()
        channel, exit_code = None, None
        try:
            channel = transport.open_session(timeout=self.target.connect_timeout)
            channel.exec_command(sent)
            if stdin_text is not None:
                data = stdin_text.encode("utf-8") if isinstance(stdin_text, str) else stdin_text
                channel.settimeout(max(0.1, deadline - time.monotonic()))
                channel.sendall(data)
            channel.shutdown_write()    # stdin closed: nothing can wait on it
            stdout, stderr, exit_code = _collect(channel, deadline)
        except socket.timeout:
            stdout, stderr, exit_code = [], [], None
        except (paramiko.SSHException, EOFError, socket.error) as exc:
            raise SSHError("the SSH connection to %s broke while running %s: %s"
                           % (host, command, exc or type(exc).__name__),
                           **self.target.where(command=command))
        finally:
            if channel is not None:
                if exit_code is None and kill_on_timeout:
                    _send_signal(channel, "TERM")
                channel.close()
        result = CommandResult(list(argv), exit_code, _text(stdout), _text(stderr),
                               round(time.monotonic() - started, 3))
        evidence = dict(host=host, command=command, exit_code=exit_code,
                        stderr_tail=tail(result.stderr), stdout_tail=tail(result.stdout))
        if kill_on_timeout and _stopped_on_host(result, timeout):
            evidence.update(exit_code=None, host_exit_code=exit_code)
            raise CommandError("command on %s timed out after %gs: %s; it was stopped on the "
                               "host (timeout --kill-after=%ds)" % (host, timeout, command,
                                                                    KILL_AFTER),
                               timed_out=True, timeout_s=timeout, stopped_on_host=True,
                               **evidence)
        if kill_on_timeout and _wrapper_missing(result):
            raise CommandError("command on %s could not run: coreutils `timeout` (which bounds "
                               "every command on the host) is missing where the command runs: "
                               "%s" % (host, _last_line(result.stderr)), **evidence)
        if exit_code is None:
            raise CommandError("command on %s timed out after %gs: %s; it may still be running%s"
                               % (host, wait, command, " (SIGTERM was requested)"
                                  if kill_on_timeout else ""),
                               timed_out=True, timeout_s=wait, **evidence)
        if check and exit_code != 0:
            raise CommandError("command on %s exited %d: %s: %s" % (
                host, exit_code, command, _last_line(result.stderr)), **evidence)
        return result

    def _sftp_client(self):
        if self._sftp is None:
            self._sftp = self._open_sftp()
        return self._sftp

    def _open_sftp(self):
        """An SFTP client whose set-up is bounded: paramiko's from_transport would wait up to
        an hour for the channel and forever for the version handshake."""
        target, channel = self.target, None
        try:
            channel = self._transport().open_session(timeout=target.connect_timeout)
            channel.settimeout(target.connect_timeout)    # bounds the version handshake
            channel.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(channel)
        except (socket.timeout, paramiko.SSHException, EOFError, socket.error) as exc:
            if channel is not None:
                channel.close()
            timed_out = isinstance(exc, socket.timeout) or "timeout" in str(exc).lower()
            reason = ("timed out after %gs" % target.connect_timeout if timed_out
                      else str(exc) or type(exc).__name__)
            raise CommandError("SFTP set-up on %s failed: %s (is the sftp subsystem enabled "
                               "in its sshd_config?)" % (target.host, reason),
                               **target.where(command="sftp", timed_out=timed_out or None,
                                              timeout_s=target.connect_timeout))
        # each SFTP request moves a few hundred bytes: a stall of connect_timeout is a failure
        channel.settimeout(target.connect_timeout)
        return sftp

    def upload(self, data, remote_path, mode=0o600):
        """Write data (bytes or str) to remote_path over SFTP; the mode is set before any byte
        is written. Pass a path from `mktemp` so the file is private from its creation."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            with self._sftp_client().open(remote_path, "wb") as remote:
                remote.chmod(mode)
                remote.write(data)
        except (IOError, paramiko.SSHException) as exc:
            raise CommandError("upload to %s:%s failed: %s" % (self.target.host, remote_path, exc),
                               host=self.target.host, command="sftp put %s" % remote_path)

    def remove(self, remote_path):
        """Delete remote_path over SFTP; a file that is already gone is fine."""
        try:
            self._sftp_client().remove(remote_path)
        except (IOError, paramiko.SSHException) as exc:
            if getattr(exc, "errno", None) != errno.ENOENT:
                raise CommandError(
                    "removing %s:%s failed: %s" % (self.target.host, remote_path, exc),
                    host=self.target.host, command="sftp rm %s" % remote_path)


def _collect(channel, deadline):
    """Read stdout and stderr until EOF, then the exit status; None as status on timeout."""
    stdout, stderr = [], []
    while True:
        got_data = False
        while channel.recv_ready():
            stdout.append(channel.recv(READ_CHUNK))
            got_data = True
        while channel.recv_stderr_ready():
            stderr.append(channel.recv_stderr(READ_CHUNK))
            got_data = True
        if (channel.eof_received or channel.closed) and not (
                channel.recv_ready() or channel.recv_stderr_ready()):
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return stdout, stderr, None
        if not got_data:
            # the channel's pipe becomes readable on stdout or stderr data, EOF and close
            select.select([channel], [], [], min(remaining, POLL_SECONDS))
    while not channel.exit_status_ready():    # sent right after EOF by OpenSSH
        if time.monotonic() >= deadline:
            return stdout, stderr, None
        time.sleep(0.005)
    status = channel.recv_exit_status()
    transport = channel.get_transport()
    if status == -1 and not (transport and transport.is_active()):
        # paramiko's -1 means no exit status came: here the connection itself went away
        raise EOFError("the connection closed before the command's exit status arrived")
    return stdout, stderr, status


def _send_signal(channel, name):
    """Ask sshd to signal the command (RFC 4254 6.9), since closing the channel leaves it
    running. Best effort: OpenSSH signals the process group, but refuses for root logins."""
    try:
        msg = paramiko.Message()
        msg.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
        msg.add_int(channel.remote_chanid)
        msg.add_string("signal")
        msg.add_boolean(False)
        msg.add_string(name)
        channel.transport._send_user_message(msg)   # paramiko has no public call for this
    except Exception as exc:    # a refused or failed signal must not hide the timeout
        LOG.debug("could not send SIG%s: %s", name, exc)


def _stopped_on_host(result, timeout):
    """The host's `timeout` ended the command: its exit status, at or past the bound."""
    return result.exit_code in TIMED_OUT_CODES and result.duration >= timeout


def _wrapper_missing(result):
    """`timeout` itself was not found (coreutils' own 127 says 'failed to run command')."""
    return (result.exit_code in (126, 127) and "timeout" in result.stderr and
            "failed to run command" not in result.stderr)


def _with_attempts(exc, attempt, attempts):
    """The final connect error, saying how many attempts were made when retries are on."""
    if attempts > 1:
        plural = "s" if attempt > 1 else ""
        exc.message = "%s (%d attempt%s made)" % (exc.message, attempt, plural)
        exc.args = (exc.message,)
        exc.details["attempts"] = attempt
    return exc


def _text(chunks):
    return b"".join(chunks).decode("utf-8", "replace")


def _last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no stderr)"


class SSHPool(object):
    """One SSH session per host, for the length of a step: get(host) connects on first use
    and returns the same open session afterwards (a dropped one is replaced). Use as a context
    manager: leaving it closes every session. target_for(host) -> SSHTarget, or None for a
    host nothing is configured for."""

    def __init__(self, target_for, accept_unknown_hosts=False, session_factory=None):
        self.target_for = target_for
        self.accept_unknown_hosts = accept_unknown_hosts
        self._session_factory = session_factory
        self._sessions = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def get(self, host):
        session = self._sessions.pop(host, None)
        if session is not None:
            if session.is_open:
                self._sessions[host] = session
                return session
            session.close()     # the connection dropped: release it and connect afresh
        target = self.target_for(host)
        if target is None:
            raise InputError("no SSH target is configured for host %r" % host, host=host)
        factory = self._session_factory or SSHSession   # looked up now: tests replace it
        session = factory(target, accept_unknown_hosts=self.accept_unknown_hosts)
        session.open()
        self._sessions[host] = session
        return session

    def close(self):
        """Close every session; a failing close never hides the step's own outcome."""
        while self._sessions:
            try:
                self._sessions.popitem()[1].close()
            except Exception:  # pylint: disable=broad-except
                LOG.debug("closing an SSH session failed", exc_info=True)
