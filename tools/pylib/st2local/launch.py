"""The action process (python -m st2local.launch): {pack, file_path, parameters, config, user,
parent_args, log_level} as JSON on stdin (st2 puts the config on the command line, where `ps`
shows it) handed to st2's own python_runner.python_action_wrapper.PythonActionWrapper."""
import json
import sys

from python_runner.python_action_wrapper import PythonActionWrapper


def main():
    request = json.loads(sys.stdin.read())
    PythonActionWrapper(pack=request["pack"], file_path=request["file_path"],
                        config=request.get("config") or {},
                        parameters=request.get("parameters") or {}, user=request.get("user"),
                        parent_args=request.get("parent_args") or [],
                        log_level=request.get("log_level") or "DEBUG").run()


if __name__ == "__main__":
    main()
