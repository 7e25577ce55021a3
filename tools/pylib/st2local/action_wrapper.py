"""Runs ONE python-script action in its own process, the way st2's python_action_wrapper.py does
(../shared/reference/stackstorm.md §4). Started by st2local/python_runner.py as
`<python> -u action_wrapper.py` with PYTHONPATH = <pack>/actions/lib [: tests/st2_standins].

Input, one JSON document on STDIN (never on the command line: no secret may show in `ps`):
  {"pack", "file_path", "parameters", "config", "user", "log_level", "datastore_path"}
Behaviour (st2's loader and wrapper):
- the action file's directory is appended to sys.path; the module is executed through
  importlib.util.spec_from_file_location (not put in sys.modules);
- the classes DEFINED in that module (imported ones excluded) that have `run` are kept; the
  alphabetically first is used; none -> exception;
- `cls(config=config, action_service=service)`, or `cls(config=config)` when the constructor
  rejects `action_service` (then the service is set as an attribute);
- `run(**parameters)`: `(bool, result)` -> status from the bool; a 2-tuple whose first item is
  not a bool -> message on stderr and exit 220; anything else is the result;
- the result goes to stdout between two RESULT_DELIMITER lines as JSON
  `{"result": ..., "status": true|false|null}` (values JSON cannot hold are str()-ed);
- an exception propagates: traceback on stderr, exit code 1.
"""
import importlib.util
import inspect
import json
import os
import sys

RESULT_DELIMITER = "%%%%%%%%%%%%%%%%%%%% st2local action result %%%%%%%%%%%%%%%%%%%%"
INVALID_STATUS_EXIT_CODE = 220  # st2: PYTHON_RUNNER_INVALID_ACTION_STATUS_EXIT_CODE

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_datastore_module():
    """tools/st2local/datastore.py by path, under a private name: the action's own sys.path
    must not gain tools/st2local (its module names would shadow the pack's)."""
    spec = importlib.util.spec_from_file_location(
        "_st2local_datastore", os.path.join(_HERE, "datastore.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_action_classes(file_path):
    """st2's register_plugin(Action, file_path): the classes defined in the file with `run`,
    alphabetically (inspect.getmembers order)."""
    action_dir = os.path.dirname(os.path.realpath(file_path))
    if action_dir not in sys.path:
        sys.path.append(action_dir)
    module_name = os.path.basename(file_path)
    if module_name.endswith(".py"):
        module_name = module_name[:-3]
    spec = importlib.util.spec_from_file_location(module_name, file_path)
    if spec is None:
        return []
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__:
            continue
        if not callable(getattr(cls, "run", None)):
            sys.stderr.write('Class "%s" doesn\'t implement required "run" method from the base '
                             "class\n" % cls.__name__)
            continue
        classes.append(cls)
    return classes


def make_instance(cls, config, action_service):
    """st2's get_action_class_instance: action_service when the constructor takes it."""
    try:
        return cls(config=config, action_service=action_service)
    except TypeError as exc:
        if "action_service" not in str(exc):
            raise
        instance = cls(config=config)
        instance.action_service = action_service
        return instance


def _serialise(output):
    try:
        return json.dumps(output)
    except (TypeError, ValueError):
        return json.dumps(output, default=str)


def main():
    if sys.path and os.path.abspath(sys.path[0] or os.getcwd()) == _HERE:
        del sys.path[0]
    request = json.loads(sys.stdin.read() or "{}")
    file_path = request["file_path"]

    classes = load_action_classes(file_path)
    if not classes:
        raise Exception('File "%s" has no action class or the file doesn\'t exist.' % file_path)
    cls = classes[0]

    ds = _load_datastore_module()
    wrapper_info = ds.ActionWrapperInfo(
        pack=request.get("pack"), class_name=cls.__name__,
        log_level=request.get("log_level") or "debug", file_path=file_path,
        user=request.get("user") or "stanley")
    service = ds.ActionService(wrapper_info, ds.Datastore(request.get("datastore_path")))
    action = make_instance(cls, request.get("config") or {}, service)

    output = action.run(**(request.get("parameters") or {}))

    status = None
    result = output
    if isinstance(output, tuple) and len(output) == 2:
        status, result = output
        if not isinstance(status, bool):
            sys.stderr.write("Status returned from the action run() method must either be True "
                             "or False, got: %s\n" % (status,))
            sys.stderr.flush()
            sys.exit(INVALID_STATUS_EXIT_CODE)
        try:
            json.dumps(result)
        except (TypeError, ValueError):
            result = str(result)

    text = _serialise({"result": result, "status": status})
    sys.stdout.flush()
    sys.stdout.write(RESULT_DELIMITER + "\n" + text + "\n" + RESULT_DELIMITER + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
