"""Recognising a failed Nova volume detach in its notifications: pure and stdlib only, since a
sensor process sees sensors/ and what st2 ships, never actions/lib (stackstorm.md §5).

There is no instance.volume_detach.error. A failed detach shows as (openstack.md §2.2, lab-trials
§12.3-§12.6), each with the request's `_context_request_id`:
- legacy `detach_volume` (ERROR, notifications.error, publisher compute.<host>): payload
  {exception, args: {instance, volume_id, attachment_id}}; `exception` arrives as a dict, as the
  repr of a dict, or as "ClientException()";
- versioned `compute.exception` (ERROR, versioned_notifications.error): only the innermost failing
  function and exception, tied to its `instance.volume_detach.start` by the request id;
- an `instance.volume_detach.start` with no `.end` within a window, timed by arrival.
decode() gives the message dict inside an AMQP body, classify() the event in it, DetachTracker
turns events into Failures, payload_for() makes the trigger payload (TRIGGER_PAYLOAD_SCHEMA).
"""
import collections
import dataclasses
import json
import re
import time

DEFAULT_WINDOW_S = 180.0  # libvirt gives up after 8 attempts x 20 s = 160 s (openstack.md §2.2)
# A request id that produced a failure is remembered this long so that a late second signal for
# it is not a second failure: with cinder-volume down, Nova's 5 attachment_delete retries take
# about 5 min at the default 60 s RPC timeout (lab-trials §12.3), well after the .start timed out.
DEFAULT_REMEMBER_S = 600.0
DEFAULT_MAX_PENDING = 10000  # per table (starts, unmatched signals, remembered ids)

START, END = "instance.volume_detach.start", "instance.volume_detach.end"
LEGACY_ERROR, COMPUTE_EXCEPTION = "detach_volume", "compute.exception"
SOURCES = ("legacy", "versioned", "timeout")
MAX_ID, MAX_REASON = 255, 300


class BadMessage(ValueError):
    """A body that is not a notification message; str(exc) is a short reason."""


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def _parse(data, what):
    if isinstance(data, dict):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage("%s is not UTF-8" % what) from None
    if not isinstance(data, str):
        raise BadMessage("%s is of type %s, not bytes, str or dict" % (what, type(data).__name__))
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise BadMessage("%s is not JSON" % what) from None
    if not isinstance(value, dict):
        raise BadMessage("%s is JSON %s, not an object" % (what, _JSON_TYPES.get(type(value))))
    return value


def decode(body):
    """The message dict in `body` (bytes, str or an already decoded dict), either in the
    messagingv2 envelope {"oslo.version": "2.0", "oslo.message": "<JSON>"} or bare (driver
    `messaging`). Raises BadMessage, and nothing else, for anything that is not one."""
    try:
        message = _parse(body, "body")
        if "oslo.message" not in message:
            return message
        version = message.get("oslo.version")
        if version is not None and str(version).split(".")[0] != "2":
            raise BadMessage("unsupported oslo.version %.20r" % (version,))
        return _parse(message["oslo.message"], "oslo.message")
    except BadMessage:
        raise
    except Exception as exc:  # e.g. MemoryError on a pathological body: still just a bad message
        raise BadMessage("undecodable body (%s)" % type(exc).__name__) from None


def _record(name, fields, doc):
    """A frozen dataclass (equal only to its own class, unlike a namedtuple)."""
    cls = dataclasses.make_dataclass(name, fields.split(), frozen=True)
    cls.__doc__, cls.__module__ = doc, __name__
    return cls


_VOLUME_FIELDS = "server_id volume_id host request_id message_id timestamp event_type"
DetachStarted = _record("DetachStarted", _VOLUME_FIELDS, "instance.volume_detach.start")
DetachEnded = _record("DetachEnded", _VOLUME_FIELDS, "instance.volume_detach.end: it succeeded.")
LegacyDetachError = _record(
    "LegacyDetachError", "server_id volume_id host request_id message_id timestamp reason",
    "Legacy `detach_volume` ERROR; server_id or volume_id is None where the payload lacks it.")
ComputeException = _record(
    "ComputeException", "request_id host exception function_name module_name message_id "
    "timestamp reason", "Versioned `compute.exception`: it names no server or volume.")
Failure = _record(
    "Failure", "server_id volume_id host reason event_type message_id timestamp source",
    "A failed detach ready to dispatch: every field a string, source one of SOURCES.")
# Other fields are str or None (absent from the message); reason is always a non-empty str.


def _id(value):
    """A usable identifier or short text field: a non-blank string of bounded length."""
    if isinstance(value, str) and value.strip() and len(value) <= MAX_ID:
        return value.strip()
    return None


def _data(payload):
    data = payload.get("nova_object.data") if isinstance(payload, dict) else None
    return data if isinstance(data, dict) else None


def _publisher_host(message):
    """'nova-compute:<host>' (versioned) or 'compute.<host>' (legacy) -> <host>."""
    publisher = message.get("publisher_id")
    if not isinstance(publisher, str):
        return None
    sep = ":" if ":" in publisher else "."
    return _id(publisher.partition(sep)[2])


def _common(message):
    return (_id(message.get("_context_request_id")),
            _id(message.get("message_id")) or _id(message.get("_unique_id")),
            _id(message.get("timestamp")))


def _reason(name, text):
    text = " ".join(text.split()) if isinstance(text, str) else ""
    reason = "%s: %s" % (name, text) if name and text else (name or text)
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 3] + "..."


def _volume_event(message, event_type):
    data = _data(message.get("payload"))
    if data is None:
        return None
    server_id, volume_id = _id(data.get("uuid")), _id(data.get("volume_id"))
    if not (server_id and volume_id):
        return None
    request_id, message_id, timestamp = _common(message)
    cls = DetachStarted if event_type == START else DetachEnded
    return cls(server_id, volume_id, _id(data.get("host")) or _publisher_host(message),
               request_id or _id(data.get("request_id")), message_id, timestamp, event_type)


_CLASS_IN_TEXT = re.compile(r"""['"](?:class|exception)['"]\s*:\s*['"]([\w.]+)['"]""")
_MESSAGE_IN_TEXT = re.compile(r"""['"]message['"]\s*:\s*(['"])((?:\\.|(?!\1).)*)\1""", re.S)
_CALL_TEXT = re.compile(r"""^\s*([A-Za-z_][\w.]*)\((.*)\)\s*$""", re.S)
# Exception classes known by their message (nova/exception.py msg_fmt), for payloads naming none.
_KNOWN_MESSAGES = (("Device detach failed for ", "DeviceDetachFailed"),)


def _instance_ids(instance):
    """(uuid, host) of the legacy args.instance: a flat dict (to_primitive of the Instance, as
    on the lab) or a nova object primitive {"nova_object.data": {...}}."""
    if not isinstance(instance, dict):
        return None, None
    data = _data(instance) or instance
    return _id(data.get("uuid")), _id(data.get("host"))


def _legacy_reason(exc):
    name = text = None
    if isinstance(exc, dict):
        name = _id(exc.get("class")) or _id(exc.get("exception"))
        text = exc.get("message") or exc.get("msg")
    elif isinstance(exc, str):
        found, said, call = (_CLASS_IN_TEXT.search(exc), _MESSAGE_IN_TEXT.search(exc),
                             _CALL_TEXT.match(exc))
        if found or said:
            name = found.group(1) if found else None
            text = said.group(2).replace("\\'", "'").replace('\\"', '"') if said else None
        elif call:  # "ClientException()", "DiskNotFound('...')"
            name, text = call.group(1), call.group(2).strip().strip("'\"")
        else:
            text = exc
    if not name and isinstance(text, str):
        name = next((cls for prefix, cls in _KNOWN_MESSAGES if text.startswith(prefix)), None)
    return _reason(name, text) or "detach_volume failed (no exception details)"


def _legacy(message, event_type):
    priority = message.get("priority")
    if isinstance(priority, str) and priority.upper() not in ("ERROR", "CRITICAL"):
        return None
    payload = message.get("payload")
    args = payload.get("args") if isinstance(payload, dict) else None
    if not isinstance(args, dict):
        return None
    server_id, host = _instance_ids(args.get("instance"))
    request_id, message_id, timestamp = _common(message)
    return LegacyDetachError(server_id, _id(args.get("volume_id")),
                             host or _publisher_host(message), request_id, message_id, timestamp,
                             _legacy_reason(payload.get("exception")))


_HTTP_STATUS = re.compile(r"\(HTTP (\d{3})\)")


def _compute_exception(message, event_type):
    data = _data(message.get("payload"))
    if data is None:
        return None
    name, function_name, module_name = (_id(data.get(key)) for key in
                                        ("exception", "function_name", "module_name"))
    text = data.get("exception_message")
    text = text if isinstance(text, str) else ""
    if module_name and module_name.split(".")[0] == "cinderclient":
        status = _HTTP_STATUS.search(text)
        reason = "cinderclient %s%s" % (name or "exception",
                                        " (HTTP %s)" % status.group(1) if status else "")
    else:
        reason = _reason(name, text) or "compute.exception (no details)"
    request_id, message_id, timestamp = _common(message)
    return ComputeException(request_id, _publisher_host(message), name, function_name,
                            module_name, message_id, timestamp, reason)


_CLASSIFIERS = {START: _volume_event, END: _volume_event, LEGACY_ERROR: _legacy,
                COMPUTE_EXCEPTION: _compute_exception}


def classify(message):
    """The detach event in a decoded message, or None for anything else (other event types,
    attach notifications, payloads missing what the event needs). Never raises."""
    if not isinstance(message, dict):
        return None
    event_type = message.get("event_type")
    handler = _CLASSIFIERS.get(event_type) if isinstance(event_type, str) else None
    return handler(message, event_type) if handler else None


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
        return entry is not None and entry[1] is event

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


PAYLOAD_FIELDS = (
    ("server_id", "UUID of the Nova server the volume failed to detach from"),
    ("volume_id", "UUID of the Cinder volume"),
    ("host", "compute host of the server (empty when no notification named it)"),
    ("reason", "short human description of the failure"),
    ("event_type", "event type of the notification that revealed the failure"),
    ("message_id", "oslo.messaging message_id of that notification"),
    ("timestamp", "its timestamp as Nova sent it (UTC, no zone)"),
    ("source", "legacy | versioned | timeout: which signal revealed the failure"),
)
TRIGGER_PAYLOAD_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "string", "required": True, "description": text}
                   for name, text in PAYLOAD_FIELDS},
}
TRIGGER_PAYLOAD_SCHEMA["properties"]["source"]["enum"] = list(SOURCES)


def payload_for(failure):
    """The dangling_volume.detach_failed trigger payload of a Failure."""
    values = dataclasses.asdict(failure)
    return {name: "" if values[name] is None else str(values[name]) for name, _ in PAYLOAD_FIELDS}
