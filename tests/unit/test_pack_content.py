"""Every file of pack content that exists (actions, rules, aliases, policies, sensors: files
others add later are picked up too) valid for st2's schemas (tests/st2schema.py, from
stackstorm.md §3, §5-§7, §9), and the cross checks st2 makes only when something runs: refs
name existing actions, parameters and trigger fields exist, entry points resolve under the
pack, one Action class per python action module. Then the validators themselves, on content
st2 refuses."""
import ast
import glob
import os

import jinja2
import pytest
import yaml

import st2schema

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK = "dangling_volume"


def _files(kind):
    return sorted(glob.glob(os.path.join(REPO, kind, "*.yaml")) +
                  glob.glob(os.path.join(REPO, kind, "*.yml")))


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _ids(paths):
    return [os.path.relpath(p, REPO) for p in paths]


ACTION_FILES, RULE_FILES, ALIAS_FILES, POLICY_FILES, SENSOR_FILES = (
    _files(kind) for kind in ("actions", "rules", "aliases", "policies", "sensors"))
ACTIONS = {path: _load(path) for path in ACTION_FILES}
KNOWN = st2schema.known_actions(ACTIONS.values(), PACK)
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


def test_the_pack_has_content_to_check():
    assert ACTION_FILES and ALIAS_FILES and RULE_FILES


# actions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ACTION_FILES, ids=_ids(ACTION_FILES))
def test_action_metadata_is_valid(path):
    assert st2schema.action_errors(ACTIONS[path], os.path.relpath(path, REPO)) == []


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
    # st2's get_pack_file_abs_path refuses any path that normalisation changes (stackstorm.md §3)
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
    declared = set(action.get("parameters") or {}) - st2schema.RUNNER_PARAMETERS["python-script"]
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
    assert st2schema.rule_errors(rule, where) == []
    assert rule.get("pack") in (None, PACK)
    ref = rule["action"]["ref"]
    assert ref in KNOWN, "%s: action %s is neither the pack's nor st2's" % (where, ref)
    params = set(rule["action"].get("parameters") or {})
    assert params <= KNOWN[ref], (where, params - KNOWN[ref])
    target = _by_ref(ref)
    if target is not None:
        assert _required(target) <= params, (where, "missing", _required(target) - params)
    trigger = rule["trigger"]["type"]
    payload = PACK_TRIGGERS.get(trigger, st2schema.ST2_TRIGGERS.get(trigger))
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
    from st2alias import format_regex, representations
    alias = _load(path)
    where = os.path.relpath(path, REPO)
    assert st2schema.alias_errors(alias, where, pack=PACK) == []
    ref = alias["action_ref"]
    assert ref in KNOWN, "%s: action %s does not exist" % (where, ref)
    fixed = set(alias.get("immutable_parameters") or {})
    for _display, reps in representations(alias):
        for rep in reps:
            placeholders = set(format_regex(rep)[0].groupindex)
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
    assert st2schema.policy_errors(policy, where) == []
    ref = policy["resource_ref"]
    assert ref in KNOWN, "%s: resource_ref %s does not exist" % (where, ref)
    attributes = set((policy.get("parameters") or {}).get("attributes") or [])
    assert attributes <= KNOWN[ref], (where, attributes - KNOWN[ref])


# sensors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SENSOR_FILES, ids=_ids(SENSOR_FILES))
def test_sensor_is_valid_and_its_class_is_in_its_entry_point(path):
    sensor = _load(path)
    where = os.path.relpath(path, REPO)
    assert st2schema.sensor_errors(sensor, where) == []
    entry = sensor["entry_point"]
    assert not os.path.isabs(entry) and ".." not in entry.split("/"), entry
    module = os.path.join(os.path.dirname(path), entry)  # relative to the YAML file
    assert os.path.isfile(module), module
    assert sensor["class_name"] in _classes(module), (module, sensor["class_name"])
    names = [t.get("name") for t in sensor.get("trigger_types") or []]
    assert len(names) == len(set(names)), names


# the validators, on content st2 refuses -----------------------------------------------------

GOOD_ACTION = {"name": "a", "runner_type": "python-script", "entry_point": "a.py",
               "parameters": {"x": {"type": "string", "required": True}}}


@pytest.mark.parametrize("change, text", [
    ({"runner_type": None}, "'runner_type' is a required property"),
    ({"name": None}, "'name' is a required property"),
    ({"runner_type": "python"}, "not a runner st2 ships"),
    ({"entrypoint": "a.py"}, "Additional properties are not allowed"),
    ({"enabled": "yes"}, "is not of type 'boolean'"),
    ({"parameters": {"x-y": {"type": "string"}}}, 'Parameter name "x-y" is invalid'),
    ({"parameters": {"x": {"type": "string", "format": "uuid"}}}, "key 'format' is not allowed"),
    ({"parameters": {"x": {"type": ["string", "null"]}}}, "type must be one of"),
    ({"parameters": {"x": {"type": "string", "immutable": True}}}, "needs a default"),
    ({"parameters": {"timeout": {"type": "integer", "default": 5}}},
     "overrides a python-script runner parameter"),
    ({"parameters": {"a": {"type": "string", "position": 0},
                     "b": {"type": "string", "position": 2}}}, "unique and contiguous"),
    ({"notify": {"on-done": {}}}, "Additional properties are not allowed"),
])
def test_action_validator_refuses(change, text):
    action = {k: v for k, v in dict(GOOD_ACTION, **change).items() if v is not None}
    assert st2schema.action_errors(GOOD_ACTION, "a.yaml") == []
    assert any(text in e for e in st2schema.action_errors(action, "a.yaml")), \
        st2schema.action_errors(action, "a.yaml")


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
    assert st2schema.rule_errors(GOOD_RULE, "r.yaml") == []
    errors = st2schema.rule_errors(dict(GOOD_RULE, **change), "r.yaml")
    assert any(text in e for e in errors), errors


GOOD_ALIAS = {"name": "x", "action_ref": "p.a", "formats": [
    "say {{text}}", {"display": "shout <text>", "representation": ["shout {{text}}"]}],
    "ack": {"enabled": True, "format": "ok"}, "result": {"format": "done"},
    "immutable_parameters": {"loud": True}}


@pytest.mark.parametrize("change, text", [
    ({"action_ref": None}, "'action_ref' is a required property"),
    ({"formats": "say {{text}}"}, "is not of type 'array'"),
    ({"formats": [{"display": "d", "representation": "say {{text}}"}]}, "is not valid under any"),
    ({"formats": [42]}, "is not valid under any"),
    ({"ack": {"format": 1}}, "is not of type 'string'"),
    ({"immutable_parameters": ["loud"]}, "is not of type 'object'"),
    ({"action": "p.a"}, "Additional properties are not allowed"),
    ({"pack": "other"}, 'Model is in pack "p" but field "pack" is different'),
    ({"formats": ["say ({{text}}"]}, "is not a valid regex"),
])
def test_alias_validator_refuses(change, text):
    assert st2schema.alias_errors(GOOD_ALIAS, "x.yaml", pack="p") == []
    alias = {k: v for k, v in dict(GOOD_ALIAS, **change).items() if v is not None}
    errors = st2schema.alias_errors(alias, "x.yaml", pack="p")
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
    ({"parameters": {"threshold": 1, "attributes": [""]}}, "attributes.0: ''"),
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
    assert st2schema.policy_errors(GOOD_POLICY, "p.yaml") == []
    policy = {k: v for k, v in dict(GOOD_POLICY, **change).items() if v is not None}
    errors = st2schema.policy_errors(policy, "p.yaml")
    assert any(text in e for e in errors), errors


GOOD_SENSOR = {"class_name": "S", "entry_point": "s.py", "poll_interval": 30,
               "trigger_types": [{"name": "t", "payload_schema": {
                   "type": "object",
                   "properties": {"a": {"type": "string", "required": True}}}}]}


@pytest.mark.parametrize("change, text", [
    ({"class_name": None}, "'class_name' is a required property"),
    ({"entry_point": None}, "'entry_point' is a required property"),
    ({"poll_interval": 2}, "Minimum possible poll_interval is 4 seconds"),
    ({"poll_interval": "30"}, "is not of type 'number'"),
    ({"triggers": []}, "Additional properties are not allowed"),
    ({"trigger_types": [{"description": "no name"}]}, "'name' is a required property"),
    ({"trigger_types": [{"name": "t", "payload": {}}]}, "Additional properties are not allowed"),
    ({"trigger_types": [{"name": "t", "payload_schema": {
        "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}]},
     "payload_schema"),  # draft-4 `required` list: draft-3 wants a boolean per property
    ({"trigger_types": [{"name": "t", "payload_schema": {
        "type": "object", "properties": {"a": {"type": "text"}}}}]}, "payload_schema"),
])
def test_sensor_validator_refuses(change, text):
    assert st2schema.sensor_errors(GOOD_SENSOR, "s.yaml") == []
    sensor = {k: v for k, v in dict(GOOD_SENSOR, **change).items() if v is not None}
    errors = st2schema.sensor_errors(sensor, "s.yaml")
    assert any(text in e for e in errors), errors
