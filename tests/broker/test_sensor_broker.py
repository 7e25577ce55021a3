"""The dangling_volume.detach_failed sensor (the real class, the SensorService double) against a
real RabbitMQ of this session's own: Nova's failure signals each alone in both envelopes,
malformed input, duplicates, the detach window, a refused dispatch, a sensor restart, the broker
down at start, the broker killed mid-stream under confirmed publishing, and a wrongly flagged
exchange. Message fixtures are built by tools/pylib/testsupport/nova_wire.py from the documented
formats."""
import collections
import glob
import json
import logging
import os
import threading
import time

import kombu
import pytest

from testsupport import nova_wire as wire
from testsupport.rabbitmq_process import queue_depth

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAYLOAD_KEYS = {"server_id", "volume_id", "host", "reason", "event_type", "message_id",
                "timestamp", "source"}


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_drained(running, count, timeout=15):
    """Until the consumer has taken `count` messages (each acked or rejected)."""
    stats = running.consumer.stats
    assert wait_until(lambda: stats["irrelevant"] + stats["malformed"] + stats["relevant"] >=
                      count, timeout), dict(stats)


ENVELOPES = pytest.mark.parametrize("envelope", [wire.v2, wire.v1], ids=["oslo2.0", "oslo1.0"])


@ENVELOPES
def test_legacy_signal_alone(start_sensor, publisher, envelope, live_broker, names):
    running = start_sensor().wait_connected()
    pub = publisher()
    server, volume = wire.new_id(), wire.new_id()
    msg = wire.legacy_error(server, volume, "cmp-1", exception={
        "class": "DeviceDetachFailed", "message": "Device detach failed for sdb: refused",
        "kwargs": {"device": "sdb", "code": 500}})
    pub.send(wire.instance_update(), envelope)
    pub.send(msg, envelope)
    [payload] = running.service.wait_for(lambda p: p, 10)
    assert set(payload) == PAYLOAD_KEYS
    assert (payload["server_id"], payload["volume_id"], payload["host"], payload["source"],
            payload["event_type"], payload["message_id"]) == (
        server, volume, "cmp-1", "legacy", "detach_volume", msg["message_id"])
    assert payload["reason"] == "DeviceDetachFailed: Device detach failed for sdb: refused"
    wait_drained(running, 2)
    running.stop()
    assert queue_depth(live_broker.url, names["queue"]) == 0


@ENVELOPES
def test_versioned_signals_alone(start_sensor, publisher, envelope, live_broker, names):
    running = start_sensor().wait_connected()
    pub = publisher()
    server, volume, req = wire.new_id(), wire.new_id(), wire.new_request_id()
    pub.send(wire.detach_start(server, volume, "cmp-2", req), envelope)
    pub.send(wire.compute_exception("cmp-2", req, exception="DeviceDetachFailed",
                                    module="nova.virt.libvirt.driver",
                                    function="_detach_from_live_with_retry",
                                    text="Device detach failed for vdb: Run out of retry"),
             envelope)
    [payload] = running.service.wait_for(lambda p: p, 10)
    assert (payload["server_id"], payload["volume_id"], payload["host"], payload["source"],
            payload["event_type"]) == (server, volume, "cmp-2", "versioned", "compute.exception")
    assert payload["reason"] == "DeviceDetachFailed: Device detach failed for vdb: Run out of retry"
    wait_drained(running, 2)
    running.stop()
    assert queue_depth(live_broker.url, names["queue"]) == 0


MALFORMED = [
    (wire.ERROR_LEGACY, b"\xff\xfe\x00 not utf-8 at all"),
    (wire.ERROR_LEGACY, "this is not JSON"),
    (wire.ERROR_V, "[\"a JSON array\"]"),
    (wire.ERROR_V, '{"event_type": "compute.exception", "payload": '),            # cut short
    (wire.ERROR_LEGACY, b'{"event_type": "detach_volume", "x": "\xc3\x28"}'),     # bad UTF-8
    (wire.INFO_V, '{"oslo.version": "2.0", "oslo.message": "instance.volume_detach.start"}'),
    (wire.ERROR_LEGACY, '{"oslo.version": "9.0", "oslo.message": "{}", "t": "detach_volume"}'),
]
NOT_A_DETACH_EVENT = [
    {"just": "JSON that is no notification", "mentions": "detach_volume"},
    {"event_type": "detach_volume", "priority": "INFO", "payload": {"args": None}},
    {"event_type": "instance.volume_detach.start", "payload": "no nova object"},
]


def test_malformed_messages_are_consumed_once_and_the_loop_keeps_going(
        start_sensor, publisher, live_broker, names, caplog):
    caplog.set_level(logging.WARNING)
    running = start_sensor().wait_connected()
    pub = publisher()
    for key, body in MALFORMED:
        pub.send(body, key=key)
    for msg in NOT_A_DETACH_EVENT:
        pub.send(wire.v2(msg), key=wire.ERROR_LEGACY)
    unknown = wire.message("instance.shelve.end", {"nova_object.data": {}}, "nova-compute:c")
    pub.send(unknown, key=wire.INFO_V)  # an event type the pack does not know
    server, volume = wire.new_id(), wire.new_id()
    pub.send(wire.legacy_error(server, volume))
    assert running.service.wait_for(lambda p: p, 10)[0]["volume_id"] == volume
    wait_drained(running, len(MALFORMED) + len(NOT_A_DETACH_EVENT) + 2)
    stats = running.consumer.stats
    assert (stats["malformed"], stats["irrelevant"], stats["relevant"]) == (
        len(MALFORMED), len(NOT_A_DETACH_EVENT) + 1, 1)
    rejected = [r for r in caplog.records if "malformed message rejected" in r.getMessage()]
    assert len(rejected) == len(MALFORMED)
    assert all("redelivered False" in r.getMessage() for r in rejected)
    running.stop()
    assert queue_depth(live_broker.url, names["queue"]) == 0
    # nothing comes back: a new sensor on the same queue receives nothing
    again = start_sensor().wait_connected()
    time.sleep(0.5)
    assert sum(again.consumer.stats.values()) == 0


def test_duplicate_failures_are_dispatched_once(start_sensor, publisher):
    running = start_sensor().wait_connected()
    pub = publisher()
    server, volume = wire.new_id(), wire.new_id()
    for msg in wire.break_2a(server, volume):    # three signals of one failure
        pub.send(msg)
    retry = wire.legacy_error(server, volume)    # the user retries: a new request
    pub.send(retry)
    pub.send(retry)                              # and a message delivered twice
    other_volume = wire.new_id()
    pub.send(wire.legacy_error(server, other_volume))
    wait_drained(running, 6)
    payloads = running.service.wait_for(lambda p: len(p) >= 2, 10)
    time.sleep(0.3)
    assert sorted(p["volume_id"] for p in running.service.payloads()) == sorted(
        [volume, other_volume])
    # the retry by the dedup window; the second copy of it already by its request id
    assert running.consumer.stats["duplicates"] == 1
    assert payloads[0]["source"] == "legacy"


def test_start_without_end_is_dispatched_after_the_window(start_sensor, publisher):
    running = start_sensor(detach_window=1).wait_connected()
    pub = publisher()
    server, volume, ok_volume = wire.new_id(), wire.new_id(), wire.new_id()
    ok_request = wire.new_request_id()
    pub.send(wire.detach_start(server, ok_volume, request_id=ok_request))
    pub.send(wire.detach_end(server, ok_volume, request_id=ok_request))
    sent = time.monotonic()
    pub.send(wire.detach_start(server, volume, "cmp-4"))
    [payload] = running.service.wait_for(lambda p: p, 5)
    took = time.monotonic() - sent
    assert 1.0 <= took <= 2.0, took  # the window, then at most a tick (0.1 s here) and slack
    assert (payload["volume_id"], payload["source"], payload["host"]) == (volume, "timeout",
                                                                          "cmp-4")
    time.sleep(1.5)
    assert len(running.service.payloads()) == 1  # the detach that ended fires nothing


def test_a_dispatch_st2_refuses_is_retried_and_the_message_kept_until_then(
        start_sensor, publisher, live_broker, names):
    running = start_sensor().wait_connected()
    running.service.fail_next_dispatches(2)
    volume = wire.new_id()
    publisher().send(wire.legacy_error(wire.new_id(), volume))
    payloads = running.service.wait_for(lambda p: p, 15)
    assert [p["volume_id"] for p in payloads] == [volume]
    # the first refusal drops the session (the message goes back); the retries follow
    assert running.consumer.stats["reconnects"] >= 1
    time.sleep(0.5)
    assert len(running.service.payloads()) == 1
    running.stop()
    assert queue_depth(live_broker.url, names["queue"]) == 0


def test_a_start_waiting_when_the_sensor_restarts_is_not_lost(start_sensor, publisher):
    first = start_sensor(detach_window=2).wait_connected()
    server, volume = wire.new_id(), wire.new_id()
    publisher().send(wire.detach_start(server, volume))
    assert wait_until(lambda: first.consumer.stats["relevant"] == 1, 5)
    first.stop()  # before the window ends: the .start was never acked
    assert first.service.payloads() == []
    second = start_sensor(detach_window=2).wait_connected()
    [payload] = second.service.wait_for(lambda p: p, 6)
    assert (payload["volume_id"], payload["source"]) == (volume, "timeout")


def test_a_redelivered_start_is_still_unacked_when_the_sensor_restarts(
        start_sensor, publisher):
    """The session drops (the consumer's connection fails once) while a .start waits: the
    broker redelivers it to the next session of the same sensor, whose tracker already keeps
    that .start. The copy must stay unacked too, so the restart that follows loses nothing."""
    first = start_sensor(detach_window=6).wait_connected()
    server, volume = wire.new_id(), wire.new_id()
    publisher().send(wire.detach_start(server, volume))
    assert wait_until(lambda: first.consumer.stats["relevant"] == 1, 5)
    tick, failed = first.consumer._tick, []

    def tick_once_failing(now):
        if not failed:
            failed.append(now)
            raise ConnectionResetError("connection lost (test)")
        return tick(now)
    first.consumer._tick = tick_once_failing
    assert wait_until(lambda: first.consumer.stats["relevant"] == 2, 10)  # the redelivery
    assert first.consumer.stats["reconnects"] == 1
    first.stop()  # before the window ends
    assert first.service.payloads() == []
    second = start_sensor(detach_window=2).wait_connected()
    [payload] = second.service.wait_for(lambda p: p, 6)
    assert (payload["volume_id"], payload["source"]) == (volume, "timeout")


def test_broker_down_when_the_sensor_starts(broker, start_sensor, publisher, caplog):
    caplog.set_level(logging.WARNING)
    broker.kill()
    try:
        running = start_sensor()
        assert wait_until(lambda: running.consumer.stats["reconnects"] >= 2, 10)
        assert running.thread.is_alive() and not running.consumer.connected.is_set()
    finally:
        broker.start()
    running.wait_connected(30)
    volume = wire.new_id()
    publisher().send(wire.legacy_error(wire.new_id(), volume))
    assert [p["volume_id"] for p in running.service.wait_for(lambda p: p, 10)] == [volume]
    assert "Connection refused" in caplog.text


class ConfirmingPublisher(threading.Thread):
    """Publishes `messages` with publisher confirms and mandatory routing, reconnecting (and
    declaring the exchange again, as Nova does) when the broker goes away. Per message: the
    broker confirmed it and routed it to a queue ("routed"), confirmed it but had no queue for
    it ("returned": published while the sensor's binding was gone), or the connection died
    with it in flight ("unknown")."""

    def __init__(self, url, messages, pause_s=0.002):
        super().__init__(name="confirming-publisher", daemon=True)
        self.url, self.messages, self.pause_s = url, messages, pause_s
        self.outcome = {}
        self.errors = []

    def run(self):
        index = 0
        while index < len(self.messages):
            returned = set()

            def on_return(exc, exchange, routing_key, message):
                returned.add(message.headers["seq"])
            try:
                with kombu.Connection(self.url, connect_timeout=2,
                                      transport_options={"confirm_publish": True}) as conn:
                    conn.ensure_connection(max_retries=0)
                    exchange = wire.nova_exchange()
                    producer = kombu.Producer(conn.channel(), exchange=exchange,
                                              on_return=on_return)
                    exchange(producer.channel).declare()
                    while index < len(self.messages):
                        msg = self.messages[index]
                        self.outcome[index] = "unknown"
                        wire.publish(producer, wire.v2(msg), wire.routing_key(msg),
                                     exchange=exchange, mandatory=True,
                                     headers={"seq": index})
                        self.outcome[index] = "returned" if index in returned else "routed"
                        index += 1
                        time.sleep(self.pause_s)
            except Exception as exc:
                self.errors.append(repr(exc))
                index += 1 if self.outcome.get(index) == "unknown" else 0
                time.sleep(0.1)

    def count(self, outcome):
        return sum(1 for v in self.outcome.values() if v == outcome)


def test_broker_killed_and_restarted_while_1000_notifications_are_published(
        broker, start_sensor, live_broker, names):
    # 500 failures, all to be dispatched: no rate cap here (that is tested at unit level)
    running = start_sensor(max_dispatches_per_minute=10000).wait_connected()
    # st2 is stuck on the first dispatch until the broker dies: everything published
    # meanwhile waits in the queue (ready, or delivered and unacked), which must survive the
    # broker's death (a durable queue, persistent messages); and that first dispatch completes
    # with its ack lost, so the message comes again and must not be dispatched twice.
    st2_stuck = threading.Event()
    dispatch = running.service.dispatch

    def stuck_dispatch(*args, **kwargs):
        st2_stuck.wait(60)
        return dispatch(*args, **kwargs)
    running.service.dispatch = stuck_dispatch
    messages, relevant = [], {}
    for i in range(1000):
        if i % 2:
            messages.append(wire.instance_update())
        else:
            server, volume = wire.new_id(), wire.new_id()
            relevant[i] = volume
            messages.append(wire.legacy_error(server, volume))
    pub = ConfirmingPublisher(broker.url, messages)
    pub.start()
    assert wait_until(lambda: pub.count("routed") >= 300, 30), pub.errors
    stats = running.consumer.stats
    broker.kill()
    st2_stuck.set()
    # routed but not yet taken (acked or rejected) by the sensor: ready in the queue, or
    # delivered and unacked; the broker keeps both on disk and must hand them out again
    backlog = pub.count("routed") - (stats["relevant"] + stats["irrelevant"] + stats["malformed"])
    killed_at = len(pub.outcome)
    broker.start()
    pub.join(120)
    assert not pub.is_alive() and pub.errors, "the publisher never saw the broker go"
    # routed after the restart: the sensor declared exchange, queue and binding again
    routed_after = sum(1 for i, v in pub.outcome.items() if i > killed_at and v == "routed")
    assert routed_after >= 100, pub.outcome
    assert backlog >= 20, "too little was waiting in the queue when the broker died"
    print("publisher: %d routed, %d returned, %d unknown; %d in the queue when killed" % (
        pub.count("routed"), pub.count("returned"), pub.count("unknown"), backlog))

    expected = {relevant[i] for i, v in pub.outcome.items() if v == "routed" and i in relevant}
    maybe = {relevant[i] for i, v in pub.outcome.items() if v == "unknown" and i in relevant}
    never = {relevant[i] for i, v in pub.outcome.items() if v == "returned" and i in relevant}

    def dispatched():
        return collections.Counter(p["volume_id"] for p in running.service.payloads())
    assert wait_until(lambda: expected <= set(dispatched()), 60), \
        "%d of %d routed failures not dispatched" % (len(expected - set(dispatched())),
                                                     len(expected))
    time.sleep(1.0)  # room for a duplicate to show up
    counts = dispatched()
    assert max(counts.values()) == 1, [v for v, n in counts.items() if n > 1][:5]
    assert set(counts) <= expected | maybe and not set(counts) & never
    assert running.consumer.stats["reconnects"] >= 1
    running.stop()
    assert queue_depth(live_broker.url, names["queue"]) == 0


def test_exchange_declared_with_the_wrong_durable_flag(start_sensor, live_broker, names,
                                                       caplog):
    exchange = "nova-%s" % names["tag"]
    with kombu.Connection(live_broker.url, connect_timeout=5) as conn:
        wire.nova_exchange(exchange, durable=False)(conn.default_channel).declare()
    caplog.set_level(logging.INFO)
    try:
        running = start_sensor(exchange=exchange, exchange_durable=True)

        def refusals():
            return [r for r in caplog.records if "406" in r.getMessage()]
        assert wait_until(lambda: len(refusals()) >= 3, 15)
        text = refusals()[0].getMessage()
        assert refusals()[0].levelno == logging.ERROR
        assert "notifications.exchange_durable" in text and "to false" in text
        assert "inequivalent arg 'durable'" in text
        assert running.thread.is_alive() and running.consumer.stats["reconnects"] >= 3
        assert not running.consumer.connected.is_set()
        assert running.stop() < 1.0
    finally:
        with kombu.Connection(live_broker.url, connect_timeout=5) as conn:
            conn.default_channel.exchange_delete(exchange)


# ---------------------------------------------------------------- ../shared samples

SAMPLES = os.path.join(REPO, "..", "shared", "reference", "notification-samples")
NO_SAMPLES = pytest.mark.skipif(
    not os.path.isdir(SAMPLES),
    reason="../shared/reference/notification-samples is absent (it lives beside the repo, not "
           "in it): the sample tests are skipped")
SAMPLE_SERVER, SAMPLE_VOLUME = ("178b0921-8f85-4257-88b6-2e743b5a975c",
                                "a07f71dc-8151-4e7d-a0cc-cd24a3f11113")


def resolve_refs(node, base_dir):
    """`$ref` expanded as the samples' README says (upstream nova/tests/json_ref.py): the
    referenced document, its own refs relative to its folder, with the keys beside the `$ref`
    merged into it recursively."""
    if isinstance(node, list):
        return [resolve_refs(item, base_dir) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" not in node:
        return {key: resolve_refs(value, base_dir) for key, value in node.items()}
    path = os.path.join(base_dir, node["$ref"].split("#")[0])
    with open(path) as f:
        target = resolve_refs(json.load(f), os.path.dirname(path))
    return merge(target, resolve_refs({k: v for k, v in node.items() if k != "$ref"}, base_dir))


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = merge(out[key], value) if both else value
    return out


def sample_paths(sub):
    return sorted(glob.glob(os.path.join(SAMPLES, sub, "*.json")))


@NO_SAMPLES
def test_constructed_wire_samples_through_the_broker(start_sensor, publisher, live_broker,
                                                     names):
    """The three hand-built AMQP bodies, published on their own exchange and routing key in
    the order Nova emits them (start, compute.exception, legacy): one failure, dispatched once,
    from the versioned pair; the legacy signal of the same request adds nothing."""
    samples = []
    for path in sample_paths("constructed"):
        with open(path) as f:
            samples.append(json.load(f))
    assert {s["exchange"] for s in samples} == {"nova"} and len(samples) >= 3
    samples.sort(key=lambda s: json.loads(s["body"]["oslo.message"])["timestamp"])
    running = start_sensor().wait_connected()
    pub = publisher()
    for sample in samples:
        pub.send(json.dumps(sample["body"]), key=sample["routing_key"])
    wait_drained(running, len(samples))
    time.sleep(0.3)
    [payload] = running.service.payloads()
    assert (payload["server_id"], payload["volume_id"], payload["host"], payload["source"]) == (
        SAMPLE_SERVER, SAMPLE_VOLUME, "compute", "versioned")
    assert payload["reason"].startswith("DeviceDetachFailed: Device detach failed for vdb")
    assert running.consumer.stats["malformed"] == 0
    running.stop()
    assert queue_depth(live_broker.url, names["queue"]) == 0


@NO_SAMPLES
def test_every_upstream_nova_sample_through_the_broker(start_sensor, publisher, live_broker,
                                                       names):
    """Each upstream sample ($refs resolved) put on the wire as Nova would (both envelopes,
    its routing key, a request id of its own): only instance.volume_detach.start, having no
    .end of its request, becomes a failure, after the window, dispatched once for both copies;
    every message is consumed."""
    paths = sample_paths("nova")
    assert paths
    running = start_sensor(detach_window=1).wait_connected()
    pub = publisher()
    for path in paths:
        with open(path) as f:
            sample = resolve_refs(json.load(f), os.path.dirname(path))
        for envelope in (wire.v2, wire.v1):
            msg = wire.message(sample["event_type"], sample["payload"], sample["publisher_id"],
                               priority=sample["priority"])
            key = "versioned_notifications.%s" % sample["priority"].lower()
            pub.send(envelope(msg), key=key)
    wait_drained(running, 2 * len(paths))
    payloads = running.service.wait_for(lambda p: p, 5)
    time.sleep(1.5)
    assert running.service.payloads() == payloads
    [payload] = payloads
    assert (payload["server_id"], payload["volume_id"], payload["host"], payload["source"],
            payload["event_type"]) == (SAMPLE_SERVER, SAMPLE_VOLUME, "compute", "timeout",
                                       "instance.volume_detach.start")
    stats = running.consumer.stats
    assert (stats["malformed"], stats["duplicates"]) == (0, 1)
    running.stop()
    assert queue_depth(live_broker.url, names["queue"]) == 0
