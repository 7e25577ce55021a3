"""The pack's chat aliases (aliases/*.yaml) on st2's own code: st2tests' BaseActionAliasTestCase
(each alias loaded through st2's AliasesRegistrar, assertCommandMatchesExactlyOneFormatString,
assertExtractedParametersMatch), st2's matcher across all the pack's aliases
(st2common.util.actionalias_matching.match_command_to_alias: a line matching more than one
format is refused as ambiguous), st2's immutable parameter injection and casts, and the ack and
result texts rendered with st2's Jinja environment.

Every phrasing the pack accepts is listed in EXAMPLES with the alias and parameters st2 gives
it; HELP lists lines that start like one but are not one (trailing words, a missing value): the
help alias answers those with the forms; NOT_MATCHING lists lines that take no alias of the
pack. Each line is also matched as hubot-stackstorm matches it (JavaScript RegExp with the `i`
flag, run by node when it is installed): both engines pick the same alias, and no line, nor any
of the variants made by adding, dropping or repeating a word, is taken by two formats. Every
format compiles in both and uses no Python-only syntax.

It sits directly in tests/ (st2tests finds the pack at the test file's directory + ..) and runs
in the st2tests pytest run (`pytest tests/`): importing st2tests eventlet-patches the process."""
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import types

import pytest
import yaml
from st2common.exceptions.content import ParseException
from st2common.models.utils.action_alias_utils import (ActionAliasFormatParser,
                                                       extract_parameters,
                                                       inject_immutable_parameters)
from st2common.util import casts
from st2common.util import jinja as jinja_utils
from st2common.util.actionalias_matching import (match_command_to_alias,
                                                 normalise_alias_format_string)
from st2tests.base import BaseActionAliasTestCase

from dvremedy.steps import attachments as attachments_step
from dvremedy.errors import InputError
from dvremedy.model import audit_report
from dvremedy.model import sweep as sweep_model
from dvremedy.model.report import build_report
from testsupport.rules import runner_parameters

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK = "dangling_volume"


def _load(pattern):
    out = []
    for path in sorted(glob.glob(os.path.join(REPO, pattern))):
        with open(path) as f:
            out.append(yaml.safe_load(f))
    return out


ALIASES = _load("aliases/*.yaml")
BY_NAME = {a["name"]: a for a in ALIASES}
ACTIONS = {"%s.%s" % (PACK, a["name"]): a for a in _load("actions/*.yaml")}

SID = "03549f61-9cee-4bdf-b5e9-39c18d815a06"
VID = "7d0c8a4e-1b2f-4c3d-9e8f-0a1b2c3d4e5f"
VID2 = "11111111-2222-4333-8444-555555555555"
BOOT = "99999999-8888-4777-8666-555555555555"
IID = "65a1b2c3d4e5f60718293a4b"
EID = "65a1b2c3d4e5f60718293a99"
CHAT = {"action_alias_ref": "dangling_volume.x", "api_user": "alice", "user": "chatops_bot",
        "source_channel": "#ops"}
FROM_CHAT = {"source": "chatops", "user": "alice", "channel": "#ops"}

REMEDY, DRY_RUN = "dangling_volume_remedy", "dangling_volume_remedy_dry_run"
ATTACHMENTS = "dangling_volume_attachments"
APPROVE, REJECT = "dangling_volume_approve", "dangling_volume_reject"
AUDIT, SWEEP = "dangling_volume_audit", "dangling_volume_sweep"
HELP = "dangling_volume_help"

MANUAL = {"mode": "manual", "triggered_by": FROM_CHAT}
BOTH = {"volume_id": VID, "server_id": SID}

# Every phrasing the pack accepts: line -> (alias, parameters extracted from the line,
# immutable parameters after rendering). Any line may end in key=value pairs.
EXAMPLES = [
    ("remedy volume %s on server %s" % (VID, SID), REMEDY, BOTH, MANUAL),
    ("Remedy volume %s on server %s" % (VID, SID), REMEDY, BOTH, MANUAL),
    ("remedy the volume %s on the server %s" % (VID, SID), REMEDY, BOTH, MANUAL),
    ("  remedy volume '%s' on server \"%s\"  " % (VID, SID), REMEDY, BOTH, MANUAL),
    ("remedy volume %s on server %s dry_run=true" % (VID, SID), REMEDY,
     dict(BOTH, dry_run="true"), MANUAL),
    ("remedy volume %s on server %s cloud=prod allow_libvirt_detach=true" % (VID, SID), REMEDY,
     dict(BOTH, cloud="prod", allow_libvirt_detach="true"), MANUAL),
    ("remedy volume %s on server %s cloud=\"prod east\"" % (VID, SID), REMEDY,
     dict(BOTH, cloud="prod east"), MANUAL),
    ("dry run remedy volume %s on server %s" % (VID, SID), DRY_RUN, BOTH,
     dict(MANUAL, dry_run=True)),
    ("dry-run remedy volume %s on server %s" % (VID, SID), DRY_RUN, BOTH,
     dict(MANUAL, dry_run=True)),
    ("Dry run remedy volume %s on server %s" % (VID, SID), DRY_RUN, BOTH,
     dict(MANUAL, dry_run=True)),
    ("Dry-run the remedy of the volume %s on the server %s cloud=lab" % (VID, SID), DRY_RUN,
     dict(BOTH, cloud="lab"), dict(MANUAL, dry_run=True)),
    ("attachments of server %s" % SID, ATTACHMENTS, {"server_id": SID}, {}),
    ("Attachments on server %s" % SID, ATTACHMENTS, {"server_id": SID}, {}),
    ("show attachments of server %s" % SID, ATTACHMENTS, {"server_id": SID}, {}),
    ("Show the attachments of the server %s" % SID, ATTACHMENTS, {"server_id": SID}, {}),
    ("list attachments on server %s cloud=lab" % SID, ATTACHMENTS,
     {"server_id": SID, "cloud": "lab"}, {}),
    ("approve remedy %s" % IID, APPROVE, {"inquiry_id": IID}, {"approved": True}),
    ("approve %s" % IID, APPROVE, {"inquiry_id": IID}, {"approved": True}),
    ("Approve the remedy '%s'" % IID, APPROVE, {"inquiry_id": IID}, {"approved": True}),
    ("reject remedy %s" % IID, REJECT, {"inquiry_id": IID}, {"approved": False}),
    ("Reject %s" % IID, REJECT, {"inquiry_id": IID}, {"approved": False}),
    ("reject the remedy %s" % IID, REJECT, {"inquiry_id": IID}, {"approved": False}),
    ("audit volumes", AUDIT, {}, {"scope": "all"}),
    ("Audit all volumes", AUDIT, {}, {"scope": "all"}),
    ("audit the volumes deep=true", AUDIT, {"deep": "true"}, {"scope": "all"}),
    ("audit volumes of project web-prod", AUDIT + "_project", {"project": "web-prod"},
     {"scope": "project"}),
    ("Audit the volumes in project web-prod", AUDIT + "_project", {"project": "web-prod"},
     {"scope": "project"}),
    ("audit volumes in the project web-prod deep=true", AUDIT + "_project",
     {"project": "web-prod", "deep": "true"}, {"scope": "project"}),
    ("audit volumes on host compute-1", AUDIT + "_host", {"host": "compute-1"},
     {"scope": "host"}),
    ("Audit all volumes on the host compute-1", AUDIT + "_host", {"host": "compute-1"},
     {"scope": "host"}),
    ("sweep volumes", SWEEP, {}, {"dry_run": False}),
    ("Sweep all volumes", SWEEP, {}, {"dry_run": False}),
    ("sweep the volumes scope=project project=p1", SWEEP,
     {"scope": "project", "project": "p1"}, {"dry_run": False}),
    ("dry run sweep volumes", SWEEP + "_dry_run", {}, {"dry_run": True}),
    ("Dry-run sweep all volumes", SWEEP + "_dry_run", {}, {"dry_run": True}),
    ("dangling volume help", HELP, {}, {}),
    ("Help dangling-volumes", HELP, {}, {}),
]

# Lines that start like a phrasing of the pack but are not one: the help alias takes them and
# answers with the forms (never a value that swallowed the extra words, never silence).
HELP_LINES = [
    "remedy volume %s on server %s please" % (VID, SID),
    "remedy volume %s on server %s now dry_run=true" % (VID, SID),
    "remedy volume %s on server %s dry_run=true please" % (VID, SID),
    "Remedy volume %s now on server %s" % (VID, SID),
    "remedy volume a on b on server %s" % SID,
    "remedy volume %s on server %s=1" % (VID, SID),
    "remedy volume %s" % VID, "remedy", "remedy %s on %s" % (VID, SID),
    "remedy volume on server %s" % SID, "remedy approve %s" % IID,
    "dry run remedy volume %s on server %s now" % (VID, SID),
    "dry-run remedy volume %s" % VID, "dry run sweep volumes now", "dry run sweep",
    "attachments of server", "attachments of server dry_run=true", "attachments %s" % SID,
    "show attachments of server %s now" % SID, "Attachments of the server %s %s" % (SID, SID),
    "approve remedy", "approve remedy %s now" % IID, "approve remedy web-1",
    "Reject remedy %s please" % IID, "approve %s %s" % (IID, IID),
    "audit volumes of project", "audit volumes on host", "audit volumes of project a b",
    "audit volumes remedy volume x", "Audit all volumes now",
    "sweep volumes now", "sweep volumes older than 2h dry_run=true",
]

NOT_MATCHING = [
    "", "remedies", "please remedy volume %s on server %s" % (VID, SID),
    "dry run volume %s on server %s" % (VID, SID), "dry run deploy web",
    "show me the logs", "approve remedies", "approve deployment 5", "reject the change 12",
    "approve %s" % IID[:-1], "audit", "audit logs", "sweep", "sweep the floor",
    "dangling volumes please",
]


def action_parameter_names(action):
    """The parameters an execution may set: the action's own and its runner's (runner.yaml)."""
    return set(action.get("parameters") or {}) | set(runner_parameters(action["runner_type"]))


def representations(alias):
    """Every representation of an alias's formats, normalised by st2."""
    reps = []
    for fmt in alias.get("formats") or []:
        _display, found, _multiple = normalise_alias_format_string(fmt)
        reps += found
    return reps


ALL_REPRESENTATIONS = [(alias["name"], rep) for alias in ALIASES
                       for rep in representations(alias)]


def placeholders(representation):
    """The parameter names st2's format parser makes of a representation."""
    return set(ActionAliasFormatParser(alias_format=representation)._regex.groupindex)


def cast(alias, params):
    """st2's casts (util/casts.py) by the action's declared types, as st2 casts before running."""
    declared = (ACTIONS.get(alias.action_ref) or {}).get("parameters") or {}
    return {name: casts.get_cast((declared.get(name) or {}).get("type"))(value)
            for name, value in params.items()}


class PackAliases(BaseActionAliasTestCase):
    """One alias (action_alias_name), loaded by st2's registrar, among all the pack's."""

    action_alias_name = None
    _all = None

    def setUp(self):
        super(PackAliases, self).setUp()
        if PackAliases._all is None:
            PackAliases._all = [self._get_action_alias_db_by_name(name) for name in BY_NAME]

    def matches(self, line):
        """What st2's matcher finds for a line among all the pack's enabled aliases."""
        return match_command_to_alias(line, [a for a in self._all if a.enabled])

    def resolve(self, line):
        """The one (alias, representation) st2 runs for a line, as get_matching_alias: none or
        more than one is refused."""
        found = self.matches(line)
        assert len(found) == 1, (line, [(m["alias"].name, m["representation"]) for m in found])
        return found[0]["alias"], found[0]["representation"]


class AliasExamples(PackAliases):
    """The example lines of one alias: st2 picks this alias and its one format, extracts these
    parameters, injects and casts the immutable ones to these values. Not collected itself:
    one subclass per alias follows."""

    __test__ = False

    def test_example_lines(self):
        examples = [e for e in EXAMPLES if e[1] == self.action_alias_name]
        assert examples, "every alias has example lines"
        for line, _name, extracted, fixed in examples:
            with self.subTest(line=line):
                alias, rep = self.resolve(line)
                self.assertEqual(alias.name, self.action_alias_name)
                self.assertCommandMatchesExactlyOneFormatString(
                    representations(BY_NAME[self.action_alias_name]), line)
                self.assertExtractedParametersMatch(rep, line, extracted)
                [params] = inject_immutable_parameters(self.action_alias_db, [dict(extracted)],
                                                       dict(CHAT))
                self.assertEqual(cast(alias, {k: v for k, v in params.items()
                                              if k not in extracted}), fixed)
                action = ACTIONS[alias.action_ref]
                self.assertLessEqual(set(extracted) | set(fixed),
                                     action_parameter_names(action))
                for key, value in cast(alias, extracted).items():
                    declared = action["parameters"][key].get("type")
                    self.assertTrue(declared != "boolean" or isinstance(value, bool),
                                    (line, key, value))

    def test_every_format_has_an_example_line(self):
        used = {self.resolve(line)[1] for line, name, *_ in EXAMPLES
                if name == self.action_alias_name}
        self.assertLessEqual(set(representations(BY_NAME[self.action_alias_name])), used)

    def test_every_parameter_it_can_set_is_one_of_its_actions(self):
        alias = BY_NAME[self.action_alias_name]
        allowed = action_parameter_names(ACTIONS[alias["action_ref"]])
        names = set(alias.get("immutable_parameters") or {})
        for rep in representations(alias):
            names |= placeholders(rep)
        self.assertLessEqual(names, allowed)


for _name in BY_NAME:
    if _name != HELP:
        _cls = "Test_" + _name
        globals()[_cls] = type(_cls, (AliasExamples,), {"action_alias_name": _name,
                                                       "__test__": True})
del _name, _cls


class TestHelp(PackAliases):
    """The help alias: the forms, for a line that starts like one of the pack's but is not one.
    It runs dangling_volume.help (the noop runner: nothing happens; its one fixed parameter makes
    st2 refuse any key=value a line appends) and its ack is the answer."""

    action_alias_name = HELP

    def test_lines_that_start_like_a_phrasing_get_the_forms(self):
        for line in HELP_LINES + [e[0] for e in EXAMPLES if e[1] == HELP]:
            with self.subTest(line=line):
                alias, rep = self.resolve(line)
                self.assertEqual(alias.name, HELP)
                # nothing of the line becomes a value: at most trailing key=value pairs
                self.assertEqual(placeholders(rep), set())

    def test_every_format_has_a_line(self):
        used = {self.resolve(line)[1] for line in HELP_LINES + ["dangling volume help"]}
        self.assertEqual(set(representations(BY_NAME[HELP])), used)

    def test_it_runs_nothing_and_its_answer_is_a_form_of_every_other_alias(self):
        alias = BY_NAME[HELP]
        self.assertEqual(alias["action_ref"], "dangling_volume.help")
        self.assertIs(alias["result"]["enabled"], False)
        answer = ack(HELP, {})
        forms = [part for i, part in enumerate(answer.split("`")) if i % 2]
        values = {"<volume_id>": VID, "<server_id>": SID, "<inquiry_id>": IID,
                  "<project>": "p1", "<host>": "cmp1"}
        taken = set()
        for form in forms:
            for optional in (False, True):  # each form with and without its [optional] words
                line = re.sub(r"\[(\w+)\] ", r"\1 " if optional else "", form)
                for placeholder, value in values.items():
                    line = line.replace(placeholder, value)
                with self.subTest(line=line):
                    taken.add(self.resolve(line)[0].name)
        self.assertEqual(taken, set(BY_NAME) - {HELP})


class TestAcrossAliases(PackAliases):
    action_alias_name = REMEDY

    def test_lines_that_must_not_match_do_not(self):
        for line in NOT_MATCHING:
            with self.subTest(line=line):
                self.assertEqual(self.matches(line), [])

    def test_no_line_matches_two_formats(self):
        for line in ALL_LINES:  # and their variants: test_every_variant_... below
            with self.subTest(line=line):
                self.assertLessEqual(len(self.matches(line)), 1)

    def test_a_line_cannot_override_what_the_alias_fixes(self):
        for line, overridden in OVERRIDES:
            with self.subTest(line=line):
                alias, rep = self.resolve(line)
                params = extract_parameters(format_str=rep, param_stream=line)
                with self.assertRaisesRegex(ValueError, "Immutable arguments cannot be "
                                            "overriden: %s" % overridden):
                    inject_immutable_parameters(alias, [params], dict(CHAT))

    def test_the_aliases_st2_loads_are_the_files(self):
        self.assertEqual(sorted(a.name for a in self._all), sorted(BY_NAME))
        self.assertTrue(all(a.pack == PACK for a in self._all))


OVERRIDES = [
    ("dry run remedy volume %s on server %s dry_run=false" % (VID, SID), "dry_run"),
    ("remedy volume %s on server %s mode=automatic" % (VID, SID), "mode"),
    ("remedy volume %s on server %s triggered_by={\"source\":\"sensor\"}" % (VID, SID),
     "triggered_by"),
    ("approve remedy %s approved=false" % IID, "approved"),
    ("reject %s approved=true" % IID, "approved"),
]

ALL_LINES = [e[0] for e in EXAMPLES] + HELP_LINES + NOT_MATCHING + [o[0] for o in OVERRIDES]


def variants(lines):
    """Each line with one word added (at every place), dropped or repeated: what a hurried
    operator types. Kept to the lines of the pack's own aliases (a few hundred)."""
    out = set()
    for line in lines:
        words = line.split()
        for i in range(len(words) + 1):
            out.add(" ".join(words[:i] + ["now"] + words[i:]))
            if i < len(words):
                out.add(" ".join(words[:i] + words[i + 1:]))
                out.add(" ".join(words[:i + 1] + words[i:]))
    return sorted(out - set(lines))


# the formats: one meaning in both regex engines ---------------------------------------------

# Python-only (or Python-different) regex syntax: named groups (?P<..>, inline flags such as
# (?i), lookbehind, atomic groups, conditionals, comments, possessive quantifiers, \A \Z.
PYTHON_ONLY = re.compile(r"\(\?P|\(\?[aiLmsux-]+[):]|\(\?<[=!]|\(\?>|\(\?\(|\(\?#"
                         r"|[*+?}]\+|\\[AZ]")


@pytest.mark.parametrize("name, rep", ALL_REPRESENTATIONS,
                         ids=["%s-%d" % (n[16:], i) for i, (n, _r) in
                              enumerate(ALL_REPRESENTATIONS)])
def test_each_format_compiles_in_python_and_uses_no_python_only_syntax(name, rep):
    assert not PYTHON_ONLY.search(rep), (name, rep)
    re.compile(rep)                        # as written (st2 validates it so)
    ActionAliasFormatParser(alias_format=rep)  # as st2 turns it into its regex
    assert rep == rep.strip() and "  " not in rep, (name, rep)  # YAML folding left no stray space


# hubot-stackstorm's getRegexForFormatString (src/lib/command_factory.js): placeholders become
# \s*([\s\S]+?)\s*, key=value pairs may follow, anchored, compiled with the `i` flag; the first
# alias whose regex tests true takes the line. XRegExp is used when node can require it.
HUBOT = r"""
const reps = JSON.parse(process.argv[1]);
const lines = JSON.parse(require("fs").readFileSync(0, "utf8"));
let compile = (s, f) => new RegExp(s, f), engine = "RegExp";
try { const X = require("xregexp"); compile = (s, f) => X(s, f); engine = "XRegExp"; } catch (e) {}
function hubot(format) {
  const extra = '(\\s+(\\S+)\\s*=("([\\s\\S]*?)"|\'([\\s\\S]*?)\'|({[\\s\\S]*?})|(\\S+))\\s*)*';
  let s = format.replace(/(\s*){{\s*\S+\s*=\s*(?:({.+?}|.+?))\s*}}(\s*)/g,
                         '\\s*($1([\\s\\S]+?)$3)?\\s*');
  s = s.replace(/\s*{{.+?}}\s*/g, '\\s*([\\s\\S]+?)\\s*');
  return compile('^\\s*' + s + extra + '\\s*$', 'i');
}
reps.forEach(r => compile(r, "i"));  // the format as written compiles too
const compiled = reps.map(hubot);
console.log(JSON.stringify({engine: engine, matches: lines.map(
  l => compiled.map((c, i) => c.test(l) ? i : -1).filter(i => i >= 0))}));
"""


def hubot_matches(lines):
    """For each line, the indexes in ALL_REPRESENTATIONS of the formats hubot's regex takes."""
    reps = [rep for _name, rep in ALL_REPRESENTATIONS]
    done = subprocess.run(["node", "-e", HUBOT, json.dumps(reps)], input=json.dumps(lines),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["matches"]


PACK_ALIASES = [types.SimpleNamespace(name=a["name"], formats=a["formats"]) for a in ALIASES]


@functools.lru_cache(maxsize=None)
def st2_matches(line):
    """The indexes in ALL_REPRESENTATIONS of the formats st2's matcher takes for a line."""
    reps = [r for _n, r in ALL_REPRESENTATIONS]
    return sorted(reps.index(m["representation"])
                  for m in match_command_to_alias(line, PACK_ALIASES))


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_hubot_and_st2_take_the_same_format_for_every_line():
    lines = ALL_LINES + variants(ALL_LINES)
    for line, in_hubot in zip(lines, hubot_matches(lines)):
        assert sorted(in_hubot) == st2_matches(line), line


def test_every_variant_takes_at_most_one_format():
    for line in variants(ALL_LINES):
        found = [ALL_REPRESENTATIONS[i] for i in st2_matches(line)]
        assert len(found) <= 1, (line, found)


def test_no_value_swallows_a_word():
    """Whatever line st2 runs an alias of the pack for, each value it extracts is one word (or
    a key=value pair's value): extra words go to the help alias, never into an id."""
    for line in ALL_LINES + variants(ALL_LINES):
        for index in st2_matches(line):
            rep = ALL_REPRESENTATIONS[index][1]
            params = extract_parameters(format_str=rep, param_stream=line)
            for name in placeholders(rep):
                assert len(params[name].split()) == 1, (line, name, params[name])


def test_the_dry_run_alias_fixes_dry_run_and_both_remedy_aliases_report_alike():
    assert BY_NAME[DRY_RUN]["immutable_parameters"]["dry_run"] is True
    assert "dry_run" not in BY_NAME[REMEDY].get("immutable_parameters", {})
    assert BY_NAME[REMEDY]["result"]["format"] == BY_NAME[DRY_RUN]["result"]["format"]


def extract(fmt, line):
    try:
        return extract_parameters(format_str=fmt, param_stream=line)
    except ParseException:
        return None


def test_st2_matches_as_documented():
    """The observations stackstorm.md §7 lists, on st2's own parser and matcher."""
    fmt = "remedy volume {{volume_id}} on server {{server_id}}"
    assert extract(fmt, "remedy volume 1111 on server 2222") == {
        "volume_id": "1111", "server_id": "2222"}
    assert extract(fmt, "remedy volume 1111 on server 2222 dry_run=true") == {
        "volume_id": "1111", "server_id": "2222", "dry_run": "true"}
    assert extract(fmt, "remedy volume 1111 on server 2222 now")["server_id"] == "2222 now"
    assert extract(fmt, "Remedy volume 1111 on server 2222") is None
    assert extract(fmt, "please remedy volume 1111 on server 2222") is None
    with_default = "remedy volume {{volume_id}} on server {{server_id}} {{dry_run=false}}"
    assert extract(with_default, "remedy volume 1 on server 2222")["dry_run"] == "false"
    assert extract(with_default, "remedy volume 1 on server 2222 true")["dry_run"] == "true"
    assert extract("remedy {{a}} on {{b}}", "remedy \"1111\" on '2222'") == {
        "a": "1111", "b": "2222"}
    assert extract("remedy volume {{volume_id}}", "remedy volume 1111 on server 2222") == {
        "volume_id": "1111 on server 2222"}
    assert extract("attachments of server {{server_id}}", "attachments of server") is None
    assert extract("remedy( dry run)? volume {{v}}", "remedy dry run volume 1") == {
        "v": "1"}  # the format is a regex
    # two aliases whose formats both take a line: st2's matcher finds both, so st2 refuses it
    prefix = [types.SimpleNamespace(name="a", formats=["remedy volume {{volume_id}}"]),
              types.SimpleNamespace(name="b", formats=[fmt])]
    assert len(match_command_to_alias("remedy volume 1111 on server 2222", prefix)) == 2
    assert extract("deploy {{repo}} {{ref=\"main\"}}", "deploy x")["ref"] == "main"
    assert extract("run {{cmd}}", "run x k={\"a\": 1}")["k"] == '{"a": 1}'


def resolve_one(line):
    """(alias name, extracted parameters with the immutable ones) for a line, st2's way, over
    the alias files (for the result tests below, which need no registrar)."""
    found = [(alias, rep) for alias in ALIASES for rep in representations(alias)
             if extract(rep, line) is not None]
    assert len(found) == 1, (line, found)
    alias, rep = found[0]
    return alias["name"], dict(extract(rep, line), **(alias.get("immutable_parameters") or {}))


# ack and result texts -------------------------------------------------------------------------

def ack(name, parameters):
    """The ack as st2's alias execution API renders it: strict, `execution` an API object."""
    alias = BY_NAME[name]
    execution = types.SimpleNamespace(id=EID, status="requested", parameters=parameters)
    return jinja_utils.render_values({"alias": alias["ack"]["format"]},
                                     {"execution": execution, "actionalias": alias})["alias"]


def result_text(name, status, result, parameters):
    """The result as chatops.format_execution_result renders it: undefined names allowed,
    `execution` the execution as a dict."""
    execution = {"id": EID, "status": status, "parameters": parameters, "result": result,
                 "action": {"ref": BY_NAME[name]["action_ref"]}}
    env = jinja_utils.get_jinja_environment(allow_undefined=True)  # format_execution_result's
    env.tests["in"] = lambda item, list: item in list
    return env.from_string(BY_NAME[name]["result"]["format"]).render(execution=execution)


def test_acks_say_what_started_and_how_to_follow_it():
    params = {"volume_id": VID, "server_id": SID}
    assert ack(REMEDY, params) == (
        "Remedying volume %s on server %s: the server is stopped if the fix needs it and "
        "started again; usually a few minutes. Execution %s: follow it with "
        "`st2 execution get %s`; the report comes here when it ends." % (VID, SID, EID, EID))
    assert ack(REMEDY, dict(params, dry_run=True)).startswith(
        "Dry run of the remedy of volume %s on server %s: nothing will change. Execution %s"
        % (VID, SID, EID))
    assert ack(DRY_RUN, dict(params, dry_run=True)) == (
        "Dry run of the remedy of volume %s on server %s: nothing will change. Execution %s: "
        "follow it with `st2 execution get %s`; the findings come here in seconds."
        % (VID, SID, EID, EID))
    assert ack(ATTACHMENTS, {"server_id": SID}) == (
        "Reading the attachments of server %s (execution %s, `st2 execution get %s`); the "
        "answer comes here in seconds." % (SID, EID, EID))
    assert ack(APPROVE, {"inquiry_id": IID, "approved": True}) == (
        "Approving remedy %s (execution %s, `st2 execution get %s`)." % (IID, EID, EID))
    assert ack(REJECT, {"inquiry_id": IID, "approved": False}).startswith(
        "Rejecting remedy %s" % IID)


PLAN = {"class": "nova_only", "problems": ["nova_only"], "action": "refresh",
        "steps": ["stop", "get_connector", "refresh", "detach", "verify", "start"],
        "reasons": ["Nova lists the volume, Cinder has no attachment"],
        "original_power": "running"}
STEPS = [{"step": "stop", "changed": True, "did": "stopped server (was ACTIVE)"},
         {"step": "get_connector", "changed": False, "did": "connector of cmp1 read over SSH"},
         {"step": "refresh", "changed": True, "did": "nova-manage refresh on ctl1: exit 0"},
         {"step": "detach", "changed": True, "did": "detached through the Compute API"},
         {"step": "start", "changed": True, "did": "started server (it was running)"}]
FINAL = {"consistent": True, "expect": "detached",
         "classification": {"class": "not_attached", "problems": ["not_attached"]}}
PARAMS = {"volume_id": VID, "server_id": SID}


def remedy_result(status, report):
    return result_text(REMEDY, status, {"output": {"report": report}}, PARAMS)


@pytest.mark.parametrize("name", sorted(n for n in BY_NAME if n != HELP))
def test_every_alias_prints_the_text_its_action_built_or_one_fallback_line(name):
    """No template logic in the aliases: the action's text, success or failure, as it is."""
    keys = {"remedy": ("output", "report"), "sweep": ("output", "summary")}.get(
        BY_NAME[name]["action_ref"].split(".")[1], ("result",))
    result = {"text": "what a person reads\nnext: `x`"}
    for key in reversed(keys):
        result = {key: result}
    for status in ("succeeded", "failed"):
        assert result_text(name, status, result, {}) == "what a person reads\nnext: `x`"
    for nothing in (None, {"output": None, "errors": [{"message": "boom"}]}):
        fallback = result_text(name, "failed", nothing, {})
        assert fallback.endswith("failed: see `st2 execution get %s`" % EID)
        assert "\n" not in fallback


def test_remedy_result_on_success_lists_what_changed_and_what_to_type_next():
    text = remedy_result("succeeded", build_report(SID, VID, "remedied", PLAN, STEPS, FINAL))
    assert text.splitlines()[0] == ("Remedied volume %s on server %s (it was nova_only): Nova, "
                                    "Cinder and the hypervisor agree now." % (VID, SID))
    assert "* refresh: nova-manage refresh on ctl1: exit 0" in text
    assert "* get_connector" not in text  # changed nothing
    assert "Check: `attachments of server %s`" % SID in text


def test_remedy_result_of_a_dry_run_says_what_a_real_run_would_do():
    text = remedy_result("succeeded", build_report(SID, VID, "dry run", PLAN, dry_run=True))
    assert text.startswith("Dry run: volume %s on server %s is nova_only; nothing changed.\n"
                           % (VID, SID))
    assert "A real run would run: stop -> get_connector -> refresh -> detach -> verify -> start" \
        in text
    assert "why: Nova lists the volume, Cinder has no attachment" in text
    assert "To remedy it: `remedy volume %s on server %s`" % (VID, SID) in text
    assert resolve_one("remedy volume %s on server %s" % (VID, SID))[0] == REMEDY


def test_remedy_result_on_failure_gives_the_step_the_reason_and_the_advice():
    error = {"result": {"error": {"kind": "nova_manage", "message": "refresh failed: rc 7",
                                  "advice": "take the connector on the server's host"}}}
    report = build_report(SID, VID, "failed", PLAN, STEPS[:2] + [STEPS[-1]], error=error,
                          failed_step="refresh")
    text = remedy_result("failed", report)
    assert text.splitlines()[0] == ("Remedy of volume %s on server %s FAILED at refresh: "
                                    "refresh failed: rc 7" % (VID, SID))
    assert "next: take the connector on the server's host" in text
    assert "Power: started server (it was running)" in text
    assert "`dry run remedy volume %s on server %s`" % (VID, SID) in text


def test_remedy_result_on_bad_input_says_nothing_was_changed():
    error = {"result": {"error": InputError("server_id must be a UUID like ..., not 'x'",
                                            step="identify").evidence()}}
    report = build_report("x", VID, "failed", error=error, failed_step="identify")
    text = remedy_result("failed", report)
    assert text.startswith("Remedy of volume %s on server x FAILED at identify: server_id "
                           "must be a UUID" % VID)
    assert "Nothing was changed." in text


@pytest.mark.parametrize("outcome, headline, next_line", [
    ("rejected", "rejected: nothing was changed.",
     "To look at it again: `dry run remedy volume {v} on server {s}`"),
    ("approval timed out", ": nobody approved it in time; nothing was changed.",
     "To run it now: `remedy volume {v} on server {s}`"),
    ("capped", " not started: the hourly cap on automatic remedies is reached",
     "Run it by hand if it cannot wait: `remedy volume {v} on server {s}`"),
])
def test_remedy_result_of_a_declined_automatic_run(outcome, headline, next_line):
    report = build_report(SID, VID, outcome, PLAN, mode="automatic",
                          triggered_by={"source": "sensor", "event_type": "compute.exception"})
    lines = remedy_result("succeeded", report).splitlines()
    assert lines[0].startswith("Automatic remedy of volume %s on server %s" % (VID, SID))
    assert headline in lines[0]
    assert lines[-1].startswith(next_line.format(v=VID, s=SID))


def _views(volume_id, device, nova_attachment, cinder_status, records, live, config):
    return {"server": {"id": SID, "name": "web-1", "status": "ACTIVE", "compute_host": "cmp1",
                       "instance_name": "instance-0001", "root_device_name": "/dev/sda"},
            "volume_id": volume_id,
            "nova": {"device": device, "attachment_id": nova_attachment} if device else None,
            "nova_volume_ids": [],
            "cinder": {"id": volume_id, "status": cinder_status, "exists": True,
                       "attachments": records},
            "hypervisor": {"reachable": True, "domain": "instance-0001", "live": live,
                           "config": config}}


def attachments_of_three(monkeypatch):
    seen = {"server": _views(BOOT, "/dev/sda", "a0", "in-use", [], [], [])["server"],
            "hypervisor": {"reachable": True, "domain": "instance-0001"},
            "volumes": [
                _views(BOOT, "/dev/sda", "a0", "in-use",
                       [{"id": "a0", "status": "attached", "server_id": SID}], ["sda"], ["sda"]),
                _views(VID2, "/dev/sdb", "a1", "in-use",
                       [{"id": "a1", "status": "attached", "server_id": SID}], ["sdb"], ["sdb"]),
                _views(VID, "/dev/sdc", "a2", "available", [], ["sdc"], ["sdc"])]}
    monkeypatch.setattr(attachments_step.views, "server_attachments", lambda *a: seen)
    ctx = types.SimpleNamespace(conn=None, ssh=None, settings=None)
    return attachments_step.list_attachments(ctx, SID)


def test_attachments_result_lists_each_volume_and_what_to_look_at(monkeypatch):
    data = attachments_of_three(monkeypatch)
    text = result_text(ATTACHMENTS, "succeeded", {"result": data, "exit_code": 0},
                       {"server_id": SID})
    assert text == (
        "Server web-1 ({s}, ACTIVE): 3 volumes attached, 1 needs attention.\n"
        "/dev/sda `{b}`: healthy (boot volume), Cinder in-use\n"
        "/dev/sdb `{v2}`: healthy, Cinder in-use\n"
        "/dev/sdc `{v}`: nova_only, Cinder available\n"
        "Look before you act:\n"
        "`dry run remedy volume {v} on server {s}`").format(s=SID, b=BOOT, v2=VID2, v=VID)
    # the command it suggests is one the aliases take
    assert resolve_one("dry run remedy volume %s on server %s" % (VID, SID))[0] == DRY_RUN


def test_attachments_summary_is_short_and_names_the_problem(monkeypatch):
    data = attachments_of_three(monkeypatch)
    assert data["count"] == 3 and data["unhealthy"] == 1
    assert [(v["volume_id"], v["class"], v["boot_volume"]) for v in data["volumes"]] == [
        (BOOT, "healthy", True), (VID2, "healthy", False), (VID, "nova_only", False)]
    lines = data["summary"].splitlines()
    assert lines[0] == ("server web-1 (%s, ACTIVE on cmp1): 3 volumes attached, 1 needs "
                        "attention" % SID)
    assert lines[3].startswith("  /dev/sdc %s: nova_only; Nova: attached as /dev/sdc" % VID)
    assert json.loads(json.dumps(data)) == data  # plain data: st2 serialises the result


def test_failed_step_results_carry_their_text():
    error = InputError("server_id must be a UUID like 03549f61-..., not 'web-1'").evidence()
    failed = {"error": error, "text": "attachments failed: server_id must be a UUID"}
    assert result_text(ATTACHMENTS, "failed", {"result": failed}, {}) == failed["text"]


def test_the_approval_request_rule_tells_what_to_type_and_those_lines_work():
    rule = yaml.safe_load(open(os.path.join(REPO, "rules", "notify_approval_request.yaml")))
    assert rule["enabled"] is False  # the channel is the operator's to choose
    assert rule["trigger"]["type"] == "core.st2.generic.inquiry"
    assert rule["criteria"] == {"trigger.route": {"type": "equals",
                                                  "pattern": "dangling_volume"}}
    kv = {"system": {"dangling_volume": {"approval_channel": "#ops"}}}
    params = jinja_utils.render_values(rule["action"]["parameters"],
                                       {"trigger": {"id": IID, "route": "dangling_volume"},
                                        "st2kv": kv})
    assert params["channel"] == "#ops"
    message = params["message"]
    assert IID in message
    typed = [part for i, part in enumerate(message.split("`")) if i % 2]
    assert "approve remedy %s" % IID in typed and "reject remedy %s" % IID in typed
    for line, name, approved in (("approve remedy " + IID, APPROVE, True),
                                 ("reject remedy " + IID, REJECT, False)):
        assert resolve_one(line) == (name, {"inquiry_id": IID, "approved": approved})


# audit and sweep from chat -----------------------------------------------------------------------

def test_audit_answers_with_the_counts_and_the_report_path():
    assert ack(AUDIT + "_project", {"scope": "project", "project": "web"}).startswith(
        "Auditing the volume attachments of project web (execution %s" % EID)
    summary = {"complete": False, "scope": {"kind": "project", "project": "web",
                                            "project_id": "p1"},
               "counts": {"attachments_checked": 12, "findings": 2, "with_remedy": 1,
                          "needs_operator": 1, "by_class": {"nova_only": 1, "cinder_only": 1}},
               "hosts_not_seen": [{"host": "cmp9", "reason": "ssh timeout"}],
               "report": {"json": "/r/a.json", "table": "/r/a.txt"}}
    text = audit_report.summary_text(summary)
    assert text.splitlines()[0] == ("Audit (project web (p1)): 12 attachments checked, 2 "
                                    "findings (1 with a remedy, 1 need an operator).")
    assert "* nova_only: 1" in text and "Not seen: cmp9 (ssh timeout)" in text
    assert "Report: /r/a.txt" in text and "`dry run sweep volumes`" in text
    assert result_text(AUDIT, "succeeded", {"result": dict(summary, text=text)}, {}) == text


def test_sweep_answers_with_its_summary_text_and_the_audit_report():
    audit = {"counts": {"findings": 0}, "report": {"table": "/r/a.txt"}}
    summary = sweep_model.summarize({"todo": [], "left_alone": [], "notes": []}, [],
                                    audit=audit)
    assert summary["text"].splitlines()[-1] == "Audit report: /r/a.txt"
    text = result_text(SWEEP, "succeeded", {"output": {"summary": summary}}, {})
    assert text == summary["text"]
