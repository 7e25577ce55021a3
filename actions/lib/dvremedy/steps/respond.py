"""Answering a pending st2 inquiry (the remedy's approval, a core.ask) through st2's own API
(adapters.st2api), as the person in chat who asked, if they are an approver.

Who answers: the chat bot's token is the same for everyone in chat, so st2's own check (the
inquiry's users/roles) cannot tell chat users apart. Before answering, respond reads its OWN
execution (GET <ST2_ACTION_API_URL>/executions/<ST2_ACTION_EXECUTION_ID>, as st2client's
executions.get_by_id does) and takes the chat user st2 recorded there: st2api's alias execution
controller sets context.api_user from the chat adapter's `user`, context.user to the bot's st2
user, context.source_channel and context.action_alias_ref. That name must be one of
automatic.approvers.users (see approver_of); otherwise nothing is posted. The answer carries
who gave it: response {"approved": ..., "by": {"user", "via", "channel"}} (the remedy's
core.ask schema does not forbid extra properties; st2 keeps them in the task's result)."""
import os
import re

from dvremedy.adapters import st2api
from dvremedy.adapters.st2api import St2ApiError
from dvremedy.errors import ConfigError, InputError, RemedyError
from dvremedy.settings import RELOAD

STEP = "respond"
INQUIRY_ID = re.compile(r"^[0-9a-fA-F]{24}$")  # st2 ids are MongoDB ObjectIds
API_URL_ENV, TOKEN_ENV = "ST2_ACTION_API_URL", "ST2_ACTION_AUTH_TOKEN"
EXECUTION_ENV = "ST2_ACTION_EXECUTION_ID"
# an approver's name as configured: no whitespace, control characters, braces or "%" (so no
# template marker can travel with it into the inquiry's response and on into the workflow)
APPROVER_NAME = re.compile(r"^[^\s{}%\x00-\x1f\x7f]{1,128}$")
CHANNEL_SHOWN = re.compile(r"^[\w#@.:/+-]{1,128}$")  # a channel recorded in `by` as is
CACERT_ENV = "ST2_CACERT"  # st2client's variable for a private CA of an https API

HOW_TO_CHANGE = ("who may approve is automatic.approvers.users in "
                 "/opt/stackstorm/configs/dangling_volume.yaml (then `st2ctl reload "
                 "--register-configs`); `st2 inquiry respond <id>` is governed by st2's RBAC "
                 "instead")


class NotApprover(RemedyError):
    """The person asking may not answer the approval: nothing was posted."""
    kind = "not_approver"


def approvers_from(settings):
    """automatic.approvers of the pack config: {users, channels, match_st2_user}, checked
    (st2 checks the types when it registers the config; tests and st2local may not)."""
    raw = ((getattr(settings, "raw", None) or {}).get("automatic") or {}).get("approvers")
    raw = raw if isinstance(raw, dict) else {}
    out = {}
    for key in ("users", "channels"):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(
                isinstance(v, str) and APPROVER_NAME.match(v) for v in value):
            raise ConfigError("automatic.approvers.%s must be a list of names without spaces, "
                              "braces or %%, not %r: %s" % (key, value, RELOAD), step=STEP)
        out[key] = list(value)
    match_st2_user = raw.get("match_st2_user", False)
    if not isinstance(match_st2_user, bool):
        raise ConfigError("automatic.approvers.match_st2_user must be true or false, not %r: %s"
                          % (match_st2_user, RELOAD), step=STEP)
    out["match_st2_user"] = match_st2_user
    return out


def approver_of(context, approvers):
    """Who answers, from respond's own execution context, if they may: {user, via, channel}.
    Raises NotApprover otherwise.

    - from chat (st2 set context.api_user from the adapter's `user`): that name must equal one
      of approvers["users"] (exact, case-sensitive); if approvers["channels"] is not empty,
      context.source_channel must equal one of them;
    - from chat without a chat user (action_alias_ref set, api_user empty): refused;
    - not from chat (`st2 run dangling_volume.respond`): refused, unless
      approvers["match_st2_user"], then context.user (the st2 user st2 authenticated) must be
      one of approvers["users"].
    An empty approvers["users"] refuses everyone."""
    users = approvers["users"]
    allowed = ", ".join(users) if users else "nobody (the list is empty)"
    context = context if isinstance(context, dict) else {}
    api_user, channel = context.get("api_user"), context.get("source_channel")
    if api_user not in (None, ""):
        who, via = api_user, "chat"
    elif context.get("action_alias_ref"):
        raise NotApprover("this answer came from chat but st2 recorded no chat user for it "
                          "(context.api_user is empty: the chat adapter sent none), so it "
                          "cannot be checked against the approvers; answer with `st2 inquiry "
                          "respond`", step=STEP, may_approve=users, advice=HOW_TO_CHANGE)
    elif approvers["match_st2_user"]:
        who, via, channel = context.get("user"), "st2", None
    else:
        raise NotApprover("respond answers only for approvers in chat (`approve remedy <id>`); "
                          "this run did not come from chat (no chat user in its context): "
                          "answer with `st2 inquiry respond <id>`, or set "
                          "automatic.approvers.match_st2_user: true", step=STEP,
                          may_approve=users, advice=HOW_TO_CHANGE)
    if not isinstance(who, str) or who not in users:
        raise NotApprover("%s %r may not answer remedy approvals; who may: %s"
                          % ("chat user" if via == "chat" else "st2 user",
                             who if isinstance(who, str) else type(who).__name__, allowed),
                          step=STEP, user=who if isinstance(who, str) else None, via=via,
                          may_approve=users, advice=HOW_TO_CHANGE)
    if via == "chat" and approvers["channels"] and channel not in approvers["channels"]:
        raise NotApprover("answers from chat count only in %s, not in %r"
                          % (", ".join(approvers["channels"]),
                             channel if isinstance(channel, str) else None),
                          step=STEP, user=who, via=via, may_approve=users,
                          advice="answer in one of automatic.approvers.channels; %s"
                                 % HOW_TO_CHANGE)
    shown = channel if isinstance(channel, str) and CHANNEL_SHOWN.match(channel) else None
    return {"user": who, "via": via, "channel": shown}


def require_inquiry_id(value):
    """An inquiry id, lower case. Anything else is refused before any call is made."""
    if not isinstance(value, str) or not INQUIRY_ID.match(value.strip()):
        raise InputError("inquiry_id must be an st2 id of 24 hexadecimal characters like "
                         "5f1c0e3a9d1b2c3d4e5f6a7b, not %r"
                         % (value if isinstance(value, str) else type(value).__name__),
                         step=STEP)
    return value.strip().lower()


def respond_step(ctx, inquiry_id, approved, environ=None):
    """Approve (approved=true) or reject the remedy's approval request, if the person asking is
    an approver (approver_of). A run_step step: ctx.settings gives automatic.approvers (no
    cloud); environ defaults to the process's (where st2 puts the API URL, the token and the
    execution's id). Nothing is posted unless every check passed."""
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
    execution_id = environ.get(EXECUTION_ENV) or ""
    if not INQUIRY_ID.match(execution_id):  # an execution id is an ObjectId too
        raise St2ApiError("%s is %s: respond runs under st2's python runner, which sets it to "
                          "the execution's id" % (EXECUTION_ENV, "not set" if not execution_id
                                                  else "not an st2 id"), step=STEP)
    approvers = approvers_from(getattr(ctx, "settings", None))
    if not approvers["users"]:
        raise NotApprover("nobody may answer remedy approvals through respond: "
                          "automatic.approvers.users is empty", step=STEP, may_approve=[],
                          advice=HOW_TO_CHANGE)
    verify = environ.get(CACERT_ENV) or True
    by = approver_of(st2api.own_context(api_url, token, execution_id, verify=verify), approvers)
    answer = st2api.respond(api_url, token, inquiry_id, {"approved": approved, "by": by},
                     verify=verify)
    verb = "approved" if approved else "rejected"
    result = {"inquiry_id": inquiry_id, "approved": approved, "by": by,
              "response": answer.get("response"),
              "did": "%s inquiry %s as %s (%s%s): the remedy %s" % (
                  verb, inquiry_id, by["user"], by["via"],
                  ", " + by["channel"] if by["channel"] else "",
                  "goes on" if approved else "ends without changing anything")}
    result["text"] = text(result)
    return result


def text(result):
    """What a person reads in chat or on the CLI after answering."""
    iid = result["inquiry_id"]
    return "\n".join([
        "%s remedy %s: %s." % ("Approved" if result["approved"] else "Rejected", iid,
                               "it goes on" if result["approved"]
                               else "it ends without changing anything"),
        "`st2 execution get %s` shows this request and, as its parent, the remedy; its report "
        "is in the remedy's output when it ends." % iid,
        "Recorded as answered by %s (%s)." % (result["by"]["user"], result["by"]["via"])])
