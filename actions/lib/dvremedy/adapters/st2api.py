"""st2's own API, as st2 v3.9.0 implements it, with the temporary token st2's python runner
gives every action (docs/stackstorm.md).

- respond: PUT <ST2_ACTION_API_URL>/inquiries/<id> (st2client InquiryResourceManager.respond,
  st2api InquiriesController.put), header X-Auth-Token, JSON body {"id": <id>, "response":
  {...}}; 200 gives back {"id", "response"}.
- own_context: GET <ST2_ACTION_API_URL>/executions/<id> (st2client executions.get_by_id).
Errors come as JSON {"faultstring": ...}: 400 already answered, timed out or a response the
schema refuses; 403 the user may not answer it (the inquiry's users/roles); 404 no such
execution; 401 token refused.

The token goes into one request header and nowhere else: not into results, errors or logs."""
import json

from dvremedy.errors import RemedyError, tail

STEP = "respond"
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30  # the API validates, resumes the workflow and answers: seconds at most

ADVICE = {
    400: "it was answered already or timed out: `st2 inquiry list` shows the pending ones",
    401: "st2 refused the action's temporary token: check st2's auth service",
    403: "the inquiry names the users or roles allowed to answer it; the chat bot's st2 user "
         "must be one of them",
    404: "check the id: `st2 inquiry list` shows the pending inquiries",
}
OWN_EXECUTION_ADVICE = {
    401: "st2 refused the action's temporary token: check st2's auth service",
    403: "the chat bot's st2 user may not view its own execution: with RBAC, grant its role "
         "action_view and action_execute on dangling_volume.respond",
    404: "ST2_ACTION_API_URL does not lead to the st2 API that runs this action",
}


class St2ApiError(RemedyError):
    """A call to st2's API failed: carries method, url, HTTP status and st2's faultstring."""
    kind = "st2_api"


def respond(api_url, token, inquiry_id, response, verify=True,
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)):
    """PUT the response to the inquiry; returns st2's answer {"id", "response"}."""
    url = "%s/inquiries/%s" % (api_url.rstrip("/"), inquiry_id)
    return _call("PUT", url, token, {"id": inquiry_id, "response": response}, verify, timeout,
                 ADVICE, inquiry_id=inquiry_id)


def own_context(api_url, token, execution_id, verify=True,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)):
    """The context st2 recorded for this action's own execution (GET /executions/<id>)."""
    url = "%s/executions/%s" % (api_url.rstrip("/"), execution_id)
    body = _call("GET", url, token, None, verify, timeout, OWN_EXECUTION_ADVICE,
                 execution_id=execution_id)
    if body.get("id") != execution_id or not isinstance(body.get("context"), dict):
        raise St2ApiError("st2's answer to GET %s is not this execution with its context"
                          % url, step=STEP, method="GET", url=url, execution_id=execution_id)
    return body["context"]


def _call(method, url, token, payload, verify, timeout, advice, **evidence):
    import requests  # shipped with st2; imported here so bad input never pays for it
    evidence = dict({"method": method, "url": url}, **evidence)
    try:
        answer = requests.request(
            method, url, data=None if payload is None else json.dumps(payload),
            headers={"X-Auth-Token": token, "Content-Type": "application/json",
                     "Accept": "application/json"},
            timeout=timeout, verify=verify, allow_redirects=False)
    except requests.ConnectTimeout:
        raise St2ApiError("no connection to st2's API at %s within %s s" % (url, timeout[0]),
                          step=STEP, timeout_s=timeout[0], **evidence)
    except requests.Timeout:
        raise St2ApiError("st2's API did not answer %s %s within %s s" % (
            method, url, timeout[1]), step=STEP, timeout_s=timeout[1], **evidence)
    except requests.RequestException as exc:
        raise St2ApiError("cannot reach st2's API at %s: %s: %s" % (
            url, type(exc).__name__, _redact(str(exc), token)), step=STEP, **evidence)
    body = _json(answer)
    if answer.status_code == 200 and isinstance(body, dict):
        return body
    fault = _redact(body.get("faultstring"), token) if isinstance(body, dict) else None
    raise St2ApiError(
        "st2 answered %s %s with HTTP %d: %s" % (method, url, answer.status_code,
                                                fault or "(no faultstring)"),
        step=STEP, http_status=answer.status_code, faultstring=fault,
        advice=advice.get(answer.status_code),
        body_tail=None if fault else _redact(tail(answer.text, 500), token), **evidence)


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
