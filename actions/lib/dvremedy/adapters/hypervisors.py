"""The hypervisors' side of the audit: every domain's disks on every host, at no API cost.

One SSH connection per host, a bounded number of hosts at a time (threads: the work is waiting
on the network), and ONE remote command per host (libvirt.all_domains_disks: `virsh list --all
--name`, then `dumpxml` live and `--inactive` of each domain, with the configured virsh prefix).
A host that cannot be read is recorded with the reason, never left out: the audit names it."""
import concurrent.futures
import time

from dvremedy.adapters import libvirt
from dvremedy.errors import RemedyError


def read_host(host, open_session, virsh, timeout=None):
    """{"host", "reachable", "domains", "duration_s"} or, when the host cannot be read,
    {"host", "reachable": False, "error": evidence}. Never raises a RemedyError."""
    started = time.monotonic()
    try:
        with open_session(host) as session:
            domains = libvirt.all_domains_disks(session, virsh, timeout=timeout)
        return {"host": host, "reachable": True, "domains": domains,
                "duration_s": round(time.monotonic() - started, 3)}
    except RemedyError as exc:
        return {"host": host, "reachable": False, "error": exc.evidence(),
                "duration_s": round(time.monotonic() - started, 3)}


def read_hosts(hosts, open_session, virsh, concurrency, timeout=None, progress=None):
    """read_host for every host, `concurrency` at a time: {host: result}."""
    hosts = sorted(set(h for h in hosts if h))
    out = {}
    if not hosts:
        return out
    workers = max(1, min(int(concurrency), len(hosts)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(read_host, h, open_session, virsh, timeout): h for h in hosts}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            out[result["host"]] = result
            if progress:
                progress("hypervisor %s: %s" % (result["host"], (
                    "%d domain(s) in %.1f s" % (len(result["domains"]), result["duration_s"])
                    if result["reachable"] else "NOT READ: " + result["error"]["message"])))
    return out
