"""The audit's report: built from what the audit read (build), made small for the action
result (summary) and readable by a person (render_table). Pure: no I/O."""
from dvremedy.model import correlate

SUMMARY_REMEDIES = 50     # remedy inputs listed in the action result; the report has them all


def build(inv, final, now, stuck_after, deep, versions, pages, cloud_name, compute_hosts,
          page_size):
    """The full report (a dict, JSON-able) from the inventory and every (view, verdict)."""
    findings, unverified, by_class, healthy = [], [], {}, 0
    for view, verdict in final:
        if verdict["audit"] == "healthy":
            healthy += 1
        elif verdict["audit"] == correlate.UNVERIFIED:
            unverified.append({"server_id": view["server"]["id"],
                               "volume_id": view["volume_id"],
                               "host": view["server"].get("compute_host"),
                               "why": (view["hypervisor"].get("error") or {}).get("message")})
        else:
            found = correlate.finding(view, verdict, stuck_after, now)
            findings.append(found)
            by_class[found["class"]] = by_class.get(found["class"], 0) + 1
    not_seen = []
    for host, result in sorted(inv["hypervisors"].items()):
        if not result["reachable"]:
            not_seen.append({
                "host": host, "reason": result["error"]["message"], "error": result["error"],
                "attachments_unverified": sum(1 for u in unverified if u["host"] == host),
                "findings_on_host": sum(1 for f in findings if f["host"] == host)})
    for f in findings:
        f["hypervisor_seen"] = bool(f["hypervisor"].get("reachable"))
    return {
        "kind": "dangling_volume.audit", "format": 1, "cloud": cloud_name,
        "started_at": iso(now), "scope": inv["scope"], "deep": bool(deep),
        "stuck_after_s": stuck_after, "page_size": page_size,
        "complete": not not_seen,
        "counts": {
            "servers": sum(1 for s in inv["servers"].values() if s),
            "volumes": sum(1 for v in inv["volumes"].values() if v),
            "attachment_records": None if inv["records"] is None else len(inv["records"]),
            "attachments_checked": len(final), "healthy": healthy,
            "findings": len(findings), "unverified": len(unverified), "by_class": by_class,
            "with_remedy": sum(1 for f in findings if f["remedy"]["action"]),
            "needs_operator": sum(1 for f in findings if f["remedy"]["needs_operator"]),
        },
        "hypervisors": {
            "read": sorted(h for h, r in inv["hypervisors"].items() if r["reachable"]),
            "not_seen": not_seen,
            "domains": sum(len(r.get("domains") or {}) for r in inv["hypervisors"].values()),
            "compute_hosts": {h: compute_hosts[h] for h in sorted(compute_hosts)},
        },
        "api": dict(pages.as_dict(), microversions=versions,
                    deep_reads=len(inv["deep"])),
        "findings": findings,
        "unverified": unverified,
    }


def summary(report, paths):
    """The action result: small (st2 stores it). The full report is in the files."""
    remedies = [dict(f["remedy"]["parameters"], **{"class": f["class"]})
                for f in report["findings"] if f["remedy"]["action"]]
    out = {
        "complete": report["complete"], "scope": report["scope"], "deep": report["deep"],
        "counts": report["counts"],
        "hosts_not_seen": [{"host": h["host"], "reason": h["reason"]}
                           for h in report["hypervisors"]["not_seen"]],
        "report": paths, "api_requests": report["api"]["requests"],
        "remedies": remedies[:SUMMARY_REMEDIES],
        "remedies_left_out": max(0, len(remedies) - SUMMARY_REMEDIES),
        "audit_s": report["duration_s"],
    }
    out["text"] = summary_text(out)
    return out


def summary_text(s):
    """The audit's result as a person reads it: the counts, by class, what could not be seen,
    where the report is and what to type next."""
    c = s["counts"]
    lines = ["Audit (%s): %d attachments checked, %d finding%s%s." % (
        scope_text(s["scope"]), c["attachments_checked"], c["findings"],
        "" if c["findings"] == 1 else "s",
        " (%d with a remedy, %d need an operator)" % (c["with_remedy"], c["needs_operator"])
        if c["findings"] else "")]
    lines.extend("* %s: %d" % kv for kv in sorted((c.get("by_class") or {}).items()))
    if not s["complete"]:
        lines.append("Not seen: %s" % ", ".join("%s (%s)" % (h["host"], h["reason"])
                                                for h in s["hosts_not_seen"]))
    paths = s["report"] if isinstance(s["report"], dict) else {}
    lines.append("Report: %s" % (paths.get("table") or paths.get("json") or "(not written)"))
    if c.get("with_remedy"):
        lines.append("To remedy them: `dry run sweep volumes`, then `sweep volumes` (CLI: "
                     "`st2 run dangling_volume.sweep dry_run=true`)")
    return "\n".join(lines)


def render_table(report):
    """The report for a person: the counts, what could not be seen, one line per finding,
    then every finding's facts and remedy."""
    c = report["counts"]
    lines = [
        "dangling_volume audit of %s, cloud %s, started %s, %.1f s" % (
            scope_text(report["scope"]), report["cloud"], report["started_at"],
            report["duration_s"]),
        "servers %d, volumes %d, attachments checked %d: healthy %d, findings %d, "
        "unverified %d%s" % (c["servers"], c["volumes"], c["attachments_checked"],
                             c["healthy"], c["findings"], c["unverified"],
                             "" if c["attachment_records"] is not None else
                             " (no Cinder attachment records: volume API below 3.27)"),
        "hypervisors read: %s" % (", ".join(report["hypervisors"]["read"]) or "none"),
    ]
    for h in report["hypervisors"]["not_seen"]:
        lines.append("HYPERVISOR NOT SEEN: %s: %s (%d attachment(s) unverified)" % (
            h["host"], h["reason"], h["attachments_unverified"]))
    lines.append("API requests: %d (%s)%s" % (
        report["api"]["requests"], ", ".join("%s %d page(s)" % kv for kv in
                                             sorted(report["api"]["pages"].items())),
        "; deep tier for every server" if report["deep"] else ""))
    lines.append("")
    if not report["findings"]:
        lines.append("No findings: Nova, Cinder and the hypervisors agree on every attachment "
                     "seen.")
    else:
        rows = [("#", "CLASS", "SERVER", "VOLUME", "HOST", "SINCE", "REMEDY")]
        for i, f in enumerate(report["findings"], 1):
            rows.append((str(i), f["class"], _short(f["server_id"]), _short(f["volume_id"]),
                         f["host"] or "-", (f["since"] or "-")[:19], _remedy_short(f)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " +
                         row[-1])
        lines.append("")
        for i, f in enumerate(report["findings"], 1):
            lines += _details(i, f)
    if report["unverified"]:
        lines.append("Unverified (hypervisor not read): %d attachment(s), see the JSON report"
                     % len(report["unverified"]))
    return "\n".join(lines).rstrip() + "\n"


def _details(i, f):
    srv, vol, remedy = f["server"], f["volume"], f["remedy"]
    others = [p for p in f["problems"] if p != f["class"]]
    out = ["[%d] %s%s" % (i, f["class"], " (also %s)" % ", ".join(others) if others else ""),
           "    server:     %s %s, %s, project %s, host %s" % (
               srv["id"] or "-", srv["name"] or "", srv["status"] or "no such server",
               f["project_id"] or "-", f["host"] or "-"),
           "    volume:     %s %s, %s%s" % (vol["id"], vol["name"] or "",
                                            vol["status"] or "no such volume",
                                            ", boot volume" if f["boot_volume"] else ""),
           "    nova:       %s" % f["says"]["nova"],
           "    cinder:     %s" % f["says"]["cinder"],
           "    hypervisor: %s" % f["says"]["hypervisor"],
           "    since:      %s%s" % (f["since"] or "-", " (last update, %s ago)" % _age(
               f["age_s"]) if f["age_s"] is not None else "")]
    if remedy["action"]:
        out.append("    remedy:     st2 run %s %s" % (remedy["action"], " ".join(
            "%s=%s" % (k, str(v).lower() if isinstance(v, bool) else v)
            for k, v in sorted(remedy["parameters"].items()))))
        out.append("                %s: %s" % (remedy["plan"], ", ".join(remedy["steps"])))
    else:
        out.append("    remedy:     %s: %s" % ("needs an operator" if remedy["needs_operator"]
                                               else "none yet", remedy["why"]))
    return out + [""]


def _remedy_short(f):
    remedy = f["remedy"]
    if remedy["action"]:
        return "%s (%s%s)" % (remedy["action"], remedy["plan"],
                              ", allow_libvirt_detach" if remedy["last_resort"] else "")
    return "needs an operator" if remedy["needs_operator"] else "wait: in progress"


def _short(value):
    return value[:8] if value else "-"


def _age(seconds):
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "%d %s" % (seconds // size, unit)
    return "%d s" % seconds


def scope_text(scope_info):
    if scope_info["kind"] == "project":
        return "project %s (%s)" % (scope_info.get("project_name") or scope_info.get("project"),
                                    scope_info.get("project_id") or "?")
    if scope_info["kind"] == "host":
        return "host %s" % scope_info["host"]
    return "the whole cloud"


def iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
