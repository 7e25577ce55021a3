"""st2-run <pack>.<action> [key=value ...] [--config FILE] [--answer ANSWER]... [--json]
[--datastore FILE] [--user NAME] [--pack DIR] [--quiet] (python -m st2local; see README.md).
Exit 0 when the execution succeeded, 1 otherwise, 2 for a usage error."""
import argparse
import json
import os
import sys

from . import run_action
from .pack import PackError
from .runner import kill_all


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="st2-run", description="Run one action locally.")
    parser.add_argument("ref", help="<pack>.<action>, or just <action>")
    parser.add_argument("params", nargs="*", metavar="key=value")
    parser.add_argument("--config", help="pack config YAML (schema defaults are applied)")
    parser.add_argument("--answer", action="append", default=[], help="approve|reject|timeout|JSON")
    parser.add_argument("--json", action="store_true", help="print the execution as JSON")
    parser.add_argument("--datastore", help="the key file (default: $ST2LOCAL_DATASTORE)")
    parser.add_argument("--user", default=os.environ.get("ST2LOCAL_USER", "stanley"))
    parser.add_argument("--pack", default=os.environ.get("ST2LOCAL_PACK", os.getcwd()))
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser.parse_intermixed_args(argv)  # key=value may come after the options


def summary(execution, tasks=None, prefix=""):
    lines = [] if tasks else ["status: %s (%.1f s), id %s, action %s" % (
        execution["status"], execution.get("duration") or 0.0, execution.get("id"),
        execution["action"]), "parameters: %s" % json.dumps(execution.get("parameters")),
        "result: " + json.dumps(execution.get("result"), indent=2, default=str)]
    for t in tasks or execution.get("tasks") or []:
        name = prefix + t["id"] + ("" if t.get("item_id") is None else "[%s]" % t["item_id"])
        lines.append("  %6.1fs %6.1fs  %-10s %s -> %s" % (
            t["start"], t["duration"], t["status"], name, t.get("action") or "-"))
        lines += summary(execution, t.get("tasks"), name + "/") if t.get("tasks") else []
    if execution["status"] == "paused" and not tasks:
        lines.append("The workflow is waiting on an inquiry (core.ask): run again with "
                     "--answer approve|reject|timeout.")
    return lines


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not all("=" in item for item in args.params):
        sys.stderr.write("st2-run: parameters are key=value, got %s\n" % args.params)
        return 2
    answers = dict(a.split("=", 1) if a.partition("=")[1] and a.split("=")[0].isidentifier()
                   else ("*", a) for a in args.answer)  # TASK=ANSWER, or ANSWER for all
    try:
        execution = run_action(args.pack, args.ref, dict(p.split("=", 1) for p in args.params),
                               from_cli=True, config=args.config, answers=answers,
                               datastore_path=args.datastore, user=args.user,
                               progress=None if args.quiet else sys.stderr)
    except PackError as exc:
        sys.stderr.write("st2-run: %s\n" % exc)
        return 1
    except KeyboardInterrupt:
        kill_all()
        sys.stderr.write("st2-run: interrupted\n")
        return 130
    text = json.dumps(execution, indent=2, sort_keys=True, default=str) if args.json \
        else "\n".join(summary(execution))
    sys.stdout.write(text + "\n")
    return 0 if execution["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
