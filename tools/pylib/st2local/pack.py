"""Pack metadata for the local runner: pack name, action metadata, entry points, parameters and
the pack config, with st2's rules (../shared/reference/stackstorm.md §2-§4, §8).

- Pack name: pack.yaml `ref`, else `name` (must match ^[a-z0-9_]+$), else "dangling_volume".
- Actions: every actions/*.yaml, indexed by its `name`; unknown top-level keys are refused
  (ActionAPI has additionalProperties: False); a disabled action does not run.
- entry_point: relative ones resolve as "actions/" + entry_point and are refused when
  normalisation changes them (st2's get_pack_file_abs_path); absolute ones must be inside the pack.
- Parameters: runner parameters + action parameters (the action may override a runner
  parameter's default/enum/...); unknown names refused; CLI strings cast by the declared type;
  Jinja in strings rendered ({{ config_context.x }}, {{ st2kv.system.x }}, other parameters);
  defaults applied; required checked; values validated (Draft 3 per parameter, as st2 does);
  immutable parameters cannot be overridden.
- Built-in actions: core.noop, core.echo, core.ask (the inquirer runner's parameters).
"""
import copy
import json
import os
import re

import yaml

PACK_REF_RE = re.compile(r"^[a-z0-9_]+$")
DEFAULT_PACK_NAME = "dangling_volume"
MASK = "********"  # st2's MASKED_ATTRIBUTE_VALUE

ACTION_KEYS = {"name", "runner_type", "description", "enabled", "entry_point", "pack",
               "parameters", "output_schema", "tags", "notify", "metadata_file", "id", "ref",
               "uid"}

RUNNER_PARAMETERS = {
    "python-script": {
        "timeout": {"type": "integer", "default": 600,
                    "description": "Action timeout in seconds."},
        "env": {"type": "object", "description": "Environment variables for the action."},
        "log_level": {"type": "string", "default": "DEBUG",
                      "enum": ["AUDIT", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
        "debug": {"type": "boolean", "default": False},
        "content_version": {"type": "string"},
    },
    "orquesta": {
        "notify": {"type": "array", "default": [],
                   "description": "Tasks to send notifications for."},
    },
    "inquirer": {
        "schema": {"type": "object", "default": {
            "type": "object",
            "properties": {"continue": {"type": "boolean", "required": True,
                                        "description": "Would you like to continue?"}}}},
        "roles": {"type": "array", "default": []},
        "users": {"type": "array", "default": []},
        "route": {"type": "string", "default": ""},
        "ttl": {"type": "integer", "default": 1440},
    },
    "noop": {},
    "local-shell-cmd": {
        "timeout": {"type": "integer", "default": 60},
    },
}

BUILTIN_ACTIONS = {
    "core.noop": {"name": "noop", "pack": "core", "runner_type": "noop",
                  "description": "Action that executes nothing", "parameters": {}},
    "core.echo": {"name": "echo", "pack": "core", "runner_type": "local-shell-cmd",
                  "description": "Action that executes the Linux echo command.",
                  "parameters": {"message": {"type": "string", "required": True}}},
    "core.ask": {"name": "ask", "pack": "core", "runner_type": "inquirer",
                 "description": "Action for initiating an Inquiry (usually in a workflow)",
                 "parameters": {}},
}

SUPPORTED_RUNNERS = {"python-script", "orquesta", "inquirer", "noop", "local-shell-cmd"}


class PackError(Exception):
    """A pack or action definition st2 would refuse, or one this runner cannot run."""


class ParameterError(PackError):
    """Parameters st2 would refuse for an execution."""


class StrictLoader(yaml.SafeLoader):
    """YAML as st2 3.9 loads workflow and metadata files: duplicate keys and merge keys (<<)
    are errors (PyPI orquesta 1.2.0 would accept both; see stackstorm.md §8)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found a merge key (<<), which st2 does not accept", key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found duplicate key (%s)" % key, key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path, strict=True):
    with open(path) as f:
        text = f.read()
    try:
        return yaml.load(text, Loader=StrictLoader if strict else yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PackError("%s: %s" % (path, exc))


class Action(object):
    """One action's metadata with its runner parameters merged in."""

    def __init__(self, ref, meta, pack=None, meta_file=None):
        self.ref = ref
        self.meta = meta
        self.pack = pack
        self.pack_name = ref.split(".", 1)[0]
        self.name = meta.get("name")
        self.runner_type = meta.get("runner_type")
        self.entry_point = meta.get("entry_point") or ""
        self.enabled = meta.get("enabled", True)
        self.meta_file = meta_file
        own = meta.get("parameters") or {}
        runner = RUNNER_PARAMETERS.get(self.runner_type, {})
        self.runner_param_names = set(runner)
        merged = copy.deepcopy(runner)
        for name, schema in own.items():
            if name in merged:
                merged[name].update(schema or {})
            else:
                merged[name] = dict(schema or {})
        self.parameters = merged

    @property
    def builtin(self):
        return self.pack is None

    def default_timeout(self):
        return (self.parameters.get("timeout") or {}).get("default")

    def __repr__(self):
        return "<Action %s (%s)>" % (self.ref, self.runner_type)


class Pack(object):
    """A pack directory: `Pack(path)`; `get_action("pack.name")`."""

    def __init__(self, path, name=None):
        self.path = os.path.abspath(path)
        self.actions_dir = os.path.join(self.path, "actions")
        self.metadata = {}
        meta_path = os.path.join(self.path, "pack.yaml")
        if os.path.exists(meta_path):
            self.metadata = load_yaml(meta_path) or {}
        self.name = name or self._pack_ref()
        self._actions = None
        self.broken = {}

    def _pack_ref(self):
        ref = self.metadata.get("ref")
        if ref:
            if not PACK_REF_RE.match(str(ref)):
                raise PackError('pack.yaml ref "%s" does not match %s' % (ref,
                                                                          PACK_REF_RE.pattern))
            return ref
        name = self.metadata.get("name")
        if name and PACK_REF_RE.match(str(name)):
            return name
        if name:
            raise PackError('pack.yaml has no ref and its name "%s" is not a valid pack ref '
                            "(%s)" % (name, PACK_REF_RE.pattern))
        return DEFAULT_PACK_NAME

    def _index(self):
        if self._actions is not None:
            return self._actions
        actions = {}
        if os.path.isdir(self.actions_dir):
            for fname in sorted(os.listdir(self.actions_dir)):
                if not fname.endswith((".yaml", ".yml")):
                    continue
                path = os.path.join(self.actions_dir, fname)
                try:
                    meta = load_yaml(path)
                except PackError as exc:  # st2 registers the other actions all the same
                    self.broken[fname] = str(exc)
                    continue
                if not isinstance(meta, dict) or "runner_type" not in meta:
                    continue
                actions[meta.get("name") or fname.rsplit(".", 1)[0]] = (path, meta)
        self._actions = actions
        return actions

    def action_names(self):
        return sorted(self._index())

    def get_action(self, ref):
        if ref in BUILTIN_ACTIONS:
            return Action(ref, BUILTIN_ACTIONS[ref])
        if not isinstance(ref, str) or "." not in ref:
            raise PackError('The action reference "%s" is not formatted correctly '
                            '(expected "<pack>.<action>").' % (ref,))
        pack_name, action_name = ref.split(".", 1)
        if pack_name != self.name:
            raise PackError('Action "%s" is not in pack "%s" and is not a built-in (%s).'
                            % (ref, self.name, ", ".join(sorted(BUILTIN_ACTIONS))))
        entry = self._index().get(action_name)
        if entry is None:
            broken = "".join("; %s does not load: %s" % item for item in self.broken.items())
            raise PackError('Action "%s" not found: no actions/*.yaml has name "%s"%s'
                            % (ref, action_name, broken))
        path, meta = entry
        unknown = sorted(set(meta) - ACTION_KEYS)
        if unknown:
            raise PackError("%s: additional properties are not allowed (%s)" % (
                os.path.relpath(path, self.path), ", ".join(unknown)))
        if not meta.get("name") or not meta.get("runner_type"):
            raise PackError("%s: name and runner_type are required" % path)
        if meta["runner_type"] not in SUPPORTED_RUNNERS:
            raise PackError('%s: runner_type "%s" is not supported by st2local (it runs %s)' % (
                os.path.relpath(path, self.path), meta["runner_type"],
                ", ".join(sorted(SUPPORTED_RUNNERS - {"noop", "local-shell-cmd"}))))
        for pname in (meta.get("parameters") or {}):
            if not re.match(r"^\w+$", pname):
                raise PackError('Parameter name "%s" is invalid (%s)' % (pname, path))
        return Action(ref, meta, pack=self, meta_file=path)

    def entry_point_path(self, action):
        """st2's entry-point resolution; PackError for a path st2 refuses at execution time."""
        entry_point = action.entry_point
        if not entry_point:
            raise PackError('Action "%s" has no entry_point.' % action.ref)
        if os.path.isabs(entry_point):
            real = os.path.realpath(entry_point)
            if os.path.commonpath([self.path, real]) != self.path:
                raise PackError('Entry point file "%s" is located outside of the pack '
                                "directory" % entry_point)
            path = entry_point
        else:
            rel = "actions/" + entry_point
            if os.path.normpath("/" + rel).lstrip("/") != rel:
                raise PackError('Invalid file path: "%s". File path needs to be relative to the '
                                'pack actions directory (%s). For example "my_action.py".'
                                % (rel, self.actions_dir))
            path = os.path.join(self.path, rel)
        if not os.path.isfile(path):
            raise PackError('Entry point "%s" of action "%s" does not exist (%s).'
                            % (entry_point, action.ref, path))
        return path

    def load_config(self, config=None, datastore=None):
        """The pack config as st2 hands it to actions: the YAML file (or dict) given, schema
        defaults applied (nested too), {{ st2kv.system.x }} rendered (secrets decrypted)."""
        if isinstance(config, str):
            config = load_yaml(config, strict=False) or {}
        config = copy.deepcopy(config or {})
        schema_path = os.path.join(self.path, "config.schema.yaml")
        if os.path.exists(schema_path):
            schema = load_yaml(schema_path, strict=False) or {}
            _apply_defaults(config, schema)
        return _render_config(config, datastore)


def _apply_defaults(config, properties):
    for key, schema in (properties or {}).items():
        if not isinstance(schema, dict):
            continue
        if key not in config and "default" in schema:
            config[key] = copy.deepcopy(schema["default"])
        if schema.get("type") == "object" and schema.get("properties"):
            if key not in config:
                config[key] = {}
            if isinstance(config[key], dict):
                _apply_defaults(config[key], schema["properties"])


# --- Jinja rendering: {{ config_context.x }}, {{ st2kv.system.x }} --------------------------------

class _KeyLookup(object):
    def __init__(self, datastore, prefix="", decrypt=False):
        self._datastore = datastore
        self._prefix = prefix
        self._decrypt = decrypt

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name):
        key = self._prefix + name
        item = self._datastore.get(key) if self._datastore is not None else None
        if item is None:
            return _KeyLookup(self._datastore, key + ".", self._decrypt)
        if item.get("secret") and not self._decrypt:
            from .datastore import _opaque
            return _opaque(item["value"])
        return item["value"]

    def __str__(self):
        return ""


def _decrypt_kv(value):
    try:
        return bytes.fromhex(str(value)).decode("utf-8")
    except ValueError:
        return value


def render_template(text, context, datastore=None, decrypt=False):
    if not isinstance(text, str) or ("{{" not in text and "{%" not in text):
        return text
    import jinja2
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["decrypt_kv"] = _decrypt_kv
    ctx = dict(context)
    ctx["st2kv"] = {"system": _KeyLookup(datastore, "", decrypt)}
    try:
        return env.from_string(text).render(ctx)
    except jinja2.exceptions.UndefinedError as exc:
        raise ParameterError("cannot render %r: %s" % (text, exc))


def _render_config(value, datastore):
    if isinstance(value, dict):
        return {k: _render_config(v, datastore) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_config(v, datastore) for v in value]
    return render_template(value, {}, datastore, decrypt=True)


# --- parameters ---------------------------------------------------------------------------------

TRUE_STRINGS = {"1", "true", "yes", "y", "on"}
FALSE_STRINGS = {"0", "false", "no", "n", "off"}


def cast_string(name, value, schema):
    """A string (from the command line or a rendered template) to the declared type."""
    ptype = (schema or {}).get("type")
    if not isinstance(value, str) or ptype in (None, "string"):
        return value
    text = value.strip()
    try:
        if ptype == "integer":
            return int(text)
        if ptype == "number":
            return int(text) if re.match(r"^-?\d+$", text) else float(text)
        if ptype == "boolean":
            if text.lower() in TRUE_STRINGS:
                return True
            if text.lower() in FALSE_STRINGS:
                return False
            raise ValueError("not a boolean")
        if ptype == "object":
            parsed = json.loads(text)
            if not isinstance(parsed, dict):
                raise ValueError("not a JSON object")
            return parsed
        if ptype == "array":
            if text.startswith("["):
                parsed = json.loads(text)
                if not isinstance(parsed, list):
                    raise ValueError("not a JSON array")
                return parsed
            return [item.strip() for item in text.split(",")] if text else []
        if ptype == "null":
            if text.lower() in ("null", "none", ""):
                return None
            raise ValueError("not null")
    except ValueError as exc:
        raise ParameterError('Parameter "%s": cannot use %r as %s (%s)' % (name, value, ptype,
                                                                           exc))
    return value


def _validator_errors(name, value, schema):
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - both test venvs have it
        return []
    clean = {k: v for k, v in schema.items()
             if k not in ("secret", "immutable", "position", "default", "description")}
    clean.pop("required", None)
    validator = jsonschema.Draft3Validator(clean)
    return ['Parameter "%s": %s' % (name, e.message) for e in validator.iter_errors(value)]


def prepare_parameters(action, given, from_cli=False, config=None, datastore=None):
    """Render, cast, default and validate an execution's parameters like st2.

    Returns (runner_params, action_params); raises ParameterError with every problem found."""
    given = dict(given or {})
    schemas = action.parameters
    problems = []
    unknown = sorted(set(given) - set(schemas))
    if unknown:
        problems.append('Unknown parameter(s) for action "%s": %s (it takes: %s)' % (
            action.ref, ", ".join(unknown), ", ".join(sorted(schemas)) or "none"))
    immutable = sorted(k for k in given if (schemas.get(k) or {}).get("immutable"))
    if immutable:
        problems.append("Override of immutable parameter(s) %s is unsupported."
                        % ", ".join(immutable))
    if problems:
        raise ParameterError("; ".join(problems))

    values = {}
    for name, schema in schemas.items():
        if name in given:
            value = given[name]
            if from_cli:
                try:
                    value = cast_string(name, value, schema)
                except ParameterError as exc:
                    raise ParameterError('Action "%s": %s' % (action.ref, exc))
            values[name] = value
        elif "default" in schema:
            values[name] = copy.deepcopy(schema["default"])

    context = {"config_context": config or {}}
    context.update({k: v for k, v in values.items() if not _has_template(v)})
    for name in list(values):
        if _has_template(values[name]):
            rendered = render_template(values[name], context, datastore)
            values[name] = cast_string(name, rendered, schemas[name])

    for name, schema in schemas.items():
        if schema.get("required") and values.get(name) is None:
            problems.append('Parameter "%s" is required' % name)
        elif name in values and values[name] is not None:
            problems.extend(_validator_errors(name, values[name], schema))
    if problems:
        raise ParameterError('Action "%s": %s' % (action.ref, "; ".join(problems)))

    runner = {k: v for k, v in values.items() if k in action.runner_param_names}
    params = {k: v for k, v in values.items() if k not in action.runner_param_names}
    return runner, params


def _has_template(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def mask_secrets(action, params):
    """Parameters for display: secret ones replaced by st2's mask."""
    return {k: (MASK if (action.parameters.get(k) or {}).get("secret") else v)
            for k, v in (params or {}).items()}


def missing_and_unexpected(action, task_input):
    """st2's inspect_task_contents check for one task: (required inputs missing, unexpected
    inputs)."""
    schemas = action.parameters
    requires = sorted(k for k, s in schemas.items()
                      if s.get("required") and "default" not in s and k not in task_input)
    unexpected = sorted(k for k in task_input if k not in schemas)
    return requires, unexpected
