"""A rule's action parameters rendered from a trigger payload with st2's own code, the way st2's
rule enforcer renders them (st2reactor/st2reactor/rules/enforcer.py @v3.9.0: _do_enforce ->
get_resolved_parameters -> st2common.util.param.render_live_params, with the trigger payload as
the `trigger` context; the action's and its runner's parameter schemas cast the results).

What is not st2's: the action and runner metadata come from the YAML files (st2 reads them from
MongoDB), and the action context names a user and no pack (st2 gives the rule's pack, which makes
render_live_params read the pack config from MongoDB; the remedy rule reads no config). Importing
st2common.util.param does not eventlet-patch the process, so the unit and lab tiers use this.
Used by tests/unit/test_rule_render.py and tests/lab/test_sensor_lab.py."""
import importlib
import os

import yaml
from st2common.util import param as param_utils

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PACK = "dangling_volume"
RULE = os.path.join(REPO, "rules", "remedy_on_detach_failure.yaml")
# runner_type -> the st2 package that ships its runner.yaml
RUNNER_PACKAGES = {"orquesta": "orquesta_runner", "python-script": "python_runner"}


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def runner_parameters(runner_type):
    """The runner's parameter schemas, from the runner.yaml st2 registers it with."""
    package = importlib.import_module(RUNNER_PACKAGES[runner_type])
    for runner in load(os.path.join(os.path.dirname(package.__file__), "runner.yaml")):
        if runner["name"] == runner_type:
            return runner.get("runner_parameters") or {}
    raise LookupError("%s ships no runner %s" % (package.__name__, runner_type))


def render_rule(payload, rule_path=RULE):
    """(rule, parameters) as st2 would run the rule's action for this trigger payload; raises
    st2's ParamException where st2 fails the enforcement (e.g. an undefined trigger field)."""
    rule = load(rule_path)
    pack, _, action_name = rule["action"]["ref"].partition(".")
    assert pack == PACK, "the rule runs another pack's action: %s" % rule["action"]["ref"]
    action = load(os.path.join(REPO, "actions", action_name + ".yaml"))
    given = rule["action"].get("parameters") or {}
    unknown = set(given) - set(action.get("parameters") or {})
    assert not unknown, "the rule sets unknown parameter(s) %s" % sorted(unknown)
    params = param_utils.render_live_params(
        runner_parameters=runner_parameters(action["runner_type"]),
        action_parameters=action.get("parameters") or {},
        params=given,
        action_context={"user": "stanley"},
        additional_contexts={"trigger": payload})
    return rule, params
