"""What the audit reads from the APIs, in pages: Nova's servers with their attached volumes and
compute host, Cinder's volumes with status and attachments and (volume API 3.27+) Cinder's
attachment records, plus the few single reads the deep tier needs. Read only.

Everything here grows with PAGES, not with servers: one request per page of `page_size`
items. Results are plain dicts (JSON-able) in the shapes views.identify() uses, so the
correlation (dvremedy.model.correlate) and its tests never see an SDK object. Each request goes
through the connection's own adapters (conn.compute, conn.block_storage, conn.identity),
bounded by the connection's api_timeout, and any failure becomes a typed error (cloud.api)."""
import re

from dvremedy.adapters.cloud import api
from dvremedy.errors import ConfigError, InputError, NotFound

STEP = "audit"
COMPUTE_MICROVERSION = (2, 89)    # os-volume_attachments with attachment_id and bdm_uuid
VOLUME_MICROVERSION = (3, 27)     # Cinder's attachment records API
# Nova's and Cinder's default max_limit (osapi_max_limit) is 1000: a larger page is cut short
# WITHOUT a next link on Cinder's attachment list, which would end the listing early.
MAX_PAGE = 1000
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


class Pages(object):
    """Counts what a listing cost: pages (requests) and items, per kind."""

    def __init__(self, progress=None):
        self.progress = progress
        self.pages = {}
        self.items = {}
        self.singles = {}

    def page(self, kind, count):
        self.pages[kind] = self.pages.get(kind, 0) + 1
        self.items[kind] = self.items.get(kind, 0) + count
        if self.progress:
            self.progress("%s: page %d, %d item(s) (%d so far)" % (
                kind, self.pages[kind], count, self.items[kind]))

    def single(self, kind):
        self.singles[kind] = self.singles.get(kind, 0) + 1

    def requests(self):
        return sum(self.pages.values()) + sum(self.singles.values())

    def as_dict(self):
        return {"pages": dict(self.pages), "items": dict(self.items),
                "single_reads": dict(self.singles), "requests": self.requests()}


def _get(adapter, what, path, params=None, microversion=None):
    """One GET through an openstacksdk proxy, its failure typed; returns the decoded JSON."""
    from openstack import exceptions as osx
    with api(what, STEP):
        response = adapter.get(path, params=params, microversion=microversion,
                               raise_exc=False)
        osx.raise_from_response(response)
        return response.json()


def paginate(adapter, path, key, params, page_size, pages, kind, microversion=None):
    """Every item of a paginated listing, a page at a time, by marker. Nova and Cinder's
    volume list send a `<key>_links` next link when more may follow; Cinder's attachment list
    sends none, so there a full page means "ask again"."""
    limit = max(1, min(int(page_size), MAX_PAGE))
    marker, seen = None, set()
    while True:
        query = dict(params, limit=limit)
        if marker:
            query["marker"] = marker
        body = _get(adapter, "list %s (page %d)" % (kind, pages.pages.get(kind, 0) + 1),
                    path, query, microversion)
        items = body.get(key) or []
        pages.page(kind, len(items))
        for item in items:
            yield item
        links = body.get(key + "_links")
        more = (any(link.get("rel") == "next" for link in links) if links is not None
                else len(items) >= limit)
        if not items or not more:
            return
        marker = items[-1]["id"]
        if marker in seen:      # an API that ignores the marker would loop forever
            return
        seen.add(marker)


# -- scope and rights ---------------------------------------------------------------------------

def compute_hosts(conn, cloud_name, pages):
    """The nova-compute hosts, {host: {"state", "status"}}. This is also the admin check: the
    audit lists every project's servers and volumes, and Cinder silently narrows a member's
    all-projects listing to its own project, so a member cloud must fail here, loudly."""
    from openstack import exceptions as osx
    with api("list compute services", STEP):
        response = conn.compute.get("/os-services", params={"binary": "nova-compute"},
                                    raise_exc=False)
        pages.single("compute_services")
        if response.status_code == 403:
            raise ConfigError(
                "cloud %r has no admin rights: Nova refused to list the compute services "
                "(policy os_compute_api:os-services:list, HTTP 403). The audit needs the admin "
                "role: it lists every project's servers (os_compute_api:servers:detail:"
                "get_all_tenants) and volumes (Cinder all_tenants, which a member's token "
                "silently narrows to its own project). Use an admin entry of clouds.yaml "
                "(parameter cloud, or `cloud` in the pack config)." % cloud_name,
                step=STEP, http_status=403)
        osx.raise_from_response(response)
        services = response.json().get("services") or []
    return {s["host"]: {"state": s.get("state"), "status": s.get("status")} for s in services}


def resolve_project(conn, value, pages):
    """{"id", "name", "domain_id"} of a project given by id or name; unknown or ambiguous
    names are refused with what was found."""
    value = (value or "").strip()
    if not value:
        raise InputError("scope project needs a project: pass project=<id or name>", step=STEP)
    if _HEX32.match(value) or re.match(r"^[0-9a-fA-F-]{36}$", value):
        pages.single("projects")
        try:
            body = _get(conn.identity, "GET project %s" % value, "/projects/%s" % value)
            return _project(body["project"])
        except NotFound:
            pass    # a project may be NAMED like an id
    pages.single("projects")
    body = _get(conn.identity, "find project %s" % value, "/projects", {"name": value})
    found = body.get("projects") or []
    if not found:
        raise InputError("project %r does not exist in Keystone (looked up by id and by name)"
                         % value, step=STEP)
    if len(found) > 1:
        raise InputError("project name %r is ambiguous: %s; pass the project id" % (
            value, ", ".join("%s (domain %s)" % (p["id"], p.get("domain_id")) for p in found)),
            step=STEP)
    return _project(found[0])


def _project(p):
    return {"id": p["id"], "name": p.get("name"), "domain_id": p.get("domain_id")}


def microversions(conn):
    """The microversions to ask for: compute 2.89 and volume 3.27 where the cloud has them, its
    newest otherwise (then Nova shows no attachment ids and Cinder no attachment records, and
    the report says so). Each service's version document is read once per connection."""
    out = {}
    for key, adapter, wanted in (("compute", conn.compute, COMPUTE_MICROVERSION),
                                 ("volume", conn.block_storage, VOLUME_MICROVERSION)):
        with api("read the %s API version" % key, STEP):
            data = adapter.get_endpoint_data()
        top = tuple(getattr(data, "max_microversion", None) or ())
        use = wanted if not top or top >= wanted else top
        out[key] = "%d.%d" % use if use else None
    out["attachment_records"] = out["volume"] is not None and _version(out["volume"]) >= \
        VOLUME_MICROVERSION
    out["attachment_ids"] = out["compute"] is not None and _version(out["compute"]) >= \
        COMPUTE_MICROVERSION
    return out


def _version(text):
    return tuple(int(part) for part in text.split("."))


# -- the fast tier --------------------------------------------------------------------------------

def list_servers(conn, page_size, pages, microversion, project_id=None, host=None):
    """Every server in scope: {id: server facts} with the attached volume ids."""
    params = {"all_tenants": 1}
    if project_id:
        params["project_id"] = project_id
    if host:
        params["host"] = host
    out = {}
    for s in paginate(conn.compute, "/servers/detail", "servers", params, page_size, pages,
                      "servers", microversion):
        out[s["id"]] = server_facts(s)
    return out


def server_facts(s):
    """The facts of one server of servers/detail (admin fields included)."""
    return {
        "id": s["id"], "name": s.get("name"), "exists": True,
        "project_id": s.get("tenant_id") or s.get("project_id"),
        "status": s.get("status"), "vm_state": s.get("OS-EXT-STS:vm_state"),
        "task_state": s.get("OS-EXT-STS:task_state"),
        "power_state": s.get("OS-EXT-STS:power_state"),
        "locked": bool(s.get("locked")), "locked_reason": s.get("locked_reason"),
        "compute_host": s.get("OS-EXT-SRV-ATTR:host"),
        "instance_name": s.get("OS-EXT-SRV-ATTR:instance_name"),
        "root_device_name": s.get("OS-EXT-SRV-ATTR:root_device_name"),
        "updated": s.get("updated"),
        "volume_ids": [v["id"] for v in s.get("os-extended-volumes:volumes_attached") or []],
    }


def list_volumes(conn, page_size, pages, microversion, project_id=None):
    """Every volume in scope: {id: volume facts} with the attachments the volume lists."""
    params = {"all_tenants": 1}
    if project_id:
        params["project_id"] = project_id
    out = {}
    for v in paginate(conn.block_storage, "/volumes/detail", "volumes", params, page_size,
                      pages, "volumes", microversion):
        out[v["id"]] = volume_facts(v)
    return out


def volume_facts(v):
    return {
        "id": v["id"], "name": v.get("name"), "exists": True, "status": v.get("status"),
        "bootable": str(v.get("bootable")).lower() == "true",
        "multiattach": bool(v.get("multiattach")), "updated_at": v.get("updated_at"),
        "project_id": v.get("os-vol-tenant-attr:tenant_id"),
        # the volume's own list: only attachments in attach_status "attached"
        "listed_attachments": [{"id": a.get("attachment_id"), "server_id": a.get("server_id"),
                                "host_name": a.get("host_name"), "device": a.get("device"),
                                "attached_at": a.get("attached_at")}
                               for a in v.get("attachments") or []],
    }


def list_attachment_records(conn, page_size, pages, microversion, project_id=None):
    """Cinder's attachment records (3.27+), every status (reserved, error_* included):
    [{id, status, server_id, volume_id, attached_at}]."""
    params = {"all_tenants": 1, "sort": "id:asc"}    # a stable order for the marker
    if project_id:
        params["project_id"] = project_id
    return [attachment_record(a) for a in paginate(
        conn.block_storage, "/attachments/detail", "attachments", params, page_size, pages,
        "attachments", microversion)]


def attachment_record(a):
    return {"id": a["id"], "status": a.get("status"), "server_id": a.get("instance"),
            "volume_id": a.get("volume_id"), "attached_at": a.get("attached_at")}


# -- single reads (suspects, the deep tier) -------------------------------------------------------

def _get_one(proxy, kind, item_id, pages, microversion, facts):
    """One server or volume read by id, as `facts` shapes it, or None when it does not exist."""
    pages.single(kind)
    try:
        body = _get(proxy, "GET %s %s" % (kind, item_id), "/%ss/%s" % (kind, item_id),
                    microversion=microversion)
    except NotFound:
        return None
    return facts(body[kind])


def get_server(conn, server_id, pages, microversion):
    """A server's facts, or None when Nova has no such server."""
    return _get_one(conn.compute, "server", server_id, pages, microversion, server_facts)


def list_servers_on_host(conn, host, pages, microversion):
    """The servers Nova places on one host, now: to tell a domain created after the server
    listing from one that belongs to no server."""
    return list_servers(conn, MAX_PAGE, pages, microversion, host=host)


def get_volume(conn, volume_id, pages, microversion):
    """A volume's facts, or None when Cinder has no such volume."""
    return _get_one(conn.block_storage, "volume", volume_id, pages, microversion, volume_facts)


def server_attachments(conn, server_id, pages, microversion):
    """Nova's attachments of one server at compute 2.89 (the deep tier): {volume_id: {device,
    attachment_id, bdm_id, delete_on_termination}}, or None when the server is gone. Below
    2.89 Nova shows no attachment id: the key is then left out, so nothing is compared."""
    pages.single("server_attachments")
    try:
        body = _get(conn.compute, "GET server %s volume attachments" % server_id,
                    "/servers/%s/os-volume_attachments" % server_id,
                    microversion=microversion)
    except NotFound:
        return None
    out = {}
    for a in body.get("volumeAttachments") or []:
        row = {"device": a.get("device"), "bdm_id": a.get("bdm_uuid"),
               "delete_on_termination": a.get("delete_on_termination")}
        if "attachment_id" in a:
            row["attachment_id"] = a["attachment_id"]
        out[a["volumeId"]] = row
    return out
