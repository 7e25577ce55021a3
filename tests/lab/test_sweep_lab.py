"""The sweep on the lab (tools/st2-run: the real sweep and remedy workflows through Orquesta,
every action in its own process, real services), scoped to a project of its own: it heals the
break that has a remedy (asking before it powers the server off), leaves the orphan that needs
an operator alone, and does not touch the healthy server."""
import json
import os
import subprocess
import uuid

import pytest

import labcloud
from testsupport.lab import REPO, run_lab_tool
from testsupport.labchecks import records


def _tasks(tasks, prefix=""):
    """Every task record, sub-workflows' included, as (path, record), in start order."""
    out = []
    for t in sorted(tasks, key=lambda t: t["start"]):
        out.append((prefix + t["id"], t))
        out += _tasks(t.get("tasks") or [], prefix + t["id"] + "/")
    return out


@pytest.fixture
def project_with_breaks(lab, conn):
    project = labcloud.create_project(conn, "sweep-" + uuid.uuid4().hex[:8])
    try:
        pconn = labcloud.connect_project(lab, project.id)
        made = {key: labcloud.create_server(pconn, "sweep-%s" % key, 1)
                for key in ("broken", "orphan", "ok")}
        for kind, key in (("cinder-reset", "broken"), ("orphan", "orphan")):
            out = run_lab_tool("break", kind, made[key]["server_id"],
                               made[key]["volume_ids"][0])
            assert out.returncode == 0, out.stdout + out.stderr
        yield project, made
    finally:
        labcloud.purge_project(lab, project.id)


def test_sweep_heals_what_has_a_remedy_and_leaves_the_rest(lab, conn, project_with_breaks,
                                                           tmp_path):
    project, made = project_with_breaks
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        config = json.load(f)
    config["audit"] = {"report_dir": str(tmp_path)}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ok_sid, ok_vid = made["ok"]["server_id"], made["ok"]["volume_ids"][0]
    ok_before = (labcloud.nova_attachments(conn, ok_sid), records(conn, ok_vid))
    orphan_vid = made["orphan"]["volume_ids"][0]
    orphan_before = records(conn, orphan_vid)

    proc = subprocess.run(
        [os.path.join(REPO, "tools", "st2-run"), "dangling_volume.sweep", "scope=project",
         "project=%s" % project.id, "--config", str(tmp_path / "config.json"), "--json",
         "--answer", "approve", "--datastore", str(tmp_path / "datastore.json")],
        capture_output=True, text=True, timeout=900)
    execution = json.loads(proc.stdout)
    summary = execution["result"]["output"]["summary"]
    assert execution["status"] == "succeeded", json.dumps(execution, indent=1)[-3000:]
    sid, vid = made["broken"]["server_id"], made["broken"]["volume_ids"][0]
    assert [(r["server_id"], r["volume_id"], r["result"]) for r in summary["remedies"]] == [
        (sid, vid, "remedied")]
    assert summary["needs_operator"] >= 1  # the orphan's attachments

    # asked before powering the server off, inside the remedy the sweep started
    paths = [p for p, _ in _tasks(execution["tasks"])]
    ask = [p for p in paths if p.endswith("/ask_approval")]
    stop = [p for p in paths if p.endswith("/stop_server")]
    assert ask and stop and paths.index(ask[0]) < paths.index(stop[0])

    # healed and, as a sweep repairs without detaching, still attached everywhere
    assert vid in labcloud.nova_attachments(conn, sid)
    assert [a["instance"] for a in records(conn, vid)] == [sid]
    assert "sdb" in [d["target"] for d in labcloud.domain_disks(lab, conn, sid)]
    assert conn.compute.get_server(sid).status == "ACTIVE"
    # the rest untouched
    assert (labcloud.nova_attachments(conn, ok_sid), records(conn, ok_vid)) == ok_before
    assert records(conn, orphan_vid) == orphan_before
