"""st2's schema rules for pack files, as ../shared/reference/stackstorm.md §2-§3 states them,
for lint and tests where st2 itself is not installed:
- every config attribute and action parameter is an action-parameter schema: only the keys st2's
  meta-schema allows (no `format`), `type` one simple type, `required`/`secret` booleans;
- a config validates against config.schema.yaml the way st2-validate-pack-config does it: the
  attributes as the properties of one object, draft-3 style per-property `required: true`.
"""
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
    if "type" in schema and schema["type"] not in SIMPLE_TYPES:
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
