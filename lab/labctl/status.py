"""`lab/status`: which lab processes run, which ports answer, whether the cloud is ready."""
import subprocess

from . import procs

SERVICES = ["rabbitmq", "keystone", "placement", "nova-api", "cinder-api", "neutron-standin",
            "nova-conductor", "nova-scheduler", "nova-compute", "cinder-scheduler",
            "cinder-volume", "sshd-hypervisor", "sshd-controller"]

_CLOUD_CHECK = r"""
import sys, openstack
c = openstack.connect(cloud='lab-admin')
problems = []
compute = [x for x in c.compute.services() if x.binary == 'nova-compute']
if not any(x.state == 'up' for x in compute):
    problems.append('nova-compute not up')
if not any(h.name == sys.argv[1] for h in c.compute.hypervisors()):
    problems.append('hypervisor %s not listed (host not mapped)' % sys.argv[1])
if not any(x.binary == 'cinder-volume' and x.state == 'up' for x in c.block_storage.services()):
    problems.append('cinder-volume not up')
elif not list(c.block_storage.backend_pools()):
    problems.append('the Cinder scheduler knows no backend pool yet')
print('; '.join(problems))
sys.exit(1 if problems else 0)
"""


def running_services(s):
    return [name for name in SERVICES if procs.alive(procs.read_pid(s, name))]


def ready(s, quiet=False):
    problems = []
    for name in SERVICES:
        if not procs.alive(procs.read_pid(s, name)):
            problems.append("%s not running" % name)
    for addr, port, what, _var in s.listeners():
        if what in ("epmd", "erlang-dist"):
            continue
        if not procs.port_open(addr, port):
            problems.append("%s not listening on %s:%d" % (what, addr, port))
    if not problems:
        try:
            proc = subprocess.run(
                [s.bin("python"), "-c", _CLOUD_CHECK, s.compute_host], capture_output=True,
                text=True, timeout=60, env=procs.lab_env(
                    s, {"OS_CLIENT_CONFIG_FILE": str(s.path("clouds.yaml"))}))
            if proc.returncode != 0:
                problems.append((proc.stdout.strip() or proc.stderr.strip()[-300:]))
        except subprocess.TimeoutExpired:
            problems.append("cloud check timed out after 60 s")
    if not quiet:
        for p in problems:
            print("  not ready: %s" % p)
    return not problems


def status(s):
    running = running_services(s)
    seen, total = set(), 0.0
    for name in SERVICES:
        pid = procs.read_pid(s, name)
        if name not in running:
            print("  %-17s stopped" % name)
            continue
        group = set(procs.group_members(pid) or [pid])  # gunicorn workers, forked children
        seen |= group
        rss = sum(procs.rss_mib(p) for p in group)
        total += rss
        print("  %-17s pid %-7d %6.0f MiB RSS" % (name, pid, rss))
    others = [p for p in procs.marked_pids(s) if p not in seen]  # epmd, helpers, sessions
    total += sum(procs.rss_mib(p) for p in others)
    if not running:
        print("lab is down (%s)" % s.lab_dir)
        return 3
    print("  all lab processes: %.0f MiB RSS (%d outside the services' groups)"
          % (total, len(others)))
    ok = ready(s)
    print("lab is %s" % ("READY" if ok else "NOT ready"))
    return 0 if ok else 1
