"""The sensor's consumer without a broker (sensors/nova_consumer.py and the modules it is built
from: consumer_settings, dispatch_dedup, consumer_messages): settings, URLs and masking,
back-off, and the message path (ack/reject, hold, dispatch, dedup) driven with stand-in messages
and a fake clock. The real broker paths are in tests/broker/. Every dispatch goes through the
recording sensor service (tools/pylib/testsupport/sensor_service.py), which validates payloads
with st2's own code; no test may leave an invalid one behind."""
import logging
import os
import socket
import threading
import time

import pytest
import yaml

from testsupport import nova_wire as wire
from testsupport import sensor_service as recording
import consumer_messages as cm
import consumer_settings as cs
import detach_tracker as dt
from dispatch_dedup import Deduplicator
import nova_consumer as nc
import nova_detach_events as nde

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL = "amqp://guest:guest@127.0.0.1:1//"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class FakeMessage:
    """What the consumer uses of a kombu Message, recording what happened to it."""

    def __init__(self, body, timeline, routing_key=wire.ERROR_LEGACY, redelivered=False):
        self.body = body
        self.delivery_info = {"routing_key": routing_key, "redelivered": redelivered}
        self.properties = {"content_type": "application/json"}
        self.state = None
        self._timeline = timeline

    def ack(self):
        assert self.state is None, "acked after %s" % self.state
        self.state = "acked"
        self._timeline.append(("ack", self))

    def reject(self, requeue=False):
        assert self.state is None, "rejected after %s" % self.state
        self.state = "requeued" if requeue else "rejected"
        self._timeline.append((self.state, self))


class Harness:
    def __init__(self, tmp_path, **notifications):
        self.clock = Clock()
        self.timeline = []
        self.service = recording.detach_failed_service(datastore_path=tmp_path / "kv.json")
        original = self.service.dispatch

        def dispatch(trigger, payload=None, trace_tag=None):
            result = original(trigger, payload=payload, trace_tag=trace_tag)
            self.timeline.append(("dispatch", payload["volume_id"]))
            return result
        self.service.dispatch = dispatch
        config = {"notifications": dict({"transport_url": URL}, **notifications)}
        self.settings = cs.Settings.from_config(config)
        self.consumer = nc.NovaDetachConsumer(self.settings, self.service,
                                              logging.getLogger("test.consumer"),
                                              clock=self.clock)

    def deliver(self, msg_or_body, envelope=wire.v2, **kwargs):
        body = envelope(msg_or_body) if isinstance(msg_or_body, dict) else msg_or_body
        message = FakeMessage(body, self.timeline, **kwargs)
        self.consumer._on_message(message)
        return message

    def payloads(self):
        return self.service.payloads(cm.TRIGGER_REF)


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(**notifications):
        made.append(Harness(tmp_path, **notifications))
        return made[-1]
    yield make
    for h in made:
        assert h.service.invalid == [], "st2 would have dropped these payloads"


# ---------------------------------------------------------------- settings

def test_defaults_are_the_config_schema_defaults():
    with open(os.path.join(REPO, "config.schema.yaml")) as f:
        schema = yaml.safe_load(f)["notifications"]["properties"]
    assert {k: v.get("default") for k, v in schema.items()} == cs.DEFAULTS
    assert schema["transport_url"].get("secret") is True


def test_settings_from_config():
    s = cs.Settings.from_config({"notifications": {"transport_url": " amqp://u:p@h// ",
                                                   "routing_keys": ["a.b"], "heartbeat": 0}})
    assert (s.transport_url, s.routing_keys, s.heartbeat, s.exchange, s.exchange_durable,
            s.detach_window) == ("amqp://u:p@h//", ("a.b",), 0, "nova", False, 180.0)
    assert cs.Settings.from_config({}).transport_url == ""
    assert cs.Settings.from_config(None).queue == cs.DEFAULTS["queue"]
    assert "p@" not in str(s.masked()) and "u:****@h" in s.masked()["transport_url"]


@pytest.mark.parametrize("section, key", [
    ({"detach_window": 0}, "detach_window"), ({"dedup_window": "9"}, "dedup_window"),
    ({"heartbeat": -1}, "heartbeat"), ({"exchange_durable": "yes"}, "exchange_durable"),
    ({"routing_keys": []}, "routing_keys"), ({"routing_keys": [""]}, "routing_keys"),
    ({"queue": " "}, "queue"), ({"exchange": 3}, "exchange"), ({"ssl": 1}, "ssl"),
    ({"connect_timeout": True}, "connect_timeout"), ({"surprise": 1}, "surprise"),
    ({"queue": "notifications.error"}, "queue"),
    ({"queue": "versioned_notifications.info"}, "queue"),
    ({"transport_url": "http://u:pw@h/"}, "transport_url"),
])
def test_settings_errors_name_the_key(section, key):
    with pytest.raises(cs.ConfigError) as err:
        cs.Settings.from_config({"notifications": section})
    assert "notifications.%s" % key in str(err.value)
    assert "pw" not in str(err.value)


@pytest.mark.parametrize("url, expected", [
    ("amqp://u:p@h:5672//", ["amqp://u:p@h:5672//"]),
    ("amqp://u:p@h1//;amqp://u:p@h2:5673/vh", ["amqp://u:p@h1//", "amqp://u:p@h2:5673/vh"]),
    ("rabbit://u:p@h1:5672,u:p@h2:5672/", ["amqp://u:p@h1:5672//", "amqp://u:p@h2:5672//"]),
    ("rabbit://u:p@h1:5672/nova", ["amqp://u:p@h1:5672/nova"]),
    ("amqps://u:p@h:5671//", ["amqps://u:p@h:5671//"]),
])
def test_broker_urls_accept_kombu_and_oslo_forms(url, expected):
    assert cs.broker_urls(url) == expected


@pytest.mark.parametrize("url", ["h:5672", "redis://u:secretpw@h/0", "amqp://",
                                 "amqp://u:secretpw@/", " ; "])
def test_unusable_urls_are_config_errors_without_the_password(url):
    with pytest.raises(cs.ConfigError) as err:
        cs.broker_urls(url)
    assert "secretpw" not in str(err.value) and "transport_url" in str(err.value)


def test_masking_and_scrubbing():
    url = "rabbit://nova:S3cr%40t@h1:5672,nova:S3cr%40t@h2:5672/;amqp://x:other@h3//"
    masked = cs.mask_url(url)
    assert "S3cr" not in masked and "other" not in masked
    assert masked == "rabbit://nova:****@h1:5672,nova:****@h2:5672/;amqp://x:****@h3//"
    scrub = cs.Scrubber(url)
    text = scrub("login as nova with S3cr@t failed; other=other; url %s" % url)
    assert "S3cr" not in text and "other" not in text and "nova:****@h1" in text


def test_backoff_doubles_up_to_the_cap_with_jitter():
    delays = nc.backoff_delays(0.5, 4.0, rng=lambda: 1.0)
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    low = nc.backoff_delays(0.5, 4.0, rng=lambda: 0.0)
    assert [next(low) for _ in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert 1 < len({round(next(nc.backoff_delays(1, 1)), 6) for _ in range(20)})


# ---------------------------------------------------------------- the tracker's is_waiting

def event(msg):
    return nde.classify(nde.decode(wire.v2(msg)))


def test_is_waiting_follows_what_the_tracker_keeps():
    clock = Clock()
    tracker = dt.DetachTracker(window_s=10, clock=clock)
    server, volume, req = wire.new_id(), wire.new_id(), wire.new_request_id()
    start = event(wire.detach_start(server, volume, request_id=req))
    again = event(wire.detach_start(server, volume, request_id=req))
    assert not tracker.is_waiting(start)
    tracker.feed(start)
    tracker.feed(again)  # the same request again: not kept (the first one is)
    assert tracker.is_waiting(start) and not tracker.is_waiting(again)
    tracker.feed(event(wire.detach_end(server, volume, request_id=req)))
    assert not tracker.is_waiting(start)
    exc = event(wire.compute_exception(request_id=wire.new_request_id()))
    tracker.feed(exc)
    assert tracker.is_waiting(exc)
    clock.advance(11)
    tracker.expire()
    assert not tracker.is_waiting(exc)
    end = event(wire.detach_end(server, volume))
    assert not tracker.is_waiting(end) and not tracker.is_waiting(None)


# ---------------------------------------------------------------- the message path

def test_the_prefilter_tokens_cover_every_event_type_the_pack_acts_on():
    for tokens in cm._TOKENS.values():
        for event_type in (nde.START, nde.END, nde.LEGACY_ERROR, nde.COMPUTE_EXCEPTION):
            text = event_type if isinstance(tokens[0], str) else event_type.encode("ascii")
            assert any(token in text for token in tokens), event_type


def test_irrelevant_messages_are_acked_without_parsing(harness, monkeypatch):
    h = harness()
    monkeypatch.setattr(cm.nde, "decode", lambda body: pytest.fail("parsed %r" % body[:40]))
    power_off = wire.message("compute.instance.power_off.end", {"instance_id": "s"}, "compute.c")
    for msg in (wire.instance_update(), power_off):
        for envelope in (wire.v2, wire.v1):
            body = envelope(msg)
            for as_type in (body, body.encode("utf-8")):
                assert h.deliver(as_type).state == "acked"
    assert h.consumer.stats["irrelevant"] == 8 and h.payloads() == []


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xfe{\x00", "not UTF-8"),
    ("this is not JSON", "not a JSON object"),
    ("[1, 2, 3]", "not a JSON object"),
    (b"", "not a JSON object"),
    ('{"event_type": "detach_volume", "payload": ', "not JSON"),
    ('{"oslo.version": "2.0", "oslo.message": "compute.exception"}', "oslo.message is not JSON"),
    (b'{"event_type": "compute.exception", "x": "\xff"}', "not UTF-8"),
    ('{"oslo.version": "1.0", "oslo.message": "{}", "e": "detach_volume"}', "oslo.version"),
])
def test_malformed_bodies_are_rejected_and_logged(harness, caplog, body, reason):
    h = harness()
    caplog.set_level(logging.WARNING)
    assert h.deliver(body).state == "rejected"
    assert h.consumer.stats["malformed"] == 1
    [record] = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert reason in record.getMessage() and "routing key notifications.error" in \
        record.getMessage()


@pytest.mark.parametrize("msg", [
    {"event_type": "detach_volume", "priority": "INFO", "payload": {"args": {}}},
    {"event_type": "compute.exception", "payload": "not an object"},
    {"event_type": "instance.volume_detach.start", "payload": {"nova_object.data": {}}},
    {"note": "JSON, names detach_volume, is no notification"},
])
def test_json_that_is_not_a_detach_event_is_acked(harness, msg):
    h = harness()
    assert h.deliver(msg).state == "acked"
    assert h.consumer.stats["irrelevant"] == 1 and h.payloads() == []


def test_malformed_logging_is_rate_limited(harness, caplog):
    h = harness()
    caplog.set_level(logging.WARNING)
    for _ in range(25):
        assert h.deliver("garbage").state == "rejected"
    assert len(caplog.records) == cm.MALFORMED_LOG_PER_MINUTE
    h.clock.advance(61)
    h.deliver("garbage")
    summary = [r.getMessage() for r in caplog.records if "more malformed" in r.getMessage()]
    assert summary == ["15 more malformed messages were rejected in the last minute"]


@pytest.mark.parametrize("envelope", [wire.v2, wire.v1], ids=["oslo2.0", "oslo1.0"])
def test_legacy_signal_alone_is_dispatched_before_its_ack(harness, envelope):
    h = harness()
    server, volume = wire.new_id(), wire.new_id()
    message = h.deliver(wire.legacy_error(server, volume, "cmp-7"), envelope)
    assert [p["source"] for p in h.payloads()] == ["legacy"]
    assert (h.payloads()[0]["server_id"], h.payloads()[0]["host"]) == (server, "cmp-7")
    assert h.timeline == [("dispatch", volume), ("ack", message)]


@pytest.mark.parametrize("envelope", [wire.v2, wire.v1], ids=["oslo2.0", "oslo1.0"])
def test_versioned_signals_alone_hold_the_start_until_dispatched(harness, envelope):
    h = harness()
    server, volume, req = wire.new_id(), wire.new_id(), wire.new_request_id()
    start = h.deliver(wire.detach_start(server, volume, "cmp-2", req), envelope)
    assert start.state is None  # waiting for its .end: kept unacked
    exc = h.deliver(wire.compute_exception("cmp-2", req), envelope)
    [payload] = h.payloads()
    assert (payload["server_id"], payload["volume_id"], payload["host"], payload["source"]) == (
        server, volume, "cmp-2", "versioned")
    assert payload["reason"] == "cinderclient ClientException (HTTP 500)"
    assert h.timeline == [("dispatch", volume), ("ack", exc), ("ack", start)]


def test_exception_before_its_start_is_held_too(harness):
    h = harness()
    server, volume, req = wire.new_id(), wire.new_id(), wire.new_request_id()
    exc = h.deliver(wire.compute_exception(request_id=req))
    assert exc.state is None
    start = h.deliver(wire.detach_start(server, volume, request_id=req))
    assert h.timeline == [("dispatch", volume), ("ack", start), ("ack", exc)]


def test_an_exception_that_never_meets_a_start_is_acked_after_the_window(harness):
    h = harness(detach_window=30)
    exc = h.deliver(wire.compute_exception())
    h.clock.advance(29)
    h.consumer._tick(h.clock())
    assert exc.state is None
    h.clock.advance(2)
    h.consumer._tick(h.clock())
    assert exc.state == "acked" and h.payloads() == []


def test_successful_detach_dispatches_nothing_and_acks_all(harness):
    h = harness(detach_window=30)
    server, volume, req = wire.new_id(), wire.new_id(), wire.new_request_id()
    msgs = [h.deliver(m) for m in (wire.detach_start(server, volume, request_id=req),
                                   wire.legacy_volume_detached(server, volume, request_id=req),
                                   wire.detach_end(server, volume, request_id=req))]
    assert [m.state for m in msgs] == ["acked"] * 3
    h.clock.advance(100)
    h.consumer._tick(h.clock())
    assert h.payloads() == []


def test_start_without_end_fires_on_the_tick_after_the_window(harness):
    h = harness(detach_window=5)
    assert h.consumer.tick_s == 0.5
    server, volume = wire.new_id(), wire.new_id()
    start = h.deliver(wire.detach_start(server, volume, "cmp-3"))
    h.clock.advance(5)
    h.consumer._tick(h.clock())
    assert h.payloads() == [] and start.state is None
    h.clock.advance(0.5)
    h.consumer._tick(h.clock())
    [payload] = h.payloads()
    assert (payload["source"], payload["host"], payload["event_type"]) == (
        "timeout", "cmp-3", "instance.volume_detach.start")
    assert h.timeline == [("dispatch", volume), ("ack", start)]


def test_held_messages_are_capped_below_the_prefetch(harness, monkeypatch):
    monkeypatch.setattr(cm, "MAX_HELD", 3)
    h = harness()
    starts = [h.deliver(wire.detach_start(wire.new_id(), wire.new_id())) for _ in range(5)]
    assert [m.state for m in starts] == [None, None, None, "acked", "acked"]
    assert h.consumer.stats["held_overflow"] == 2
    assert cm.MAX_HELD < cm.PREFETCH_COUNT


def test_a_refused_dispatch_leaves_the_message_unacked_and_is_retried(harness):
    h = harness()
    server, volume = wire.new_id(), wire.new_id()
    body = wire.v2(wire.legacy_error(server, volume))
    h.service.fail_next_dispatches(1)
    first = FakeMessage(body, h.timeline)
    with pytest.raises(cm.DispatchError):
        h.consumer._on_message(first)
    assert first.state is None and h.payloads() == []
    # the session ends (held messages are forgotten); the broker redelivers the message
    h.consumer._held[:] = []
    again = h.deliver(body, redelivered=True)
    assert [p["volume_id"] for p in h.payloads()] == [volume]
    assert again.state == "acked"
    h.deliver(body, redelivered=True)
    assert len(h.payloads()) == 1


def test_a_dispatch_st2_never_takes_is_dropped_after_the_deadline(harness, caplog):
    h = harness()
    h.service.fail_next_dispatches(1000)
    server, volume = wire.new_id(), wire.new_id()
    with pytest.raises(cm.DispatchError):
        h.deliver(wire.legacy_error(server, volume))
    h.clock.advance(cm.DISPATCH_GIVE_UP_S - 1)
    with pytest.raises(cm.DispatchError):
        h.consumer._flush_pending()
    h.clock.advance(1)
    caplog.set_level(logging.ERROR)
    h.consumer._flush_pending()
    assert h.consumer.stats["dropped"] == 1 and not h.consumer._pending
    assert "st2 run dangling_volume.remedy server_id=%s volume_id=%s" % (server, volume) \
        in caplog.text


def test_duplicates_are_dispatched_once_and_remembered_in_the_datastore(harness, tmp_path):
    h = harness(dedup_window=900)
    server, volume = wire.new_id(), wire.new_id()
    for _ in range(3):  # a retrying user: new request ids, same server and volume
        assert h.deliver(wire.legacy_error(server, volume)).state == "acked"
    assert len(h.payloads()) == 1 and h.consumer.stats["duplicates"] == 2
    [kv] = h.service.list_values(local=True, prefix=Deduplicator.KEY_PREFIX)
    assert kv.name == "dangling_volume.NovaDetachSensor:%s" % Deduplicator.key(server, volume)
    assert kv.ttl == 900
    # another sensor process (a restart, or a second container) sharing the datastore
    other = harness(dedup_window=900)
    other.deliver(wire.legacy_error(server, volume))
    assert other.payloads() == [] and other.consumer.stats["duplicates"] == 1
    other.deliver(wire.legacy_error(server, wire.new_id()))
    assert len(other.payloads()) == 1


def test_dedup_memory_expires_with_the_window(harness):
    h = harness(dedup_window=60)
    server, volume = wire.new_id(), wire.new_id()
    h.deliver(wire.legacy_error(server, volume))
    h.service.delete_value(Deduplicator.key(server, volume))  # as the TTL would
    h.clock.advance(59)
    h.deliver(wire.legacy_error(server, volume))
    assert len(h.payloads()) == 1
    h.clock.advance(2)
    h.deliver(wire.legacy_error(server, volume))
    assert len(h.payloads()) == 2


def test_dedup_survives_datastore_errors(harness, caplog):
    h = harness()

    def broken(*args, **kwargs):
        raise ConnectionError("st2 API down")
    h.service.get_value = h.service.set_value = broken
    server, volume = wire.new_id(), wire.new_id()
    h.deliver(wire.legacy_error(server, volume))
    h.deliver(wire.legacy_error(server, volume))
    assert len(h.payloads()) == 1  # the in-memory copy still deduplicates
    assert "datastore read failed" in caplog.text and "datastore write failed" in caplog.text


def test_dedup_keys_are_safe_datastore_names():
    assert Deduplicator.key("a-b_c.1", "v") == "detach_failed.a-b_c.1.v"
    odd = Deduplicator.key("a/b c", "v")
    assert odd.startswith("detach_failed.sha1-") and odd == Deduplicator.key("a/b c", "v")


def test_a_bug_on_one_message_rejects_it_and_keeps_going(harness, monkeypatch, caplog):
    h = harness()

    def boom(event):
        raise KeyError("bug")
    monkeypatch.setattr(h.consumer.tracker, "feed", boom)
    assert h.deliver(wire.legacy_error(wire.new_id(), wire.new_id())).state == "rejected"
    assert "dropped after an unexpected error" in caplog.text and "KeyError" in caplog.text
    monkeypatch.undo()
    assert h.deliver(wire.legacy_error(wire.new_id(), wire.new_id())).state == "acked"
    assert len(h.payloads()) == 1


# ---------------------------------------------------------------- the loop without a broker

def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_broker_backs_off_never_logs_the_password_and_stops_promptly(
        tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Pa55-w0rd-never-logged"
    settings = cs.Settings.from_config({"notifications": {
        "transport_url": "amqp://nova:%s@127.0.0.1:%d//;rabbit://nova:%s@127.0.0.1:%d/" % (
            secret, _closed_port(), secret, _closed_port()), "connect_timeout": 1}})
    service = recording.detach_failed_service(datastore_path=tmp_path / "kv.json")
    consumer = nc.NovaDetachConsumer(settings, service, logging.getLogger("test.loop"),
                                     backoff_initial_s=0.05, backoff_max_s=0.2)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while consumer.stats["reconnects"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert consumer.stats["reconnects"] >= 4 and thread.is_alive()
    began = time.monotonic()
    consumer.stop()
    thread.join(2)
    assert not thread.is_alive() and time.monotonic() - began < 1.0
    text = caplog.text
    assert "Connection refused" in text and "nova:****@127.0.0.1" in text
    assert secret not in text
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_a_window_that_ends_while_the_broker_is_down_still_fires(tmp_path):
    settings = cs.Settings.from_config({"notifications": {
        "transport_url": "amqp://u:p@127.0.0.1:%d//" % _closed_port(), "detach_window": 1,
        "connect_timeout": 1}})
    service = recording.detach_failed_service(datastore_path=tmp_path / "kv.json")
    consumer = nc.NovaDetachConsumer(settings, service, logging.getLogger("test.offline"),
                                     backoff_initial_s=0.2, backoff_max_s=0.4)
    volume = wire.new_id()
    consumer._on_message(FakeMessage(wire.v2(wire.detach_start(wire.new_id(), volume)), []))
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        payloads = service.wait_for(lambda p: p, 5)
        assert [(p["volume_id"], p["source"]) for p in payloads] == [(volume, "timeout")]
        assert not consumer.connected.is_set() and consumer.stats["reconnects"] >= 1
    finally:
        consumer.stop()
        thread.join(2)
    assert not thread.is_alive() and service.invalid == []


# ---------------------------------------------------------------- outside input: redelivery

def test_a_redelivered_start_stays_unacked_until_its_window_ends(harness):
    """Unit level, with a message double: the session's end drops the held messages (the
    broker redelivers them); the redelivered copy is the same event the tracker already keeps,
    and it used to be acked at once, so a restart of the sensor after that lost the .start."""
    h = harness(detach_window=30)
    server, volume = wire.new_id(), wire.new_id()
    body = wire.v2(wire.detach_start(server, volume, "cmp-9"))
    first = h.deliver(body)
    assert first.state is None
    del h.consumer._held[:]  # what _session's finally does when the connection goes
    h.clock.advance(10)
    again = h.deliver(body, redelivered=True)
    assert again.state is None, "acked before its window ended"
    h.clock.advance(15)
    h.consumer._tick(h.clock())
    assert again.state is None and h.payloads() == []
    h.clock.advance(6)
    h.consumer._tick(h.clock())
    [payload] = h.payloads()
    assert payload["server_id"] == server and payload["source"] == "timeout"
    assert again.state == "acked" and first.state is None  # the first went back to the broker


# ---------------------------------------------------------------- outside input: floods

class CountingService:
    """Only counts (the JSON-file datastore would make 20,000 dispatches slow)."""

    def __init__(self):
        self.dispatches = 0

    def dispatch(self, trigger, payload=None, trace_tag=None):
        self.dispatches += 1

    def get_value(self, name):
        return None

    def set_value(self, name, value, ttl=None):
        pass


def flood(count, **notifications):
    """`count` instance.volume_detach.start of distinct servers delivered 1 ms apart, then 5
    minutes of ticks on a fake clock: (dispatches after each minute, consumer)."""
    clock, service = Clock(), CountingService()
    settings = cs.Settings.from_config({"notifications": dict(
        {"transport_url": URL, "detach_window": 180}, **notifications)})
    consumer = nc.NovaDetachConsumer(settings, service, logging.getLogger("test.flood"),
                                     clock=clock)
    timeline = []
    for _ in range(count):
        consumer._on_message(FakeMessage(wire.v2(wire.detach_start(
            wire.new_id(), wire.new_id())), timeline))
        clock.advance(0.001)
    per_minute = []
    for _ in range(5):
        for _ in range(60):
            clock.advance(1.0)
            consumer._tick(clock())
        per_minute.append(service.dispatches)
    return per_minute, consumer


def test_a_flood_of_starts_is_dispatched_at_most_at_the_configured_rate(caplog):
    """20,000 starts used to give 10,000 dispatches when their window ended (the tracker's
    cap dropped the other 10,000)."""
    caplog.set_level(logging.WARNING, logger="test.flood")
    per_minute, consumer = flood(20000)
    rate = cs.DEFAULTS["max_dispatches_per_minute"]
    assert per_minute == [0, 0, rate, rate, rate]
    assert consumer.stats["rate_limited"] == 10000 - rate
    assert consumer.stats["dispatched"] == rate
    over = [r for r in caplog.records if "max_dispatches_per_minute" in r.getMessage()]
    assert cm.RATE_LIMITED_LOG_PER_MINUTE <= len(over) <= cm.RATE_LIMITED_LOG_PER_MINUTE + 2


def test_the_rate_is_per_sliding_minute(harness):
    h = harness(max_dispatches_per_minute=2)
    for _ in range(3):
        h.deliver(wire.legacy_error(wire.new_id(), wire.new_id()))
    assert len(h.payloads()) == 2 and h.consumer.stats["rate_limited"] == 1
    h.clock.advance(59)
    h.deliver(wire.legacy_error(wire.new_id(), wire.new_id()))
    assert len(h.payloads()) == 2
    h.clock.advance(1)
    h.deliver(wire.legacy_error(wire.new_id(), wire.new_id()))
    assert len(h.payloads()) == 3


@pytest.mark.parametrize("value", [0, -1, 10001, "30", 1.5, True])
def test_max_dispatches_per_minute_must_be_a_sane_integer(value):
    with pytest.raises(cs.ConfigError, match="max_dispatches_per_minute"):
        cs.Settings.from_config({"notifications": {"max_dispatches_per_minute": value}})


# ---------------------------------------------------------------- TLS

def _context_of(options):
    """The SSLContext py-amqp builds from kombu's ssl options (the socket wrap is stubbed)."""
    import ssl

    import amqp.transport
    made = {}

    def wrap_socket(context, sock=None, **kwargs):
        made.update(kwargs, context=context)
        return sock
    original = ssl.SSLContext.wrap_socket
    ssl.SSLContext.wrap_socket = wrap_socket
    try:
        amqp.transport.SSLTransport._wrap_socket_sni(None, sock=object(), **options)
    finally:
        ssl.SSLContext.wrap_socket = original
    return made


def test_tls_requires_the_certificate_and_checks_the_host_by_default(tmp_path):
    import ssl
    settings = cs.Settings.from_config({"notifications": {"transport_url": URL, "ssl": True}})
    assert settings.ssl_verify_hostname is True and settings.ssl_ca_file == ""
    url = "amqp://u:p@rabbit.example.org:5671//"
    options = settings.ssl_options(url)
    assert options == {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": None,
                       "server_hostname": "rabbit.example.org"}
    made = _context_of(options)
    assert made["context"].verify_mode == ssl.CERT_REQUIRED
    assert made["context"].check_hostname is True
    assert made["server_hostname"] == "rabbit.example.org"


def test_tls_with_a_ca_file_and_without_hostname_check(tmp_path):
    import ssl
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")  # any file
    settings = cs.Settings.from_config({"notifications": {
        "transport_url": URL, "ssl": True, "ssl_ca_file": str(ca),
        "ssl_verify_hostname": False}})
    options = settings.ssl_options("amqp://u:p@[fd00::1]:5671//")
    assert options == {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(ca),
                       "server_hostname": None}
    assert cs.Settings.from_config({"notifications": {"transport_url": URL}}).ssl_options(
        URL) is False


@pytest.mark.parametrize("section, key", [
    ({"ssl": True, "ssl_ca_file": "/nonexistent/ca.pem"}, "ssl_ca_file"),
    ({"ssl_ca_file": 3}, "ssl_ca_file"),
    ({"ssl_verify_hostname": "yes"}, "ssl_verify_hostname"),
])
def test_tls_settings_errors_name_the_key(section, key):
    with pytest.raises(cs.ConfigError, match=key):
        cs.Settings.from_config({"notifications": section})


def test_the_broker_host_of_a_url():
    assert cs._url_host("amqp://u:p@ss@h1.example:5671//") == "h1.example"
    assert cs._url_host("amqps://h2//") == "h2"
    assert cs._url_host("amqp://u:p@[fd00::1]:5671//") == "fd00::1"


# ---------------------------------------------------------------- password masking

PASSWORDS = ["p@ss", "a;b", "c:d", "e/f", "@;:/", "x", "Zq", "p%40s%3Bs", "pa:ss@w;o/rd,1",
             "s3cr@t@", "%2F%3A"]
URL_FORMS = ["amqp://nova:{pw}@rabbit-1:5672//", "rabbit://nova:{pw}@h1:5672,nova:{pw}@h2:5672/",
             "amqp://nova:{pw}@h1//;amqps://nova:{pw}@h2//"]


def _leaks(pw, text):
    """The password in `text`: anywhere (3+ characters) or standing alone (shorter)."""
    import re
    if ":%s@" % pw in text:
        return True
    if len(pw) >= 3:
        return pw in text
    return re.search(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(pw), text) is not None


@pytest.mark.parametrize("form", URL_FORMS)
@pytest.mark.parametrize("pw", PASSWORDS)
def test_a_password_never_shows_in_logs_errors_or_reprs(pw, form, caplog):
    import urllib.parse
    url = form.format(pw=pw)
    texts = [cs.mask_url(url), cs.mask_url("connecting to %s failed" % url)]
    scrub = cs.Scrubber(url)
    decoded = urllib.parse.unquote(pw)
    texts.append(scrub("Login refused for nova with %s / %s at %s" % (pw, decoded, url)))
    texts.append(repr(scrub))
    try:
        settings = cs.Settings.from_config({"notifications": {"transport_url": url}})
    except cs.ConfigError as exc:
        texts.append(str(exc))
    else:
        texts += [repr(settings), str(settings), str(settings.masked())]
        caplog.set_level(logging.DEBUG)
        consumer = nc.NovaDetachConsumer(settings, CountingService(),
                                         logging.getLogger("test.mask"))
        consumer._log.info("consuming Nova notifications: %s", settings.masked())
        texts.append(caplog.text)
    for text in texts:
        for secret in {pw, decoded}:
            assert not _leaks(secret, text), text
    assert "****" in texts[0]


@pytest.mark.parametrize("pw", PASSWORDS)
def test_config_errors_never_show_the_password(pw):
    for url in ("redis://nova:%s@h/0" % pw, "amqp://nova:%s@/" % pw):
        try:
            cs.broker_urls(url)
        except cs.ConfigError as exc:
            assert not _leaks(pw, str(exc)), str(exc)
