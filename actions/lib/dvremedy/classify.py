"""The one classifier of an attachment's three views (Nova, Cinder, the hypervisor): pure, no
I/O. The remedy's identify step and the cloud-wide audit both use it.

Input: the dict views.identify() returns (or the audit builds the same shape). Output: a
classification with every problem seen (one attachment can have several: a detach that failed
because the backend was down leaves the volume stuck `detaching` AND the disk already gone from
the domain), the primary class, and whether the attachment is healthy."""

# problem codes, most decisive first (the first one present is the primary class)
NOT_ATTACHED = "not_attached"            # no view has it: nothing to remedy
CINDER_ONLY = "cinder_only"              # Cinder holds an attachment Nova does not list
NOVA_ONLY = "nova_only"                  # Nova lists it, Cinder has no attachment for it
STUCK_DETACHING = "stuck_detaching"      # volume `detaching` / attachment `error_detaching`
STUCK_ATTACHING = "stuck_attaching"      # volume attaching/reserved, attachment not attached
ATTACHMENT_MISMATCH = "attachment_id_mismatch"  # both list it, with different attachment ids
DETACH_REFUSED = "detach_refused"        # disk live but gone from the next-boot config
MISSING_ON_HYPERVISOR = "missing_on_hypervisor"  # Nova and Cinder agree, the domain has no disk
HYPERVISOR_ONLY = "hypervisor_only"      # the domain has the disk, Nova does not list it
HYPERVISOR_UNKNOWN = "hypervisor_unreachable"    # the hypervisor could not be read
ORDER = [NOT_ATTACHED, CINDER_ONLY, NOVA_ONLY, STUCK_DETACHING, STUCK_ATTACHING,
         ATTACHMENT_MISMATCH, DETACH_REFUSED, MISSING_ON_HYPERVISOR, HYPERVISOR_ONLY,
         HYPERVISOR_UNKNOWN]

HEALTHY = "healthy"
DETACHING_STATES = {"detaching", "error_detaching"}
ATTACHING_STATES = {"attaching", "reserved", "error_attaching"}


def classify(views):
    server = views["server"]
    nova = views.get("nova")
    cinder = views.get("cinder") or {"status": None, "attachments": []}
    hyp = views.get("hypervisor") or {"reachable": False, "live": [], "config": []}
    mine = [a for a in cinder.get("attachments", []) if a.get("server_id") == server["id"]]
    attached = [a for a in mine if a.get("status") == "attached"]
    on_domain = bool(hyp.get("live") or hyp.get("config"))
    problems = []

    if nova is None and not mine and not on_domain:
        problems.append(NOT_ATTACHED)
    if nova is None and mine:
        problems.append(CINDER_ONLY)
    if nova is not None and not mine:
        problems.append(NOVA_ONLY)
    if cinder.get("status") in DETACHING_STATES or any(
            a.get("status") in DETACHING_STATES for a in mine):
        problems.append(STUCK_DETACHING)
    elif cinder.get("status") in ATTACHING_STATES or any(
            a.get("status") in ATTACHING_STATES for a in mine):
        problems.append(STUCK_ATTACHING)
    if nova is not None and attached and nova.get("attachment_id") not in {
            a["id"] for a in attached}:
        problems.append(ATTACHMENT_MISMATCH)
    if hyp.get("reachable"):
        if nova is not None and hyp.get("live") and not hyp.get("config"):
            problems.append(DETACH_REFUSED)
        if nova is not None and mine and not on_domain:
            problems.append(MISSING_ON_HYPERVISOR)
        if nova is None and on_domain:
            problems.append(HYPERVISOR_ONLY)
    elif nova is not None or mine:
        problems.append(HYPERVISOR_UNKNOWN)

    problems.sort(key=ORDER.index)
    healthy = not problems
    is_boot = bool(nova and server.get("root_device_name") and
                   nova.get("device") == server["root_device_name"])
    return {
        "class": HEALTHY if healthy else problems[0],
        "healthy": healthy,
        "problems": problems,
        "boot_volume": is_boot,
        "says": {
            "nova": ("attached as %s, attachment %s" % (nova["device"], nova["attachment_id"])
                     if nova else "not attached"),
            "cinder": "%s; attachments of this server: %s" % (
                cinder.get("status"),
                ", ".join("%s %s" % (a["id"], a["status"]) for a in mine) or "none"),
            "hypervisor": ("unreachable" if not hyp.get("reachable") else
                           "live: %s; next boot: %s" % (",".join(hyp.get("live") or []) or "-",
                                                        ",".join(hyp.get("config") or []) or "-")),
        },
    }
