"""Each way the lab breaks an attachment, observed as a real operator would see it, and the
seed runbook (lab/runbook) healing breaks 1, 2a and 2b."""
import json

import pytest

import labcloud
from testsupport.lab import run_lab_tool
from notifications import NotificationCapture

NOT_IN_USE = "Volume status must be 'in-use' and attach_status must be 'attached' to detach"


def _break(kind, *args):
    out = run_lab_tool("break", kind, *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _views(server_id, volume_id):
    out = run_lab_tool("cloud", "show", server_id, volume_id)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _heal_with_runbook(server_id, volume_id):
    out = run_lab_tool("runbook", server_id, volume_id)
    assert out.returncode == 0, out.stdout + out.stderr
    views = _views(server_id, volume_id)
    assert views["nova"] is None
    assert views["cinder"] == {"status": "available", "attachments": []}
    assert views["hypervisor"] == {"live": [], "config": []}


def _failure_signals(capture, server_id, volume_id):
    """The three notifications of a failed detach, tied together by the request id."""
    def complete(msgs):
        return (capture.of("instance.volume_detach.start", server_id) and
                capture.of("detach_volume", server_id) and capture.of("compute.exception"))
    capture.wait_for(complete, 30)
    start = capture.of("instance.volume_detach.start", server_id)
    legacy = capture.of("detach_volume", server_id)
    assert start and legacy, [m.get("event_type") for m in capture.messages]
    request_id = start[-1]["_context_request_id"]
    exc = [m for m in capture.of("compute.exception")
           if m["_context_request_id"] == request_id]
    assert exc, "no compute.exception with the request id of the detach"
    assert legacy[-1]["_context_request_id"] == request_id
    assert legacy[-1]["priority"] == "ERROR" and legacy[-1]["_routing_key"] == "notifications.error"
    assert legacy[-1]["payload"]["args"]["volume_id"] == volume_id
    assert start[-1]["payload"]["nova_object.data"]["volume_id"] == volume_id
    assert exc[-1]["_routing_key"] == "versioned_notifications.error"
    assert not capture.of("instance.volume_detach.end", server_id)
    return legacy[-1], exc[-1]


def test_break_1_cinder_reset_then_runbook_heals(lab, conn, make_server):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    with NotificationCapture(lab["amqp_url"]) as capture:
        _break("cinder-reset", server_id, volume_id)
        views = _views(server_id, volume_id)
        assert views["nova"]["device"] == "/dev/sdb"  # Nova still lists it
        assert views["cinder"] == {"status": "available", "attachments": []}
        with pytest.raises(Exception) as err:  # what `openstack server remove volume` hits
            conn.compute.delete_volume_attachment(server_id, volume_id, ignore_missing=False)
        assert getattr(err.value, "status_code", None) == 400
        assert NOT_IN_USE in str(err.value)
        capture.drain(3)
        assert not capture.of("instance.volume_detach.start", server_id)  # raised in nova-api
    _heal_with_runbook(server_id, volume_id)


def test_break_2a_backend_down_then_runbook_after_reset(lab, conn, make_server):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    with NotificationCapture(lab["amqp_url"]) as capture:
        _break("backend-down", server_id, volume_id)
        legacy, exc = _failure_signals(capture, server_id, volume_id)
    assert legacy["payload"]["exception"] == "ClientException()"
    assert exc["payload"]["nova_object.data"]["module_name"] == "cinderclient.client"
    assert "(HTTP 500)" in exc["payload"]["nova_object.data"]["exception_message"]
    views = _views(server_id, volume_id)
    assert views["cinder"]["status"] == "detaching"
    assert [a["status"] for a in views["cinder"]["attachments"]] == ["attached"]
    assert views["nova"]["attachment_id"] == views["cinder"]["attachments"][0]["id"]
    # The runbook as written fails here: Cinder will not reserve a volume in `detaching`.
    out = run_lab_tool("runbook", server_id, volume_id)
    assert out.returncode == 102, out.stdout + out.stderr
    assert "current status is detaching" in out.stdout + out.stderr
    # What the operator must do first: back to in-use while its attachment still exists.
    conn.block_storage.reset_volume_status(volume_id, status="in-use")
    _heal_with_runbook(server_id, volume_id)


def test_break_2b_guest_refuses_then_runbook_heals(lab, conn, make_server):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    try:
        with NotificationCapture(lab["amqp_url"]) as capture:
            _break("guest-refuses", server_id, volume_id)
            legacy, exc = _failure_signals(capture, server_id, volume_id)
        # Observed: the legacy payload's exception arrives as a string (the repr of a dict with
        # kwargs, message, class), not as an object; a sensor must accept both.
        assert "Device detach failed for sdb" in str(legacy["payload"]["exception"])
        assert exc["payload"]["nova_object.data"]["exception"] == "DeviceDetachFailed"
        views = _views(server_id, volume_id)
        assert views["cinder"]["status"] == "in-use"  # rolled back
        assert views["hypervisor"] == {"live": ["sdb"], "config": []}
        act = labcloud.last_action(conn, server_id, "detach_volume")
        assert [e["result"] for e in act.events] == ["Error"]
        # The guest still refuses while running; a stopped server lets the detach through.
        _heal_with_runbook(server_id, volume_id)
    finally:
        run_lab_tool("break", "heal-guest", volume_id)


def test_break_4_disk_gone_from_hypervisor_only(lab, conn, make_server):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    _break("hypervisor-only", server_id, volume_id)
    views = _views(server_id, volume_id)
    assert views["hypervisor"] == {"live": [], "config": []}
    assert views["nova"]["device"] == "/dev/sdb"
    assert views["cinder"]["status"] == "in-use"
    # A plain API detach then succeeds: the driver treats a missing disk as detached.
    conn.compute.delete_volume_attachment(server_id, volume_id, ignore_missing=False)
    labcloud.volume_status(conn, volume_id, "available")


def test_break_5_orphan_attachment_to_a_deleted_server(lab, conn, make_server):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    _break("orphan", server_id, volume_id)
    assert conn.compute.find_server(server_id) is None
    atts = list(conn.block_storage.attachments(volume_id=volume_id))
    assert [a.instance for a in atts] == [server_id]
    assert conn.block_storage.get_volume(volume_id).status == "in-use"
