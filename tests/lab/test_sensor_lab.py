"""The dangling_volume.detach_failed sensor (the real class, given the recording sensor service
of tools/pylib/testsupport/sensor_service.py) against the lab's real RabbitMQ, fed by the lab's
real Nova: break 2a (cinder-volume down during the detach) and break 2b (the guest refuses the
detach) each give one dispatch, with the server, volume and compute host of the broken
attachment. Both breaks finish in seconds (the lab's Cinder has rpc_response_timeout = 5, the
lab's driver refuses at once), so the sensor sees the legacy and versioned signals long before
its detach window. The sensor's queue is its own (deleted at the end) and the lab is shared:
other servers' failures are ignored here. Each dispatch then goes the rest of the automatic
path: the rule's action parameters are rendered from it by st2's own code
(tools/pylib/testsupport/rules.py), and the remedy runs with them through Orquesta
(tools/st2-run) in automatic mode, approved, and heals the break."""
import json
import os
import subprocess
import threading
import time
import uuid

import kombu
import pytest

from testsupport.lab import REPO, run_lab_tool
from testsupport.labchecks import healed

from testsupport import sensor_service as recording  # not st2tests: see its header
from testsupport.rules import render_rule
import nova_detach_sensor


def _rule_runs_the_remedy(lab, payload, tmp_path):
    """What st2 does with the dispatch: the rule renders the remedy's parameters from the
    trigger, the remedy runs (automatic mode; the approval answered yes)."""
    _, params = render_rule(payload)
    assert params["mode"] == "automatic"
    argv = ["%s=%s" % (k, json.dumps(v) if isinstance(v, dict) else v)
            for k, v in params.items()]
    proc = subprocess.run(
        [os.path.join(REPO, "tools", "st2-run"), "dangling_volume.remedy"] + argv +
        ["--config", os.path.join(lab["lab_dir"], "dangling_volume.yaml"), "--json",
         "--answer", "approve", "--datastore", str(tmp_path / "remedy-kv.json")],
        capture_output=True, text=True, timeout=900)
    execution = json.loads(proc.stdout)
    assert execution["status"] == "succeeded", json.dumps(execution, indent=1)[-3000:]
    report = execution["result"]["output"]["report"]
    assert report["mode"] == "automatic" and report["approval"]["answer"] == "approved"
    assert report["triggered_by"]["message_id"] == payload["message_id"]
    return report


@pytest.fixture
def sensor(lab, tmp_path):
    queue = "dangling_volume.labtest-%s" % uuid.uuid4().hex[:8]
    service = recording.detach_failed_service(datastore_path=tmp_path / "kv.json")
    instance = nova_detach_sensor.NovaDetachSensor(service, {"notifications": {
        "transport_url": lab["amqp_url"], "exchange": lab.get("nova_exchange", "nova"),
        "queue": queue, "connect_timeout": 5}})
    instance.setup()
    thread = threading.Thread(target=instance.run, name="sensor-run", daemon=True)
    thread.start()
    try:
        assert instance.consumer.connected.wait(30), "the sensor did not connect to the lab"
        yield service
    finally:
        instance.cleanup()
        thread.join(5)
        with kombu.Connection(lab["amqp_url"], connect_timeout=5) as conn:
            conn.default_channel.queue_delete(queue)  # a durable queue: never leave it behind
    assert not thread.is_alive(), "run() did not return after cleanup()"
    assert service.invalid == []


def _dispatches_for(service, volume_id, timeout):
    def mine(payloads):
        return [p for p in payloads if p["volume_id"] == volume_id]
    found = mine(service.wait_for(lambda payloads: mine(payloads), timeout))
    time.sleep(3)  # a second dispatch (a later signal of the same failure) would show by now
    return mine(service.payloads(recording.TRIGGER_REF)), found


def _break(kind, server_id, volume_id):
    out = run_lab_tool("break", kind, server_id, volume_id)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("kind, reason_has, expected_class", [
    ("backend-down", ("ClientException",), "stuck_detaching"),                    # break 2a
    ("guest-refuses", ("DeviceDetachFailed", "Device detach failed"), "detach_refused"),  # 2b
])
def test_a_failed_detach_dispatches_once_and_the_rule_heals_it(
        lab, conn, make_server, sensor, tmp_path, kind, reason_has, expected_class):
    info = make_server()
    server_id, volume_id = info["server_id"], info["volume_ids"][0]
    try:
        _break(kind, server_id, volume_id)
        payloads, first = _dispatches_for(sensor, volume_id, 60)
        assert first, "no dispatch for volume %s" % volume_id
        assert len(payloads) == 1, payloads
        [payload] = payloads
        assert (payload["server_id"], payload["volume_id"], payload["host"]) == (
            server_id, volume_id, lab["compute_host"])
        assert payload["source"] in ("legacy", "versioned")
        assert any(text in payload["reason"] for text in reason_has), payload["reason"]
        report = _rule_runs_the_remedy(lab, payload, tmp_path)
        assert report["class"] == expected_class
        healed(lab, conn, info, volume_id)
    finally:
        if kind == "guest-refuses":
            run_lab_tool("break", "heal-guest", volume_id)
