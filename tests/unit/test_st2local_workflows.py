"""tools/pylib/st2local conducts the fixture pack's REAL Orquesta workflow files with the orquesta
StackStorm 3.9 pins (commit 5ba1467, 1.6.0+; Python 3.8 and 3.11), the way st2 drives it
(docs/stackstorm.md, "Orquesta traps"): parallel branches and joins, failure edges, with-items,
retry, core.ask, sub-workflows, ctx().st2, st2's inspection, the injectable executor with a
controlled completion order. Tests whose outcome is the engine version's are marked and gated on
it."""
import io
import json
import os
import subprocess
import sys
import threading
import time

import orquesta
import pytest


from st2local import conduct_workflow, py_result, run_action, wf_result

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIXTURE = os.path.join(REPO, "tests", "fixtures", "st2local_pack")
PACK = "st2local_fixture"
SUCCEED = PACK + ".succeed"
ORQUESTA_1_6 = pytest.mark.skipif(
    tuple(int(p) for p in orquesta.__version__.split(".")[:2]) < (1, 6),
    reason="asserts the behaviour of orquesta 1.6 (st2 3.9's pin 5ba1467), found %s"
    % orquesta.__version__)


@pytest.fixture
def run(tmp_path):
    def run_(name, params=None, **kwargs):
        kwargs.setdefault("progress", None)
        return run_action(FIXTURE, "%s.%s" % (PACK, name), params,
                          datastore_path=str(tmp_path / "kv.json"), **kwargs)
    return run_


def order(execution):
    """Task ids in the order their outcomes reached the engine."""
    return [t["id"] if t["item_id"] is None else "%s[%s]" % (t["id"], t["item_id"])
            for t in execution["tasks"]]


def by_id(execution, task_id):
    return [t for t in execution["tasks"] if t["id"] == task_id]


# -- real actions --------------------------------------------------------------------------------

def test_parallel_branches_and_join_with_real_actions(run):
    execution = run("parallel_join", {"name": "ann"})
    assert execution["status"] == "succeeded"
    assert execution["result"] == {"output": {"left": "ANN!", "right": "printed: right\n",
                                              "final": "ANN! and printed: right\n"}}
    ran = order(execution)
    assert ran[0] == "start" and ran[-1] == "join" and sorted(ran[1:3]) == ["left", "right"]
    join = by_id(execution, "join")[0]
    assert join["start"] >= max(t["start"] + t["duration"] for t in execution["tasks"]
                                if t["id"] in ("left", "right")) - 0.01
    # python actions: the whole execution result is result(), fields under .result
    left = by_id(execution, "left")[0]
    assert left["result"]["result"]["shout"] == "ANN!" and left["action"] == SUCCEED


def test_failure_edge_to_cleanup_then_fail(run):
    execution = run("failure_cleanup")
    assert execution["status"] == "failed"
    assert order(execution) == ["step", "cleanup"]
    assert execution["result"]["output"] == {"reason": "disk on fire", "cleaned": True}
    errors = execution["result"]["errors"]
    assert [e.get("task_id") for e in errors] == ["step", "fail"]
    assert errors[0]["result"]["result"] == {"reason": "disk on fire"}


def test_with_items_results_in_item_order(run):
    execution = run("with_items", {"names": ["x", "y", "z"]})
    assert execution["status"] == "succeeded"
    assert execution["result"]["output"] == {"shouted": ["X!", "Y!", "Z!"]}
    assert sorted(order(execution)) == ["each[0]", "each[1]", "each[2]"]


def test_with_items_concurrency_is_honoured(run):
    lock = threading.Lock()
    running, peak = [0], [0]

    def slow(params):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return py_result({"shout": params["name"]})

    execution = run("with_items", {"names": list("abcde")}, executors={SUCCEED: slow})
    assert execution["status"] == "succeeded"
    assert execution["result"]["output"]["shouted"] == list("abcde")
    assert peak[0] == 2  # concurrency: 2


def test_retry_until_count_with_real_failing_action(run):
    execution = run("retry")
    assert execution["status"] == "failed"
    assert order(execution) == ["flaky"] * 3  # first run + count: 2
    assert execution["result"]["output"] == {"final": "gave up"}


def test_retry_succeeds_on_a_later_attempt(run):
    attempts = []

    def flaky(params, call):
        attempts.append(call.attempt)
        return py_result("third time lucky") if call.attempt == 3 else py_result(
            "no", status="failed")

    execution = run("retry", executors={PACK + ".fail_false": flaky})
    assert execution["status"] == "succeeded"
    assert attempts == [1, 2, 3]
    assert execution["result"] == {"output": {"final": "third time lucky"}}
    seq = run("retry", executors={PACK + ".fail_false": [py_result("a", status="failed"),
                                                         py_result("b")]})
    assert seq["status"] == "succeeded" and len(seq["tasks"]) == 2


# -- core.ask ------------------------------------------------------------------------------------

def test_ask_approve(run):
    execution = run("ask", answer="approve")
    assert execution["status"] == "succeeded"
    assert execution["result"]["output"] == {"decision": "approved"}
    assert order(execution) == ["approve", "act"]
    ask = by_id(execution, "approve")[0]
    assert ask["result"]["response"] == {"approved": True}
    assert ask["result"]["route"] == "fixture" and ask["result"]["ttl"] == 60
    assert set(ask["result"]) == {"schema", "roles", "users", "route", "ttl", "response"}


def test_ask_reject(run):
    execution = run("ask", answer="reject")
    assert execution["status"] == "succeeded"
    assert execution["result"]["output"] == {"decision": "rejected"}
    assert order(execution) == ["approve"]


def test_ask_timeout_fails_the_task(run):
    execution = run("ask", answer="timeout")
    assert execution["status"] == "failed"
    ask = by_id(execution, "approve")[0]
    assert ask["status"] == "timeout" and ask["task_status"] == "failed"
    assert order(execution) == ["approve", "report"]
    assert execution["result"]["output"] == {"decision": "expired"}


def test_ask_timeout_straight_to_fail_ends_succeeded_as_in_st2(run):
    """st2 times the inquiry out, then resumes: a `fail` reached while paused is dropped."""
    execution = run("ask_direct_fail", answer="timeout")
    assert by_id(execution, "approve")[0]["task_status"] == "failed"
    assert execution["status"] == "succeeded"


def test_ask_without_answer_pauses(run):
    execution = run("ask")
    assert execution["status"] == "paused"
    assert [(t["id"], t["status"]) for t in execution["tasks"]] == [("approve", "pending")]


def test_ask_answer_per_task_and_schema_checked(run):
    assert run("ask", answers={"approve": "reject"})["result"]["output"] == {
        "decision": "rejected"}
    execution = run("ask", answer={"approved": "yes"})  # not a boolean: st2 refuses it
    assert execution["status"] == "failed"
    assert "does not pass the inquiry's schema" in json.dumps(execution["result"]["errors"])


# -- sub-workflows and the st2 context -----------------------------------------------------------

def test_sub_workflow_output_and_context(run):
    execution = run("parent", {"who": "kid"})
    assert execution["status"] == "succeeded"
    output = execution["result"]["output"]
    assert output["from_child"] == "KID!"  # result().output.greeting
    parent, child = output["parent_st2"], output["child_ctx"]
    for ctx in (parent, child):
        assert set(ctx) >= {"action_execution_id", "workflow_execution_id", "user", "pack",
                            "action"}
        assert ctx["user"] == "stanley" and ctx["pack"] == PACK
    assert parent["action"] == PACK + ".parent" and child["action"] == PACK + ".child"
    assert parent["action_execution_id"] == execution["id"]
    assert child["action_execution_id"] != parent["action_execution_id"]
    call = by_id(execution, "call_child")[0]
    assert call["result"]["output"]["greeting"] == "KID!"
    assert [t["id"] for t in call["tasks"]] == ["greet"]


def test_scripted_executor_reaches_into_sub_workflows(run):
    calls = []

    def fake(params, call):
        calls.append(call.path)
        return py_result({"shout": "scripted %s" % params["name"]})

    execution = run("parent", {"who": "kid"}, executors={SUCCEED: fake})
    assert calls == ["call_child/greet"]
    assert execution["result"]["output"]["from_child"] == "scripted kid"
    scripted_child = run("parent", executors={PACK + ".child": wf_result({"greeting": "G",
                                                                          "st2": {}})})
    assert scripted_child["result"]["output"]["from_child"] == "G"


def test_ctx_st2_and_user(run):
    execution = run("st2ctx", user="alice")
    output = execution["result"]["output"]
    assert output["user"] == "alice"
    assert output["st2"]["action"] == PACK + ".st2ctx"
    assert len(output["st2"]["workflow_execution_id"]) == 24


# -- refused before any task runs ----------------------------------------------------------------

def test_inspection_errors_fail_before_any_task(run):
    execution = run("bad_input")
    assert execution["status"] == "failed" and execution["tasks"] == []
    messages = [e["message"] for e in execution["result"]["errors"]]
    assert 'Action "%s" has unexpected input "colour".' % SUCCEED in messages
    assert any('"%s.no_such_action" is not registered' % PACK in m for m in messages)
    assert {e["type"] for e in execution["result"]["errors"]} == {"content"}


def test_duplicate_keys_are_refused_as_st2_does(run):
    execution = run("duplicate_keys")
    assert execution["status"] == "failed"
    assert 'found duplicate key "one"' in execution["result"]["errors"][0]["message"]


def test_wrong_parameter_type_at_run_time_fails_task_and_workflow(run):
    execution = run("bad_param")
    assert execution["status"] == "failed"
    assert by_id(execution, "typed")[0]["status"] == "failed"
    assert "'many' is not of type 'integer'" in json.dumps(execution["result"]["errors"])


@ORQUESTA_1_6
def test_with_items_concurrency_zero_runs_the_items_as_st2_does(run):
    """orquesta 1.6: a with-items concurrency of 0 runs the items (1.2.0 stalled)."""
    execution = run("stall")
    assert execution["status"] == "succeeded"
    assert sorted(order(execution)) == ["each[0]", "each[1]"]


# -- injectable executor: outcomes and completion order -----------------------------------------

def connector_fails(params, call):
    if call.task_id == "get_connector":
        return py_result({"error": "no connector"}, status="failed")
    return py_result({"shout": "ok"})


@ORQUESTA_1_6
def test_failing_branch_first_still_runs_the_join_on_orquesta_1_6(run):
    """A failed() edge into a join (docs/stackstorm.md, "Orquesta traps"), the failure reaching
    the engine while the other branch is still running. orquesta 1.6 (st2 3.9) waits for the
    other branch and runs the join (1.2.0 failed the workflow with UnreachableJoinError)."""
    execution = run("join_on_failure", executors={SUCCEED: connector_fails},
                    completion_order=["get_connector"])
    assert order(execution) == ["start", "get_connector", "stop_server", "refresh"]
    assert execution["status"] == "succeeded"
    assert execution["result"]["output"] == {"stopped": True, "connector": None}


def test_failing_branch_last_runs_the_join(run):
    execution = run("join_on_failure", executors={SUCCEED: connector_fails},
                    completion_order=["*", "get_connector"])
    assert order(execution) == ["start", "stop_server", "get_connector", "refresh"]
    assert execution["status"] == "succeeded"
    assert execution["result"]["output"] == {"stopped": True, "connector": None}


def test_completion_order_key_function(run):
    execution = run("parallel_join", executors={SUCCEED: py_result({"shout": "L"})},
                    completion_order=lambda call: 0 if call.task_id == "right" else 1)
    assert order(execution) == ["start", "right", "left", "join"]


def test_branches_really_run_concurrently(run):
    """Without completion_order each action runs in its own thread: left waits for right."""
    right_done = threading.Event()

    def left(params):
        assert right_done.wait(10), "right never ran while left was running"
        return py_result({"shout": "L"})

    def right(params):
        right_done.set()
        return py_result(["r"], stdout="R")

    execution = run("parallel_join", executors={SUCCEED: left, PACK + ".printer": right})
    assert execution["status"] == "succeeded"
    assert order(execution)[:3] == ["start", "right", "left"]
    assert execution["result"]["output"]["final"] == "L and R"


def test_executor_errors_fail_the_task(run):
    def broken(params):
        raise RuntimeError("scripted failure")

    execution = run("parent", executors={SUCCEED: broken})
    assert execution["status"] == "failed"
    child = by_id(execution, "call_child")[0]
    greet = child["tasks"][0]
    assert greet["status"] == "failed" and "scripted failure" in greet["result"]["error"]
    bad = run("parent", executors={SUCCEED: lambda params: "not a tuple"})
    assert bad["status"] == "failed"


def test_conduct_workflow_file_and_progress_lines(tmp_path):
    stream = io.StringIO()
    execution = conduct_workflow(
        FIXTURE, os.path.join(FIXTURE, "actions", "workflows", "parallel_join.yaml"),
        {"name": "p"}, executors={SUCCEED: py_result({"shout": "P"}),
                                  PACK + ".printer": py_result([], stdout="Q")},
        datastore_path=str(tmp_path / "kv.json"), progress=stream)
    assert execution["status"] == "succeeded"
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("[") and "s] task left -> %s ... succeeded (" % SUCCEED in line
               for line in lines), lines
    assert lines[-1].startswith("[  0.0s] workflow %s.parallel_join ... succeeded" % PACK)


def test_cli_workflow_with_answer(tmp_path):
    env = dict(os.environ, ST2LOCAL_PACK=FIXTURE, ST2LOCAL_DATASTORE=str(tmp_path / "kv.json"),
               ST2RUN_PYTHON=sys.executable)
    main = [os.path.join(REPO, "tools", "st2-run")]
    done = subprocess.run(main + [PACK + ".ask", "--answer", "approve", "--json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["output"] == {"decision": "approved"}
    assert "task approve -> core.ask ... succeeded" in done.stderr
    paused = subprocess.run(main + [PACK + ".ask"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, env=env,
                            timeout=120)
    assert paused.returncode == 1 and "--answer approve|reject|timeout" in paused.stdout


def test_action_timeout_is_a_failed_task(run):
    """RUNNING + timeout -> the task is FAILED for orquesta, so failed() edges catch it."""
    execution = run("failure_cleanup", executors={
        PACK + ".fail_false": py_result({"reason": "slow"}, status="timeout")})
    step = by_id(execution, "step")[0]
    assert (step["status"], step["task_status"]) == ("timeout", "failed")
    assert order(execution) == ["step", "cleanup"]
    assert execution["result"]["output"] == {"reason": "slow", "cleaned": True}
