"""Reading one attachment as Nova, Cinder and the hypervisor each see it (read only).

The result is plain data (JSON-able): the classifier and the report work on it, tests build it
by hand. The hypervisor is asked over SSH with `virsh dumpxml` (live and --inactive) and the
disk is this volume's by its <serial> or alias ua-<volume_id> (openstack.md §5.1)."""
from dvremedy import libvirt
from dvremedy.cloud import api
from dvremedy.errors import NotFound, RemedyError

STEP = "identify"


def server_facts(conn, server_id):
    try:
        with api("GET server %s" % server_id, STEP):
            srv = conn.compute.get_server(server_id)
    except NotFound:
        raise NotFound("server %s does not exist (Nova answered 404)" % server_id, step=STEP)
    return {
        "id": srv.id, "name": srv.name, "status": srv.status, "vm_state": srv.vm_state,
        "task_state": srv.task_state, "power_state": srv.power_state,
        "locked": bool(srv.is_locked), "locked_reason": srv.locked_reason,
        "compute_host": srv.compute_host, "instance_name": srv.instance_name,
        "project_id": srv.project_id, "root_device_name": srv.root_device_name,
    }


def nova_view(conn, server_id):
    """Nova's attachments at compute 2.89: volume id -> device, attachment id, BDM uuid."""
    with api("GET server %s volume attachments" % server_id, STEP):
        rows = list(conn.compute.volume_attachments(server_id))
    return {r.volume_id: {"device": r.device, "attachment_id": r.attachment_id,
                          "bdm_id": r.bdm_id, "delete_on_termination": r.delete_on_termination}
            for r in rows}


def cinder_view(conn, volume_id):
    """Cinder's volume and every attachment record of it (3.27+: reserved/error rows too)."""
    with api("GET volume %s" % volume_id, STEP):
        vol = conn.block_storage.get_volume(volume_id)
    with api("GET attachments of volume %s" % volume_id, STEP):
        records = list(conn.block_storage.attachments(volume_id=volume_id))
    return {
        "id": vol.id, "name": vol.name, "status": vol.status, "bootable": vol.is_bootable,
        "updated_at": vol.updated_at, "project_id": getattr(vol, "project_id", None),
        "attachments": [{"id": a.id, "status": a.status, "server_id": a.instance,
                         "attached_at": a.attached_at} for a in records],
    }


def hypervisor_view(ssh_session, virsh, domain, volume_id):
    """The domain's disks that are this volume's, live and in the next-boot config."""
    view = {"reachable": True, "domain": domain}
    for key, inactive in (("live", False), ("config", True)):
        disks = libvirt.domain_disks(ssh_session, virsh, domain, inactive=inactive)
        view[key] = [d["target"] for d in libvirt.disks_of_volume(disks, volume_id)]
    return view


def identify(conn, ssh_for_host, settings, server_id, volume_id):
    """All three views of (server, volume), plus the server's facts. A hypervisor that cannot
    be read is reported as unreachable with the reason, never silently left out."""
    server = server_facts(conn, server_id)
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
            "nova_volume_ids": sorted(nova), "cinder": cinder, "hypervisor": hypervisor}
