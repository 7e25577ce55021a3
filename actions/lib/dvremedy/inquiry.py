"""Answering a pending st2 inquiry (the remedy's approval, a core.ask) through st2's own API,
with the temporary token st2's python runner gives every action (stackstorm.md §4).

The call is the one st2 v3.9.0 implements (st2client InquiryResourceManager.respond, st2api
InquiriesController.put): PUT <ST2_ACTION_API_URL>/inquiries/<id>, header X-Auth-Token, JSON
body {"id": <id>, "response": {...}}; 200 gives back {"id", "response"}. Errors come as JSON
{"faultstring": ...}: 400 already answered, timed out or a response the schema refuses; 403 the
user may not answer it (the inquiry's users/roles); 404 no such execution; 401 token refused.

The token goes into one request header and nowhere else: not into results, errors or logs."""
import json
import os
import re

from dvremedy.errors import InputError, RemedyError, tail

STEP = "respond"
INQUIRY_ID = re.compile(r"^[0-9a-fA-F]{24}$")  # st2 ids are MongoDB ObjectIds
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30  # the API validates, resumes the workflow and answers: seconds at most
API_URL_ENV, TOKEN_ENV = "ST2_ACTION_API_URL", "ST2_ACTION_AUTH_TOKEN"
CACERT_ENV = "ST2_CACERT"  # st2client's variable for a private CA of an https API

ADVICE = {
    400: "it was answered already or timed out: `st2 inquiry list` shows the pending ones",
    401: "st2 refused the action's temporary token: check st2's auth service",
    403: "the inquiry names the users or roles allowed to answer it; the chat bot's st2 user "
         "must be one of them",
    404: "check the id: `st2 inquiry list` shows the pending inquiries",
}


class St2ApiError(RemedyError):
    """A call to st2's API failed: carries method, url, HTTP status and st2's faultstring."""
    kind = "st2_api"


def require_inquiry_id(value):
    """An inquiry id, lower case. Anything else is refused before any call is made."""
    if not isinstance(value, str) or not INQUIRY_ID.match(value.strip()):
        raise InputError("inquiry_id must be an st2 id of 24 hexadecimal characters like "
                         "5f1c0e3a9d1b2c3d4e5f6a7b, not %r"
                         % (value if isinstance(value, str) else type(value).__name__),
                         step=STEP)
    return value.strip().lower()


def respond(api_url, token, inquiry_id, response, verify=True,
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)):
    """PUT the response to the inquiry; returns st2's answer {"id", "response"}."""
    import requests  # shipped with st2; imported here so bad input never pays for it
    url = "%s/inquiries/%s" % (api_url.rstrip("/"), inquiry_id)
    evidence = {"method": "PUT", "url": url, "inquiry_id": inquiry_id}
    try:
        answer = requests.put(url, data=json.dumps({"id": inquiry_id, "response": response}),
                              headers={"X-Auth-Token": token,
                                       "Content-Type": "application/json",
                                       "Accept": "application/json"},
                              timeout=timeout, verify=verify, allow_redirects=False)
    except requests.ConnectTimeout:
        raise St2ApiError("no connection to st2's API at %s within %s s" % (url, timeout[0]),
                          step=STEP, timeout_s=timeout[0], **evidence)
    except requests.Timeout:
        raise St2ApiError("st2's API did not answer PUT %s within %s s" % (url, timeout[1]),
                          step=STEP, timeout_s=timeout[1], **evidence)
    except requests.RequestException as exc:
        raise St2ApiError("cannot reach st2's API at %s: %s: %s" % (
            url, type(exc).__name__, _redact(str(exc), token)), step=STEP, **evidence)
    body = _json(answer)
    if answer.status_code == 200 and isinstance(body, dict):
        return body
    fault = _redact(body.get("faultstring"), token) if isinstance(body, dict) else None
    raise St2ApiError(
        "st2 answered PUT %s with HTTP %d: %s" % (url, answer.status_code,
                                                 fault or "(no faultstring)"),
        step=STEP, http_status=answer.status_code, faultstring=fault,
        advice=ADVICE.get(answer.status_code),
        body_tail=None if fault else _redact(tail(answer.text, 500), token), **evidence)


def respond_step(ctx, inquiry_id, approved, environ=None):
    """Approve (approved=true) or reject the remedy's approval request. A run_step step: ctx is
    unused (no cloud), environ defaults to the process's (where st2 puts the API URL and the
    token)."""
    inquiry_id = require_inquiry_id(inquiry_id)
    if not isinstance(approved, bool):
        raise InputError("approved must be true or false, not %r" % (approved,), step=STEP)
    environ = os.environ if environ is None else environ
    api_url, token = environ.get(API_URL_ENV), environ.get(TOKEN_ENV)
    if not api_url or not api_url.startswith(("http://", "https://")):
        raise St2ApiError("%s is %s: respond runs under st2's python runner, which sets it"
                          % (API_URL_ENV, "not set" if not api_url else "not an http(s) URL"),
                          step=STEP)
    if not token:
        raise St2ApiError("%s is not set: st2 gives actions a temporary token when its auth "
                          "service is enabled" % TOKEN_ENV, step=STEP)
    answer = respond(api_url, token, inquiry_id, {"approved": approved},
                     verify=environ.get(CACERT_ENV) or True)
    verb = "approved" if approved else "rejected"
    return {"inquiry_id": inquiry_id, "approved": approved,
            "response": answer.get("response"),
            "did": "%s inquiry %s: the remedy %s" % (
                verb, inquiry_id, "goes on" if approved else "ends without changing anything")}


def _json(answer):
    try:
        return answer.json()
    except ValueError:
        return None


def _redact(text, token):
    """st2 never echoes a token; a proxy in front of it might: keep it out of the evidence."""
    if not isinstance(text, str) or not token:
        return text
    return text.replace(token, "********")
