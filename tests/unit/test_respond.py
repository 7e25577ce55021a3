"""dangling_volume.respond: approving or rejecting a pending remedy through st2's API, against a
small HTTP server standing in for that API (below). Asserts the request st2 would receive, the
typed errors for each refusal, that bad input never reaches the network, and that the token
stays out of results, errors and log lines, also when the action runs in its own process as
st2's python runner runs it (tools/pylib/st2local: st2's PythonActionWrapper; the
environment's ST2_ACTION_API_URL / ST2_ACTION_AUTH_TOKEN are handed to the action)."""
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest

from dvremedy.errors import InputError
from dvremedy.glue import run_step
from dvremedy.inquiry import St2ApiError, respond, respond_step

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "5d8f1e9c0a7b4c3e9f2a1b0c8d7e6f5a"
BOT = "chatops_bot"
PENDING = "65a1b2c3d4e5f60718293a4b"
ANSWERED = "65a1b2c3d4e5f60718293a4c"
EXPIRED = "65a1b2c3d4e5f60718293a4d"
ONLY_ALICE = "65a1b2c3d4e5f60718293a4e"
OTHER_SCHEMA = "65a1b2c3d4e5f60718293a4f"
UNKNOWN = "65a1b2c3d4e5f60718293a50"
APPROVAL = {"type": "object", "properties": {"approved": {"type": "boolean", "required": True}}}


class St2ApiStandIn(ThreadingHTTPServer):
    """Stands in for st2 v3.9.0's API answering PUT /v1/inquiries/<id>, as its source behaves
    (st2api/controllers/v1/inquiries.py `put`, st2common/services/inquiry.py, the router's auth
    and body checks, the error middleware's {"faultstring": ...} bodies):
    - 401 without a token ("Unauthorized - One of Token or API key required.") or with an
      unknown one ("Unauthorized");
    - 400 for a body that is not JSON or lacks `id`/`response` (the InquiryResponseResult schema);
    - 404 "The resource could not be found." for an unknown id;
    - 400 'Inquiry "<id>" timed out and cannot be responded to.' / '... has already been
      responded to.' unless it is pending;
    - 403 'User "<user>" does not have permission to respond to inquiry "<id>".' when the
      inquiry names its users and the token's user is not one of them;
    - 400 'Response for inquiry "<id>" did not pass schema validation. ...' (draft-3 schema);
    - 200 {"id": <id>, "response": <response>}, and the inquiry is no longer pending.
    `requests` records what arrived; `delay_s` makes it slow; `raw` answers every request with
    (status, content type, body), as a proxy in front of st2 might."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []
        self.delay_s = 0
        self.raw = None
        self.tokens = {TOKEN: BOT}
        self.inquiries = {
            PENDING: {"status": "pending", "users": [], "schema": APPROVAL},
            ANSWERED: {"status": "succeeded", "users": [], "schema": APPROVAL},
            EXPIRED: {"status": "timeout", "users": [], "schema": APPROVAL},
            ONLY_ALICE: {"status": "pending", "users": ["alice"], "schema": APPROVAL},
            OTHER_SCHEMA: {"status": "pending", "users": [], "schema": {
                "type": "object",
                "properties": {"continue": {"type": "boolean", "required": True}}}},
        }

    @property
    def api_url(self):
        return "http://127.0.0.1:%d/v1" % self.server_address[1]

    def answer(self, method, path, headers, body):
        if self.raw:
            return self.raw
        user = self.tokens.get(headers.get("X-Auth-Token"))
        if not headers.get("X-Auth-Token"):
            return _fault(401, "Unauthorized - One of Token or API key required.")
        if user is None:
            return _fault(401, "Unauthorized")
        prefix = "/v1/inquiries/"
        if method != "PUT" or not path.startswith(prefix):
            return _fault(404, "The resource could not be found.")
        inquiry_id = path[len(prefix):]
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            return _fault(400, "Failed to parse request body: %s" % exc)
        for key in ("id", "response"):
            if not isinstance(data, dict) or key not in data:
                return _fault(400, "'%s' is a required property" % key)
        inquiry = self.inquiries.get(inquiry_id)
        if inquiry is None:
            return _fault(404, "The resource could not be found.")
        if inquiry["status"] == "timeout":
            return _fault(400, 'Inquiry "%s" timed out and cannot be responded to.'
                          % inquiry_id)
        if inquiry["status"] != "pending":
            return _fault(400, 'Inquiry "%s" has already been responded to.' % inquiry_id)
        if inquiry["users"] and user not in inquiry["users"]:
            return _fault(403, 'User "%s" does not have permission to respond to inquiry '
                          '"%s".' % (user, inquiry_id))
        problems = list(jsonschema.Draft3Validator(inquiry["schema"]).iter_errors(
            data["response"]))
        if problems:
            return _fault(400, 'Response for inquiry "%s" did not pass schema validation. %s'
                          % (inquiry_id, problems[0].message))
        inquiry["status"] = "succeeded"
        return 200, "application/json", json.dumps({"id": inquiry_id,
                                                    "response": data["response"]})


def _fault(status, message):
    return status, "application/json", json.dumps({"faultstring": message})


class _Handler(BaseHTTPRequestHandler):
    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append({"method": self.command, "path": self.path,
                                     "headers": dict(self.headers), "body": body})
        time.sleep(self.server.delay_s)
        status, content_type, text = self.server.answer(self.command, self.path,
                                                        self.headers, body)
        payload = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = _any

    def log_message(self, *args):  # quiet: the tests read self.server.requests
        pass


@pytest.fixture
def api():
    server = St2ApiStandIn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def env_for(api, token=TOKEN):
    return {"ST2_ACTION_API_URL": api.api_url, "ST2_ACTION_AUTH_TOKEN": token}


def step(api, inquiry_id, approved, environ=None):
    return respond_step(None, inquiry_id, approved,
                        environ=env_for(api) if environ is None else environ)


@pytest.mark.parametrize("approved", [True, False])
def test_answer_is_the_put_st2client_sends(api, approved):
    result = step(api, PENDING.upper(), approved)  # ids are case-insensitive hex
    assert [(r["method"], r["path"]) for r in api.requests] == [
        ("PUT", "/v1/inquiries/" + PENDING)]
    sent = api.requests[0]
    assert sent["headers"]["X-Auth-Token"] == TOKEN
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {"id": PENDING, "response": {"approved": approved}}
    assert result["inquiry_id"] == PENDING and result["approved"] is approved
    assert result["response"] == {"approved": approved}
    assert result["did"].startswith("approved" if approved else "rejected")
    assert api.inquiries[PENDING]["status"] == "succeeded"
    assert TOKEN not in json.dumps(result)


def test_api_url_with_a_trailing_slash(api):
    step(api, PENDING, True, environ={"ST2_ACTION_API_URL": api.api_url + "/",
                                      "ST2_ACTION_AUTH_TOKEN": TOKEN})
    assert api.requests[0]["path"] == "/v1/inquiries/" + PENDING


@pytest.mark.parametrize("inquiry_id, token, status, fault", [
    (ANSWERED, TOKEN, 400, 'Inquiry "%s" has already been responded to.' % ANSWERED),
    (EXPIRED, TOKEN, 400, 'Inquiry "%s" timed out and cannot be responded to.' % EXPIRED),
    (UNKNOWN, TOKEN, 404, "The resource could not be found."),
    (ONLY_ALICE, TOKEN, 403, 'User "chatops_bot" does not have permission to respond to '
                             'inquiry "%s".' % ONLY_ALICE),
    (PENDING, "0" * 32, 401, "Unauthorized"),
    (OTHER_SCHEMA, TOKEN, 400, 'Response for inquiry "%s" did not pass schema validation. '
                               "'continue' is a required property" % OTHER_SCHEMA),
])
def test_refusals_are_typed_errors_with_status_and_faultstring(api, inquiry_id, token, status,
                                                               fault):
    with pytest.raises(St2ApiError) as caught:
        step(api, inquiry_id, True, environ=env_for(api, token))
    evidence = caught.value.evidence()
    assert evidence["kind"] == "st2_api" and evidence["step"] == "respond"
    assert evidence["http_status"] == status
    assert evidence["faultstring"] == fault
    assert evidence["method"] == "PUT"
    assert evidence["url"] == "%s/inquiries/%s" % (api.api_url, inquiry_id)
    assert "HTTP %d: %s" % (status, fault) in evidence["message"]
    assert evidence["advice"]
    assert TOKEN not in json.dumps(evidence)


def test_answering_twice_is_refused_the_second_time(api):
    step(api, PENDING, True)
    with pytest.raises(St2ApiError) as caught:
        step(api, PENDING, False)
    assert caught.value.details["http_status"] == 400
    assert "already been responded to" in caught.value.details["faultstring"]


@pytest.mark.parametrize("bad", [
    "", "abc", PENDING[:-1], PENDING + "0", "65a1b2c3d4e5f60718293a4g", PENDING + " now",
    "65a1b2c3 d4e5f60718293a4b", "../../v1/executions", PENDING[:12] + "; rm -rf /",
    None, 42, ["65a1b2c3d4e5f60718293a4b"]])
def test_a_malformed_inquiry_id_is_refused_before_any_call(api, bad):
    with pytest.raises(InputError, match="inquiry_id must be an st2 id of 24 hexadecimal"):
        step(api, bad, True)
    assert api.requests == []


@pytest.mark.parametrize("bad", ["true", 1, None, "yes"])
def test_approved_must_be_a_boolean(api, bad):
    with pytest.raises(InputError, match="approved must be true or false"):
        step(api, PENDING, bad)
    assert api.requests == []


@pytest.mark.parametrize("environ, text", [
    ({"ST2_ACTION_AUTH_TOKEN": TOKEN}, "ST2_ACTION_API_URL is not set"),
    ({"ST2_ACTION_API_URL": "ftp://st2/v1", "ST2_ACTION_AUTH_TOKEN": TOKEN},
     "not an http(s) URL"),
    ({"ST2_ACTION_API_URL": "http://127.0.0.1:9/v1"}, "ST2_ACTION_AUTH_TOKEN is not set"),
])
def test_without_st2s_environment_it_says_what_is_missing(api, environ, text):
    with pytest.raises(St2ApiError) as caught:
        step(api, PENDING, True, environ=environ)
    assert text in caught.value.message
    assert api.requests == []


def test_a_slow_api_hits_the_read_timeout(api):
    api.delay_s = 2
    started = time.monotonic()
    with pytest.raises(St2ApiError, match="did not answer PUT .* within 0.5 s") as caught:
        respond(api.api_url, TOKEN, PENDING, {"approved": True}, timeout=(1, 0.5))
    assert time.monotonic() - started < 1.9
    assert caught.value.details["timeout_s"] == 0.5


def test_no_api_listening_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(St2ApiError, match="cannot reach st2's API at http://127.0.0.1:%d/v1/"
                                          "inquiries/%s: ConnectionError" % (port, PENDING)):
        respond("http://127.0.0.1:%d/v1" % port, TOKEN, PENDING, {"approved": True})


def test_a_non_json_answer_keeps_its_status_and_tail_without_the_token(api):
    api.raw = (502, "text/html", "<html>502 Bad Gateway (upstream said: token %s)</html>"
               % TOKEN)
    with pytest.raises(St2ApiError) as caught:
        step(api, PENDING, True)
    evidence = caught.value.evidence()
    assert evidence["http_status"] == 502 and "faultstring" not in evidence
    assert "502 Bad Gateway" in evidence["body_tail"]
    assert "(no faultstring)" in evidence["message"]
    assert TOKEN not in json.dumps(evidence) and "********" in evidence["body_tail"]


def test_run_step_turns_a_refusal_into_a_failed_result_and_logs_no_token(api, caplog):
    import logging
    logger = logging.getLogger("test_respond")
    with caplog.at_level(logging.DEBUG):
        ok, result = run_step({}, lambda ctx, **kw: respond_step(ctx, environ=env_for(api), **kw),
                              logger, inquiry_id=EXPIRED, approved=True)
    assert not ok
    assert result["error"]["http_status"] == 400
    assert "timed out" in result["error"]["faultstring"]
    assert caplog.records and TOKEN not in caplog.text and TOKEN not in json.dumps(result)


# the action itself, in its own process, as st2's python runner runs it ------------------------

@pytest.fixture
def run_respond(api, monkeypatch, tmp_path):
    from st2local import run_action
    monkeypatch.setenv("ST2_ACTION_API_URL", api.api_url)
    monkeypatch.setenv("ST2_ACTION_AUTH_TOKEN", TOKEN)

    def run(params):
        return run_action(REPO, "dangling_volume.respond", params, from_cli=True, config={},
                          datastore_path=str(tmp_path / "kv.json"), progress=None)
    return run


def test_the_action_approves_through_the_api_and_leaks_no_token(api, run_respond):
    execution = run_respond({"inquiry_id": PENDING, "approved": "true"})
    assert execution["status"] == "succeeded", execution
    assert execution["result"]["result"]["approved"] is True
    assert json.loads(api.requests[0]["body"])["response"] == {"approved": True}
    assert TOKEN not in json.dumps(execution)


def test_the_action_fails_with_the_apis_reason_and_leaks_no_token(api, run_respond):
    execution = run_respond({"inquiry_id": UNKNOWN, "approved": "false"})
    assert execution["status"] == "failed"
    error = execution["result"]["result"]["error"]
    assert error["http_status"] == 404 and error["kind"] == "st2_api"
    assert "The resource could not be found." in execution["result"]["stderr"]  # logged
    assert TOKEN not in json.dumps(execution)
