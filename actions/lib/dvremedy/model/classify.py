"""The one classifier of an attachment's three views (Nova, Cinder, the hypervisor): pure, no
I/O. The remedy's identify step and the cloud-wide audit both use it.

Input: the dict views.identify() returns (or the audit builds the same shape). Output: a
classification with every problem seen (one attachment can have several: a detach that failed
because the backend was down leaves the volume stuck `detaching` AND the disk already gone from
the domain), the primary class, and whether the attachment is healthy.

`stuck_after` (seconds) and `now`: a volume in a transitional state (or a server with a task)
last updated less than stuck_after ago is `in_progress`, not stuck, since a snapshot catches
detaches and attaches half-way. The identify step also reads Nova's recent instance actions
(`nova_actions`): then Nova's own bookkeeping decides, an unfinished detach is in progress and
a young `detaching` volume whose detach Nova has ended (with an error) is stuck."""
import datetime

# problem codes, most decisive first (the first one present is the primary class)
NOT_ATTACHED = "not_attached"            # no view has it: nothing to remedy
IN_PROGRESS = "in_progress"              # an operation younger than stuck_after (audit only)
CINDER_ONLY = "cinder_only"              # Cinder holds an attachment Nova does not list
NOVA_ONLY = "nova_only"                  # Nova lists it, Cinder has no attachment for it
STUCK_DETACHING = "stuck_detaching"      # volume `detaching` / attachment `error_detaching`
STUCK_ATTACHING = "stuck_attaching"      # volume attaching/reserved, attachment not attached
ATTACHMENT_MISMATCH = "attachment_id_mismatch"  # both list it, with different attachment ids
DETACH_REFUSED = "detach_refused"        # disk live but gone from the next-boot config
MISSING_ON_HYPERVISOR = "missing_on_hypervisor"  # Nova and Cinder agree, the domain has no disk
HYPERVISOR_ONLY = "hypervisor_only"      # the domain has the disk, Nova does not list it
HYPERVISOR_UNKNOWN = "hypervisor_unreachable"    # the hypervisor could not be read
ORDER = [NOT_ATTACHED, IN_PROGRESS, CINDER_ONLY, NOVA_ONLY, STUCK_DETACHING, STUCK_ATTACHING,
         ATTACHMENT_MISMATCH, DETACH_REFUSED, MISSING_ON_HYPERVISOR, HYPERVISOR_ONLY,
         HYPERVISOR_UNKNOWN]

HEALTHY = "healthy"
DETACHING_STATES = {"detaching", "error_detaching"}
ATTACHING_STATES = {"attaching", "reserved", "error_attaching"}


def classify(views, stuck_after=None, now=None):
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
    statuses = [cinder.get("status")] + [a.get("status") for a in mine]
    detaching = [s for s in statuses if s in DETACHING_STATES]
    attaching = [s for s in statuses if s in ATTACHING_STATES]
    failed = any(s.startswith("error_") for s in detaching + attaching)
    activity = views.get("nova_actions")   # identify reads them; the audit does not
    if any(not a.get("finished", True) for a in activity or []):
        problems.append(IN_PROGRESS)        # Nova is still at work on this server
    elif (detaching or attaching) and not failed and activity is None and _younger(
            cinder.get("updated_at"), stuck_after, now):
        problems.append(IN_PROGRESS)
    elif detaching:
        problems.append(STUCK_DETACHING)
    elif attaching:
        problems.append(STUCK_ATTACHING)
    # the audit's fast tier has no attachment id from Nova (no "attachment_id" key): only the
    # 2.89 read (identify, the audit's deep tier) can show a mismatch
    if nova is not None and attached and "attachment_id" in nova and \
            nova["attachment_id"] not in {a["id"] for a in attached}:
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

    # a server busy with a task (deleting, powering off, migrating) changes its attachments:
    # what looks wrong while the task is young is most likely its work half-done
    if server.get("task_state") and set(problems) - {IN_PROGRESS, HYPERVISOR_UNKNOWN} and \
            IN_PROGRESS not in problems and _younger(server.get("updated"), stuck_after, now):
        problems.append(IN_PROGRESS)
    problems.sort(key=ORDER.index)
    healthy = not problems
    boot = boot_evidence(server, nova, cinder)
    return {
        "class": HEALTHY if healthy else problems[0],
        "healthy": healthy,
        "problems": problems,
        "boot_volume": boot == BOOT,
        "boot": boot,
        "says": {
            "nova": ("attached as %s, attachment %s" % (
                nova.get("device") or "?", nova.get("attachment_id", "not read")) if nova
                else "not attached"),
            "cinder": "%s; attachments of this server: %s" % (
                cinder.get("status"),
                ", ".join("%s %s" % (a["id"], a["status"]) for a in mine) or "none"),
            "hypervisor": ("unreachable" if not hyp.get("reachable") else
                           "live: %s; next boot: %s" % (",".join(hyp.get("live") or []) or "-",
                                                        ",".join(hyp.get("config") or []) or "-")),
        },
    }


BOOT, NOT_BOOT, BOOT_UNKNOWN = "boot", "not boot", "unknown"


def boot_evidence(server, nova, cinder):
    """Whether the volume is the server's boot volume: BOOT, NOT_BOOT or BOOT_UNKNOWN. The
    server's root device name decides when Nova shows it (the policy may hide it); else a
    volume Cinder does not call bootable cannot be booted from. The remedy refuses a detach
    on BOOT and on BOOT_UNKNOWN (fail closed); refresh does not care."""
    root = server.get("root_device_name")
    device = (nova or {}).get("device")
    if nova is None:
        return NOT_BOOT                     # the boot volume is always in Nova's mappings
    if root and device:
        return BOOT if device == root else NOT_BOOT
    if cinder.get("bootable") is False or str(cinder.get("bootable")).lower() == "false":
        return NOT_BOOT
    return BOOT_UNKNOWN


def _younger(timestamp, seconds, now):
    """True when stuck_after is given and `timestamp` (ISO 8601, UTC, as Nova and Cinder write
    it, with or without a zone) is less than that many seconds before `now`."""
    if seconds is None or not timestamp:
        return False
    when = parse_time(timestamp)
    if when is None:
        return False
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (now - when).total_seconds() < seconds


def parse_time(text):
    """An API timestamp as an aware UTC datetime, or None when it does not parse."""
    text = str(text).strip().replace("Z", "+00:00")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            when = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        return when
    return None
