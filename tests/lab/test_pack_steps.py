"""The pack's steps against the lab's real services, called the way the actions call them
(dvremedy.runner.run_step with the pack config written by lab/up): bad input gets a clear error
and changes nothing; each step is idempotent."""
import json
import os

import pytest

import labcloud
from testsupport.labchecks import MALFORMED, state

from dvremedy.runner import run_step
from dvremedy.steps import remedy


@pytest.fixture(scope="module")
def config(lab):
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        return json.load(f)


def test_identify_healthy_attachment(lab, conn, config, make_server):
    info = make_server()
    ok, result = run_step(config, remedy.identify, server_id=info["server_id"],
                          volume_id=info["volume_ids"][0])
    assert ok, result
    assert result["classification"]["class"] == "healthy"
    assert result["views"]["hypervisor"] == {"reachable": True, "domain": result["views"][
        "server"]["instance_name"], "live": ["sdb"], "config": ["sdb"]}
    assert result["views"]["server"]["compute_host"] == lab["compute_host"]
    assert result["plan"]["steps"] == ["detach", "verify"]


def test_bad_input_is_refused_clearly_and_changes_nothing(lab, conn, config, make_server):
    info = make_server()
    sid, vid, boot = info["server_id"], info["volume_ids"][0], info["boot_volume_id"]
    before = state(lab, conn, info)
    other = make_server(data_volumes=1)
    cases = [(bad, vid, "must be a UUID") for bad in MALFORMED]
    cases += [(sid, bad, "must be a UUID") for bad in MALFORMED]
    cases += [("00000000-0000-4000-8000-000000000000", vid, "server 00000000"),
              (sid, "00000000-0000-4000-8000-000000000000", "volume 00000000"),
              (sid, other["volume_ids"][0], "not attached"),
              (sid, boot, "boot volume")]
    for server_id, volume_id, text in cases:
        for step in (remedy.identify, remedy.detach):
            if step is remedy.detach and text in ("not attached", "boot volume"):
                continue  # detach alone trusts identify's plan: the workflow runs identify
            ok, result = run_step(config, step, server_id=server_id, volume_id=volume_id)
            assert not ok, (step.__name__, server_id, volume_id, result)
            assert text in result["error"]["message"], result
    assert state(lab, conn, info) == before


def test_unreachable_host_and_host_key_mismatch_are_named(lab, conn, config, make_server,
                                                          tmp_path):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    dead = dict(config, hosts={"address_map": dict(config["hosts"]["address_map"],
                                                   **{lab["compute_host"]: "127.0.0.9"})})
    ok, result = run_step(dead, remedy.get_connector, server_id=sid)
    assert not ok and result["error"]["kind"] == "ssh"
    assert "127.0.0.9" in result["error"]["message"]
    known = tmp_path / "known_hosts"
    with open(config["ssh"]["known_hosts_file"]) as f:
        lines = f.read().splitlines()
    # the controller's key given for the hypervisor's address: a changed host key
    hv = lab["ssh"]["hosts"][lab["compute_host"]]
    ctl_key = [ln for ln in lines if ln.startswith("[%s]" % lab["ssh"]["hosts"][
        lab["controller_host"]])][0].split(" ", 1)[1]
    known.write_text("[%s]:%d %s\n" % (hv, lab["ssh"]["port"], ctl_key))
    mismatched = dict(config, ssh=dict(config["ssh"], known_hosts_file=str(known)))
    ok, result = run_step(mismatched, remedy.get_connector, server_id=sid)
    assert not ok and result["error"]["kind"] == "ssh_host_key", result
    # identify reports the hypervisor as unreachable, naming why, and plans nothing
    ok, result = run_step(mismatched, remedy.identify, server_id=sid, volume_id=vid)
    assert not ok and "hypervisor" in result["error"]["message"]


def test_connector_problems_are_refused_before_refresh(lab, conn, config, make_server):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    conn.compute.stop_server(sid)
    labcloud.server_status(conn, sid, "SHUTOFF")
    before = state(lab, conn, info)
    ok, good = run_step(config, remedy.get_connector, server_id=sid)
    assert ok, good
    wrong = dict(good["connector"], host=lab["controller_host"])
    for connector, text in ((wrong, "rc 7"), ("{not json", "connector"),
                            ({"host": lab["compute_host"]}, "connector")):
        ok, result = run_step(config, remedy.refresh, server_id=sid, volume_id=vid,
                              connector=connector)
        assert not ok, result
        assert text in json.dumps(result["error"]), result
    assert state(lab, conn, info) == before
    conn.compute.start_server(sid)
    labcloud.server_status(conn, sid, "ACTIVE")


def test_refresh_exit_codes_surface_as_typed_errors(lab, conn, config, make_server):
    info = make_server()
    sid, vid = info["server_id"], info["volume_ids"][0]
    ok, got = run_step(config, remedy.get_connector, server_id=sid)
    assert ok, got
    ok, result = run_step(config, remedy.refresh, server_id=sid, volume_id=vid,
                          connector=got["connector"])
    assert not ok and "stopped" in result["error"]["message"]  # checked before rc 5
    conn.compute.stop_server(sid)
    labcloud.server_status(conn, sid, "SHUTOFF")
    no_initiator = {k: v for k, v in got["connector"].items() if k != "initiator"}
    ok, result = run_step(config, remedy.refresh, server_id=sid, volume_id=vid,
                          connector=no_initiator)
    assert not ok and result["error"]["exit_code"] == 2, result
    assert "initiator" in result["error"]["advice"]
    ok, result = run_step(config, remedy.refresh, server_id=sid, volume_id=vid,
                          connector=got["connector"])
    assert ok, result  # a good refresh works from the state a failed one left
    conn.compute.start_server(sid)
    labcloud.server_status(conn, sid, "ACTIVE")


def test_refresh_exit_codes_5_6_7_decoded_with_advice(lab, conn, config, make_server):
    """The transport itself (adapters.novamanage over adapters.sshclient) against the real
    nova-manage: the exit codes the steps normally pre-empt still come back typed."""
    from dvremedy.adapters import novamanage
    from dvremedy.errors import NovaManageError
    from dvremedy.adapters.sshclient import SSHSession, SSHTarget
    info = make_server()
    other = make_server(data_volumes=1)
    sid, vid = info["server_id"], info["volume_ids"][0]
    s = lab["ssh"]

    def session(host):
        return SSHSession(SSHTarget(host=host, address=s["hosts"][host], port=s["port"],
                                    user=s["user"], key_file=s["key_file"],
                                    known_hosts_file=s["known_hosts_file"]))

    def connector_files(ctl):
        # the lab's hosts share this machine's /tmp with everything else running here: count
        # the files these refreshes leave, not what another run may have left
        return set(ctl.run(["sh", "-c", "ls /tmp | grep dvremedy-connector || true"])
                   .stdout.split())

    with session(lab["compute_host"]) as hv, session(lab["controller_host"]) as ctl:
        files_before = connector_files(ctl)
        good = novamanage.get_connector(hv, ["nova-manage"], expected_host=lab["compute_host"])
        wrong = novamanage.get_connector(ctl, ["nova-manage"])
        with pytest.raises(NovaManageError) as exc:
            novamanage.refresh(ctl, ["nova-manage"], sid, vid, good)
        assert exc.value.details["exit_code"] == 5
        conn.compute.stop_server(sid)
        labcloud.server_status(conn, sid, "SHUTOFF")
        cases = [(sid, other["volume_ids"][0], good, 6), (sid, vid, wrong, 7)]
        for server_id, volume_id, connector, rc in cases:
            with pytest.raises(NovaManageError) as exc:
                novamanage.refresh(ctl, ["nova-manage"], server_id, volume_id, connector)
            ev = exc.value.evidence()
            assert ev["exit_code"] == rc, ev
            assert ev.get("meaning") and ev.get("advice"), ev
        assert connector_files(ctl) - files_before == set()  # no connector file left behind
    conn.compute.start_server(sid)
    labcloud.server_status(conn, sid, "ACTIVE")


def test_identify_sees_the_attachments_of_a_tenants_volume(lab, conn, config):
    """The admin's token is scoped to its own project; Cinder lists another project's
    attachment records only with all_tenants. Without it a tenant's healthy attachment
    would look Nova-only (and be 'remedied')."""
    import uuid
    project = labcloud.create_project(conn, "tenant-" + uuid.uuid4().hex[:8])
    try:
        tenant = labcloud.connect_project(lab, project.id)
        info = labcloud.create_server(tenant, "tenant-server", data_volumes=1)
        vid = info["volume_ids"][0]
        ok, result = run_step(config, remedy.identify, server_id=info["server_id"],
                              volume_id=vid)
        assert ok, result
        assert result["views"]["server"]["project_id"] == project.id
        assert [a["server_id"] for a in result["views"]["cinder"]["attachments"]] == [
            info["server_id"]]
        assert result["classification"]["class"] == "healthy"
    finally:
        labcloud.purge_project(lab, project.id)
