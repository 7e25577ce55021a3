"""What tools/demo prints of the JSON it gets from the lab and from tools/st2-run, as a tool
does: a clear message and exit 1 on anything unexpected, never a traceback.

    demo_output.py ids JSON_LINE         -> "SERVER_ID VOLUME_ID" of `lab/cloud server`'s line
    demo_output.py detached SHOW_JSON    -> whether `lab/cloud show`'s three views agree that the
                                            volume is detached (exit 1 if they do not)
    demo_output.py report FILE [--dry-run]
        -> the remedy's report text (tools/st2-run --json); on a failed run the failed step,
           its evidence and what to do next, and exit 1
"""
import json
import sys

NEXT_RUNNER = ("next: run the same tools/st2-run command without --json to see each task; "
               "tools/make-venvs rebuilds the environments if an import failed")


class DemoError(Exception):
    pass


def _load(text, what):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DemoError("%s is not JSON (%s): %r" % (what, exc, text[:300]))


def ids(line):
    info = _load(line, "lab/cloud's output")
    try:
        return "%s %s" % (info["server_id"], info["volume_ids"][0])
    except (KeyError, IndexError, TypeError):
        raise DemoError("lab/cloud's output has no server_id/volume_ids: %r" % line[:300])


def detached(show_json):
    """(text, ok): do Nova, Cinder and the hypervisor all say the volume is off the server?"""
    views = _load(show_json, "lab/cloud show's output")
    try:
        nova, cinder, hyp = views["nova"], views["cinder"], views["hypervisor"]
        disks = sorted(set(hyp["live"] + hyp["config"]))
        records = len(cinder["attachments"])
        says = {"nova": "attached (%s)" % nova if nova else "no attachment",
                "cinder": "%s, %d attachment record(s)" % (cinder["status"], records),
                "hypervisor": "disk %s" % ", ".join(disks) if disks else "no disk"}
        ok = not nova and cinder["status"] == "available" and not records and not disks
    except (KeyError, TypeError):
        raise DemoError("lab/cloud show's output lacks the three views: %r" % show_json[:300])
    head = ("the three views agree: the volume is detached" if ok else
            "the three views do NOT agree that the volume is detached")
    return "%s (Nova: %s; Cinder: %s; hypervisor: %s)" % (
        head, says["nova"], says["cinder"], says["hypervisor"]), ok


def _runner_errors(result):
    lines = []
    for error in result.get("errors") or []:
        if isinstance(error, dict):
            where = error.get("task_id") or error.get("type") or "workflow"
            lines.append("  %s: %s" % (where, error.get("message") or error))
        else:
            lines.append("  %s" % error)
    return lines


def report(path, dry_run=False):
    """(text, ok) for one execution of dangling_volume.remedy."""
    try:
        with open(path) as f:
            execution = _load(f.read(), path)
    except OSError as exc:
        raise DemoError("cannot read %s: %s" % (path, exc))
    if not isinstance(execution, dict):
        raise DemoError("%s holds no execution" % path)
    status = execution.get("status")
    result = execution.get("result") if isinstance(execution.get("result"), dict) else {}
    output = result.get("output") if isinstance(result.get("output"), dict) else {}
    rep = output.get("report") if isinstance(output.get("report"), dict) else None
    lines = []
    if rep and rep.get("text"):
        lines.append(rep["text"])
    if status == "succeeded" and rep is not None:
        if dry_run and not rep.get("dry_run"):
            return "\n".join(lines + ["unexpected: a dry run that was not one"]), False
        return "\n".join(lines), True
    lines.append("dangling_volume.remedy ended %s" % (status or "without a status"))
    if rep is None:
        lines.append("the workflow produced no report; the runner said:")
        lines.extend(_runner_errors(result) or ["  %s" % json.dumps(result)[:1000]])
        lines.append(NEXT_RUNNER)
    elif not (rep.get("error") or {}).get("advice"):
        lines.append("next: read the report above; the step's evidence is in %s" % path)
    return "\n".join(lines), False


def main(argv):
    try:
        if len(argv) == 2 and argv[0] == "ids":
            print(ids(argv[1]))
            return 0
        if len(argv) == 2 and argv[0] == "detached":
            text, ok = detached(argv[1])
            print(text)
            return 0 if ok else 1
        if len(argv) in (2, 3) and argv[0] == "report" and argv[2:] in ([], ["--dry-run"]):
            text, ok = report(argv[1], dry_run=argv[2:] == ["--dry-run"])
            print(text)
            return 0 if ok else 1
        print(__doc__.strip(), file=sys.stderr)
        return 2
    except DemoError as exc:
        print("demo: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
