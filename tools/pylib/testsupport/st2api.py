"""A small HTTP server standing in for st2 v3.9.0's API where the pack's respond action calls it
(its own execution, GET /v1/executions/<id>; the answer, PUT /v1/inquiries/<id>), with the
ids, token and chat contexts the respond tests share. HOME-MADE: st2's API needs MongoDB."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import jsonschema

from dvremedy.settings import Settings
from testsupport.lab import REPO  # noqa: F401  (the respond tests run actions from it)

TOKEN = "5d8f1e9c0a7b4c3e9f2a1b0c8d7e6f5a"
BOT = "chatops_bot"
PENDING = "65a1b2c3d4e5f60718293a4b"
ANSWERED = "65a1b2c3d4e5f60718293a4c"
EXPIRED = "65a1b2c3d4e5f60718293a4d"
ONLY_ALICE = "65a1b2c3d4e5f60718293a4e"
OTHER_SCHEMA = "65a1b2c3d4e5f60718293a4f"
UNKNOWN = "65a1b2c3d4e5f60718293a50"
APPROVAL = {"type": "object", "properties": {"approved": {"type": "boolean", "required": True}}}
EXECUTION = "65b0c1d2e3f405162738495a"  # respond's own execution (ST2_ACTION_EXECUTION_ID)
APPROVE_ALIAS = "dangling_volume.dangling_volume_approve"


def chat_context(api_user="alice", channel="#ops", **more):
    """What st2api's alias execution controller records for a chat line (st2 v3.9.0
    aliasexecution.py `_post`): the chat adapter's user, the bot's st2 user, the channel."""
    return dict({"action_alias_ref": APPROVE_ALIAS, "api_user": api_user, "user": BOT,
                 "source_channel": channel, "pack": "dangling_volume"}, **more)


def approvers(users=("alice",), channels=(), match_st2_user=False):
    return {"automatic": {"approvers": {"users": list(users), "channels": list(channels),
                                        "match_st2_user": match_st2_user}}}


def ctx_for(config):
    return SimpleNamespace(settings=Settings(config))


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
    And GET /v1/executions/<id> (st2api ActionExecutionsController.get_one): 404 for an unknown
    id, else the execution with the context st2 recorded (`executions`; `any_execution` is
    served for any id, for runs whose id st2local makes up).
    `requests` records what arrived; `delay_s` makes it slow; `raw` answers every request with
    (status, content type, body), as a proxy in front of st2 might."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []
        self.delay_s = 0
        self.raw = None
        self.tokens = {TOKEN: BOT}
        self.executions = {EXECUTION: chat_context()}
        self.any_execution = None
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
        if method == "GET" and path.startswith("/v1/executions/"):
            execution_id = path[len("/v1/executions/"):]
            context = self.executions.get(execution_id, self.any_execution)
            if context is None:
                return _fault(404, "The resource could not be found.")
            return 200, "application/json", json.dumps({
                "id": execution_id, "action": {"ref": "dangling_volume.respond"},
                "status": "running", "context": context})
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


def env_for(api, token=TOKEN, execution_id=EXECUTION):
    return {"ST2_ACTION_API_URL": api.api_url, "ST2_ACTION_AUTH_TOKEN": token,
            "ST2_ACTION_EXECUTION_ID": execution_id}


def serving():
    """Start a St2ApiStandIn in a thread; a generator for a pytest fixture."""
    server = St2ApiStandIn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
