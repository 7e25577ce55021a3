"""The audit's pure core: from what the listings said (servers, volumes, Cinder's attachment
records, every hypervisor's domains), the three views of every (server, volume) any of them
names, in the shape views.identify() returns; each classified by THE classifier
(classify.classify) and given the remedy that applies (plan.make_plan, the remedy's own
planner). No I/O: tests build the listings by hand.

An `inventory` is a dict:
  servers      {server_id: inventory.server_facts(...) or None (looked up: no such server)}
  volumes      {volume_id: inventory.volume_facts(...) or None (looked up: no such volume)}
  records      [inventory.attachment_record(...)], or None when the volume API has no 3.27
  hypervisors  {host: adapters.hypervisors.read_host(...)}
  deep         {server_id: inventory.server_attachments(...)} for servers read at 2.89
  scope        {"kind": "all" | "project" | "host", "project_id", "host"}
"""
from dvremedy.errors import InputError, StateError
from dvremedy.model import classify, plan
from dvremedy.model.disks import disks_of_volume, volume_ids_on_domain

REMEDY_ACTION = "dangling_volume.remedy"
UNVERIFIED = "unverified"     # only the hypervisor could not be read: not a finding


def cinder_attachments(inv):
    """{volume_id: [{id, status, server_id, attached_at}]}: Cinder's attachment records where
    the API has them (every status), else what each volume lists (attached ones only)."""
    out = {}
    if inv.get("records") is not None:
        for rec in inv["records"]:
            out.setdefault(rec["volume_id"], []).append(
                {"id": rec["id"], "status": rec["status"], "server_id": rec["server_id"],
                 "attached_at": rec.get("attached_at")})
        return out
    for vid, vol in inv["volumes"].items():
        for att in (vol or {}).get("listed_attachments") or []:
            out.setdefault(vid, []).append(
                {"id": att["id"], "status": "attached", "server_id": att["server_id"],
                 "attached_at": att.get("attached_at")})
    return out


def _domains(inv):
    """{(host, domain name): domain} over every host that could be read."""
    out = {}
    for host, result in inv["hypervisors"].items():
        for name, domain in (result.get("domains") or {}).items():
            out[(host, name)] = domain
    return out


def _in_host_scope(inv, server_id, volume_id):
    """Host scope keeps a Cinder-side pair when the server is on the host, or when Cinder says
    the volume is attached on that host (an attachment to a server Nova no longer has)."""
    host = inv["scope"].get("host")
    srv = inv["servers"].get(server_id)
    if srv:
        return srv.get("compute_host") == host
    vol = inv["volumes"].get(volume_id) or {}
    return any(a.get("server_id") == server_id and a.get("host_name") == host
               for a in vol.get("listed_attachments") or [])


def pairs(inv):
    """Every (server_id, volume_id) that Nova, Cinder or a hypervisor names, in scope, each
    once, in a stable order. Unclaimed domains give (None, volume_id) pairs per domain."""
    seen = []
    known = set()

    def add(key):
        if key not in known:
            known.add(key)
            seen.append(key)
    for sid in sorted(inv["servers"]):
        srv = inv["servers"][sid]
        if srv:
            for vid in srv["volume_ids"]:
                add((sid, vid))
            for vid in sorted((inv.get("deep") or {}).get(sid) or {}):
                add((sid, vid))
    host_scope = inv["scope"]["kind"] == "host"
    atts = cinder_attachments(inv)
    for vid in sorted(atts):
        for att in atts[vid]:
            sid = att["server_id"]
            if not sid or (host_scope and not _in_host_scope(inv, sid, vid)):
                continue
            if vid in inv["volumes"] or sid in inv["servers"]:
                add((sid, vid))
    domains = _domains(inv)
    for sid in sorted(inv["servers"]):
        srv = inv["servers"][sid]
        domain = srv and domains.get((srv.get("compute_host"), srv.get("instance_name")))
        for vid in sorted(volume_ids_on_domain(domain or {})):
            add((sid, vid))
    return seen


def unreferenced(inv):
    """(server ids, volume ids) that some view names but no listing holds: the audit looks each
    up once (a deleted server or volume, another project's, or one created meanwhile)."""
    servers, volumes = set(), set()
    for sid, vid in pairs(inv):
        if sid not in inv["servers"]:
            servers.add(sid)
        if vid not in inv["volumes"]:
            volumes.add(vid)
    for host, names in unclaimed_domains(inv).items():
        domains = inv["hypervisors"][host]["domains"]
        for name in names:
            volumes.update(v for v in volume_ids_on_domain(domains[name])
                           if v not in inv["volumes"])
    return sorted(servers), sorted(volumes)


def unclaimed_domains(inv):
    """{host: [names]} of domains no listed server has, on hosts whose every server is listed
    (scope all or host): a domain left behind, or one made after the listing (the audit asks
    Nova about that host again before believing it)."""
    if inv["scope"]["kind"] == "project":
        return {}
    claimed = {(s.get("compute_host"), s.get("instance_name"))
               for s in inv["servers"].values() if s}
    out = {}
    for host, result in sorted(inv["hypervisors"].items()):
        names = sorted(n for n in (result.get("domains") or {}) if (host, n) not in claimed)
        if names:
            out[host] = names
    return out


def _missing_server(server_id):
    return {"id": server_id, "name": None, "exists": False, "project_id": None,
            "status": None, "vm_state": None, "task_state": None, "compute_host": None,
            "instance_name": None, "root_device_name": None, "updated": None,
            "volume_ids": []}


def _hypervisor_view(inv, srv, volume_id):
    """The hypervisor's view of one volume on a server's domain, as views.hypervisor_view
    gives it, with the reason when it could not be read."""
    if not srv.get("exists"):
        # Nova has no such server, so nothing should be running it: any domain left behind
        # is reported on its own (unclaimed domains)
        return {"reachable": True, "domain": None, "live": [], "config": [],
                "note": "no such server: no domain to look at"}
    host, name = srv.get("compute_host"), srv.get("instance_name")
    view = {"reachable": False, "domain": name, "host": host, "live": [], "config": []}
    if not host or not name:
        view["error"] = {"kind": "no_host", "message": "Nova places server %s on no compute "
                         "host (status %s): no hypervisor to read" % (srv["id"], srv["status"])}
        return view
    result = inv["hypervisors"].get(host)
    if result is None:
        view["error"] = {"kind": "not_read", "message": "host %s was not read" % host}
        return view
    if not result["reachable"]:
        view["error"] = result["error"]
        return view
    domain = result["domains"].get(name)
    if domain is None:
        return dict(view, reachable=True, domain_found=False)
    if domain.get("error") or domain.get("live") is None or domain.get("config") is None:
        view["error"] = {"kind": "libvirt", "message": "domain %s on %s: %s" % (
            name, host, domain.get("error") or "not read")}
        return view
    return dict(view, reachable=True, domain_found=True,
                live=_targets(domain["live"], volume_id),
                config=_targets(domain["config"], volume_id))


def _targets(disks, volume_id):
    return [d["target"] for d in disks_of_volume(disks or [], volume_id)]


def _cinder_view(inv, atts, volume_id):
    vol = inv["volumes"].get(volume_id)
    if not vol:
        return {"id": volume_id, "name": None, "exists": False, "status": None,
                "bootable": None, "updated_at": None, "project_id": None, "attachments": []}
    return {"id": volume_id, "name": vol["name"], "exists": True, "status": vol["status"],
            "bootable": vol["bootable"], "updated_at": vol["updated_at"],
            "project_id": vol["project_id"], "attachments": list(atts.get(volume_id) or [])}


def _nova_view(inv, srv, volume_id):
    """Nova's attachment: the 2.89 row when the server was read deep, else what servers/detail
    says (listed or not; no device and no attachment id known)."""
    if not srv.get("exists"):
        return None
    deep = (inv.get("deep") or {}).get(srv["id"])
    if deep is not None:
        return deep.get(volume_id)
    return {"device": None, "listed_by": "servers/detail"} \
        if volume_id in srv["volume_ids"] else None


def view_of(inv, server_id, volume_id, atts=None):
    """The identify-shaped views of one (server, volume)."""
    atts = cinder_attachments(inv) if atts is None else atts
    srv = inv["servers"].get(server_id) or _missing_server(server_id)
    deep = (inv.get("deep") or {}).get(server_id)
    return {"server": srv, "volume_id": volume_id, "nova": _nova_view(inv, srv, volume_id),
            "nova_volume_ids": sorted(deep if deep is not None else srv["volume_ids"]),
            "cinder": _cinder_view(inv, atts, volume_id),
            "hypervisor": _hypervisor_view(inv, srv, volume_id),
            "deep": deep is not None}


def unclaimed_views(inv, atts=None):
    """Views of each volume disk on a domain no server has (server id None)."""
    atts = cinder_attachments(inv) if atts is None else atts
    out = []
    for host, names in unclaimed_domains(inv).items():
        for name in names:
            domain = inv["hypervisors"][host]["domains"][name]
            for vid in sorted(volume_ids_on_domain(domain)):
                srv = dict(_missing_server(None), compute_host=host, instance_name=name)
                out.append({
                    "server": srv, "volume_id": vid, "nova": None, "nova_volume_ids": [],
                    "cinder": _cinder_view(inv, atts, vid),
                    "hypervisor": {"reachable": True, "domain": name, "host": host,
                                   "domain_found": True, "unclaimed": True,
                                   "live": _targets(domain.get("live"), vid),
                                   "config": _targets(domain.get("config"), vid)},
                    "deep": False})
    return out


def all_views(inv):
    atts = cinder_attachments(inv)
    return [view_of(inv, sid, vid, atts) for sid, vid in pairs(inv)] + unclaimed_views(inv, atts)


def verdict_of(view, stuck_after=None, now=None):
    """classify.classify, plus the audit's own reading: a view whose one problem is an
    unreadable hypervisor is `unverified` (counted per host), not a finding."""
    verdict = classify.classify(view, stuck_after=stuck_after, now=now)
    if verdict["problems"] == [classify.HYPERVISOR_UNKNOWN]:
        verdict = dict(verdict, audit=UNVERIFIED)
    elif verdict["healthy"] or verdict["problems"] == [classify.NOT_ATTACHED]:
        verdict = dict(verdict, audit="healthy")
    else:
        verdict = dict(verdict, audit="finding")
    return verdict


def suspects(views_and_verdicts):
    """Servers (that exist) with anything but healthy: the deep tier reads each once."""
    out = set()
    for view, verdict in views_and_verdicts:
        srv = view["server"]
        if verdict["audit"] == "finding" and srv.get("exists") and srv.get("id"):
            out.add(srv["id"])
    return sorted(out)


def remedy_for(view, verdict, stuck_after=None):
    """What fixes this finding: the remedy workflow with its inputs (from the remedy's own
    planner), or why it needs an operator, or why to wait."""
    srv, vid = view["server"], view["volume_id"]
    if classify.IN_PROGRESS in verdict["problems"]:
        return {"action": None, "needs_operator": False, "why": (
            "an operation is in progress (volume %s, updated %s; server task %s): audit "
            "again once it is older than %s s" % (
                view["cinder"].get("status"), view["cinder"].get("updated_at"),
                srv.get("task_state") or "none", stuck_after))}
    if view["hypervisor"].get("unclaimed"):
        return _operator("domain %s on host %s belongs to no server Nova knows, yet has the "
                         "disk of volume %s: check it, then remove the disk (virsh "
                         "detach-disk) or the domain (virsh undefine) by hand"
                         % (view["hypervisor"]["domain"], srv["compute_host"], vid))
    if not srv.get("exists"):
        mine = [a for a in view["cinder"]["attachments"] if a["server_id"] == srv["id"]]
        return _operator(
            "server %s no longer exists, yet Cinder holds attachment(s) %s of volume %s: "
            "delete them (`openstack --os-volume-api-version 3.27 volume attachment delete "
            "<id>`; Cinder allows it, Nova has no such server), then check the volume is "
            "available" % (srv["id"], ", ".join("%s (%s)" % (a["id"], a["status"])
                                                for a in mine) or "none", vid))
    try:
        steps = plan.make_plan(view, verdict, detach=True)
        last_resort = False
    except (InputError, StateError) as exc:
        if verdict["problems"] != [classify.HYPERVISOR_ONLY]:
            return _operator(exc.message)
        try:    # a disk left on the domain only: the remedy's explicit last resort
            steps = plan.make_plan(view, verdict, detach=True, allow_libvirt_detach=True)
        except (InputError, StateError) as again:
            return _operator(again.message)
        last_resort = True
    parameters = {"server_id": srv["id"], "volume_id": vid}
    if last_resort:
        parameters["allow_libvirt_detach"] = True
    return {"action": REMEDY_ACTION, "needs_operator": False, "parameters": parameters,
            "plan": steps["action"], "steps": steps["steps"], "reasons": steps["reasons"],
            "powers_off": steps["stop"], "last_resort": last_resort}


def _operator(why):
    return {"action": None, "needs_operator": True, "why": why}


def finding(view, verdict, stuck_after=None, now=None):
    """One (server, volume) with every fact seen about it and the remedy that applies."""
    srv, cinder, hyp = view["server"], view["cinder"], view["hypervisor"]
    says = dict(verdict["says"])
    if hyp.get("unclaimed"):
        says["nova"] = "no server has domain %s on host %s" % (hyp["domain"],
                                                               srv["compute_host"])
    elif not srv.get("exists"):
        says["nova"] = "no such server (deleted)"
        says["hypervisor"] = "no domain: the server does not exist"
    if not cinder.get("exists"):
        says["cinder"] = "no such volume"
    since = cinder.get("updated_at") or srv.get("updated")
    when = classify.parse_time(since) if since else None
    return {
        "class": verdict["class"], "problems": verdict["problems"],
        "server_id": srv.get("id"), "volume_id": view["volume_id"],
        "project_id": srv.get("project_id") or cinder.get("project_id"),
        "host": srv.get("compute_host") or hyp.get("host"),
        "server": {k: srv.get(k) for k in ("id", "name", "exists", "project_id", "status",
                                           "task_state", "compute_host", "instance_name",
                                           "updated")},
        "volume": {k: cinder.get(k) for k in ("id", "name", "exists", "status", "project_id",
                                              "bootable", "updated_at")},
        "says": says, "nova": view["nova"],
        "cinder_attachments": [a for a in cinder.get("attachments") or []
                               if a["server_id"] == srv.get("id")],
        "other_attachments": [a for a in cinder.get("attachments") or []
                              if a["server_id"] != srv.get("id")],
        "hypervisor": hyp, "boot_volume": verdict["boot_volume"], "read_deep": view["deep"],
        "since": since,
        "age_s": int((now - when).total_seconds()) if (now and when) else None,
        "remedy": remedy_for(view, verdict, stuck_after),
    }
