"""`dangling_volume.remedy` end to end on the lab: the real workflow through Orquesta
(tools/st2-run), each action in its own process, against the real services. Breaks 1, 2a, 2b
and 4 healed; a dry run changes nothing; a second run after success changes nothing."""
import json
import os
import subprocess

import pytest

from testsupport.lab import REPO, run_lab_tool
from testsupport.labchecks import healed, state


def remedy(lab, server_id, volume_id, *extra):
    config = os.path.join(lab["lab_dir"], "dangling_volume.yaml")
    proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.remedy",
                           "server_id=%s" % server_id, "volume_id=%s" % volume_id] +
                          list(extra) + ["--config", config, "--json"],
                          capture_output=True, text=True, timeout=900)
    execution = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (execution["status"] == "succeeded")
    return execution, (execution["result"].get("output") or {}).get("report")


@pytest.mark.parametrize("kind, expected_class", [
    ("cinder-reset", "nova_only"),
    ("backend-down", "stuck_detaching"),
    ("guest-refuses", "detach_refused"),
    ("hypervisor-only", "missing_on_hypervisor"),
])
def test_remedy_heals_the_break(lab, conn, make_server, kind, expected_class):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    out = run_lab_tool("break", kind, sid, vid)
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        execution, report = remedy(lab, sid, vid)
        assert execution["status"] == "succeeded", json.dumps(execution, indent=1)[-3000:]
        assert report["class"] == expected_class
        assert report["final"]["consistent"] is True
        if kind == "backend-down":
            assert report["plan"]["reset_volume_to"] == "in-use"
        healed(lab, conn, info, vid)
        # a second run changes nothing and says why
        before = state(lab, conn, info)
        again, report2 = remedy(lab, sid, vid)
        assert again["status"] == "failed"
        assert "not attached" in report2["error"]["message"]
        assert state(lab, conn, info) == before
    finally:
        run_lab_tool("break", "heal-guest", vid)


def test_dry_run_changes_nothing(lab, conn, make_server):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    run_lab_tool("break", "cinder-reset", sid, vid)
    before = state(lab, conn, info)
    execution, report = remedy(lab, sid, vid, "dry_run=true")
    assert execution["status"] == "succeeded"
    assert report["dry_run"] is True and report["class"] == "nova_only"
    assert report["plan"]["steps"][:2] == ["get_connector", "stop"]
    # no admit: a dry run spends nothing of the hourly cap
    assert [t["id"] for t in execution["tasks"]] == ["identify", "report_dry_run"]
    assert state(lab, conn, info) == before


def test_a_failing_step_restores_power_and_reports(lab, conn, make_server, tmp_path):
    """refresh fails (the controller cannot be reached): the server is started again."""
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    run_lab_tool("break", "cinder-reset", sid, vid)
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        config = json.load(f)
    config["hosts"]["address_map"][lab["controller_host"]] = "127.0.0.9"
    bad = tmp_path / "config.yaml"
    bad.write_text(json.dumps(config))
    proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.remedy",
                           "server_id=%s" % sid, "volume_id=%s" % vid, "--config", str(bad),
                           "--json"], capture_output=True, text=True, timeout=900)
    execution = json.loads(proc.stdout)
    report = execution["result"]["output"]["report"]
    assert proc.returncode == 1 and execution["status"] == "failed"
    assert report["error"]["step"] == "refresh" and report["error"]["kind"] == "ssh"
    assert "127.0.0.9" in report["error"]["message"]
    assert conn.compute.get_server(sid).status == "ACTIVE"
    assert [s["step"] for s in report["steps"]][-1] == "start"
