"""dangling_volume.attachments on the lab's real services: a server with two data volumes, one
broken behind Nova's back, lists every volume with the class the remedy's identify step gives
it, reading each view once; an unreachable hypervisor is named, not hidden; bad input gets a
clear error. Run as st2 runs it (tools/st2-run: its own process, Python 3.8 with openstacksdk
4.0.1) and in-process (this interpreter's openstacksdk)."""
import json
import os
import subprocess

import pytest

from testsupport.lab import REPO, run_lab_tool
from testsupport.labchecks import MALFORMED

from dvremedy import runner
from dvremedy.adapters import libvirt
from dvremedy.runner import run_step
from dvremedy.settings import Settings
from dvremedy.steps import attachments, remedy, views


@pytest.fixture(scope="module")
def config(lab):
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        return json.load(f)


def st2_run(lab, *params):
    proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.attachments"] +
                          list(params) + ["--config",
                                          os.path.join(lab["lab_dir"], "dangling_volume.yaml"),
                                          "--json"],
                          capture_output=True, text=True, timeout=300)
    execution = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (execution["status"] == "succeeded")
    return execution


@pytest.fixture
def broken_server(make_server):
    """A server with two data volumes; the second reset in Cinder behind Nova's back."""
    info = make_server(data_volumes=2)
    out = run_lab_tool("break", "cinder-reset", info["server_id"], info["volume_ids"][1])
    assert out.returncode == 0, out.stdout + out.stderr
    return info


def test_every_volume_listed_with_its_class(lab, config, broken_server):
    info = broken_server
    sid, (healthy, broken), boot = (info["server_id"], info["volume_ids"],
                                    info["boot_volume_id"])
    execution = st2_run(lab, "server_id=" + sid)
    assert execution["status"] == "succeeded", json.dumps(execution, indent=1)[-3000:]
    result = execution["result"]["result"]
    rows = {v["volume_id"]: v for v in result["volumes"]}
    assert set(rows) == {boot, healthy, broken}
    assert [v["volume_id"] for v in result["volumes"]] == [boot, healthy, broken]  # by device
    assert (rows[boot]["class"], rows[boot]["boot_volume"], rows[boot]["device"]) == \
        ("healthy", True, "/dev/sda")
    assert (rows[healthy]["class"], rows[healthy]["healthy"], rows[healthy]["cinder_status"],
            rows[healthy]["hypervisor_live"], rows[healthy]["hypervisor_config"]) == \
        ("healthy", True, "in-use", ["sdb"], ["sdb"])
    assert (rows[broken]["class"], rows[broken]["problems"], rows[broken]["cinder_status"],
            rows[broken]["cinder_attachments"], rows[broken]["device"]) == \
        ("nova_only", ["nova_only"], "available", [], "/dev/sdc")
    assert result["count"] == 3 and result["unhealthy"] == 1
    assert result["server"]["compute_host"] == lab["compute_host"]
    assert result["hypervisor"]["reachable"] is True
    summary = result["summary"].splitlines()
    assert summary[0].endswith("3 volumes attached, 1 needs attention")
    assert summary[3].startswith("  /dev/sdc %s: nova_only" % broken)
    # the one classifier: the remedy's identify step says the same of each data volume
    for volume_id in (healthy, broken):
        ok, seen = run_step(config, remedy.identify, server_id=sid, volume_id=volume_id)
        assert ok, seen
        assert seen["classification"]["class"] == rows[volume_id]["class"]
        assert seen["classification"]["problems"] == rows[volume_id]["problems"]


def _counting(calls, name, fn):
    def wrapper(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return fn(*args, **kwargs)
    return wrapper


def test_each_view_is_read_once_for_the_whole_server(lab, config, broken_server, monkeypatch):
    sid = broken_server["server_id"]
    calls = {}
    ctx = runner.StepContext(Settings(config))
    try:
        for proxy, method in ((ctx.conn.compute, "get_server"),
                              (ctx.conn.compute, "volume_attachments"),
                              (ctx.conn.block_storage, "get_volume"),
                              (ctx.conn.block_storage, "attachments")):
            monkeypatch.setattr(proxy, method, _counting(calls, method, getattr(proxy, method)))
        monkeypatch.setattr(views, "server_attachment_records", _counting(
            calls, "server_attachment_records", views.server_attachment_records))
        monkeypatch.setattr(libvirt, "domain_disks", _counting(calls, "dumpxml",
                                                               libvirt.domain_disks))
        result = attachments.list_attachments(ctx, sid)
    finally:
        ctx.close()
    assert result["count"] == 3 and result["unhealthy"] == 1
    # one volume GET per volume for its status; everything else once for the server
    assert calls == {"get_server": 1, "volume_attachments": 1, "server_attachment_records": 1,
                     "dumpxml": 2, "get_volume": 3}


def test_an_unreachable_hypervisor_is_named_and_the_volumes_still_listed(lab, config,
                                                                         broken_server):
    dead = dict(config, hosts={"address_map": dict(config["hosts"]["address_map"],
                                                   **{lab["compute_host"]: "127.0.0.9"})})
    ok, result = run_step(dead, attachments.list_attachments,
                          server_id=broken_server["server_id"])
    assert ok, result
    assert result["hypervisor"]["reachable"] is False
    assert "127.0.0.9" in result["hypervisor"]["error"]["message"]
    assert {v["volume_id"] for v in result["volumes"]} == set(
        broken_server["volume_ids"] + [broken_server["boot_volume_id"]])
    assert {v["class"] for v in result["volumes"]} == {"nova_only", "hypervisor_unreachable"}
    assert "the hypervisor could not be read" in result["summary"]


@pytest.mark.parametrize("server_id", ["not-a-uuid", MALFORMED[1], MALFORMED[2]])
def test_a_malformed_id_is_refused_by_st2_before_anything_runs(lab, server_id):
    """The parameter's pattern: st2 refuses the request itself, so no action process starts."""
    execution = st2_run(lab, "server_id=" + server_id)
    assert execution["status"] == "failed" and execution["runner_type"] is None
    assert "ValidationError" in execution["result"]["error"]
    assert "does not match" in execution["result"]["error"]


@pytest.mark.parametrize("server_id, kind, text", [
    ("00000000-0000-4000-8000-000000000000", "not_found",
     "server 00000000-0000-4000-8000-000000000000 does not exist"),
])
def test_bad_input_gets_a_clear_error(lab, server_id, kind, text):
    execution = st2_run(lab, "server_id=" + server_id)
    assert execution["status"] == "failed"
    error = execution["result"]["result"]["error"]
    assert error["kind"] == kind and text in error["message"], error
    if kind == "not_found":
        assert error["step"] == "attachments"
