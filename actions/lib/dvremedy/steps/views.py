"""Reading one attachment as Nova, Cinder and the hypervisor each see it (read only).

The result is plain data (JSON-able): the classifier and the report work on it, tests build it
by hand. The hypervisor is asked over SSH with `virsh dumpxml` (live and --inactive) and the
disk is this volume's by model.disks (its <serial> or alias ua-<volume_id>; docs/disks.md)."""
import datetime
import functools

from dvremedy.adapters import libvirt
from dvremedy.adapters.cloud import api
from dvremedy.errors import NotFound, RemedyError
from dvremedy.model import disks as disk_rule
from dvremedy.model.classify import parse_time

STEP = "identify"


def server_facts(conn, server_id, step=STEP):
    try:
        with api("GET server %s" % server_id, step):
            srv = conn.compute.get_server(server_id)
    except NotFound:
        raise NotFound("server %s does not exist (Nova answered 404)" % server_id, step=step)
    return {
        "id": srv.id, "name": srv.name, "status": srv.status, "vm_state": srv.vm_state,
        "task_state": srv.task_state, "power_state": srv.power_state,
        "locked": bool(srv.is_locked), "locked_reason": srv.locked_reason,
        "compute_host": srv.compute_host, "instance_name": srv.instance_name,
        "project_id": srv.project_id, "root_device_name": srv.root_device_name,
    }


def nova_view(conn, server_id, step=STEP):
    """Nova's attachments at compute 2.89: volume id -> device, attachment id, BDM uuid."""
    with api("GET server %s volume attachments" % server_id, step):
        rows = list(conn.compute.volume_attachments(server_id))
    return {r.volume_id: {"device": r.device, "attachment_id": r.attachment_id,
                          "bdm_id": r.bdm_id, "delete_on_termination": r.delete_on_termination}
            for r in rows}


def cinder_view(conn, volume_id):
    """Cinder's volume and every attachment record of it (3.27+: reserved/error rows too)."""
    with api("GET volume %s" % volume_id, STEP):
        vol = conn.block_storage.get_volume(volume_id)
    # all_tenants: without it Cinder returns only the token's own project's attachments, and
    # a tenant's healthy attachment would look Nova-only to the admin
    with api("GET attachments of volume %s" % volume_id, STEP):
        records = list(_attachment_list_type().list(
            conn.block_storage, base_path="/attachments/detail", volume_id=volume_id,
            all_projects=True))
    return dict(_volume_facts(vol), attachments=[
        _attachment_record(a) for a in records if a.volume_id == volume_id])


def _volume_facts(vol):
    return {"id": vol.id, "name": vol.name, "status": vol.status, "bootable": vol.is_bootable,
            "multiattach": bool(getattr(vol, "is_multiattach", False)),
            "updated_at": vol.updated_at, "project_id": getattr(vol, "project_id", None)}


def _attachment_record(a):
    return {"id": a.id, "status": a.status, "server_id": a.instance,
            "attached_at": a.attached_at}


def hypervisor_view(ssh_session, virsh, domain, volume_id):
    """The domain's disks that are this volume's, live and in the next-boot config."""
    view = {"reachable": True, "domain": domain}
    for key, inactive in (("live", False), ("config", True)):
        disks = libvirt.domain_disks(ssh_session, virsh, domain, inactive=inactive)
        view[key] = [d["target"] for d in disk_rule.disks_of_volume(disks, volume_id)]
    return view


# Nova's instance actions that change a server's volumes or power: one of these not finished
# yet means Nova is still at work on the server, whatever the volume's state says
BUSY_ACTIONS = {"attach_volume", "detach_volume", "swap_volume", "extend_volume", "stop",
                "start", "reboot", "resize", "migrate", "live-migration", "rebuild", "shelve",
                "unshelve", "evacuate", "delete", "refresh_volume_attachment"}


def compute_service(conn, host, step=STEP):
    """The nova-compute service of `host`: {state: up|down, status, forced_down}, or None when
    the API does not show it (the policy hides services from a non-admin)."""
    try:
        with api("GET nova-compute service of %s" % host, step):
            rows = [s for s in conn.compute.services(host=host, binary="nova-compute")
                    if s.host == host and s.binary == "nova-compute"]
    except RemedyError:
        return None
    if not rows:
        return None
    svc = rows[0]
    return {"host": host, "state": svc.state, "status": svc.status,
            "forced_down": bool(svc.is_forced_down), "updated_at": svc.updated_at}


def recent_actions(conn, server_id, younger_than, now, step=STEP):
    """Nova's instance actions on the server that started less than `younger_than` seconds
    before `now`, newest first, each with whether every event of it has finished. None when
    Nova does not show them; [] when younger_than is 0 (the check is off)."""
    if not younger_than:
        return []
    try:
        with api("GET instance actions of server %s" % server_id, step):
            actions = list(conn.compute.server_actions(server_id))
    except RemedyError:
        return None
    out = []
    for act in actions:
        started = parse_time(act.start_time) if act.start_time else None
        if started is None or (now - started).total_seconds() >= younger_than:
            continue
        entry = {"action": act.action, "request_id": act.request_id,
                 "start_time": act.start_time, "message": act.message, "finished": True}
        if act.action in BUSY_ACTIONS:
            entry["finished"] = _action_finished(conn, server_id, act, step)
        out.append(entry)
    return out


def _action_finished(conn, server_id, act, step):
    """True once every event of the action has a finish time (a failed one too); an action
    with no event yet has not reached nova-compute, unless the API already failed it."""
    with api("GET instance action %s of server %s" % (act.request_id, server_id), step):
        full = conn.compute.get_server_action(act.request_id, server_id)
    events = full.events or []
    if not events:
        return bool(full.message)
    return all(getattr(e, "finish_time", None) for e in events)


def identify(conn, ssh_for_host, settings, server_id, volume_id, stuck_after=None, now=None):
    """All three views of (server, volume), plus the server's facts, its nova-compute service
    and Nova's recent instance actions. A hypervisor that cannot be read is reported as
    unreachable with the reason, never silently left out."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    server = server_facts(conn, server_id)
    server["compute_service"] = (compute_service(conn, server["compute_host"])
                                 if server["compute_host"] else None)
    try:
        cinder = cinder_view(conn, volume_id)
    except NotFound:
        raise NotFound("volume %s does not exist (Cinder answered 404)" % volume_id, step=STEP)
    nova = nova_view(conn, server_id)
    hypervisor = {"reachable": False, "domain": server["instance_name"], "live": [],
                  "config": []}
    if server["compute_host"] and server["instance_name"]:
        try:
            session = ssh_for_host(server["compute_host"])
            hypervisor = hypervisor_view(session, settings.virsh, server["instance_name"],
                                         volume_id)
        except RemedyError as exc:
            hypervisor["error"] = exc.evidence()
    return {"server": server, "volume_id": volume_id, "nova": nova.get(volume_id),
            "nova_volume_ids": sorted(nova), "cinder": cinder, "hypervisor": hypervisor,
            "nova_actions": recent_actions(conn, server_id, stuck_after, now)}


# One server, all of its volumes ---------------------------------------------------------------

SERVER_STEP = "attachments"


def server_attachments(conn, ssh_for_host, settings, server_id):
    """Every volume attached to the server as any of the three views sees it, each as the dict
    identify() returns (so classify.classify() takes it unchanged).

    Each view is read once for the whole server, not once per volume: one server GET, Nova's
    attachment list, Cinder's attachment records naming the server, one `virsh dumpxml` pair.
    Cinder's status needs one volume GET per volume (its API lists volumes by project, not by
    id). Each volume's `cinder.attachments` holds the records naming THIS server only (enough
    for the classifier, which looks at no other)."""
    server = server_facts(conn, server_id, SERVER_STEP)
    nova = nova_view(conn, server_id, SERVER_STEP)
    records = server_attachment_records(conn, server_id)
    hypervisor = {"reachable": False, "domain": server["instance_name"]}
    disks = {"live": [], "config": []}
    if server["compute_host"] and server["instance_name"]:
        try:
            session = ssh_for_host(server["compute_host"])
            for key, inactive in (("live", False), ("config", True)):
                disks[key] = libvirt.domain_disks(session, settings.virsh,
                                                  server["instance_name"], inactive=inactive)
            hypervisor["reachable"] = True
        except RemedyError as exc:
            hypervisor["error"] = exc.evidence()
            disks = {"live": [], "config": []}
    volume_ids = set(nova) | {r["volume_id"] for r in records}
    volume_ids |= disk_rule.volume_ids(disks["live"] + disks["config"])
    volumes = []
    for volume_id in volume_ids:
        cinder = _cinder_facts(conn, volume_id)
        cinder["attachments"] = [{k: v for k, v in r.items() if k != "volume_id"}
                                 for r in records if r["volume_id"] == volume_id]
        hyp = dict(hypervisor, live=[], config=[])
        for key in ("live", "config"):
            hyp[key] = [d["target"] for d in disk_rule.disks_of_volume(disks[key], volume_id)]
        volumes.append({"server": server, "volume_id": volume_id, "nova": nova.get(volume_id),
                        "nova_volume_ids": sorted(nova), "cinder": cinder, "hypervisor": hyp})
    # Nova's device order first (/dev/sda, /dev/sdb, ...); volumes Nova does not list after
    volumes.sort(key=lambda v: (v["nova"] is None, (v["nova"] or {}).get("device") or "",
                                v["volume_id"]))
    return {"server": server, "hypervisor": hypervisor, "volumes": volumes}


def server_attachment_records(conn, server_id):
    """Cinder's attachment records (3.27+) naming the server, in every project (the server's
    volumes are its project's, not the admin's), from one filtered list."""
    with api("GET attachments of server %s" % server_id, SERVER_STEP):
        rows = list(_attachment_list_type().list(
            conn.block_storage, base_path="/attachments/detail", instance_id=server_id,
            all_projects=True))
    # filtered here as well: a Cinder that ignores instance_id must not add others' records
    return [dict(_attachment_record(a), volume_id=a.volume_id) for a in rows
            if a.instance == server_id]


@functools.lru_cache(maxsize=None)
def _attachment_list_type():
    """openstacksdk's Attachment, with the query parameters these lists need declared:
    openstacksdk 4.0.1 (the newest for Python 3.8) knows none of them and would drop
    instance_id and all_tenants without a word."""
    from openstack import resource
    from openstack.block_storage.v3.attachment import Attachment

    class ServerAttachment(Attachment):
        _query_mapping = resource.QueryParameters("instance_id", "volume_id",
                                                  all_projects="all_tenants")
    return ServerAttachment


def _cinder_facts(conn, volume_id):
    """The volume as Cinder has it; a volume Cinder no longer knows is a fact, not an error."""
    try:
        with api("GET volume %s" % volume_id, SERVER_STEP):
            return dict(_volume_facts(conn.block_storage.get_volume(volume_id)), exists=True)
    except NotFound:
        return {"id": volume_id, "name": None, "status": None, "bootable": None,
                "updated_at": None, "project_id": None, "exists": False}
