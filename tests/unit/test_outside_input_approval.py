"""Bad input around the approval, in one table: whatever a chat line, a caller or the pack
config brings, nothing is posted to st2's inquiries API unless a configured approver answers a
well-formed inquiry id. Each row runs dangling_volume.respond's step (or the action as st2's
python runner runs it) against the loopback st2 API stand-in (testsupport.st2api) and asserts
the refusal and that no PUT reached /v1/inquiries/."""
import pytest

from dvremedy.errors import ConfigError, InputError
from dvremedy.steps.respond import NotApprover, respond_step
from testsupport.st2api import (EXECUTION, PENDING, REPO, TOKEN, approvers, chat_context,
                                ctx_for, env_for)

ALICE = approvers(users=["alice"])

# id, pack config, context st2 recorded for respond's execution, parameters, refusal, message
ROWS = [
    ("non-approver in chat", ALICE, chat_context("mallory"),
     {"inquiry_id": PENDING, "approved": True}, NotApprover,
     "chat user 'mallory' may not answer remedy approvals; who may: alice"),
    ("non-approver rejecting", ALICE, chat_context("mallory"),
     {"inquiry_id": PENDING, "approved": False}, NotApprover, "'mallory' may not answer"),
    ("st2 user is an approver, the chat user is not", ALICE,
     chat_context("mallory", user="alice"), {"inquiry_id": PENDING, "approved": True},
     NotApprover, "'mallory' may not answer"),
    ("chat line without a chat user", ALICE, chat_context(None),
     {"inquiry_id": PENDING, "approved": True}, NotApprover, "st2 recorded no chat user"),
    ("not from chat, match_st2_user off", ALICE, {"user": "alice"},
     {"inquiry_id": PENDING, "approved": True}, NotApprover, "did not come from chat"),
    ("template marker as the chat user", ALICE, chat_context("{{ 7*7 }}"),
     {"inquiry_id": PENDING, "approved": True}, NotApprover, "'{{ 7*7 }}' may not answer"),
    ("approver, in a channel not allowed", approvers(users=["alice"], channels=["#ops"]),
     chat_context("alice", "#random"), {"inquiry_id": PENDING, "approved": True},
     NotApprover, "count only in #ops"),
    ("empty config", {}, chat_context("alice"), {"inquiry_id": PENDING, "approved": True},
     NotApprover, "automatic.approvers.users is empty"),
    ("template marker as an approver in the config", approvers(users=["{{ 7*7 }}"]),
     chat_context("49"), {"inquiry_id": PENDING, "approved": True}, ConfigError,
     "automatic.approvers.users must be a list of names"),
    ("template marker in the inquiry id", ALICE, chat_context("alice"),
     {"inquiry_id": "{{ st2kv.system.x }}", "approved": True}, InputError,
     "inquiry_id must be an st2 id"),
    ("marker after a good inquiry id", ALICE, chat_context("alice"),
     {"inquiry_id": PENDING + "{{ 7*7 }}", "approved": True}, InputError,
     "inquiry_id must be an st2 id"),
    ("non-hex inquiry id", ALICE, chat_context("alice"),
     {"inquiry_id": "65a1b2c3d4e5f60718293a4z", "approved": True}, InputError,
     "inquiry_id must be an st2 id"),
    ("oversized inquiry id", ALICE, chat_context("alice"),
     {"inquiry_id": PENDING * 400, "approved": True}, InputError,
     "inquiry_id must be an st2 id"),
    ("path in the inquiry id", ALICE, chat_context("alice"),
     {"inquiry_id": "../executions/" + PENDING, "approved": True}, InputError,
     "inquiry_id must be an st2 id"),
    ("approved as text", ALICE, chat_context("alice"),
     {"inquiry_id": PENDING, "approved": "true"}, InputError, "approved must be true or false"),
]


def posted(api):
    return [r for r in api.requests if r["path"].startswith("/v1/inquiries/")]


@pytest.mark.parametrize("config, context, params, refusal, text",
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_around_the_approval_posts_nothing(api, config, context, params, refusal,
                                                     text):
    api.executions[EXECUTION] = context
    with pytest.raises(refusal) as caught:
        respond_step(ctx_for(config), environ=env_for(api), **params)
    assert text in caught.value.message
    assert TOKEN not in caught.value.message
    assert posted(api) == []
    assert api.inquiries[PENDING]["status"] == "pending"


# through st2's request creation (st2local runs st2's own parameter validation): refused
# before anything is rendered or run
ST2_ROWS = [
    # `approve remedy <id> api_user=alice`: a trailing key=value becomes a parameter; respond has
    # none by that name and st2 refuses unknown ones (additionalProperties false, st2common
    # util/schema get_schema_for_resource_parameters)
    ("spoofed api_user parameter", {"inquiry_id": PENDING, "approved": "true",
                                    "api_user": "alice"},
     "Additional properties are not allowed ('api_user' was unexpected)"),
    # the pattern on inquiry_id is checked before st2 renders parameters: the marker is never
    # rendered (a rendered secret would come back in the refusal)
    ("template marker in the inquiry id", {"inquiry_id": "{{ st2kv.system.secret }}",
                                           "approved": "true"},
     "does not match '^[0-9a-fA-F]{24}$'"),
]


@pytest.mark.parametrize("params, text", [row[1:] for row in ST2_ROWS],
                         ids=[row[0] for row in ST2_ROWS])
def test_bad_input_is_refused_by_st2_itself_and_posts_nothing(api, monkeypatch, tmp_path,
                                                              params, text):
    from st2local import run_action
    monkeypatch.setenv("ST2_ACTION_API_URL", api.api_url)
    monkeypatch.setenv("ST2_ACTION_AUTH_TOKEN", TOKEN)
    api.any_execution = chat_context("mallory")
    execution = run_action(REPO, "dangling_volume.respond", params, from_cli=True,
                           config=ALICE, progress=None,
                           datastore_path=str(tmp_path / "kv.json"))
    assert execution["status"] == "failed"
    assert text in execution["result"]["error"]
    assert api.requests == [] and api.inquiries[PENDING]["status"] == "pending"
