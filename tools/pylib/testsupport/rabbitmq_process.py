"""A private RabbitMQ for the broker tier and the sensor benchmark: Debian's rabbitmq-server run
as a child process on loopback, with its own node name, ports (chosen free at start), epmd and
mnesia directory under a temporary directory. Never the lab's broker (5692/4371/25692).

The recipe follows lab/labctl/configs.py rabbit_env() and lab/labctl/up.py: RABBITMQ_* variables
for every path and port, and ERL_EPMD_PORT. Differences, and why:
- epmd is started here, in the foreground, as our own child: the one Erlang would start itself
  daemonises (setsid) and would outlive us;
- readiness is an AMQP connection, not `rabbitmqctl await_startup`, so no CLI Erlang node is ever
  started (it would be one more process to reap);
- the broker runs in its own session (process group): stop() and kill() reach beam.smp and its
  helpers (erl_child_setup, inet_gethost) by group;
- LAB_OWNER/LAB_DIR are removed from the environment, so `lab/down` never mistakes it for a
  lab process; DV_TEST_BROKER=<its directory> marks it instead.

Usage: broker = RabbitMQ(tmpdir).start(); broker.url; broker.kill(); broker.start(); broker.stop().
Its data directory survives kill() and stop(), so a restart keeps durable queues and persistent
messages, as a real broker restart does."""
import os
import signal
import socket
import subprocess
import time

import kombu

RABBIT_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD_CANDIDATES = ("/usr/bin/epmd", "/usr/lib/erlang/bin/epmd")
AMQP_ADDRESS = "127.0.0.5"  # loopback, but not the lab's 127.0.0.1
LOCAL = "127.0.0.1"          # epmd and Erlang distribution (the node registers with local epmd)
MARKER = "DV_TEST_BROKER"
LAB_PORTS = {5692, 4371, 25692}


def available():
    """Why a private broker cannot run here, or None when it can."""
    if not os.access(RABBIT_SERVER, os.X_OK):
        return "rabbitmq-server is not installed (%s): lab/install installs it" % RABBIT_SERVER
    if not _epmd():
        return "epmd (Erlang) is not installed"
    return None


def _epmd():
    return next((p for p in EPMD_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port(address):
    """A TCP port free on `address` now (the OS picks it; never one of the lab's)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
            port = sock.getsockname()[1]
        if port not in LAB_PORTS:
            return port


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class RabbitMQ:
    def __init__(self, base_dir, name="dvtest"):
        self.dir = os.path.abspath(str(base_dir))
        self.node = "%s@localhost" % name
        self.amqp_port = free_port(AMQP_ADDRESS)
        self.dist_port = free_port(LOCAL)
        self.epmd_port = free_port(LOCAL)
        self.url = "amqp://guest:guest@%s:%d//" % (AMQP_ADDRESS, self.amqp_port)
        self.log_path = os.path.join(self.dir, "server.log")
        self._server = None
        self._epmd = None
        for sub in ("etc", "mnesia", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self._write("etc/rabbitmq.conf", "\n".join([
            "listeners.tcp.default = %s:%d" % (AMQP_ADDRESS, self.amqp_port),
            "loopback_users.guest = true",      # 127.0.0.5 is loopback: guest may connect
            "disk_free_limit.absolute = 10MB",  # a tmp file system must not block publishers
            "log.file.level = info", ""]))
        self._write("etc/rabbitmq-env.conf", "")  # not /etc/rabbitmq/rabbitmq-env.conf
        self._write("etc/enabled_plugins", "[].\n")

    def _write(self, rel, text):
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(text)

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("LAB_OWNER", "LAB_DIR", "PYTHONPATH") and not k.startswith("RABBITMQ_")}
        dist_args = "-kernel inet_dist_use_interface {127,0,0,1}"
        etc = os.path.join(self.dir, "etc")
        env.update({
            MARKER: self.dir,
            "HOME": self.dir,  # the Erlang cookie goes here
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": AMQP_ADDRESS,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": LOCAL,
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": dist_args,
            "RABBITMQ_CTL_ERL_ARGS": dist_args,
            "RABBITMQ_CONFIG_FILE": os.path.join(etc, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(etc, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(etc, "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(etc, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "rabbit.pid"),
        })
        return env

    @property
    def running(self):
        return self._server is not None and self._server.poll() is None

    def start(self, timeout=60):
        """Start (or restart) the broker and wait until it accepts AMQP connections."""
        if self.running:
            return self
        env = self.env()
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = subprocess.Popen(
                [_epmd(), "-port", str(self.epmd_port), "-address", LOCAL],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=env, start_new_session=True)
        with open(self.log_path, "ab") as log:
            self._server = subprocess.Popen(
                [RABBIT_SERVER], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=self.dir, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self._server.poll() is not None:
                raise RuntimeError("rabbitmq-server exited with %s; see %s"
                                   % (self._server.returncode, self.log_path))
            try:
                with kombu.Connection(self.url, connect_timeout=1) as conn:
                    conn.connect()
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("RabbitMQ did not accept connections within %s s; see %s"
                                       % (timeout, self.log_path))
                time.sleep(0.2)

    def kill(self):
        """SIGKILL: the broker dies at once, as in a crash (its data directory stays)."""
        if self._server is not None:
            _signal_group(self._server, signal.SIGKILL)
            self._server.wait(timeout=30)
            self._server = None

    def stop(self, grace=20):
        """SIGTERM (RabbitMQ shuts down cleanly on it), then SIGKILL after `grace` seconds."""
        if self._server is not None:
            _signal_group(self._server, signal.SIGTERM)
            try:
                self._server.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            self.kill()

    def close(self):
        """Stop the broker and its epmd (end of the session)."""
        try:
            self.stop()
        finally:
            if self._epmd is not None:
                _signal_group(self._epmd, signal.SIGKILL)
                self._epmd.wait(timeout=10)
                self._epmd = None


def queue_depth(url, queue):
    """Messages ready in a queue (a passive declare: the queue must exist)."""
    with kombu.Connection(url, connect_timeout=5) as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count
