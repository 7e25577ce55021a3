"""`lab/down`: stop exactly the lab's own processes and undo what it created outside its dir."""
import json
import os
import subprocess
import time

from . import procs
from .status import SERVICES


def down(s):
    t0 = time.monotonic()
    # Everything but RabbitMQ first, together: nova-compute may never exit on SIGTERM once
    # RabbitMQ is gone.
    names = [n for n in SERVICES if n != "rabbitmq" and procs.alive(procs.read_pid(s, n))]
    if names:
        print("  stopping %s" % ", ".join(names), flush=True)
        procs.stop_services(s, names, grace=10)
    if procs.alive(procs.read_pid(s, "rabbitmq")):
        print("  stopping rabbitmq", flush=True)
        from .up import rabbitmqctl
        try:
            rabbitmqctl(s, "stop", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        procs.stop_service(s, "rabbitmq", grace=10)
    # Whatever else carries the lab's marker: epmd, rabbitmqctl CLI nodes, privsep helpers,
    # ssh sessions, notification listeners started by tests.
    leftovers = procs.marked_pids(s)
    if leftovers:
        print("  stopping %d more lab process(es): %s" % (
            len(leftovers), ", ".join("%d (%s)" % (p, _comm(p)) for p in leftovers)))
        procs.terminate(leftovers, grace=5)
    for name in SERVICES:
        (s.run / ("%s.pid" % name)).unlink(missing_ok=True)
    _undo_outside(s)
    still = [(a, p, w) for a, p, w, _v in s.listeners() if procs.port_open(a, p, timeout=0.2)]
    for a, p, w in still:
        print("  WARNING: %s:%d (%s) still answers" % (a, p, w))
    print("lab down in %.1f s" % (time.monotonic() - t0))
    return 1 if still else 0


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def _undo_outside(s):
    record = s.path("created-outside.json")
    if not record.exists():
        return
    for path in json.loads(record.read_text()):
        try:
            if os.path.isdir(path):
                os.rmdir(path)
            else:
                os.unlink(path)
            print("  removed %s (the lab created it)" % path)
        except OSError as exc:
            print("  could not remove %s: %s" % (path, exc))
    record.unlink()
