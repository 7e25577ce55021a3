"""st2local: run this pack's actions and Orquesta workflows locally on StackStorm's own code
(README.md beside this file; the st2 rules it follows: docs/stackstorm.md).

run_action(pack, ref, parameters=None, from_cli=False, config=None, answer=None, answers=None,
           executors=None, completion_order=None, datastore_path=None, user="stanley",
           progress=sys.stderr) -> execution; conduct_workflow(pack, workflow_path, inputs=None,
           action_ref=None, **same options) for a workflow file without action metadata.
  ref: "<pack>.<action>" or a bare name; parameters are rendered and cast as st2's API does;
  config: a YAML path or a dict; answer (core.ask): "approve", "reject", "timeout" (the task
  fails), a response dict, or None (the workflow ends "paused"); answers: {task or "*": answer};
  datastore_path: the JSON key file (default $ST2LOCAL_DATASTORE or
  ~/.cache/st2local/<pack>.datastore.json); progress: where per-task lines go (None: off).
execution: {"id", "action", "runner_type", "status", "parameters" (secrets masked), "result",
  "start", "duration"[, "tasks"]}; result: python-script {"result", "stdout", "stderr",
  "exit_code"[, "error"]}, orquesta {"output"[, "errors"]}; tasks: one record per action call
  in the order their outcomes reached the engine: {"id", "route", "item_id", "action", "status",
  "task_status", "start", "duration", "result"[, "tasks"][, "answer"]}.
executors {action_ref: spec} (the REAL workflow with scripted outcomes): fn(params) or
  fn(params, call) (call: conductor.TaskCall; runs in the task's thread), a constant (status,
  result) or a list of those, one per call (the last repeats); status: succeeded, failed,
  timeout, abandoned, canceled or pending; result: the WHOLE execution result, py_result(...) or
  wf_result(...); an exception fails the action with {"error", "traceback"}.
completion_order: None (outcomes reach the engine as actions finish), task names ("task[i]" an
  item, "*" the others, default last) or a key function of a TaskCall: the loop waits for every
  running action, then feeds back the lowest-ranked outcome (ties: started first).
"""
import importlib


def __getattr__(name):  # lazy: an action process imports st2local.launch and st2's wrapper only
    home = "pack" if name in ("Pack", "PackError", "ParameterError") else "runner" if name in (
        "RunContext", "conduct_workflow", "run_action") else None
    if home is None:
        raise AttributeError(name)
    return getattr(importlib.import_module("." + home, __name__), name)


def py_result(result=None, status="succeeded", stdout="", stderr="", exit_code=None):
    """A python-script execution result: (status, {result, stdout, stderr, exit_code})."""
    return status, {"result": result, "stdout": stdout, "stderr": stderr, "exit_code": (
        int(status not in ("succeeded", "failed")) if exit_code is None else exit_code)}


def wf_result(output=None, status="succeeded", errors=None):
    """An orquesta (sub-workflow) execution result: (status, {output[, errors]})."""
    return status, dict({"output": output}, **({} if status == "succeeded" else {
        "errors": list(errors or [])}))
