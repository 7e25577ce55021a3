"""The cloud-wide audit of volume attachments (action `audit`): read only.

1. Fast tier, in pages: Nova's servers (attached volume ids, compute host), Cinder's volumes
   (status, attachments) and, on volume API 3.27+, Cinder's attachment records.
2. Hypervisors, meanwhile: one SSH connection and one command per host (adapters.hypervisors).
3. What a view names but no listing holds is looked up once (a deleted server: an orphan
   attachment; a domain no server has: asked of Nova again for that host).
4. Deep tier: each suspect server's attachments at compute 2.89 (attachment id, BDM); every
   server's with deep=true, the only way to see an attachment-id mismatch on a server that
   otherwise looks healthy.
5. Every (server, volume) classified by the one classifier, with the remedy that applies
   (dvremedy.model.correlate); the full report written as JSON and as a table, a small summary
   returned (st2 keeps action results in its database).

Takes its connections as arguments (`conn`, `open_session(host)`); never imports st2."""
import concurrent.futures
import datetime
import json
import os
import re
import tempfile
import time

from dvremedy.adapters import hypervisors, inventory

from dvremedy.model import correlate
from dvremedy.errors import ConfigError, InputError
from dvremedy.settings import RELOAD

STEP = "audit"
SCOPES = ("all", "project", "host")
PACK_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "..", "..", "..", ".."))
SUMMARY_REMEDIES = 50     # remedy inputs listed in the action result; the report has them all


def check_scope(scope, project, host):
    """The scope parameters, checked before any call: (scope, project, host)."""
    scope = (scope or "all").strip()
    project, host = (project or "").strip(), (host or "").strip()
    if scope not in SCOPES:
        raise InputError("scope must be one of %s, not %r" % (", ".join(SCOPES), scope),
                         step=STEP)
    if scope == "project" and not project:
        raise InputError("scope project needs project=<id or name>", step=STEP)
    if scope == "host" and not host:
        raise InputError("scope host needs host=<Nova compute host name>", step=STEP)
    if project and scope != "project":
        raise InputError("project=%r is only used with scope=project (scope is %s)"
                         % (project, scope), step=STEP)
    if host and scope != "host":
        raise InputError("host=%r is only used with scope=host (scope is %s)" % (host, scope),
                         step=STEP)
    return scope, project, host


def fast_tier(conn, settings, scope="all", project="", host="", cloud_name=None, pages=None,
              progress=None, on_servers=None):
    """The API reads of the audit, each listing page by page. The first requests to
    each service (the admin check on Nova, the volume API's version, the project in Keystone)
    go out together, then the three listings together: they are independent, and each service
    answers on its own. on_servers(scope, compute hosts, servers) is called as soon as the
    servers are listed (the audit starts reading the hypervisors then). Returns the facts
    and what each part took."""
    say = progress or (lambda message: None)
    pages = pages or inventory.Pages(say)
    page_size = settings.audit_page_size
    timings = {}
    started = time.monotonic()
    # openstacksdk makes each service's proxy on first use, without a lock: make them here
    # (which also fetches the token), before threads could race to make the same one
    for service in ("compute", "block_storage", "identity"):
        getattr(conn, service)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        hosts_read = pool.submit(inventory.compute_hosts, conn, cloud_name, pages)
        versions_read = pool.submit(inventory.microversions, conn)
        project_read = pool.submit(inventory.resolve_project, conn, project, pages) \
            if scope == "project" else None
        compute_hosts = hosts_read.result()     # the admin check: its error comes first
        versions = versions_read.result()
        found = project_read.result() if project_read else None
    scope_info = {"kind": scope, "project_id": found and found["id"],
                  "project_name": found and found["name"], "host": None}
    if scope == "host":
        if host not in compute_hosts:
            raise InputError("host %r is not a nova-compute host of this cloud (known: %s)" % (
                host, ", ".join(sorted(compute_hosts)[:20]) or "none"), step=STEP)
        scope_info["host"] = host
    timings["scope_s"] = round(time.monotonic() - started, 3)
    say("audit of %s: listing servers, volumes and attachments, %d per page"
        % (_scope_text(scope_info), page_size))

    def timed(name, read, *args, **kwargs):
        began = time.monotonic()
        out = read(*args, **kwargs)
        timings[name + "_s"] = round(time.monotonic() - began, 3)
        return out
    listing = time.monotonic()
    project_id = scope_info["project_id"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        servers_read = pool.submit(timed, "servers", inventory.list_servers, conn, page_size,
                                   pages, versions["compute"], project_id=project_id,
                                   host=host or None)
        volumes_read = pool.submit(timed, "volumes", inventory.list_volumes, conn, page_size,
                                   pages, versions["volume"], project_id=project_id)
        records_read = pool.submit(timed, "attachments", inventory.list_attachment_records,
                                   conn, page_size, pages, versions["volume"],
                                   project_id=project_id) \
            if versions["attachment_records"] else None
        servers = servers_read.result()
        if on_servers:
            on_servers(scope_info, compute_hosts, servers)
        volumes = volumes_read.result()
        records = records_read.result() if records_read else None
    timings["listings_s"] = round(time.monotonic() - listing, 3)
    timings["fast_tier_s"] = round(time.monotonic() - started, 3)
    return {"scope": scope_info, "compute_hosts": compute_hosts, "versions": versions,
            "servers": servers, "volumes": volumes, "records": records, "pages": pages,
            "timings": timings}


def hosts_to_read(scope_info, servers, compute_hosts):
    """Every nova-compute host for the whole cloud; the project's servers' hosts; the host."""
    if scope_info["kind"] == "host":
        return {scope_info["host"]}
    hosts = {s["compute_host"] for s in servers.values() if s and s["compute_host"]}
    return hosts | set(compute_hosts) if scope_info["kind"] == "all" else hosts


def audit(conn, open_session, settings, scope="all", project="", host="", deep=False,
          cloud_name=None, progress=None, now=None):
    """The full report (a dict, JSON-able) of one audit."""
    scope, project, host = check_scope(scope, project, host)
    say = progress or (lambda message: None)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    started = time.monotonic()
    stuck_after = settings.audit_stuck_after
    pages = inventory.Pages(say)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as background:
        reading = {}

        def read_hypervisors(scope_info, compute_hosts, servers):
            hosts = hosts_to_read(scope_info, servers, compute_hosts)
            say("reading %d hypervisor(s), %d at a time, meanwhile"
                % (len(hosts), settings.audit_hypervisor_concurrency))
            reading["started"] = time.monotonic()
            reading["future"] = background.submit(
                hypervisors.read_hosts, hosts, open_session, settings.virsh,
                settings.audit_hypervisor_concurrency, settings.ssh_command_timeout, say)
        fast = fast_tier(conn, settings, scope, project, host, cloud_name, pages, say,
                         on_servers=read_hypervisors)
        read = reading["future"].result()
        hypervisors_s = round(time.monotonic() - reading["started"], 3)
    timings = dict(fast["timings"], hypervisors_s=hypervisors_s,
                   waiting_for_hypervisors_s=round(time.monotonic() - started -
                                                   fast["timings"]["fast_tier_s"], 3))
    versions = fast["versions"]
    inv = {"servers": fast["servers"], "volumes": fast["volumes"], "records": fast["records"],
           "hypervisors": read, "deep": {}, "scope": fast["scope"]}
    lap = time.monotonic()
    _look_up_unlisted(conn, inv, pages, versions, say)
    verdicts = [(v, correlate.verdict_of(v, stuck_after, now)) for v in correlate.all_views(inv)]
    deep_ids = sorted(s for s, f in inv["servers"].items() if f) if deep \
        else correlate.suspects(verdicts)
    say("deep tier: %d server(s) at compute %s" % (len(deep_ids), versions["compute"]))
    for sid in deep_ids:
        rows = inventory.server_attachments(conn, sid, pages, versions["compute"])
        if rows is None:
            inv["servers"][sid] = None     # deleted since the listing
        else:
            inv["deep"][sid] = rows
    _look_up_unlisted(conn, inv, pages, versions, say)
    timings["lookups_and_deep_s"] = round(time.monotonic() - lap, 3)
    final = [(v, correlate.verdict_of(v, stuck_after, now)) for v in correlate.all_views(inv)]
    report = _report(inv, final, now, stuck_after, deep, versions, pages, cloud_name,
                     fast["compute_hosts"], settings.audit_page_size)
    report["duration_s"] = round(time.monotonic() - started, 3)
    report["timings"] = dict(timings, total_s=report["duration_s"])
    report["finished_at"] = _iso(datetime.datetime.now(datetime.timezone.utc))
    say("audit done: %d finding(s), %d attachment(s) checked, %d API request(s), %.1f s" % (
        report["counts"]["findings"], report["counts"]["attachments_checked"],
        report["api"]["requests"], report["duration_s"]))
    return report


def _look_up_unlisted(conn, inv, pages, versions, say):
    """Look up, once each, what a view names but no listing holds. A domain no listed server
    has is first checked against Nova's current list for its host: it may be a server made
    after the listing. Up to three rounds: a server found may name volumes of its own."""
    for host in list(correlate.unclaimed_domains(inv)):
        say("host %s has domains no listed server has: asking Nova again" % host)
        for sid, facts in inventory.list_servers_on_host(conn, host, pages,
                                                         versions["compute"]).items():
            inv["servers"].setdefault(sid, facts)
    for _round in range(3):
        server_ids, volume_ids = correlate.unreferenced(inv)
        server_ids = [s for s in server_ids if s not in inv["servers"]]
        volume_ids = [v for v in volume_ids if v not in inv["volumes"]]
        if not server_ids and not volume_ids:
            return
        say("looking up %d server(s) and %d volume(s) no listing holds"
            % (len(server_ids), len(volume_ids)))
        for sid in server_ids:
            inv["servers"][sid] = inventory.get_server(conn, sid, pages, versions["compute"])
        for vid in volume_ids:
            inv["volumes"][vid] = inventory.get_volume(conn, vid, pages, versions["volume"])


def _report(inv, final, now, stuck_after, deep, versions, pages, cloud_name, compute_hosts,
            page_size):
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
        "started_at": _iso(now), "scope": inv["scope"], "deep": bool(deep),
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
    return {
        "complete": report["complete"], "scope": report["scope"], "deep": report["deep"],
        "counts": report["counts"],
        "hosts_not_seen": [{"host": h["host"], "reason": h["reason"]}
                           for h in report["hypervisors"]["not_seen"]],
        "report": paths, "api_requests": report["api"]["requests"],
        "remedies": remedies[:SUMMARY_REMEDIES],
        "remedies_left_out": max(0, len(remedies) - SUMMARY_REMEDIES),
        "audit_s": report["duration_s"],
    }


# -- the report files -----------------------------------------------------------------------------

REPORT_PATH_MAX = 255


def report_paths(report_path, settings, scope_info, now):
    """(json path, table path), confined to the report place: config audit.report_dir, else
    reports/ in the pack. report_path (the action parameter, reachable from chat) is empty, a
    directory or a file name ending in .json (the table beside it, .txt), relative to that
    place or absolute inside it; `..`, a path outside, a symlink at or under the place, a
    directory named .json and control characters are refused with InputError before anything
    is made or written. The place itself is the operator's (a symlinked report_dir is
    followed). Directories are made and checked writable here, before the audit, so a bad path
    costs nothing."""
    if settings.audit_report_dir:
        base, origin = settings.audit_report_dir, "audit.report_dir"
    else:
        base, origin = os.path.join(PACK_DIR, "reports"), "the pack's reports/"
    given_base = os.path.abspath(os.path.expanduser(base))
    base = os.path.realpath(given_base)
    parts, file_name = _report_path_parts(report_path, (base, given_base), origin)
    if file_name is None:
        file_name = "audit-%s-%s.json" % (now.strftime("%Y%m%dT%H%M%SZ"),
                                          _scope_label(scope_info))
    directory = os.path.join(base, *parts)
    json_path = os.path.join(directory, file_name)
    table_path = json_path[:-len(".json")] + ".txt"
    # nothing below the place may be a symlink: every existing directory on the way and both
    # files (os.replace would not follow a link, but a linked directory leads anywhere)
    here = base
    for part in parts:
        here = os.path.join(here, part)
        if os.path.islink(here):
            _refuse(report_path, "%s is a symlink" % here)
        if os.path.lexists(here) and not os.path.isdir(here):
            _refuse(report_path, "%s is not a directory" % here)
    for path in (json_path, table_path):
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            _refuse(report_path, "%s exists and is not a plain file" % path)
    try:
        os.makedirs(base, exist_ok=True)
        here = base
        for part in parts:  # one at a time: a directory made meanwhile is still checked
            here = os.path.join(here, part)
            if not os.path.isdir(here):
                os.mkdir(here, 0o750)
            if os.path.islink(here):
                _refuse(report_path, "%s is a symlink" % here)
        if not os.access(directory, os.W_OK):
            raise OSError("not writable by this user")
    except OSError as exc:
        message = "cannot write the audit report to %s (%s): %s" % (
            directory, "report_path" if parts else origin,
            getattr(exc, "strerror", None) or exc)
        if origin == "audit.report_dir" and not parts:
            raise ConfigError(message + "; fix audit.report_dir: " + RELOAD, step=STEP)
        raise InputError(message, step=STEP)
    return {"json": json_path, "table": table_path}


def _report_path_parts(report_path, bases, origin):
    """report_path -> (directories under the place, file name or None); InputError if it
    would leave the place (`bases`: the place resolved, and as configured)."""
    given = (report_path or "").strip()
    if not given:
        return [], None
    if len(given) > REPORT_PATH_MAX or any(ord(c) < 32 or ord(c) == 127 for c in given):
        _refuse(report_path, "at most %d printable characters" % REPORT_PATH_MAX)
    if "\\" in given or given.startswith("~"):
        _refuse(report_path, "no backslash, no ~")
    if ".." in given.split("/"):
        _refuse(report_path, "no '..'")
    if os.path.isabs(given):
        inside = os.path.normpath(given)
        within = [b for b in bases if inside == b or inside.startswith(b.rstrip("/") + "/")]
        if not within:
            _refuse(report_path, "an absolute path must be inside %s (%s)" % (bases[0], origin))
        given = os.path.relpath(inside, within[0])
    parts = [p for p in given.split("/") if p not in ("", ".")]
    if parts and parts[-1].endswith(".json"):
        if parts[-1] == ".json":
            _refuse(report_path, "the file needs a name before .json")
        return parts[:-1], parts[-1]
    return parts, None


def _refuse(report_path, why):
    raise InputError("cannot write the audit report to report_path %r (refused: %s). Give a "
                     "directory or a file name ending in "
                     ".json under the report place (config audit.report_dir, else reports/ in "
                     "the pack), e.g. nightly/ or nightly/all.json; nothing was written"
                     % (report_path, why), step=STEP)


def _scope_label(scope_info):
    if scope_info["kind"] == "project":
        value = scope_info["project"]
    elif scope_info["kind"] == "host":
        value = scope_info["host"]
    else:
        return "all"
    return "%s-%s" % (scope_info["kind"], re.sub(r"[^A-Za-z0-9_.-]+", "_", value)[:64])


def write_report(report, paths):
    _write_atomically(paths["json"], json.dumps(report, indent=1, sort_keys=True) + "\n")
    _write_atomically(paths["table"], render_table(report))


def _write_atomically(path, text):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".audit-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o640)    # reports name servers, hosts and projects: not world-readable
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render_table(report):
    """The report for a person: the counts, what could not be seen, one line per finding,
    then every finding's facts and remedy."""
    c = report["counts"]
    lines = [
        "dangling_volume audit of %s, cloud %s, started %s, %.1f s" % (
            _scope_text(report["scope"]), report["cloud"], report["started_at"],
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


def _scope_text(scope_info):
    if scope_info["kind"] == "project":
        return "project %s (%s)" % (scope_info.get("project_name") or scope_info.get("project"),
                                    scope_info.get("project_id") or "?")
    if scope_info["kind"] == "host":
        return "host %s" % scope_info["host"]
    return "the whole cloud"


def _iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the step the action runs ----------------------------------------------------------------------

def run(ctx, scope="all", project="", host="", deep=False, report_path=""):
    """Through runner.run_step: parameters checked and the report's place made before any call;
    then the audit, the report files, and the summary."""
    scope, project, host = check_scope(scope, project, host)
    now = datetime.datetime.now(datetime.timezone.utc)
    paths = report_paths(report_path, ctx.settings, {"kind": scope, "project": project,
                                                     "host": host}, now)
    cloud_name = ctx.settings.cloud_name(ctx.cloud)
    report = audit(ctx.conn, ctx.open_session, ctx.settings,
                   scope=scope, project=project, host=host, deep=deep, cloud_name=cloud_name,
                   progress=ctx.progress, now=now)
    write_report(report, paths)
    ctx.progress("report written to %s and %s" % (paths["json"], paths["table"]))
    return summary(report, paths)
