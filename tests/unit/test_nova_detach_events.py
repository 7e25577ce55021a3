"""sensors/nova_detach_events.py and sensors/detach_tracker.py: decoding, classifying and
correlating what Nova emits around a volume detach. The fixtures are built here from the
documented wire format (docs/nova-notifications.md, "What a failed detach emits" and "Wire
format on RabbitMQ", and what our lab's Nova 34 really sent); where the optional
../shared/reference/notification-samples exists (beside the repo, never shipped), every sample
there runs too.

The modules are imported from sensors/ alone, as the sensor process imports them
(docs/stackstorm.md, "What a sensor process sees");
test_imports_with_sensors_only_and_no_site_packages proves they need nothing else."""
import copy
import glob
import itertools
import json
import os
import subprocess
import sys
import time

import jsonschema
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SENSORS = os.path.join(REPO, "sensors")

import detach_tracker as dt
import nova_detach_events as nde
from testsupport.nova_wire import set_path

SAMPLES = os.path.join(REPO, "..", "shared", "reference", "notification-samples")

SERVER, SERVER2 = "5f0b6c1e-3d4a-4b8e-9c2f-7a1d0e6b3c55", "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
VOLUME, VOLUME2 = "c0ffee00-1234-4abc-8def-0123456789ab", "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6"
ATTACHMENT = "e7d6c5b4-a392-4817-b6f5-e4d3c2b1a090"
HOST = "lab-compute"
REQ, REQ2 = "req-8d1f6f0e-2b7c-4f1a-9e3d-5c4b3a291807", "req-1b2c3d4e-5f60-4718-9a0b-c1d2e3f40516"
HTTP_500 = ("The server has either erred or is incapable of performing the requested operation. "
            "(HTTP 500) (Request-ID: req-0f1e2d3c-4b5a-4697-8877-665544332211)")
REFUSED = "Device detach failed for sdb: the guest did not release the device"
_seq = itertools.count(1)


# ---------------------------------------------------------------- fixtures: the wire format

def message(event_type, payload, publisher, priority="INFO", request_id=REQ):
    """The inner oslo.messaging notification dict (notifier._notify + amqpdriver context keys)."""
    n = next(_seq)
    return {
        "message_id": "3e1f5c2a-7b4d-4e6f-8a9b-%012d" % n,
        "publisher_id": publisher, "event_type": event_type, "priority": priority,
        "payload": payload,
        "timestamp": "2026-11-24 18:%02d:%02d.%06d" % (n // 60 % 60, n % 60, n % 1000000),
        "_unique_id": "%032x" % n,
        "_context_request_id": request_id, "_context_global_request_id": None,
        "_context_user_id": "b4f1e2d3c4b5a6978877665544332211",
        "_context_project_id": "9a8b7c6d5e4f30211203f4e5d6c7b8a9", "_context_is_admin": True,
        "_context_read_deleted": "no", "_context_auth_token": None,
        "_context_roles": ["admin", "member", "reader"], "_context_show_deleted": False,
    }


def v2(msg):
    """messagingv2: the message as a JSON string inside the oslo envelope, as AMQP body bytes."""
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(msg)}).encode("utf-8")


def v1(msg):
    """Driver `messaging` (1.0): the message itself."""
    return json.dumps(msg).encode("utf-8")


ENVELOPES = pytest.mark.parametrize("wrap", [v2, v1], ids=["messagingv2", "messaging"])


def versioned(name, version, data):
    return {"nova_object.name": name, "nova_object.namespace": "nova",
            "nova_object.version": version, "nova_object.data": data}


def volume_payload(server, volume, host):
    return versioned("InstanceActionVolumePayload", "1.7", {
        "uuid": server, "host": host, "node": host, "volume_id": volume, "state": "active",
        "task_state": None, "power_state": "running", "locked": False, "locked_reason": None,
        "fault": None, "request_id": REQ, "tenant_id": "9a8b7c6d5e4f30211203f4e5d6c7b8a9",
        "display_name": "vm-1", "block_devices": []})


def detach_start(server=SERVER, volume=VOLUME, host=HOST, request_id=REQ):
    return message(nde.START, volume_payload(server, volume, host), "nova-compute:" + host,
                   request_id=request_id)


def detach_end(server=SERVER, volume=VOLUME, host=HOST, request_id=REQ):
    return message(nde.END, volume_payload(server, volume, host), "nova-compute:" + host,
                   request_id=request_id)


def legacy_detached(server=SERVER, volume=VOLUME, host=HOST, request_id=REQ):
    """The legacy success notification (INFO); the pack ignores it."""
    return message("compute.instance.volume.detach",
                   {"instance_id": server, "volume_id": volume, "host": host},
                   "compute." + host, request_id=request_id)


def instance_primitive(server, host):
    """args.instance as on the lab: the Instance flattened by to_primitive (63 keys there)."""
    return {"uuid": server, "host": host, "node": host, "vm_state": "active",
            "task_state": None, "power_state": 1, "display_name": "vm-1",
            "project_id": "9a8b7c6d5e4f30211203f4e5d6c7b8a9", "locked": False}


def legacy_error(exception, server=SERVER, volume=VOLUME, host=HOST, request_id=REQ,
                 instance=None):
    return message(nde.LEGACY_ERROR, {
        "exception": exception,
        "args": {"instance": instance if instance is not None else
                 instance_primitive(server, host),
                 "volume_id": volume, "attachment_id": ATTACHMENT}},
        "compute." + host, priority="ERROR", request_id=request_id)


def compute_exception(name, module, function, text, host=HOST, request_id=REQ):
    return message(nde.COMPUTE_EXCEPTION, versioned("ExceptionPayload", "1.1", {
        "exception": name, "exception_message": text, "function_name": function,
        "module_name": module,
        "traceback": "Traceback (most recent call last):\n  File \"nova/compute/manager.py\""}),
        "nova-compute:" + host, priority="ERROR", request_id=request_id)


# What a 2b legacy payload.exception looked like on the lab: the repr of the exception's dict.
REFUSED_REPR = ("{'kwargs': {'device': 'sdb', 'reason': 'the guest did not release the device', "
                "'code': 500}, 'message': '%s'}" % REFUSED)


def break_2a(host=HOST, request_id=REQ):
    """cinder-volume down during detach, in Nova's emit order: the .start, the legacy
    detach_volume ERROR ("ClientException()"), then compute.exception from cinderclient."""
    return [detach_start(host=host, request_id=request_id),
            legacy_error("ClientException()", host=host, request_id=request_id),
            compute_exception("ClientException", "cinderclient.client", "request", HTTP_500,
                              host=host, request_id=request_id)]


def break_2b(request_id=REQ):
    """The guest refuses the detach: DeviceDetachFailed, in both signals."""
    return [detach_start(request_id=request_id),
            legacy_error(REFUSED_REPR, request_id=request_id),
            compute_exception("DeviceDetachFailed", "nova.virt.labdriver", "detach_volume",
                              REFUSED, request_id=request_id)]


def successful_detach(request_id=REQ):
    return [detach_start(request_id=request_id), legacy_detached(request_id=request_id),
            detach_end(request_id=request_id)]


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def tracker(window_s=dt.DEFAULT_WINDOW_S, **kwargs):
    clock = Clock()
    return dt.DetachTracker(window_s, clock=clock, **kwargs), clock


def _draft4(schema):
    """Draft-3 per-property `required: true` -> a draft-4 `required` list."""
    out = {k: v for k, v in schema.items() if k != "required"}
    props = schema.get("properties", {})
    out["properties"] = {k: {x: y for x, y in v.items() if x != "required"}
                         for k, v in props.items()}
    out["required"] = sorted(k for k, v in props.items() if v.get("required") is True)
    return out


VALIDATORS = [jsonschema.Draft3Validator(nde.TRIGGER_PAYLOAD_SCHEMA),  # st2's own style
              jsonschema.Draft4Validator(_draft4(nde.TRIGGER_PAYLOAD_SCHEMA))]


def check_payload(failure):
    """Every dispatched payload: exactly the eight keys, strings, valid for the trigger schema."""
    payload = nde.payload_for(failure)
    assert sorted(payload) == sorted(name for name, _ in nde.PAYLOAD_FIELDS) == sorted(
        ["server_id", "volume_id", "host", "reason", "event_type", "message_id", "timestamp",
         "source"])
    assert all(isinstance(v, str) for v in payload.values())
    for validator in VALIDATORS:
        assert list(validator.iter_errors(payload)) == []
    return payload


def empty(track):
    return not any(track.sizes().values())


def run(messages, wrap=v2, track=None, gap_s=0.05):
    """Bodies through decode -> classify -> feed, as the sensor does; returns the payloads."""
    track = tracker()[0] if track is None else track
    payloads = []
    for msg in messages:
        track.clock.advance(gap_s)
        event = nde.classify(nde.decode(wrap(msg)))
        payloads += [check_payload(f) for f in track.feed(event)]
    return payloads


# ---------------------------------------------------------------- decode

@ENVELOPES
def test_decode_returns_the_inner_message_from_bytes_str_and_dict(wrap):
    msg = detach_start()
    body = wrap(msg)
    assert nde.decode(body) == msg
    assert nde.decode(bytearray(body)) == msg
    assert nde.decode(memoryview(body)) == msg
    assert nde.decode(body.decode("utf-8")) == msg
    assert nde.decode(json.loads(body.decode("utf-8"))) == msg  # kombu already parsed the JSON


def test_decode_accepts_non_ascii_utf8():
    msg = detach_start()
    msg["payload"]["nova_object.data"]["display_name"] = "vm-\u00e9\u4e2d"
    assert nde.decode(json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(
        msg, ensure_ascii=False)}, ensure_ascii=False).encode("utf-8")) == msg


@pytest.mark.parametrize("body, reason", [
    (b"not json at all", "body is not JSON"),
    (b"", "body is not JSON"),
    (b"\xff\xfe\x00{\"event_type\": 1}", "body is not UTF-8"),
    ("caf\u00e9".encode("latin-1"), "body is not UTF-8"),
    (b"[1, 2, 3]", "body is JSON array, not an object"),
    (b"\"a string\"", "body is JSON string, not an object"),
    (b"null", "body is JSON null, not an object"),
    (b"[" * 100000 + b"]" * 100000, "body is not JSON"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": "{\"broken"}).encode(),
     "oslo.message is not JSON"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": "[1]"}).encode(),
     "oslo.message is JSON array, not an object"),
    (json.dumps({"oslo.version": "2.0", "oslo.message": 42}).encode(),
     "oslo.message is of type int, not bytes, str or dict"),
    (json.dumps({"oslo.version": "3.0", "oslo.message": "{}"}).encode(),
     "unsupported oslo.version '3.0'"),
    (42, "body is of type int, not bytes, str or dict"),
    (None, "body is of type NoneType, not bytes, str or dict"),
    (["event_type"], "body is of type list, not bytes, str or dict"),
])
def test_decode_raises_bad_message_with_a_short_reason(body, reason):
    with pytest.raises(nde.BadMessage) as caught:
        nde.decode(body)
    assert str(caught.value) == reason


def test_bad_message_is_a_value_error_and_nothing_else_escapes():
    assert issubclass(nde.BadMessage, ValueError)
    for body in (b"\x00", b"{", b"{}garbage", b"\xc3\x28", object(), 1.5, b"NaN", b"1e999",
                 json.dumps({"oslo.version": None, "oslo.message": "x"})):
        with pytest.raises(nde.BadMessage):  # any other exception fails this test
            nde.decode(body)


# ---------------------------------------------------------------- classify

@ENVELOPES
def test_classify_detach_start_and_end(wrap):
    start = nde.classify(nde.decode(wrap(detach_start())))
    assert isinstance(start, nde.DetachStarted)
    assert (start.server_id, start.volume_id, start.host, start.request_id, start.event_type) == (
        SERVER, VOLUME, HOST, REQ, nde.START)
    assert start.timestamp.startswith("2026-11-24 18:") and start.message_id
    end = nde.classify(nde.decode(wrap(detach_end())))
    assert isinstance(end, nde.DetachEnded) and not isinstance(end, nde.DetachStarted)
    assert (end.server_id, end.volume_id, end.event_type) == (SERVER, VOLUME, nde.END)
    assert start != end  # same fields, different events


def test_classify_host_falls_back_to_the_publisher_and_request_id_to_the_payload():
    msg = detach_start(host="cmp-7.example.org")
    del msg["payload"]["nova_object.data"]["host"]
    del msg["_context_request_id"]
    start = nde.classify(msg)
    assert (start.host, start.request_id) == ("cmp-7.example.org", REQ)
    legacy = legacy_error("ClientException()", host="cmp-7.example.org", instance={"x": 1})
    assert nde.classify(legacy).host == "cmp-7.example.org"  # from "compute.cmp-7.example.org"


@pytest.mark.parametrize("exception, reason", [
    ("ClientException()", "ClientException"),
    (REFUSED_REPR, "DeviceDetachFailed: " + REFUSED),
    ({"class": "DeviceDetachFailed", "message": REFUSED,
      "kwargs": {"device": "sdb", "reason": "the guest did not release the device", "code": 500}},
     "DeviceDetachFailed: " + REFUSED),
    ({"message": REFUSED, "kwargs": {"code": 500}}, "DeviceDetachFailed: " + REFUSED),
    ("{'class': 'VolumeNotFound', 'message': 'Volume x could not be found.'}",
     "VolumeNotFound: Volume x could not be found."),
    ("{'message': \"it's gone\"}", "it's gone"),
    ("DiskNotFound('No disk at sdb')", "DiskNotFound: No disk at sdb"),
    ("something odd happened", "something odd happened"),
    (None, "detach_volume failed (no exception details)"),
    ({"_comment": "placeholder"}, "detach_volume failed (no exception details)"),
])
def test_classify_legacy_detach_error_reason(exception, reason):
    event = nde.classify(legacy_error(exception))
    assert isinstance(event, nde.LegacyDetachError)
    assert (event.server_id, event.volume_id, event.host, event.request_id) == (
        SERVER, VOLUME, HOST, REQ)
    assert event.reason == reason


def test_classify_legacy_instance_as_nova_object_primitive_or_missing():
    wrapped = versioned("Instance", "2.8", instance_primitive(SERVER2, "other-host"))
    event = nde.classify(legacy_error("ClientException()", instance=wrapped))
    assert (event.server_id, event.host) == (SERVER2, "other-host")
    bare = legacy_error("ClientException()")
    del bare["payload"]["args"]["instance"]
    event = nde.classify(bare)
    assert (event.server_id, event.volume_id, event.host) == (None, VOLUME, HOST)


def test_classify_compute_exception():
    event = nde.classify(break_2a()[2])
    assert isinstance(event, nde.ComputeException)
    assert (event.request_id, event.host, event.exception, event.function_name,
            event.module_name) == (REQ, HOST, "ClientException", "request", "cinderclient.client")
    assert event.reason == "cinderclient ClientException (HTTP 500)"
    assert nde.classify(break_2b()[2]).reason == "DeviceDetachFailed: " + REFUSED
    long = compute_exception("DeviceDetachFailed", "nova.virt.libvirt.driver", "_detach",
                             "Device detach failed for vdb:\n  " + "x" * 1000)
    reason = nde.classify(long).reason
    assert len(reason) == nde.MAX_REASON and reason.endswith("...") and "\n" not in reason


@pytest.mark.parametrize("msg", [
    message("instance.volume_attach.start", volume_payload(SERVER, VOLUME, HOST), "nova-compute:h"),
    message("instance.volume_attach.error", volume_payload(SERVER, VOLUME, HOST),
            "nova-compute:h", priority="ERROR"),
    message("instance.update", versioned("InstanceUpdatePayload", "2.0", {"uuid": SERVER}),
            "nova-compute:h"),
    message("volume.detach.end", {"volume_id": VOLUME, "status": "available"}, "volume.h"),
    legacy_detached(),
    message("detach_volume", {"exception": "x", "args": {"volume_id": VOLUME}}, "compute.h",
            priority="INFO"),
    message("something.new", {}, "x:y"),
], ids=["attach.start", "attach.error", "instance.update", "cinder", "legacy success",
        "detach_volume INFO", "unknown"])
def test_classify_ignores_irrelevant_notifications(msg):
    assert nde.classify(msg) is None


def _paths(node, prefix=()):
    """Every key path into a message (dicts only), outermost first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))


MALFORMED_VALUES = [None, 0, -1.5, True, "", "   ", "x" * 5000, [], [1, "a"], {}, {"a": None}]
VALID = {"start": detach_start(), "end": detach_end(), "legacy": break_2a()[1],
         "legacy-2b": break_2b()[1], "exception": break_2a()[2]}


@pytest.mark.parametrize("name", sorted(VALID))
def test_classify_never_raises_on_missing_or_mistyped_fields(name):
    valid = VALID[name]
    expected = type(nde.classify(valid))
    checked = 0
    for path in _paths(valid):
        for value in MALFORMED_VALUES + ["delete"]:
            msg = copy.deepcopy(valid)
            parent = msg
            for key in path[:-1]:
                parent = parent[key]
            if value == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            event = nde.classify(msg)  # must not raise
            assert event is None or isinstance(event, expected), (path, value)
            checked += 1
    assert checked > 100
    for junk in (None, [], "detach_volume", 42, {"event_type": None}, {"event_type": ["x"]},
                 {"event_type": nde.START}, {"event_type": nde.LEGACY_ERROR, "payload": []}):
        assert nde.classify(junk) is None


def test_start_without_server_or_volume_is_none():
    msg = detach_start()
    del msg["payload"]["nova_object.data"]["volume_id"]
    assert nde.classify(msg) is None
    msg = detach_start()
    msg["payload"] = {"$ref": "common_payloads/InstanceActionVolumePayload.json#"}
    assert nde.classify(msg) is None


# ---------------------------------------------------------------- correlation

@ENVELOPES
def test_break_2a_legacy_and_versioned_make_one_failure(wrap):
    track, clock = tracker()
    messages = break_2a()
    legacy = messages[1]  # Nova sends the legacy notification before the versioned one
    assert run(messages, wrap, track) == [{
        "server_id": SERVER, "volume_id": VOLUME, "host": HOST, "reason": "ClientException",
        "event_type": "detach_volume", "message_id": legacy["message_id"],
        "timestamp": legacy["timestamp"], "source": "legacy"}]
    clock.advance(3600)
    assert track.expire() == []
    assert empty(track)


@ENVELOPES
def test_break_2a_versioned_only_names_the_cinder_error(wrap):
    start, _, exception = break_2a()
    payloads = run([start, exception], wrap)
    assert [(p["server_id"], p["volume_id"], p["host"], p["source"], p["event_type"], p["reason"],
             p["message_id"], p["timestamp"]) for p in payloads] == [
        (SERVER, VOLUME, HOST, "versioned", "compute.exception",
         "cinderclient ClientException (HTTP 500)", exception["message_id"],
         exception["timestamp"])]


@ENVELOPES
def test_break_2b_device_detach_failed(wrap):
    start, legacy, exception = break_2b()
    payloads = run([start, legacy, exception], wrap)
    assert len(payloads) == 1
    assert payloads[0]["reason"] == "DeviceDetachFailed: " + REFUSED
    assert (payloads[0]["source"], payloads[0]["message_id"], payloads[0]["timestamp"]) == (
        "legacy", legacy["message_id"], legacy["timestamp"])
    versioned_first = run([start, exception, legacy], wrap)
    assert [(p["source"], p["reason"]) for p in versioned_first] == [
        ("versioned", "DeviceDetachFailed: " + REFUSED)]


@ENVELOPES
def test_legacy_only_cloud_fails_at_once(wrap):
    _, legacy, _ = break_2a()
    payloads = run([legacy], wrap)
    assert [(p["server_id"], p["volume_id"], p["host"], p["source"]) for p in payloads] == [
        (SERVER, VOLUME, HOST, "legacy")]


@ENVELOPES
def test_successful_detach_is_no_failure(wrap):
    track, clock = tracker()
    assert run(successful_detach(), wrap, track) == []
    clock.advance(dt.DEFAULT_WINDOW_S * 10)
    assert track.expire() == [] and empty(track)


def test_start_without_end_times_out_by_arrival_not_by_timestamp():
    track, clock = tracker(window_s=180)
    start = detach_start()
    start["timestamp"] = "2001-01-01 00:00:00.000000"  # ancient: must not matter
    assert track.feed(nde.classify(start)) == []
    clock.advance(179.9)
    assert track.expire() == []
    clock.advance(0.2)
    failures = track.expire()
    assert [check_payload(f) for f in failures] == [{
        "server_id": SERVER, "volume_id": VOLUME, "host": HOST,
        "reason": "no instance.volume_detach.end within 180 s",
        "event_type": "instance.volume_detach.start", "message_id": start["message_id"],
        "timestamp": "2001-01-01 00:00:00.000000", "source": "timeout"}]
    assert track.expire() == []
    assert track.sizes() == {"starts": 0, "signals": 0, "done": 1}


def test_late_legacy_error_after_the_timeout_is_not_a_second_failure():
    """cinder-volume down at Nova's default RPC timeout: the error comes ~5 min after the start."""
    track, clock = tracker()
    start, legacy, exception = break_2a()
    track.feed(nde.classify(start))
    clock.advance(dt.DEFAULT_WINDOW_S + 1)
    assert [f.source for f in track.expire()] == ["timeout"]
    clock.advance(120)
    assert track.feed(nde.classify(legacy)) == []
    assert track.feed(nde.classify(exception)) == []
    clock.advance(dt.DEFAULT_REMEMBER_S + 1)
    track.expire()
    assert empty(track)


def test_duplicate_signals_and_redelivery_make_one_failure():
    track, _ = tracker()
    start, legacy, exception = break_2a()
    payloads = run([start, start, exception, legacy, exception, legacy, start], track=track)
    assert [p["source"] for p in payloads] == ["versioned"]
    assert track.sizes() == {"starts": 0, "signals": 0, "done": 1}


def test_exception_before_its_start_is_tied_when_the_start_arrives():
    track, clock = tracker()
    start, _, exception = break_2a()
    assert track.feed(nde.classify(exception)) == []
    assert track.sizes()["signals"] == 1
    clock.advance(2.0)
    failures = track.feed(nde.classify(start))
    assert [(f.server_id, f.volume_id, f.source, f.message_id) for f in failures] == [
        (SERVER, VOLUME, "versioned", exception["message_id"])]
    check_payload(failures[0])
    clock.advance(dt.DEFAULT_WINDOW_S + 1)
    assert track.expire() == []


def test_legacy_after_an_unmatched_exception_supersedes_it():
    track, clock = tracker()
    _, legacy, exception = break_2a()
    run([exception, legacy], track=track)  # no .start at all (lost before the binding)
    assert track.sizes() == {"starts": 0, "signals": 0, "done": 1}
    clock.advance(dt.DEFAULT_WINDOW_S + 1)
    assert track.expire() == [] and track.unmatched == 0


def test_exception_older_than_the_window_is_not_tied_to_a_late_start():
    track, clock = tracker(window_s=30)
    start, _, exception = break_2a()
    track.feed(nde.classify(exception))
    clock.advance(31)
    assert track.feed(nde.classify(start)) == []
    assert track.unmatched == 1
    clock.advance(31)
    assert [f.source for f in track.expire()] == ["timeout"]


def test_legacy_without_server_id_takes_it_from_its_start_in_either_order():
    for order in ("start-first", "legacy-first"):
        track, _ = tracker()
        start = detach_start(host="cmp-2")
        legacy = legacy_error("ClientException()", instance={"_comment": "placeholder"},
                              host="cmp-2")
        msgs = [start, legacy] if order == "start-first" else [legacy, start]
        payloads = run(msgs, track=track)
        assert [(p["server_id"], p["volume_id"], p["host"], p["source"]) for p in payloads] == [
            (SERVER, VOLUME, "cmp-2", "legacy")], order


def test_requests_are_kept_apart():
    track, clock = tracker()
    start, _, exception = break_2a(request_id=REQ)
    payloads = run([start] + successful_detach(request_id=REQ2) + [exception], track=track)
    assert [p["source"] for p in payloads] == ["versioned"]
    other = detach_start(SERVER2, VOLUME2, "cmp-9", request_id=REQ2)
    track.feed(nde.classify(other))
    clock.advance(dt.DEFAULT_WINDOW_S + 1)
    assert [(f.server_id, f.volume_id, f.host) for f in track.expire()] == [
        (SERVER2, VOLUME2, "cmp-9")]


def test_start_and_end_without_request_id_pair_by_server_and_volume():
    track, clock = tracker()
    start, end = detach_start(request_id=None), detach_end(request_id=None)
    for msg in (start, end):
        del msg["payload"]["nova_object.data"]["request_id"]
    run([start, end], track=track)
    clock.advance(dt.DEFAULT_WINDOW_S + 1)
    assert track.expire() == [] and empty(track)


def test_a_flood_of_irrelevant_messages_leaves_the_tracker_empty():
    track, clock = tracker()
    kinds = [
        lambda i: message("instance.update", versioned("InstanceUpdatePayload", "2.0",
                                                       {"uuid": SERVER}), "nova-compute:h"),
        lambda i: message("instance.volume_attach.end", volume_payload(SERVER, VOLUME, HOST),
                          "nova-compute:h", request_id="req-%d" % i),
        lambda i: message("volume.usage", versioned("VolumeUsagePayload", "1.0",
                                                    {"volume_id": VOLUME}), "nova-compute:h"),
        lambda i: legacy_detached(request_id="req-%d" % i),
        lambda i: message("compute.instance.exists", {"instance_id": SERVER}, "compute.h"),
        lambda i: message("aggregate.create.start", {}, "nova-api:h"),
        lambda i: message("x" * 300, None, "?"),
    ]
    dispatched = 0
    for i in range(10000):
        clock.advance(0.001)
        body = (v2 if i % 2 else v1)(kinds[i % len(kinds)](i))
        dispatched += len(track.feed(nde.classify(nde.decode(body))))
    dispatched += len(track.expire())
    assert dispatched == 0 and empty(track)
    assert track.sizes() == {"starts": 0, "signals": 0, "done": 0} and not track.dropped


def vol(i):
    """A canonical volume UUID numbered i (sorts by i)."""
    return "c0ffee00-0000-4000-8000-%012d" % i


def req(kind, i):
    return "req-0000000%d-0000-4000-8000-%012d" % (kind, i)


def test_the_cap_bounds_every_table_and_drops_the_oldest():
    track, clock = tracker(window_s=60, max_pending=100)
    for i in range(150):
        clock.advance(0.01)
        track.feed(nde.classify(detach_start(SERVER, vol(i), request_id=req(1, i))))
    for i in range(10000):  # e.g. nova-api exceptions of other requests
        clock.advance(0.001)
        track.feed(nde.classify(compute_exception("Boom", "nova.api", "f", "x",
                                                  request_id=req(2, i))))
    assert track.sizes() == {"starts": 100, "signals": 100, "done": 0}
    assert track.dropped == {"starts": 50, "signals": 9900}
    for i in range(150):
        track.feed(nde.classify(legacy_error("ClientException()", volume=vol(1000 + i),
                                             request_id=req(3, i))))
    assert track.sizes()["done"] == 100 and track.dropped["done"] == 50
    clock.advance(61)
    expired = track.expire()
    assert sorted(f.volume_id for f in expired) == [vol(i) for i in range(50, 150)]
    assert track.sizes()["starts"] == 0 and track.sizes()["signals"] == 0
    assert track.unmatched == 100


def test_feed_ignores_none_and_foreign_objects_and_the_window_must_be_positive():
    track, _ = tracker()
    assert track.feed(None) == [] and track.feed("x") == [] and empty(track)
    for bad in ({"window_s": 0}, {"window_s": -1}, {"window_s": 10, "max_pending": 0}):
        with pytest.raises(ValueError):
            dt.DetachTracker(**bad)
    assert 160 < dt.DEFAULT_WINDOW_S <= 240  # a little above libvirt's 8 x 20 s
    real = dt.DetachTracker()  # time.monotonic by default
    assert real.window_s == dt.DEFAULT_WINDOW_S and real.expire() == []


# ---------------------------------------------------------------- payload and schema

def test_trigger_payload_schema_is_draft3_style_and_strict_enough():
    schema = nde.TRIGGER_PAYLOAD_SCHEMA
    jsonschema.Draft3Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert sorted(schema["properties"]) == sorted(name for name, _ in nde.PAYLOAD_FIELDS)
    for prop in schema["properties"].values():
        assert prop["type"] == "string" and prop["required"] is True and prop["description"]
    good = check_payload(nde.Failure(SERVER, VOLUME, HOST, "r", "e", "m", "t", "legacy"))
    for validator in VALIDATORS:
        missing = dict(good)
        del missing["host"]
        assert list(validator.iter_errors(missing))
        assert list(validator.iter_errors(dict(good, source="guess")))
        assert list(validator.iter_errors(dict(good, volume_id=None)))


def test_payload_for_empty_fields_are_empty_strings():
    track, clock = tracker()
    start = detach_start()
    del start["payload"]["nova_object.data"]["host"]
    for key in ("publisher_id", "message_id", "_unique_id", "timestamp"):
        del start[key]
    track.feed(nde.classify(start))
    clock.advance(dt.DEFAULT_WINDOW_S + 1)
    payload = check_payload(track.expire()[0])
    assert (payload["host"], payload["message_id"], payload["timestamp"]) == ("", "", "")


# ---------------------------------------------------------------- production import path

def test_imports_with_sensors_only_and_no_site_packages():
    """-S: no site-packages; only sensors/ on the path (PYTHONPATH, from /), as in the
    sensor."""
    code = ("import sys; import nova_detach_events as m; import detach_tracker; "
            "print(sorted(n for n in sys.modules if n.startswith(('dvremedy', 'st2', 'kombu'))))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = SENSORS
    out = subprocess.run([sys.executable, "-S", "-s", "-c", code], capture_output=True,
                         text=True, timeout=60, env=env, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- shared samples

NO_SAMPLES = pytest.mark.skipif(
    not os.path.isdir(SAMPLES),
    reason="../shared/reference/notification-samples is absent (it lives beside the repo, not "
           "in it): the sample tests are skipped")


def sample_files(sub):
    return sorted(glob.glob(os.path.join(SAMPLES, sub, "*.json"))) or ["(absent)"]


def resolve_refs(node, base_dir):
    """Expand `$ref` as the samples README describes: the referenced document (its own refs
    relative to its folder) with the keys beside the `$ref` merged into it recursively."""
    if isinstance(node, list):
        return [resolve_refs(item, base_dir) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" not in node:
        return {key: resolve_refs(value, base_dir) for key, value in node.items()}
    path = os.path.join(base_dir, node["$ref"].split("#")[0])
    with open(path) as f:
        target = resolve_refs(json.load(f), os.path.dirname(path))
    extra = resolve_refs({k: v for k, v in node.items() if k != "$ref"}, base_dir)
    return merge(target, extra)


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = merge(out[key], value) if both else value
    return out


def load_sample(sub, name):
    with open(os.path.join(SAMPLES, sub, name)) as f:
        sample = json.load(f)
    return resolve_refs(sample, os.path.join(SAMPLES, sub)) if sub == "nova" else sample


CONSTRUCTED = {
    "wire-notifications.error-legacy-detach_volume.json": nde.LegacyDetachError,
    "wire-versioned_notifications.error-compute.exception-DeviceDetachFailed.json":
        nde.ComputeException,
    "wire-versioned_notifications.info-instance.volume_detach.start.json": nde.DetachStarted,
}
SAMPLE_SERVER, SAMPLE_VOLUME = ("178b0921-8f85-4257-88b6-2e743b5a975c",
                                "a07f71dc-8151-4e7d-a0cc-cd24a3f11113")


@NO_SAMPLES
@pytest.mark.parametrize("path", sample_files("constructed"), ids=os.path.basename)
def test_constructed_wire_samples(path):
    with open(path) as f:
        sample = json.load(f)
    for body in (sample["body"], json.dumps(sample["body"]).encode("utf-8")):
        event = nde.classify(nde.decode(body))
        expected = CONSTRUCTED.get(os.path.basename(path))
        if expected is None:  # a sample added later: it must at least not break anything
            continue
        assert type(event) is expected, path
        if expected is not nde.ComputeException:
            assert event.volume_id == SAMPLE_VOLUME
        assert event.request_id == "req-5b6c791d-5709-4f36-8fbe-c3e02869e35d"


@NO_SAMPLES
def test_constructed_samples_correlate_into_one_failure():
    messages = []
    for name in CONSTRUCTED:
        messages.append(nde.decode(load_sample("constructed", name)["body"]))
    messages.sort(key=lambda m: m["timestamp"])  # start, compute.exception, legacy
    payloads = run(messages, wrap=lambda m: m)
    assert [(p["server_id"], p["volume_id"], p["host"], p["source"]) for p in payloads] == [
        (SAMPLE_SERVER, SAMPLE_VOLUME, "compute", "versioned")]
    assert payloads[0]["reason"].startswith("DeviceDetachFailed: Device detach failed for vdb")


NOVA_EXPECTED = {
    "instance.volume_detach.start": nde.DetachStarted,
    "instance.volume_detach.end": nde.DetachEnded,
    "compute.exception": nde.ComputeException,
}


def on_the_wire(sample):
    """An upstream sample (event_type, priority, publisher_id, payload) as Nova sends it."""
    return message(sample["event_type"], sample["payload"], sample["publisher_id"],
                   priority=sample["priority"])


@NO_SAMPLES
@pytest.mark.parametrize("path", sample_files("nova"), ids=os.path.basename)
def test_upstream_nova_samples_with_refs_resolved(path):
    """Payloads with `$ref` are resolved (not skipped); also run unresolved, which must give
    None (a bare $ref names no server) or the same class, never an exception."""
    with open(path) as f:
        raw = json.load(f)
    sample = resolve_refs(raw, os.path.dirname(path))
    expected = NOVA_EXPECTED.get(sample["event_type"])
    for wrap in (v2, v1):
        event = nde.classify(nde.decode(wrap(on_the_wire(sample))))
        if expected is None:
            assert event is None
        else:
            assert type(event) is expected
        unresolved = nde.classify(nde.decode(wrap(on_the_wire(raw))))
        assert unresolved is None or type(unresolved) is expected
    if expected in (nde.DetachStarted, nde.DetachEnded):
        assert (event.server_id, event.volume_id, event.host) == (
            SAMPLE_SERVER, SAMPLE_VOLUME, "compute")
    if expected is nde.ComputeException:
        assert (event.host, event.reason) == (
            "fake-mini", "AggregateNameExists: Aggregate versioned_exc_aggregate already exists.")


@NO_SAMPLES
def test_upstream_detach_samples_track_like_the_real_thing():
    track, clock = tracker()
    start, end = (load_sample("nova", name) for name in ("instance-volume_detach-start.json",
                                                         "instance-volume_detach-end.json"))
    assert run([on_the_wire(start), on_the_wire(end)], track=track) == []
    track.feed(nde.classify(nde.decode(v2(on_the_wire(start)))))
    clock.advance(dt.DEFAULT_WINDOW_S + 1)
    assert [(f.server_id, f.source) for f in track.expire()] == [(SAMPLE_SERVER, "timeout")]


# ---------------------------------------------------------------- outside input: bounded parse

def _bait():
    """Exception texts built to make a regex backtrack: unclosed quoted messages full of
    backslashes and escaped quotes, many openings, long runs, up to far past the cap."""
    openers = ["'message': '", "'message': \"", "{'message': '", "\"message\":\"",
               "'class': 'X', 'message': '"]
    bodies = ["\\", "\\a", "\\'", '\\"', "\\\\'", "a", " ", "'message': '"]
    for opener in openers:
        for body in bodies:
            for n in (20, 24, 28, 64, 1000, 5000, 100000):
                yield opener + body * n
                yield (opener + body * 8) * (n // 8 + 1)
    yield "X(" * 50000
    yield "'class': '" + "a" * 100000
    yield "DiskNotFound(" + "\\'" * 50000


def test_the_legacy_exception_text_parses_in_bounded_time():
    """The old message pattern matched a backslash two ways and backtracked exponentially on
    an unclosed quote ('message': '\\a\\a... 24 times: 3.3 s, 26 times: 13 s)."""
    worst, worst_text, count = 0.0, None, 0
    for text in _bait():
        msg = legacy_error(text)
        began = time.perf_counter()
        event = nde.classify(msg)
        took = time.perf_counter() - began
        count += 1
        assert isinstance(event, nde.LegacyDetachError)
        assert len(event.reason) <= nde.MAX_REASON
        if took > worst:
            worst, worst_text = took, text
    print("worst of %d bait texts: %.2f ms (%d chars)" % (count, worst * 1000, len(worst_text)))
    assert worst < 0.05, "%.1f ms on %r" % (worst * 1000, worst_text[:60])


def test_a_quoted_message_with_escapes_still_parses():
    event = nde.classify(legacy_error("{'message': 'it\\'s \\\\ \"gone\"', 'class': 'Gone'}"))
    assert event.reason == "Gone: it's \\\\ \"gone\""


# ---------------------------------------------------------------- outside input: ids and shapes

@pytest.mark.parametrize("bad", [
    "5F0B6C1E-3D4A-4B8E-9C2F-7A1D0E6B3C55",  # upper case: not what oslo's uuidutils makes
    "5f0b6c1e3d4a4b8e9c2f7a1d0e6b3c55", "{5f0b6c1e-3d4a-4b8e-9c2f-7a1d0e6b3c55}",
    "5f0b6c1e-3d4a-4b8e-9c2f-7a1d0e6b3c55\n", " 5f0b6c1e-3d4a-4b8e-9c2f-7a1d0e6b3c55",
    "x" * 300, "{{ 7*7 }}", "../../etc", 12, ["a"], {"a": 1}, True,
])
@pytest.mark.parametrize("where", ["start.server", "start.volume", "legacy.server",
                                   "legacy.volume"])
def test_ids_must_be_canonical_uuids(where, bad):
    if where.startswith("start"):
        msg = detach_start()
        msg["payload"]["nova_object.data"]["uuid" if where.endswith("server") else
                                           "volume_id"] = bad
    else:
        msg = legacy_error("ClientException()")
        if where.endswith("server"):
            msg["payload"]["args"]["instance"]["uuid"] = bad
        else:
            msg["payload"]["args"]["volume_id"] = bad
    assert nde.classify(msg) is None


@pytest.mark.parametrize("bad", [
    "h" * 254, "a" * 64, "-lead", "trail-", "under_score", "two..dots", "sp ace", "é",
    "{{7*7}}", "host;rm", "", 7, ["h"],
])
def test_hosts_must_be_hostname_shaped(bad):
    for msg in (detach_start(), legacy_error("ClientException()")):
        data = (msg["payload"]["nova_object.data"] if "nova_object.data" in msg["payload"]
                else msg["payload"]["args"]["instance"])
        data["host"] = bad
        assert nde.classify(msg) is None, msg["event_type"]
    if isinstance(bad, str):
        msg = compute_exception("X", "nova.x", "f", "t")
        msg["publisher_id"] = "nova-compute:" + bad
        assert nde.classify(msg) is None


@pytest.mark.parametrize("good", ["lab-compute", "compute-1.example.org", "a" * 63,
                                  ".".join(["a" * 63] * 3) + "." + "b" * 61, "c1."])
def test_hostname_shaped_hosts_are_taken(good):
    assert nde.classify(detach_start(host=good)).host == good


@pytest.mark.parametrize("bad", ["req-" + SERVER.upper(), SERVER, "req-x", "req-" + "a" * 300,
                                 "req-%s " % SERVER, 7, ["req-" + SERVER]])
def test_request_ids_are_novas_shape(bad):
    for msg in (detach_start(request_id=bad), legacy_error("X()", request_id=bad),
                compute_exception("X", "nova.x", "f", "t", request_id=bad)):
        assert nde.classify(msg) is None, msg["event_type"]


D = ("payload", "nova_object.data")
SHAPES_NOVA_NEVER_SENDS = [
    ("start priority ERROR", detach_start, ("priority",), "ERROR"),
    ("start priority lower", detach_start, ("priority",), "info"),
    ("start payload not a nova object", detach_start, ("payload", "nova_object.name"),
     "InstanceActionPayload"),
    ("start host a number", detach_start, D + ("host",), 7),
    ("start request_id a dict", detach_start, D + ("request_id",), {"a": 1}),
    ("start publisher not <binary>:<host>", detach_start, ("publisher_id",), "compute"),
    ("start publisher a list", detach_start, ("publisher_id",), ["nova-compute:h"]),
    ("start timestamp a number", detach_start, ("timestamp",), 1700000000),
    ("start timestamp free text", detach_start, ("timestamp",), "yesterday {{ 7*7 }}"),
    ("start message_id not a uuid", detach_start, ("message_id",), "m-{{7*7}}"),
    ("legacy priority INFO", lambda: legacy_error("X()"), ("priority",), "INFO"),
    ("legacy exception a number", lambda: legacy_error("X()"), ("payload", "exception"), 12),
    ("legacy exception a list", lambda: legacy_error("X()"), ("payload", "exception"), ["X"]),
    ("legacy instance a string", lambda: legacy_error("X()"),
     ("payload", "args", "instance"), SERVER),
    ("legacy attachment_id not a uuid", lambda: legacy_error("X()"),
     ("payload", "args", "attachment_id"), "att-1"),
    ("legacy publisher versioned", lambda: legacy_error("X()"), ("publisher_id",),
     "nova-compute:h"),
    ("exception payload another object", lambda: compute_exception("X", "m", "f", "t"),
     ("payload", "nova_object.name"), "InstancePayload"),
    ("exception message a dict", lambda: compute_exception("X", "m", "f", "t"),
     D + ("exception_message",), {"message": "t"}),
    ("exception name not a class name", lambda: compute_exception("X", "m", "f", "t"),
     D + ("exception",), "X {{ 7*7 }}"),
    ("exception traceback a list", lambda: compute_exception("X", "m", "f", "t"),
     D + ("traceback",), ["line"]),
    ("exception priority INFO", lambda: compute_exception("X", "m", "f", "t"),
     ("priority",), "INFO"),
]


@pytest.mark.parametrize("name, make, path, value", SHAPES_NOVA_NEVER_SENDS,
                         ids=[row[0] for row in SHAPES_NOVA_NEVER_SENDS])
def test_shapes_nova_never_sends_are_not_events(name, make, path, value):
    assert nde.classify(make()) is not None  # the message as Nova sends it is one
    assert nde.classify(set_path(make(), path, value)) is None


# ---------------------------------------------------------------- outside input: markers

MARKED = "boom {{ 7*7 }} {% if 1 %}x{% endif %} {# c #} {{{ 7*7 }}} {{% raw %} {{#"


@pytest.mark.parametrize("text", [MARKED, "{" * 50 + "{" + "%" * 3, "{{{{{{", "{%{%{%{#{#"])
def test_strip_markers_leaves_none_and_cannot_recreate_one(text):
    out = nde.strip_markers(text)
    assert not any(m in out for m in ("{{", "{%", "{#"))
    assert nde.strip_markers(out) == out


@pytest.mark.parametrize("exception", [
    MARKED, {"class": "Boom", "message": MARKED}, "{'message': '%s'}" % MARKED,
    "Boom('%s')" % MARKED])
def test_markers_in_the_legacy_exception_never_reach_the_reason(exception):
    event = nde.classify(legacy_error(exception))
    assert "7*7" in event.reason and not any(m in event.reason for m in ("{{", "{%", "{#"))


def test_markers_in_the_compute_exception_never_reach_the_reason():
    track, _ = tracker()
    track.feed(nde.classify(detach_start()))
    [failure] = track.feed(nde.classify(compute_exception("Boom", "nova.x", "f", MARKED)))
    payload = nde.payload_for(failure)
    assert not any(m in v for v in payload.values() for m in ("{{", "{%", "{#"))
