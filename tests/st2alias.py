"""How st2 matches a chat line to an action alias, for tests where st2 is not installed. Written
from the behaviour ../shared/reference/stackstorm.md §7 documents (st2 v3.9.0
ActionAliasFormatParser and actionalias_matching):

1. Trailing `key=value` pairs (value: a word, "...", '...' or {...}) are cut off the line before
   matching and become parameters, overriding matched ones; any key is accepted.
2. The format is a Python regex once its placeholders are replaced: `{{p}}` by a lazy group
   with optional quotes around it, `{{p=d}}` by an optional group (the whitespace before it
   included) whose value defaults to the string d. Anchored `^\\s*...\\s*$` unless the format
   has its own anchor, matched with re.DOTALL, case-sensitive.
3. A line that matches no format fails; one that matches formats of several aliases, or several
   formats of one alias, is refused as ambiguous. (st2's second pass over match_multiple
   aliases, for lines nothing else matched, is not modelled: this pack uses none.)
4. Immutable parameters are added after extraction; a line that sets one is refused.

Simplification: a format counts as anchored only when its own `^`/`\\A` starts it or its own
`$`/`\\Z` ends it (st2 finds anchors anywhere in the parsed regex; no format here has any).
"""
import re

# value of a trailing pair: "" | '' | "..." | '...' | {...} | a word
_VALUE = r'""|\'\'|"(.+?)"|\'(.+?)\'|({.+?})|(\S+)'
_PAIR = r'(?:^|\s+)\s*(\S+?)\s*=(' + _VALUE + r')'
_TRAILING_PAIRS = re.compile(r'.*?((' + _PAIR + r'\s*)*)$', re.DOTALL)
_PAIRS = re.compile(_PAIR, re.DOTALL)
# a default inside {{p=default}}: quoted, braces, or any text (quotes are not part of it)
_DEFAULT = r'""|\'\'|"(.+?)"|\'(.+?)\'|({.+?})|(.+?)'
_OPTIONAL = re.compile(r'(\s*){{\s*(\S+?)\s*\s*=\s*(?:' + _DEFAULT + r')\s*}}', re.DOTALL)
_REQUIRED = re.compile(r'(\s*){{\s*(\S+?)\s*}}')
# one placeholder's value: inside quotes when quoted, a {...} object, else as little as fits
_VALUE_GROUP = (r'["\']?(?P<{name}>(?:(?<=\').+?(?=\')|(?<=").+?(?=")|{{.+?}}|.+?))["\']?')


class NoMatch(Exception):
    """The line matches no format of the enabled aliases."""


class Ambiguous(Exception):
    """The line matches more than one format: st2 raises ActionAliasAmbiguityException."""

    def __init__(self, line, matches):
        super().__init__("%r matches %d formats: %s" % (
            line, len(matches), "; ".join("%s: %r" % (m.alias["name"], m.representation)
                                          for m in matches)))
        self.matches = matches


class ImmutableOverride(Exception):
    """The line sets a parameter the alias fixes through immutable_parameters."""


class Match:
    """One format that matched: the alias, the representation and the parameters it gives."""

    def __init__(self, alias, representation, parameters):
        self.alias = alias
        self.representation = representation
        self.parameters = parameters

    def __repr__(self):
        return "Match(%s, %r, %r)" % (self.alias.get("name"), self.representation,
                                      self.parameters)


def representations(alias):
    """(display, [representation, ...]) of every format of an alias, as st2 normalises them:
    a string is both; a mapping gives its display and its representation list."""
    out = []
    for fmt in alias.get("formats") or []:
        if isinstance(fmt, str):
            out.append((fmt, [fmt]))
        elif isinstance(fmt, dict):
            reps = fmt.get("representation") or []
            out.append((fmt.get("display"), [reps] if isinstance(reps, str) else list(reps)))
        else:
            raise TypeError("alias format %r is neither a string nor a mapping" % (fmt,))
    return out


def split_trailing_pairs(line):
    """(pairs, rest): the trailing key=value pairs as {key: value} and the line without them,
    padded with a space on each side as st2 pads it."""
    found = _TRAILING_PAIRS.match(line)
    pairs = {}
    if found and found.group(1):
        for key, _whole, double, single, braces, word in _PAIRS.findall(found.group(1)):
            pairs[key] = double + single + braces + word
        line = line.replace(found.group(1), "")  # st2 removes every occurrence of that text
    return pairs, " %s " % line


def format_regex(representation):
    """The compiled regex st2 builds from one representation, and its optional placeholders
    with their defaults."""
    defaults = {}
    for found in _OPTIONAL.finditer(representation):
        defaults[found.group(2)] = "".join(g or "" for g in found.groups()[2:])

    def optional(found):
        return "(?:" + found.group(1) + _VALUE_GROUP.format(name=found.group(2)) + ")?"

    def required(found):
        return found.group(1) + _VALUE_GROUP.format(name=found.group(2))
    pattern = _REQUIRED.sub(required, _OPTIONAL.sub(optional, representation))
    if not pattern.startswith(("^", r"\A")):
        pattern = r"^\s*" + pattern
    if not re.search(r"(?<!\\)(\$|\\Z)$", pattern):
        pattern = pattern + r"\s*$"
    return re.compile(pattern, re.DOTALL), defaults


def extract(representation, line):
    """The parameters one representation extracts from a chat line, or None if it does not
    match. Values are strings, as st2 passes them on (the action's types cast them)."""
    pairs, stream = split_trailing_pairs(line)
    regex, defaults = format_regex(representation)
    found = regex.search(stream)
    if not found:
        return None
    params = found.groupdict()
    for name, default in defaults.items():
        params[name] = params.get(name) or default
    params.update(pairs)
    if representation and not (stream.strip() or any(params.values())):
        return None  # "No value supplied and no default value found."
    return params


def matches(aliases, line):
    """Every (alias, representation) of the enabled aliases that matches the line."""
    out = []
    for alias in aliases:
        if not alias.get("enabled", True):
            continue
        for display, reps in representations(alias):
            if display and not reps:  # a display-only format is matched as the empty format
                reps = [""]
            for rep in reps:
                params = extract(rep, line)
                if params is not None:
                    out.append(Match(alias, rep, params))
    return out


def resolve(aliases, line):
    """The one match st2 would run for a chat line, with immutable parameters added; raises
    NoMatch, Ambiguous or ImmutableOverride where st2 refuses the line."""
    found = matches(aliases, line)
    if not found:
        raise NoMatch("%r matches no format" % line)
    if len(found) > 1:
        raise Ambiguous(line, found)
    match = found[0]
    fixed = match.alias.get("immutable_parameters") or {}
    overridden = sorted(set(fixed) & set(match.parameters))
    if overridden:
        raise ImmutableOverride("Immutable arguments cannot be overriden: %s"
                                % ",".join(overridden))
    match.parameters = dict(match.parameters, **fixed)
    return match


# After the match: what st2 renders ------------------------------------------------------------

def jinja_environment(strict):
    """st2's Jinja environment (st2common/util/jinja.py): sandboxed, trim_blocks and
    lstrip_blocks; StrictUndefined unless undefined names are allowed. Ack formats and
    immutable parameters are rendered strict; result formats (chatops.format_execution_result)
    allow undefined names."""
    import jinja2
    import jinja2.sandbox
    return jinja2.sandbox.SandboxedEnvironment(
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        trim_blocks=True, lstrip_blocks=True)


def render_values(mapping, context):
    """st2's render_values: every value rendered strict with the context; a mapping or list is
    rendered as its JSON text and decoded again; a value without Jinja keeps its type."""
    import json
    env = jinja_environment(strict=True)
    out = {}
    for key, value in mapping.items():
        structured = isinstance(value, (dict, list))
        text = json.dumps(value) if structured else value if isinstance(value, str) else \
            str(value)
        rendered = env.from_string(text).render(dict(context, __context=context))
        if rendered == text:
            out[key] = value
        else:
            out[key] = json.loads(rendered) if structured else rendered
    return out


def immutable_parameters(alias, action_context):
    """The alias's immutable parameters as st2 injects them: rendered with the chat context
    (api_user, user, source_channel, action_alias_ref)."""
    return render_values(alias.get("immutable_parameters") or {}, action_context)


def cast_parameters(params, action_parameters):
    """st2's cast_params before scheduling (util/casts.py): strings become the declared type;
    an object or array from JSON text (or a Python literal), a boolean by Python's literal of
    the capitalised word ('true' -> True, 'yes' -> ValueError), numbers by int()/float()."""
    import ast
    import json

    def cast(kind, value):
        if not isinstance(value, str):
            return value
        if kind in ("object", "array"):
            try:
                return json.loads(value)
            except ValueError:
                return ast.literal_eval(value)
        if kind == "boolean":
            return ast.literal_eval(value.capitalize())
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        return value
    return {name: cast((action_parameters.get(name) or {}).get("type"), value)
            for name, value in params.items()}
