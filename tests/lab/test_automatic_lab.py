"""Automatic remedies on the lab: the real workflow through Orquesta (tools/st2-run), each
action in its own process, against the real services, in `mode=automatic` as the rule starts
it: the approval gate answered (approve heals; reject changes nothing) and the hourly cap kept
in the local datastore across runs."""
import json
import os
import subprocess

import pytest

from testsupport.lab import REPO, run_lab_tool
from testsupport.labchecks import healed, state

ORIGIN = {"source": "sensor", "signal": "versioned", "event_type": "compute.exception",
          "message_id": "lab-test", "host": "lab-compute", "reason": "test", "timestamp": ""}


def automatic_remedy(lab, server_id, volume_id, datastore, *options):
    config = os.path.join(lab["lab_dir"], "dangling_volume.yaml")
    proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.remedy",
                           "server_id=%s" % server_id, "volume_id=%s" % volume_id,
                           "mode=automatic", "triggered_by=%s" % json.dumps(ORIGIN),
                           "--config", config, "--json", "--datastore", datastore] +
                          list(options), capture_output=True, text=True, timeout=900)
    execution = json.loads(proc.stdout)
    report = (execution["result"].get("output") or {}).get("report")
    return execution, report, [t["id"] for t in execution.get("tasks", [])]


@pytest.fixture
def datastore(tmp_path):
    return str(tmp_path / "datastore.json")


def test_approved_automatic_remedy_heals_a_refused_detach(lab, conn, make_server, datastore):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    out = run_lab_tool("break", "guest-refuses", sid, vid)
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        execution, report, ran = automatic_remedy(lab, sid, vid, datastore, "--answer",
                                                  "approve")
        assert execution["status"] == "succeeded", json.dumps(execution, indent=1)[-3000:]
        assert "ask_approval" in ran and ran.index("ask_approval") < ran.index("stop_server")
        assert report["mode"] == "automatic" and report["class"] == "detach_refused"
        assert report["triggered_by"]["message_id"] == "lab-test"
        assert report["approval"]["answer"] == "approved"
        healed(lab, conn, info, vid)
    finally:
        run_lab_tool("break", "heal-guest", vid)


def test_rejected_automatic_remedy_changes_nothing(lab, conn, make_server, datastore):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    assert run_lab_tool("break", "cinder-reset", sid, vid).returncode == 0
    before = state(lab, conn, info)
    execution, report, ran = automatic_remedy(lab, sid, vid, datastore, "--answer", "reject")
    assert execution["status"] == "succeeded"
    assert report["outcome"] == "rejected" and "stop_server" not in ran
    assert state(lab, conn, info) == before


def test_the_cap_holds_across_runs_on_the_lab(lab, conn, make_server, datastore, tmp_path):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    assert run_lab_tool("break", "cinder-reset", sid, vid).returncode == 0
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        config = json.load(f)  # JSON, which is YAML
    config["automatic"] = {"max_per_hour": 1}
    capped = tmp_path / "capped.yaml"
    capped.write_text(json.dumps(config))
    before = state(lab, conn, info)
    first, report, _ = automatic_remedy(lab, sid, vid, datastore, "--answer", "reject",
                                        "--config", str(capped))
    assert report["outcome"] == "rejected"
    second, report, ran = automatic_remedy(lab, sid, vid, datastore, "--answer", "approve",
                                           "--config", str(capped))
    assert report["outcome"] == "capped" and ran == ["identify", "admit", "report_capped"]
    assert state(lab, conn, info) == before
