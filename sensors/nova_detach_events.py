"""Reading a Nova notification about a volume detach: pure and stdlib only, since a sensor
process sees sensors/ and what st2 ships, never actions/lib (docs/stackstorm.md, "What a sensor
process sees").

There is no instance.volume_detach.error (docs/nova-notifications.md, "There is no
volume_detach.error"). A failed detach shows as (same file, "What a failed detach emits"), each
with the request's `_context_request_id`:
- legacy `detach_volume` (ERROR, notifications.error, publisher compute.<host>): payload
  {exception, args: {instance, volume_id, attachment_id}}; `exception` arrives as a dict, as the
  repr of a dict, or as "ClientException()";
- versioned `compute.exception` (ERROR, versioned_notifications.error): only the innermost failing
  function and exception, tied to its `instance.volume_detach.start` by the request id;
- an `instance.volume_detach.start` with no `.end` within a window, timed by arrival.
decode() gives the message dict inside an AMQP body, classify() the event in it (only shapes
Nova sends; anything else is None), payload_for() makes the trigger payload of a Failure
(TRIGGER_PAYLOAD_SCHEMA). Which events make a Failure, and when, is detach_tracker.py.
"""
import dataclasses
import json
import re

START, END = "instance.volume_detach.start", "instance.volume_detach.end"
LEGACY_ERROR, COMPUTE_EXCEPTION = "detach_volume", "compute.exception"
SOURCES = ("legacy", "versioned", "timeout")
MAX_ID, MAX_REASON = 255, 300
# Exception texts longer than this are cut BEFORE any regex looks at them (a legacy `exception`
# is a repr of unbounded size; the patterns below are linear, the cap keeps them cheap too).
MAX_EXCEPTION_TEXT = 2000
MAX_HOST = 253  # RFC 1123 / DNS name length

# What Nova sends, and nothing else (docs/nova-notifications.md, "Wire format on RabbitMQ"):
# ids are canonical lower-case UUIDs (oslo's uuidutils), request ids "req-<uuid>"
# (oslo.context), hosts hostname-shaped (RFC 1123 labels), timestamps str(utcnow()).
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_HEX32 = re.compile(r"[0-9a-f]{32}\Z")  # oslo's _unique_id (uuid4().hex)
_REQUEST_ID = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?\Z")
# Text st2 would render as Jinja again (docs/stackstorm.md, "Parameters are rendered again":
# render_live_params renders any live parameter holding "{{" or "{%"; "{#" opens a comment).
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
    without template markers (st2 would render them again: docs/stackstorm.md,
    "Parameters are rendered again")."""
    values = dataclasses.asdict(failure)
    return {name: strip_markers("" if values[name] is None else str(values[name]))
            for name, _ in PAYLOAD_FIELDS}
