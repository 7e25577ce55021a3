"""steps.audit end to end without a cloud: a hand-built cloud (testsupport.audit_fakes.Cloud)
served by fake Nova, Cinder and Keystone adapters that page as the real APIs do, its hosts'
domains read by the real one-command listing and the lab's virsh stand-in; requests counted
per page; the report written as JSON and as a table; bad input refused before any call."""
import datetime
import json
import os
import re
import stat
import types

import pytest


from dvremedy.adapters import report_files
from dvremedy.errors import ConfigError, InputError
from dvremedy.model import audit_report
from dvremedy.settings import Settings
from dvremedy.steps import audit
from testsupport.audit_fakes import (VIRSH, P1, P2, Cloud, FakeAdapter, LocalSession, pager,
                                     write_domains)

NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
PROJECTS = {P1: "web", P2: "db"}


class CloudAPI(object):
    """conn.compute / conn.block_storage / conn.identity answering from a Cloud, and
    open_session(host) reading its domains with the real listing command."""

    def __init__(self, cloud, tmp_path, member=False, unreachable=()):
        self.cloud, self.tmp, self.unreachable = cloud, tmp_path, set(unreachable)
        self.member = member
        self.sessions = []
        self.compute = FakeAdapter([
            (r"/os-services", self._services),
            (r"/servers/detail", self._servers),
            (r"/servers/([^/]+)/os-volume_attachments", self._bdms),
            (r"/servers/([^/]+)", self._server)], (2, 104))
        self.block_storage = FakeAdapter([
            (r"/volumes/detail", self._volumes),
            (r"/volumes/([^/]+)", self._volume),
            (r"/attachments/detail", self._records)], (3, 71))
        self.identity = FakeAdapter([(r"/projects/([^/]+)", self._project),
                                     (r"/projects", self._projects)])

    def requests(self):
        return len(self.compute.log) + len(self.block_storage.log) + len(self.identity.log)

    def _services(self, params, m):
        if self.member:
            return 403, {"forbidden": {"code": 403, "message": "Policy doesn't allow "
                                       "os_compute_api:os-services:list to be performed."}}
        return 200, {"services": [{"host": h, "state": "up", "status": "enabled"}
                                  for h in sorted(self.cloud.domains)]}

    def _servers(self, params, m):
        items = [s for s in self.cloud.servers.values()
                 if params.get("project_id") in (None, s["tenant_id"]) and
                 params.get("host") in (None, s["OS-EXT-SRV-ATTR:host"])]
        return pager(items, "servers")(params, m)

    def _server(self, params, m):
        s = self.cloud.servers.get(m.group(1))
        return (200, {"server": s}) if s else (404, {"itemNotFound": {"code": 404}})

    def _bdms(self, params, m):
        rows = self.cloud.bdms.get(m.group(1))
        if rows is None:
            return 404, {"itemNotFound": {"code": 404}}
        return 200, {"volumeAttachments": list(rows.values())}

    def _volumes(self, params, m):
        items = [v for v in self.cloud.volumes.values()
                 if params.get("project_id") in (None, v["os-vol-tenant-attr:tenant_id"])]
        return pager(items, "volumes")(params, m)

    def _volume(self, params, m):
        v = self.cloud.volumes.get(m.group(1))
        return (200, {"volume": v}) if v else (404, {"itemNotFound": {"code": 404}})

    def _records(self, params, m):
        owners = {v["id"]: v["os-vol-tenant-attr:tenant_id"] for v in self.cloud.volumes.values()}
        items = [r for r in self.cloud.records.values()
                 if params.get("project_id") in (None, owners.get(r["volume_id"]))]
        return pager(items, "attachments", links=False)(params, m)

    def _project(self, params, m):
        pid = m.group(1)
        if pid in PROJECTS:
            return 200, {"project": {"id": pid, "name": PROJECTS[pid], "domain_id": "default"}}
        return 404, {"error": {"code": 404}}

    def _projects(self, params, m):
        return 200, {"projects": [{"id": p, "name": n, "domain_id": "default"}
                                  for p, n in PROJECTS.items() if n == params.get("name")]}

    def open_session(self, host):
        if host in self.unreachable:
            from dvremedy.errors import SSHError
            raise SSHError("SSH to %s (root@[%s]:22) failed: [Errno 111] Connection refused"
                           % (host, host), host=host)
        lab_dir = str(self.tmp / host)
        write_domains(lab_dir, {name: (d["uuid"], d["power"], d["live"], d["config"])
                                for name, d in self.cloud.domains.get(host, {}).items()})
        return LocalSession(host, lab_dir, self.sessions)


def settings(**audit_config):
    return Settings({"audit": dict({"page_size": 4, "report_dir": ""}, **audit_config),
                     "commands": {"virsh": VIRSH}})


def run_audit(api, **kw):
    heard = []
    report = audit.audit(api, api.open_session, kw.pop("settings", settings()),
                         cloud_name="prod", progress=heard.append, now=NOW, **kw)
    return report, heard


def pages_of(items, page_size=4):
    """Requests a listing takes: a full last page asks once more (an empty page follows)."""
    return items // page_size + 1


@pytest.fixture
def broken_cloud():
    """Two hosts, two projects: breaks 1, 2a, 2b, 4 and 5 in P1 among healthy attachments,
    and a healthy server of P2 on the same host."""
    cloud = Cloud()
    keys = {}
    for kind in ("1", "2a", "2b", "4", "5", "healthy", "healthy2"):
        sid = cloud.server(host="cmp1" if kind != "healthy2" else "cmp2", data=2)
        keys[kind] = (sid, cloud.data_volumes(sid)[0])
    cloud.cinder_reset(*keys["1"])
    cloud.backend_down(*keys["2a"])
    cloud.guest_refuses(*keys["2b"])
    cloud.hypervisor_only(*keys["4"])
    cloud.orphan(keys["5"][0])
    keys["other_project"] = cloud.server(project=P2, data=1), None
    return cloud, keys


def test_the_audit_finds_each_break_once_with_requests_growing_with_pages(broken_cloud,
                                                                          tmp_path):
    cloud, keys = broken_cloud
    api = CloudAPI(cloud, tmp_path)
    report, heard = run_audit(api)
    got = {(f["server_id"], f["volume_id"]): f["class"] for f in report["findings"]}
    s5 = keys["5"][0]
    orphans = {k for k in got if k[0] == s5}
    assert {k: v for k, v in got.items() if k[0] != s5} == {
        keys["1"]: "nova_only", keys["2a"]: "stuck_detaching", keys["2b"]: "detach_refused",
        keys["4"]: "missing_on_hypervisor"}
    assert len(orphans) == 3 and {got[k] for k in orphans} == {"cinder_only"}
    counts = report["counts"]
    assert counts["findings"] == 7 and counts["by_class"]["cinder_only"] == 3
    assert counts["servers"] == 7 and counts["attachments_checked"] == 6 * 3 + 3 + 2
    # requests: one per page of each listing, one per suspect, and a constant
    pages = report["api"]["pages"]
    assert pages == {"servers": pages_of(7), "volumes": pages_of(len(cloud.volumes)),
                     "attachments": pages_of(len(cloud.records))}
    suspects = 4      # servers of breaks 1, 2a, 2b, 4; the orphan's server costs one look-up
    assert report["api"]["single_reads"] == {"compute_services": 1, "server": 1,
                                             "server_attachments": suspects}
    assert api.requests() == report["api"]["requests"] == sum(pages.values()) + suspects + 2
    # the hypervisors: one command per host
    assert sorted(h for h, _ in api.sessions) == ["cmp1", "cmp2"]
    assert report["complete"] is True and report["hypervisors"]["read"] == ["cmp1", "cmp2"]
    assert "servers: page 2, 3 item(s) (7 so far)" in heard
    assert any(line.startswith("deep tier: 4 server(s)") for line in heard)


def test_the_audit_changes_nothing(broken_cloud, tmp_path):
    cloud, _ = broken_cloud
    before = json.dumps([cloud.servers, cloud.volumes, cloud.records, cloud.bdms,
                         cloud.domains], sort_keys=True)
    api = CloudAPI(cloud, tmp_path)
    run_audit(api, deep=True)
    assert json.dumps([cloud.servers, cloud.volumes, cloud.records, cloud.bdms, cloud.domains],
                      sort_keys=True) == before
    # only GETs were made (the adapters have no other verb), and only virsh list and dumpxml
    (host, argv), = [s for s in api.sessions if s[0] == "cmp1"]
    assert re.findall(r"(?:list|dumpxml|detach|attach|undefine|destroy)\b", argv[2]) == [
        "list", "dumpxml", "dumpxml"]


def test_deep_reads_every_server(broken_cloud, tmp_path):
    cloud, _ = broken_cloud
    report, _ = run_audit(CloudAPI(cloud, tmp_path), deep=True)
    assert report["api"]["single_reads"]["server_attachments"] == 7
    assert all(f["read_deep"] for f in report["findings"] if f["server"]["exists"])


def test_project_scope_reads_that_project_only(broken_cloud, tmp_path):
    cloud, keys = broken_cloud
    api = CloudAPI(cloud, tmp_path)
    report, _ = run_audit(api, scope="project", project="db")
    assert report["scope"] == {"kind": "project", "project_id": P2, "project_name": "db",
                               "host": None}
    assert report["findings"] == [] and report["counts"]["attachments_checked"] == 2
    assert all(p.get("project_id") == P2 for path, p, _ in
               api.compute.log + api.block_storage.log if path.endswith("/detail"))
    assert report["hypervisors"]["read"] == ["cmp1"]


def test_host_scope_reads_that_host_only(broken_cloud, tmp_path):
    cloud, keys = broken_cloud
    api = CloudAPI(cloud, tmp_path)
    report, _ = run_audit(api, scope="host", host="cmp2")
    assert report["findings"] == [] and report["hypervisors"]["read"] == ["cmp2"]
    assert report["counts"]["attachments_checked"] == 3


def test_an_unreachable_hypervisor_gives_a_partial_report_naming_it(broken_cloud, tmp_path):
    cloud, keys = broken_cloud
    report, _ = run_audit(CloudAPI(cloud, tmp_path, unreachable=("cmp1",)))
    assert report["complete"] is False
    (seen,) = report["hypervisors"]["not_seen"]
    assert seen["host"] == "cmp1" and "Connection refused" in seen["reason"]
    assert seen["attachments_unverified"] > 0
    assert report["counts"]["unverified"] == seen["attachments_unverified"]
    classes = {(f["server_id"], f["volume_id"]): f for f in report["findings"]}
    # what Nova and Cinder alone show is still found, and says the hypervisor was not seen
    assert classes[keys["1"]]["problems"] == ["nova_only", "hypervisor_unreachable"]
    assert classes[keys["1"]]["remedy"]["needs_operator"] is True
    assert "HYPERVISOR NOT SEEN: cmp1" in audit_report.render_table(dict(report, duration_s=1))


@pytest.mark.parametrize("kwargs, text", [
    ({"scope": "everything"}, "scope must be one of all, project, host"),
    ({"scope": "project"}, "scope project needs project="),
    ({"scope": "host"}, "scope host needs host="),
    ({"scope": "all", "host": "cmp1"}, "only used with scope=host"),
    ({"scope": "host", "project": "web", "host": "cmp1"}, "only used with scope=project"),
])
def test_bad_scope_parameters_are_refused_before_any_call(kwargs, text, tmp_path):
    api = CloudAPI(Cloud(), tmp_path)
    with pytest.raises(InputError) as caught:
        run_audit(api, **kwargs)
    assert text in caught.value.message and api.requests() == 0


def test_unknown_host_or_project_is_a_clear_error(broken_cloud, tmp_path):
    cloud, _ = broken_cloud
    with pytest.raises(InputError, match=r"host 'cmp9' is not a nova-compute host of this "
                                         r"cloud \(known: cmp1, cmp2\)"):
        run_audit(CloudAPI(cloud, tmp_path), scope="host", host="cmp9")
    with pytest.raises(InputError, match="'nope' does not exist in Keystone"):
        run_audit(CloudAPI(cloud, tmp_path), scope="project", project="nope")


def test_a_member_cloud_is_refused_before_anything_is_listed(broken_cloud, tmp_path):
    cloud, _ = broken_cloud
    api = CloudAPI(cloud, tmp_path, member=True)
    with pytest.raises(ConfigError, match="'prod' has no admin rights"):
        run_audit(api)
    assert api.requests() == 1 and api.sessions == []


# -- the report files, the step ------------------------------------------------------------------

def ctx_for(api, config_settings):
    return types.SimpleNamespace(conn=api, settings=config_settings, cloud=None,
                                 progress=lambda message: None, open_session=api.open_session)


def test_the_step_writes_json_and_table_and_returns_a_small_summary(broken_cloud, tmp_path,
                                                                    monkeypatch):
    cloud, keys = broken_cloud
    api = CloudAPI(cloud, tmp_path)
    conf = settings(report_dir=str(tmp_path / "reports"))
    conf.cloud = "prod"
    out = audit.run(ctx_for(api, conf))
    assert os.path.dirname(out["report"]["json"]) == str(tmp_path / "reports")
    assert re.fullmatch(r"audit-\d{8}T\d{6}Z-all\.json", os.path.basename(out["report"]["json"]))
    with open(out["report"]["json"]) as f:
        full = json.load(f)
    assert len(full["findings"]) == out["counts"]["findings"] == 7
    assert stat.S_IMODE(os.stat(out["report"]["json"]).st_mode) == 0o640
    with open(out["report"]["table"]) as f:
        table = f.read()
    assert "nova_only" in table and keys["1"][1] in table and "needs an operator" in table
    assert {r["class"] for r in out["remedies"]} == {"nova_only", "stuck_detaching",
                                                     "detach_refused", "missing_on_hypervisor"}
    assert out["hosts_not_seen"] == [] and out["complete"] is True
    assert len(json.dumps(out)) < 4000


def test_a_report_path_may_name_the_json_file(broken_cloud, tmp_path, monkeypatch):
    cloud, _ = broken_cloud
    api = CloudAPI(cloud, tmp_path)
    conf = settings(report_dir=str(tmp_path))
    conf.cloud = "prod"
    target = tmp_path / "out" / "nightly.json"
    for given in ("out/nightly.json", str(target)):  # relative to the place, or inside it
        out = audit.run(ctx_for(api, conf), scope="host", host="cmp2", report_path=given)
        assert out["report"] == {"json": str(target),
                                 "table": str(tmp_path / "out" / "nightly.txt")}
        assert target.exists()
        target.unlink()


def test_a_report_place_that_cannot_be_made_is_refused_before_the_audit(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")     # a directory cannot be made under a file, even by root
    with pytest.raises(InputError, match="file is not a directory"):
        report_files.report_paths("file/reports", settings(report_dir=str(tmp_path)),
                                  {"kind": "all"}, NOW)
    with pytest.raises(ConfigError, match="fix audit.report_dir"):
        report_files.report_paths("", settings(report_dir=str(blocker / "r")), {"kind": "all"}, NOW)


def test_the_default_report_place_is_reports_in_the_pack():
    paths = report_files.report_paths("", settings(), {"kind": "host", "host": "cmp/1 x"}, NOW)
    assert paths["json"] == os.path.join(report_files.PACK_DIR, "reports",
                                         "audit-20261125T120000Z-host-cmp_1_x.json")
    os.rmdir(os.path.dirname(paths["json"])) if not os.listdir(
        os.path.dirname(paths["json"])) else None


def test_audit_settings_are_validated():
    conf = Settings({})
    assert (conf.audit_page_size, conf.audit_hypervisor_concurrency, conf.audit_stuck_after,
            conf.audit_report_dir, conf.audit_sweep_concurrency) == (200, 8, 600, "", 2)
    assert Settings({"audit": {"stuck_after": 0}}).audit_stuck_after == 0
    for bad in ({"page_size": 0}, {"hypervisor_concurrency": "8"}, {"stuck_after": -1},
                {"page_size": 2.5}, {"sweep_concurrency": True}):
        with pytest.raises(ConfigError, match="audit.%s" % next(iter(bad))):
            Settings({"audit": bad})


# -- report_path is reachable from chat: confined under the report place -------------------------

def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, n), str(root))
                  for d, dirs, files in os.walk(str(root)) for n in dirs + files)


@pytest.mark.parametrize("given,why", [
    ("../escape.json", "no '..'"),
    ("a/../../escape.json", "no '..'"),
    ("nightly/..", "no '..'"),
    ("/etc/cron.d/x.json", "absolute path must be inside"),
    ("{outside}/x.json", "absolute path must be inside"),
    ("{outside}", "absolute path must be inside"),
    ("~/x.json", "no backslash, no ~"),
    ("a\\..\\x.json", "no backslash"),
    ("a/\nb.json", "printable"),
    ("x" * 300 + ".json", "at most 255"),
    ("out/.json", "needs a name before .json"),
    ("linked/x.json", "is a symlink"),
    ("linked", "is a symlink"),
    ("ok/linked-file.json", "is not a plain file"),
    ("ok/linked-table.json", "is not a plain file"),
    ("ok/a-dir.json", "is not a plain file"),
    ("plain/x.json", "is not a directory"),
])
def test_a_report_path_that_would_leave_the_report_place_is_refused_and_writes_nothing(
        tmp_path, given, why):
    place, outside = tmp_path / "reports", tmp_path / "outside"
    outside.mkdir()
    place.mkdir()
    (place / "linked").symlink_to(outside)
    (place / "ok").mkdir()
    (place / "ok" / "linked-file.json").symlink_to(outside / "f.json")
    (place / "ok" / "linked-table.txt").symlink_to(outside / "f.txt")
    (place / "ok" / "a-dir.json").mkdir()
    (place / "plain").write_text("x")
    before = _tree(tmp_path)
    with pytest.raises(InputError, match=re.escape(why)) as refused:
        report_files.report_paths(given.format(outside=outside), settings(report_dir=str(place)),
                           {"kind": "all"}, NOW)
    assert "refused" in str(refused.value) and "nothing was written" in str(refused.value)
    assert _tree(tmp_path) == before


def test_report_paths_inside_the_place_are_made_there(tmp_path):
    place = tmp_path / "reports"
    conf = settings(report_dir=str(place))
    for given, where in [("", place), ("nightly", place / "nightly"),
                         ("./a//b/", place / "a" / "b"), (str(place / "c"), place / "c")]:
        paths = report_files.report_paths(given, conf, {"kind": "all"}, NOW)
        assert os.path.dirname(paths["json"]) == str(where) and where.is_dir()
    paths = report_files.report_paths("n/x.y.json", conf, {"kind": "all"}, NOW)
    assert paths == {"json": str(place / "n" / "x.y.json"), "table": str(place / "n" / "x.y.txt")}


def test_a_symlinked_report_dir_is_the_operators_choice_and_is_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    conf = settings(report_dir=str(tmp_path / "link"))
    paths = report_files.report_paths("x.json", conf, {"kind": "all"}, NOW)
    assert paths["json"] == str(real / "x.json")
    assert report_files.report_paths(str(tmp_path / "link" / "y.json"), conf, {"kind": "all"},
                                     NOW)["json"] == str(real / "y.json")


def test_a_refused_report_path_stops_the_step_before_any_cloud_call(tmp_path):
    class NoCloud(object):
        def __getattr__(self, name):
            raise AssertionError("the cloud was called: %s" % name)
    conf = settings(report_dir=str(tmp_path / "reports"))
    with pytest.raises(InputError, match="refused"):
        audit.run(types.SimpleNamespace(settings=conf, conn=NoCloud(), cloud="prod",
                                        progress=lambda m: None),
                  report_path="../../etc/x.json")
    assert not (tmp_path / "reports").exists()


def test_audit_report_dir_must_be_absolute():
    with pytest.raises(ConfigError, match="audit.report_dir must be an absolute path"):
        Settings({"audit": {"report_dir": "reports"}})
