"""st2local: run this pack's actions and Orquesta workflows locally, without StackStorm.

A development tool (see README.md beside this file): python-script actions run in their own
process the way st2's python runner runs them; orquesta actions are conducted with the real
Orquesta engine (PyPI orquesta 1.2.0, Python 3.8 venv) the way st2's workflow engine drives it.
The contract followed is ../shared/reference/stackstorm.md §3, §4, §8.

Python API (put tools/ on sys.path, then `import st2local`):

    run_action(pack, ref, parameters=None, from_cli=False, config=None, answer=None,
               answers=None, executors=None, completion_order=None, datastore_path=None,
               user="stanley", progress=sys.stderr) -> execution
        pack: a pack directory or a Pack. ref: "<pack>.<action>" (a bare name gets the pack's).
        parameters: the execution's parameters; from_cli=True casts strings by declared type.
        config: a YAML file path or a dict (schema defaults from config.schema.yaml applied).
        answer: how core.ask tasks are answered: "approve" ({"approved": true}), "reject"
            ({"approved": false}), "timeout" (the inquiry expires: the task FAILS), a response
            dict, or None (the workflow ends "paused"). answers: {task_name or "*": answer}.
        datastore_path: the shared JSON datastore (default $ST2LOCAL_DATASTORE or
            ~/.cache/st2local/<pack>.datastore.json).
        progress: where the per-task lines go (None: nowhere).

    conduct_workflow(pack, workflow_path, inputs=None, action_ref=None, **same options)
        -> execution, for a workflow file under actions/ without action metadata.

    execution = {"id", "action", "runner_type", "status", "parameters" (secrets masked),
                 "result", "start", "duration"[, "tasks"]}
        status: succeeded | failed | timeout | paused | pending (a bare core.ask).
        result: python-script -> {"result", "stdout", "stderr", "exit_code"[, "error"]};
                orquesta -> {"output": ...[, "errors": [...]]} (errors when it failed).
        tasks (orquesta): one record per action call, in the order their outcomes reached the
            engine: {"id", "route", "item_id", "action", "status", "start", "duration",
            "result"[, "tasks" of a sub-workflow][, "answer"]}; start is seconds since the run
            began, so sorting by it gives the start order.

Injectable executor (for workflow tests: conduct the REAL workflow file with scripted action
outcomes). `executors` maps an action ref to one of
    - a callable `fn(params)` or `fn(params, call)` returning (status, execution_result);
      params are the action's parameters after st2's rendering (defaults applied, validated
      against the action's metadata when the action exists); `call` is a conductor.TaskCall
      (.workflow, .task_id, .route, .item_id, .action, .params, .attempt, .path). It runs in
      the task's worker thread, so it may block (e.g. on a threading.Event);
    - a constant (status, execution_result);
    - a list of those, used one per call (the last repeats): e.g. for retries.
  status is "succeeded", "failed", "timeout", "abandoned", "canceled" or "pending" (an
  inquiry); execution_result is the WHOLE execution result, e.g. py_result(...) below for a
  python action, wf_result(...) for a sub-workflow. An exception in the callable fails the
  action with {"error", "traceback"}. Actions not in the mapping run for real.

Completion order of parallel tasks (deterministic tests): completion_order=None feeds each
outcome to the engine as soon as its action finishes. completion_order=[names] (task names,
"task[i]" for one item, "*" for every unlisted task, by default last) or a key function of a
TaskCall makes the loop wait until every running action has finished, then feed back ONE
outcome, the lowest-ranked (ties: started first), start what became ready, and repeat. So
completion_order=["get_connector"] delivers get_connector's failure while stop_server is still
running in the engine's eyes, and ["*", "get_connector"] delivers it after everything else.
"""
import sys

from .pack import Pack, PackError, ParameterError  # noqa: F401
from .runner import RunContext, conduct_workflow, run_action  # noqa: F401

__all__ = ["Pack", "PackError", "ParameterError", "RunContext", "conduct_workflow",
           "run_action", "py_result", "wf_result"]


def py_result(result=None, status="succeeded", stdout="", stderr="", exit_code=None):
    """A python-script execution as st2 records it: (status, {result, stdout, stderr,
    exit_code}). status "failed" with the default exit code models `return (False, result)`."""
    if exit_code is None:
        exit_code = 0 if status in ("succeeded", "failed") else 1
    return status, {"result": result, "stdout": stdout, "stderr": stderr,
                    "exit_code": exit_code}


def wf_result(output=None, status="succeeded", errors=None):
    """An orquesta (sub-workflow) execution: (status, {output[, errors]})."""
    result = {"output": output}
    if status != "succeeded":
        result["errors"] = list(errors or [])
    return status, result


if sys.version_info < (3, 6):  # pragma: no cover
    raise RuntimeError("st2local needs Python 3")
