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
# Exception texts longer than this are cut BEFORE any regex looks at them (a legacy `exception`
# is a repr of unbounded size; the patterns below are linear, the cap keeps them cheap too).
MAX_EXCEPTION_TEXT = 2000
MAX_HOST = 253  # RFC 1123 / DNS name length

# What Nova sends, and nothing else (openstack.md §2.2, §2.4; notification-samples/):
# ids are canonical lower-case UUIDs (oslo's uuidutils), request ids "req-<uuid>"
# (oslo.context), hosts hostname-shaped (RFC 1123 labels), timestamps str(utcnow()).
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_HEX32 = re.compile(r"[0-9a-f]{32}\Z")  # oslo's _unique_id (uuid4().hex)
_REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?\Z")
# Text st2 would render as Jinja again (stackstorm.md §4: render_live_params renders any
# live parameter holding "{{" or "{%"; "{#" opens a comment).
_MARKERS = ("{{", "{%", "{#")


class _Reject(Exception):
    """A relevant event type whose message has a shape Nova never sends: classify() -> None."""


def _matches(pattern, value):
    return isinstance(value, str) and pattern.match(value) is not None


def is_uuid(value):
    return isinstance(value, str) and _UUID.match(value) is not None


def is_request_id(value):
    return isinstance(value, str) and _REQUEST_ID.match(value) is not None


def is_hostname(value):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_HOST:
        return False
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    return all(_LABEL.match(label) for label in labels)


def strip_markers(text):
    """`text` without any template marker ({{, {%, {#), also none that removing one re-creates
    (e.g. "{{{" or "{{%"): each pass removes the opening brace of every marker; the text gets
    shorter on every pass that finds one, so this ends."""
    if not isinstance(text, str):
        return text
    while any(marker in text for marker in _MARKERS):
        for marker in _MARKERS:
            text = text.replace(marker, marker[1:])
    return text


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


def _opt(value, valid):
    """None when absent (None); the value when `valid`; else the message is rejected."""
    if value is None:
        return None
    if not valid(value):
        raise _Reject()
    return value


def _uuid_field(value):
    return _opt(value, is_uuid)


def _host_field(value):
    return _opt(value, is_hostname)


def _str_field(value):
    return _opt(value, lambda v: isinstance(v, str))


def _data(payload, name=None):
    """The nova_object.data of a versioned payload; a payload that is not one of `name` (when
    given) is rejected."""
    data = payload.get("nova_object.data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return None
    if name is not None and payload.get("nova_object.name") != name:
        raise _Reject()
    return data


_VERSIONED_PUBLISHER = re.compile(r"[a-z][a-z0-9-]{0,63}:")  # "<binary>:", e.g. nova-compute:


def _publisher_host(message, prefix):
    """'<binary>:<host>' (versioned, prefix ":") or 'compute.<host>' (legacy) -> <host>; a
    publisher of another form, or whose host is not hostname-shaped, is rejected."""
    publisher = message.get("publisher_id")
    if publisher is None:
        return None
    if not isinstance(publisher, str):
        raise _Reject()
    if prefix == ":":
        found = _VERSIONED_PUBLISHER.match(publisher)
        if found is None:
            raise _Reject()
        return _host_field(publisher[found.end():])
    if not publisher.startswith(prefix):
        raise _Reject()
    return _host_field(publisher[len(prefix):])


def _priority(message, wanted):
    if message.get("priority") not in (None,) + wanted:
        raise _Reject()


def _common(message):
    request_id = _opt(message.get("_context_request_id"), is_request_id)
    message_id = _opt(message.get("message_id"), is_uuid)
    unique_id = _opt(message.get("_unique_id"), lambda v: _matches(_HEX32, v))
    timestamp = _opt(message.get("timestamp"), lambda v: _matches(_TIMESTAMP, v))
    return request_id, message_id or unique_id, timestamp


def _cap(text):
    return text if len(text) <= MAX_EXCEPTION_TEXT else text[:MAX_EXCEPTION_TEXT]


def _reason(name, text):
    text = " ".join(_cap(text).split()) if isinstance(text, str) else ""
    reason = strip_markers("%s: %s" % (name, text) if name and text else (name or text))
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 3] + "..."


def _volume_event(message, event_type):
    _priority(message, ("INFO",))
    data = _data(message.get("payload"), "InstanceActionVolumePayload")
    if data is None:
        return None
    server_id, volume_id = _uuid_field(data.get("uuid")), _uuid_field(data.get("volume_id"))
    host = _host_field(data.get("host"))
    payload_request_id = _opt(data.get("request_id"), is_request_id)
    publisher_host = _publisher_host(message, ":")
    request_id, message_id, timestamp = _common(message)
    if not (server_id and volume_id):
        return None
    cls = DetachStarted if event_type == START else DetachEnded
    return cls(server_id, volume_id, host or publisher_host,
               request_id or payload_request_id, message_id, timestamp, event_type)


# Linear patterns only: no repetition that can match the same character two ways (the old
# message pattern let a backslash match as "\\." or as "(?!quote)." and backtracked
# exponentially on an unclosed quote), and every text is cut to MAX_EXCEPTION_TEXT first.
_CLASS_IN_TEXT = re.compile(r"""['"](?:class|exception)['"][ \t]*:[ \t]*['"]([\w.]{1,255})['"]""")
_MESSAGE_IN_TEXT = re.compile(
    r"""['"]message['"][ \t]*:[ \t]*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")""", re.S)
_CALL_TEXT = re.compile(r"""([A-Za-z_][\w.]{0,254})\(""")
# Exception classes known by their message (nova/exception.py msg_fmt), for payloads naming none.
_KNOWN_MESSAGES = (("Device detach failed for ", "DeviceDetachFailed"),)


def _instance_ids(instance):
    """(uuid, host) of the legacy args.instance: a flat dict (to_primitive of the Instance, as
    on the lab) or a nova object primitive {"nova_object.data": {...}}."""
    if instance is None:
        return None, None
    if not isinstance(instance, dict):
        raise _Reject()
    data = _data(instance, "Instance") or instance
    return _uuid_field(data.get("uuid")), _host_field(data.get("host"))


def _legacy_reason(exc):
    name = text = None
    if isinstance(exc, dict):
        name = _id(exc.get("class")) or _id(exc.get("exception"))
        text = exc.get("message") or exc.get("msg")
        name = name if name is None or re.match(r"[\w.]+\Z", name) else None
    elif isinstance(exc, str):
        exc = _cap(exc)  # before any regex
        found, said = _CLASS_IN_TEXT.search(exc), _MESSAGE_IN_TEXT.search(exc)
        call = _CALL_TEXT.match(exc.strip())
        if found or said:
            name = found.group(1) if found else None
            if said:
                text = said.group(1) if said.group(1) is not None else said.group(2)
                text = text.replace("\\'", "'").replace('\\"', '"')
        elif call and exc.rstrip().endswith(")"):  # "ClientException()", "DiskNotFound('...')"
            name = call.group(1)
            text = exc.strip()[call.end():-1].strip().strip("'\"")
        else:
            text = exc
    elif exc is not None:
        raise _Reject()  # Nova serializes the exception as a dict or a string
    if not name and isinstance(text, str):
        name = next((cls for prefix, cls in _KNOWN_MESSAGES if text.startswith(prefix)), None)
    return _reason(name, text) or "detach_volume failed (no exception details)"


def _legacy(message, event_type):
    priority = message.get("priority")
    if isinstance(priority, str) and priority.upper() not in ("ERROR", "CRITICAL"):
        return None
    _priority(message, ("ERROR",))
    payload = message.get("payload")
    args = payload.get("args") if isinstance(payload, dict) else None
    if not isinstance(args, dict):
        return None
    server_id, host = _instance_ids(args.get("instance"))
    volume_id = _uuid_field(args.get("volume_id"))
    _uuid_field(args.get("attachment_id"))
    publisher_host = _publisher_host(message, "compute.")
    request_id, message_id, timestamp = _common(message)
    return LegacyDetachError(server_id, volume_id, host or publisher_host, request_id,
                             message_id, timestamp, _legacy_reason(payload.get("exception")))


_HTTP_STATUS = re.compile(r"\(HTTP (\d{3})\)")


def _compute_exception(message, event_type):
    _priority(message, ("ERROR",))
    data = _data(message.get("payload"), "ExceptionPayload")
    if data is None:
        return None
    # ExceptionPayload 1.1: every field a string (nova/notifications/objects/exception.py)
    for key in ("exception", "function_name", "module_name", "exception_message", "traceback"):
        _str_field(data.get(key))
    name, function_name, module_name = (_id(data.get(key)) for key in
                                        ("exception", "function_name", "module_name"))
    if name is not None and not re.match(r"[\w.]+\Z", name):
        raise _Reject()
    text = _cap(data.get("exception_message") or "")
    if module_name and module_name.split(".")[0] == "cinderclient":
        status = _HTTP_STATUS.search(text)
        reason = "cinderclient %s%s" % (name or "exception",
                                        " (HTTP %s)" % status.group(1) if status else "")
    else:
        reason = _reason(name, text) or "compute.exception (no details)"
    publisher_host = _publisher_host(message, ":")
    request_id, message_id, timestamp = _common(message)
    return ComputeException(request_id, publisher_host, name, function_name,
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
    if handler is None:
        return None
    try:
        return handler(message, event_type)
    except _Reject:
        return None


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
    """The dangling_volume.detach_failed trigger payload of a Failure: every field a string
    without template markers (st2 would render them again: stackstorm.md §4)."""
    values = dataclasses.asdict(failure)
    return {name: strip_markers("" if values[name] is None else str(values[name]))
            for name, _ in PAYLOAD_FIELDS}
