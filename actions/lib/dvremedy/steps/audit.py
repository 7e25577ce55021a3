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
import time

from dvremedy.adapters import hypervisors, inventory, report_files
from dvremedy.errors import InputError
from dvremedy.model import audit_report, correlate

STEP = "audit"
SCOPES = ("all", "project", "host")


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
        % (audit_report.scope_text(scope_info), page_size))

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
    report = audit_report.build(inv, final, now, stuck_after, deep, versions, pages, cloud_name,
                     fast["compute_hosts"], settings.audit_page_size)
    report["duration_s"] = round(time.monotonic() - started, 3)
    report["timings"] = dict(timings, total_s=report["duration_s"])
    report["finished_at"] = audit_report.iso(datetime.datetime.now(datetime.timezone.utc))
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


def write_report(report, paths):
    """The full report as JSON, and as a table beside it."""
    report_files.write_atomically(paths["json"],
                                  json.dumps(report, indent=1, sort_keys=True) + "\n")
    report_files.write_atomically(paths["table"], audit_report.render_table(report))


# -- the step the action runs ----------------------------------------------------------------------

def run(ctx, scope="all", project="", host="", deep=False, report_path=""):
    """Through runner.run_step: parameters checked and the report's place made before any call;
    then the audit, the report files, and the summary."""
    scope, project, host = check_scope(scope, project, host)
    now = datetime.datetime.now(datetime.timezone.utc)
    paths = report_files.report_paths(report_path, ctx.settings, {"kind": scope, "project": project,
                                                     "host": host}, now)
    cloud_name = ctx.settings.cloud_name(ctx.cloud)
    report = audit(ctx.conn, ctx.open_session, ctx.settings,
                   scope=scope, project=project, host=host, deep=deep, cloud_name=cloud_name,
                   progress=ctx.progress, now=now)
    write_report(report, paths)
    ctx.progress("report written to %s and %s" % (paths["json"], paths["table"]))
    return audit_report.summary(report, paths)
