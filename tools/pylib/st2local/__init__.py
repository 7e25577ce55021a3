"""st2local: run this pack's actions and Orquesta workflows locally with StackStorm's own code
(see README.md beside this file; ../shared/reference/stackstorm.md §3, §4, §8).

    run_action(pack, ref, parameters=None, from_cli=False, config=None, answer=None,
               answers=None, executors=None, completion_order=None, datastore_path=None,
               user="stanley", progress=sys.stderr) -> execution
        ref "<pack>.<action>" (a bare name gets the pack's); parameters are rendered and cast as
        st2's API does. config: a YAML path or a dict (config.schema.yaml defaults applied).
        answer (core.ask): "approve", "reject", "timeout" (the task fails), a response dict, or
        None (the workflow ends "paused"); answers: {task_name or "*": answer}.
        datastore_path: the shared JSON key file (default $ST2LOCAL_DATASTORE or
        ~/.cache/st2local/<pack>.datastore.json). progress: where per-task lines go (None: off).
    conduct_workflow(pack, workflow_path, inputs=None, action_ref=None, **same options)

    execution = {"id", "action", "runner_type", "status", "parameters" (secrets masked),
                 "result", "start", "duration"[, "tasks"]}
        result: python-script -> {"result", "stdout", "stderr", "exit_code"[, "error"]};
                orquesta -> {"output": ...[, "errors": [...]]}.
        tasks: one record per action call in the order their outcomes reached the engine:
            {"id", "route", "item_id", "action", "status", "task_status", "start", "duration",
             "result"[, "tasks"][, "answer"]}.

executors (workflow tests: the REAL workflow file, scripted outcomes): {action_ref: spec}, spec
a callable fn(params) or fn(params, call) (call: conductor.TaskCall, .task_id .route .item_id
.action .params .attempt .path; runs in the task's thread), a constant (status, result), or a
list of those used one per call (the last repeats). status: succeeded, failed, timeout,
abandoned, canceled or pending; result is the WHOLE execution result: py_result(...) or
wf_result(...). An exception fails the action with {"error", "traceback"}.
completion_order: None (outcomes reach the engine as actions finish), or task names ("task[i]"
for an item, "*" for the others, default last) or a key function of a TaskCall: the loop waits
for every running action, then feeds back the lowest-ranked outcome (ties: started first).
"""
from .pack import Pack, PackError, ParameterError  # noqa: F401
from .runner import RunContext, conduct_workflow, run_action  # noqa: F401

__all__ = ["Pack", "PackError", "ParameterError", "RunContext", "conduct_workflow",
           "run_action", "py_result", "wf_result"]


def py_result(result=None, status="succeeded", stdout="", stderr="", exit_code=None):
    """A python-script execution result: (status, {result, stdout, stderr, exit_code})."""
    if exit_code is None:
        exit_code = 0 if status in ("succeeded", "failed") else 1
    return status, {"result": result, "stdout": stdout, "stderr": stderr,
                    "exit_code": exit_code}


def wf_result(output=None, status="succeeded", errors=None):
    """An orquesta (sub-workflow) execution result: (status, {output[, errors]})."""
    return status, dict({"output": output}, **({} if status == "succeeded" else {
        "errors": list(errors or [])}))
