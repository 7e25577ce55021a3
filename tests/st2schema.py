"""st2's schema rules for pack files, as ../shared/reference/stackstorm.md §2-§3 states them,
for lint and tests where st2 itself is not installed:
- every config attribute and action parameter is an action-parameter schema: only the keys st2's
  meta-schema allows (no `format`), `type` one simple type, `required`/`secret` booleans;
- a config validates against config.schema.yaml the way st2-validate-pack-config does it: the
  attributes as the properties of one object, draft-3 style per-property `required: true`.
"""
import re

import jsonschema

ALLOWED_KEYS = {
    "type", "description", "default", "required", "secret", "immutable", "position", "enum",
    "items", "properties", "additionalProperties", "patternProperties", "minimum", "maximum",
    "minLength", "maxLength", "pattern", "anyOf", "oneOf", "allOf", "not", "title",
    "uniqueItems", "dependencies", "additionalItems", "minItems", "maxItems", "minProperties",
    "maxProperties", "multipleOf", "exclusiveMinimum", "exclusiveMaximum", "$schema", "id",
    "definitions"}
SIMPLE_TYPES = {"array", "boolean", "integer", "null", "number", "object", "string"}


def param_schema_errors(schema, where):
    """Problems st2 would refuse in one parameter (or config attribute) schema, recursively."""
    errors = []
    if not isinstance(schema, dict):
        return ["%s: a schema must be a mapping" % where]
    for key in schema:
        if key not in ALLOWED_KEYS:
            errors.append("%s: key %r is not allowed in st2 parameter schemas" % (where, key))
    if "type" in schema and (not isinstance(schema["type"], str) or
                             schema["type"] not in SIMPLE_TYPES):
        errors.append("%s: type must be one of %s, not %r" % (
            where, sorted(SIMPLE_TYPES), schema["type"]))
    for flag in ("required", "secret", "immutable"):
        if flag in schema and not isinstance(schema[flag], bool):
            errors.append("%s: %s must be a boolean" % (where, flag))
    for name, sub in (schema.get("properties") or {}).items():
        errors += param_schema_errors(sub, "%s.%s" % (where, name))
    if isinstance(schema.get("items"), dict):
        errors += param_schema_errors(schema["items"], where + "[]")
    if isinstance(schema.get("additionalProperties"), dict):
        errors += param_schema_errors(schema["additionalProperties"], where + ".*")
    return errors


def _draft4(schema):
    """Draft-3 booleans `required: true` on properties -> draft-4 `required` lists."""
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k != "required" or not isinstance(v, bool)}
    props = schema.get("properties")
    if isinstance(props, dict):
        out["properties"] = {k: _draft4(v) for k, v in props.items()}
        required = [k for k, v in props.items() if isinstance(v, dict) and v.get("required")]
        if required:
            out["required"] = required
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = _draft4(schema[key])
    return out


def config_schema_errors(schema):
    errors = []
    for name, attr in schema.items():
        if not name.replace("_", "a").isalnum():
            errors.append("config attribute %r: names must be word characters" % name)
        errors += param_schema_errors(attr, "config.schema.yaml:" + name)
    return errors


def validate_config(schema, config):
    """Errors of `config` against config.schema.yaml (empty list: valid)."""
    errors = config_schema_errors(schema)
    whole = _draft4({"type": "object", "properties": schema, "additionalProperties": True})
    validator = jsonschema.Draft4Validator(whole)
    for err in sorted(validator.iter_errors(config or {}), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in err.path) or "(top)"
        errors.append("%s: %s" % (path, err.message))
    return errors


# Pack content: actions, rules, aliases, policies, sensors (stackstorm.md §3, §5-§7, §9) ------
#
# Each *_errors(doc, where) returns the problems st2 would refuse in one YAML document, as
# "<where>: <what>" strings (empty: valid). The API schemas are written here as draft-4 JSON
# schemas (`required` lists) with st2's additionalProperties; the rules no JSON schema states
# (criteria operators, runner overrides, positions, poll_interval, timer parameters) are code.

RUNNER_TYPES = {
    "python-script", "orquesta", "local-shell-cmd", "local-shell-script", "remote-shell-cmd",
    "remote-shell-script", "http-request", "noop", "inquirer", "action-chain", "announcement",
    "winrm-cmd", "winrm-ps-cmd", "winrm-ps-script"}
# runner parameters an action may override, for the runners this pack uses (§3)
RUNNER_PARAMETERS = {
    "python-script": {"timeout", "env", "log_level", "debug", "content_version"},
    "orquesta": {"notify"},
}
RUNNER_PARAM_OVERRIDABLE_ATTRS = {"default", "description", "enum", "immutable", "required"}

_NOTIFY_SUB = {"type": "object", "additionalProperties": False, "properties": {
    "message": {"type": "string"}, "data": {"type": "object"}, "routes": {"type": "array"},
    "channels": {"type": "array"}}}

ACTION_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["name", "runner_type"],
    "properties": {
        "id": {"type": "string"}, "ref": {"type": "string"}, "uid": {"type": "string"},
        "name": {"type": "string"}, "description": {"type": "string"},
        "enabled": {"type": "boolean"}, "runner_type": {"type": "string"},
        "entry_point": {"type": "string"}, "pack": {"type": "string"},
        "parameters": {"type": "object"}, "output_schema": {"type": "object"},
        "tags": {"type": "array", "items": {"type": "object"}},
        "notify": {"type": "object", "additionalProperties": False, "properties": {
            "on-complete": _NOTIFY_SUB, "on-failure": _NOTIFY_SUB, "on-success": _NOTIFY_SUB}},
        "metadata_file": {"type": "string"},
    }}

RULE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["name", "trigger", "action"],
    "properties": {
        "id": {"type": "string"}, "ref": {"type": "string"}, "uid": {"type": "string"},
        "name": {"type": "string"}, "pack": {"type": "string"},
        "description": {"type": "string"},
        "type": {"type": "object", "required": ["ref"], "properties": {
            "ref": {"type": "string", "enum": ["standard", "backstop"]},
            "parameters": {"type": "object"}}},
        "trigger": {"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string"}, "description": {"type": "string"},
            "parameters": {"type": "object"}, "ref": {"type": "string"}}},
        "criteria": {"type": "object"},
        "action": {"type": "object", "additionalProperties": False, "required": ["ref"],
                   "properties": {"ref": {"type": "string"}, "description": {"type": "string"},
                                  "parameters": {"type": "object"}}},
        "enabled": {"type": "boolean"}, "context": {"type": "object"},
        "tags": {"type": "array", "items": {"type": "object"}},
        "metadata_file": {"type": "string"},
    }}

# st2common/st2common/operators.py
CRITERIA_OPERATORS = {
    "matchwildcard", "matchregex", "regex", "iregex", "eq", "equals", "neq", "nequals", "ieq",
    "iequals", "contains", "icontains", "ncontains", "incontains", "startswith", "istartswith",
    "endswith", "iendswith", "lt", "lessthan", "gt", "greaterthan", "td_lt", "timediff_lt",
    "td_gt", "timediff_gt", "exists", "nexists", "in", "inside", "nin", "ninside", "search"}

_CRON_FIELD = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
# the parameters of st2's system triggers (constants/triggers.py): nothing else is allowed
SYSTEM_TRIGGER_PARAMETERS = {
    "core.st2.IntervalTimer": {
        "type": "object", "additionalProperties": False, "required": ["unit", "delta"],
        "properties": {"timezone": {"type": "string"},
                       "unit": {"enum": ["weeks", "days", "hours", "minutes", "seconds"]},
                       "delta": {"type": "integer"}}},
    "core.st2.DateTimer": {
        "type": "object", "additionalProperties": False, "required": ["date"],
        "properties": {"timezone": {"type": "string"}, "date": {"type": "string"}}},
    "core.st2.CronTimer": {
        "type": "object", "additionalProperties": False,
        "properties": dict({"timezone": {"type": "string"}}, **{
            k: _CRON_FIELD for k in ("year", "month", "day", "week", "day_of_week", "hour",
                                     "minute", "second")})},
    "core.st2.webhook": {
        "type": "object", "additionalProperties": False, "required": ["url"],
        "properties": {"url": {"type": "string"}}},
}
# st2's own trigger types (constants/triggers.py) and the fields of their payloads
ST2_TRIGGERS = {
    "core.st2.generic.actiontrigger": {"execution_id", "status", "start_timestamp",
                                       "action_name", "action_ref", "runner_ref", "parameters",
                                       "result"},
    "core.st2.generic.notifytrigger": {"execution_id", "status", "start_timestamp",
                                       "end_timestamp", "action_ref", "runner_ref", "channel",
                                       "route", "message", "data"},
    "core.st2.generic.inquiry": {"id", "route"},
    "core.st2.action.file_written": {"ref", "file_path", "host_info"},
    "core.st2.sensor.process_spawn": {"object"},
    "core.st2.sensor.process_exit": {"object"},
    "core.st2.key_value_pair.create": {"object"},
    "core.st2.key_value_pair.update": {"object"},
    "core.st2.key_value_pair.value_change": {"old_object", "new_object"},
    "core.st2.key_value_pair.delete": {"object"},
    "core.st2.webhook": {"headers", "body"},
    "core.st2.IntervalTimer": {"executed_at", "schedule"},
    "core.st2.DateTimer": {"executed_at", "schedule"},
    "core.st2.CronTimer": {"executed_at", "schedule"},
}

_FORMAT = {"anyOf": [{"type": "string"}, {"type": "object", "properties": {
    "display": {"type": "string"},
    "representation": {"type": "array", "items": {"type": "string"}}}}]}

ALIAS_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["name", "action_ref"],
    "properties": {
        "id": {"type": "string"}, "ref": {"type": "string"}, "uid": {"type": "string"},
        "name": {"type": "string"}, "pack": {"type": "string"},
        "description": {"type": ["string", "null"]}, "enabled": {"type": "boolean"},
        "action_ref": {"type": "string"},
        "formats": {"type": "array", "items": _FORMAT},
        "ack": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "format": {"type": "string"},
            "extra": {"type": "object"}, "append_url": {"type": "boolean"}}},
        "result": {"type": "object", "properties": {
            "enabled": {"type": "boolean"}, "format": {"type": "string"},
            "extra": {"type": "object"}}},
        "extra": {"type": "object"}, "immutable_parameters": {"type": "object"},
        "metadata_file": {"type": "string"},
    }}

POLICY_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["name", "resource_ref", "policy_type"],
    "properties": {
        "id": {"type": ["string", "null"]}, "uid": {"type": "string"},
        "name": {"type": "string"}, "pack": {"type": "string"}, "ref": {"type": "string"},
        "description": {"type": "string"}, "enabled": {"type": "boolean"},
        "resource_ref": {"type": "string"}, "policy_type": {"type": "string"},
        "parameters": {"type": "object"}, "metadata_file": {"type": "string"},
    }}

# st2common/st2common/policies/meta/*.yaml: the parameters of each policy type (st2 fills in
# defaults before it validates, so a required parameter with a default may be left out)
_THRESHOLD = {"type": "integer"}
_ON_THRESHOLD = {"type": "string", "enum": ["delay", "cancel"]}
POLICY_TYPES = {
    "action.concurrency": {
        "type": "object", "additionalProperties": False, "required": ["threshold"],
        "properties": {"threshold": _THRESHOLD, "action": _ON_THRESHOLD}},
    "action.concurrency.attr": {
        "type": "object", "additionalProperties": False, "required": ["threshold"],
        "properties": {"threshold": _THRESHOLD, "action": _ON_THRESHOLD,
                       "attributes": {"type": "array", "uniqueItems": True,
                                      "items": {"type": "string", "minLength": 1}}}},
    "action.retry": {
        "type": "object", "additionalProperties": False, "required": ["retry_on"],
        "properties": {"retry_on": {"type": "string", "enum": ["failure", "timeout"]},
                       "max_retry_count": {"type": "integer", "minimum": 1, "maximum": 5},
                       "delay": {"type": "number", "minimum": 0, "maximum": 120}}},
}

MINIMUM_POLL_INTERVAL = 4  # st2common/st2common/constants/sensors.py

TRIGGER_TYPE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {
        "id": {"type": ["string", "null"]}, "ref": {"type": "string"},
        "uid": {"type": "string"}, "name": {"type": "string"}, "pack": {"type": "string"},
        "description": {"type": "string"}, "payload_schema": {"type": "object"},
        "parameters_schema": {"type": "object"},
        "tags": {"type": "array", "items": {"type": "object"}},
        "metadata_file": {"type": "string"},
    }}

SENSOR_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["class_name", "entry_point"],
    "properties": {
        "id": {"type": ["string", "null"]}, "ref": {"type": "string"},
        "uid": {"type": "string"}, "class_name": {"type": "string"},
        "pack": {"type": "string"}, "description": {"type": "string"},
        "artifact_uri": {"type": "string"},
        "entry_point": {"type": "string"},  # required by the registrar, not by SensorTypeAPI
        "enabled": {"type": "boolean"},
        "trigger_types": {"type": "array", "items": TRIGGER_TYPE_SCHEMA},
        "poll_interval": {"type": "number"}, "metadata_file": {"type": "string"},
    }}

# Actions st2 itself ships that pack content may name (contrib/core, contrib/chatops @v3.9.0),
# with their parameters (the runner's included).
ST2_ACTIONS = {
    "core.noop": set(),
    "core.echo": {"message", "cmd", "cwd", "env", "kwarg_op", "sudo", "sudo_password",
                  "timeout"},
    "core.ask": {"schema", "roles", "users", "route", "ttl"},
    "chatops.post_message": {"experimental", "route", "user", "whisper", "message", "channel",
                             "context", "extra"},
    "chatops.post_result": {"user", "whisper", "execution_id", "channel", "route", "context"},
}


def _schema_errors(schema, doc, where):
    validator = jsonschema.Draft4Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.path]):
        path = ".".join(str(p) for p in err.path)
        out.append("%s: %s%s" % (where, path + ": " if path else "", err.message))
    return out


def action_errors(action, where):
    """ActionAPI (models/api/action.py) and validate_action's parameter rules."""
    if not isinstance(action, dict):
        return ["%s: an action must be a mapping" % where]
    errors = _schema_errors(ACTION_SCHEMA, action, where)
    runner = action.get("runner_type")
    if isinstance(runner, str) and runner not in RUNNER_TYPES:
        errors.append("%s: runner_type %r is not a runner st2 ships" % (where, runner))
    params = action.get("parameters") or {}
    if not isinstance(params, dict):
        return errors
    positions = []
    for name, schema in params.items():
        at = "%s: parameter %s" % (where, name)
        if not re.match(r"^\w+$", str(name)):
            errors.append('%s: Parameter name "%s" is invalid' % (where, name))
        errors += param_schema_errors(schema, at)
        if not isinstance(schema, dict):
            continue
        if schema.get("immutable") and "default" not in schema:
            errors.append("%s: an immutable parameter needs a default" % at)
        if name in RUNNER_PARAMETERS.get(runner, ()):
            extra = sorted(set(schema) - RUNNER_PARAM_OVERRIDABLE_ATTRS)
            if extra:
                errors.append("%s overrides a %s runner parameter: only %s may change, not %s"
                              % (at, runner, sorted(RUNNER_PARAM_OVERRIDABLE_ATTRS), extra))
        if "position" in schema:
            positions.append(schema["position"])
    if positions and sorted(positions) != list(range(len(positions))):
        errors.append("%s: parameter positions must be unique and contiguous from 0, not %s"
                      % (where, sorted(positions)))
    return errors


def rule_errors(rule, where):
    """RuleAPI (models/api/rule.py), validate_criteria and the system triggers' parameters."""
    if not isinstance(rule, dict):
        return ["%s: a rule must be a mapping" % where]
    errors = _schema_errors(RULE_SCHEMA, rule, where)
    criteria = rule.get("criteria") or {}
    for key, criterion in (criteria.items() if isinstance(criteria, dict) else ()):
        if not isinstance(criterion, dict) or criterion.get("type") is None:
            errors.append("%s: Operator not specified for field: %s" % (where, key))
            continue
        if criterion["type"] not in CRITERIA_OPERATORS:
            errors.append("%s: For field: %s, operator %s not in list of allowed operators"
                          % (where, key, criterion["type"]))
        if criterion.get("pattern") is None:  # refused for every operator, exists included
            errors.append("%s: For field: %s, no pattern specified for operator %s"
                          % (where, key, criterion["type"]))
    trigger = rule.get("trigger")
    if isinstance(trigger, dict) and trigger.get("type") in SYSTEM_TRIGGER_PARAMETERS:
        errors += _schema_errors(SYSTEM_TRIGGER_PARAMETERS[trigger["type"]],
                                 trigger.get("parameters") or {},
                                 "%s: trigger %s parameters" % (where, trigger["type"]))
    return errors


def alias_errors(alias, where, pack=None):
    """ActionAliasAPI (models/api/action.py); the registrar fills in `pack` and refuses a
    different one; every representation must compile (st2 matches every chat line against
    every format: one bad regex breaks matching for all)."""
    from st2alias import format_regex, representations  # tests/st2alias.py
    if not isinstance(alias, dict):
        return ["%s: an alias must be a mapping" % where]
    errors = _schema_errors(ALIAS_SCHEMA, alias, where)
    if pack and alias.get("pack") not in (None, pack):
        errors.append('%s: Model is in pack "%s" but field "pack" is different: %s'
                      % (where, pack, alias.get("pack")))
    if not errors:
        for _display, reps in representations(alias):
            for rep in reps:
                try:
                    format_regex(rep)
                except re.error as exc:
                    errors.append("%s: format %r is not a valid regex: %s" % (where, rep, exc))
    return errors


def policy_errors(policy, where):
    """PolicyAPI (models/api/policy.py) and the parameters of its policy type."""
    if not isinstance(policy, dict):
        return ["%s: a policy must be a mapping" % where]
    errors = _schema_errors(POLICY_SCHEMA, policy, where)
    kind = policy.get("policy_type")
    if isinstance(kind, str):
        if kind not in POLICY_TYPES:
            errors.append('%s: Referenced policy_type "%s" doesnt exist' % (where, kind))
        else:
            errors += _schema_errors(POLICY_TYPES[kind], policy.get("parameters") or {},
                                     "%s: parameters" % where)
    return errors


def payload_schema_errors(schema, where):
    """A trigger's payload or parameters schema: a valid draft-3 schema, as st2 validates
    payloads with a draft-3 validator (`required: true` per property, not a list)."""
    if not isinstance(schema, dict):
        return ["%s: must be a mapping" % where]
    validator = jsonschema.Draft3Validator(jsonschema.Draft3Validator.META_SCHEMA)
    errors = ["%s: %s: %s" % (where, ".".join(str(p) for p in err.path) or "(top)",
                              err.message) for err in validator.iter_errors(schema)]
    return errors or _draft3_type_errors(schema, where)


DRAFT3_TYPES = SIMPLE_TYPES | {"any"}


def _draft3_type_errors(schema, where):
    """Draft 3's meta-schema takes any string as a type; a validator knows only these."""
    errors = []
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
        if isinstance(kind, str) and kind not in DRAFT3_TYPES:
            errors.append("%s: type %r is not one of %s" % (where, kind, sorted(DRAFT3_TYPES)))
    subs = list((schema.get("properties") or {}).items())
    subs += list((schema.get("patternProperties") or {}).items())
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            subs.append((key, schema[key]))
    for name, sub in subs:
        if isinstance(sub, dict):
            errors += _draft3_type_errors(sub, "%s.%s" % (where, name))
    return errors


def sensor_errors(sensor, where):
    """SensorTypeAPI (models/api/sensor.py), the registrar's entry_point, poll_interval's
    minimum, and each trigger type with its schemas."""
    if not isinstance(sensor, dict):
        return ["%s: a sensor must be a mapping" % where]
    errors = _schema_errors(SENSOR_SCHEMA, sensor, where)
    interval = sensor.get("poll_interval")
    if isinstance(interval, (int, float)) and interval and interval < MINIMUM_POLL_INTERVAL:
        errors.append("%s: Minimum possible poll_interval is %s seconds"
                      % (where, MINIMUM_POLL_INTERVAL))
    for i, trigger in enumerate(sensor.get("trigger_types") or []):
        if not isinstance(trigger, dict):
            continue
        for key in ("payload_schema", "parameters_schema"):
            if key in trigger:
                errors += payload_schema_errors(
                    trigger[key], "%s: trigger_types[%d] %s" % (where, i, key))
    return errors


def action_parameter_names(action):
    """The parameters an execution of this action may set: its own and its runner's."""
    names = set(action.get("parameters") or {})
    return names | RUNNER_PARAMETERS.get(action.get("runner_type"), set())


def known_actions(actions, pack):
    """{ref: parameter names} for the pack's action metadata (a list of mappings) and the
    actions st2 ships that pack content may name."""
    out = {ref: set(params) for ref, params in ST2_ACTIONS.items()}
    for action in actions:
        if isinstance(action, dict) and action.get("name"):
            out["%s.%s" % (pack, action["name"])] = action_parameter_names(action)
    return out
