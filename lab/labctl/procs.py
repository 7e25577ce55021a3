"""Starting and stopping the lab's own processes, found by PID file and by an environment marker.

Every process the lab starts carries LAB_OWNER=<lab dir> in its environment, and so does every
process those start (gunicorn workers, epmd, privsep helpers, ssh sessions via sshd's SetEnv).
`down` stops exactly the processes carrying the marker: nothing else on the machine is touched.
"""
import os
import signal
import socket
import subprocess
import time

MARKER = "LAB_OWNER"


def lab_env(settings, extra=None):
    env = dict(os.environ)
    env[MARKER] = str(settings.lab_dir)
    env["LAB_DIR"] = str(settings.lab_dir)
    env["PATH"] = "%s:%s" % (settings.venv / "bin", env.get("PATH", "/usr/bin:/bin"))
    env.pop("PYTHONPATH", None)
    if extra:
        env.update(extra)
    return env


def start(settings, name, argv, extra_env=None, cwd=None):
    """Start argv in its own session, output to logs/NAME.log, PID to run/NAME.pid."""
    log = open(settings.logs / ("%s.log" % name), "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=lab_env(settings, extra_env), cwd=cwd or str(settings.lab_dir),
                            start_new_session=True)
    log.close()
    (settings.run / ("%s.pid" % name)).write_text("%d\n" % proc.pid)
    return proc.pid


def read_pid(settings, name):
    try:
        return int((settings.run / ("%s.pid" % name)).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def marked_pids(settings):
    """PIDs of every process whose environment carries this lab's marker."""
    want = ("%s=%s" % (MARKER, settings.lab_dir)).encode()
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                if want in f.read().split(b"\0"):
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def terminate(pids, grace=10.0, log=print):
    """SIGTERM, a bounded wait, then SIGKILL for whatever is left."""
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    stubborn = [p for p in pids if alive(p)]
    for pid in stubborn:
        log("  pid %d ignored SIGTERM for %.0f s: SIGKILL" % (pid, grace))
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in stubborn):
        time.sleep(0.05)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_services(settings, names, grace=10.0, log=print):
    """Stop services by their PID files, together: each one's whole process group (gunicorn
    workers included), SIGTERM then a shared bounded wait, then SIGKILL."""
    pids = []
    for name in names:
        pid = read_pid(settings, name)
        if pid and alive(pid):
            pids.extend(_group_members(pid) or [pid])
    terminate(pids, grace=grace, log=log)
    for name in names:
        (settings.run / ("%s.pid" % name)).unlink(missing_ok=True)


def stop_service(settings, name, grace=10.0, log=print):
    stop_services(settings, [name], grace=grace, log=log)


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def group_members(pgid):
    return _group_members(pgid)


def _group_members(pgid):
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().split(") ", 1)[1].split()
            if int(fields[2]) == pgid:
                members.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return members


def port_open(address, port, timeout=0.5):
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(address, port):
    """True when nothing listens on address:port and we could bind it."""
    if port_open(address, port, timeout=0.3):
        return False
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as servers bind: connections of an earlier run in TIME_WAIT do not make the port busy
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def wait_for(what, check, timeout, interval=0.25, log=print, proc_name=None, settings=None):
    """Poll check() until truthy; fail naming what and the log to read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if proc_name and settings and not alive(read_pid(settings, proc_name)):
            raise LabError("%s died while starting; see %s" % (
                proc_name, settings.logs / ("%s.log" % proc_name)))
        time.sleep(interval)
    hint = ""
    if proc_name and settings:
        hint = "; see %s" % (settings.logs / ("%s.log" % proc_name))
    raise LabError("timed out after %.0f s waiting for %s%s" % (timeout, what, hint))


def run(settings, argv, what, timeout=120, extra_env=None, check=True):
    """Run a set-up command to completion; on failure, name it and show the tail of its output."""
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=lab_env(settings, extra_env), timeout=timeout,
                          cwd=str(settings.lab_dir))
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise LabError("%s failed (exit %d): %s\n    %s" % (
            what, proc.returncode, " ".join(argv), "\n    ".join(tail)))
    return proc


class LabError(Exception):
    """A lab step failed; the message says which and what to look at."""
