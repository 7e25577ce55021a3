"""`lab/up`: from nothing (or a stopped lab) to a ready cloud, printing progress per step."""
import shutil
import subprocess
import threading
import time
import urllib.request

from . import configs, hosts, install, procs
from .procs import LabError
from .settings import FILES

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
API_SERVICES = [  # name, labwsgi factory, port key
    ("keystone", "keystone", "keystone"),
    ("placement", "placement", "placement"),
    ("nova-api", "nova", "nova-api"),
    ("cinder-api", "cinder", "cinder-api"),
    ("neutron-standin", "neutron", "neutron-standin"),
]


class Step:
    """Prints `[  t s] what ... done (x s)` so a slow step is visible while it runs."""

    def __init__(self, t0):
        self.t0 = t0

    def __call__(self, what):
        return _StepCtx(self.t0, what)


class _StepCtx:
    def __init__(self, t0, what):
        self.t0, self.what = t0, what

    def __enter__(self):
        self.start = time.monotonic()
        print("[%5.1fs] %s ..." % (self.start - self.t0, self.what), flush=True)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            print("[%5.1fs]   done: %s (%.1f s)" % (
                time.monotonic() - self.t0, self.what, time.monotonic() - self.start), flush=True)


def check_ports(s):
    """Refuse to start over a port in use; name it and the setting that moves it."""
    busy = [(addr, port, what, var) for addr, port, what, var in s.listeners()
            if not procs.port_free(addr, port)]
    if busy:
        lines = ["  %s:%d (%s) is in use; set %s=<free port> to move it" % b for b in busy]
        raise LabError("ports the lab needs are taken by another process:\n" + "\n".join(lines) +
                       "\n  (if that is this lab from an earlier run, `lab/down` first)")


def up(s):
    t0 = time.monotonic()
    step = Step(t0)
    from .status import running_services, ready
    if running_services(s):
        if ready(s, quiet=True):
            print("lab already up and ready (%s); `lab/down` to stop it" % s.lab_dir)
            return 0
        print("lab partly running: stopping it first")
        from .down import down
        down(s)
    check_ports(s)
    s.lab_dir.mkdir(parents=True, exist_ok=True)
    with step("install what is missing"):
        install.ensure_apt(print)
        install.ensure_venv(s, print)
    with step("wipe state and write configuration"):
        for d in ("data", "run", "logs", "state", "rabbit", "etc", "hosts", "ssh"):
            shutil.rmtree(str(s.path(d)), ignore_errors=True)
        for d in (s.data / "nova" / "instances", s.data / "cinder", s.run, s.logs,
                  s.state / "domains", s.state / "refuse-detach", s.path("rabbit")):
            d.mkdir(parents=True, exist_ok=True)
        configs.write_all(s)
        configs.write_lab_json(s)
        hosts.write_host_bins(s)
        hosts.ensure_initiator(s)
    with step("start RabbitMQ; database set-up in parallel"):
        _start_rabbit(s)
        _parallel([lambda: _keystone_db(s), lambda: _placement_db(s),
                   lambda: _nova_db(s), lambda: _cinder_db(s)])
        _wait_rabbit(s)
        _wal(s)
    with step("start every API and sshd; seed Keystone"):
        # The APIs start together (each takes seconds to import) and need Keystone only at
        # their first request; the conductor and schedulers log in at start: after the seed.
        for name, factory, _port in API_SERVICES:
            _start_api(s, name, factory)
        hosts.start_sshd(s)
        _wait_http(s, "keystone", 60)
        procs.run(s, [s.bin("python"), str(FILES / "seed.py"), "keystone",
                      str(s.path("lab.json")), str(s.path("secrets.json"))],
                  "seeding Keystone", timeout=120, extra_env=_os_env(s))
        for name in ("nova-conductor", "nova-scheduler", "cinder-scheduler"):
            start_daemon(s, name)
        for name, _f, _p in API_SERVICES[1:]:
            _wait_http(s, name, 90)
    with step("cinder-volume and nova-compute once their peers consume their queues"):
        # cinder-volume announces its pools once at start: a scheduler not yet listening
        # misses it, and every volume create fails (No valid backend) for about a minute.
        procs.wait_for("a consumer on RabbitMQ queue 'cinder-scheduler'",
                       lambda: _queue_has_consumer(s, "cinder-scheduler"), 90,
                       interval=0.5, proc_name="cinder-scheduler", settings=s)
        start_daemon(s, "cinder-volume")
        procs.wait_for("a consumer on RabbitMQ queue 'conductor'",
                       lambda: _queue_has_consumer(s, "conductor"), 90,
                       interval=0.5, proc_name="nova-conductor", settings=s)
        start_daemon(s, "nova-compute")
    with step("compute and volume services up; map the compute host; the lab's flavor"):
        def compute():
            wait_service_up(s, "compute", 120)
            procs.run(s, [s.bin("nova-manage"), "--config-file",
                          str(s.etc / "nova" / "nova.conf"), "cell_v2", "discover_hosts"],
                      "nova-manage cell_v2 discover_hosts")
        _parallel([compute, lambda: wait_service_up(s, "volume", 90),
                   lambda: procs.run(s, [s.bin("python"), str(FILES / "seed.py"), "compute",
                                         str(s.path("lab.json")), str(s.path("secrets.json"))],
                                     "seeding Nova", timeout=120, extra_env=_os_env(s))])
    with step("readiness check"):
        procs.wait_for("every readiness check to pass", lambda: ready(s, quiet=True), 60,
                       interval=1)
    print("READY in %.1f s. Lab dir %s; `lab/env` prints the environment; `lab/status`; "
          "`lab/down`." % (time.monotonic() - t0, s.lab_dir))
    return 0


def start_daemon(s, name):
    """Start one of the lab's (non-HTTP) OpenStack services with its configuration."""
    project = name.split("-")[0]
    procs.start(s, name, [s.bin(name), "--config-file",
                          str(s.etc / project / ("%s.conf" % project))])


def wait_service_up(s, kind, timeout=90):
    """kind: 'compute' (nova-compute) or 'volume' (cinder-volume)."""
    name = "nova-compute" if kind == "compute" else "cinder-volume"
    procs.wait_for("%s to report up" % name, lambda: _service_up(s, kind), timeout,
                   interval=0.5, proc_name=name, settings=s)


def _os_env(s):
    return {"OS_CLIENT_CONFIG_FILE": str(s.path("clouds.yaml"))}


def _parallel(funcs):
    errors = []

    def wrap(fn):
        try:
            fn()
        except Exception as exc:  # reported below, after every branch finished
            errors.append(exc)
    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in funcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _keystone_db(s):
    conf = ["--config-file", str(s.etc / "keystone" / "keystone.conf")]
    km = s.bin("keystone-manage")
    procs.run(s, [km] + conf + ["db_sync"], "keystone-manage db_sync")
    for cmd in ("fernet_setup", "credential_setup"):
        procs.run(s, [km] + conf + [cmd, "--keystone-user", "root", "--keystone-group", "root"],
                  "keystone-manage " + cmd)
    url = s.keystone_url + "/"
    pw = configs.passwords(s)
    # The password goes by environment, never on a command line.
    procs.run(s, [km] + conf + ["bootstrap", "--bootstrap-admin-url", url,
                                "--bootstrap-internal-url", url, "--bootstrap-public-url", url,
                                "--bootstrap-region-id", configs.REGION],
              "keystone-manage bootstrap", extra_env={"OS_BOOTSTRAP_PASSWORD": pw["admin"]})


def _wal(s):
    """WAL journal mode, kept in each database file: readers stop blocking writers."""
    import sqlite3
    for db in sorted(s.data.glob("*.db")):
        with sqlite3.connect(str(db)) as c:
            c.execute("PRAGMA journal_mode=WAL")


def _placement_db(s):
    procs.run(s, [s.bin("placement-manage"), "--config-file",
                  str(s.etc / "placement" / "placement.conf"), "db", "sync"],
              "placement-manage db sync")


def _nova_db(s):
    nm = [s.bin("nova-manage"), "--config-file", str(s.etc / "nova" / "nova.conf")]
    procs.run(s, nm + ["api_db", "sync"], "nova-manage api_db sync")
    procs.run(s, nm + ["cell_v2", "map_cell0", "--database_connection",
                       configs.sqlite_url(s, "nova_cell0")], "nova-manage map_cell0")
    procs.run(s, nm + ["cell_v2", "create_cell", "--name", "cell1"], "nova-manage create_cell")
    procs.run(s, nm + ["db", "sync"], "nova-manage db sync")


def _cinder_db(s):
    procs.run(s, [s.bin("cinder-manage"), "--config-file", str(s.etc / "cinder" / "cinder.conf"),
                  "db", "sync"], "cinder-manage db sync")


def rabbitmqctl(s, *args, timeout=30):
    env = dict(procs.lab_env(s), **configs.rabbit_env(s))
    return subprocess.run([RABBIT_BIN + "/rabbitmqctl"] + list(args), capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def _start_rabbit(s):
    for d in ("mnesia", "log"):
        s.path("rabbit", d).mkdir(parents=True, exist_ok=True)
    procs.start(s, "rabbitmq", [RABBIT_BIN + "/rabbitmq-server"], extra_env=configs.rabbit_env(s))


def _wait_rabbit(s):
    def started():
        try:
            return rabbitmqctl(s, "await_startup", "--timeout", "5", timeout=15).returncode == 0
        except subprocess.TimeoutExpired:
            return False
    procs.wait_for("RabbitMQ to start", started, 90, interval=0.5, proc_name="rabbitmq",
                   settings=s)


def _queue_has_consumer(s, queue):
    out = rabbitmqctl(s, "list_queues", "name", "consumers", "--quiet").stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue and parts[1].isdigit() and int(parts[1]) > 0:
            return True
    return False


def _start_api(s, name, factory):
    port = s.ports[name]
    procs.start(s, name, [s.bin("gunicorn"), "--bind", "%s:%d" % (s.ip, port),
                          "--workers", "1", "--threads", "8",
                          # longer than openstacksdk's 2 s polling, or it races dropped sockets
                          "--keep-alive", "75", "--timeout", "120",
                          "--control-socket", str(s.run / ("%s.ctl" % name)),
                          "--chdir", str(FILES), "labwsgi:app(%r)" % factory])


def _wait_http(s, name, timeout):
    def answers():
        try:
            with urllib.request.urlopen(s.url(name, "/"), timeout=3) as resp:
                return resp.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False
    procs.wait_for("%s to answer HTTP on port %d" % (name, s.ports[name]), answers, timeout,
                   interval=0.3, proc_name=name, settings=s)


def _service_up(s, kind):
    script = ("import openstack,sys\n"
              "c=openstack.connect(cloud='lab-admin')\n"
              "svcs=list(c.compute.services()) if sys.argv[1]=='compute' else "
              "list(c.block_storage.services())\n"
              "want='nova-compute' if sys.argv[1]=='compute' else 'cinder-volume'\n"
              "ok=[x for x in svcs if x.binary==want and x.state=='up' and x.status=='enabled']\n"
              "sys.exit(0 if ok else 1)\n")
    proc = procs.run(s, [s.bin("python"), "-c", script, kind], "service check", timeout=60,
                     extra_env=_os_env(s), check=False)
    return proc.returncode == 0
