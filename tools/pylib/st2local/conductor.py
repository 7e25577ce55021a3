"""Conducts an Orquesta workflow file with the REAL Orquesta engine (PyPI orquesta 1.2.0 in the
py38 venv), the way st2's workflow engine drives it (../shared/reference/stackstorm.md §8;
st2common/services/workflows.py @v3.9.0), and runs each task's action through the run context
(st2local.runner.RunContext.execute): python actions in their own process, nested orquesta
actions recursively, core.noop/core.echo/core.ask built in, or a scripted outcome.

The loop, per workflow:
  load (duplicate keys and YAML merge keys refused, as st2 3.9 does) -> WorkflowSpec ->
  inspect (orquesta's syntax/semantics/expressions/context with the st2 context as app_ctx, plus
  st2's content checks: action refs exist, required inputs given, no unexpected inputs; any
  error -> the workflow fails before a task runs) -> request REQUESTED, RUNNING -> repeat:
  get_next_tasks(); mark each action RUNNING (items one by one); action-less tasks and empty
  with-items succeed at once; every other action runs in its own thread; each completion is fed
  back with ActionExecutionEvent / TaskItemActionExecutionEvent(accumulated_result) carrying the
  WHOLE execution result (so a python action's fields are `result().result.<field>`, a
  sub-workflow's `result().output.<field>`, a with-items task's result() is the list of
  execution results) -> until nothing runs and nothing is ready -> render the output.
The conductor is only touched from the thread that runs this loop.

core.ask: the inquiry returns PENDING (the workflow pauses when nothing else is active). When
the workflow is quiescent the configured answer is delivered in st2's order:
approve/reject/<response dict> -> resume, then the task succeeds with
{schema, roles, users, route, ttl, response}; timeout -> the task times out (orquesta turns
PENDING + timeout into FAILED), then resume. No answer -> the run ends "paused".

Completion order (for tests of parallel branches): by default a completion is fed back as soon
as its action finishes (real concurrency). With `completion_order` (a list of task names, "*"
standing for every task not listed, default at the end; or a key function of a TaskCall), the
loop first waits until every running action has finished, then feeds back ONE completion, the
lowest-ranked (ties: the one started first), starts what became ready, and repeats: so
["get_connector"] makes get_connector's outcome reach the engine while its parallel peers are
still "running", and ["*", "get_connector"] makes it arrive after everything else.
"""
import queue
import threading
import time
import traceback

from orquesta import conducting
from orquesta import events
from orquesta import exceptions as orquesta_exc
from orquesta import statuses
from orquesta.expressions import base as expr_base
from orquesta.specs import native as native_specs

from . import pack as pack_mod
from .python_runner import kill_all

INSPECTION_TYPES = {"syntax": "syntax", "semantics": "semantic", "expressions": "expression",
                    "context": "context"}


class TaskCall(object):
    """What a scripted executor (or a completion_order key) is told about one action call."""

    def __init__(self, workflow, task_id, route, item_id, action, params, attempt, path):
        self.workflow = workflow      # the workflow action's ref
        self.task_id = task_id
        self.route = route
        self.item_id = item_id        # None unless with-items
        self.action = action          # the action ref the task runs
        self.params = params          # the task's rendered input
        self.attempt = attempt        # 1 for the first run of this task, 2 after one retry...
        self.path = path              # "task" or "parent_task/task" for nested workflows

    def __repr__(self):
        item = "" if self.item_id is None else "[%s]" % self.item_id
        return "<TaskCall %s%s -> %s>" % (self.path, item, self.action)


class _Job(object):
    def __init__(self, call, delay, seq):
        self.call = call
        self.delay = delay
        self.seq = seq
        self.execution = None
        self.start = None


def format_inspection(result):
    errors = []
    for category, entries in sorted(result.items()):
        for entry in entries:
            entry = dict(entry)
            if category in ("context", "expressions") and "type" in entry:
                entry["language"] = entry.pop("type")
            entry["type"] = INSPECTION_TYPES.get(category, category)
            errors.append(entry)
    return errors


def _is_expression(value):
    return isinstance(value, str) and expr_base.has_expressions(value)


def inspect_task_contents(spec, pack, scripted):
    """st2's inspect_task_contents(): refs well formed and known, inputs as the action takes."""
    errors = []
    schema_path = "properties.tasks.patternProperties.^\\w+$"
    for task_name, task_spec in spec.tasks.items():
        ref = getattr(task_spec, "action", None)
        if not ref or _is_expression(ref):
            continue
        spec_path = "tasks.%s.action" % task_name
        parts = ref.split(".", 1) if isinstance(ref, str) else []
        if len(parts) != 2 or not all(parts):
            errors.append({"type": "content", "spec_path": spec_path,
                           "schema_path": schema_path + ".properties.action",
                           "message": 'The action reference "%s" is not formatted correctly.'
                           % ref})
            continue
        try:
            action = pack.get_action(ref)
        except pack_mod.PackError as exc:
            if ref in scripted:
                continue
            errors.append({"type": "content", "spec_path": spec_path,
                           "schema_path": schema_path + ".properties.action",
                           "message": 'The action "%s" is not registered in the database. (%s)'
                           % (ref, exc)})
            continue
        task_input = getattr(task_spec, "input", None) or {}
        if not isinstance(task_input, dict):
            continue
        requires, unexpected = pack_mod.missing_and_unexpected(action, task_input)
        for name in requires:
            errors.append({"type": "content", "spec_path": "tasks.%s.input" % task_name,
                           "schema_path": schema_path + ".properties.input",
                           "message": 'Action "%s" is missing required input "%s".'
                           % (ref, name)})
        for name in unexpected:
            errors.append({"type": "content",
                           "spec_path": "tasks.%s.input.%s" % (task_name, name),
                           "schema_path": schema_path + ".properties.input.patternProperties"
                           ".^\\w+$",
                           "message": 'Action "%s" has unexpected input "%s".' % (ref, name)})
    return errors


class WorkflowRun(object):
    """One workflow execution. run() -> (status, {"output": ..., ["errors": [...]]}, tasks)."""

    def __init__(self, ctx, action, wf_path, inputs, st2_context, path_prefix=""):
        self.ctx = ctx
        self.action = action
        self.wf_path = wf_path
        self.inputs = inputs
        self.st2_context = st2_context
        self.path_prefix = path_prefix
        self.conductor = None
        self.inflight = {}
        self.done = queue.Queue()
        self.buffer = []
        self.items = {}
        self.attempts = {}
        self.pending_asks = []
        self.tasks = []
        self.seq = 0
        self.extra_errors = []

    # -- set-up ---------------------------------------------------------------------------------

    def _fail_early(self, errors):
        return "failed", {"output": None, "errors": errors}, []

    def run(self):
        try:
            definition = pack_mod.load_yaml(self.wf_path)
        except (pack_mod.PackError, IOError, OSError) as exc:
            return self._fail_early([{"type": "error", "message": str(exc)}])
        try:
            spec = native_specs.WorkflowSpec(definition)
            errors = format_inspection(spec.inspect(app_ctx=self.st2_context))
        except Exception as exc:
            return self._fail_early([{"type": "error",
                                      "message": "%s: %s" % (type(exc).__name__, exc)}])
        errors += inspect_task_contents(spec, self.ctx.pack, self.ctx.executors)
        if errors:
            errors.sort(key=lambda e: (e["type"], e.get("schema_path") or ""))
            return self._fail_early(errors)

        self.conductor = conducting.WorkflowConductor(
            spec, context=self.st2_context, inputs=self.inputs)
        for wanted in (statuses.REQUESTED, statuses.RUNNING):
            try:
                self.conductor.request_workflow_status(wanted)
            except orquesta_exc.InvalidWorkflowStatusTransition:
                break  # inputs or vars did not render: the workflow is already failed
        try:
            self._loop()
        except KeyboardInterrupt:
            kill_all()  # do not wait for long actions after Ctrl-C
            raise
        finally:
            self._drain()
        return self._finish()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self):
        conductor = self.conductor
        while True:
            try:
                next_tasks = conductor.get_next_tasks()
            except Exception as exc:
                conductor.log_error(exc)
                self._request_failed()
                next_tasks = []
            if next_tasks:
                self._start(next_tasks)
                continue
            if self.inflight or self.buffer:
                self._deliver(self._next_completion())
                continue
            if self.pending_asks and self._answer_one():
                continue
            return

    def _request_failed(self):
        if self.conductor.get_workflow_status() not in statuses.COMPLETED_STATUSES:
            try:
                self.conductor.request_workflow_status(statuses.FAILED)
            except orquesta_exc.InvalidWorkflowStatusTransition:
                pass

    def _start(self, next_tasks):
        conductor = self.conductor
        # st2 marks every action of every next task RUNNING before requesting any of them.
        for task in next_tasks:
            if task["spec"].has_items() and task.get("items_count") == 0:
                conductor.update_task_state(task["id"], task["route"],
                                            events.ActionExecutionEvent(statuses.RUNNING))
            for spec in task["actions"]:
                if spec.get("item_id") is None:
                    event = events.ActionExecutionEvent(statuses.RUNNING)
                else:
                    event = events.TaskItemActionExecutionEvent(spec["item_id"],
                                                                statuses.RUNNING)
                conductor.update_task_state(task["id"], task["route"], event)
        for task in next_tasks:
            self._request_task(task)

    def _request_task(self, task):
        task_id, route = task["id"], task["route"]
        task_spec = task["spec"]
        key = (task_id, route)
        if task_spec.has_items():
            acc = self.items.get(key)
            if acc is None or all(s in statuses.COMPLETED_STATUSES for s in acc["statuses"]):
                count = task.get("items_count") or 0
                self.items[key] = {"results": [None] * count, "statuses": [None] * count}
                self.attempts[key] = self.attempts.get(key, 0) + 1
        else:
            self.attempts[key] = self.attempts.get(key, 0) + 1

        if getattr(task_spec, "action", None) is None:
            self._complete_now(task_id, route, None, "task has no action: succeeded")
            return
        if task_spec.has_items() and task.get("items_count") == 0:
            self._complete_now(task_id, route, "(no items)", "no items: succeeded")
            return
        delay = task.get("delay") or 0
        concurrency = task.get("concurrency")
        for spec in task["actions"]:
            item_id = spec.get("item_id")
            job_delay = delay
            if item_id is not None and delay and concurrency and item_id >= concurrency:
                job_delay = 0  # st2 delays only the first `concurrency` items
            call = TaskCall(self.action.ref, task_id, route, item_id, spec.get("action"),
                            spec.get("input") or {}, self.attempts[key],
                            self.path_prefix + task_id)
            self._launch(_Job(call, job_delay, self.seq))
            self.seq += 1

    def _complete_now(self, task_id, route, action, note):
        now = self.ctx.elapsed()
        self.conductor.update_task_state(task_id, route,
                                         events.ActionExecutionEvent(statuses.SUCCEEDED))
        self.tasks.append({"id": task_id, "route": route, "item_id": None, "action": action,
                           "status": statuses.SUCCEEDED, "task_status": statuses.SUCCEEDED,
                           "start": round(now, 3), "duration": 0.0, "result": None})
        self.ctx.progress(now, self.path_prefix + task_id, None, action or "-", note, 0.0)

    def _launch(self, job):
        self.inflight[id(job)] = job
        thread = threading.Thread(target=self._work, args=(job,), daemon=True,
                                  name="st2local-%s" % job.call.path)
        thread.start()

    def _work(self, job):
        try:
            if job.delay:
                time.sleep(job.delay)
            job.start = self.ctx.elapsed()
            job.execution = self.ctx.execute_task(job.call, self)
        except BaseException as exc:  # noqa: B902 - never lose a job: report it as failed
            job.execution = {"status": statuses.FAILED, "duration": 0.0,
                             "result": {"error": "%s: %s" % (type(exc).__name__, exc),
                                        "traceback": traceback.format_exc()}}
            if job.start is None:
                job.start = self.ctx.elapsed()
        finally:
            self.done.put(job)

    def _next_completion(self):
        if self.ctx.completion_rank is None:
            if self.buffer:
                return self.buffer.pop(0)
            job = self.done.get()
            self.inflight.pop(id(job), None)
            return job
        while self.inflight:
            job = self.done.get()
            self.inflight.pop(id(job), None)
            self.buffer.append(job)
        best = min(self.buffer, key=lambda j: (self.ctx.completion_rank(j.call), j.seq))
        self.buffer.remove(best)
        return best

    def _drain(self):
        """On an unexpected error, do not leave threads feeding a dead loop: wait for them."""
        while self.inflight:
            job = self.done.get()
            self.inflight.pop(id(job), None)

    # -- feeding results back -------------------------------------------------------------------

    def _event(self, call, status, result):
        key = (call.task_id, call.route)
        if call.item_id is None:
            return events.ActionExecutionEvent(status, result=result)
        acc = self.items[key]
        if status in statuses.COMPLETED_STATUSES:
            acc["results"][call.item_id] = result
        acc["statuses"][call.item_id] = status
        return events.TaskItemActionExecutionEvent(call.item_id, status, result=result,
                                                   accumulated_result=list(acc["results"]))

    def _deliver(self, job):
        call, execution = job.call, job.execution
        status, result = execution["status"], execution.get("result")
        record = {"id": call.task_id, "route": call.route, "item_id": call.item_id,
                  "action": call.action, "status": status, "start": round(job.start, 3),
                  "duration": round(execution.get("duration") or 0.0, 3), "result": result}
        if execution.get("tasks") is not None:
            record["tasks"] = execution["tasks"]
        if execution.get("error_kind") == "request":
            # st2: a task whose action cannot be requested (bad parameters, unknown action)
            # fails, and the workflow fails with the error (fail_workflow_execution).
            self._update(call, statuses.FAILED, result)
            self.conductor.log_entry("error", result["errors"][0]["message"],
                                     task_id=call.task_id, route=call.route)
            self._request_failed()
            self._record(record, job)
            return
        if status == statuses.PENDING:
            self._update(call, statuses.PENDING, None)
            self.pending_asks.append((job, record))
            self.ctx.progress(job.start, call.path, call.item_id, call.action,
                              "pending (inquiry: waiting for an answer)", None)
            return
        self._update(call, status, result)
        self._record(record, job)

    def _record(self, record, job):
        entry = self.conductor.get_task_state_entry(job.call.task_id, job.call.route)
        record["task_status"] = (entry or {}).get("status")  # the task as orquesta sees it
        self.tasks.append(record)
        self.ctx.progress(job.start, job.call.path, job.call.item_id, job.call.action,
                          record["status"], record["duration"])

    def _update(self, call, status, result):
        try:
            self.conductor.update_task_state(call.task_id, call.route,
                                             self._event(call, status, result))
        except Exception as exc:
            self.conductor.log_error(exc, task_id=call.task_id, route=call.route)
            self._request_failed()

    # -- inquiries ------------------------------------------------------------------------------

    def _answer_one(self):
        job, record = self.pending_asks[0]
        answer = self.ctx.answer_for(job.call.task_id)
        if answer is None:
            return False
        self.pending_asks.pop(0)
        call = job.call
        ask_result = dict(job.execution.get("result") or {})
        wf_status = self.conductor.get_workflow_status()
        paused = wf_status in (statuses.PAUSING, statuses.PAUSED)
        if answer == "timeout":
            # st2's inquiry garbage collector: time the inquiry out, then resume the workflow.
            status, result = statuses.EXPIRED, ask_result
            self._update(call, status, result)
            if self.conductor.get_workflow_status() in (statuses.PAUSING, statuses.PAUSED):
                self._resume()
        else:
            try:
                response = self.ctx.response_for(answer, ask_result.get("schema"))
            except Exception as exc:  # st2 would refuse the response: nothing can resume
                self.conductor.log_entry("error", str(exc), task_id=call.task_id,
                                         route=call.route)
                self._request_failed()
                record.update(status="failed", result={"error": str(exc)},
                              duration=round(self.ctx.elapsed() - job.start, 3))
                self._record(record, job)
                return True
            # st2's inquiry respond(): resume the parent workflow first, then succeed the task.
            if paused:
                self._resume()
            status = statuses.SUCCEEDED
            result = dict(ask_result, response=response)
            self._update(call, status, result)
        record.update(status=status, result=result,
                      duration=round(self.ctx.elapsed() - job.start, 3))
        record["answer"] = answer
        self._record(record, job)
        return True

    def _resume(self):
        try:
            self.conductor.request_workflow_status(statuses.RESUMING)
        except orquesta_exc.InvalidWorkflowStatusTransition as exc:
            self.conductor.log_error(exc)

    # -- the end --------------------------------------------------------------------------------

    def _finish(self):
        conductor = self.conductor
        for job, record in self.pending_asks:  # unanswered: the workflow stays paused
            record["duration"] = round(self.ctx.elapsed() - job.start, 3)
            entry = conductor.get_task_state_entry(job.call.task_id, job.call.route)
            record["task_status"] = (entry or {}).get("status")
            self.tasks.append(record)
        status = conductor.get_workflow_status()
        if status in statuses.RUNNING_STATUSES:
            conductor.log_entry(
                "error", "st2local: the workflow is still %s but no task is running or ready; "
                "orquesta 1.2.0 stalls like this (e.g. with-items concurrency 0, where st2 uses "
                "1). Stopped and reported as failed." % status)
            self._request_failed()
            status = conductor.get_workflow_status()
        if status in statuses.COMPLETED_STATUSES:
            conductor.render_workflow_output()
            status = conductor.get_workflow_status()
        result = {"output": conductor.get_workflow_output() or None}
        if status in statuses.ABENDED_STATUSES:
            result["errors"] = conductor.errors
        return status, result, self.tasks
