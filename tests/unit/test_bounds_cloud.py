"""Issue 17 item 1: api_timeout reaches openstacksdk, and a request with no answer becomes a
CloudError naming the bound and the request. A loopback HTTP server plays the API: it answers
version discovery, then accepts a request and never answers it (or the port is closed)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dvremedy.adapters.cloud import api, connect
from dvremedy.errors import CloudError
from dvremedy.settings import Settings
from testsupport import sshd as sshd_helper

HANG_SECONDS = 20    # longer than any bound below: an answer after it means none was applied
JOIN_SECONDS = 15    # the test fails instead of hanging when no bound is applied


class SilentAPI(BaseHTTPRequestHandler):
    """Version documents at /v2.1 and /v3 (discovery works), silence on every other path."""

    def do_GET(self):
        root = self.path.rstrip("/")
        if root in ("/v2.1", "/v3"):
            self._version(root)
            return
        self.server.silent.wait(HANG_SECONDS)

    def _version(self, root):
        low, high = ("2.1", "2.95") if root == "/v2.1" else ("3.0", "3.70")
        href = "http://127.0.0.1:%d%s/" % (self.server.server_port, root)
        body = json.dumps({"version": {"id": root[1:], "status": "CURRENT", "min_version": low,
                                       "version": high,
                                       "links": [{"rel": "self", "href": href}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def silent_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SilentAPI)
    server.daemon_threads = True
    server.silent = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.silent.set()
    server.shutdown()
    server.server_close()


def settings_for(tmp_path, port):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  silent:\n    auth_type: none\n"
        "    compute_endpoint_override: http://127.0.0.1:%d/v2.1\n"
        "    block_storage_endpoint_override: http://127.0.0.1:%d/v3\n" % (port, port))
    return Settings({"cloud": "silent", "clouds_yaml": str(clouds), "api_timeout": 1})


def outcome_of(call):
    """(exception, seconds) of call() run in a thread joined with a bound."""
    box = {}

    def target():
        started = time.monotonic()
        try:
            call()
        except Exception as exc:    # what the test inspects
            box["error"] = exc
        box["seconds"] = time.monotonic() - started
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive(), "the request was not bounded by api_timeout"
    return box.get("error"), box["seconds"]


def test_the_connection_carries_api_timeout(tmp_path, silent_api):
    conn = connect(settings_for(tmp_path, silent_api))
    assert conn.config.config["api_timeout"] == 1


@pytest.mark.parametrize("service, call", [
    ("compute", lambda conn: conn.compute.get_server("x")),
    ("block_storage", lambda conn: conn.block_storage.get_volume("x")),
])
def test_a_request_with_no_answer_is_a_cloud_error_naming_the_bound(tmp_path, silent_api,
                                                                    service, call):
    conn = connect(settings_for(tmp_path, silent_api))

    def get():
        with api("GET %s x" % service, "identify"):
            call(conn)
    error, seconds = outcome_of(get)
    assert isinstance(error, CloudError), repr(error)
    assert seconds < HANG_SECONDS
    evidence = error.evidence()
    assert "timed out after 1 s (api_timeout)" in error.message
    assert evidence["method"] == "GET" and evidence["timed_out"] is True
    assert evidence["url"].startswith("http://127.0.0.1:%d/" % silent_api)
    assert evidence["url"].endswith("/x") and evidence["step"] == "identify"


def test_a_closed_port_is_a_cloud_error_saying_it_could_not_connect(tmp_path):
    conn = connect(settings_for(tmp_path, sshd_helper.free_port()))

    def get():
        with api("GET server x"):
            conn.compute.get_server("x")
    error, _seconds = outcome_of(get)
    assert isinstance(error, CloudError), repr(error)
    assert "GET server x" in error.message
    assert "could not connect" in error.message or "version document" in error.message


def test_other_errors_pass_through_untouched():
    with pytest.raises(KeyError):
        with api("GET server x"):
            raise KeyError("not the cloud's")
