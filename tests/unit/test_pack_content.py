"""Every file of pack content that exists (actions, rules, aliases, policies, sensors, pack.yaml,
config.schema.yaml and the example config: files others add later are picked up too) valid for
st2's own API models and validators, as st2 3.9 registers them: ActionAPI (+ the parameter rules
of validators/api/action.py against the runner's runner.yaml), RuleAPI (+ validate_criteria and
validate_trigger_parameters), ActionAliasAPI (+ st2's format parser), PolicyAPI (+ the policy
type's parameters from st2common/policies/meta/*.yaml), SensorTypeAPI (+ the registrar's
poll_interval minimum and st2's payload validator on each trigger schema), PackAPI,
ConfigSchemaAPI and validate_config_against_schema (what st2-validate-pack-config runs). Then
the cross checks st2 makes only when something runs: refs name existing actions, parameters
and trigger fields exist, entry points resolve under the pack, one Action class per python
action module. Then st2's validators on content st2 refuses, through the same helpers.

No MongoDB: where st2 would read a runner, a policy type or a trigger type from its database,
the helpers give st2's code the one st2 registers from its own files. Importing these st2
modules does not eventlet-patch the process (checked below), so this stays in the unit tier."""
import ast
import glob
import os
from unittest import mock

import eventlet.patcher
import jinja2
import jsonschema
import pytest
import yaml
from st2common.constants import triggers as st2_triggers
from st2common.constants.sensors import MINIMUM_POLL_INTERVAL
from st2common.models.api.action import ActionAliasAPI, ActionAPI
from st2common.models.api.pack import ConfigSchemaAPI, PackAPI
from st2common.models.api.policy import PolicyAPI, PolicyTypeAPI
from st2common.models.api.rule import RuleAPI
from st2common.models.api.sensor import SensorTypeAPI
from st2common.models.api.trigger import TriggerTypeAPI
from st2common.models.utils.action_alias_utils import ActionAliasFormatParser
from st2common.persistence.policy import PolicyType
from st2common.util import schema as util_schema
from st2common.util.actionalias_matching import normalise_alias_format_string
from st2common.util.pack import get_pack_ref_from_metadata, validate_config_against_schema
from st2common.validators.api import action as action_validator
from st2common.validators.api import reactor as reactor_validator

import st2common

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = "dangling_volume"
ST2_SOURCE = os.path.join(REPO, ".venvs", "st2-src", "st2")  # tools/make-venvs unpacks it
POLICY_META = os.path.join(os.path.dirname(st2common.__file__), "policies", "meta")


def _files(kind):
    return sorted(glob.glob(os.path.join(REPO, kind, "*.yaml")) +
                  glob.glob(os.path.join(REPO, kind, "*.yml")))


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _ids(paths):
    return [os.path.relpath(p, REPO) for p in paths]


# what st2 registers from its own files ---------------------------------------------------------

def _runners():
    """{runner name: runner_parameters} of every runner.yaml st2 ships: the installed runner
    packages, and st2's source tree for the rest."""
    out = {}
    paths = glob.glob(os.path.join(ST2_SOURCE, "contrib", "runners", "*", "*", "runner.yaml"))
    for package in ("python_runner", "orquesta_runner"):
        module = __import__(package)
        paths.append(os.path.join(os.path.dirname(module.__file__), "runner.yaml"))
    for path in paths:
        for runner in _load(path):
            out[runner["name"]] = runner.get("runner_parameters") or {}
    # st2 3.9 ships noop_runner (core.noop's runner, no runner parameters); the vendored source
    # snapshot holds only the python and orquesta runners, so it is named here, as st2local does
    out.setdefault("noop", {})
    return out


RUNNERS = _runners()


def _policy_types():
    """{ref: PolicyTypeDB} as st2 registers st2common/policies/meta/*.yaml."""
    out = {}
    for path in glob.glob(os.path.join(POLICY_META, "*.yaml")):
        model = PolicyTypeAPI.to_model(PolicyTypeAPI(**_load(path)))
        out[model.ref] = model
    return out


POLICY_TYPES = _policy_types()


def _st2_trigger_payloads():
    """{ref: payload field names} of st2's own trigger types (constants/triggers.py)."""
    out = {}
    specs = [t for group in st2_triggers.INTERNAL_TRIGGER_TYPES.values() for t in group]
    specs += list(st2_triggers.SYSTEM_TRIGGER_TYPES.values())
    for spec in specs:
        ref = "%s.%s" % (spec["pack"], spec["name"])
        out[ref] = set(((spec.get("payload_schema") or {}).get("properties") or {}))
    return out


ST2_TRIGGERS = _st2_trigger_payloads()


def action_parameter_names(action):
    """The parameters an execution of this action may set: its own and its runner's."""
    return set(action.get("parameters") or {}) | set(RUNNERS.get(action.get("runner_type"), {}))


def _st2_actions():
    """{ref: parameter names} of the actions st2 ships (contrib/core, contrib/chatops)."""
    out = {}
    for path in glob.glob(os.path.join(ST2_SOURCE, "contrib", "*", "actions", "*.yaml")):
        pack = os.path.basename(os.path.dirname(os.path.dirname(path)))
        action = _load(path)
        if pack in ("core", "chatops") and isinstance(action, dict) and action.get("name"):
            out["%s.%s" % (pack, action["name"])] = action_parameter_names(action)
    return out


# st2's validation, one helper per kind: [] when st2 takes it, else what st2 says ---------------

def _errors(check):
    try:
        check()
    except (jsonschema.ValidationError, jsonschema.SchemaError, ValueError, TypeError,
            KeyError, Exception) as exc:  # st2 raises several of its own exception classes
        return [str(getattr(exc, "message", None) or exc)]
    return []


def action_errors(action, pack=PACK):
    def check():
        cleaned = ActionAPI(**dict(action, pack=action.get("pack", pack))).validate()
        if cleaned.runner_type not in RUNNERS:
            raise ValueError('RunnerType "%s" is not found.' % cleaned.runner_type)
        action_validator._validate_parameters(  # validate_action without its database reads
            "%s.%s" % (cleaned.pack, cleaned.name), cleaned.parameters or {},
            RUNNERS[cleaned.runner_type])
    return _errors(check)


def rule_errors(rule, pack=PACK):
    def check():
        cleaned = RuleAPI(**dict(rule, pack=rule.get("pack", pack))).validate()
        reactor_validator.validate_criteria(dict(getattr(cleaned, "criteria", {}) or {}))
        trigger = cleaned.trigger
        if trigger.get("type") in st2_triggers.SYSTEM_TRIGGER_TYPES:
            reactor_validator.validate_trigger_parameters(trigger["type"],
                                                          trigger.get("parameters") or {})
    return _errors(check)


def representations(alias):
    reps = []
    for fmt in alias.get("formats") or []:
        reps += normalise_alias_format_string(fmt)[1]
    return reps


def alias_errors(alias, pack=PACK):
    """ActionAliasAPI; the registrar refuses a different `pack`; every representation must
    compile in st2's parser (one bad regex breaks matching for every alias)."""
    def check():
        if alias.get("pack") not in (None, pack):
            raise ValueError('Model is in pack "%s" but field "pack" is different: %s'
                             % (pack, alias.get("pack")))
        ActionAliasAPI(**dict(alias, pack=pack)).validate()
        for rep in representations(alias):
            ActionAliasFormatParser(alias_format=rep)
    return _errors(check)


def policy_errors(policy, pack=PACK):
    def check():
        with mock.patch.object(PolicyType, "get_by_ref", side_effect=POLICY_TYPES.get):
            PolicyAPI(**dict(policy, pack=policy.get("pack", pack))).validate()
    return _errors(check)


def sensor_errors(sensor, pack=PACK):
    def check():
        if not sensor.get("entry_point"):  # bootstrap/sensorsregistrar.py, before the API model
            raise ValueError("Sensor definition missing entry_point")
        cleaned = SensorTypeAPI(**dict(sensor, pack=sensor.get("pack", pack))).validate()
        interval = getattr(cleaned, "poll_interval", None)
        if interval and interval < MINIMUM_POLL_INTERVAL:  # sensor_type_utils
            raise ValueError("Minimum possible poll_interval is %s seconds"
                             % MINIMUM_POLL_INTERVAL)
        for trigger in getattr(cleaned, "trigger_types", None) or []:
            TriggerTypeAPI(**dict(trigger, pack=pack)).validate()
            for key in ("payload_schema", "parameters_schema"):
                if key in trigger:  # the validator st2 checks payloads and parameters with
                    util_schema.CustomValidator.check_schema(trigger[key])
                    util_schema.CustomValidator(trigger[key])
    return _errors(check)


# the pack's content -------------------------------------------------------------------------

ACTION_FILES, RULE_FILES, ALIAS_FILES, POLICY_FILES, SENSOR_FILES = (
    _files(kind) for kind in ("actions", "rules", "aliases", "policies", "sensors"))
ACTIONS = {path: _load(path) for path in ACTION_FILES}
KNOWN = dict(_st2_actions(), **{"%s.%s" % (PACK, a["name"]): action_parameter_names(a)
                                for a in ACTIONS.values() if a.get("name")})
PACK_TRIGGERS = {}  # "<pack>.<name>" -> payload field names, from the sensors' trigger types
for _path in SENSOR_FILES:
    for _trigger in (_load(_path) or {}).get("trigger_types") or []:
        if isinstance(_trigger, dict) and _trigger.get("name"):
            PACK_TRIGGERS["%s.%s" % (PACK, _trigger["name"])] = set(
                ((_trigger.get("payload_schema") or {}).get("properties") or {}))


def _by_ref(ref):
    pack, _, name = ref.partition(".")
    for action in ACTIONS.values():
        if pack == PACK and action.get("name") == name:
            return action
    return None


def _required(action):
    """Parameters an execution must be given: required and without a default."""
    return {name for name, spec in (action.get("parameters") or {}).items()
            if isinstance(spec, dict) and spec.get("required") and "default" not in spec}


def test_importing_st2s_models_does_not_patch_the_process():
    """So these checks can live in the unit tier, beside sshd and thread tests."""
    assert not eventlet.patcher.is_monkey_patched("socket")
    assert not eventlet.patcher.is_monkey_patched("thread")
    assert not eventlet.patcher.is_monkey_patched("os")


def test_the_pack_has_content_to_check():
    assert ACTION_FILES and ALIAS_FILES and RULE_FILES
    assert {"python-script", "orquesta"} <= set(RUNNERS)
    assert "action.concurrency.attr" in POLICY_TYPES
    assert "core.st2.generic.inquiry" in ST2_TRIGGERS


@pytest.mark.skipif(not os.path.isdir(ST2_SOURCE), reason="st2's source tree is absent")
def test_st2s_own_actions_are_known():
    assert {"core.noop", "core.echo", "chatops.post_message"} <= set(KNOWN)


# pack.yaml and the config --------------------------------------------------------------------

def test_pack_yaml_is_valid_for_packapi():
    meta = _load(os.path.join(REPO, "pack.yaml"))
    PackAPI(**meta).validate()
    assert get_pack_ref_from_metadata(meta) == PACK


def test_config_schema_is_valid_and_the_example_config_validates_against_it():
    schema = _load(os.path.join(REPO, "config.schema.yaml"))
    ConfigSchemaAPI(pack=PACK, attributes=schema).validate()
    example = os.path.join(REPO, "dangling_volume.yaml.example")
    validate_config_against_schema(schema, _load(example) or {}, example, PACK)


def test_a_config_st2_refuses():
    schema = _load(os.path.join(REPO, "config.schema.yaml"))
    config = dict(_load(os.path.join(REPO, "dangling_volume.yaml.example")) or {})
    key = next(k for k, v in schema.items() if v.get("type") == "object")
    config[key] = "not a mapping"
    with pytest.raises(jsonschema.ValidationError, match='Failed validating attribute "%s"'
                       % key):
        validate_config_against_schema(schema, config, "x.yaml", PACK)


# actions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ACTION_FILES, ids=_ids(ACTION_FILES))
def test_action_metadata_is_valid(path):
    assert action_errors(ACTIONS[path]) == []


def test_action_names_are_unique():
    names = [a.get("name") for a in ACTIONS.values()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("path", ACTION_FILES, ids=_ids(ACTION_FILES))
def test_entry_point_resolves_under_actions(path):
    action = ACTIONS[path]
    entry = action.get("entry_point") or ""
    if action.get("runner_type") not in ("python-script", "orquesta", "action-chain",
                                         "local-shell-script", "remote-shell-script"):
        return
    assert entry and not os.path.isabs(entry), "%s needs a relative entry_point" % path
    resolved = "actions/" + entry
    # st2's get_pack_file_abs_path refuses any path that normalisation changes
    # (docs/stackstorm.md, "Action entry points")
    assert os.path.normpath("/" + resolved).lstrip("/") == resolved, resolved
    assert ".." not in entry.split("/"), resolved
    assert os.path.isfile(os.path.join(REPO, resolved)), resolved


def _classes(module_path):
    with open(module_path) as f:
        tree = ast.parse(f.read(), module_path)
    return {node.name: {item.name for item in node.body
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for node in tree.body if isinstance(node, ast.ClassDef)}


PYTHON_ACTIONS = [p for p in ACTION_FILES if ACTIONS[p].get("runner_type") == "python-script"]


@pytest.mark.parametrize("path", PYTHON_ACTIONS, ids=_ids(PYTHON_ACTIONS))
def test_python_action_module_defines_exactly_one_class_with_run(path):
    """st2 runs the alphabetically first class with run() and logs an exception for each other
    class the module defines (util/loader.py): one class, with run, per module."""
    module = os.path.join(REPO, "actions", ACTIONS[path]["entry_point"])
    classes = _classes(module)
    assert len(classes) == 1, (module, sorted(classes))
    (methods,) = classes.values()
    assert "run" in methods, module


@pytest.mark.parametrize("path", PYTHON_ACTIONS, ids=_ids(PYTHON_ACTIONS))
def test_python_action_run_takes_exactly_the_declared_parameters(path):
    """run(**parameters): a parameter run() does not take fails every execution with a
    TypeError; one it requires but the metadata does not declare can never be given."""
    action = ACTIONS[path]
    module = os.path.join(REPO, "actions", action["entry_point"])
    with open(module) as f:
        tree = ast.parse(f.read(), module)
    run = [item for node in tree.body if isinstance(node, ast.ClassDef)
           for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "run"][0]
    args = [a.arg for a in run.args.args[1:]]
    declared = set(action.get("parameters") or {}) - set(RUNNERS["python-script"])
    if run.args.kwarg is None:
        assert declared <= set(args), (module, declared - set(args))
    without_default = args[:len(args) - len(run.args.defaults)]
    assert set(without_default) <= declared, (module, set(without_default) - declared)


# rules --------------------------------------------------------------------------------------

def _trigger_fields(value):
    """The `trigger.<field>` names a rule's Jinja parameters read."""
    if isinstance(value, dict):
        return set().union(*[_trigger_fields(v) for v in value.values()]) if value else set()
    if isinstance(value, list):
        return set().union(*[_trigger_fields(v) for v in value]) if value else set()
    if not isinstance(value, str) or "{" not in value:
        return set()
    fields = set()
    for node in jinja2.Environment().parse(value).find_all((jinja2.nodes.Getattr,
                                                            jinja2.nodes.Getitem)):
        if isinstance(node.node, jinja2.nodes.Name) and node.node.name == "trigger":
            fields.add(node.attr if isinstance(node, jinja2.nodes.Getattr) else
                       getattr(node.arg, "value", None))
    return fields


@pytest.mark.parametrize("path", RULE_FILES, ids=_ids(RULE_FILES))
def test_rule_is_valid_and_names_what_exists(path):
    rule = _load(path)
    where = os.path.relpath(path, REPO)
    assert rule_errors(rule) == []
    assert rule.get("pack") in (None, PACK)
    ref = rule["action"]["ref"]
    assert ref in KNOWN, "%s: action %s is neither the pack's nor st2's" % (where, ref)
    params = set(rule["action"].get("parameters") or {})
    assert params <= KNOWN[ref], (where, params - KNOWN[ref])
    target = _by_ref(ref)
    if target is not None:
        assert _required(target) <= params, (where, "missing", _required(target) - params)
    trigger = rule["trigger"]["type"]
    payload = PACK_TRIGGERS.get(trigger, ST2_TRIGGERS.get(trigger))
    assert payload is not None, "%s: trigger %s is neither a sensor's nor st2's" % (
        where, trigger)
    read = _trigger_fields(rule["action"].get("parameters") or {})
    read |= {key.split(".")[1] for key in (rule.get("criteria") or {}) if "." in key}
    assert read <= payload, (where, "reads trigger fields it does not have", read - payload)


def test_rule_names_are_unique():
    names = [_load(p).get("name") for p in RULE_FILES]
    assert len(names) == len(set(names))


# aliases ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALIAS_FILES, ids=_ids(ALIAS_FILES))
def test_alias_is_valid_and_its_parameters_are_its_actions(path):
    alias = _load(path)
    where = os.path.relpath(path, REPO)
    assert alias_errors(alias) == []
    ref = alias["action_ref"]
    assert ref in KNOWN, "%s: action %s does not exist" % (where, ref)
    fixed = set(alias.get("immutable_parameters") or {})
    for rep in representations(alias):
        placeholders = set(ActionAliasFormatParser(alias_format=rep)._regex.groupindex)
        given = placeholders | fixed
        assert given <= KNOWN[ref], (where, rep, given - KNOWN[ref])
        target = _by_ref(ref)
        if target is not None:
            assert _required(target) <= given, (where, rep, _required(target) - given)


def test_alias_names_are_unique_and_carry_the_packs_name():
    """st2 looks an alias up by name alone, across packs."""
    names = [_load(p)["name"] for p in ALIAS_FILES]
    assert len(names) == len(set(names))
    assert all(name.startswith(PACK + "_") for name in names), names


# policies -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", POLICY_FILES, ids=_ids(POLICY_FILES))
def test_policy_is_valid_and_names_an_action_and_its_parameters(path):
    policy = _load(path)
    where = os.path.relpath(path, REPO)
    assert policy_errors(policy) == []
    ref = policy["resource_ref"]
    assert ref in KNOWN, "%s: resource_ref %s does not exist" % (where, ref)
    attributes = set((policy.get("parameters") or {}).get("attributes") or [])
    assert attributes <= KNOWN[ref], (where, attributes - KNOWN[ref])


# sensors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SENSOR_FILES, ids=_ids(SENSOR_FILES))
def test_sensor_is_valid_and_its_class_is_in_its_entry_point(path):
    sensor = _load(path)
    assert sensor_errors(sensor) == []
    entry = sensor["entry_point"]
    assert not os.path.isabs(entry) and ".." not in entry.split("/"), entry
    module = os.path.join(os.path.dirname(path), entry)  # relative to the YAML file
    assert os.path.isfile(module), module
    assert sensor["class_name"] in _classes(module), (module, sensor["class_name"])
    names = [t.get("name") for t in sensor.get("trigger_types") or []]
    assert len(names) == len(set(names)), names


# st2's validators, on content st2 refuses ---------------------------------------------------

GOOD_ACTION = {"name": "a", "runner_type": "python-script", "entry_point": "a.py",
               "parameters": {"x": {"type": "string", "required": True}}}


@pytest.mark.parametrize("change, text", [
    ({"runner_type": None}, "'runner_type' is a required property"),
    ({"name": None}, "'name' is a required property"),
    ({"runner_type": "python"}, 'RunnerType "python" is not found'),
    ({"entrypoint": "a.py"}, "Additional properties are not allowed"),
    ({"enabled": "yes"}, "is not of type 'boolean'"),
    ({"parameters": {"x-y": {"type": "string"}}}, "does not match any of the regexes"),
    ({"parameters": {"x": {"type": "string", "format": "uuid"}}},
     "Additional properties are not allowed ('format' was unexpected)"),
    ({"parameters": {"x": {"type": "text"}}}, "'text' is not one of"),
    ({"parameters": {"x": {"type": "string", "immutable": True}}},
     "Immutable param x requires a default value"),
    ({"parameters": {"timeout": {"type": "string", "default": "5"}}},
     'The attribute "type" for the runner parameter "timeout"'),
    ({"parameters": {"a": {"type": "string", "position": 0},
                     "b": {"type": "string", "position": 2}}}, "are not contiguous"),
    ({"notify": {"on-done": {}}}, "Additional properties are not allowed"),
])
def test_action_validator_refuses(change, text):
    action = {k: v for k, v in dict(GOOD_ACTION, **change).items() if v is not None}
    assert action_errors(GOOD_ACTION) == []
    errors = action_errors(action)
    assert any(text in e for e in errors), errors


GOOD_RULE = {"name": "r", "trigger": {"type": "core.st2.IntervalTimer",
                                      "parameters": {"unit": "hours", "delta": 1}},
             "criteria": {"trigger.executed_at": {"type": "exists", "pattern": ""}},
             "action": {"ref": "core.noop"}}


@pytest.mark.parametrize("change, text", [
    ({"action": {"ref": "core.noop", "params": {}}}, "Additional properties are not allowed"),
    ({"action": {"parameters": {}}}, "'ref' is a required property"),
    ({"trigger": {"parameters": {}}}, "'type' is a required property"),
    ({"criteria": {"trigger.x": {"pattern": "y"}}}, "Operator not specified for field"),
    ({"criteria": {"trigger.x": {"type": "equal", "pattern": "y"}}},
     "operator equal not in list"),
    ({"criteria": {"trigger.x": {"type": "exists"}}}, "no pattern specified"),
    ({"trigger": {"type": "core.st2.IntervalTimer", "parameters": {"unit": "hour", "delta": 1}}},
     "'hour' is not one of"),
    ({"trigger": {"type": "core.st2.IntervalTimer", "parameters": {"unit": "hours"}}},
     "'delta' is a required property"),
    ({"trigger": {"type": "core.st2.IntervalTimer",
                  "parameters": {"unit": "hours", "delta": 1, "every": 2}}},
     "Additional properties are not allowed"),
    ({"trigger": {"type": "core.st2.CronTimer", "parameters": {"minute": 5, "hours": 1}}},
     "Additional properties are not allowed"),
    ({"enable": True}, "Additional properties are not allowed"),
])
def test_rule_validator_refuses(change, text):
    assert rule_errors(GOOD_RULE) == []
    errors = rule_errors(dict(GOOD_RULE, **change))
    assert any(text in e for e in errors), errors


GOOD_ALIAS = {"name": "x", "action_ref": "p.a", "formats": [
    "say {{text}}", {"display": "shout <text>", "representation": ["shout {{text}}"]}],
    "ack": {"enabled": True, "format": "ok"}, "result": {"format": "done"},
    "immutable_parameters": {"loud": True}}


@pytest.mark.parametrize("change, text", [
    ({"action_ref": None}, "'action_ref' is a required property"),
    ({"formats": "say {{text}}"}, "is not of type 'array'"),
    ({"formats": [42]}, "42 is not of type 'string'"),
    ({"ack": {"format": 1}}, "is not of type 'string'"),
    ({"immutable_parameters": ["loud"]}, "is not of type 'object'"),
    ({"action": "p.a"}, "Additional properties are not allowed"),
    ({"pack": "other"}, 'Model is in pack "p" but field "pack" is different'),
    ({"formats": ["say ({{text}}"]}, "missing ), unterminated subpattern"),
])
def test_alias_validator_refuses(change, text):
    assert alias_errors(GOOD_ALIAS, pack="p") == []
    alias = {k: v for k, v in dict(GOOD_ALIAS, **change).items() if v is not None}
    errors = alias_errors(alias, pack="p")
    assert any(text in e for e in errors), errors


GOOD_POLICY = {"name": "p", "resource_ref": "p.a", "policy_type": "action.concurrency.attr",
               "parameters": {"threshold": 1, "action": "delay", "attributes": ["server_id"]}}


@pytest.mark.parametrize("change, text", [
    ({"resource_ref": None}, "'resource_ref' is a required property"),
    ({"policy_type": "action.concurrency.by_attr"}, "doesnt exist"),
    ({"parameters": {"action": "delay"}}, "'threshold' is a required property"),
    ({"parameters": {"threshold": "1"}}, "is not of type 'integer'"),
    ({"parameters": {"threshold": 1, "action": "drop"}}, "is not one of"),
    ({"parameters": {"threshold": 1, "attributes": ["a", "a"]}}, "non-unique elements"),
    ({"parameters": {"threshold": 1, "attributes": [""]}}, "is too short"),
    ({"parameters": {"threshold": 1, "attrs": ["a"]}}, "Additional properties are not allowed"),
    ({"policy_type": "action.concurrency", "parameters": {"threshold": 1,
                                                          "attributes": ["a"]}},
     "Additional properties are not allowed"),
    ({"policy_type": "action.retry", "parameters": {"retry_on": "failure",
                                                    "max_retry_count": 9}},
     "is greater than the maximum"),
    ({"type": "concurrency"}, "Additional properties are not allowed"),
])
def test_policy_validator_refuses(change, text):
    assert policy_errors(GOOD_POLICY, pack="p") == []
    policy = {k: v for k, v in dict(GOOD_POLICY, **change).items() if v is not None}
    errors = policy_errors(policy, pack="p")
    assert any(text in e for e in errors), errors


GOOD_SENSOR = {"class_name": "S", "entry_point": "s.py", "poll_interval": 30,
               "trigger_types": [{"name": "t", "payload_schema": {
                   "type": "object",
                   "properties": {"a": {"type": "string", "required": True}}}}]}


@pytest.mark.parametrize("change, text", [
    ({"class_name": None}, "'class_name' is a required property"),
    ({"entry_point": None}, "Sensor definition missing entry_point"),
    ({"poll_interval": 2}, "Minimum possible poll_interval is 4 seconds"),
    ({"poll_interval": "30"}, "is not of type 'number'"),
    ({"triggers": []}, "Additional properties are not allowed"),
    ({"trigger_types": [{"description": "no name"}]}, "'name' is a required property"),
    ({"trigger_types": [{"name": "t", "payload": {}}]}, "Additional properties are not allowed"),
    ({"trigger_types": [{"name": "t", "payload_schema": {
        "type": "object", "properties": {"a": {"type": "text"}}}}]}, "is not valid under any"),
])
def test_sensor_validator_refuses(change, text):
    assert sensor_errors(GOOD_SENSOR, pack="p") == []
    sensor = {k: v for k, v in dict(GOOD_SENSOR, **change).items() if v is not None}
    errors = sensor_errors(sensor, pack="p")
    assert any(text in e for e in errors), errors


# -- nothing from outside carries a template marker into a parameter ----------------------------
# st2 renders any live parameter holding {{ or {% (nested mappings too) with Jinja and st2kv
# when it schedules the execution; a `pattern` is checked when st2 creates the request, before.
# So every string parameter, and every string inside an object parameter, has a pattern that
# refuses the markers (docs/stackstorm.md, "Parameters are rendered again").

MARKERS = ["{{", "{%", "{#", "{{ st2kv.system.x }}", "x{% if 1 %}y{% endif %}", "a{#c#}",
           "{{7*7}}", "web-{{x}}", "{%raw%}"]


def _string_schemas(name, schema, where=""):
    """(where, schema) of every string schema in a parameter, nested ones included."""
    here = where or name
    if schema.get("type") == "string":
        yield here, schema
    for prop, sub in (schema.get("properties") or {}).items():
        yield from _string_schemas(name, sub, "%s.%s" % (here, prop))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _string_schemas(name, extra, "%s.*" % here)
    if isinstance(schema.get("items"), dict):
        yield from _string_schemas(name, schema["items"], "%s[]" % here)


def _action_string_schemas():
    for path in _files("actions"):
        meta = _load(path)
        for name, schema in sorted((meta.get("parameters") or {}).items()):
            for where, sub in _string_schemas(name, schema):
                yield meta["name"], name, where, sub


@pytest.mark.parametrize("action,param,where,schema", list(_action_string_schemas()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_string_parameter_has_a_pattern_that_refuses_template_markers(
        action, param, where, schema):
    assert "pattern" in schema, "%s: %s has no pattern" % (action, where)
    import re
    pattern = re.compile(schema["pattern"])
    for bad in MARKERS:
        assert not pattern.search(bad), (action, where, bad)
        for good in ("default", "example"):
            if isinstance(schema.get(good), str):
                wrapped = schema[good] + bad
                assert not pattern.search(wrapped), (action, where, wrapped)
    if isinstance(schema.get("default"), str):  # st2 validates defaults against the pattern too
        assert pattern.search(schema["default"]), (action, where, schema["default"])
    for value in schema.get("enum") or []:
        assert pattern.search(value), (action, where, value)


def _runner_parameter_schemas():
    for path in _files("actions"):
        meta = _load(path)
        own = meta.get("parameters") or {}
        for name, schema in sorted(RUNNERS.get(meta.get("runner_type"), {}).items()):
            yield meta["name"], name, dict(schema, **own.get(name, {}))


@pytest.mark.parametrize("action,param,schema", list(_runner_parameter_schemas()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_runner_parameters_cannot_carry_free_text_in(action, param, schema):
    """A chat line may append key=value pairs for the runner's parameters too (the python
    runner's env, content_version): each is immutable in the action, or holds only values that
    cannot carry a marker (a number, a boolean, an enum, patterned strings)."""
    if schema.get("immutable"):
        return
    kind = schema.get("type")
    if kind in ("integer", "number", "boolean") or schema.get("enum"):
        return
    items = schema.get("items") if kind == "array" else None
    assert isinstance(items, dict) and "pattern" in items, (
        "%s: runner parameter %s (%s) takes free text from outside; mark it immutable in "
        "actions/%s.yaml" % (action, param, kind, action))


def test_object_parameters_from_outside_have_patterned_fields_and_no_free_extras():
    """triggered_by (the rule, the sweep, the chat aliases fill it) names each field it may hold;
    anything else must be a marker-free string too."""
    for path in _files("actions"):
        meta = _load(path)
        schema = (meta.get("parameters") or {}).get("triggered_by")
        if schema is None:
            continue
        fields = set(schema.get("properties") or {})
        assert {"source", "signal", "event_type", "message_id", "host", "reason", "timestamp",
                "execution_id", "finding", "user", "channel"} <= fields, meta["name"]
        extra = schema.get("additionalProperties")
        assert extra is False or (extra.get("type") == "string" and "pattern" in extra)


# -- the pack's explanations ship with it ---------------------------------------------------------
# Comments and docs point at docs/ (which ships), never at notes beside the repository
# (../shared/reference/*.md, "lab-trials", "§" section numbers): a reader of an installed pack
# cannot follow those. Tests and development tools (tests/ tools/ lab/ bench/ .ci/) do not ship.

NOT_SHIPPED = ("tests/", "tools/", "lab/", "bench/", ".ci/")
OUTSIDE_POINTERS = ("shared/reference", "lab-trials", "\u00a7")


def _shipped_files():
    """Relative paths of the pack's tracked files outside NOT_SHIPPED (git ls-files; without a
    git checkout, e.g. an installed pack, every file under the pack directory)."""
    import subprocess
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        paths = [p for p in out.decode("utf-8", "replace").split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for top, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            paths += [os.path.relpath(os.path.join(top, name), REPO) for name in files]
    return sorted(p for p in paths if not p.startswith(NOT_SHIPPED))


def test_no_shipped_file_points_outside_the_repo():
    """A comment of an installed pack points at what ships with it (docs/), never at notes
    beside the repository (../shared/reference, lab-trials, a § section); the message lists
    every offender with its lines."""
    offenders = []
    for rel in _shipped_files():
        path = os.path.join(REPO, rel)
        if not os.path.isfile(path):  # deleted in the working tree, not yet committed
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data:  # binary (icon.png)
            continue
        lines = [n for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1)
                 if any(p in line for p in OUTSIDE_POINTERS)]
        if lines:
            offenders.append("%s:%s" % (rel, ",".join(map(str, lines))))
    assert not offenders, "shipped files pointing outside the repo:\n  " + "\n  ".join(offenders)
