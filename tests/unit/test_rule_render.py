"""The rule's action parameters rendered by st2's own code (st2common.util.param
render_live_params, as st2's rule enforcer calls it: tools/pylib/testsupport/rules.py), on
trigger payloads the sensor makes (sensors/nova_detach_events.payload_for), including hostile
text in `reason`."""
import os

import pytest
from st2common.exceptions.param import ParamException

import nova_detach_events as events
from testsupport.rules import RULE, load, render_rule

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


@pytest.mark.parametrize("reason", [
    "DeviceDetachFailed: Device detach failed for vdb",
    'ClientException: "quoted" \\ back\\slash\nnew line {{ not.jinja }} {% raw %} é ✓',
])
def test_parameters_render_to_the_remedy_inputs(reason):
    trigger = payload(reason)
    _, params = render_rule(trigger)
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
