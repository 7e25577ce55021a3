"""Correlating Nova's detach events into failed detaches: in memory, timed by arrival.

nova_detach_events.classify() turns one message into an event; the DetachTracker here decides,
across messages, which events make a failure and when (docs/nova-notifications.md, "What a
failed detach emits"): a legacy `detach_volume` ERROR at once, a `compute.exception` once its
`instance.volume_detach.start` (same request id) is known, a `.start` with no `.end` within the
window. Pure and stdlib only, like nova_detach_events.
"""
import collections
import time

from nova_detach_events import (COMPUTE_EXCEPTION, END, LEGACY_ERROR, START, ComputeException,
                                DetachEnded, DetachStarted, Failure, LegacyDetachError)

# libvirt gives up after 8 attempts x 20 s = 160 s (docs/nova-notifications.md, "Timings").
DEFAULT_WINDOW_S = 180.0
# A request id that produced a failure is remembered this long so that a late second signal for
# it is not a second failure: with cinder-volume down, Nova's 5 attachment_delete retries take
# about 5 min at the default 60 s RPC timeout (docs/nova-notifications.md, "Timings"), well after
# the .start timed out.
DEFAULT_REMEMBER_S = 600.0
DEFAULT_MAX_PENDING = 10000  # per table (starts, unmatched signals, remembered ids)


def _failure(server_id, volume_id, host, reason, event_type, message_id, timestamp, source):
    return Failure(server_id, volume_id, host or "", reason, event_type, message_id or "",
                   timestamp or "", source)


class DetachTracker:
    """Correlates events into Failures, in memory, timed by arrival on `clock`.

    feed(event) returns the Failures an event completes: a legacy `detach_volume` at once, a
    `compute.exception` once its `.start` (same request id) is known, even when the exception
    came first (unmatched signals wait window_s). One failure per request id: the first signal
    wins and the id is remembered for max(remember_s, window_s). expire(), called periodically,
    returns the `.start`s that got no `.end` within window_s. Each table holds at most
    max_pending entries; the oldest are dropped and counted in `dropped`."""

    def __init__(self, window_s=DEFAULT_WINDOW_S, clock=time.monotonic,
                 max_pending=DEFAULT_MAX_PENDING, remember_s=DEFAULT_REMEMBER_S):
        if not window_s > 0 or max_pending < 1:
            raise ValueError("window_s must be > 0 and max_pending >= 1")
        self.window_s, self.clock, self.max_pending = float(window_s), clock, int(max_pending)
        self.remember_s = max(float(remember_s), self.window_s)
        self._starts = collections.OrderedDict()   # request id (or ids) -> (arrival, start)
        self._signals = collections.OrderedDict()  # request id -> (arrival, unmatched signal)
        self._done = collections.OrderedDict()     # request id -> arrival of its failure
        self.dropped = collections.Counter()       # table name -> entries dropped by the cap
        self.unmatched = 0                          # signals that expired with no .start

    def sizes(self):
        """Entries per table (no __len__: an empty tracker must not be falsy)."""
        return {"starts": len(self._starts), "signals": len(self._signals),
                "done": len(self._done)}

    def feed(self, event):
        now = self.clock()
        self._prune(now)
        if isinstance(event, DetachStarted):
            return self._on_start(event, now)
        if isinstance(event, DetachEnded):
            self._starts.pop(event.request_id or (event.server_id, event.volume_id), None)
        elif isinstance(event, (LegacyDetachError, ComputeException)):
            return self._on_signal(event, now)
        return []

    def is_waiting(self, event):
        """True while this very event (as fed) is kept: a .start waiting for its .end, or a
        signal waiting for its .start. The consumer keeps such a message unacknowledged until
        then, so a restart of the sensor does not lose what the tracker had in memory."""
        if isinstance(event, DetachStarted):
            entry = self._starts.get(event.request_id or (event.server_id, event.volume_id))
        elif isinstance(event, (LegacyDetachError, ComputeException)) and event.request_id:
            entry = self._signals.get(event.request_id)
        else:
            return False
        # equal, not only identical: the same message redelivered (after a reconnect) is held
        # again until the window of the .start kept from its first delivery ends
        return entry is not None and entry[1] == event

    def expire(self):
        now = self.clock()
        self._prune(now)
        failures = []
        while self._starts:
            key, (arrival, start) = next(iter(self._starts.items()))
            if now - arrival <= self.window_s:
                break
            del self._starts[key]
            self._remember(start.request_id, now)
            failures.append(_failure(
                start.server_id, start.volume_id, start.host,
                "no %s within %g s" % (END, self.window_s), START, start.message_id,
                start.timestamp, "timeout"))
        return failures

    def _put(self, table, name, key, value):
        table[key] = value
        while len(table) > self.max_pending:
            table.popitem(last=False)
            self.dropped[name] += 1

    def _remember(self, request_id, now):
        if request_id:
            self._put(self._done, "done", request_id, now)

    def _prune(self, now):
        while self._signals and now - next(iter(self._signals.values()))[0] > self.window_s:
            self._signals.popitem(last=False)
            self.unmatched += 1
        while self._done and now - next(iter(self._done.values())) > self.remember_s:
            self._done.popitem(last=False)

    def _on_start(self, start, now):
        request_id = start.request_id
        if request_id in self._done:
            return []
        if request_id in self._signals:
            failure = self._complete(self._signals.pop(request_id)[1], start)
            self._remember(request_id, now)
            return [failure]
        key = request_id or (start.server_id, start.volume_id)
        if key not in self._starts:
            self._put(self._starts, "starts", key, (now, start))
        return []

    def _on_signal(self, signal, now):
        request_id = signal.request_id
        if request_id in self._done:
            return []
        start = self._starts.pop(request_id, (None, None))[1] if request_id else None
        failure = self._complete(signal, start)
        if failure is not None:
            self._remember(request_id, now)
            self._signals.pop(request_id, None)  # an earlier signal of this request: superseded
            return [failure]
        if request_id and request_id not in self._signals:
            self._put(self._signals, "signals", request_id, (now, signal))
        return []

    @staticmethod
    def _complete(signal, start):
        """The Failure a signal makes with its .start (None: not enough to name a volume)."""
        if isinstance(signal, ComputeException):
            if start is None:
                return None
            return _failure(start.server_id, start.volume_id, start.host or signal.host,
                            signal.reason, COMPUTE_EXCEPTION, signal.message_id,
                            signal.timestamp, "versioned")
        server_id = signal.server_id or (start.server_id if start else None)
        volume_id = signal.volume_id or (start.volume_id if start else None)
        if not (server_id and volume_id):
            return None
        return _failure(server_id, volume_id, signal.host or (start.host if start else None),
                        signal.reason, LEGACY_ERROR, signal.message_id, signal.timestamp,
                        "legacy")
