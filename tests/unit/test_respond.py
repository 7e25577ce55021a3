"""dangling_volume.respond: approving or rejecting a pending remedy through st2's API, against a
small HTTP server standing in for that API (below). Asserts the request st2 would receive, the
typed errors for each refusal, that bad input never reaches the network, that only a
configured approver's answer is posted (respond reads its own execution's context, where st2
records the chat user as api_user), and that the token stays out of results, errors and log
lines, also when the action runs in its own process as st2's python runner runs it
(tools/pylib/st2local: st2's PythonActionWrapper; the environment's ST2_ACTION_API_URL /
ST2_ACTION_AUTH_TOKEN are handed to the action)."""
import json
import os
import socket
import time

import pytest

from dvremedy.adapters.st2api import St2ApiError, respond
from dvremedy.errors import ConfigError, InputError
from dvremedy.runner import error_text, run_step
from dvremedy.steps.respond import NotApprover, respond_step

from testsupport.st2api import (ANSWERED, BOT, EXECUTION, EXPIRED, ONLY_ALICE, OTHER_SCHEMA,
                                PENDING, REPO, TOKEN, UNKNOWN, approvers, chat_context, ctx_for,
                                env_for)


def step(api, inquiry_id, approved, environ=None, config=None):
    return respond_step(ctx_for(approvers() if config is None else config), inquiry_id,
                        approved, environ=env_for(api) if environ is None else environ)


def puts(api):
    """What was posted to the inquiries API (the answers)."""
    return [r for r in api.requests if r["method"] != "GET"]


BY_ALICE = {"user": "alice", "via": "chat", "channel": "#ops"}


@pytest.mark.parametrize("approved", [True, False])
def test_answer_is_the_put_st2client_sends(api, approved):
    result = step(api, PENDING.upper(), approved)  # ids are case-insensitive hex
    assert [(r["method"], r["path"]) for r in api.requests] == [
        ("GET", "/v1/executions/" + EXECUTION), ("PUT", "/v1/inquiries/" + PENDING)]
    sent = api.requests[1]
    assert sent["headers"]["X-Auth-Token"] == TOKEN
    assert api.requests[0]["headers"]["X-Auth-Token"] == TOKEN
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == {"id": PENDING, "response": {"approved": approved,
                                                                    "by": BY_ALICE}}
    assert result["inquiry_id"] == PENDING and result["approved"] is approved
    assert result["response"] == {"approved": approved, "by": BY_ALICE}
    assert result["by"] == BY_ALICE
    assert result["did"].startswith("%s inquiry %s as alice (chat, #ops)" % (
        "approved" if approved else "rejected", PENDING))
    assert api.inquiries[PENDING]["status"] == "succeeded"
    assert TOKEN not in json.dumps(result)


def test_api_url_with_a_trailing_slash(api):
    step(api, PENDING, True, environ=dict(env_for(api), ST2_ACTION_API_URL=api.api_url + "/"))
    assert [r["path"] for r in api.requests] == ["/v1/executions/" + EXECUTION,
                                                 "/v1/inquiries/" + PENDING]


@pytest.mark.parametrize("inquiry_id, token, status, fault", [
    (ANSWERED, TOKEN, 400, 'Inquiry "%s" has already been responded to.' % ANSWERED),
    (EXPIRED, TOKEN, 400, 'Inquiry "%s" timed out and cannot be responded to.' % EXPIRED),
    (UNKNOWN, TOKEN, 404, "The resource could not be found."),
    (ONLY_ALICE, TOKEN, 403, 'User "chatops_bot" does not have permission to respond to '
                             'inquiry "%s".' % ONLY_ALICE),
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
    ({"ST2_ACTION_API_URL": "http://127.0.0.1:9/v1", "ST2_ACTION_AUTH_TOKEN": TOKEN},
     "ST2_ACTION_EXECUTION_ID is not set"),
    ({"ST2_ACTION_API_URL": "http://127.0.0.1:9/v1", "ST2_ACTION_AUTH_TOKEN": TOKEN,
      "ST2_ACTION_EXECUTION_ID": "../inquiries/" + PENDING}, "not an st2 id"),
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
        ok, result = run_step(approvers(),
                              lambda ctx, **kw: respond_step(ctx, environ=env_for(api), **kw),
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
    api.any_execution = chat_context()  # st2local makes the execution's id up

    def run(params, config=None):
        return run_action(REPO, "dangling_volume.respond", params, from_cli=True,
                          config=approvers() if config is None else config,
                          datastore_path=str(tmp_path / "kv.json"), progress=None)
    return run


def test_the_action_approves_through_the_api_and_leaks_no_token(api, run_respond):
    execution = run_respond({"inquiry_id": PENDING, "approved": "true"})
    assert execution["status"] == "succeeded", execution
    assert execution["result"]["result"]["approved"] is True
    assert execution["result"]["result"]["by"] == BY_ALICE
    assert json.loads(puts(api)[0]["body"])["response"] == {"approved": True, "by": BY_ALICE}
    assert TOKEN not in json.dumps(execution)


def test_the_action_fails_with_the_apis_reason_and_leaks_no_token(api, run_respond):
    execution = run_respond({"inquiry_id": UNKNOWN, "approved": "false"})
    assert execution["status"] == "failed"
    error = execution["result"]["result"]["error"]
    assert error["http_status"] == 404 and error["kind"] == "st2_api"
    assert "The resource could not be found." in execution["result"]["stderr"]  # logged
    assert TOKEN not in json.dumps(execution)


def test_the_action_refuses_a_non_approver_and_posts_nothing(api, run_respond):
    api.any_execution = chat_context("mallory")
    execution = run_respond({"inquiry_id": PENDING, "approved": "true"})
    assert execution["status"] == "failed"
    error = execution["result"]["result"]["error"]
    assert error["kind"] == "not_approver" and error["user"] == "mallory"
    assert puts(api) == [] and api.inquiries[PENDING]["status"] == "pending"
    assert TOKEN not in json.dumps(execution)


# who may answer: automatic.approvers against the context st2 recorded ------------------------

def test_a_non_approver_in_chat_is_refused_and_nothing_is_posted(api):
    api.executions[EXECUTION] = chat_context("mallory")
    with pytest.raises(NotApprover) as caught:
        step(api, PENDING, True, config=approvers(users=["alice", "bob"]))
    message = caught.value.message
    assert "chat user 'mallory' may not answer remedy approvals; who may: alice, bob" in message
    assert "automatic.approvers.users" in caught.value.details["advice"]
    assert caught.value.details["may_approve"] == ["alice", "bob"]
    assert [r["method"] for r in api.requests] == ["GET"] and puts(api) == []
    assert api.inquiries[PENDING]["status"] == "pending"


def test_a_rejection_needs_an_approver_too(api):
    api.executions[EXECUTION] = chat_context("mallory")
    with pytest.raises(NotApprover):
        step(api, PENDING, False)
    assert puts(api) == []


@pytest.mark.parametrize("context, text", [
    (chat_context(None), "st2 recorded no chat user"),  # the adapter sent no user
    (chat_context(""), "st2 recorded no chat user"),
    ({"user": "alice", "pack": "dangling_volume"}, "this run did not come from chat"),
    ({"user": BOT, "api_user": None}, "this run did not come from chat"),
])
def test_without_a_chat_user_in_the_context_it_is_refused(api, context, text):
    api.executions[EXECUTION] = context
    with pytest.raises(NotApprover, match=text):
        step(api, PENDING, True)
    assert puts(api) == []


def test_match_st2_user_checks_the_st2_user_of_a_run_not_from_chat(api):
    api.executions[EXECUTION] = {"user": "alice", "pack": "dangling_volume"}
    result = step(api, PENDING, True, config=approvers(match_st2_user=True))
    assert result["by"] == {"user": "alice", "via": "st2", "channel": None}
    api.executions[EXECUTION] = {"user": BOT}
    with pytest.raises(NotApprover, match="st2 user 'chatops_bot' may not answer"):
        step(api, ANSWERED, True, config=approvers(match_st2_user=True))
    assert len(puts(api)) == 1


def test_match_st2_user_never_applies_to_a_chat_line_without_a_user(api):
    api.executions[EXECUTION] = chat_context(None, user="alice")
    with pytest.raises(NotApprover, match="st2 recorded no chat user"):
        step(api, PENDING, True, config=approvers(match_st2_user=True))
    assert puts(api) == []


def test_an_empty_approver_list_refuses_before_any_call(api):
    with pytest.raises(NotApprover, match="automatic.approvers.users is empty") as caught:
        step(api, PENDING, True, config={})
    assert "st2 inquiry respond" in caught.value.details["advice"]
    assert api.requests == []


def test_channels_restrict_where_an_answer_counts(api):
    api.executions[EXECUTION] = chat_context("alice", "#random")
    with pytest.raises(NotApprover, match="count only in #ops, not in '#random'"):
        step(api, PENDING, True, config=approvers(channels=["#ops"]))
    assert puts(api) == []
    api.executions[EXECUTION] = chat_context("alice", "#ops")
    assert step(api, PENDING, True, config=approvers(channels=["#ops"]))["by"] == BY_ALICE


@pytest.mark.parametrize("name", [
    "{{ 7*7 }}", "alice{{ 7*7 }}", "{% if 1 %}alice{% endif %}", "{# x #}alice", "alice ",
    " alice", "ALICE", "alice\n", "ali ce", "alice\u200b",
    pytest.param("x" * 5000, id="x*5000"), "'; rm -rf /",
    ["alice"], {"name": "alice"}, 42])
def test_odd_chat_user_names_are_data_and_refused(api, name):
    api.executions[EXECUTION] = chat_context(name)
    with pytest.raises(NotApprover) as caught:
        step(api, PENDING, True)
    assert puts(api) == []
    if isinstance(name, str):
        assert repr(name) in caught.value.message  # shown as data, quoted
        assert caught.value.details["user"] == name
    else:
        assert "chat user %r may not" % type(name).__name__ in caught.value.message


@pytest.mark.parametrize("users", [["{{ 7*7 }}"], ["alice", "bob smith"], ["al%ce"], [""],
                                   "alice", [42], [None]])
def test_odd_approver_names_in_the_config_are_refused(api, users):
    with pytest.raises(ConfigError, match="automatic.approvers.users must be a list of names"):
        step(api, PENDING, True, config={"automatic": {"approvers": {"users": users}}})
    assert api.requests == []


def test_a_channel_with_odd_text_is_not_recorded_as_is(api):
    api.executions[EXECUTION] = chat_context("alice", "{{ st2kv.system.secret }}")
    result = step(api, PENDING, True)
    assert result["by"] == {"user": "alice", "via": "chat", "channel": None}
    assert "{{" not in puts(api)[0]["body"].decode()


@pytest.mark.parametrize("status, fault, advice", [
    (401, "Unauthorized", "temporary token"),
    (403, 'User "chatops_bot" does not have permission to view execution', "action_execute"),
    (404, "The resource could not be found.", "ST2_ACTION_API_URL"),
])
def test_reading_its_own_execution_fails_clearly_and_nothing_is_posted(
        api, status, fault, advice):
    api.raw = (status, "application/json", json.dumps({"faultstring": fault}))
    with pytest.raises(St2ApiError) as caught:
        step(api, PENDING, True)
    evidence = caught.value.evidence()
    assert evidence["method"] == "GET" and evidence["http_status"] == status
    assert evidence["url"] == "%s/executions/%s" % (api.api_url, EXECUTION)
    assert advice in evidence["advice"] and TOKEN not in json.dumps(evidence)
    assert puts(api) == []


def test_an_unknown_own_execution_is_a_clear_error(api):
    with pytest.raises(St2ApiError, match="HTTP 404") as caught:
        step(api, PENDING, True, environ=env_for(api, execution_id=UNKNOWN))
    assert caught.value.details["method"] == "GET"
    assert puts(api) == []


def test_an_answer_that_is_not_its_own_execution_is_refused(api):
    api.raw = (200, "application/json", json.dumps({"id": UNKNOWN, "context": chat_context()}))
    with pytest.raises(St2ApiError, match="is not this execution with its context"):
        step(api, PENDING, True)
    assert puts(api) == []


def test_the_api_unreachable_is_a_clear_error_and_nothing_is_posted():
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environ = {"ST2_ACTION_API_URL": "http://127.0.0.1:%d/v1" % port,
               "ST2_ACTION_AUTH_TOKEN": TOKEN, "ST2_ACTION_EXECUTION_ID": EXECUTION}
    with pytest.raises(St2ApiError) as caught:
        respond_step(ctx_for(approvers()), PENDING, True, environ=environ)
    assert caught.value.message.startswith(
        "cannot reach st2's API at http://127.0.0.1:%d/v1/executions/%s: ConnectionError"
        % (port, EXECUTION))
    assert caught.value.details["method"] == "GET"
    assert TOKEN not in json.dumps(caught.value.evidence())


# the remedy's report shows who answered, once the workflow hands `by` over ------------------

def test_the_report_names_who_approved_when_the_approval_carries_it(api):
    from dvremedy.model.report import build_report
    answer = step(api, PENDING, True)["response"]  # what the core.ask task's result keeps
    approval = {"asked": True, "answer": "approved", "route": "dangling_volume",
                "reason": "approved", "by": answer["by"]}
    report = build_report("s", "v", "remedied", approval=approval)
    assert report["approval"]["by"] == BY_ALICE
    assert "approval: approved, by alice (chat, #ops)" in report["text"].splitlines()
    approval.pop("by")  # answered with `st2 inquiry respond`: nobody recorded
    report = build_report("s", "v", "remedied", approval=approval)
    assert "by" not in report["approval"]
    assert "approval: approved" in report["text"].splitlines()


def test_the_chat_result_names_who_answered_as_data(api):
    import yaml
    from st2common.util import jinja as jinja_utils
    with open(os.path.join(REPO, "aliases", "approve.yaml")) as f:
        fmt = yaml.safe_load(f)["result"]["format"]
    env = jinja_utils.get_jinja_environment(allow_undefined=True)  # format_execution_result's
    result = step(api, PENDING, True)
    text = env.from_string(fmt).render(execution={
        "id": EXECUTION, "status": "succeeded", "parameters": {"inquiry_id": PENDING},
        "result": {"result": result}})
    assert "Recorded as answered by alice (chat)." in text.splitlines()
    api.executions[EXECUTION] = chat_context("mallory")
    with pytest.raises(NotApprover) as caught:
        step(api, ANSWERED, True)
    evidence = caught.value.evidence()   # as run_step returns a failed step
    text = env.from_string(fmt).render(execution={
        "id": EXECUTION, "status": "failed", "parameters": {"inquiry_id": ANSWERED},
        "result": {"result": {"error": evidence, "text": error_text(evidence)}}})
    assert text.startswith("respond failed: chat user 'mallory' may not answer remedy "
                           "approvals; who may: alice\nnext: who may approve is "
                           "automatic.approvers.users")
