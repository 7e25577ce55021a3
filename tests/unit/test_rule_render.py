"""The rule's action parameters rendered by st2's own code (st2common.util.param
render_live_params, as st2's rule enforcer calls it: tools/pylib/testsupport/rules.py), on
trigger payloads the sensor makes (sensors/nova_detach_events.payload_for), including hostile
text in `reason`."""
import dataclasses
import os

import pytest
from st2common.exceptions.param import ParamException
from st2common.util import param as param_utils

import nova_detach_events as events
from testsupport.rules import RULE, load, render_rule, runner_parameters

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def payload(reason):
    return events.payload_for(events.Failure(
        "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222",
        "lab-compute", reason, "compute.exception", "m-7", "2026-11-25 04:00:00.123456",
        "versioned"))


def test_the_rule_is_on_and_listens_to_the_sensors_trigger():
    rule = load(RULE)
    assert rule["enabled"] is True  # st2 defaults rules to disabled
    sensor_triggers = set()
    for name in os.listdir(os.path.join(REPO, "sensors")):
        if name.endswith(".yaml"):
            for t in load(os.path.join(REPO, "sensors", name)).get("trigger_types", []):
                sensor_triggers.add("dangling_volume." + t["name"])
    assert rule["trigger"]["type"] in sensor_triggers


def rerender(params, rule_path=RULE):
    """What st2 does to the rule's parameters once more when it schedules the execution
    (docs/stackstorm.md, "Parameters are rendered again"): render_live_params over the live
    values, with no trigger context."""
    rule = load(rule_path)
    name = rule["action"]["ref"].partition(".")[2]
    action = load(os.path.join(REPO, "actions", name + ".yaml"))
    return param_utils.render_live_params(
        runner_parameters=runner_parameters(action["runner_type"]),
        action_parameters=action.get("parameters") or {},
        params=params, action_context={"user": "stanley"})


MARKED = "detach failed {{ 7*7 }} {% if 1 %}x{% endif %} {# c #} {{{ 7*7 }}} {{% raw %}"
MARKERS = ("{{", "{%", "{#")


def test_st2_renders_template_markers_in_a_live_parameter_again():
    """Why the sensor strips them: st2 renders a nested value holding a marker (the bug)."""
    assert rerender({"server_id": "s", "volume_id": "v", "mode": "automatic",
                     "triggered_by": {"reason": "detach failed {{ 7*7 }}"}})[
        "triggered_by"] == {"reason": "detach failed 49"}


@pytest.mark.parametrize("field", [name for name, _ in events.PAYLOAD_FIELDS
                                   if name != "source"])
def test_no_payload_field_carries_a_marker_into_st2_rendering(field):
    values = dict(dataclasses.asdict(events.Failure(
        "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222",
        "lab-compute", "r", "compute.exception", "m-7", "2026-11-25 04:00:00.123456",
        "versioned")), **{field: MARKED})
    trigger = events.payload_for(events.Failure(**values))
    assert not any(m in v for v in trigger.values() for m in MARKERS)
    assert trigger[field] == events.strip_markers(MARKED) and "7*7" in trigger[field]
    _, params = render_rule(trigger)
    assert rerender(params) == params  # renders to itself: nothing left for st2 to render
    assert "49" not in str(params)


@pytest.mark.parametrize("reason", [
    "DeviceDetachFailed: Device detach failed for vdb",
    'ClientException: "quoted" \\ back\\slash\nnew line {{ not.jinja }} {% raw %} é ✓',
])
def test_parameters_render_to_the_remedy_inputs(reason):
    trigger = payload(reason)
    reason = events.strip_markers(reason)
    _, params = render_rule(trigger)
    assert rerender(params) == params
    assert params["server_id"] == trigger["server_id"]
    assert params["volume_id"] == trigger["volume_id"]
    assert params["mode"] == "automatic"
    assert params["triggered_by"] == {
        "source": "sensor", "signal": "versioned", "event_type": "compute.exception",
        "message_id": "m-7", "host": "lab-compute", "reason": reason,
        "timestamp": "2026-11-25 04:00:00.123456"}


def test_a_payload_missing_a_field_fails_the_render_loudly():
    trigger = payload("x")
    del trigger["message_id"]
    # StrictUndefined: tojson meets an Undefined and refuses it (st2 records the enforcement
    # as failed); never a remedy started with an empty message id
    with pytest.raises(ParamException, match="triggered_by"):
        render_rule(trigger)
