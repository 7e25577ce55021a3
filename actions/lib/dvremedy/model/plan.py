"""Deciding what to do about one attachment: pure, from identify's views and classification.

The plan names the steps the workflow runs, each with its reason, so a dry run shows exactly
what a real run would do. The refresh path is the runbook's (stop, get_connector, refresh,
detach, start) plus what the runbook forgets: the server must be stopped, and a volume stuck
`detaching` must first go back to in-use (Cinder will not reserve it otherwise, refresh rc 2)."""
from dvremedy.errors import InputError, StateError
from dvremedy.model import classify as c

NOTHING, DETACH_ONLY, REFRESH, LIBVIRT_ONLY = "nothing", "detach_only", "refresh", "libvirt_only"
REFRESH_PROBLEMS = {c.NOVA_ONLY, c.STUCK_DETACHING, c.STUCK_ATTACHING, c.ATTACHMENT_MISMATCH,
                    c.DETACH_REFUSED}


def make_plan(views, classification, detach=True, allow_libvirt_detach=False, mode="manual"):
    """The plan, or a typed error saying why the remedy refuses. `mode` automatic (a run the
    sensor started) plans nothing for a healthy attachment: a notification is not a reason to
    detach an in-use volume nobody found broken."""
    server = views["server"]
    problems = set(classification["problems"])
    running = server["status"] != "SHUTOFF"
    base = {"server_id": server["id"], "volume_id": views["volume_id"],
            "class": classification["class"], "problems": classification["problems"],
            "original_power": "running" if running else "shutoff", "detach": bool(detach),
            "allow_libvirt_detach": bool(allow_libvirt_detach), "stop": False,
            "reset_volume_to": None, "steps": [], "reasons": []}

    if classification["boot_volume"]:
        raise InputError("volume %s is the boot volume of server %s: the remedy never "
                         "detaches a boot volume" % (views["volume_id"], server["id"]),
                         step="plan")
    if c.NOT_ATTACHED in problems:
        raise InputError("volume %s is not attached to server %s: Nova, Cinder and the "
                         "hypervisor all agree, nothing to do" % (views["volume_id"],
                                                                 server["id"]), step="plan")
    if c.HYPERVISOR_UNKNOWN in problems:
        error = views["hypervisor"].get("error", {})
        raise StateError("cannot read the hypervisor %s (%s): the remedy needs it to get the "
                         "connector and to verify; fix SSH access first" % (
                             server.get("compute_host"), error.get("message", "unreachable")),
                         step="plan", hypervisor_error=error)
    if c.CINDER_ONLY in problems:
        raise StateError("Cinder holds attachment(s) of volume %s to server %s that Nova does "
                         "not list: needs an operator (`openstack volume attachment delete "
                         "<id>`; Cinder allows it because Nova does not use it)"
                         % (views["volume_id"], server["id"]), step="plan")
    if server.get("task_state"):
        raise StateError("server %s is busy (task_state %s): try again when it is idle"
                         % (server["id"], server["task_state"]), step="plan")
    if c.IN_PROGRESS in problems:
        raise StateError(_in_progress(views), step="plan",
                         nova_actions=[a for a in views.get("nova_actions") or []
                                       if not a.get("finished", True)])
    if classification["healthy"] and mode == "automatic":
        return dict(base, action=NOTHING, reasons=[
            "healthy: Nova, Cinder and the hypervisor agree; an automatic run never detaches "
            "a volume it did not find broken"])
    _refuse_when_compute_down(server)
    if (detach or problems == {c.HYPERVISOR_ONLY}) and \
            classification.get("boot") == c.BOOT_UNKNOWN:
        raise StateError("cannot tell whether volume %s is the boot volume of server %s (Nova "
                         "hides the root device name and Cinder calls the volume bootable): "
                         "the remedy never detaches what may be a boot volume. Check by hand "
                         "(openstack server show %s -c root_device_name as admin); run with "
                         "detach=false to refresh only" % (views["volume_id"], server["id"],
                                                           server["id"]), step="plan")

    if classification["healthy"] or problems == {c.MISSING_ON_HYPERVISOR}:
        if not detach:
            if classification["healthy"]:
                return dict(base, action=NOTHING, reasons=[
                    "healthy: Nova, Cinder and the hypervisor agree; detach=false"])
        else:
            why = ("healthy: a plain detach through the Compute API" if classification["healthy"]
                   else "disk already gone from the domain while Nova and Cinder list it: "
                        "the Compute API detach treats a missing disk as detached")
            return dict(base, action=DETACH_ONLY, steps=["detach", "verify"], reasons=[why])

    if problems == {c.HYPERVISOR_ONLY}:
        if not allow_libvirt_detach:
            raise StateError("the domain still has the disk of volume %s but Nova and Cinder "
                             "no longer list it: only `virsh detach-disk` removes it; run "
                             "again with allow_libvirt_detach=true" % views["volume_id"],
                             step="plan")
        return dict(base, action=LIBVIRT_ONLY, steps=["libvirt_detach", "verify"],
                    reasons=["disk left on the domain only"])

    refuse_when_held_elsewhere(views["cinder"], server["id"], views["volume_id"], "plan")
    reasons = ["%s: %s" % (p, _WHY[p]) for p in classification["problems"] if p in _WHY]
    reset_to = None
    if c.STUCK_DETACHING in problems:
        mine = [a for a in views["cinder"]["attachments"] if a["server_id"] == server["id"]]
        reset_to = "in-use" if mine else "available"
        reasons.append("reset the volume to %s first: Cinder reserves only an available "
                       "volume or an in-use one with this server's attachment" % reset_to)
    # the connector first (read-only): when it cannot be read the server is never stopped
    steps = ["get_connector"] + (["stop"] if running else []) + ["refresh"]
    if detach:
        steps += ["detach", "verify"]
        if allow_libvirt_detach:
            steps.append("libvirt_detach_if_needed")
        steps += ["start"] if running else []
    else:
        # refresh took the disk off the stopped domain; a start rebuilds it: verify after
        steps += (["start"] if running else []) + ["verify"]
    return dict(base, action=REFRESH, stop=running, reset_volume_to=reset_to, steps=steps,
                reasons=reasons)


_WHY = {
    c.NOVA_ONLY: "Nova lists the volume but Cinder has no attachment for this server",
    c.STUCK_DETACHING: "the volume is stuck detaching (a detach failed half-way)",
    c.STUCK_ATTACHING: "the volume or its attachment is stuck attaching/reserved",
    c.ATTACHMENT_MISMATCH: "Nova and Cinder name different attachment ids",
    c.DETACH_REFUSED: "the guest refused the detach: the disk is live but gone from the "
                      "next-boot config (a stopped server lets the detach through)",
    c.MISSING_ON_HYPERVISOR: "the disk is gone from the domain (power-on rebuilds it)",
}


def other_holders(cinder, server_id):
    """Cinder's attachment records of the volume that name another server."""
    return [a for a in cinder.get("attachments") or [] if a.get("server_id") != server_id]


def refuse_when_held_elsewhere(cinder, server_id, volume_id, step):
    """Never reset or refresh a volume another server holds an attachment record of (unless
    the volume is multiattach): the reset would take it from under that server, and where
    Cinder checks less the volume would end up on two servers."""
    others = other_holders(cinder, server_id)
    if others and not cinder.get("multiattach"):
        raise StateError(
            "volume %s is held by server %s (Cinder attachment %s, %s) and is not multiattach: "
            "resetting or refreshing it for server %s would take it from under that server. "
            "Needs an operator: find which server really uses it (openstack server volume "
            "list <server>), then delete the stale record (openstack volume attachment delete "
            "<id>) or fix the other server first. Nothing was changed" % (
                volume_id, ", ".join(a["server_id"] or "?" for a in others),
                ", ".join(a["id"] for a in others), ", ".join(a["status"] for a in others),
                server_id),
            step=step, held_by=[a["server_id"] for a in others])


def _refuse_when_compute_down(server):
    svc = server.get("compute_service") or {}
    if svc.get("state") == "down" or svc.get("forced_down"):
        raise StateError(
            "nova-compute on %s is down: Nova refuses a detach (HTTP 409) and refresh's call "
            "to it would time out. Bring nova-compute up (openstack compute service list "
            "--host %s shows it), then run the remedy again. Nothing was changed"
            % (svc.get("host"), svc.get("host")), step="plan", compute_service=svc)


def _in_progress(views):
    busy = [a for a in views.get("nova_actions") or [] if not a.get("finished", True)]
    if busy:
        return ("Nova is still at work on server %s (%s): the remedy does not interfere "
                "with an operation in progress; run it again once the action has ended "
                "(openstack server event list %s)" % (
                    views["server"]["id"], ", ".join("%s %s started %s" % (
                        a["action"], a["request_id"], a["start_time"]) for a in busy),
                    views["server"]["id"]))
    return ("volume %s changed state less than stuck_after ago (Cinder: %s, updated %s): it "
            "may still be in progress; run the remedy again later" % (
                views["volume_id"], views["cinder"].get("status"),
                views["cinder"].get("updated_at")))
