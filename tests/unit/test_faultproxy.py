"""testsupport.faultproxy, the lab_faults tier's fault injector, against servers of the test's
own: the TCP forwarder passes bytes through and cuts connections as told; the HTTP proxy
passes, answers errors and hangs by method, path, body, skip and times."""
import http.client
import http.server
import json
import socket
import socketserver
import threading
import time

import pytest

from testsupport.faultproxy import Cut, HTTPFaultProxy, Rule, TCPFaultProxy


# servers to stand behind the proxies ---------------------------------------------------------

class _Echo(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.request.sendall(data)


@pytest.fixture
def echo():
    server = _Echo(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield server.server_address
    server.shutdown()
    server.server_close()


class _Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        me = "http://%s:%d" % self.server.server_address[:2]
        data = json.dumps({"method": self.command, "path": self.path, "body": body,
                           "self": me + self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Location", me + "/next")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _reply


@pytest.fixture
def api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield "http://%s:%d" % server.server_address[:2]
    server.shutdown()
    server.server_close()


def _roundtrip(address, payload, timeout=2.0):
    """Send payload, read it back; returns (bytes read, error or None)."""
    got, sock = b"", None
    try:
        sock = socket.create_connection(address, timeout=timeout)
        sock.sendall(payload)
        while len(got) < len(payload):
            data = sock.recv(65536)
            if not data:
                return got, "closed"
            got += data
        return got, None
    except OSError as exc:
        return got, exc
    finally:
        if sock is not None:
            sock.close()


# TCP -----------------------------------------------------------------------------------------

def test_tcp_passes_bytes_through_and_counts_them(echo):
    with TCPFaultProxy(("127.0.0.1", 0), echo) as proxy:
        got, err = _roundtrip(proxy.address, b"x" * 100000)
        assert err is None and got == b"x" * 100000
        proxy.connections[0].done.wait(2)
        conn = proxy.connections[0]
        assert (conn.index, conn.up, conn.down) == (1, 100000, 100000)
        assert conn.ended == "closed by client"
        assert proxy.cuts() == []


def test_tcp_refuses_only_the_connection_it_is_told(echo):
    with TCPFaultProxy(("127.0.0.1", 0), echo, faults={2: Cut(refuse=True)}) as proxy:
        assert _roundtrip(proxy.address, b"one") == (b"one", None)
        got, err = _roundtrip(proxy.address, b"two")
        assert got == b"" and err is not None
        assert _roundtrip(proxy.address, b"three") == (b"three", None)
        assert [c.index for c in proxy.cuts()] == [2]


def test_tcp_cuts_after_n_bytes(echo):
    with TCPFaultProxy(("127.0.0.1", 0), echo, faults={1: Cut(after_bytes=150)}) as proxy:
        got, err = _roundtrip(proxy.address, b"y" * 1000)
        assert err is not None
        proxy.connections[0].done.wait(2)
        conn = proxy.connections[0]
        assert conn.up + conn.down == 150 and len(got) <= 150
        assert conn.ended == "cut: after 150 bytes"


def test_tcp_cuts_a_quiet_connection_mid_conversation(echo):
    with TCPFaultProxy(("127.0.0.1", 0), echo, faults={1: Cut(when_idle=0.3)}) as proxy:
        sock = socket.create_connection(proxy.address, timeout=3)
        try:
            sock.sendall(b"hello")
            assert sock.recv(100) == b"hello"
            started = time.monotonic()
            with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
                data = sock.recv(100)
                assert data == b""     # a plain close would be EOF: a reset is wanted
                raise ConnectionResetError("EOF")
            assert 0.2 < time.monotonic() - started < 2.0
        finally:
            sock.close()
        proxy.connections[0].done.wait(2)
        assert proxy.connections[0].ended.startswith("cut: idle 0.3 s after 10 bytes")


def test_tcp_idle_rule_waits_for_min_bytes(echo):
    """A connection that has not carried min_bytes yet is not cut however quiet it is."""
    fault = Cut(when_idle=0.2, min_bytes=10)
    with TCPFaultProxy(("127.0.0.1", 0), echo, faults={1: fault}) as proxy:
        sock = socket.create_connection(proxy.address, timeout=3)
        try:
            time.sleep(0.5)
            sock.sendall(b"hi")
            assert sock.recv(10) == b"hi"
            assert proxy.connections[0].ended is None
        finally:
            sock.close()


def test_tcp_cut_all_on_command(echo):
    with TCPFaultProxy(("127.0.0.1", 0), echo) as proxy:
        socks = [socket.create_connection(proxy.address, timeout=3) for _ in range(2)]
        try:
            for s in socks:
                s.sendall(b"a")
                assert s.recv(1) == b"a"
            proxy.cut_all()
            assert [c.ended for c in proxy.connections] == ["cut: on command"] * 2
            later = socket.create_connection(proxy.address, timeout=3)
            later.sendall(b"b")
            assert later.recv(1) == b"b"
            later.close()
        finally:
            for s in socks:
                s.close()


def test_tcp_upstream_down_breaks_the_client_connection():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    address = free.getsockname()
    free.close()    # nothing listens there now
    with TCPFaultProxy(("127.0.0.1", 0), address) as proxy:
        got, err = _roundtrip(proxy.address, b"z")
        assert got == b"" and err is not None
        proxy.connections[0].done.wait(2)
        assert proxy.connections[0].ended.startswith("upstream unreachable")


# HTTP ----------------------------------------------------------------------------------------

def _call(proxy, method, path, body=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", int(proxy.base_url.rsplit(":", 1)[1]),
                                      timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_http_passes_and_rewrites_the_upstream_url(api):
    with HTTPFaultProxy(api) as proxy:
        status, headers, body = _call(proxy, "POST", "/v2.1/servers/x/action?a=1", b'{"k": 1}')
        assert status == 200
        assert body["method"] == "POST" and body["path"] == "/v2.1/servers/x/action?a=1"
        assert body["body"] == '{"k": 1}'
        assert body["self"] == proxy.url("/v2.1/servers/x/action?a=1")
        assert headers["Location"] == proxy.url("/next")
        assert [r.outcome for r in proxy.requests] == ["passed 200"]
        assert proxy.hits() == []


def test_http_answers_a_status_by_method_path_and_body(api):
    stop = Rule("POST", r"/servers/[^/]+/action$", body=r"os-stop", status=500)
    with HTTPFaultProxy(api, [stop]) as proxy:
        status, headers, body = _call(proxy, "POST", "/servers/abc/action", b'{"os-stop": null}')
        assert status == 500
        assert "fault injected by faultproxy" in body["computeFault"]["message"]
        assert headers["x-openstack-request-id"].startswith("req-")
        assert _call(proxy, "POST", "/servers/abc/action", b'{"os-start": null}')[0] == 200
        assert _call(proxy, "GET", "/servers/abc/action")[0] == 200
        assert [r.outcome for r in proxy.hits()] == ["answered 500"]
        assert stop.seen == 1 and stop.applied == 1


def test_http_skip_and_times_count_matches(api):
    rule = Rule("GET", r"/volumes/v1$", status=503, skip=1, times=2)
    with HTTPFaultProxy(api, [rule]) as proxy:
        codes = [_call(proxy, "GET", "/volumes/v1")[0] for _ in range(5)]
        assert codes == [200, 503, 503, 200, 200]
        assert _call(proxy, "GET", "/volumes/v1/extra")[0] == 200


def test_http_a_rule_done_leaves_the_request_to_the_next_rule(api):
    first = Rule("*", r"/x", status=500, times=1)
    second = Rule("GET", r"/x", status=503)
    with HTTPFaultProxy(api, [first, second]) as proxy:
        assert [_call(proxy, "GET", "/x")[0] for _ in range(3)] == [500, 503, 503]


def test_http_hangs_until_the_client_gives_up(api):
    with HTTPFaultProxy(api, [Rule("DELETE", r"/attachments/", action="hang")]) as proxy:
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            _call(proxy, "DELETE", "/servers/s/attachments/v", timeout=0.5)
        assert time.monotonic() - started < 3
        assert _call(proxy, "GET", "/servers/s")[0] == 200    # other requests still pass
        assert [r.outcome for r in proxy.hits()] == ["hung"]


def test_http_hook_runs_before_the_request_goes_on(api):
    seen = []
    rule = Rule("DELETE", r"/os-volume_attachments/", action="pass",
                hook=lambda req: seen.append((req.method, req.path, time.monotonic())))
    with HTTPFaultProxy(api, [rule]) as proxy:
        assert _call(proxy, "DELETE", "/servers/s/os-volume_attachments/v")[0] == 200
        assert [s[:2] for s in seen] == [("DELETE", "/servers/s/os-volume_attachments/v")]
        assert [r.outcome for r in proxy.hits()] == ["passed 200"]


def test_http_rules_can_be_added_while_running(api):
    with HTTPFaultProxy(api) as proxy:
        assert _call(proxy, "GET", "/a")[0] == 200
        proxy.add(Rule("GET", r"^/a$", status=500))
        assert _call(proxy, "GET", "/a")[0] == 500
        proxy.clear()
        assert _call(proxy, "GET", "/a")[0] == 200


def test_http_upstream_down_answers_502():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with HTTPFaultProxy("http://127.0.0.1:%d" % port) as proxy:
        status, _h, body = _call(proxy, "GET", "/x")
        assert status == 502 and "upstream failed" in body["badGateway"]["message"]


def test_rule_refuses_an_unknown_action():
    with pytest.raises(ValueError):
        Rule("GET", "/", action="explode")
