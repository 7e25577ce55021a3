"""Fakes for the audit's tests: a hand-built cloud, fake API adapters and hypervisor sessions."""
import itertools
import json
import os
import re
import subprocess
import sys
import time
import types
import uuid

import requests

from dvremedy.adapters import inventory
from dvremedy.adapters.sshclient import CommandResult
from dvremedy.model import correlate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
VIRSH_STANDIN = os.path.join(REPO, "lab", "files", "virsh.py")
VIRSH = [sys.executable, VIRSH_STANDIN]
LONG_AGO = "2025-11-25T09:00:00.000000"      # a year and three hours before the tests' NOW
P1, P2 = "a" * 32, "b" * 32


# -- a hand-built cloud (dvremedy.model.correlate's and dvremedy.steps.audit's tests) -------------

def _uuid(prefix, n):
    return str(uuid.UUID(int=(prefix << 96) + n))


class Cloud(object):
    """Servers, volumes, Cinder's attachment records, Nova's BDMs and each host's domains."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.servers = {}      # id -> servers/detail item (admin fields)
        self.volumes = {}      # id -> volumes/detail item
        self.records = {}      # id -> attachments/detail item
        self.bdms = {}         # server id -> {volume id: os-volume_attachments item}
        self.domains = {}      # host -> {name: {"uuid", "power", "live": [...], "config": [...]}}

    # -- building ------------------------------------------------------------------------------

    def server(self, host="cmp1", project=P1, status="ACTIVE", data=1, name=None):
        n = next(self.ids)
        sid = _uuid(1, n)
        iname = "instance-%08x" % n
        self.servers[sid] = {
            "id": sid, "name": name or "srv%d" % n, "tenant_id": project, "status": status,
            "updated": "2026-11-25T08:00:00Z", "locked": False, "locked_reason": None,
            "OS-EXT-STS:vm_state": "active" if status == "ACTIVE" else "stopped",
            "OS-EXT-STS:task_state": None, "OS-EXT-STS:power_state": 1,
            "OS-EXT-SRV-ATTR:host": host, "OS-EXT-SRV-ATTR:instance_name": iname,
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/sda",
            "os-extended-volumes:volumes_attached": []}
        self.bdms[sid] = {}
        self.domains.setdefault(host, {})[iname] = {
            "uuid": sid, "power": "running" if status == "ACTIVE" else "shut off",
            "live": [], "config": []}
        self.attach(sid, "sda", boot=True)
        for i in range(data):
            self.attach(sid, "sd" + "bcdefgh"[i])
        return sid

    def volume(self, project=P1, name=None):
        vid = _uuid(2, next(self.ids))
        self.volumes[vid] = {
            "id": vid, "name": name or "vol-" + vid[-4:], "status": "available",
            "bootable": "false", "multiattach": False, "updated_at": LONG_AGO,
            "os-vol-tenant-attr:tenant_id": project, "attachments": []}
        return vid

    def attach(self, sid, dev, boot=False, vid=None):
        srv = self.servers[sid]
        vid = vid or self.volume(project=srv["tenant_id"])
        vol = self.volumes[vid]
        att = _uuid(3, next(self.ids))
        host = srv["OS-EXT-SRV-ATTR:host"]
        vol.update(status="in-use", bootable="true" if boot else "false")
        vol["attachments"].append({
            "id": vid, "attachment_id": att, "volume_id": vid, "server_id": sid,
            "host_name": host, "device": "/dev/" + dev, "attached_at": LONG_AGO})
        self.records[att] = {"id": att, "status": "attached", "instance": sid,
                             "volume_id": vid, "attached_at": LONG_AGO}
        srv["os-extended-volumes:volumes_attached"].append({"id": vid,
                                                            "delete_on_termination": boot})
        self.bdms[sid][vid] = {"device": "/dev/" + dev, "serverId": sid, "volumeId": vid,
                               "attachment_id": att, "bdm_uuid": _uuid(4, next(self.ids)),
                               "delete_on_termination": boot, "tag": None}
        disk = {"type": "block", "device": "disk", "target_dev": dev, "target_bus": "scsi",
                "serial": vid, "alias": "ua-" + vid, "boot": boot,
                "source": "/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2010-10.org."
                          "openstack:volume-%s-lun-0" % vid}
        domain = self.domain_of(sid)
        domain["live"].append(dict(disk))
        domain["config"].append(dict(disk))
        return vid

    def domain_of(self, sid):
        srv = self.servers[sid]
        return self.domains[srv["OS-EXT-SRV-ATTR:host"]][srv["OS-EXT-SRV-ATTR:instance_name"]]

    def data_volumes(self, sid):
        return [v for v, b in self.bdms[sid].items() if b["device"] != "/dev/sda"]

    # -- the lab's breaks ----------------------------------------------------------------------

    def _drop_cinder_side(self, sid, vid):
        vol = self.volumes[vid]
        vol["attachments"] = [a for a in vol["attachments"] if a["server_id"] != sid]
        for att in [a for a, r in self.records.items()
                    if r["volume_id"] == vid and r["instance"] == sid]:
            del self.records[att]
        vol["status"] = "in-use" if vol["attachments"] else "available"

    def _drop_disk(self, sid, vid, views=("live", "config")):
        domain = self.domain_of(sid)
        for view in views:
            domain[view] = [d for d in domain[view] if d["serial"] != vid]

    def cinder_reset(self, sid, vid):
        """1: reset to available/detached behind Nova's back."""
        self._drop_cinder_side(sid, vid)
        self.volumes[vid]["updated_at"] = LONG_AGO

    def backend_down(self, sid, vid, updated_at=LONG_AGO):
        """2a: stuck detaching with its attachment; the disk is already gone."""
        self.volumes[vid].update(status="detaching", updated_at=updated_at)
        self._drop_disk(sid, vid)

    def guest_refuses(self, sid, vid):
        """2b: live, gone from the next-boot config."""
        self._drop_disk(sid, vid, views=("config",))

    def hypervisor_only(self, sid, vid):
        """4: virsh detach-disk --persistent."""
        self._drop_disk(sid, vid)

    def orphan(self, sid):
        """5: the server deleted while cinder-volume was down: Cinder keeps its attachments."""
        srv = self.servers.pop(sid)
        del self.bdms[sid]
        del self.domains[srv["OS-EXT-SRV-ATTR:host"]][srv["OS-EXT-SRV-ATTR:instance_name"]]
        return srv

    def stray_disk(self, sid, vid):
        """A disk left on the domain: Nova and Cinder no longer list the attachment."""
        self._drop_cinder_side(sid, vid)
        del self.bdms[sid][vid]
        srv = self.servers[sid]
        srv["os-extended-volumes:volumes_attached"] = [
            v for v in srv["os-extended-volumes:volumes_attached"] if v["id"] != vid]

    def mismatch(self, sid, vid):
        """Cinder's attachment record has another id than Nova's BDM."""
        old = next(a for a, r in self.records.items()
                   if r["volume_id"] == vid and r["instance"] == sid)
        new = _uuid(3, next(self.ids))
        self.records[new] = dict(self.records.pop(old), id=new)
        for att in self.volumes[vid]["attachments"]:
            if att["server_id"] == sid:
                att["attachment_id"] = new

    # -- as the audit reads it -----------------------------------------------------------------

    def parsed_domains(self, host):
        """A host's domains as libvirt.all_domains_disks returns them."""
        def parsed(disk):
            return {"type": disk["type"], "device": disk["device"],
                    "target": disk["target_dev"], "bus": disk["target_bus"],
                    "source": disk["source"], "serial": disk["serial"],
                    "alias": disk["alias"]}
        return {name: {"live": [parsed(d) for d in dom["live"]],
                       "config": [parsed(d) for d in dom["config"]],
                       "running": dom["power"] == "running"}
                for name, dom in self.domains.get(host, {}).items()}

    def inventory(self, kind="all", project_id=None, host=None, records=True,
                  unreachable=()):
        servers = {s["id"]: inventory.server_facts(s) for s in self.servers.values()
                   if (kind != "project" or s["tenant_id"] == project_id) and
                   (kind != "host" or s["OS-EXT-SRV-ATTR:host"] == host)}
        volumes = {v["id"]: inventory.volume_facts(v) for v in self.volumes.values()
                   if kind != "project" or v["os-vol-tenant-attr:tenant_id"] == project_id}
        recs = [inventory.attachment_record(r) for r in self.records.values()
                if r["volume_id"] in volumes or kind != "project"] if records else None
        hosts = {host} if kind == "host" else set(self.domains)
        if kind == "project":
            hosts = {s["compute_host"] for s in servers.values()}
        read = {}
        for h in hosts:
            if h in unreachable:
                read[h] = {"host": h, "reachable": False,
                           "error": {"kind": "ssh", "message": "SSH to %s failed: timed out" % h}}
            else:
                read[h] = {"host": h, "reachable": True, "domains": self.parsed_domains(h)}
        return {"servers": servers, "volumes": volumes, "records": recs, "hypervisors": read,
                "deep": {}, "scope": {"kind": kind, "project_id": project_id, "host": host}}

    def read_deep(self, inv, server_ids):
        for sid in server_ids:
            rows = self.bdms.get(sid)
            inv["deep"][sid] = None if rows is None else {
                v: {"device": r["device"], "attachment_id": r["attachment_id"],
                    "bdm_id": r["bdm_uuid"], "delete_on_termination": r["delete_on_termination"]}
                for v, r in rows.items()}

    def look_up(self, inv):
        """What the audit does for what no listing holds: look each up (None: no such)."""
        servers, volumes = correlate.unreferenced(inv)
        for sid in servers:
            s = self.servers.get(sid)
            inv["servers"][sid] = inventory.server_facts(s) if s else None
        for vid in volumes:
            v = self.volumes.get(vid)
            inv["volumes"][vid] = inventory.volume_facts(v) if v else None


# -- fake API adapters (dvremedy.adapters.inventory's tests) --------------------------------------

def response(status, body, url="http://api.example/x"):
    r = requests.models.Response()
    r.status_code = status
    r._content = json.dumps(body).encode()
    r.headers["content-type"] = "application/json"
    r.headers["x-openstack-request-id"] = "req-0123"
    r.url = url
    r.request = requests.Request("GET", url).prepare()
    return r


class FakeAdapter(object):
    """One service: routes (regex on the path) to handlers(params, match) -> (status, body);
    every request is logged as (path, params, microversion)."""

    def __init__(self, routes, max_microversion=None):
        self.routes = routes
        self.log = []
        self.max_microversion = max_microversion

    def get(self, path, params=None, microversion=None, raise_exc=True):
        assert raise_exc is False      # failures are turned into typed errors by the caller
        self.log.append((path, dict(params or {}), microversion))
        for pattern, handler in self.routes:
            match = re.fullmatch(pattern, path)
            if match:
                status, body = handler(dict(params or {}), match)
                return response(status, body, "http://api.example" + path)
        return response(404, {"itemNotFound": {"code": 404, "message": "no route"}})

    def get_endpoint_data(self):
        return types.SimpleNamespace(max_microversion=self.max_microversion)


def pager(items, key, links=True):
    """A listing by limit and marker over items sorted by id, as Nova and Cinder page."""
    items = sorted(items, key=lambda i: i["id"])

    def handle(params, _match):
        start = 0
        if params.get("marker"):
            start = [i["id"] for i in items].index(params["marker"]) + 1
        limit = int(params.get("limit", 1000))
        page = items[start:start + limit]
        body = {key: page}
        if links and len(page) == limit:
            body[key + "_links"] = [{"rel": "next", "href": "...marker=%s" % page[-1]["id"]}]
        return 200, body
    return handle


# -- hypervisors read on this machine (dvremedy.adapters.hypervisors' tests) ----------------------

def write_domains(lab_dir, domains):
    """domains: {name: (uuid, power, live disks, config disks)} as the lab's driver keeps them."""
    path = os.path.join(lab_dir, "state", "domains")
    os.makedirs(path, exist_ok=True)
    for name, (uid, power, live, config) in domains.items():
        with open(os.path.join(path, uid + ".json"), "w") as f:
            json.dump({"uuid": uid, "name": name, "power": power, "live": live,
                       "config": config, "last_event": "test",
                       "updated_at": "2026-01-01T00:00:00+00:00"}, f)


class LocalSession(object):
    """An SSHSession stand-in that runs the argv on this machine, with the host's LAB_DIR."""

    def __init__(self, host, lab_dir, log):
        self.target = type("Target", (), {"host": host})()
        self.lab_dir = lab_dir
        self.log = log

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, argv, timeout=None):
        self.log.append((self.target.host, argv))
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout or 60,
                              env=dict(os.environ, LAB_DIR=self.lab_dir))
        return CommandResult(list(argv), proc.returncode, proc.stdout, proc.stderr,
                             time.monotonic() - started)
