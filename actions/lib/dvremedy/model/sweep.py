"""The sweep: which of the audit's findings it remedies, and the summary of what became of them.

Pure (no I/O). The sweep runs every finding that has a remedy through the remedy workflow in
automatic mode, so the approval gate, the hourly cap and the per-server concurrency policy of
the automatic path apply. It leaves alone what the audit says needs an operator, and the last
resort (`virsh detach-disk`): a sweep never allows that on its own.

By default the sweep repairs and leaves the volume attached (`detach: false`): an audit cannot
tell whether anyone still wants the volume detached, and detaching a volume a guest uses is
not a repair. The operator detaches afterwards, now that it works."""

STEP = "sweep"
DONE, NOTHING, DECLINED, CAPPED, FAILED = "remedied", "nothing to do", "declined", "capped", \
    "failed"


def plan_sweep(audit, concurrency, detach=False):
    """From the audit action's result: the remedies to run and what is left to an operator."""
    todo, left = [], []
    for remedy in audit.get("remedies") or []:
        finding = {"server_id": remedy["server_id"], "volume_id": remedy["volume_id"],
                   "class": remedy.get("class")}
        if remedy.get("allow_libvirt_detach"):
            left.append(dict(finding, why="needs the last resort (virsh detach-disk): run "
                                          "the remedy by hand with allow_libvirt_detach=true"))
        else:
            todo.append(dict(finding, detach=bool(detach)))
    counts = audit.get("counts") or {}
    notes = []
    if audit.get("remedies_left_out"):
        notes.append("%d more findings with a remedy than the audit's summary lists: sweep "
                     "again after this one" % audit["remedies_left_out"])
    if counts.get("needs_operator"):
        notes.append("%d findings need an operator: see the audit report %s" % (
            counts["needs_operator"], (audit.get("report") or {}).get("table", "")))
    if audit.get("complete") is False:
        notes.append("the audit could not read every hypervisor: %s" % ", ".join(
            h["host"] for h in audit.get("hosts_not_seen") or []))
    return {"step": STEP, "changed": False, "todo": todo, "left_alone": left,
            "concurrency": max(1, int(concurrency)), "notes": notes,
            "did": "%d remedies to run, %d left alone" % (len(todo), len(left))}


_BUCKETS = {"remedied": DONE, "nothing to do": NOTHING, "rejected": DECLINED,
            "approval timed out": DECLINED, "capped": CAPPED}


def _bucket(report):
    """A remedy's report -> remedied / nothing to do / declined / capped / failed (no report,
    or a failed run, counts as failed)."""
    return _BUCKETS.get((report or {}).get("outcome"), FAILED)


def summarize(plan, results=None, dry_run=False, audit=None):
    """What became of each remedy. `results` are the with-items results, in the order of
    plan["todo"]: each the remedy execution's result ({output: {report}, errors?})."""
    results = list(results or [])
    rows = []
    for i, finding in enumerate(plan.get("todo") or []):
        item = results[i] if i < len(results) and isinstance(results[i], dict) else {}
        report = (item.get("output") or {}).get("report") if isinstance(
            item.get("output"), dict) else None
        if dry_run:
            bucket, said = "would remedy", "dry run: nothing started"
        else:
            bucket = _bucket(report)
            said = (report or {}).get("outcome") or _error_text(item) or "no report"
        rows.append(dict(finding, result=bucket, said=said,
                         error=((report or {}).get("error") or {}).get("message")))
    counts = {}
    for row in rows:
        counts[row["result"]] = counts.get(row["result"], 0) + 1
    audit_counts = (audit or {}).get("counts") or {}
    summary = {
        "dry_run": bool(dry_run), "remedies": rows, "counts": counts,
        "left_alone": plan.get("left_alone") or [], "notes": plan.get("notes") or [],
        "findings": audit_counts.get("findings"),
        "needs_operator": audit_counts.get("needs_operator", 0),
        "report": (audit or {}).get("report"),
    }
    summary["text"] = _text(summary)
    return summary


def _error_text(item):
    errors = item.get("errors") if isinstance(item, dict) else None
    if isinstance(errors, list) and errors:
        first = errors[0]
        return first.get("message") if isinstance(first, dict) else str(first)
    return None


def _text(s):
    head = "sweep%s: %s finding(s); " % (" (dry run)" if s["dry_run"] else "",
                                         s["findings"] if s["findings"] is not None else "?")
    if s["dry_run"]:
        head += "would remedy %d" % len(s["remedies"])
    else:
        head += ", ".join("%s %d" % (k, v) for k, v in sorted(s["counts"].items())) or \
            "nothing to remedy"
    lines = [head]
    for row in s["remedies"]:
        lines.append("  %s volume %s on server %s (%s): %s" % (
            row["result"], row["volume_id"], row["server_id"], row["class"], row["said"]))
    for row in s["left_alone"]:
        lines.append("  left alone: volume %s on server %s (%s): %s" % (
            row["volume_id"], row["server_id"], row["class"], row["why"]))
    lines.extend("  note: " + n for n in s["notes"])
    report = s["report"] if isinstance(s["report"], dict) else {}
    if report.get("table") or report.get("json"):
        lines.append("Audit report: %s" % (report.get("table") or report.get("json")))
    if s["dry_run"] and s["remedies"]:
        lines.append("To start them: `sweep volumes` (CLI: `st2 run dangling_volume.sweep`)")
    return "\n".join(lines)
