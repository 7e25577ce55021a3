"""Faults between the pack and the lab, injected on the wire: a TCP forwarder (in front of an
sshd) that cuts connections, and an HTTP proxy (in front of nova-api or cinder-api) that
answers chosen requests with an error, or never.

Both run in threads of the test's own process, on loopback, and record what they did, so a
test can say which request or connection the fault hit.

TCPFaultProxy(listen=("127.0.0.12", 22022), upstream=("127.0.0.2", 22022), faults={2: Cut(...)})
    forwards every connection to upstream; connection number n (counted from 1) gets
    faults[n]: Cut(refuse=True) closes it at once, Cut(after_bytes=N) once N bytes went through
    (both directions together), Cut(when_idle=S) once it carried min_bytes and then was quiet
    for S seconds (for SSH: a remote command is running and has printed nothing yet).
    cut_all() cuts every open connection on command. A cut is abrupt (TCP reset).

HTTPFaultProxy("http://127.0.0.1:18774", rules=[Rule("POST", r"/servers/[^/]+/action$",
               body=r"os-stop", action="status", status=500, times=1)])
    forwards every request to the upstream base URL, except the ones a rule matches: the first
    rule whose method, path regex (searched in the path with its query) and body regex match
    decides. action "pass" forwards, "status" answers `status` with an OpenStack-like JSON
    error naming the fault, "hang" never answers (the client's timeout decides; the proxy
    closes the connection when it stops). `skip` lets the first matches through; `times`
    bounds how many matches the rule takes (then the next rules, or a pass). `hook` is
    called (with the request) before the rule acts. The upstream's base URL in response
    headers and bodies is rewritten to the proxy's, so links lead back through it.

Python 3.8-compatible, standard library only."""
import http.client
import http.server
import json
import re
import select
import socket
import socketserver
import struct
import threading
import time
import urllib.parse
import uuid

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "content-length", "host"}


# TCP -----------------------------------------------------------------------------------------

class Cut(object):
    """What to do to one forwarded TCP connection (see the module's doc)."""

    def __init__(self, refuse=False, after_bytes=None, when_idle=None, min_bytes=1):
        self.refuse = refuse
        self.after_bytes = after_bytes
        self.when_idle = when_idle
        self.min_bytes = min_bytes

    def __repr__(self):
        return "Cut(refuse=%r, after_bytes=%r, when_idle=%r)" % (
            self.refuse, self.after_bytes, self.when_idle)


class Connection(object):
    """One accepted connection as the proxy saw it."""

    def __init__(self, index, fault):
        self.index = index
        self.fault = fault
        self.up = 0        # bytes client -> upstream
        self.down = 0      # bytes upstream -> client
        self.opened = time.monotonic()
        self.ended = None  # "closed by client", "closed by upstream", "cut: ..."
        self.done = threading.Event()

    def __repr__(self):
        return "<connection %d: %d up, %d down, %s>" % (
            self.index, self.up, self.down, self.ended or "open")


class TCPFaultProxy(object):
    def __init__(self, listen, upstream, faults=None, poll=0.05):
        self.listen = listen
        self.upstream = upstream
        self.faults = dict(faults or {})
        self.poll = poll
        self.connections = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cut_now = threading.Event()
        self._sock = None
        self._thread = None

    @property
    def address(self):
        return self._sock.getsockname()

    def start(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self.listen)
        sock.listen(16)
        sock.settimeout(self.poll)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-fault-proxy",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        for conn in list(self.connections):
            conn.done.wait(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def cut_all(self):
        """Cut every connection open now (those accepted later are not affected)."""
        with self._lock:
            open_now = [c for c in self.connections if c.ended is None]
        self._cut_now.set()
        for conn in open_now:
            conn.done.wait(2)
        self._cut_now.clear()

    def cuts(self):
        return [c for c in self.connections if (c.ended or "").startswith("cut")]

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                client, _addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                index = len(self.connections) + 1
                conn = Connection(index, self.faults.get(index))
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn, client), daemon=True,
                             name="tcp-fault-proxy-%d" % index).start()

    def _serve(self, conn, client):
        upstream = None
        try:
            fault = conn.fault
            if fault is not None and fault.refuse:
                conn.ended = "cut: refused"
                _reset(client)
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError as exc:
                conn.ended = "upstream unreachable: %s" % exc
                _reset(client)
                return
            conn.ended = self._pump(conn, client, upstream, fault)
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
            conn.done.set()

    def _pump(self, conn, client, upstream, fault):
        last = time.monotonic()
        peers = {client: upstream, upstream: client}
        while True:
            if self._stop.is_set():
                return "closed by the proxy's stop"
            if self._cut_now.is_set():
                return _cut(client, upstream, "cut: on command")
            if fault is not None and fault.when_idle is not None and \
                    conn.up + conn.down >= fault.min_bytes and \
                    time.monotonic() - last >= fault.when_idle:
                return _cut(client, upstream, "cut: idle %.1f s after %d bytes"
                            % (fault.when_idle, conn.up + conn.down))
            readable, _, _ = select.select([client, upstream], [], [], self.poll)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError as exc:
                    return _cut(client, upstream, "reset: %s" % exc)
                if not data:
                    return "closed by %s" % ("client" if sock is client else "upstream")
                if fault is not None and fault.after_bytes is not None:
                    room = fault.after_bytes - (conn.up + conn.down)
                    if len(data) >= room:
                        data = data[:max(room, 0)]
                        _send(peers[sock], data)
                        _count(conn, sock is client, len(data))
                        return _cut(client, upstream, "cut: after %d bytes" % fault.after_bytes)
                if not _send(peers[sock], data):
                    return _cut(client, upstream, "reset while sending")
                _count(conn, sock is client, len(data))
                last = time.monotonic()


def _count(conn, upwards, n):
    if upwards:
        conn.up += n
    else:
        conn.down += n


def _send(sock, data):
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _reset(sock):
    """Close with a TCP reset (SO_LINGER 0): the peer sees the connection broken, not ended."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _cut(client, upstream, why):
    _reset(client)
    _reset(upstream)
    return why


# HTTP ----------------------------------------------------------------------------------------

class Rule(object):
    """One fault of the HTTP proxy (see the module's doc)."""

    ACTIONS = ("pass", "status", "hang")

    def __init__(self, method, path, action="status", status=500, body=None, skip=0,
                 times=None, hook=None, name=None):
        if action not in self.ACTIONS:
            raise ValueError("action must be one of %s, not %r" % (
                ", ".join(self.ACTIONS), action))
        self.method = method.upper()
        self.path = re.compile(path)
        self.body = re.compile(body) if body else None
        self.action = action
        self.status = int(status)
        self.skip = skip
        self.times = times
        self.hook = hook
        self.name = name or "%s %s -> %s" % (self.method, path, action if action != "status"
                                             else status)
        self.seen = 0      # matching requests
        self.applied = 0   # of them, the ones this rule acted on (after skip, within times)

    def matches(self, method, path, body):
        if self.method not in ("*", method):
            return False
        if not self.path.search(path):
            return False
        if self.body is not None and not self.body.search(body.decode("utf-8", "replace")):
            return False
        return True

    def take(self):
        """Count one match; True when the rule acts on it."""
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.times is not None and self.applied >= self.times:
            return False
        self.applied += 1
        return True


class Request(object):
    """One request as the proxy handled it."""

    def __init__(self, method, path, body, rule, outcome):
        self.method = method
        self.path = path
        self.body = body
        self.rule = rule
        self.outcome = outcome   # "passed 200", "answered 500", "hung", ...

    def __repr__(self):
        return "<%s %s: %s>" % (self.method, self.path, self.outcome)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HTTPFaultProxy(object):
    def __init__(self, upstream, rules=None, listen=("127.0.0.1", 0), timeout=120):
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http":
            raise ValueError("only http upstreams, got %r" % upstream)
        self.upstream = "%s://%s" % (parsed.scheme, parsed.netloc)
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port or 80
        self.rules = list(rules or [])
        self.listen = listen
        self.timeout = timeout
        self.requests = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = None
        self._thread = None

    @property
    def base_url(self):
        host, port = self._server.server_address[:2]
        return "http://%s:%d" % (host, port)

    def url(self, path=""):
        """The proxy's URL for an upstream path, e.g. url('/v2.1')."""
        return self.base_url + path

    def add(self, rule):
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self):
        with self._lock:
            self.rules = []

    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self._server = _Server(self.listen, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name="http-fault-proxy")
        self._thread.start()
        return self

    def stop(self):
        self._release.set()     # hung requests end (without an answer)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def hits(self, outcome_prefix=None):
        """The requests a rule acted on (or with an outcome starting with outcome_prefix)."""
        with self._lock:
            done = list(self.requests)
        if outcome_prefix is None:
            return [r for r in done if r.rule is not None]
        return [r for r in done if r.outcome.startswith(outcome_prefix)]

    # the handler ---------------------------------------------------------------------------

    def _handle(self, handler):
        method = handler.command
        path = handler.path
        body = _read_body(handler)
        with self._lock:
            rule = next((r for r in self.rules if r.matches(method, path, body)), None)
            acting = rule is not None and rule.take()
            if rule is not None and not acting:
                # a rule that let this one through (skip, times used up): the next rules decide
                rule = next((r for r in self.rules[self.rules.index(rule) + 1:]
                             if r.matches(method, path, body) and r.take()), None)
                acting = rule is not None
        record = Request(method, path, body, rule if acting else None, "")
        with self._lock:
            self.requests.append(record)
        if acting and rule.hook is not None:
            rule.hook(record)
        if acting and rule.action == "hang":
            record.outcome = "hung"
            self._release.wait(self.timeout)
            handler.close_connection = True
            return
        if acting and rule.action == "status":
            record.outcome = "answered %d" % rule.status
            _answer_fault(handler, rule)
            return
        self._forward(handler, record)

    def _forward(self, handler, record):
        """Pass the request on; the record's outcome is set before the client has the answer."""
        method, path, body = record.method, record.path, record.body
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                              timeout=self.timeout)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = "%s:%d" % (self.upstream_host, self.upstream_port)
        if body or method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        try:
            upstream.request(method, path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            status, reason, out_headers = response.status, response.reason, response.getheaders()
        except (OSError, http.client.HTTPException) as exc:
            record.outcome = "upstream failed: %s" % exc
            _answer(handler, 502, {"badGateway": {"code": 502, "message": "faultproxy: the "
                                                  "upstream failed: %s" % exc}})
            return
        finally:
            upstream.close()
        data = data.replace(self.upstream.encode(), self.base_url.encode())
        record.outcome = "passed %d" % status
        handler.send_response(status, reason)
        for key, value in out_headers:
            if key.lower() in HOP_BY_HOP:
                continue
            handler.send_header(key, value.replace(self.upstream, self.base_url))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(data)


def _read_body(handler):
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _answer_fault(handler, rule):
    phrase = http.client.responses.get(rule.status, "Error")
    key = {500: "computeFault", 503: "serviceUnavailable"}.get(rule.status, "fault")
    _answer(handler, rule.status, {key: {
        "code": rule.status,
        "message": "fault injected by faultproxy (%s): %d %s" % (rule.name, rule.status, phrase)}})


def _answer(handler, status, payload):
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("x-openstack-request-id", "req-%s" % uuid.uuid4())
    handler.end_headers()
    handler.wfile.write(data)
