"""The python-script runner: one process per action execution, as st2's python runner
(../shared/reference/stackstorm.md §4).

run_python_action() starts `<this interpreter> -u action_wrapper.py` with
PYTHONPATH = <pack>/actions/lib (+ tests/st2_standins when st2common is not importable), writes
the request (parameters and pack config included) to the child's STDIN, waits up to the
`timeout` runner parameter, and turns what came back into st2's execution result:
    {"result": ..., "stdout": "...", "stderr": "...", "exit_code": N}   (+ "error" on timeout)
Status: exit 0 and no (False, ...) -> succeeded; (False, x) or non-zero exit -> failed; killed
at the timeout -> "timeout"; exit 220 (run() returned a 2-tuple without a bool) -> failed with
{"error": <stderr>, "traceback": ...}, as st2's container records the runner's ValueError.
"""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import traceback

from .action_wrapper import INVALID_STATUS_EXIT_CODE, RESULT_DELIMITER

HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPER = os.path.join(HERE, "action_wrapper.py")
REPO = os.path.dirname(os.path.dirname(HERE))
STANDINS = os.path.join(REPO, "tests", "st2_standins")
BLACKLISTED_ENV = {"pythonpath"}  # st2 drops these from the `env` runner parameter

_REAL_ST2 = None
_RUNNING = set()  # the action processes of this run, for kill_all() on Ctrl-C
_RUNNING_LOCK = threading.Lock()


def real_st2_importable():
    """Is the real st2common importable by this interpreter (stand-ins not counted)?"""
    global _REAL_ST2
    if _REAL_ST2 is None:
        try:
            spec = importlib.util.find_spec("st2common")
        except (ImportError, ValueError):
            spec = None
        origin = getattr(spec, "origin", None) or ""
        locations = list(getattr(spec, "submodule_search_locations", None) or [])
        paths = [origin] + locations
        _REAL_ST2 = bool(spec) and not any(
            p and os.path.abspath(p).startswith(STANDINS + os.sep) for p in paths)
    return _REAL_ST2


def action_pythonpath(pack):
    paths = [os.path.join(pack.path, "actions", "lib")]
    if not real_st2_importable():
        paths.append(STANDINS)
    return os.pathsep.join(paths)


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def kill_all():
    """Kill every action process still running (the CLI calls this on Ctrl-C)."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        _kill_group(proc)


def parse_output(exit_code, stdout, stderr, timed_out, timeout):
    """st2's PythonRunner._get_output_values and _get_final_status."""
    if exit_code == INVALID_STATUS_EXIT_CODE:
        try:
            raise ValueError(stderr)
        except ValueError as exc:
            return "failed", {"error": str(exc), "traceback": traceback.format_exc()}
    action_result = None
    if RESULT_DELIMITER in stdout:
        parts = stdout.split(RESULT_DELIMITER)
        if len(parts) == 3:
            action_result = parts[1].strip()
            tail = parts[2][1:] if parts[2].startswith("\n") else parts[2]
            stdout = parts[0] + tail
    status_flag = None
    if action_result:
        try:
            decoded = json.loads(action_result)
        except ValueError:
            decoded = action_result
        if isinstance(decoded, dict):
            result = decoded.get("result")
            status_flag = decoded.get("status")
        else:
            result = decoded
    else:
        result = "None"
    output = {"stdout": stdout, "stderr": stderr, "exit_code": exit_code, "result": result}
    if timed_out:
        output["error"] = "Action failed to complete in %s seconds" % timeout
        return "timeout", output
    if exit_code == 0 and status_flag is not False:
        return "succeeded", output
    return "failed", output


def run_python_action(pack, action, runner_params, params, config=None, user="stanley",
                      datastore_path=None, execution_id=None, python=None):
    """Run one python-script action in its own process; returns (status, execution_result)."""
    file_path = pack.entry_point_path(action)
    timeout = runner_params.get("timeout")
    if timeout is None:
        timeout = action.default_timeout() or 600
    env = dict(os.environ)
    for key, value in (runner_params.get("env") or {}).items():
        if key.lower() not in BLACKLISTED_ENV:
            env[str(key)] = str(value)
    env["PYTHONPATH"] = action_pythonpath(pack)
    env["ST2_ACTION_PACK_NAME"] = action.pack_name
    env["ST2_ACTION_EXECUTION_ID"] = execution_id or ""
    if datastore_path:
        env["ST2LOCAL_DATASTORE"] = datastore_path
    request = {
        "pack": action.pack_name,
        "file_path": file_path,
        "parameters": params,
        "config": config or {},
        "user": user,
        "log_level": runner_params.get("log_level") or "DEBUG",
        "datastore_path": datastore_path,
    }
    proc = subprocess.Popen(
        [python or sys.executable, "-u", WRAPPER], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=pack.path,
        start_new_session=True)
    timed_out = False
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        out, err = proc.communicate(json.dumps(request).encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    return parse_output(proc.returncode, out.decode("utf-8", "replace"),
                        err.decode("utf-8", "replace"), timed_out, timeout)
