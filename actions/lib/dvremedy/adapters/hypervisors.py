"""The hypervisors' side of the audit: every domain's disks on every host, at no API cost.

One SSH connection per host, a bounded number of hosts at a time (threads: the work is waiting
on the network), and ONE remote command per host (libvirt.all_domains_disks: `virsh list --all
--name`, then `dumpxml` live and `--inactive` of each domain, with the configured virsh prefix).
A host that cannot be read is recorded with the reason, never left out: the audit names it."""
import concurrent.futures
import re
import time

from dvremedy.adapters import libvirt
from dvremedy.errors import RemedyError

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}")
_VOLUME_IN_SOURCE = re.compile(r"volume-(%s)" % _UUID.pattern)


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


def disk_volume_id(disk):
    """The volume a domain disk is, the way Nova marks it: <serial> (the volume id), else the
    alias ua-<volume id>, else a 'volume-<id>' source path (RBD, NFS); None for other disks."""
    for value in (disk.get("serial"), (disk.get("alias") or "")[3:]
                  if (disk.get("alias") or "").startswith("ua-") else None):
        if value and _UUID.fullmatch(value.strip()):
            return value.strip().lower()
    match = _VOLUME_IN_SOURCE.search(disk.get("source") or "")
    return match.group(1).lower() if match else None


def volume_ids_on_domain(domain):
    """Every volume id among a domain's disks, live or in the next-boot config."""
    ids = set()
    for view in ("live", "config"):
        for disk in domain.get(view) or []:
            vid = disk_volume_id(disk)
            if vid:
                ids.add(vid)
    return ids
