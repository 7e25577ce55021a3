"""One function per remedy step. Each: read -> decide (pure) -> act only if needed -> report
what changed. Idempotent: run twice, the second run changes nothing. Every wait has a deadline.
Each takes a glue.StepContext (settings, a lazy OpenStack connection, SSH sessions)."""
from dvremedy import classify, libvirt, novamanage, plan, views
from dvremedy.cloud import api, server_state, wait_for, wait_server, wait_volume
from dvremedy.errors import InputError, StateError
from dvremedy.settings import require_uuid


def identify(ctx, server_id, volume_id, detach=True, allow_libvirt_detach=False):
    server_id = require_uuid("server_id", server_id)
    volume_id = require_uuid("volume_id", volume_id)
    seen = views.identify(ctx.conn, ctx.ssh, ctx.settings, server_id, volume_id)
    verdict = classify.classify(seen)
    return {"views": seen, "classification": verdict,
            "plan": plan.make_plan(seen, verdict, detach, allow_libvirt_detach)}


def stop_server(ctx, server_id):
    server_id = require_uuid("server_id", server_id)
    srv = server_state(ctx.conn, server_id)
    if srv.status == "SHUTOFF" and not srv.task_state:
        return _did("stop", False, "server already SHUTOFF", status="SHUTOFF")
    with api("stop server %s" % server_id, "stop"):
        ctx.conn.compute.stop_server(server_id)
    wait_server(ctx.conn, server_id, "SHUTOFF", ctx.settings.wait_power, "stop", ctx.progress)
    return _did("stop", True, "stopped server (was %s)" % srv.status, status="SHUTOFF")


def restore_power(ctx, server_id, power):
    """Back to the power state the remedy found: start a server that was running. Waits for
    any task in progress (a stop still running on a failure path) before deciding."""
    server_id = require_uuid("server_id", server_id)
    if power not in ("running", "shutoff"):
        raise InputError("power must be running or shutoff, not %r" % power, step="start")

    def idle():
        srv = server_state(ctx.conn, server_id)
        return srv.status + ("/" + srv.task_state if srv.task_state else ""), \
            not srv.task_state, False
    wait_for("server %s to finish its task" % server_id, idle, ctx.settings.wait_power,
             "start", ctx.progress)
    srv = server_state(ctx.conn, server_id)
    if power == "shutoff" or srv.status == "ACTIVE":
        return _did("start", False, "server %s as found (%s)" % (srv.status, power),
                    status=srv.status)
    if srv.status != "SHUTOFF":
        raise StateError("server %s is %s: cannot start it to restore its power state"
                         % (server_id, srv.status), step="start", status=srv.status)
    with api("start server %s" % server_id, "start"):
        ctx.conn.compute.start_server(server_id)
    wait_server(ctx.conn, server_id, "ACTIVE", ctx.settings.wait_power, "start", ctx.progress)
    return _did("start", True, "started server (it was running before the remedy)",
                status="ACTIVE")


def get_connector(ctx, server_id):
    """The connector of the compute host the server is on NOW (refresh checks the host: rc 7)."""
    server_id = require_uuid("server_id", server_id)
    srv = server_state(ctx.conn, server_id)
    if not srv.compute_host:
        raise StateError("server %s has no compute host" % server_id, step="get_connector")
    connector = novamanage.get_connector(ctx.ssh(srv.compute_host),
                                         ctx.settings.hypervisor_nova_manage,
                                         expected_host=srv.compute_host)
    return _did("get_connector", False, "connector of %s read over SSH" % srv.compute_host,
                host=srv.compute_host, connector=connector)


def refresh(ctx, server_id, volume_id, connector):
    server_id = require_uuid("server_id", server_id)
    volume_id = require_uuid("volume_id", volume_id)
    srv = server_state(ctx.conn, server_id)
    novamanage.validate_connector(connector, expected_host=srv.compute_host)
    if srv.status != "SHUTOFF":
        raise StateError("server %s is %s: refresh needs it stopped (nova-manage rc 5)"
                         % (server_id, srv.status), step="refresh", status=srv.status)
    cinder = views.cinder_view(ctx.conn, volume_id)
    reset_to = _reset_target(cinder, server_id)
    did = []
    if reset_to:
        with api("reset volume %s to %s" % (volume_id, reset_to), "refresh"):
            ctx.conn.block_storage.reset_volume_status(volume_id, status=reset_to)
        wait_volume(ctx.conn, volume_id, reset_to, ctx.settings.wait_volume_state, "refresh",
                    ctx.progress)
        did.append("reset volume from %s to %s (admin; its attachment kept)"
                   % (cinder["status"], reset_to))
    host, session = ctx.controller()
    result = novamanage.refresh(session, ctx.settings.controller_nova_manage, server_id,
                                volume_id, connector, staging=_staging(ctx.settings))
    after = views.nova_view(ctx.conn, server_id).get(volume_id) or {}
    did.append("nova-manage volume_attachment refresh on %s: exit 0; new attachment %s"
               % (host, after.get("attachment_id")))
    return _did("refresh", True, "; ".join(did), reset_volume_to=reset_to, controller=host,
                attachment_id=after.get("attachment_id"), refresh=result)


def detach(ctx, server_id, volume_id):
    """The Compute API detach, then until Cinder says available and Nova no longer lists it."""
    server_id = require_uuid("server_id", server_id)
    volume_id = require_uuid("volume_id", volume_id)
    with api("GET volume %s" % volume_id, "detach"):
        ctx.conn.block_storage.get_volume(volume_id)  # an unknown volume is an error, not done
    if volume_id not in views.nova_view(ctx.conn, server_id):
        return _did("detach", False, "Nova no longer lists the volume")
    with api("detach volume %s from server %s" % (volume_id, server_id), "detach"):
        # ignore_missing=False: Nova answers 404 also when the Cinder volume is gone
        ctx.conn.compute.delete_volume_attachment(server_id, volume_id, ignore_missing=False)

    def gone():
        listed = volume_id in views.nova_view(ctx.conn, server_id)
        with api("GET volume %s" % volume_id, "detach"):
            status = ctx.conn.block_storage.get_volume(volume_id).status
        return ("cinder %s, nova %s" % (status, "lists it" if listed else "does not list it"),
                status == "available" and not listed, status in ("error", "error_detaching"))
    wait_for("volume %s to detach" % volume_id, gone, ctx.settings.wait_detach, "detach",
             ctx.progress)
    return _did("detach", True, "detached through the Compute API; Cinder says available")


def verify(ctx, server_id, volume_id, expect="detached"):
    """What the cloud says now, in all three views; success is agreement, not a return code."""
    server_id = require_uuid("server_id", server_id)
    volume_id = require_uuid("volume_id", volume_id)
    seen = views.identify(ctx.conn, ctx.ssh, ctx.settings, server_id, volume_id)
    verdict = classify.classify(seen)
    disk_left = bool(seen["hypervisor"]["live"] or seen["hypervisor"]["config"])
    if expect == "detached":
        mine = [a for a in seen["cinder"]["attachments"] if a["server_id"] == server_id]
        consistent = (seen["nova"] is None and not mine and not disk_left and
                      seen["hypervisor"]["reachable"])
        note = ""
    else:
        consistent = verdict["healthy"]
        note = ""
        if (not consistent and verdict["problems"] == [classify.MISSING_ON_HYPERVISOR] and
                seen["server"]["status"] == "SHUTOFF"):
            # after a refresh the stopped domain has no disk: Nova rebuilds the domain from
            # the block device mapping when the server starts, so Nova and Cinder decide
            consistent = True
            note = " (the stopped domain gets the disk when the server starts)"
    return _did("verify", False, "Nova, Cinder and the hypervisor %s%s" % (
        "agree" if consistent else "still disagree: " + ", ".join(verdict["problems"]), note),
        consistent=consistent, expect=expect, classification=verdict,
        disk_left_on_domain=disk_left and seen["nova"] is None, views=seen)


def libvirt_detach(ctx, server_id, volume_id, allow=False):
    """Last resort: remove this volume's disk from the domain with virsh, then let the Compute
    API finish Nova's and Cinder's bookkeeping. Refused unless explicitly allowed."""
    server_id = require_uuid("server_id", server_id)
    volume_id = require_uuid("volume_id", volume_id)
    if not allow:
        raise InputError("virsh detach-disk is a last resort: refused unless allow=true",
                         step="libvirt_detach")
    srv = server_state(ctx.conn, server_id)
    session, virsh = ctx.ssh(srv.compute_host), ctx.settings.virsh
    domain = srv.instance_name
    did = []
    for inactive, modes in ((False, ("live",)), (True, ("config",))):
        disks = libvirt.disks_of_volume(
            libvirt.domain_disks(session, virsh, domain, inactive=inactive), volume_id)
        running = libvirt.domain_state(session, virsh, domain) == "running"
        for disk in disks:
            # shut off: the live XML is the config; running: --live, then --config if left
            mode = "config" if (inactive or not running) else modes[0]
            libvirt.detach_disk(session, virsh, domain, disk["target"], mode)
            did.append("virsh detach-disk %s %s --%s" % (domain, disk["target"], mode))
    bookkeeping = detach(ctx, server_id, volume_id)
    return _did("libvirt_detach", bool(did) or bookkeeping["changed"],
                "; ".join(did + [bookkeeping["did"]]) or "no disk of this volume on the domain")


# helpers -------------------------------------------------------------------------------------

def _did(step, changed, text, **facts):
    out = {"step": step, "changed": changed, "did": text}
    out.update(facts)
    return out


def _reset_target(cinder, server_id):
    stuck = cinder["status"] in classify.DETACHING_STATES or any(
        a["status"] in classify.DETACHING_STATES for a in cinder["attachments"])
    if not stuck:
        return None
    mine = [a for a in cinder["attachments"] if a["server_id"] == server_id]
    return "in-use" if mine else "available"


def _staging(settings):
    if settings.staging == "copy_into":
        return {"copy_into": {"engine": settings.container_engine,
                              "container": settings.container}}
    if settings.staging == "shared_dir":
        return {"shared_dir": settings.shared_dir, "container_dir": settings.container_dir}
    return None
