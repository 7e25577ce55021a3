"""tools/pylib/st2local: python-script actions run in their own process through StackStorm 3.9's
own PythonActionWrapper and PythonRunner output parsing, parameters through st2common.util.param
and util.schema (st2's casts, messages and refusals), and the st2-run CLI. Uses the fixture pack
tests/fixtures/st2local_pack. StackStorm 3.9.0; Python 3.8 and 3.11."""
import json
import os
import subprocess
import sys
import time

import pytest

import st2common

from st2local import Pack, run_action
from st2local.keys import KeyFile
from st2local.pack import ParameterError, prepare_parameters

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(not st2common.__version__.startswith("3.9"),
                                reason="asserts StackStorm 3.9's wrapper, casts and messages")

FIXTURE = os.path.join(REPO, "tests", "fixtures", "st2local_pack")
PACK = "st2local_fixture"


@pytest.fixture
def datastore_path(tmp_path):
    return str(tmp_path / "kv.json")


@pytest.fixture
def run(datastore_path):
    datastore = datastore_path

    def run_(name, params=None, **kwargs):
        kwargs.setdefault("progress", None)
        return run_action(FIXTURE, "%s.%s" % (PACK, name), params, datastore_path=datastore,
                          **kwargs)
    return run_


def test_pack_name_and_actions():
    pack = Pack(FIXTURE)
    assert pack.name == PACK
    assert pack.get_action(PACK + ".succeed").runner_type == {"name": "python-script"}
    action = pack.get_action(PACK + ".sleeper")
    assert action.parameters["timeout"]["default"] == 3  # the action overrides the runner's 600
    assert Pack(os.path.join(FIXTURE, "actions", "lib")).name == "dangling_volume"


def test_success_with_cli_strings_cast_defaults_config_and_secret_masked(run):
    execution = run("succeed", {"name": "bob", "count": "3", "flag": "true",
                                "password": "s3cret"}, from_cli=True)
    assert execution["status"] == "succeeded"
    result = execution["result"]
    assert set(result) == {"result", "stdout", "stderr", "exit_code"}
    assert result["exit_code"] == 0
    assert result["result"]["shout"] == "BOB!"  # actions/lib/fixturelib imported
    assert result["result"]["count"] == 3 and result["result"]["flag"] is True
    assert result["result"]["greeting"] == "hello"  # config.schema.yaml default
    assert result["result"]["level"] == 3  # nested default
    assert result["result"]["argv"] == []  # parameters and config came on stdin
    assert "st2.actions.python.Succeed: INFO     greeting bob" in result["stderr"]
    assert execution["parameters"]["password"] == "********"


def test_config_file_overrides_defaults(run, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("greeting: hi\n")
    execution = run("succeed", {"name": "x"}, config=str(config))
    assert execution["result"]["result"]["greeting"] == "hi"
    assert execution["result"]["result"]["level"] == 3


def test_false_status_fails_and_keeps_the_result(run):
    execution = run("fail_false", {"reason": "why"})
    assert execution["status"] == "failed"
    assert execution["result"]["result"] == {"reason": "why"}
    assert execution["result"]["exit_code"] == 0


def test_non_bool_status_exits_220_and_fails(run):
    execution = run("bad_status")
    assert execution["status"] == "failed"
    assert "must either be True or False" in execution["result"]["error"]
    assert "ValueError" in execution["result"]["traceback"]


def test_exception_fails_with_traceback_in_stderr(run):
    execution = run("raises", {"message": "kaboom"})
    assert execution["status"] == "failed"
    result = execution["result"]
    assert result["exit_code"] != 0
    assert result["result"] == "None"
    assert "RuntimeError: kaboom" in result["stderr"]
    assert "Traceback" in result["stderr"]


def test_stdout_and_stderr_are_kept_apart_from_the_result(run):
    execution = run("printer", {"text": "abc"})
    result = execution["result"]
    assert result["stdout"] == "printed: abc\n"
    assert result["result"] == ["abc", 3]
    assert "WARNING  logged: abc" in result["stderr"]


def test_timeout_kills_the_process(run):
    started = time.monotonic()
    execution = run("sleeper")
    assert time.monotonic() - started < 10
    assert execution["status"] == "timeout"
    assert execution["result"]["error"] == "Action failed to complete in 3 seconds"
    assert execution["result"]["stdout"] == "going to sleep\n"
    assert execution["result"]["result"] == "None"
    execution = run("sleeper", {"seconds": 0, "timeout": 5})  # the runner parameter
    assert execution["status"] == "succeeded"
    assert execution["result"]["result"] == "woke up"


def test_loader_picks_alphabetically_first_class_defined_in_the_module(run):
    assert run("two_classes")["result"]["result"] == "alpha"


def test_constructor_without_action_service_and_config_missing_key(run):
    result = run("no_service")["result"]["result"]
    assert result["has_service"] is True
    assert 'Config for pack "unknown" is missing key "no_such_key"' in result[
        "missing_key_error"]  # st2 builds the config before it sets the late service


def test_datastore_shared_across_processes_with_ttl(run, datastore_path):
    store = KeyFile(datastore_path)
    assert run("kv", {"op": "set", "key": "fp", "value": "v1"})["result"]["result"]
    assert run("kv", {"op": "get", "key": "fp"})["result"]["result"] == "v1"
    listed = run("kv", {"op": "list"})["result"]["result"]
    assert listed == [["%s.KeyValue:fp" % PACK, "v1"]]
    assert run("kv", {"op": "set", "key": "fp", "value": "v2", "ttl": 3})["status"] == \
        "succeeded"
    assert store.get("%s.KeyValue:fp" % PACK)["ttl"] == 3
    time.sleep(3.3)
    assert run("kv", {"op": "get", "key": "fp"})["result"]["result"] is None
    assert run("kv", {"op": "set", "key": "g", "value": "x", "local": False})["status"] == \
        "succeeded"
    assert run("kv", {"op": "get", "key": "g", "local": False})["result"]["result"] == "x"
    assert run("kv", {"op": "user"})["result"]["result"] == "stanley"
    assert run("kv", {"op": "delete", "key": "nope"})["result"]["result"] is True  # as st2
    bad = run("kv", {"op": "bad_scope", "key": "g"})
    assert bad["status"] == "failed" and "Scope user is unsupported" in bad["result"]["stderr"]


@pytest.mark.parametrize("params, message", [
    ({"name": "x", "colour": "red"}, "Additional properties are not allowed ('colour' was "
                                     "unexpected)"),
    ({}, "'name' is a required property"),
    ({"name": "x", "count": "many"}, "invalid literal for int() with base 10: 'many'"),
])
def test_parameters_are_checked_like_st2(run, params, message):
    execution = run("succeed", params, from_cli=True)
    assert execution["status"] == "failed"
    assert message in execution["result"]["error"]


def test_parameter_types_enum_and_immutable():
    pack = Pack(FIXTURE)
    action = pack.get_action(PACK + ".kv")
    context = {"pack": PACK, "user": "stanley"}

    def prepare(params, live=False):
        return prepare_parameters(pack, action, params, live, context)
    with pytest.raises(ParameterError, match="is not one of"):
        prepare({"op": "explode"})
    with pytest.raises(ParameterError, match="'5' is not of type 'integer'"):
        prepare({"op": "get", "ttl": "5"})  # from a workflow: not cast
    runner, params = prepare({"op": "get", "ttl": "5"}, live=True)  # st2 run: cast first
    assert params["ttl"] == 5 and runner == {"timeout": 600, "log_level": "DEBUG",
                                             "debug": False, "env": None,
                                             "content_version": None}
    action.parameters["key"]["immutable"] = True
    with pytest.raises(ParameterError, match="immutable"):
        prepare({"op": "get", "key": "k"})


def test_entry_point_leaving_actions_is_refused(run):
    execution = run("bad_entry")
    assert execution["status"] == "failed"
    assert 'Invalid file path: "actions/../workflows/remedy.yaml"' in execution["result"]["error"]


def test_unknown_action_is_refused(run):
    execution = run("no_such_action")
    assert execution["status"] == "failed"
    assert "not found" in execution["result"]["error"]


def cli(*args, **kwargs):
    env = dict(os.environ, ST2LOCAL_PACK=FIXTURE, ST2RUN_PYTHON=sys.executable)
    env.update(kwargs.pop("env", {}))
    argv = [os.path.join(REPO, "tools", "st2-run")] + list(args)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, timeout=120)


def test_cli_json_and_exit_codes(tmp_path):
    env = {"ST2LOCAL_DATASTORE": str(tmp_path / "kv.json")}
    done = cli(PACK + ".succeed", "name=cli", "count=2", "--json", env=env)
    assert done.returncode == 0, done.stderr
    execution = json.loads(done.stdout)
    assert execution["status"] == "succeeded"
    assert execution["result"]["result"]["count"] == 2
    assert "[  0.0s] action st2local_fixture.succeed ... succeeded" in done.stderr
    failed = cli("fail_false", env=env)  # bare action name: the pack's
    assert failed.returncode == 1
    assert "status: failed" in failed.stdout
    assert cli(PACK + ".succeed", "name", env=env).returncode == 2  # not key=value


def test_jinja_in_parameters_and_config_reads_the_datastore(run, tmp_path):
    store = KeyFile(str(tmp_path / "kv.json"))  # the file the `run` fixture uses
    store.set("who", "kv-user")
    store.set("greet", "from-kv", secret=True)
    config = {"greeting": "{{ st2kv.system.greet }}"}  # config: secrets decrypted
    execution = run("succeed", {"name": "{{ st2kv.system.who }}", "count": "{{ 2 + 3 }}"},
                    config=config)
    assert execution["status"] == "succeeded", execution["result"]
    result = execution["result"]["result"]
    assert result["shout"] == "KV-USER!"
    assert result["count"] == 5  # rendered, then cast to the declared integer
    assert result["greeting"] == "from-kv"
