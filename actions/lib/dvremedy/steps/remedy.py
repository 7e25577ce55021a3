"""One function per remedy step. Each: read -> decide (pure) -> act only if needed -> report
what changed. Idempotent: run twice, the second run changes nothing. Every wait has a deadline.
Each takes a runner.StepContext (settings, a lazy OpenStack connection, SSH sessions)."""
import datetime

from dvremedy.adapters import libvirt, novamanage
from dvremedy.adapters.cloud import api, server_state, wait_for, wait_server, wait_volume
from dvremedy.errors import CloudError, InputError, NotFound, NovaManageError, StateError
from dvremedy.model import classify, plan
from dvremedy.model import disks as disk_rule
from dvremedy.settings import require_uuid
from dvremedy.steps import admission, views


def identify(ctx, server_id, volume_id, detach=True, allow_libvirt_detach=False,
             mode="manual"):
    """The three views, classified with Nova's recent instance actions and stuck_after (an
    operation Nova is still running is in progress, not stuck), and the plan."""
    server_id = require_uuid("server_id", server_id)
    volume_id = require_uuid("volume_id", volume_id)
    admission.require_mode(mode, "identify")
    stuck_after = ctx.settings.audit_stuck_after
    now = datetime.datetime.now(datetime.timezone.utc)
    seen = views.identify(ctx.conn, ctx.ssh, ctx.settings, server_id, volume_id,
                          stuck_after=stuck_after, now=now)
    verdict = classify.classify(seen, stuck_after=stuck_after, now=now)
    return {"views": seen, "classification": verdict,
            "plan": plan.make_plan(seen, verdict, detach, allow_libvirt_detach, mode)}


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
    plan.refuse_when_held_elsewhere(cinder, server_id, volume_id, "refresh")
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

    def run_refresh():
        return novamanage.refresh(session, ctx.settings.controller_nova_manage, server_id,
                                  volume_id, connector, staging=ctx.settings.staging_spec(),
                                  timeout=ctx.settings.wait_refresh)
    try:
        try:
            result = run_refresh()
        except NovaManageError as err:
            if not (err.details.get("needs_unlock") and srv.is_locked):
                raise
            result = _refresh_unlocked(ctx, srv, run_refresh, did)
    except NovaManageError as err:
        if err.details.get("refresh_started", True):
            err.details["leave_off"] = _leave_off(server_id, volume_id, err)
        raise
    after = views.nova_view(ctx.conn, server_id).get(volume_id) or {}
    did.append("nova-manage volume_attachment refresh on %s: exit 0; new attachment %s"
               % (host, after.get("attachment_id")))
    return _did("refresh", True, "; ".join(did), reset_volume_to=reset_to, controller=host,
                attachment_id=after.get("attachment_id"), refresh=result)


def detach(ctx, server_id, volume_id):
    """The Compute API detach, then until Cinder says available and Nova no longer lists it."""
    server_id = require_uuid("server_id", server_id)
    volume_id = require_uuid("volume_id", volume_id)
    try:
        with api("GET volume %s" % volume_id, "detach"):
            ctx.conn.block_storage.get_volume(volume_id)  # unknown: an error, not done
    except NotFound:
        raise NotFound("volume %s does not exist (Cinder answered 404)" % volume_id,
                       step="detach")
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
    _refuse_boot_volume(ctx, srv, volume_id)
    session, virsh = ctx.ssh(srv.compute_host), ctx.settings.virsh
    domain = srv.instance_name
    did = []
    for inactive, modes in ((False, ("live",)), (True, ("config",))):
        disks = disk_rule.disks_of_volume(
            libvirt.domain_disks(session, virsh, domain, inactive=inactive), volume_id)
        running = libvirt.domain_state(session, virsh, domain) == "running"
        for disk in disks:
            if srv.root_device_name and srv.root_device_name.rsplit("/", 1)[-1] == \
                    disk["target"]:
                raise StateError("disk %s of domain %s is the server's root device %s: virsh "
                                 "detach-disk is refused" % (disk["target"], domain,
                                                             srv.root_device_name),
                                 step="libvirt_detach", boot=classify.BOOT)
            # shut off: the live XML is the config; running: --live, then --config if left
            mode = "config" if (inactive or not running) else modes[0]
            libvirt.detach_disk(session, virsh, domain, disk["target"], mode)
            did.append("virsh detach-disk %s %s --%s" % (domain, disk["target"], mode))
    bookkeeping = detach(ctx, server_id, volume_id)
    return _did("libvirt_detach", bool(did) or bookkeeping["changed"],
                "; ".join(did + [bookkeeping["did"]]) or "no disk of this volume on the domain")


# helpers -------------------------------------------------------------------------------------

def _refresh_unlocked(ctx, srv, run_refresh, did):
    """Nova before 27.5.1 / 28.3.0 refuses refresh on a locked instance (rc 5, before it
    changes anything): unlock, refresh, and lock again with the original reason, whatever
    the refresh did. An admin's lock cannot be lifted by the owner: say so."""
    reason = srv.locked_reason
    try:
        with api("unlock server %s" % srv.id, "refresh"):
            ctx.conn.compute.unlock_server(srv.id)
    except CloudError as exc:
        if exc.details.get("http_status") in (403, 409):
            raise StateError(
                "server %s is locked and this Nova refuses refresh on a locked instance; the "
                "lock could not be lifted (HTTP %s): it is most likely an admin's lock "
                "(locked_by admin), which the owner cannot lift. Ask an admin to unlock it "
                "(openstack server unlock %s), run the remedy again, then lock it again. "
                "Nothing was refreshed" % (srv.id, exc.details["http_status"], srv.id),
                step="refresh", refresh_started=False, **{
                    k: v for k, v in exc.details.items() if k != "refresh_started"})
        raise
    did.append("unlocked the server for refresh (this Nova refuses a locked instance)")
    try:
        return run_refresh()
    finally:
        with api("lock server %s" % srv.id, "refresh"):
            ctx.conn.compute.lock_server(srv.id, locked_reason=reason)
        did.append("locked the server again%s" % (" (reason: %s)" % reason if reason else ""))


def _refuse_boot_volume(ctx, srv, volume_id):
    """virsh detach-disk never runs on what is, or may be, the boot volume (fail closed)."""
    nova = views.nova_view(ctx.conn, srv.id, "libvirt_detach").get(volume_id)
    with api("GET volume %s" % volume_id, "libvirt_detach"):
        bootable = ctx.conn.block_storage.get_volume(volume_id).is_bootable
    facts = {"root_device_name": srv.root_device_name}
    boot = classify.boot_evidence(facts, nova, {"bootable": bootable})
    if boot != classify.NOT_BOOT:
        raise StateError("volume %s %s the boot volume of server %s (root device %s, Nova's "
                         "device %s, Cinder bootable %s): virsh detach-disk is refused" % (
                             volume_id, "is" if boot == classify.BOOT else "may be", srv.id,
                             srv.root_device_name or "hidden", (nova or {}).get("device"),
                             bootable), step="libvirt_detach", boot=boot)


def _leave_off(server_id, volume_id, err):
    """Why the server stays off after a refresh that started and did not succeed, and what the
    operator runs next: starting it could rebuild the domain from a half-refreshed mapping."""
    return {
        "reason": "refresh %s: the block device mapping may be half-refreshed (no "
                  "connection_info) and refresh may still hold the instance lock, so the "
                  "server was left SHUTOFF on purpose" % (
                      "timed out" if err.details.get("timed_out") else
                      "exited %s" % err.details.get("exit_code")),
        "next": "check 'openstack server event list %s' (refresh_volume_attachment) and "
                "'nova-manage volume_attachment show %s %s'; when refresh has ended, run the "
                "remedy again (it refreshes from this state), then start the server "
                "(openstack server start %s)" % (server_id, server_id, volume_id, server_id),
    }


def _did(step, changed, text, **facts):
    out = {"step": step, "changed": changed, "did": text}
    out.update(facts)
    return out


def _reset_target(cinder, server_id):
    """The status the volume must be reset to before refresh, or None. Only this server's
    attachment records count (refresh has refused a volume another server holds)."""
    mine = [a for a in cinder["attachments"] if a["server_id"] == server_id]
    stuck = cinder["status"] in classify.DETACHING_STATES or any(
        a["status"] in classify.DETACHING_STATES for a in mine)
    if not stuck:
        return None
    return "in-use" if mine else "available"
