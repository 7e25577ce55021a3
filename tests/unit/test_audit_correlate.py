"""The audit's pure core (dvremedy.model.correlate): hand-built listings in the shapes the APIs give
(servers/detail, volumes/detail, attachments/detail, os-volume_attachments at 2.89) and each
host's domains, one per lab break, correlated, classified and given their remedy.

`Cloud` (testsupport/audit_fakes.py) is a small model of a cloud that tests break the way the
lab's breaks do; it answers as the APIs and the hypervisors would (test_audit_run.py serves it
over fake adapters)."""
import datetime

import pytest

from dvremedy.adapters import inventory
from dvremedy.model import audit_report, classify, correlate

from testsupport.audit_fakes import LONG_AGO, P1, P2, Cloud

NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
JUST_NOW = "2026-11-25T11:59:50.000000"      # ten seconds before NOW
STUCK_AFTER = 600


def audit_of(cloud, deep_all=False, stuck_after=STUCK_AFTER, **scope):
    """The audit's correlation as audit.audit runs it: fast tier, look-ups, deep tier for
    the suspects (or all), final classification. Returns (findings, report-ish counts)."""
    inv = cloud.inventory(**scope)
    cloud.look_up(inv)
    fast = [(v, correlate.verdict_of(v, stuck_after, NOW)) for v in correlate.all_views(inv)]
    deep_ids = sorted(s for s, f in inv["servers"].items() if f) if deep_all \
        else correlate.suspects(fast)
    cloud.read_deep(inv, deep_ids)
    cloud.look_up(inv)
    final = [(v, correlate.verdict_of(v, stuck_after, NOW)) for v in correlate.all_views(inv)]
    findings = [correlate.finding(v, vd, stuck_after, NOW) for v, vd in final
                if vd["audit"] == "finding"]
    return findings, final, deep_ids


def by_pair(findings):
    return {(f["server_id"], f["volume_id"]): f for f in findings}


# -- tests ------------------------------------------------------------------------------------

def test_a_healthy_cloud_has_no_findings_and_every_attachment_once():
    cloud = Cloud()
    servers = [cloud.server(data=2), cloud.server(host="cmp2", data=1),
               cloud.server(status="SHUTOFF", data=0)]
    findings, final, deep_ids = audit_of(cloud)
    assert findings == [] and deep_ids == []
    pairs = [(v["server"]["id"], v["volume_id"]) for v, _ in final]
    assert len(pairs) == len(set(pairs)) == 3 + 2 + 1     # boot volumes included
    assert {p[0] for p in pairs} == set(servers)
    assert all(vd["healthy"] for _, vd in final)


def test_every_lab_break_is_one_finding_with_its_class_and_remedy():
    cloud = Cloud()
    healthy = cloud.server(data=2)
    s1, s2a, s2b, s4, s5 = (cloud.server(data=2) for _ in range(5))
    v1, v2a, v2b, v4 = (cloud.data_volumes(s)[0] for s in (s1, s2a, s2b, s4))
    v5 = cloud.data_volumes(s5)
    cloud.cinder_reset(s1, v1)
    cloud.backend_down(s2a, v2a)
    cloud.guest_refuses(s2b, v2b)
    cloud.hypervisor_only(s4, v4)
    boot5 = next(v for v, b in cloud.bdms[s5].items() if b["device"] == "/dev/sda")
    cloud.orphan(s5)
    findings, final, deep_ids = audit_of(cloud)
    got = by_pair(findings)
    assert len(got) == len(findings)          # one finding per (server, volume)
    expected = {(s1, v1): ("nova_only", "refresh"),
                (s2a, v2a): ("stuck_detaching", "refresh"),
                (s2b, v2b): ("detach_refused", "refresh"),
                (s4, v4): ("missing_on_hypervisor", "detach_only")}
    expected.update({(s5, v): ("cinder_only", None) for v in v5 + [boot5]})
    assert {k: (f["class"], f["remedy"].get("plan")) for k, f in got.items()} == expected
    # 2a: one finding, both facts
    assert got[(s2a, v2a)]["problems"] == ["stuck_detaching", "missing_on_hypervisor"]
    assert got[(s1, v1)]["remedy"]["parameters"] == {"server_id": s1, "volume_id": v1}
    assert got[(s2a, v2a)]["remedy"]["reasons"][-1].startswith("reset the volume to in-use")
    assert got[(s1, v1)]["remedy"]["powers_off"] is True
    orphan = got[(s5, v5[0])]
    assert orphan["remedy"]["needs_operator"] and "no longer exists" in orphan["remedy"]["why"]
    assert orphan["server"]["exists"] is False and orphan["says"]["nova"].startswith("no such")
    assert orphan["cinder_attachments"][0]["status"] == "attached"
    # the deep tier read the suspects that exist, and only them
    assert deep_ids == sorted([s1, s2a, s2b, s4])
    assert healthy not in deep_ids
    assert all(f["read_deep"] for f in findings if f["server"]["exists"])
    assert got[(s1, v1)]["nova"]["attachment_id"] == cloud.bdms[s1][v1]["attachment_id"]


def test_every_fact_seen_is_in_the_finding():
    cloud = Cloud()
    sid = cloud.server(data=1, name="web-1")
    vid = cloud.data_volumes(sid)[0]
    cloud.backend_down(sid, vid)
    (f,), _, _ = audit_of(cloud)
    assert f["server"]["name"] == "web-1" and f["host"] == "cmp1" and f["project_id"] == P1
    assert f["volume"]["status"] == "detaching" and f["since"] == LONG_AGO
    assert f["age_s"] == (365 * 24 + 3) * 3600
    assert f["says"] == {
        "nova": "attached as /dev/sdb, attachment %s" % cloud.bdms[sid][vid]["attachment_id"],
        "cinder": "detaching; attachments of this server: %s attached"
                  % cloud.bdms[sid][vid]["attachment_id"],
        "hypervisor": "live: -; next boot: -"}
    assert f["hypervisor"]["domain"] == cloud.servers[sid]["OS-EXT-SRV-ATTR:instance_name"]


def test_a_young_detach_is_in_progress_not_stuck():
    cloud = Cloud()
    sid = cloud.server(data=1)
    vid = cloud.data_volumes(sid)[0]
    cloud.backend_down(sid, vid, updated_at=JUST_NOW)
    (f,), _, _ = audit_of(cloud)
    assert f["class"] == "in_progress"
    assert f["remedy"] == dict(f["remedy"], action=None, needs_operator=False)
    assert "audit again" in f["remedy"]["why"]
    (f,), _, _ = audit_of(cloud, stuck_after=0)
    assert f["class"] == "stuck_detaching"


def test_an_error_attachment_is_stuck_however_young():
    cloud = Cloud()
    sid = cloud.server(data=1)
    vid = cloud.data_volumes(sid)[0]
    att = cloud.bdms[sid][vid]["attachment_id"]
    cloud.records[att]["status"] = "error_detaching"
    cloud.volumes[vid]["updated_at"] = JUST_NOW
    (f,), _, _ = audit_of(cloud)
    assert f["class"] == "stuck_detaching"


def test_attachment_id_mismatch_is_seen_only_by_the_deep_tier():
    cloud = Cloud()
    sid = cloud.server(data=1)
    cloud.mismatch(sid, cloud.data_volumes(sid)[0])
    findings, _, deep_ids = audit_of(cloud)
    assert findings == [] and deep_ids == []      # servers/detail shows no attachment ids
    (f,), _, deep_ids = audit_of(cloud, deep_all=True)
    assert deep_ids == [sid] and f["class"] == "attachment_id_mismatch"
    assert f["remedy"]["plan"] == "refresh"


def test_a_disk_nova_does_not_list_is_hypervisor_only_with_the_last_resort():
    cloud = Cloud()
    sid = cloud.server(data=2)
    vid = cloud.data_volumes(sid)[1]
    cloud.stray_disk(sid, vid)
    (f,), _, _ = audit_of(cloud)
    assert (f["server_id"], f["volume_id"], f["class"]) == (sid, vid, "hypervisor_only")
    assert f["remedy"]["parameters"] == {"server_id": sid, "volume_id": vid,
                                         "allow_libvirt_detach": True}
    assert f["remedy"]["last_resort"] is True and f["remedy"]["plan"] == "libvirt_only"


def test_a_domain_no_server_has_is_reported_in_scope_all_and_host_only():
    cloud = Cloud()
    sid = cloud.server(data=1)
    vid = cloud.data_volumes(sid)[0]
    domain_name = cloud.servers[sid]["OS-EXT-SRV-ATTR:instance_name"]
    cloud.servers.pop(sid)           # Nova forgot it; the domain and Cinder remain
    del cloud.bdms[sid]
    findings, _, _ = audit_of(cloud)
    got = by_pair(findings)
    assert got[(None, vid)]["class"] == "hypervisor_only"
    assert got[(None, vid)]["remedy"]["needs_operator"]
    assert domain_name in got[(None, vid)]["remedy"]["why"]
    assert got[(sid, vid)]["class"] == "cinder_only"       # and Cinder's orphan, on its own
    host_findings, _, _ = audit_of(cloud, kind="host", host="cmp1")
    assert by_pair(host_findings).keys() == got.keys()
    # a project cannot tell another project's domains from stray ones: not reported there
    other = cloud.server(project=P2, data=0)
    project_findings, _, _ = audit_of(cloud, kind="project", project_id=P2)
    assert project_findings == [] and other


def test_project_scope_sees_its_own_breaks_only():
    cloud = Cloud()
    mine = cloud.server(project=P2, data=1)
    theirs = cloud.server(project=P1, data=1)
    cloud.cinder_reset(mine, cloud.data_volumes(mine)[0])
    cloud.cinder_reset(theirs, cloud.data_volumes(theirs)[0])
    findings, _, _ = audit_of(cloud, kind="project", project_id=P2)
    assert [(f["server_id"], f["class"]) for f in findings] == [(mine, "nova_only")]


def test_host_scope_keeps_orphans_cinder_places_on_that_host():
    cloud = Cloud()
    here = cloud.server(host="cmp1", data=1)
    there = cloud.server(host="cmp2", data=1)
    cloud.orphan(here)
    cloud.orphan(there)
    findings, _, _ = audit_of(cloud, kind="host", host="cmp1")
    assert {f["server_id"] for f in findings} == {here}


def test_an_unreadable_hypervisor_leaves_attachments_unverified_not_silent():
    cloud = Cloud()
    fine = cloud.server(host="cmp1", data=1)
    blind = cloud.server(host="cmp2", data=1)
    broken = cloud.server(host="cmp2", data=1)
    cloud.cinder_reset(broken, cloud.data_volumes(broken)[0])
    inv = cloud.inventory(unreachable=("cmp2",))
    cloud.look_up(inv)
    final = [(v, correlate.verdict_of(v, STUCK_AFTER, NOW)) for v in correlate.all_views(inv)]
    audits = {(v["server"]["id"], v["volume_id"]): vd["audit"] for v, vd in final}
    assert {k: a for k, a in audits.items() if k[0] == fine} == {
        k: "healthy" for k in audits if k[0] == fine}
    assert {a for k, a in audits.items() if k[0] == blind} == {correlate.UNVERIFIED}
    (f,) = [correlate.finding(v, vd, STUCK_AFTER, NOW) for v, vd in final
            if vd["audit"] == "finding"]
    assert f["server_id"] == broken and f["problems"] == ["nova_only", "hypervisor_unreachable"]
    assert f["remedy"]["needs_operator"] and "timed out" in f["remedy"]["why"]


def test_without_attachment_records_the_volumes_own_lists_are_used():
    cloud = Cloud()
    sid = cloud.server(data=2)
    v1, v2 = cloud.data_volumes(sid)
    cloud.cinder_reset(sid, v1)
    findings, _, _ = audit_of(cloud, records=False)
    assert [(f["volume_id"], f["class"]) for f in findings] == [(v1, "nova_only")]


def test_a_boot_volume_finding_needs_an_operator():
    cloud = Cloud()
    sid = cloud.server(data=0)
    boot = next(iter(cloud.bdms[sid]))
    cloud.cinder_reset(sid, boot)
    (f,), _, _ = audit_of(cloud)
    assert f["boot_volume"] is True and f["remedy"]["needs_operator"]
    assert "boot volume" in f["remedy"]["why"]


def test_report_table_and_summary_say_what_was_found_and_stay_small():
    cloud = Cloud()
    for _ in range(60):
        sid = cloud.server(data=1)
        cloud.cinder_reset(sid, cloud.data_volumes(sid)[0])
    inv = cloud.inventory(unreachable=())
    cloud.look_up(inv)
    final = [(v, correlate.verdict_of(v, STUCK_AFTER, NOW)) for v in correlate.all_views(inv)]
    report = audit_report.build(inv, final, NOW, STUCK_AFTER, False, {"compute": "2.89"},
                           inventory.Pages(), "prod", {"cmp1": {"state": "up"}}, 200)
    report.update(duration_s=1.5)
    assert report["counts"]["by_class"] == {"nova_only": 60}
    assert report["counts"]["healthy"] == 60 and report["complete"] is True
    out = audit_report.summary(report, {"json": "/r/a.json", "table": "/r/a.txt"})
    assert len(out["remedies"]) == audit_report.SUMMARY_REMEDIES and out["remedies_left_out"] == 10
    assert out["remedies"][0]["class"] == "nova_only"
    assert "findings" not in out and len(str(out)) < 12000
    table = audit_report.render_table(report)
    assert "findings 60" in table and table.count("nova_only") >= 60
    assert "st2 run dangling_volume.remedy server_id=" in table


def test_stuck_after_is_measured_from_the_api_timestamps():
    assert classify.parse_time("2026-11-25T11:59:50Z") == datetime.datetime(
        2026, 11, 25, 11, 59, 50, tzinfo=datetime.timezone.utc)
    assert classify.parse_time("2026-11-25T11:59:50.123456").microsecond == 123456
    assert classify.parse_time("yesterday") is None
    view = {"server": {"id": "s"}, "nova": None, "hypervisor": {"reachable": True},
            "cinder": {"status": "reserved", "updated_at": JUST_NOW,
                       "attachments": [{"id": "a", "status": "reserved", "server_id": "s"}]}}
    assert classify.classify(view, stuck_after=60, now=NOW)["class"] == "in_progress"
    assert classify.classify(view, stuck_after=5, now=NOW)["class"] == "cinder_only"
    assert classify.classify(view)["problems"] == ["cinder_only", "stuck_attaching"]


@pytest.mark.parametrize("task, updated, expected", [
    ("deleting", JUST_NOW, "in_progress"),
    ("deleting", LONG_AGO, "nova_only"),
])
def test_a_server_task_younger_than_stuck_after_is_in_progress(task, updated, expected):
    cloud = Cloud()
    sid = cloud.server(data=1)
    cloud.servers[sid].update({"OS-EXT-STS:task_state": task, "updated": updated})
    cloud.cinder_reset(sid, cloud.data_volumes(sid)[0])
    (f,), _, _ = audit_of(cloud)
    assert f["class"] == expected
