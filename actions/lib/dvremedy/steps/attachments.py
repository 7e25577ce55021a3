"""The `attachments` step: every volume attached to one server, each classified by the one
classifier (model.classify) from the same views the remedy's identify step reads. Read only.
Takes a runner.StepContext, like the steps in dvremedy.steps.remedy."""
from dvremedy.model import classify
from dvremedy.settings import require_uuid
from dvremedy.steps import views


def list_attachments(ctx, server_id):
    server_id = require_uuid("server_id", server_id)
    seen = views.server_attachments(ctx.conn, ctx.ssh, ctx.settings, server_id)
    rows = [volume_row(v, classify.classify(v)) for v in seen["volumes"]]
    server = seen["server"]
    result = {
        "server": {k: server.get(k) for k in ("id", "name", "status", "compute_host",
                                              "instance_name")},
        "hypervisor": seen["hypervisor"],
        "volumes": rows,
        "count": len(rows),
        "unhealthy": sum(1 for r in rows if not r["healthy"]),
    }
    result["summary"] = summary(result)
    result["text"] = text(result)
    return result


def volume_row(views_of_volume, verdict):
    """One volume as a person reads it, from its views and its classification."""
    nova = views_of_volume["nova"] or {}
    cinder = views_of_volume["cinder"]
    hyp = views_of_volume["hypervisor"]
    return {
        "volume_id": views_of_volume["volume_id"],
        "class": verdict["class"],
        "problems": verdict["problems"],
        "healthy": verdict["healthy"],
        "boot_volume": verdict["boot_volume"],
        "device": nova.get("device"),
        "nova_attachment_id": nova.get("attachment_id"),
        "cinder_status": cinder["status"] if cinder.get("exists", True) else "not found",
        "cinder_attachments": [{"id": a["id"], "status": a["status"]}
                               for a in cinder["attachments"]],
        "hypervisor_live": hyp["live"],
        "hypervisor_config": hyp["config"],
        "says": verdict["says"],
    }


def summary(result):
    """A headline and one line per volume, short enough for a chat message."""
    server = result["server"]
    lines = ["server %s (%s, %s on %s): %s" % (
        server["name"], server["id"], server["status"], server["compute_host"] or "no host",
        _counted(result))]
    for row in result["volumes"]:
        line = "  %s %s: %s" % (row["device"] or "-", row["volume_id"], row["class"])
        if row["boot_volume"]:
            line += " (boot volume)"
        if not row["healthy"]:
            line += "; Nova: %s; Cinder: %s; hypervisor: %s" % (
                row["says"]["nova"], row["says"]["cinder"], row["says"]["hypervisor"])
        lines.append(line)
    unread = _unread(result, "the server has no compute host or domain")
    if unread:
        lines.append("  the hypervisor could not be read: %s" % unread)
    return "\n".join(lines)


def text(result):
    """What a person reads in chat: the headline, one line per volume, what to look at next."""
    server = result["server"]
    lines = ["Server %s (%s, %s): %s." % (
        server["name"], server["id"], server["status"], _counted(result))]
    for row in result["volumes"]:
        lines.append("%s `%s`: %s%s, Cinder %s" % (
            row["device"] or "-", row["volume_id"], row["class"],
            " (boot volume)" if row["boot_volume"] else "", row["cinder_status"]))
    unread = _unread(result, "the server has no compute host")
    if unread:
        lines.append("The hypervisor could not be read: %s" % unread)
    look = [row for row in result["volumes"] if not row["healthy"] and not row["boot_volume"]]
    if look:
        lines.append("Look before you act:")
        lines.extend("`dry run remedy volume %s on server %s`" % (row["volume_id"], server["id"])
                     for row in look)
    return "\n".join(lines)


def _counted(result):
    """"2 volumes attached, 1 needs attention" / "1 volume attached, all healthy"."""
    bad = result["unhealthy"]
    return "%d volume%s attached, %s" % (
        result["count"], "" if result["count"] == 1 else "s",
        "%d need%s attention" % (bad, "s" if bad == 1 else "") if bad else "all healthy")


def _unread(result, no_message):
    """Why the hypervisor could not be read, or None when it was."""
    if result["hypervisor"]["reachable"]:
        return None
    return (result["hypervisor"].get("error") or {}).get("message", no_message)
