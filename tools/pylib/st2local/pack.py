"""The pack as st2 registers it, with st2's code: actions through ActionAPI, runner types from
the runners' runner.yaml, parameters by st2common.util.param and util.schema, config defaults by
st2's config loader. HOME-MADE: use() points st2's DB lookups (util.action_db's action and runner
type, util.param's get_config / KeyValueLookup) at this pack, its config and the local keys;
core.ask/noop/echo and their runners (not installed here) are the small dicts below."""
import copy
import os
import re

import yaml
from oslo_config import cfg
from st2common import config as st2_config
from st2common.content.loader import MetaLoader
from st2common.models.api.action import ActionAPI, RunnerTypeAPI
from st2common.util import action_db as action_utils
from st2common.util import param as param_utils
from st2common.util import schema as util_schema
from st2common.util.config_loader import ContentPackConfigLoader
from st2common.util.templating import render_template

from .keys import KeyLookup

st2_config.register_opts(ignore_errors=True)  # code reading cfg.CONF must find st2's options

BUILTIN_RUNNERS = {"noop": {}, "local-shell-cmd": {"timeout": {"type": "integer", "default": 60}},
                   "inquirer": {"schema": {"type": "object", "default": {"type": "object",
                                "properties": {"continue": {"type": "boolean", "required": True}}}},
                                "roles": {"type": "array", "default": []},
                                "users": {"type": "array", "default": []},
                                "route": {"type": "string", "default": ""},
                                "ttl": {"type": "integer", "default": 1440}}}
BUILTIN_ACTIONS = {"core.noop": ("noop", {}), "core.ask": ("inquirer", {}), "core.echo": (
    "local-shell-cmd", {"message": {"type": "string", "required": True}})}
_ACTIVE = {}  # the run context whose pack, config and keys the DB stand-ins serve


class PackError(Exception):
    """A pack, action or parameters st2 would refuse, or one this runner cannot run."""


ParameterError = type("ParameterError", (PackError,), {"__doc__": "Parameters st2 refuses."})


def _runner_types():
    import orquesta_runner
    import python_runner
    types = {name: {"name": name, "description": name, "enabled": True, "runner_module": name,
                    "runner_parameters": params} for name, params in BUILTIN_RUNNERS.items()}
    for module in (python_runner, orquesta_runner):
        path = os.path.join(os.path.dirname(module.__file__), "runner.yaml")
        types.update((meta["name"], meta) for meta in yaml.safe_load(open(path)))
    return {name: RunnerTypeAPI.to_model(RunnerTypeAPI(**meta)) for name, meta in types.items()}


class Pack(object):
    """A pack directory: Pack(path); get_action(ref) -> st2's ActionDB (not saved anywhere)."""

    def __init__(self, path, name=None):
        self.path, meta_path = os.path.abspath(path), os.path.join(path, "pack.yaml")
        self.actions_dir = os.path.join(self.path, "actions")
        self.metadata = MetaLoader().load(meta_path) if os.path.exists(meta_path) else {}
        self.name = name or self.metadata.get("ref") or self.metadata.get("name") or \
            "dangling_volume"
        if not re.match(r"^[a-z0-9_]+$", self.name):
            raise PackError('pack ref "%s" is not a valid pack ref (^[a-z0-9_]+$)' % self.name)
        self.runner_types, self._actions = _runner_types(), {}

    def _metadata(self):
        found = {"\0broken": []}
        for fname in sorted(os.listdir(self.actions_dir)):
            path = os.path.join(self.actions_dir, fname)
            try:
                meta = MetaLoader().load(path) if fname.endswith((".yaml", ".yml")) else None
            except Exception as exc:  # st2 registers the other actions all the same
                found["\0broken"].append("%s: %s" % (fname, exc))
                continue
            if isinstance(meta, dict) and "runner_type" in meta:
                found[meta.get("name")] = (path, meta)
        return found

    def get_action(self, ref):
        return self._actions.get(ref) or self._actions.setdefault(ref, self._load_action(ref))

    def _load_action(self, ref):
        if ref in BUILTIN_ACTIONS:
            meta, path = dict(name=ref[5:], pack="core", runner_type=BUILTIN_ACTIONS[ref][0],
                              parameters=BUILTIN_ACTIONS[ref][1]), None
        elif not isinstance(ref, str) or "." not in ref:
            raise PackError('The action reference "%s" is not formatted correctly.' % (ref,))
        elif ref.split(".", 1)[0] != self.name:
            raise PackError('Action "%s" is not in pack "%s" nor a built-in (%s).'
                            % (ref, self.name, ", ".join(sorted(BUILTIN_ACTIONS))))
        else:
            index = self._metadata()
            if ref.split(".", 1)[1] not in index:
                raise PackError('Action "%s" not found%s' % (ref, "".join(
                    "; " + b for b in index["\0broken"])))
            path, meta = index[ref.split(".", 1)[1]]
            meta = dict(meta, pack=self.name)
        if meta["runner_type"] not in self.runner_types:
            raise PackError('runner_type "%s" of %s is not supported by st2local'
                            % (meta["runner_type"], ref))
        try:
            action = ActionAPI.to_model(ActionAPI(**meta).validate())
            util_schema.get_schema_for_action_parameters(action, self.runner_type(action))
        except Exception as exc:
            raise PackError("%s: %s" % (os.path.relpath(path, self.path) if path else ref, exc))
        return action

    def runner_type(self, action):
        return self.runner_types[action.runner_type["name"]]

    def entry_point_path(self, action):
        """st2's entry point resolution (relative to actions/, never outside the pack)."""
        entry_point = action.entry_point or ""
        rel = entry_point if os.path.isabs(entry_point) else "actions/" + entry_point
        path = os.path.realpath(os.path.join(self.path, rel))
        if not os.path.isabs(rel) and os.path.normpath("/" + rel).lstrip("/") != rel:
            raise PackError('Invalid file path: "%s". File path needs to be relative to the pack '
                            'actions directory (%s).' % (rel, self.actions_dir))
        if os.path.commonpath([self.path, path]) != self.path:
            raise PackError('Entry point file "%s" is located outside of the pack directory'
                            % entry_point)
        if not os.path.isfile(path):
            raise PackError('Entry point "%s" of action "%s" does not exist.'
                            % (entry_point, action.ref))
        return path

    def load_config(self, config, store):
        """The config file (or dict) with {{ st2kv.system.x }} rendered (secrets decrypted:
        HOME-MADE, st2 renders it from its DB) and schema defaults by st2's config loader."""
        config = yaml.safe_load(open(config)) if isinstance(config, str) else config
        config = _render(copy.deepcopy(config or {}), {"st2kv": {"system": KeyLookup(
            store, decrypt=True)}})
        schema_path = os.path.join(self.path, "config.schema.yaml")
        if os.path.exists(schema_path):
            schema = yaml.safe_load(open(schema_path)) or {}
            ContentPackConfigLoader(self.name)._assign_default_values(schema, config)
        return config


def _render(value, context):
    if isinstance(value, (dict, list)):
        return type(value)((k, _render(v, context)) for k, v in value.items()) if isinstance(
            value, dict) else [_render(v, context) for v in value]
    return render_template(value, dict(context)) if isinstance(value, str) else value


def use(ctx):
    """Make st2's DB lookups answer from this run context (pack, config, keys)."""
    _ACTIVE["ctx"] = ctx
    action_utils.get_action_by_ref = _get_action_by_ref
    action_utils.get_runnertype_by_name = lambda runnertype_name: \
        _ACTIVE["ctx"].pack.runner_types[runnertype_name]
    param_utils.get_config = lambda pack, user: _ACTIVE["ctx"].config
    param_utils.KeyValueLookup = lambda **kw: KeyLookup(_ACTIVE["ctx"].keys.store)
    param_utils.UserKeyValueLookup = lambda **kw: KeyLookup(None)
    cfg.CONF.set_override("user", ctx.user, group="system_user")


def _get_action_by_ref(ref, only_fields=None):
    try:
        return _ACTIVE["ctx"].pack.get_action(ref)
    except PackError:
        return None


def prepare_parameters(pack, action, given, live, context):
    """st2's parameter handling: `live` (an API request, e.g. st2 run) renders and casts the
    given values first (render_live_params); then create_request's schema validation and
    immutable check; then the runner container's render_final_params.
    -> (runner_params, action_params); ParameterError as st2 refuses."""
    schemas, params = (pack.runner_type(action).runner_parameters, action.parameters), given or {}
    try:
        if live:
            params = param_utils.render_live_params(*schemas, params, context)
        util_schema.validate(params, util_schema.get_schema_for_action_parameters(
            action, pack.runner_type(action)), util_schema.get_validator(), use_default=True,
            allow_default_none=True)
        immutable = sorted(k for k in params if any(s.get(k, {}).get("immutable") for s in schemas))
        if immutable:
            raise ValueError("Override of immutable parameter(s) %s is unsupported." % immutable)
        return param_utils.render_final_params(*schemas, params, context)
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc).split("\n")[0]
        raise ParameterError('Action "%s": %s: %s' % (action.ref, type(exc).__name__, message))
