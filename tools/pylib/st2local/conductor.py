"""Conducts a workflow with the orquesta st2 3.9 pins (5ba1467, 1.6.0+) as st2's workflow
engine drives it (st2common/services/workflows.py): orquesta loads the definition (duplicate
keys refused), st2's wf_svc.inspect checks it; REQUESTED, RUNNING; then get_next_tasks, every
action marked RUNNING, each run in a thread, each outcome fed back with the WHOLE execution
result. HOME-MADE (st2 does it through MongoDB, its scheduler and runners): this loop, the
threads, core.ask answers (approve/reject: resume, then succeed; timeout: expire, then resume;
none: the run ends paused) and completion_order (wait for every running action, then feed back
the lowest-ranked outcome)."""
import contextlib
import queue
import threading
import time
import traceback
import types

from orquesta import conducting, events, statuses
from orquesta import exceptions as orquesta_exc
from orquesta.specs import native as native_specs
from st2common.services import workflows as wf_svc

from .runner import RequestError, kill_all, new_id


def TaskCall(workflow, task_id, route, item_id, action, params, attempt, path):
    """One action call (for scripted executors, completion_order keys): item_id None unless
    with-items, params the rendered input, attempt 1, 2 after a retry, path "parent/task"."""
    return types.SimpleNamespace(workflow=workflow, task_id=task_id, route=route, path=path,
                                 item_id=item_id, action=action, params=params, attempt=attempt)


def _job(call, delay, seq):
    return types.SimpleNamespace(call=call, delay=delay, seq=seq, execution=None, start=None)


def _name(call):
    return call.path if call.item_id is None else "%s[%s]" % (call.path, call.item_id)


def _try(call, *args):
    with contextlib.suppress(orquesta_exc.InvalidWorkflowStatusTransition):
        call(*args)


class WorkflowRun(object):
    """One workflow execution. run() -> (status, {"output": ..., ["errors": [...]]}, tasks)."""

    def __init__(self, ctx, action, wf_path, inputs, st2_context, path_prefix=""):
        self.ctx, self.action, self.wf_path, self.inputs = ctx, action, wf_path, inputs
        self.st2_context, self.path_prefix, self.conductor = st2_context, path_prefix, None
        self.inflight, self.done, self.buffer, self.seq = {}, queue.Queue(), [], 0
        self.items, self.attempts, self.pending_asks, self.tasks = {}, {}, [], []

    def run(self):
        try:
            with open(self.wf_path) as f:
                spec = native_specs.WorkflowSpec(f.read())
            errors = wf_svc.inspect(spec, self.st2_context, raise_exception=False)
        except Exception as exc:
            errors = [{"type": "error", "message": "%s: %s" % (type(exc).__name__, exc)}]
        if errors:
            return "failed", {"output": None, "errors": errors}, []
        self.conductor = conducting.WorkflowConductor(
            spec, context=self.st2_context, inputs=self.inputs)
        for wanted in (statuses.REQUESTED, statuses.RUNNING):  # fails: inputs did not render
            _try(self.conductor.request_workflow_status, wanted)
        try:
            self._loop()
        except KeyboardInterrupt:
            kill_all()  # do not wait for long actions after Ctrl-C
            raise
        finally:
            self._drain()
        return self._finish()

    def _loop(self):
        while True:
            try:
                next_tasks = self.conductor.get_next_tasks()
            except Exception as exc:
                self.conductor.log_error(exc)
                self._request_failed()
                next_tasks = []
            if next_tasks:
                self._start(next_tasks)
            elif self.inflight or self.buffer:
                self._deliver(self._next_completion())
            elif not (self.pending_asks and self._answer_one()):
                return

    def _request_failed(self):
        if self.conductor.get_workflow_status() not in statuses.COMPLETED_STATUSES:
            _try(self.conductor.request_workflow_status, statuses.FAILED)

    def _start(self, next_tasks):
        conductor = self.conductor
        # st2 marks every action of every next task RUNNING before requesting any of them.
        for task in next_tasks:
            if task["spec"].has_items() and task.get("items_count") == 0:
                conductor.update_task_state(task["id"], task["route"],
                                            events.ActionExecutionEvent(statuses.RUNNING))
            for spec in task["actions"]:
                conductor.update_task_state(task["id"], task["route"], events.ActionExecutionEvent(
                    statuses.RUNNING) if spec.get("item_id") is None else events.
                    TaskItemActionExecutionEvent(spec["item_id"], statuses.RUNNING))
        for task in next_tasks:
            self._request_task(task)

    def _request_task(self, task):
        task_id, route, task_spec = task["id"], task["route"], task["spec"]
        key = (task_id, route)
        acc = self.items.get(key)
        if not task_spec.has_items() or acc is None or all(
                s in statuses.COMPLETED_STATUSES for s in acc["statuses"]):
            count = task.get("items_count") or 0
            self.items[key] = {"results": [None] * count, "statuses": [None] * count}
            self.attempts[key] = self.attempts.get(key, 0) + 1
        if getattr(task_spec, "action", None) is None:
            return self._complete_now(task_id, route, None, "task has no action: succeeded")
        if task_spec.has_items() and task.get("items_count") == 0:
            return self._complete_now(task_id, route, "(no items)", "no items: succeeded")
        delay, concurrency = task.get("delay") or 0, task.get("concurrency")
        for spec in task["actions"]:
            item_id = spec.get("item_id")  # st2 delays only the first `concurrency` items
            job_delay = 0 if item_id and concurrency and item_id >= concurrency else delay
            call = TaskCall(self.action.ref, task_id, route, item_id, spec.get("action"), spec.get(
                "input") or {}, self.attempts[key], self.path_prefix + task_id)
            job = self.inflight[self.seq] = _job(call, job_delay, self.seq)
            threading.Thread(target=self._work, args=(job,), daemon=True).start()
            self.seq += 1

    def _complete_now(self, task_id, route, action, note):
        now, done = self.ctx.elapsed(), statuses.SUCCEEDED
        self.conductor.update_task_state(task_id, route, events.ActionExecutionEvent(done))
        self.tasks.append({"id": task_id, "route": route, "item_id": None, "action": action,
                           "status": done, "task_status": done, "start": round(now, 3),
                           "duration": 0.0, "result": None})
        self.ctx.progress(now, self.path_prefix + task_id, action or "-", note, 0.0)

    def _work(self, job):
        try:
            if job.delay:
                time.sleep(job.delay)
            job.start = self.ctx.elapsed()
            job.execution = self._execute(job.call)
        except BaseException as exc:  # noqa: B902 - never lose a job: report it as failed
            job.execution = {"status": statuses.FAILED, "duration": 0.0, "result": {
                "error": "%s: %s" % (type(exc).__name__, exc), "traceback": traceback.format_exc()}}
            job.start = job.start or self.ctx.elapsed()
        finally:
            self.done.put(job)

    def _execute(self, call):
        """A task's action, with the parent context st2 gives it."""
        st2 = self.st2_context["st2"]
        orquesta = {"workflow_execution_id": st2["workflow_execution_id"], "task_execution_id":
                    new_id(), "task_name": call.task_id, "task_id": call.task_id,
                    "task_route": call.route, "item_id": call.item_id}
        parent = {"execution_id": st2["action_execution_id"], "user": self.ctx.user,
                  "pack": st2["pack"], "orquesta": orquesta}
        try:
            return self.ctx.execute(call.action, call.params, False, call, parent, call.path + "/")
        except RequestError as exc:
            return {"status": "failed", "error_kind": "request", "duration": 0.0, "result": {
                "errors": [{"type": "error", "message": "RequestError: %s" % exc,
                            "task_id": call.task_id, "route": call.route}]}}

    def _next_completion(self):
        rank = self.ctx.completion_rank
        if rank is None and not self.buffer:
            job = self.done.get()
            return self.inflight.pop(job.seq)
        self._drain()
        best = min(self.buffer, key=lambda j: (rank(j.call), j.seq)) if rank else self.buffer[0]
        self.buffer.remove(best)
        return best

    def _drain(self):
        """Wait for every running action (also so that no thread feeds a dead loop)."""
        while self.inflight:
            self.buffer.append(self.inflight.pop(self.done.get().seq))

    def _event(self, call, status, result):
        if call.item_id is None:
            return events.ActionExecutionEvent(status, result=result)
        acc = self.items[(call.task_id, call.route)]
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
        if status == statuses.PENDING:
            self._update(call, statuses.PENDING, None)
            self.pending_asks.append((job, record))
            return self.ctx.progress(job.start, _name(call), call.action,
                                     "pending (inquiry: waiting for an answer)", None)
        self._update(call, statuses.FAILED if execution.get("error_kind") else status, result)
        if execution.get("error_kind"):  # st2: a refused request fails the task and workflow
            self.conductor.log_entry("error", result["errors"][0]["message"],
                                     task_id=call.task_id, route=call.route)
            self._request_failed()
        self._record(record, job)

    def _record(self, record, job, progress=True):
        entry = self.conductor.get_task_state_entry(job.call.task_id, job.call.route)
        record["task_status"] = (entry or {}).get("status")  # the task as orquesta sees it
        self.tasks.append(record)
        if progress:
            self.ctx.progress(job.start, _name(job.call), job.call.action,
                              record["status"], record["duration"])

    def _update(self, call, status, result):
        try:
            self.conductor.update_task_state(call.task_id, call.route,
                                             self._event(call, status, result))
        except Exception as exc:
            self.conductor.log_error(exc, task_id=call.task_id, route=call.route)
            self._request_failed()

    def _answer_one(self):
        job, record = self.pending_asks[0]
        answer = self.ctx.answer_for(job.call.task_id)
        if answer is None:
            return False
        self.pending_asks.pop(0)
        call, ask_result = job.call, dict(job.execution.get("result") or {})
        paused = self.conductor.get_workflow_status() in (statuses.PAUSING, statuses.PAUSED)
        resume = (self.conductor.request_workflow_status, statuses.RESUMING)
        record.update(answer=answer, duration=round(self.ctx.elapsed() - job.start, 3))
        if answer == "timeout":  # st2's inquiry garbage collector: expire, then resume
            status, result = statuses.EXPIRED, ask_result
            self._update(call, status, result)
            if self.conductor.get_workflow_status() in (statuses.PAUSING, statuses.PAUSED):
                _try(*resume)
        else:
            try:
                response = self.ctx.response_for(answer, ask_result.get("schema"))
            except Exception as exc:  # st2 would refuse the response: nothing can resume
                self.conductor.log_entry("error", str(exc), task_id=call.task_id,
                                         route=call.route)
                self._request_failed()
                record.update(status="failed", result={"error": str(exc)})
                return self._record(record, job) or True
            if paused:  # st2's inquiry respond(): resume the workflow, then succeed the task
                _try(*resume)
            status, result = statuses.SUCCEEDED, dict(ask_result, response=response)
            self._update(call, status, result)
        record.update(status=status, result=result)
        return self._record(record, job) or True

    def _finish(self):
        conductor = self.conductor
        for job, record in self.pending_asks:  # unanswered: the workflow stays paused
            record["duration"] = round(self.ctx.elapsed() - job.start, 3)
            self._record(record, job, progress=False)
        if conductor.get_workflow_status() in statuses.COMPLETED_STATUSES:
            conductor.render_workflow_output()
        status = conductor.get_workflow_status()
        result = {"output": conductor.get_workflow_output() or None}
        if status in statuses.ABENDED_STATUSES:
            result["errors"] = conductor.errors
        return status, result, self.tasks
