"""What the Nova notification consumer does with each delivered message and with the failures
the messages complete; nova_consumer.NovaDetachConsumer adds the broker connection around it.

- Every message is acked or rejected (without requeue), so none comes back forever:
  - bodies that cannot name a detach event (no relevant event type in the text) are acked after
    a cheap shape check, without JSON parsing: that is 99.9 % of the traffic and the hot path;
  - malformed bodies (not UTF-8, not JSON, JSON but not a notification) are rejected and logged
    briefly (rate-limited);
  - a relevant message is acked only after what it completes has been dispatched; a .start that
    waits for its .end (or a signal waiting for its .start) stays unacked while it waits (at most
    MAX_HELD at a time, well under the prefetch, so waiting never stalls the flow). So a restart
    of the sensor loses nothing that reached the queue: the broker redelivers what was unacked.
- One dispatch per (server, volume) within notifications.dedup_window (dispatch_dedup.py).
- At most notifications.max_dispatches_per_minute dispatches in any 60 s: a flood of failures
  (real or forged) does not start a flood of remedies. What is over the rate is counted
  (stats "rate_limited"), logged with its server and volume (rate-limited too, then a summary per
  minute) and not dispatched.
- A dispatch st2 does not take raises DispatchError (the session is dropped, the message
  redelivered) and is tried again until DISPATCH_GIVE_UP_S, then logged with the command that
  remedies it by hand.
"""
import collections
import logging
import traceback

import kombu.exceptions

from consumer_settings import CONFIG_SECTION, Scrubber
from detach_tracker import DetachTracker
from dispatch_dedup import Deduplicator
import nova_detach_events as nde

TRIGGER_REF = "dangling_volume.detach_failed"  # st2 wants "<pack>.<trigger name>"
PREFETCH_COUNT = 256     # unacked messages the broker may push at once
MAX_HELD = 128           # waiting .starts/signals kept unacked; < PREFETCH_COUNT, so never a stall
DISPATCH_GIVE_UP_S = 600.0  # a failure st2 would not take for this long is logged and dropped
STATS_INTERVAL_S = 600.0
MALFORMED_LOG_PER_MINUTE = 10
RATE_LIMITED_LOG_PER_MINUTE = 10

# Event types the pack acts on, as they appear literally in a body (also inside the JSON string
# of the oslo 2.0 envelope: JSON escapes no ASCII letters, dots or underscores). A body without
# them cannot classify as anything but None, so it is acked without being parsed. "detach"
# covers instance.volume_detach.* and detach_volume in one scan of the body.
_TOKENS = {str: ("detach", nde.COMPUTE_EXCEPTION),
           bytes: (b"detach", nde.COMPUTE_EXCEPTION.encode("ascii"))}


def _connection_error_types():
    errors = (OSError, EOFError, kombu.exceptions.KombuError)
    try:
        import amqp.exceptions  # kombu's AMQP transport (st2 ships it with kombu)
        errors += (amqp.exceptions.AMQPError,)
    except ImportError:  # pragma: no cover - kombu always brings amqp
        pass
    return errors


# What a lost or refused broker connection raises (socket errors are OSErrors), also from
# message.ack() and .reject(): _on_message lets them through to the broker side.
CONNECTION_ERRORS = _connection_error_types()


class DispatchError(RuntimeError):
    """st2 did not take a dispatch: the session is dropped so the message is redelivered."""


class _Pending:
    """A Failure waiting for st2 to take its dispatch."""
    __slots__ = ("failure", "since", "attempts")

    def __init__(self, failure, since):
        self.failure, self.since, self.attempts = failure, since, 0


class DetachMessageHandler:
    """Messages in, dispatches out, on `clock`; no broker of its own. `service` is the st2
    sensor service (dispatch, get_value, set_value), `logger` a logging.Logger. The broker side
    calls _on_message for every delivery and _tick at least once a second."""

    def __init__(self, settings, service, logger, clock):
        self.settings = settings
        self._service = service
        self._log = logger
        self._clock = clock
        self._scrub = Scrubber(settings.transport_url)
        self.tracker = DetachTracker(window_s=settings.detach_window, clock=clock)
        self.dedup = Deduplicator(service, settings.dedup_window, self._log, clock=clock)
        self._dispatch_times = collections.deque()  # monotonic times of the last minute's
        self._rate_window = [0.0, 0]                # minute start, over-rate failures logged
        self._pending = collections.deque()  # _Pending, oldest first
        self._held = []                      # (message, event): unacked while the event waits
        self.stats = collections.Counter()
        self._malformed_window = [0.0, 0]    # minute start, messages logged in it
        self._next_stats = clock() + STATS_INTERVAL_S
        self._last_stats = {}

    # -- messages

    def _on_message(self, message):
        """Called by kombu for every delivery. The first branch is the hot path."""
        body = message.body
        tokens = _TOKENS.get(body.__class__)  # str (content_encoding set) or bytes
        if tokens is not None and tokens[0] not in body and tokens[1] not in body:
            if body[:1] == "{" and body[-1:] == "}":  # a str JSON object: the common case
                self.stats["irrelevant"] += 1
                message.ack()
                return
            reason = _shape_problem(body)
            if reason is None:
                self.stats["irrelevant"] += 1
                message.ack()
            else:
                self._malformed(message, reason)
            return
        try:
            self._relevant_candidate(message)
        except DispatchError:
            raise  # unacked on purpose: redelivered after the reconnect
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:  # a bug: drop this message rather than loop on it forever
            self.stats["errors"] += 1
            self._log.error("message %s dropped after an unexpected error: %s",
                            _describe(message), self._scrub("".join(traceback.format_exception(
                                type(exc), exc, exc.__traceback__))))
            message.reject(requeue=False)

    def _relevant_candidate(self, message):
        try:
            notification = nde.decode(message.body)
        except nde.BadMessage as exc:
            self._malformed(message, str(exc))
            return
        event = nde.classify(notification)
        if event is None:
            self.stats["irrelevant"] += 1
            if self._log.isEnabledFor(logging.DEBUG):
                self._log.debug("not a detach event (%.60r): %s acked",
                                notification.get("event_type"), _describe(message))
            message.ack()
            return
        self.stats["relevant"] += 1
        self._enqueue(self.tracker.feed(event))
        self._flush_pending()
        if len(self._held) < MAX_HELD and self.tracker.is_waiting(event):
            self._held.append((message, event))
        else:
            if self.tracker.is_waiting(event):
                self.stats["held_overflow"] += 1
            message.ack()
        self._release_held()

    def _malformed(self, message, reason):
        self.stats["malformed"] += 1
        now = self._clock()
        window = self._malformed_window
        if now - window[0] >= 60.0:
            if window[1] > MALFORMED_LOG_PER_MINUTE:
                self._log.warning("%d more malformed messages were rejected in the last minute",
                                  window[1] - MALFORMED_LOG_PER_MINUTE)
            window[0], window[1] = now, 0
        window[1] += 1
        if window[1] <= MALFORMED_LOG_PER_MINUTE:
            self._log.warning("malformed message rejected (%s): %s", reason, _describe(message))
        message.reject(requeue=False)

    # -- failures to dispatches

    def _enqueue(self, failures):
        now = self._clock()
        self._pending.extend(_Pending(f, now) for f in failures)

    def _flush_pending(self):
        while self._pending:
            item = self._pending[0]
            try:
                self._dispatch(item.failure)
            except Exception as exc:
                item.attempts += 1
                if self._clock() - item.since >= DISPATCH_GIVE_UP_S:
                    self._pending.popleft()
                    self.stats["dropped"] += 1
                    self._log.error(
                        "giving up on dispatching %s after %d attempts over %.0f s (%s): remedy "
                        "it by hand: st2 run dangling_volume.remedy server_id=%s volume_id=%s",
                        nde.payload_for(item.failure), item.attempts, DISPATCH_GIVE_UP_S,
                        self._scrub(exc), item.failure.server_id, item.failure.volume_id)
                    continue
                raise DispatchError("%s: %s" % (type(exc).__name__, exc)) from None
            self._pending.popleft()

    def _dispatch(self, failure):
        if self.dedup.seen(failure.server_id, failure.volume_id):
            self.stats["duplicates"] += 1
            self._log.info("detach failure of volume %s on server %s (%s) not dispatched: one "
                           "was dispatched within the last %d s (%s.dedup_window)",
                           failure.volume_id, failure.server_id, failure.source,
                           self.dedup.window_s, CONFIG_SECTION)
            return
        if self._over_rate(failure):
            return
        payload = nde.payload_for(failure)
        self._service.dispatch(TRIGGER_REF, payload=payload,
                               trace_tag=failure.message_id or None)
        self._dispatch_times.append(self._clock())
        self.stats["dispatched"] += 1
        self._log.info("dispatched %s: volume %s on server %s, host %s, %s (%s, message %s)",
                       TRIGGER_REF, failure.volume_id, failure.server_id, failure.host or "?",
                       failure.reason, failure.source, failure.message_id or "?")
        self.dedup.remember(failure.server_id, failure.volume_id,
                            "%s %s %s" % (failure.source, failure.event_type,
                                          failure.message_id))

    def _over_rate(self, failure):
        """True (counted, logged, not dispatched) when max_dispatches_per_minute dispatches were
        made in the last 60 s."""
        now, times = self._clock(), self._dispatch_times
        while times and now - times[0] >= 60.0:
            times.popleft()
        window = self._rate_window
        if now - window[0] >= 60.0:
            if window[1] > RATE_LIMITED_LOG_PER_MINUTE:
                self._log.warning("%d more detach failures over %s.max_dispatches_per_minute "
                                  "were not dispatched in the last minute",
                                  window[1] - RATE_LIMITED_LOG_PER_MINUTE, CONFIG_SECTION)
            window[0], window[1] = now, 0
        if len(times) < self.settings.max_dispatches_per_minute:
            return False
        self.stats["rate_limited"] += 1
        window[1] += 1
        if window[1] <= RATE_LIMITED_LOG_PER_MINUTE:
            self._log.warning(
                "detach failure of volume %s on server %s (%s) not dispatched: %d dispatches "
                "in the last minute reach %s.max_dispatches_per_minute; remedy it by hand if "
                "needed: st2 run dangling_volume.remedy server_id=%s volume_id=%s",
                failure.volume_id, failure.server_id, failure.source, len(times),
                CONFIG_SECTION, failure.server_id, failure.volume_id)
        return True

    def _release_held(self):
        """Ack the held messages whose events the tracker no longer keeps, once everything they
        may have led to has been dispatched."""
        if self._pending or not self._held:
            return
        still = []
        for message, event in self._held:
            if self.tracker.is_waiting(event):
                still.append((message, event))
            else:
                message.ack()
        self._held[:] = still

    def _tick(self, now):
        self._enqueue(self.tracker.expire())
        self._flush_pending()
        self._release_held()
        if now >= self._next_stats:
            self._next_stats = now + STATS_INTERVAL_S
            current = dict(self.stats)
            if current != self._last_stats:
                self._last_stats = current
                self._log.info("Nova notifications so far: %s", self._stats_text())

    def _stats_text(self):
        counts = ", ".join("%s %d" % (k, v) for k, v in sorted(self.stats.items())) or "none"
        return "%s; tracker %s; held %d; pending %d" % (
            counts, self.tracker.sizes(), len(self._held), len(self._pending))


def _shape_problem(body):
    """Why a body that names no relevant event type is malformed, or None when it looks like a
    JSON object. Cheap on purpose (no parsing): this runs for nearly every message."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return "body is not UTF-8"
    if not isinstance(body, str):
        return "body is of type %s" % type(body).__name__
    text = body.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return "body is not a JSON object"
    return None


def _describe(message):
    """A message in a log line: routing key, size, ids; never the body (it may hold tokens)."""
    info = getattr(message, "delivery_info", None) or {}
    props = getattr(message, "properties", None) or {}
    return "routing key %s, %d bytes, content type %s, redelivered %s" % (
        info.get("routing_key"), len(message.body or b""),
        props.get("content_type") or getattr(message, "content_type", None),
        info.get("redelivered"))
