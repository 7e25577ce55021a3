"""Input from outside (a chat line, a trigger through the rule, an API caller) through st2 3.9's
OWN code, up to the point where st2 would write the execution: nothing carrying a template
marker ({{ {% {#) or a bad value gets past the request's validation, so nothing is rendered,
scheduled or changed.

The st2 code run here, in the order st2 runs it (the st2api controllers themselves are not
installed in these venvs; their sequence of st2common calls is copied from v3.9.0, each call is
st2's):
- chat (st2api aliasexecution.py `_post` + `_schedule_execution`): `match_command_to_alias`,
  `extract_parameters_for_action_alias_db`, `inject_immutable_parameters` (renders the alias's
  own immutable values with api_user / source_channel), `action_param_utils.cast_params`, then
  `action_service.create_request` (no rendering before it on this path);
- the rule (st2reactor rules/enforcer.py `_invoke_action`): `render_live_params` of the rule's
  parameters with the trigger payload, then `create_request`;
- an API caller (st2api actionexecutions.py `_schedule_execution`): `render_live_params` of the
  caller's values FIRST (with the caller's own, RBAC-checked datastore view), then
  `create_request`: a marker the caller protects from that first rendering ({% raw %}) reaches
  validation and is refused there.

`create_request` is st2's own, whole: schema validation of the live parameters against the
action's (get_schema_for_action_parameters, the custom draft-3 validator, defaults included)
and the immutable check; where it would write the LiveActionDB (LiveAction.add_or_update) the
test stops it and records "scheduled". ActionDB/RunnerTypeDB come from the pack's YAML through
st2's ActionAPI (tools/pylib/st2local/pack.py). Importing these st2common modules does not
eventlet-patch the process (test_pack_content checks the same for its imports)."""
import json
import os

import jsonschema
import pytest
import yaml
from st2common.exceptions.content import ParseException
from st2common.models.api.action import ActionAliasAPI
from st2common.models.db.liveaction import LiveActionDB
from st2common.models.utils import action_param_utils
from st2common.models.utils.action_alias_utils import (extract_parameters_for_action_alias_db,
                                                       inject_immutable_parameters)
from st2common.persistence.liveaction import LiveAction
from st2common.services import action as action_service
from st2common.services import keyvalues as kv_service
from st2common.util import action_db as action_utils
from st2common.util import param as param_utils
from st2common.util.actionalias_matching import match_command_to_alias
from st2local.keys import KeyLookup
from st2local.pack import Pack
from testsupport.rules import RULE, load

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = Pack(REPO)
SECRET = "s3cret-db-password"
STORE = {"db_password": {"value": SECRET}, "approval_channel": {"value": "#ops"}}
SID = "03549f61-9cee-4bdf-b5e9-39c18d815a06"
VID = "7d0c8a4e-1b2f-4c3d-9e8f-0a1b2c3d4e5f"
KV = "{{ st2kv.system.db_password }}"
MARKERS = ("{{", "{%", "{#")
HELP_ALIAS = "dangling_volume_help"


def _aliases():
    out = []
    for name in sorted(os.listdir(os.path.join(REPO, "aliases"))):
        with open(os.path.join(REPO, "aliases", name)) as f:
            meta = yaml.safe_load(f)
        out.append(ActionAliasAPI.to_model(ActionAliasAPI(**meta)))
    return out


ALIASES = _aliases()


class Scheduled(Exception):
    """create_request passed validation and would now write the execution."""


@pytest.fixture(autouse=True)
def st2_without_its_database(monkeypatch):
    """st2's lookups answer from the pack's YAML and a small key store; the write stops."""
    monkeypatch.setattr(action_utils, "get_action_by_ref",
                        lambda ref, only_fields=None: PACK.get_action(ref))
    monkeypatch.setattr(action_utils, "get_runnertype_by_name",
                        lambda name: PACK.runner_types[name])
    monkeypatch.setattr(param_utils, "get_config", lambda pack, user: {"cloud": "lab"})
    monkeypatch.setattr(param_utils, "KeyValueLookup", lambda **kw: KeyLookup(STORE))
    monkeypatch.setattr(param_utils, "UserKeyValueLookup", lambda **kw: KeyLookup(None))
    monkeypatch.setattr(kv_service, "KeyValueLookup", lambda **kw: KeyLookup(STORE))
    monkeypatch.setattr(kv_service, "UserKeyValueLookup", lambda **kw: KeyLookup(None))
    monkeypatch.setattr(action_service.executions, "get_parent_context", lambda lv: None)

    def written(liveaction, *args, **kwargs):
        raise Scheduled(liveaction)
    monkeypatch.setattr(LiveAction, "add_or_update", written)


def request(ref, params, context):
    """st2's create_request: ("scheduled", parameters) or ("refused", st2's message)."""
    liveaction = LiveActionDB(action=ref, context=dict(context), parameters=params)
    try:
        action_service.create_request(liveaction)
    except Scheduled as done:
        return "scheduled", done.args[0].parameters
    except jsonschema.ValidationError as exc:
        return "refused", exc.message
    except ValueError as exc:
        return "refused", str(exc)
    raise AssertionError("create_request neither refused nor wrote %s" % ref)


def chat(line, api_user="alice", channel="#ops"):
    """A chat line as st2's API runs it: ("no match", ...) / ("refused", ...) / ("scheduled",
    parameters) / ("help", parameters): the help alias took it (it runs core.noop)."""
    found = match_command_to_alias(line, [a for a in ALIASES if a.enabled])
    if len(found) != 1:
        return "no match", [m["alias"].name for m in found]
    alias, representation = found[0]["alias"], found[0]["representation"]
    try:
        params = extract_parameters_for_action_alias_db(alias, representation, line)
    except ParseException as exc:
        return "no match", str(exc)
    context = {"action_alias_ref": "dangling_volume." + alias.name, "api_user": api_user,
               "user": "chatbot", "source_channel": channel}
    try:
        inject_immutable_parameters(alias, [params], context)
    except ValueError as exc:
        return "refused", str(exc)
    params = action_param_utils.cast_params(action_ref=alias.action_ref, params=params)
    outcome = request(alias.action_ref, params, context)
    if alias.name == HELP_ALIAS and outcome[0] == "scheduled":
        return "help", outcome[1]   # core.noop: the help alias's ack lists the forms
    return outcome


def _live(ref, params, context, additional=None):
    action = PACK.get_action(ref)
    return param_utils.render_live_params(PACK.runner_type(action).runner_parameters,
                                          action.parameters, params, context, additional)


def api(ref, **params):
    """An API caller (st2 run / POST /v1/executions): rendered first, then the request."""
    context = {"user": "bob", "pack": "dangling_volume"}
    return request(ref, _live(ref, params, context), context)


def trigger(**fields):
    """A detach_failed trigger instance through the rule (a forged one, or a sensor that let a
    field through unstripped): the rule's parameters rendered as the enforcer does."""
    payload = {"server_id": SID, "volume_id": VID, "host": "cmp1", "reason": "detach failed",
               "event_type": "compute.exception", "message_id": "m-1",
               "timestamp": "2026-11-25 04:00:00.1", "source": "versioned"}
    payload.update(fields)
    rule = load(RULE)
    context = {"user": "stanley", "rule": "dangling_volume.remedy_on_detach_failure",
               "pack": "dangling_volume"}
    params = _live(rule["action"]["ref"], rule["action"]["parameters"], context,
                   {"trigger": payload})
    return request(rule["action"]["ref"], params, context)


def _sensor_payload(reason, host="cmp-7.example"):
    import nova_detach_events as events
    return events.payload_for(events.Failure(SID, VID, host, reason, "compute.exception",
                                             "6f1e4b2a-0c1d-4e5f-8a9b-0c1d2e3f4a5b",
                                             "2026-11-25 04:00:00.123456", "versioned"))


R = "remedy volume %s on server %s"
# (row id, how it comes in, what st2 answers, a piece of that answer)
ROWS = [
    ("marker in volume_id", lambda: chat(R % (KV, SID)), "help", ""),
    ("statement in server_id", lambda: chat(R % (VID, "{% for k in range(9) %}x{% endfor %}")),
     "help", ""),
    ("comment marker in server_id", lambda: chat(R % (VID, SID + "{# x #}")), "help", ""),
    ("marker in the dry run's placeholder",
     lambda: chat("dry run remedy volume %s on server %s" % (VID, KV)), "help", ""),
    ("marker in attachments' server_id", lambda: chat("attachments of server {{ 7*7 }}"),
     "help", ""),
    ("marker in the audited project", lambda: chat("audit volumes of project " + KV),
     "help", ""),
    ("marker in the audited host", lambda: chat("audit volumes on host {{ 7*7 }}"),
     "help", ""),
    ("marker in a trailing key=value", lambda: chat((R % (VID, SID)) + ' cloud="%s"' % KV),
     "refused", "does not match"),
    ("trailing mode=automatic (immutable)", lambda: chat((R % (VID, SID)) + " mode=automatic"),
     "refused", "Immutable arguments cannot be overriden: mode"),
    ("trailing triggered_by= (immutable)",
     lambda: chat((R % (VID, SID)) + ' triggered_by={"source":"sensor","reason":"%s"}' % KV),
     "refused", "Immutable arguments cannot be overriden: triggered_by"),
    ("trailing dry_run=false on the dry run (immutable)",
     lambda: chat("dry run remedy volume %s on server %s dry_run=false" % (VID, SID)),
     "refused", "Immutable arguments cannot be overriden: dry_run"),
    ("trailing scope= on a scoped audit (immutable)",
     lambda: chat("audit volumes on host cmp1 scope=all"), "refused",
     "Immutable arguments cannot be overriden: scope"),
    ("words after the last placeholder", lambda: chat((R % (VID, SID)) + " please"),
     "help", ""),
    ("non-UUID ids", lambda: chat(R % ("1111", "2222")), "refused", "does not match"),
    ("a shell-ish id", lambda: chat(R % (VID, "2222;reboot")), "refused", "does not match"),
    ("traversal in report_path", lambda: chat("audit volumes report_path=../../etc/cron.d/x.json"),
     "refused", "does not match"),
    ("absolute report_path", lambda: chat("audit volumes report_path=/etc/cron.d/x.json"),
     "refused", "does not match"),
    ("marker in report_path", lambda: chat('audit volumes report_path="%s"' % KV),
     "refused", "does not match"),
    ("huge project", lambda: chat("audit volumes of project " + "p" * 5000), "refused",
     "does not match"),
    ("empty id", lambda: chat(R % (VID, "''")), "refused", "does not match"),
    ("no id at all", lambda: chat("attachments of server"), "help", ""),
    ("a marker in a pair on the help line", lambda: chat("dangling volume help x=" + KV),
     "refused", ""),
    ("a marker in a runner parameter (env)",
     lambda: chat((R % (VID, SID)) + ' env=\'{"A": "%s"}\'' % KV), "refused", ""),
    ("a marker in attachments' runner parameter (env)",
     lambda: chat("attachments of server %s env='{\"A\": \"%s\"}'" % (SID, KV)), "refused",
     ""),
    ("sweep with a marker in a trailing pair",
     lambda: chat("sweep volumes scope=project project=" + '"%s"' % KV), "refused",
     "does not match"),
    ("chat user name carrying a marker", lambda: chat(R % (VID, SID), api_user=KV), "refused",
     "does not match"),
    ("chat channel carrying a marker", lambda: chat(R % (VID, SID), channel="#{{ 7*7 }}"),
     "refused", "does not match"),
    ("approve with a marker in the inquiry id", lambda: chat("approve remedy " + KV), "help",
     ""),
    ("trigger reason with a marker, through the rule", lambda: trigger(reason="x " + KV),
     "refused", "does not match"),
    ("trigger host with a marker, through the rule", lambda: trigger(host="{% raw %}"),
     "refused", "does not match"),
    ("huge trigger reason, through the rule", lambda: trigger(reason="r" * 5000), "refused",
     "does not match"),
    ("non-UUID id in a trigger, through the rule", lambda: trigger(server_id="cmp1"), "refused",
     "does not match"),
    ("API caller shields a marker from the first rendering",
     lambda: api("dangling_volume.remedy", server_id="{% raw %}" + KV + "{% endraw %}",
                 volume_id=VID), "refused", "does not match"),
    ("API caller shields a marker inside triggered_by",
     lambda: api("dangling_volume.remedy", server_id=SID, volume_id=VID,
                 triggered_by={"source": "api", "note": "{% raw %}{{ 7*7 }}{% endraw %}"}),
     "refused", "does not match"),
    ("API caller sets mode to a rendered non-enum", lambda: api(
        "dangling_volume.remedy", server_id=SID, volume_id=VID, mode="{{ 'auto' ~ 'matic!' }}"),
     "refused", "does not match"),
    ("API caller: report_path outside", lambda: api("dangling_volume.audit",
                                                    report_path="../../../root/.ssh/x.json"),
     "refused", "does not match"),
    ("API caller: triggered_by of the wrong type", lambda: api(
        "dangling_volume.remedy", server_id=SID, volume_id=VID,
        triggered_by={"source": "api", "user": {"nested": "{% raw %}{{{% endraw %}"}}),
     "refused", "is not of type"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_from_outside_is_refused_before_anything_is_scheduled(row):
    _name, send, expected, message = row
    outcome, detail = send()
    assert outcome == expected, (outcome, detail)  # "scheduled" would mean a LiveActionDB written
    assert message in str(detail), detail
    if outcome == "help":   # the help alias answered: nothing from the line became a parameter
        assert detail == {}, detail
    assert SECRET not in str(detail)  # a refused value was never rendered, nothing leaks back


def test_the_table_is_broad_enough():
    assert len(ROWS) >= 12 and len({r[0] for r in ROWS}) == len(ROWS)


# -- what does get through: the same paths with good input, rendered with nothing to render ------

def _no_marker(value):
    text = json.dumps(value)
    return not any(m in text for m in MARKERS)


GOOD = [
    lambda: chat(R % (VID, SID)),
    lambda: chat((R % (VID, SID)) + " dry_run=true cloud=prod"),
    lambda: chat("dry run remedy volume %s on server %s" % (VID, SID), api_user='o"brien'),
    lambda: chat("audit volumes of project web-prod report_path=nightly/web.json"),
    lambda: chat("approve remedy 65a1b2c3d4e5f60718293a4b"),
    lambda: chat("sweep volumes scope=host host=cmp-7"),
    lambda: trigger(reason='detach failed: "quoted" {single brace}'),
    # what the sensor dispatches (sensors/nova_detach_events.payload_for), hostile text included
    lambda: trigger(**_sensor_payload("detach failed {{ st2kv.system.db_password }} {% x %}")),
    lambda: trigger(**_sensor_payload("r" * 300, host=None)),  # the sensor caps reason at 300
    lambda: api("dangling_volume.remedy", server_id=SID, volume_id=VID, mode="automatic"),
]


@pytest.mark.parametrize("send", GOOD)
def test_good_input_is_scheduled_and_renders_to_itself(send):
    outcome, params = send()
    assert outcome == "scheduled", params
    assert _no_marker(params)
    # what st2 does with it later (render_live_params again when the request is scheduled,
    # render_final_params in the runner): nothing to render, the values stay as validated
    for ref in ("dangling_volume.remedy", "dangling_volume.audit", "dangling_volume.sweep",
                "dangling_volume.respond"):
        action = PACK.get_action(ref)
        known = set(action.parameters) | set(PACK.runner_type(action).runner_parameters)
        if set(params) <= known:
            break
    again = _live(ref, params, {"user": "stanley", "pack": "dangling_volume"})
    assert again == params and SECRET not in json.dumps(again)


def test_chat_runs_carry_who_asked_and_no_marker():
    outcome, params = chat(R % (VID, SID), api_user=None, channel=None)
    assert outcome == "scheduled"
    assert params["mode"] == "manual"
    assert params["triggered_by"] == {"source": "chatops", "user": "chatbot", "channel": ""}


def test_without_patterns_the_marker_would_have_been_rendered():
    """The bug this guards: st2 renders a validated live value holding a marker (st2's own
    render_live_params), so the pattern is what keeps the secret out of the run."""
    context = {"user": "stanley", "pack": "dangling_volume"}
    rendered = _live("dangling_volume.audit", {"project": KV}, context)
    assert rendered["project"] == SECRET
