"""One execution: st2's parameter handling (pack.prepare_parameters), then python-script in its
own process through st2's PythonActionWrapper (launch.py) and PythonRunner's output parsing,
orquesta through conductor.py; HOME-MADE: core.ask/noop/echo (runners not installed) and the
execution record (MongoDB in st2), its parameters masked by st2common.util.secrets."""
import contextlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from python_runner.python_runner import PythonRunner
from st2common.util import schema as util_schema
from st2common.util.secrets import get_secret_parameters, mask_secret_parameters

from . import pack as pack_mod
from .keys import KeyServer, default_path

SCRIPTED = ("succeeded", "failed", "timeout", "abandoned", "canceled", "pending")
_RUNNING = set()  # action processes, for kill_all() on Ctrl-C


class RequestError(Exception):
    """st2 would refuse to create this execution (unknown action, bad parameters)."""


def new_id():
    return os.urandom(12).hex()  # the shape of st2's (MongoDB) ids


def kill_all(procs=None):
    """Kill the process groups of these action processes (default: every running one)."""
    for proc in list(_RUNNING if procs is None else procs):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def make_rank(order):
    """completion_order (names, "*" = the others) -> key(TaskCall), or None."""
    if order is None or callable(order):
        return order
    order = list(order) + ([] if "*" in order else ["*"])
    return lambda call: next((order.index(n) for n in (["%s[%s]" % (n, call.item_id) for n in (
        call.path, call.task_id)] if call.item_id is not None else []) + [call.path, call.task_id]
        if n in order), order.index("*"))


class RunContext(object):
    """Everything one local run shares, nested workflows included."""

    def __init__(self, pack, config=None, answer=None, answers=None, executors=None,
                 completion_order=None, datastore_path=None, user="stanley",
                 progress=sys.stderr):
        self.pack = pack if isinstance(pack, pack_mod.Pack) else pack_mod.Pack(pack)
        self.keys = KeyServer(datastore_path or default_path(self.pack.name), user)
        self.user, self.config = user, self.pack.load_config(config, self.keys.store)
        self.answers = dict({"*": answer}, **(answers or {}))
        self.executors, self.completion_rank = dict(executors or {}), make_rank(completion_order)
        self._progress, self._lock, self._sequences = progress, threading.Lock(), {}
        self.t0, self.tmp = time.monotonic(), None
        pack_mod.use(self)

    def __enter__(self):
        self.tmp = tempfile.mkdtemp(prefix="st2local-")
        self.keys.start()  # an API the caller names in the environment wins (real st2, a test's)
        api = os.environ.get("ST2_ACTION_API_URL") or self.keys.url
        self.api = (api, os.environ.get("ST2_ACTION_AUTH_TOKEN") or self.keys.token)
        with open(os.path.join(self.tmp, "st2.conf"), "w") as f:  # the action's parent args
            f.write("[auth]\napi_url = %s\n[system_user]\nuser = %s\n" % (
                api.rsplit("/v1", 1)[0], self.user))
        return self

    def __exit__(self, *exc):
        self.keys.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def elapsed(self):
        return time.monotonic() - self.t0

    def progress(self, start, name, action, status, duration, kind="task"):
        if self._progress is not None:
            what = "%s %s -> %s" % (kind, name, action) if name else "%s %s" % (kind, action)
            tail = "" if duration is None else " (%.1f s)" % duration
            with self._lock:
                self._progress.write("[%5.1fs] %s ... %s%s\n" % (start, what, status, tail))
                self._progress.flush()

    def answer_for(self, task_id):
        return self.answers.get(task_id, self.answers["*"])

    def response_for(self, answer, schema):
        """An inquiry answer -> the response, checked against the inquiry's schema as st2's
        inquiry API does (st2common.util.schema)."""
        response = {"approved": answer == "approve"} if answer in ("approve", "reject") else \
            answer if isinstance(answer, dict) else json.loads(answer)  # ValueError: not JSON
        try:
            return util_schema.validate(response, schema or {}, util_schema.get_validator())
        except Exception as exc:
            raise ValueError("the inquiry response %s does not pass the inquiry's schema (st2 "
                             "would refuse it): %s" % (json.dumps(response), exc))

    def execute(self, ref, given=None, live=False, call=None, parent=None, path_prefix=""):
        """One execution (see the module docstring); RequestError if st2 would refuse it."""
        start, scripted = self.elapsed(), ref in self.executors
        action, runner_params, params = None, {}, dict(given or {})
        try:
            action = self.pack.get_action(ref)
            if not action.enabled:
                raise RequestError('Unable to execute. Action "%s" is disabled.' % ref)
            runner_params, params = pack_mod.prepare_parameters(
                self.pack, action, given, live, {"pack": action.pack, "user": self.user})
        except pack_mod.PackError as exc:
            if not scripted or action is not None:
                raise RequestError(str(exc))
        shown = params if action is None else mask_secret_parameters(params, get_secret_parameters(
            dict(self.pack.runner_type(action).runner_parameters, **action.parameters)))
        execution = {"id": new_id(), "action": ref, "parameters": shown,
                     "runner_type": action.runner_type["name"] if action else "scripted",
                     "start": round(start, 3)}
        try:
            status, result = self._scripted(ref, params, call) if scripted else self._run(
                action, runner_params, params, execution, parent, path_prefix)
        except Exception as exc:  # st2's runner container fails the execution
            status, result = "failed", {"error": "%s: %s" % (type(exc).__name__, exc),
                                        "traceback": traceback.format_exc()}
        execution.update(status=status, result=result,
                         duration=round(self.elapsed() - start, 3))
        return execution

    def _scripted(self, ref, params, call):
        spec = self.executors[ref]
        if isinstance(spec, list):
            with self._lock:
                index = self._sequences[ref] = self._sequences.get(ref, -1) + 1
            spec = spec[min(index, len(spec) - 1)]
        if callable(spec):
            positional = [p for p in inspect.signature(spec).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            spec = spec(params, call) if len(positional) >= 2 else spec(params)
        if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0] in SCRIPTED):
            raise ValueError("scripted executor for %s must return (status, result) with "
                             "status one of %s, got %r" % (ref, SCRIPTED, spec))
        return spec

    def _run(self, action, runner_params, params, execution, parent, path_prefix):
        runner = action.runner_type["name"]
        if runner == "python-script":
            return self.run_python(action, runner_params, params, execution["id"])
        if runner == "orquesta":
            return self.run_workflow(action, params, execution, parent, path_prefix)
        if runner in ("noop", "local-shell-cmd"):  # core.noop, core.echo
            return "succeeded", dict({"failed": False, "succeeded": True, "return_code": 0}, **(
                {} if runner == "noop" else {"stdout": str(params["message"]), "stderr": ""}))
        result = {k: runner_params.get(k) for k in ("schema", "roles", "users", "route", "ttl")}
        answer = self.answer_for(action.name)
        if parent is not None or answer is None:  # inquirer: in a workflow the conductor answers
            return "pending", result
        if answer == "timeout":
            return "timeout", result
        return "succeeded", dict(result, response=self.response_for(answer, result["schema"]))

    def run_python(self, action, runner_params, params, execution_id):
        """st2's python runner: the wrapper in its own process (pack venv interpreter, PYTHONPATH
        <pack>/actions/lib + the parent's), killed with its group at `timeout`."""
        timeout = runner_params.get("timeout") or 600
        env = dict(os.environ, **{str(k): str(v) for k, v in (runner_params.get("env") or {})
                                  .items() if k.lower() != "pythonpath"})
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(self.pack.path, "actions", "lib")] + [
            p for p in [os.environ.get("PYTHONPATH")] if p])
        env.update(ST2_ACTION_PACK_NAME=action.pack, ST2_ACTION_EXECUTION_ID=execution_id,
                   ST2_ACTION_API_URL=self.api[0], ST2_ACTION_AUTH_TOKEN=self.api[1])
        request = {"pack": action.pack, "file_path": self.pack.entry_point_path(action),
                   "parameters": params, "config": self.config, "user": self.user,
                   "log_level": runner_params.get("log_level"),
                   "parent_args": ["--config-file", os.path.join(self.tmp, "st2.conf")]}
        proc = subprocess.Popen([sys.executable, "-u", "-m", "st2local.launch"], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=self.tmp, start_new_session=True)
        _RUNNING.add(proc)
        timed_out = False
        try:
            out, err = proc.communicate(json.dumps(request).encode("utf-8"), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_all([proc])
            out, err = proc.communicate()
        finally:
            if proc.returncode is None:  # interrupted
                kill_all([proc])
            _RUNNING.discard(proc)
        runner = PythonRunner(execution_id)  # st2's parsing of the output, and the status
        runner._timeout = timeout
        return runner._get_output_values(proc.returncode, out.decode("utf-8", "replace"),
                                         err.decode("utf-8", "replace"), timed_out)[:2]

    def run_workflow(self, action, params, execution, parent, path_prefix):
        from .conductor import WorkflowRun
        st2 = {"action_execution_id": execution["id"], "workflow_execution_id": new_id(),
               "user": self.user, "pack": action.pack, "action": action.ref, "runner": "orquesta"}
        status, result, execution["tasks"] = WorkflowRun(
            self, action, self.pack.entry_point_path(action), params, dict(
                {"st2": st2}, **({"parent": parent} if parent else {})), path_prefix).run()
        return status, result


def run_action(pack, ref, parameters=None, from_cli=False, config=None, answer=None,
               answers=None, executors=None, completion_order=None, datastore_path=None,
               user="stanley", progress=sys.stderr, _ctx=None, _kind="action"):
    """Run one action as `st2 run` does (the API renders and casts the parameters first, so
    CLI strings become the declared types either way; from_cli is kept for callers)."""
    ctx = _ctx or RunContext(pack, config, answer, answers, executors, completion_order,
                             datastore_path, user, progress)
    ref = ref if "." in ref else "%s.%s" % (ctx.pack.name, ref)
    with ctx:
        try:
            execution = ctx.execute(ref, parameters, live=_kind == "action")
        except RequestError as exc:
            execution = {"id": None, "action": ref, "runner_type": None, "status": "failed",
                         "parameters": {}, "result": {"error": str(exc)}, "start": 0.0,
                         "duration": round(ctx.elapsed(), 3)}
    ctx.progress(0.0, None, ref, execution["status"], execution["duration"], kind=_kind)
    return execution


def conduct_workflow(pack, workflow_path, inputs=None, action_ref=None, **options):
    """A workflow file without action metadata, registered on the fly with untyped inputs."""
    ctx = RunContext(pack, **options)
    ref = action_ref or "%s.%s" % (ctx.pack.name, os.path.basename(workflow_path).split(".")[0])
    ctx.pack._actions[ref] = pack_mod.ActionAPI.to_model(pack_mod.ActionAPI(
        name=ref.split(".", 1)[1], pack=ref.split(".", 1)[0], runner_type="orquesta",
        entry_point=os.path.abspath(workflow_path), parameters={k: {} for k in inputs or {}}))
    return run_action(pack, ref, inputs, _ctx=ctx, _kind="workflow")
