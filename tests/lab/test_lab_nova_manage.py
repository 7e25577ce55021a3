"""The real `nova-manage volume_attachment` over SSH on the lab's hosts: show, get_connector on
the hypervisor, refresh on the controller, and refresh's documented failures (rc 2, 5, 7)."""
import json

import labcloud

NM = "nova-manage volume_attachment"


def _upload(lab, host, path, text):
    out = labcloud.ssh(lab, host, "umask 077 && cat > %s" % path, stdin_text=text)
    assert out.returncode == 0, out.stderr


def _connector(lab, host):
    out = labcloud.ssh(lab, host, NM + " get_connector --json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_show_json_matches_the_compute_api(lab, conn, make_server):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    out = labcloud.ssh(lab, lab["controller_host"],
                       "%s show %s %s --json" % (NM, server_id, volume_id))
    assert out.returncode == 0, out.stderr
    bdm = json.loads(out.stdout)
    api = labcloud.nova_attachments(conn, server_id)[volume_id]
    assert bdm["uuid"] == api["bdm_id"] and bdm["attachment_id"] == api["attachment_id"]
    assert bdm["instance_uuid"] == server_id and bdm["volume_id"] == volume_id
    assert isinstance(bdm["connection_info"], str)  # a JSON string, not an object
    missing = labcloud.ssh(lab, lab["controller_host"],
                           "%s show %s %s --json" % (NM, server_id, info["server_id"]))
    assert missing.returncode == 3  # volume not attached to that instance


def test_get_connector_names_the_host_it_ran_on(lab):
    hv = _connector(lab, lab["compute_host"])
    assert hv["host"] == lab["compute_host"]
    assert hv["initiator"].startswith("iqn.")
    assert _connector(lab, lab["controller_host"])["host"] == lab["controller_host"]


def test_refresh_failures_surface_as_documented_exit_codes(lab, conn, make_server):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    ctl = lab["controller_host"]
    good = _connector(lab, lab["compute_host"])
    _upload(lab, ctl, "/tmp/t-good.json", json.dumps(good))
    refresh = "%s refresh %s %s " % (NM, server_id, volume_id)

    running = labcloud.ssh(lab, ctl, refresh + "/tmp/t-good.json")
    assert running.returncode == 5, running.stdout + running.stderr  # must be stopped
    assert "must be stopped" in running.stdout + running.stderr

    conn.compute.stop_server(server_id)
    labcloud.server_status(conn, server_id, "SHUTOFF")

    _upload(lab, ctl, "/tmp/t-wrong.json", json.dumps(_connector(lab, ctl)))
    wrong = labcloud.ssh(lab, ctl, refresh + "/tmp/t-wrong.json")
    assert wrong.returncode == 7, wrong.stdout + wrong.stderr
    assert "does not match the instance host" in wrong.stdout + wrong.stderr

    no_initiator = {k: v for k, v in good.items() if k != "initiator"}
    _upload(lab, ctl, "/tmp/t-noinit.json", json.dumps(no_initiator))
    noinit = labcloud.ssh(lab, ctl, refresh + "/tmp/t-noinit.json", timeout=120)
    assert noinit.returncode == 2, noinit.stdout + noinit.stderr
    assert "initiator" in noinit.stdout + noinit.stderr

    ok = labcloud.ssh(lab, ctl, refresh + "/tmp/t-good.json", timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    after = labcloud.nova_attachments(conn, server_id)[volume_id]
    vol = conn.block_storage.get_volume(volume_id)
    assert vol.status == "in-use"
    assert [a["attachment_id"] for a in vol.attachments] == [after["attachment_id"]]
    labcloud.ssh(lab, ctl, "rm -f /tmp/t-good.json /tmp/t-wrong.json /tmp/t-noinit.json")
