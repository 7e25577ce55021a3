"""The action process: `python -m st2local.launch`, run by st2local.runner with the pack venv's
interpreter, PYTHONPATH <pack>/actions/lib as st2 puts it, and the ST2_ACTION_* environment.
It reads {"pack", "file_path", "parameters", "config", "user", "parent_args", "log_level"} as
JSON on stdin (st2's runner puts the config on the wrapper's command line as --config=<json>,
where `ps` shows it; the parameters go on stdin there too when they are large) and hands them to
st2's own python_runner.python_action_wrapper.PythonActionWrapper, which loads the action class,
gives it st2's ActionService, runs it and prints the result between st2's delimiters."""
import json
import sys

from python_runner.python_action_wrapper import PythonActionWrapper


def main():
    request = json.loads(sys.stdin.read())
    config = request.get("config") or {}
    if not isinstance(config, dict):
        raise TypeError("Pack config needs to be a dictionary (was %s)." % type(config))
    PythonActionWrapper(pack=request["pack"], file_path=request["file_path"], config=config,
                        parameters=request.get("parameters") or {}, user=request.get("user"),
                        parent_args=request.get("parent_args") or [],
                        log_level=request.get("log_level") or "DEBUG").run()


if __name__ == "__main__":
    main()
