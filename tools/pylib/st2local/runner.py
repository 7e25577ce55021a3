"""Runs one action of a pack locally: parameters as st2 prepares them, then by runner type:
python-script in its own process (st2local.python_runner), orquesta with the real engine
(st2local.conductor, nested workflows recursively), core.noop / core.echo / core.ask built in.
See st2local/__init__.py for the API and tools/st2local/README.md for what it is not.
"""
import inspect
import json
import os
import sys
import threading
import time
import traceback

from . import pack as pack_mod
from .datastore import Datastore, default_path
from .python_runner import run_python_action

COMPLETED = ("succeeded", "failed", "timeout", "abandoned", "canceled")
SCRIPTED_STATUSES = COMPLETED + ("pending",)


class RequestError(Exception):
    """st2 would refuse to create this execution (unknown action, bad parameters)."""


class AnswerError(Exception):
    """The configured inquiry answer does not fit the inquiry's schema."""


def new_id():
    return os.urandom(12).hex()  # the shape of a MongoDB ObjectId, as st2's ids


def make_rank(order):
    """completion_order -> key(TaskCall) for conductor.WorkflowRun, or None."""
    if order is None:
        return None
    if callable(order):
        return order
    order = list(order)
    if "*" not in order:
        order.append("*")
    star = order.index("*")

    def rank(call):
        names = [call.path, call.task_id]
        if call.item_id is not None:
            names = ["%s[%s]" % (call.path, call.item_id),
                     "%s[%s]" % (call.task_id, call.item_id)] + names
        for name in names:
            if name in order:
                return order.index(name)
        return star
    return rank


def _scripted_call(spec, params, call):
    if callable(spec):
        try:
            positional = [p for p in inspect.signature(spec).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            wants_call = len(positional) >= 2
        except (TypeError, ValueError):
            wants_call = False
        return spec(params, call) if wants_call else spec(params)
    return spec


class RunContext(object):
    """Everything one local run shares, nested workflows included."""

    def __init__(self, pack, config=None, answer=None, answers=None, executors=None,
                 completion_order=None, datastore_path=None, user="stanley",
                 progress=sys.stderr):
        self.pack = pack if isinstance(pack, pack_mod.Pack) else pack_mod.Pack(pack)
        self.datastore_path = os.path.abspath(datastore_path or default_path(self.pack.name))
        self.datastore = Datastore(self.datastore_path)
        self.config = self.pack.load_config(config, self.datastore)
        self.answer = answer
        self.answers = dict(answers or {})
        self.executors = dict(executors or {})
        self.completion_rank = make_rank(completion_order)
        self.user = user
        self._progress = progress
        self._lock = threading.Lock()
        self._sequences = {}
        self.t0 = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.t0

    def progress(self, start, path, item_id, action, status, duration, kind="task"):
        if self._progress is None:
            return
        name = path if item_id is None else "%s[%s]" % (path, item_id)
        tail = "" if duration is None else " (%.1f s)" % duration
        line = "[%5.1fs] %s %s -> %s ... %s%s\n" % (start, kind, name, action, status, tail)
        if kind != "task":
            line = "[%5.1fs] %s %s ... %s%s\n" % (start, kind, action, status, tail)
        with self._lock:
            self._progress.write(line)
            self._progress.flush()

    # -- inquiries ------------------------------------------------------------------------------

    def answer_for(self, task_id):
        if task_id in self.answers:
            return self.answers[task_id]
        return self.answers.get("*", self.answer)

    def response_for(self, answer, schema):
        if answer == "approve":
            response = {"approved": True}
        elif answer == "reject":
            response = {"approved": False}
        elif isinstance(answer, dict):
            response = answer
        elif isinstance(answer, str) and answer.strip().startswith("{"):
            response = json.loads(answer)
        else:
            raise AnswerError("unknown inquiry answer %r: use approve, reject, timeout or a JSON "
                              "object" % (answer,))
        errors = pack_mod._validator_errors("response", response, schema or {})
        if errors:
            raise AnswerError("the inquiry response %s does not pass the inquiry's schema "
                              "(st2 would refuse it): %s" % (json.dumps(response),
                                                             "; ".join(errors)))
        return response

    # -- executing ------------------------------------------------------------------------------

    def _next_scripted(self, ref):
        spec = self.executors[ref]
        if isinstance(spec, list):
            with self._lock:
                index = self._sequences.get(ref, 0)
                self._sequences[ref] = index + 1
            return spec[min(index, len(spec) - 1)]
        return spec

    def execute(self, ref, given=None, from_cli=False, call=None, parent=None, path_prefix=""):
        """One action execution -> {"id", "action", "runner_type", "status", "parameters",
        "result", "start", "duration"[, "tasks"]}. RequestError if st2 would refuse it."""
        start = self.elapsed()
        scripted = ref in self.executors
        try:
            action = self.pack.get_action(ref)
        except pack_mod.PackError as exc:
            if not scripted:
                raise RequestError(str(exc))
            action = None
        if action is not None and not action.enabled:
            raise RequestError('Action "%s" is disabled.' % ref)
        if action is not None:
            try:
                runner_params, params = pack_mod.prepare_parameters(
                    action, given, from_cli=from_cli, config=self.config,
                    datastore=self.datastore)
            except pack_mod.PackError as exc:
                raise RequestError(str(exc))
        else:
            runner_params, params = {}, dict(given or {})
        execution = {"id": new_id(), "action": ref,
                     "runner_type": action.runner_type if action else "scripted",
                     "parameters": pack_mod.mask_secrets(action, params) if action else params,
                     "start": round(start, 3)}
        try:
            if scripted:
                status, result = self._run_scripted(ref, params, call)
            else:
                status, result = self._run(action, runner_params, params, execution, parent,
                                           path_prefix)
        except Exception as exc:
            # st2's runner container: an exception in the runner fails the execution.
            status, result = "failed", {"error": "%s: %s" % (type(exc).__name__, exc),
                                        "traceback": traceback.format_exc()}
        execution["status"] = status
        execution["result"] = result
        execution["duration"] = round(self.elapsed() - start, 3)
        return execution

    def _run_scripted(self, ref, params, call):
        outcome = _scripted_call(self._next_scripted(ref), params, call)
        valid = isinstance(outcome, tuple) and len(outcome) == 2
        if not valid or outcome[0] not in SCRIPTED_STATUSES:
            raise ValueError("scripted executor for %s must return (status, result) with status "
                             "one of %s, got %r" % (ref, ", ".join(SCRIPTED_STATUSES), outcome))
        return outcome

    def _run(self, action, runner_params, params, execution, parent, path_prefix):
        runner = action.runner_type
        if runner == "python-script":
            return run_python_action(self.pack, action, runner_params, params,
                                     config=self.config, user=self.user,
                                     datastore_path=self.datastore_path,
                                     execution_id=execution["id"])
        if runner == "orquesta":
            return self._run_workflow(action, params, execution, parent, path_prefix)
        if runner == "noop":
            return "succeeded", {"failed": False, "succeeded": True, "return_code": 0}
        if runner == "local-shell-cmd":  # core.echo
            return "succeeded", {"failed": False, "succeeded": True, "return_code": 0,
                                 "stdout": str(params.get("message", "")), "stderr": ""}
        if runner == "inquirer":
            result = {k: runner_params.get(k) for k in ("schema", "roles", "users", "route",
                                                        "ttl")}
            if parent is None and self.answer_for(action.name) is not None:
                answer = self.answer_for(action.name)
                if answer == "timeout":
                    return "timeout", result
                response = self.response_for(answer, result["schema"])
                return "succeeded", dict(result, response=response)
            return "pending", result
        raise RequestError('runner_type "%s" is not supported by st2local' % runner)

    def _run_workflow(self, action, params, execution, parent, path_prefix):
        wf_path = self.pack.entry_point_path(action)
        from .conductor import WorkflowRun  # orquesta is only needed for workflows
        st2 = {"action_execution_id": execution["id"], "workflow_execution_id": new_id(),
               "user": self.user, "pack": action.pack_name, "action": action.ref,
               "runner": "orquesta"}
        st2_context = {"st2": st2}
        if parent is not None:
            st2_context["parent"] = parent
        run = WorkflowRun(self, action, wf_path, params, st2_context, path_prefix)
        status, result, tasks = run.run()
        execution["tasks"] = tasks
        return status, result

    def execute_task(self, call, wf_run):
        """A workflow task's action (called from the task's worker thread)."""
        parent_st2 = wf_run.st2_context["st2"]
        parent = {"execution_id": parent_st2["action_execution_id"], "user": self.user,
                  "pack": parent_st2["pack"],
                  "orquesta": {"workflow_execution_id": parent_st2["workflow_execution_id"],
                               "task_execution_id": new_id(), "task_name": call.task_id,
                               "task_id": call.task_id, "task_route": call.route}}
        if call.item_id is not None:
            parent["orquesta"]["item_id"] = call.item_id
        try:
            return self.execute(call.action, call.params, call=call, parent=parent,
                                path_prefix=call.path + "/")
        except RequestError as exc:
            message = "%s: %s" % (type(exc).__name__, exc)
            return {"status": "failed", "error_kind": "request", "duration": 0.0,
                    "result": {"errors": [{"type": "error", "message": message,
                                           "task_id": call.task_id, "route": call.route}]}}


def run_action(pack, ref, parameters=None, from_cli=False, config=None, answer=None,
               answers=None, executors=None, completion_order=None, datastore_path=None,
               user="stanley", progress=sys.stderr):
    """Run one action; returns its execution (see st2local/__init__.py)."""
    ctx = RunContext(pack, config=config, answer=answer, answers=answers, executors=executors,
                     completion_order=completion_order, datastore_path=datastore_path,
                     user=user, progress=progress)
    if "." not in ref:
        ref = "%s.%s" % (ctx.pack.name, ref)
    try:
        execution = ctx.execute(ref, parameters, from_cli=from_cli)
    except RequestError as exc:
        execution = {"id": None, "action": ref, "runner_type": None, "status": "failed",
                     "parameters": {}, "result": {"error": str(exc)}, "start": 0.0,
                     "duration": round(ctx.elapsed(), 3)}
    ctx.progress(execution["start"], None, None, ref, execution["status"],
                 execution["duration"], kind="action")
    return execution


def conduct_workflow(pack, workflow_path, inputs=None, action_ref=None, **options):
    """Conduct a workflow file that has no action metadata (inputs passed as they are)."""
    ctx = RunContext(pack, **options)
    rel = os.path.relpath(os.path.abspath(workflow_path), ctx.pack.actions_dir)
    name = os.path.splitext(os.path.basename(workflow_path))[0]
    action = pack_mod.Action(action_ref or "%s.%s" % (ctx.pack.name, name),
                             {"name": name, "runner_type": "orquesta", "entry_point": rel},
                             pack=ctx.pack)
    execution = {"id": new_id(), "action": action.ref, "runner_type": "orquesta",
                 "parameters": dict(inputs or {}), "start": 0.0}
    try:
        status, result = ctx._run_workflow(action, dict(inputs or {}), execution, None, "")
    except pack_mod.PackError as exc:
        status, result = "failed", {"error": str(exc)}
    execution.update(status=status, result=result, duration=round(ctx.elapsed(), 3))
    ctx.progress(0.0, None, None, action.ref, status, execution["duration"], kind="workflow")
    return execution
