"""A real OpenSSH sshd for the unit tests: runs as the test's own child process on 127.0.0.1
at a free port, with a fresh host key, a fresh client key, key auth only and a known_hosts
file, so the SSH transport is tested against the real protocol, host-key checks and SFTP.

Tests put small fake commands (nova-manage, virsh, docker) in `server.bin_dir`, which comes
first on the session PATH (sshd SetEnv). Those fakes only stand in for the cloud tools in the
transport and parser unit tests; the lab tier runs the real ones."""

import getpass
import os
import shutil
import socket
import stat
import subprocess
import time

import pytest

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"    # sshd (as root) chroots its unprivileged child here


def require_sshd():
    """Skip the calling test when OpenSSH's server or ssh-keygen is not installed."""
    missing = [p for p in (SSHD, shutil.which("ssh-keygen") or "ssh-keygen")
               if not os.path.isfile(p)]
    if missing:
        pytest.skip("%s not installed: run lab/install (it installs openssh-server)"
                    % ", ".join(missing))


def ensure_privsep_dir():
    """Create sshd's privilege-separation directory if needed (never removed: every sshd on
    this machine, the lab's included, needs it while it runs); True if this call made it."""
    if os.geteuid() != 0 or os.path.isdir(PRIVSEP_DIR):
        return False    # a non-root sshd does not use it
    os.makedirs(PRIVSEP_DIR, mode=0o755)
    return True


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path, comment):
    """A new passphrase-less ed25519 key pair at path and path.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, stdin=subprocess.DEVNULL)
    return str(path)


def public_key(path):
    """'<type> <base64>' of the public half of the key at path."""
    with open(str(path) + ".pub") as f:
        return " ".join(f.read().split()[:2])


class SSHServer(object):
    """One sshd under workdir. start() / stop(); install() puts a fake command on its PATH."""

    def __init__(self, workdir, name="sshd", env=None, log_level="VERBOSE"):
        self.dir = os.path.join(str(workdir), name)
        self.name = name
        self.bin_dir = os.path.join(self.dir, "bin")
        self.address = "127.0.0.1"
        self.port = None
        self.user = getpass.getuser()
        self.host_key = os.path.join(self.dir, "host_key")
        self.client_key = os.path.join(self.dir, "client_key")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.log_file = os.path.join(self.dir, "sshd.log")
        self.env = dict(env or {})
        self.log_level = log_level    # DEBUG1 also logs forwarding (direct-tcpip) requests
        self.process = None

    def start(self, timeout=10):
        os.makedirs(self.bin_dir, exist_ok=True)
        keygen(self.host_key, "test-host-" + self.name)
        keygen(self.client_key, "test-client-" + self.name)
        with open(os.path.join(self.dir, "authorized_keys"), "w") as f:
            f.write(public_key(self.client_key) + "\n")
        for _attempt in range(3):    # another process may take the free port first
            self.port = free_port()
            self._write_config()
            with open(self.log_file, "ab") as log:
                self.process = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", os.path.join(self.dir, "sshd_config")],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if self._wait_ready(timeout):
                with open(self.known_hosts, "w") as f:
                    f.write(self.known_hosts_line() + "\n")
                return self
            self.stop()
        raise RuntimeError("sshd did not start; its log:\n" + self.log())

    def _write_config(self):
        path = "PATH=%s:/usr/bin:/bin" % self.bin_dir
        # SHLVL=1: bash then skips ~/.bashrc for ssh commands (it sources it only at level 1);
        # root's here runs `pyenv init` (~0.4 s a command) and puts its shims before the fakes
        env = ["%s=%s" % kv for kv in sorted(self.env.items())]
        setenv = " ".join([path, "SHLVL=1"] + env)
        lines = [
            "ListenAddress %s:%d" % (self.address, self.port),
            "HostKey " + self.host_key,
            "PidFile none",
            "AuthorizedKeysFile " + os.path.join(self.dir, "authorized_keys"),
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "AllowTcpForwarding yes",
            "LogLevel " + self.log_level,
            "Subsystem sftp internal-sftp",
            "SetEnv " + setenv,
        ]
        with open(os.path.join(self.dir, "sshd_config"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _wait_ready(self, timeout):
        """True once the port answers with an SSH banner; False if sshd exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log(self):
        try:
            with open(self.log_file) as f:
                return f.read()
        except OSError:
            return ""

    def known_hosts_line(self, key_path=None):
        return "[%s]:%d %s" % (self.address, self.port, public_key(key_path or self.host_key))

    def target_args(self, **overrides):
        """Keyword arguments for dvremedy.adapters.sshclient.SSHTarget reaching this server."""
        args = dict(host="test-" + self.name, address=self.address, port=self.port,
                    user=self.user, key_file=self.client_key,
                    known_hosts_file=self.known_hosts, connect_timeout=5, command_timeout=20)
        args.update(overrides)
        return args

    def install(self, name, script):
        """Put an executable `name` with the given script text first on the session PATH."""
        path = os.path.join(self.bin_dir, name)
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path
