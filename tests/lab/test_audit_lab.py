"""`dangling_volume.audit` on the lab's real services. Every finding class the lab can make is
made for real (breaks 1, 2a, 2b, 4 and 5, plus a disk left on a domain that Nova does not
list) among healthy attachments, in a project of this module's own (the lab is shared: the
audit is scoped to it); the audit reports each exactly once with its class and remedy,
nothing in a healthy project, and changes nothing in Nova, Cinder or the hypervisor. Bad
input: an unknown project or host, a member cloud, an unreachable hypervisor."""
import concurrent.futures
import json
import os
import subprocess
import time
import uuid

import pytest

import labcloud
from testsupport.lab import REPO, run_lab_tool
from testsupport.labchecks import records

from dvremedy.adapters.cloud import connect
from dvremedy.runner import run_step, session_opener
from dvremedy.settings import Settings
from dvremedy.steps import audit


@pytest.fixture(scope="module")
def config(lab, tmp_path_factory):
    """The lab's pack config; breaks made a moment ago count as stuck (stuck_after 0)."""
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        conf = json.load(f)
    conf["audit"] = {"stuck_after": 0, "report_dir": str(tmp_path_factory.mktemp("reports"))}
    return conf


def _break(kind, *args):
    out = run_lab_tool("break", kind, *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _add_stray_disk(lab, conn, server_id, volume_id):
    """A disk of `volume_id` on the server's domain, live and in the next-boot config, that
    Nova and Cinder know nothing of: what a detach leaves when only the bookkeeping went
    through. The lab's virsh has no attach-disk: the domain file is edited the way the lab's
    driver and virsh edit it (labdomains, under its lock)."""
    os.environ["LAB_DIR"] = lab["lab_dir"]
    import labdomains
    srv = conn.compute.get_server(server_id)
    with labdomains.locked():
        dom = labdomains.read_domain(server_id)
        disk = dict(next(d for d in dom["live"] if d["target_dev"] == "sdb"),
                    target_dev="sdz", serial=volume_id, alias="ua-" + volume_id,
                    boot=False, source="/dev/disk/by-path/ip-127.0.0.1:3260-iscsi-"
                    "iqn.2010-10.org.openstack:volume-%s-lun-0" % volume_id)
        dom["live"].append(dict(disk))
        dom["config"].append(dict(disk))
        labdomains.write_domain(dom, "test: disk left behind")
    assert srv.instance_name == dom["name"]


def _state(lab, conn, project_ids, server_ids):
    """Everything the audit could change: Nova (servers, attachments at 2.89), Cinder
    (volumes, attachment records) and the hypervisor's disks (live and next boot)."""
    out = {}
    for pid in project_ids:
        servers = conn.compute.get("/servers/detail", params={"all_tenants": 1,
                                                              "project_id": pid},
                                   microversion="2.89").json()["servers"]
        for s in servers:
            out[s["id"]] = (s["status"], s["OS-EXT-STS:task_state"], s["locked"],
                            labcloud.nova_attachments(conn, s["id"]))
        volumes = conn.block_storage.get("/volumes/detail", params={
            "all_tenants": 1, "project_id": pid}).json()["volumes"]
        for v in volumes:
            out[v["id"]] = (v["status"], v["updated_at"], sorted(
                (a["id"], a["status"], a["instance"]) for a in records(conn, v["id"])))
    for sid in server_ids:
        out["disks " + sid] = (labcloud.domain_disks(lab, conn, sid),
                               labcloud.domain_disks(lab, conn, sid, inactive=True))
    return out


@pytest.fixture(scope="module")
def scenario(lab, conn):
    """Project `broken` with one server per break (each also keeps a healthy data volume),
    and project `healthy` with a healthy server. Deleted again afterwards."""
    tag = uuid.uuid4().hex[:8]
    broken = labcloud.create_project(conn, "audit-broken-" + tag)
    healthy = labcloud.create_project(conn, "audit-healthy-" + tag)
    started = time.monotonic()
    plan = [("s1", broken, 2), ("s2a", broken, 2), ("s2b", broken, 2), ("s4", broken, 2),
            ("s5", broken, 1), ("ok", healthy, 2)]

    def make(item):
        key, project, data = item
        pconn = labcloud.connect_project(lab, project.id)
        return key, labcloud.create_server(pconn, "audit-%s-%s" % (tag, key), data)
    made = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            for key, info in pool.map(make, plan):
                made[key] = info
        s = {k: (v["server_id"], v["volume_ids"][0]) for k, v in made.items()}
        pconn = labcloud.connect_project(lab, broken.id)
        stray = pconn.block_storage.create_volume(name="audit-%s-stray" % tag, size=1)
        labcloud.volume_status(conn, stray.id, "available")
        _break("cinder-reset", *s["s1"])
        _break("hypervisor-only", *s["s4"])
        _break("guest-refuses", *s["s2b"])
        _add_stray_disk(lab, conn, s["s1"][0], stray.id)
        _break("backend-down", *s["s2a"])
        _break("orphan", s["s5"][0], *made["s5"]["volume_ids"])
        # Cinder keeps the orphan's attachments: its data volume's and its boot volume's
        # (Nova could not delete that one either while cinder-volume was down)
        s5_volumes = sorted(
            vid for vid in made["s5"]["volume_ids"] + [made["s5"]["boot_volume_id"]]
            if any(a["instance"] == s["s5"][0] for a in records(conn, vid)))
        print("scenario made in %.0f s" % (time.monotonic() - started))
        yield {"broken": broken, "healthy": healthy, "servers": s, "made": made,
               "stray": stray.id, "s5_volumes": s5_volumes}
    finally:
        if "s2b" in made:
            run_lab_tool("break", "heal-guest", made["s2b"]["volume_ids"][0])
        for project in (broken, healthy):
            labcloud.purge_project(lab, project.id)


@pytest.fixture(scope="module")
def before(lab, conn, scenario):
    """The cloud as the breaks left it, before any audit."""
    return _state(lab, conn, [scenario["broken"].id, scenario["healthy"].id],
                  [scenario["servers"][k][0] for k in ("s1", "s2a", "s2b", "s4", "ok")])


def st2_audit(lab, config, tmp_path, *params):
    """The action as st2 runs it (tools/st2-run: its own process, the real action wrapper)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.audit"] +
                          list(params) + ["--config", str(path), "--json"],
                          capture_output=True, text=True, timeout=600)
    execution = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (execution["status"] == "succeeded")
    return execution, execution["result"]["result"]


def _findings(summary):
    with open(summary["report"]["json"]) as f:
        report = json.load(f)
    return report, {(f["server_id"], f["volume_id"]): f for f in report["findings"]}


def test_each_break_is_reported_once_with_its_class_and_remedy(lab, conn, config, scenario,
                                                               before, tmp_path):
    s = scenario["servers"]
    execution, summary = st2_audit(lab, config, tmp_path, "scope=project",
                                   "project=%s" % scenario["broken"].id)
    assert execution["status"] == "succeeded", json.dumps(execution, indent=1)[-3000:]
    report, found = _findings(summary)
    assert len(found) == len(report["findings"])       # one finding per (server, volume)
    expected = {s["s1"]: ("nova_only", "refresh"),
                s["s2a"]: ("stuck_detaching", "refresh"),
                s["s2b"]: ("detach_refused", "refresh"),
                s["s4"]: ("missing_on_hypervisor", "detach_only"),
                (s["s1"][0], scenario["stray"]): ("hypervisor_only", "libvirt_only")}
    expected.update({(s["s5"][0], v): ("cinder_only", None) for v in scenario["s5_volumes"]})
    assert {k: (f["class"], f["remedy"].get("plan")) for k, f in found.items()} == expected
    assert len(scenario["s5_volumes"]) == 2    # the orphan's boot volume and its data volume
    # 2a: one finding with both facts, and the reset the runbook forgets
    f2a = found[s["s2a"]]
    assert f2a["problems"] == ["stuck_detaching", "missing_on_hypervisor"]
    assert f2a["volume"]["status"] == "detaching" and f2a["since"]
    assert "reset the volume to in-use" in f2a["remedy"]["reasons"][-1]
    assert found[s["s2b"]]["hypervisor"]["live"] == ["sdb"]
    assert found[s["s2b"]]["hypervisor"]["config"] == []
    for key in (s["s1"], s["s2a"], s["s2b"], s["s4"]):
        assert found[key]["remedy"]["action"] == "dangling_volume.remedy"
        assert found[key]["remedy"]["parameters"] == {"server_id": key[0], "volume_id": key[1]}
        assert found[key]["read_deep"] and found[key]["nova"]["attachment_id"]
    stray = found[(s["s1"][0], scenario["stray"])]
    assert stray["remedy"]["parameters"]["allow_libvirt_detach"] is True
    assert stray["hypervisor"]["live"] == ["sdz"] and stray["nova"] is None
    for v in scenario["s5_volumes"]:
        orphan = found[(s["s5"][0], v)]
        assert orphan["server"]["exists"] is False and orphan["remedy"]["needs_operator"]
        assert "no longer exists" in orphan["remedy"]["why"]
        assert orphan["cinder_attachments"]
    # the healthy attachments around them: every other (server, volume) is healthy
    assert report["counts"]["healthy"] == 4 * 2      # each broken server: boot + a data volume
    assert report["complete"] and report["hypervisors"]["read"] == [lab["compute_host"]]
    # the summary is small and names the report; the table is beside the JSON
    assert summary["counts"]["findings"] == len(expected)
    assert len(summary["remedies"]) == 5 and summary["hosts_not_seen"] == []
    assert len(json.dumps(summary)) < 5000
    with open(summary["report"]["table"]) as f:
        table = f.read()
    for key, (cls, _) in expected.items():
        assert "%s  %s" % (cls.ljust(len("missing_on_hypervisor")), key[0][:8]) in table
    assert _state(lab, conn, [scenario["broken"].id, scenario["healthy"].id],
                  [s[k][0] for k in ("s1", "s2a", "s2b", "s4", "ok")]) == before


def test_requests_grow_with_pages_and_a_young_detach_is_in_progress(lab, config, scenario):
    """In process, with the requests counted at the HTTP layer; the default stuck_after
    (600 s) calls the minutes-old detach of break 2a in progress, not stuck."""
    settings = Settings(dict(config, audit=dict(config["audit"], stuck_after=600)))
    hooked = connect(settings)
    sent = []
    hooked.session.session.hooks["response"].append(
        lambda response, *a, **k: sent.append((response.request.method, response.url)))
    report = audit.audit(hooked, session_opener(settings), settings,
                         scope="project", project=scenario["broken"].name,
                         cloud_name=settings.cloud)
    s = scenario["servers"]
    got = {(f["server_id"], f["volume_id"]): f for f in report["findings"]}
    assert got[s["s2a"]]["class"] == "in_progress"
    assert got[s["s2a"]]["remedy"]["action"] is None
    assert got[s["s1"]]["class"] == "nova_only"
    # read only: GETs, and one POST for the Keystone token
    assert {m for m, _ in sent} == {"GET", "POST"}
    assert [u.rsplit("/", 2)[-2:] for m, u in sent if m == "POST"] == [["auth", "tokens"]]
    pages = sum(report["api"]["pages"].values())
    suspects = report["api"]["single_reads"]["server_attachments"]
    assert pages == 3          # servers, volumes, attachment records: one page each
    assert suspects == 4       # the servers of breaks 1 (and the stray disk), 2a, 2b and 4
    assert report["api"]["single_reads"]["server"] == 1     # the orphan's: no such server
    # the rest is a constant: token, version documents, compute services, the project
    constant = len(sent) - pages - suspects - 1
    assert constant <= 8, sent
    hooked.close()


def test_a_healthy_project_has_no_findings_even_deep(lab, config, scenario, tmp_path):
    for deep in (False, True):
        ok, summary = run_step(config, audit.run, scope="project",
                               project=scenario["healthy"].name, deep=deep)
        assert ok, summary
        assert summary["counts"]["findings"] == 0 and summary["counts"]["healthy"] == 3
        assert summary["counts"]["by_class"] == {} and summary["complete"]
        with open(summary["report"]["table"]) as f:
            assert "No findings" in f.read()
    assert summary["api_requests"] >= 3 + 1       # deep: one more read per server


def test_host_scope_reports_ours_among_everything_on_the_host(lab, config, scenario):
    ok, summary = run_step(config, audit.run, scope="host", host=lab["compute_host"])
    assert ok, summary
    report, found = _findings(summary)
    ours = {k: f["class"] for k, f in found.items()
            if f["project_id"] in (scenario["broken"].id, scenario["healthy"].id)}
    s = scenario["servers"]
    assert ours[s["s1"]] == "nova_only" and ours[s["s4"]] == "missing_on_hypervisor"
    assert len(ours) == 5 + len(scenario["s5_volumes"])
    assert report["scope"]["host"] == lab["compute_host"]


def test_bad_input_is_refused_clearly(lab, config, scenario, tmp_path):
    cases = [({"scope": "project", "project": "no-such-project-%s" % uuid.uuid4().hex[:6]},
              "does not exist in Keystone"),
             ({"scope": "host", "host": "no-such-host"},
              "is not a nova-compute host of this cloud (known: %s" % lab["compute_host"]),
             ({"scope": "project"}, "scope project needs project="),
             ({"scope": "all", "report_path": "/proc/no/such/dir"},
              "cannot write the audit report")]
    for params, text in cases:
        ok, result = run_step(config, audit.run, **params)
        assert not ok and text in result["error"]["message"], (params, result)
        assert result["error"]["kind"] == "bad_input"


def test_a_member_cloud_is_refused_naming_the_missing_admin_right(lab, config, tmp_path):
    execution, result = st2_audit(lab, config, tmp_path, "cloud=%s" % lab["clouds"]["member"])
    assert execution["status"] == "failed"
    error = result["error"]
    assert error["kind"] == "bad_config" and error["http_status"] == 403
    assert "%r has no admin rights" % lab["clouds"]["member"] in error["message"]
    assert "os_compute_api:servers:detail:get_all_tenants" in error["message"]


def test_an_unreachable_hypervisor_gives_a_partial_report_naming_it(lab, conn, config,
                                                                    scenario, before):
    dead = dict(config, hosts={"address_map": dict(config["hosts"]["address_map"],
                                                   **{lab["compute_host"]: "127.0.0.9"})})
    ok, summary = run_step(dead, audit.run, scope="project", project=scenario["broken"].id)
    assert ok, summary
    assert summary["complete"] is False
    (seen,) = summary["hosts_not_seen"]
    assert seen["host"] == lab["compute_host"] and "127.0.0.9" in seen["reason"]
    report, found = _findings(summary)
    s = scenario["servers"]
    # what Nova and Cinder alone show is still found, and needs the hypervisor to be fixed
    assert found[s["s1"]]["problems"] == ["nova_only", "hypervisor_unreachable"]
    assert found[s["s1"]]["remedy"]["needs_operator"]
    assert s["s4"] not in found and s["s2b"] not in found     # only the hypervisor shows them
    assert report["counts"]["unverified"] >= 2 + 4 * 2
    assert _state(lab, conn, [scenario["broken"].id, scenario["healthy"].id],
                  [s[k][0] for k in ("s1", "s2a", "s2b", "s4", "ok")]) == before
