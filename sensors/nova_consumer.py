"""The consumer behind the dangling_volume.detach_failed sensor: Nova's notifications from
RabbitMQ (kombu, which st2 ships: never pin it in requirements.txt) to trigger dispatches.

It lives in sensors/ and imports only nova_detach_events (beside it), kombu and the stdlib: a
sensor process sees sensors/, its pip packages and st2's own, never actions/lib
(../shared/reference/stackstorm.md §5).

What it does, and why (openstack.md §2.4, stackstorm.md §5 and §11):
- Its own durable queue (notifications.queue), bound to Nova's topic exchange with the configured
  routing keys. Never the shared notifications.* queues: other consumers (Ceilometer, ...) read
  those, and taking messages from them would steal theirs.
- The exchange is declared with Nova's own flags (topic, durable from
  notifications.exchange_durable, not auto-delete): any other flags are refused by the broker
  (406 PRECONDITION_FAILED), which is logged naming the key to change.
- Exchange, queue and bindings are declared again on every (re)connect: a broker restart drops a
  non-durable exchange and every binding to it, while the durable queue and its persistent
  messages survive.
- run() never raises and never returns until stop(): st2 respawns a dead sensor only twice. Every
  failure (broker down, restart, refused declare, st2 unable to take a dispatch) is logged, then
  the loop backs off (exponential, capped, with jitter) and reconnects.
- Every message is acked or rejected (without requeue), so none comes back forever:
  - bodies that cannot name a detach event (no relevant event type in the text) are acked after
    a cheap shape check, without JSON parsing: that is 99.9 % of the traffic and the hot path;
  - malformed bodies (not UTF-8, not JSON, JSON but not a notification) are rejected and logged
    briefly (rate-limited);
  - a relevant message is acked only after what it completes has been dispatched; a .start that
    waits for its .end (or a signal waiting for its .start) stays unacked while it waits (at most
    MAX_HELD at a time, well under the prefetch, so waiting never stalls the flow). So a restart
    of the sensor loses nothing that reached the queue: the broker redelivers what was unacked.
- expire() runs every tick (<= 1 s), so a .start without .end fires within about a second of
  notifications.detach_window.
- One dispatch per (server, volume) within notifications.dedup_window: remembered in memory and in
  the st2 datastore (`set_value(..., ttl=dedup_window)`), so a retrying user, a redelivered
  message or a restarted sensor does not start a second remedy. The datastore has no
  compare-and-set: with several sensor containers two may dispatch the same failure. That is best
  effort by design; the guarantee is the remedy's concurrency policy plus a remedy that changes
  nothing on a healthy attachment.
- At most notifications.max_dispatches_per_minute dispatches in any 60 s: a flood of failures
  (real or forged) does not start a flood of remedies. What is over the rate is counted
  (stats "rate_limited"), logged with its server and volume (rate-limited too, then a summary per
  minute) and not dispatched.
- TLS (notifications.ssl) verifies the broker's certificate (ssl.CERT_REQUIRED, against
  notifications.ssl_ca_file or the system CAs) and, unless notifications.ssl_verify_hostname is
  false, that it names the broker host (check_hostname).
- Logs, config errors and reprs never show the transport URL's password, whatever it holds
  (@ : ; / or percent-escapes, any length): URLs are masked, and exception texts are scrubbed of
  every password in the configured URL.
"""
import collections
import dataclasses
import hashlib
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import traceback
import urllib.parse

import kombu
import kombu.exceptions

import nova_detach_events as nde

TRIGGER_REF = "dangling_volume.detach_failed"  # st2 wants "<pack>.<trigger name>"
CONFIG_SECTION = "notifications"
SHARED_QUEUE_PREFIXES = ("notifications.", "versioned_notifications.")
DEFAULTS = {  # the defaults of config.schema.yaml `notifications` (a unit test checks they agree)
    "transport_url": "",
    "ssl": False,
    "ssl_verify_hostname": True,
    "ssl_ca_file": "",
    "exchange": "nova",
    "exchange_durable": False,
    "queue": "dangling_volume.nova_detach_failures",
    "routing_keys": ["notifications.error", "versioned_notifications.info",
                     "versioned_notifications.error"],
    "detach_window": 180,
    "dedup_window": 900,
    "connect_timeout": 10,
    "heartbeat": 30,
    "max_dispatches_per_minute": 30,
}

PREFETCH_COUNT = 256     # unacked messages the broker may push at once
MAX_HELD = 128           # waiting .starts/signals kept unacked; < PREFETCH_COUNT, so never a stall
MAX_TICK_S = 1.0         # expire(), heartbeats and held-message releases at least this often
STOP_CHECK_S = 0.2       # longest wait for a message before the stop flag is looked at again
BACKOFF_INITIAL_S = 0.5  # first reconnect delay; doubles per failed attempt ...
BACKOFF_MAX_S = 30.0     # ... up to this; each delay is drawn in [d/2, d] (jitter)
STABLE_S = 10.0          # a session that consumed this long resets the back-off
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


# What a lost or refused broker connection raises (socket errors are OSErrors).
CONNECTION_ERRORS = _connection_error_types()


class ConfigError(ValueError):
    """The pack config's notifications section is unusable; str(exc) names the key."""


class DispatchError(RuntimeError):
    """st2 did not take a dispatch: the session is dropped so the message is redelivered."""


class SetupRefused(RuntimeError):
    """The broker refused a declare (already logged with what to change)."""


# ---------------------------------------------------------------- settings and URLs

@dataclasses.dataclass(frozen=True)
class Settings:
    transport_url: str
    ssl: bool
    exchange: str
    exchange_durable: bool
    queue: str
    routing_keys: tuple
    detach_window: float
    dedup_window: int
    connect_timeout: float
    heartbeat: int
    ssl_verify_hostname: bool = True
    ssl_ca_file: str = ""
    max_dispatches_per_minute: int = DEFAULTS["max_dispatches_per_minute"]

    def __repr__(self):
        return "Settings(%s)" % ", ".join("%s=%r" % item for item in self.masked().items())

    __str__ = __repr__

    @classmethod
    def from_config(cls, config):
        """Settings from the whole pack config (its `notifications` section, schema defaults
        for what is missing). Raises ConfigError naming the key."""
        section = (config or {}).get(CONFIG_SECTION)
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError("%s must be an object" % CONFIG_SECTION)
        values = dict(DEFAULTS)
        values.update({k: v for k, v in section.items() if v is not None})
        unknown = sorted(set(section) - set(DEFAULTS))
        if unknown:
            raise ConfigError("%s.%s is not a known setting" % (CONFIG_SECTION, unknown[0]))

        def check(key, ok, what):
            if not ok(values[key]):
                raise ConfigError("%s.%s must be %s" % (CONFIG_SECTION, key, what))

        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        check("transport_url", lambda v: isinstance(v, str), "a string")
        for key in ("ssl", "exchange_durable", "ssl_verify_hostname"):
            check(key, lambda v: isinstance(v, bool), "true or false")
        for key in ("exchange", "queue"):
            check(key, lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
        check("routing_keys", lambda v: isinstance(v, (list, tuple)) and v and all(
            isinstance(k, str) and k.strip() for k in v), "a non-empty list of strings")
        for key in ("detach_window", "dedup_window", "connect_timeout"):
            check(key, lambda v: is_int(v) and v >= 1, "an integer >= 1")
        check("heartbeat", lambda v: is_int(v) and v >= 0, "an integer >= 0")
        check("max_dispatches_per_minute", lambda v: is_int(v) and 1 <= v <= 10000,
              "an integer from 1 to 10000")
        check("ssl_ca_file", lambda v: isinstance(v, str), "a string (a path, or empty)")
        if values["ssl"] and values["ssl_ca_file"].strip():
            check("ssl_ca_file", lambda v: os.path.isfile(v.strip()), "a readable CA file")
        if values["queue"].startswith(SHARED_QUEUE_PREFIXES):
            raise ConfigError("%s.queue %r looks like one of Nova's shared queues: the sensor "
                              "needs a queue of its own" % (CONFIG_SECTION, values["queue"]))
        if values["transport_url"].strip():
            broker_urls(values["transport_url"])  # raises ConfigError when it is not usable
        return cls(values["transport_url"].strip(), values["ssl"], values["exchange"],
                   values["exchange_durable"], values["queue"],
                   tuple(k.strip() for k in values["routing_keys"]),
                   float(values["detach_window"]), values["dedup_window"],
                   float(values["connect_timeout"]), values["heartbeat"],
                   values["ssl_verify_hostname"], values["ssl_ca_file"].strip(),
                   values["max_dispatches_per_minute"])

    def masked(self):
        """For logs: every field, the URL's passwords masked."""
        return dict(dataclasses.asdict(self), transport_url=mask_url(self.transport_url))

    def ssl_options(self, url):
        """kombu's `ssl` argument for one broker URL: False without TLS, else the options py-amqp
        wraps the socket with (amqp.transport.SSLTransport._wrap_socket_sni): the certificate
        is required (ssl.CERT_REQUIRED), checked against ssl_ca_file (ca_certs; the system CAs
        when empty), and its name against the broker host: py-amqp sets check_hostname when
        server_hostname is given, which it is unless ssl_verify_hostname is false."""
        if not self.ssl:
            return False
        return {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": self.ssl_ca_file or None,
                "server_hostname": _url_host(url) if self.ssl_verify_hostname else None}


def _url_host(url):
    netloc = url.partition("://")[2].partition("/")[0]
    host = netloc.rpartition("@")[2]
    if host.startswith("["):  # [v6]:port
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


_SCHEMES = {"amqp": "amqp", "amqps": "amqps", "pyamqp": "amqp", "rabbit": "amqp"}
# user:password@ after the scheme or after a comma (oslo's several-hosts form). A password kombu
# accepts may hold @ : ; / , (urllib takes the userinfo up to the last @), so the password ends
# at the first @ that a host name follows; with none, at the last @ of the URL.
_USER = re.compile(r"""(?:://|,)[^:@/;,\s"']*:""")
_AFTER_AT = re.compile(r"""[^@\s"',;/]+(?:[\s"',;/]|\Z)""")
_URL_END = re.compile(r"""[\s"']|\Z""")


def _password_spans(text):
    """(start, end) of every password in the URL(s) of `text`."""
    spans, last = [], 0
    for user in _USER.finditer(text):
        begin = user.end()
        if begin <= last:
            continue
        stop = _URL_END.search(text, begin).start()
        ats = [i for i in range(begin, stop) if text[i] == "@"]
        chosen = next((i for i in ats if _AFTER_AT.match(text, i + 1)), ats[-1] if ats else None)
        if chosen is not None:
            spans.append((begin, chosen))
            last = chosen
    return spans


def mask_url(text):
    """The URL(s) in `text` with every password replaced by ****."""
    text, parts, last = text or "", [], 0
    for begin, end in _password_spans(text):
        parts += [text[last:begin], "****"]
        last = end
    return "".join(parts) + text[last:]


def _passwords(transport_url):
    """The configured passwords as written and percent-decoded (as kombu sees them)."""
    found = set()
    for begin, end in _password_spans(transport_url or ""):
        secret = transport_url[begin:end]
        if secret:
            found.update({secret, urllib.parse.unquote(secret)})
    return sorted(found, key=len, reverse=True)


def broker_urls(transport_url):
    """The kombu URLs of a transport_url, one per broker, tried in turn: kombu's own form
    (amqp://u:p@h:5672//, several joined by ';') or oslo.messaging's, as in nova.conf
    (rabbit://u:p@h1:5672,u:p@h2:5672/vhost). Raises ConfigError (URL masked)."""
    urls = []
    for part in (transport_url or "").split(";"):
        part = part.strip()
        if not part:
            continue
        scheme, sep, rest = part.partition("://")
        kombu_scheme = _SCHEMES.get(scheme.lower())
        if not sep or kombu_scheme is None:
            raise ConfigError("%s.transport_url %r: want amqp://, amqps:// or rabbit:// URLs"
                              % (CONFIG_SECTION, mask_url(part)))
        netloc, _, vhost = rest.partition("/")
        hosts = [h.strip() for h in netloc.split(",") if h.strip()]
        if not hosts or any(h.endswith("@") or h.startswith(":") for h in hosts):
            raise ConfigError("%s.transport_url %r names no broker host"
                              % (CONFIG_SECTION, mask_url(part)))
        # oslo's empty vhost ("...:5672/") means the default "/", which kombu writes "//"
        path = vhost if vhost else "/"
        urls.extend("%s://%s/%s" % (kombu_scheme, host, path) for host in hosts)
    if not urls:
        raise ConfigError("%s.transport_url is empty" % CONFIG_SECTION)
    return urls


class Scrubber:
    """Removes the configured passwords from any text before it is logged."""

    def __init__(self, transport_url):
        secrets = _passwords(transport_url)
        # A password of 1-2 characters is scrubbed where it stands alone (not inside a word):
        # replacing every "a" of a log line would make it unreadable, not safer.
        self._secrets = [p for p in secrets if len(p) >= 3]
        self._short = [re.compile(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(p))
                       for p in secrets if len(p) < 3]

    def __call__(self, text):
        text = mask_url(str(text))
        for secret in self._secrets:
            text = text.replace(secret, "****")
        for pattern in self._short:
            text = pattern.sub("****", text)
        return text

    def __repr__(self):
        return "Scrubber(%d passwords)" % (len(self._secrets) + len(self._short))


# ---------------------------------------------------------------- dedup

class Deduplicator:
    """One dispatch per (server, volume) within `window_s`: in memory, and in the st2 datastore
    through the sensor service (get_value / set_value with ttl) so a restarted sensor, or
    another sensor container that reads after this one wrote, also knows. Best effort: there is
    no compare-and-set, and a datastore error counts as "not seen" (dispatching twice is safer
    than not at all)."""

    KEY_PREFIX = "detach_failed"

    def __init__(self, service, window_s, logger, clock=time.monotonic):
        self._service, self.window_s, self._logger = service, int(window_s), logger
        self._clock = clock
        self._recent = collections.OrderedDict()  # (server, volume) -> monotonic expiry

    @classmethod
    def key(cls, server_id, volume_id):
        def part(value):
            if re.match(r"^[A-Za-z0-9_.-]{1,64}$", value):
                return value
            return "sha1-" + hashlib.sha1(value.encode("utf-8")).hexdigest()
        return "%s.%s.%s" % (cls.KEY_PREFIX, part(server_id), part(volume_id))

    def _prune(self, now):
        while self._recent and next(iter(self._recent.values())) <= now:
            self._recent.popitem(last=False)

    def seen(self, server_id, volume_id):
        now = self._clock()
        self._prune(now)
        if (server_id, volume_id) in self._recent:
            return True
        try:
            return self._service.get_value(self.key(server_id, volume_id)) is not None
        except Exception as exc:  # st2 returns None on API errors; a double may raise
            self._logger.warning("dedup: datastore read failed (%s): treating the failure of "
                                 "server %s volume %s as new", type(exc).__name__, server_id,
                                 volume_id)
            return False

    def remember(self, server_id, volume_id, note):
        self._recent[(server_id, volume_id)] = self._clock() + self.window_s
        self._recent.move_to_end((server_id, volume_id))
        try:
            self._service.set_value(self.key(server_id, volume_id), note, ttl=self.window_s)
        except Exception as exc:
            self._logger.warning("dedup: datastore write failed (%s): only this sensor process "
                                 "remembers server %s volume %s", type(exc).__name__,
                                 server_id, volume_id)


# ---------------------------------------------------------------- the consumer

class _Pending:
    """A Failure waiting for st2 to take its dispatch."""
    __slots__ = ("failure", "since", "attempts")

    def __init__(self, failure, since):
        self.failure, self.since, self.attempts = failure, since, 0


def backoff_delays(initial=None, maximum=None, rng=random.random):
    """Delays for consecutive failed attempts: initial * 2**n capped at maximum, each drawn
    uniformly from its upper half (jitter: a fleet of sensors does not reconnect in step)."""
    initial = BACKOFF_INITIAL_S if initial is None else initial
    maximum = BACKOFF_MAX_S if maximum is None else maximum
    attempt = 0
    while True:
        ceiling = min(maximum, initial * (2 ** min(attempt, 30)))
        yield ceiling / 2 + rng() * ceiling / 2
        attempt += 1


class NovaDetachConsumer:
    """The consumer loop. `service` is the st2 sensor service (dispatch, get_value, set_value);
    `logger` a logging.Logger. run() blocks until stop()."""

    def __init__(self, settings, service, logger=None, clock=time.monotonic,
                 backoff_initial_s=None, backoff_max_s=None):
        self.settings = settings
        self._service = service
        self._log = logger or logging.getLogger(__name__)
        self._clock = clock
        self._urls = broker_urls(settings.transport_url)
        self._scrub = Scrubber(settings.transport_url)
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._stop = threading.Event()
        self.tick_s = max(0.05, min(MAX_TICK_S, settings.detach_window / 10.0))
        self.tracker = nde.DetachTracker(window_s=settings.detach_window, clock=clock)
        self.dedup = Deduplicator(service, settings.dedup_window, self._log, clock=clock)
        self._dispatch_times = collections.deque()  # monotonic times of the last minute's
        self._rate_window = [0.0, 0]                # minute start, over-rate failures logged
        self._pending = collections.deque()  # _Pending, oldest first
        self._held = []                      # (message, event): unacked while the event waits
        self.stats = collections.Counter()
        self._malformed_window = [0.0, 0]    # minute start, messages logged in it
        self._next_stats = clock() + STATS_INTERVAL_S
        self._last_stats = {}
        self.connected = threading.Event()   # set while consuming (tests and the glue read it)

    # -- control

    def stop(self):
        """Ask run() to return: it does within STOP_CHECK_S (at once from a back-off wait)."""
        self._stop.set()

    def run(self):
        """Consume until stop(). Never raises: every error is logged, backed off, retried."""
        delays = backoff_delays(*self._backoff)
        attempt = 0
        self._log.info("consuming Nova notifications: %s", self.settings.masked())
        while not self._stop.is_set():
            url = self._urls[attempt % len(self._urls)]
            attempt += 1
            began = self._clock()
            consumed_s = [0.0]
            outcome = None  # what ended the session; None: stop() did
            try:
                self._session(url, consumed_s)
            except SetupRefused:
                outcome = "declare refused"  # logged where it happened, with what to change
            except DispatchError as exc:
                outcome = "st2 did not take a dispatch: %s" % self._scrub(exc)
            except Exception as exc:
                if isinstance(exc, CONNECTION_ERRORS):
                    outcome = "broker %s: %s: %s" % (
                        mask_url(url), type(exc).__name__, self._scrub(exc) or "closed")
                else:
                    outcome = "unexpected error on broker %s: %s" % (
                        mask_url(url), self._scrub("".join(traceback.format_exception(
                            type(exc), exc, exc.__traceback__))))
            if outcome is None or self._stop.is_set():
                break
            self.stats["reconnects"] += 1
            if consumed_s[0] >= STABLE_S:
                delays = backoff_delays(*self._backoff)  # it worked for a while: start over
            delay = next(delays)
            self._log.warning("%s; reconnecting in %.1f s (session lasted %.1f s)",
                              outcome, delay, self._clock() - began)
            self._wait_offline(delay)
        self._log.info("stopped consuming Nova notifications (%s)", self._stats_text())

    def _wait_offline(self, delay):
        """The back-off wait. A .start whose window ends meanwhile still fires (dispatching
        needs st2, not this broker); its message, redelivered later, is then a known request."""
        deadline = self._clock() + delay
        while not self._stop.is_set():
            left = deadline - self._clock()
            if left <= 0:
                return
            self._stop.wait(min(left, self.tick_s))
            self._enqueue(self.tracker.expire())
            try:
                self._flush_pending()
            except DispatchError:
                pass  # still pending: tried again on the next tick or after reconnecting

    # -- one connection

    def _session(self, url, consumed_s):
        settings = self.settings
        io_timeout = max(30.0, 3 * settings.connect_timeout)
        conn = kombu.Connection(
            url, ssl=settings.ssl_options(url), connect_timeout=settings.connect_timeout,
            heartbeat=settings.heartbeat,
            # Socket-level limits for what has no timeout of its own: a declare or an ack on a
            # broker that accepted the connection but stopped answering or reading. (The
            # consume loop's reads use drain_events' own timeout.)
            transport_options={"read_timeout": io_timeout, "write_timeout": io_timeout})
        try:
            conn.ensure_connection(max_retries=0)  # one attempt: the back-off is ours
            channel = conn.channel()
            queue = self._declare(channel)
            consumer = kombu.Consumer(channel, queues=[queue], on_message=self._on_message,
                                      auto_declare=False, no_ack=False)
            consumer.qos(prefetch_count=PREFETCH_COUNT)
            self._flush_pending()  # what st2 refused last time goes first
            consumer.consume()
            self._log.info("connected to %s: queue %r bound to exchange %r (durable=%s) with %s",
                           mask_url(url), settings.queue, settings.exchange,
                           settings.exchange_durable, ", ".join(settings.routing_keys))
            self.connected.set()
            started = self._clock()
            next_tick = started
            while not self._stop.is_set():
                try:
                    conn.drain_events(timeout=min(self.tick_s, STOP_CHECK_S))
                except socket.timeout:
                    pass
                now = self._clock()
                consumed_s[0] = now - started
                if now >= next_tick:
                    next_tick = now + self.tick_s
                    self._tick(now)
                    conn.heartbeat_check()
        finally:
            self.connected.clear()
            # Unacked messages (held or in flight) go back to the queue when the channel
            # closes: the broker redelivers them to the next session.
            del self._held[:]
            try:
                conn.release()
            except Exception:  # the connection is already dead; nothing to release cleanly
                pass

    def _declare(self, channel):
        settings = self.settings
        # Nova's own flags (openstack.md §2.4): topic, durable as configured, no auto-delete.
        exchange = kombu.Exchange(settings.exchange, type="topic",
                                  durable=settings.exchange_durable, auto_delete=False)
        queue = kombu.Queue(settings.queue, exchange=exchange, durable=True, auto_delete=False,
                            exclusive=False, channel=channel)
        step = "exchange"
        try:
            exchange(channel).declare()
            step = "queue"
            queue.queue_declare()
            step = "binding"
            for key in settings.routing_keys:
                queue.bind_to(exchange=settings.exchange, routing_key=key)
        except Exception as exc:
            code = getattr(exc, "reply_code", None)
            if code not in (403, 404, 405, 406):
                raise  # a connection problem: the caller's back-off handles it
            self._log.error("%s", self._refusal(step, code, exc))
            raise SetupRefused(step) from None
        return queue

    def _refusal(self, step, code, exc):
        settings, text = self.settings, self._scrub(getattr(exc, "reply_text", None) or exc)
        if step == "exchange" and code == 406:
            current = re.search(r"current is '(\w+)'", text)
            want = current.group(1) if current else ("false" if settings.exchange_durable
                                                     else "true")
            return ("the broker refused to declare exchange %r with durable=%s (406 "
                    "PRECONDITION_FAILED: %s). Nova declared it with other flags: set "
                    "%s.exchange_durable to %s in the pack config (true where Nova uses "
                    "amqp_durable_queues or quorum queues), then `st2ctl reload "
                    "--register-configs` and restart the sensor"
                    % (settings.exchange, str(settings.exchange_durable).lower(), text,
                       CONFIG_SECTION, want))
        if step == "queue" and code == 406:
            return ("the broker refused to declare queue %r (406 PRECONDITION_FAILED: %s): a "
                    "queue of that name exists with other arguments; delete it or set another "
                    "%s.queue" % (settings.queue, text, CONFIG_SECTION))
        return ("the broker refused the %s declare for exchange %r / queue %r (%s: %s): check "
                "the user's permissions on the vhost and %s.exchange / %s.queue"
                % (step, settings.exchange, settings.queue, code, text, CONFIG_SECTION,
                   CONFIG_SECTION))

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
