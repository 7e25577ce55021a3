"""The pack config's `notifications` section as Settings, and its transport URL: split into the
kombu URLs of its brokers, masked for logs, its passwords scrubbed from any text.

- Settings.from_config applies config.schema.yaml's defaults (DEFAULTS, which a unit test
  compares with the schema) and refuses, naming the key, what the consumer cannot use; a queue
  named like Nova's shared notifications.* queues is refused: other consumers (Ceilometer, ...)
  read those, and taking messages from them would steal theirs.
- TLS (notifications.ssl) verifies the broker's certificate (ssl.CERT_REQUIRED, against
  notifications.ssl_ca_file or the system CAs) and, unless notifications.ssl_verify_hostname is
  false, that it names the broker host (check_hostname).
- Logs, config errors and reprs never show the transport URL's password, whatever it holds
  (@ : ; / or percent-escapes, any length): URLs are masked, and exception texts are scrubbed of
  every password in the configured URL.

Stdlib only (docs/stackstorm.md, "What a sensor process sees").
"""
import dataclasses
import os
import re
import ssl
import urllib.parse

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


class ConfigError(ValueError):
    """The pack config's notifications section is unusable; str(exc) names the key."""


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
