"""The remedy's report: what was seen, what each step did, the final state. Pure: built from
what the workflow collected, readable by a machine (the dict) and a person (`text`)."""


PLAN_FIELDS = ("action", "steps", "reasons", "original_power", "reset_volume_to")


def build_report(server_id, volume_id, outcome, plan=None, steps=(), final=None, error=None,
                 failed_step=None, dry_run=False, mode="manual", triggered_by=None,
                 approval=None, left_off=None):
    plan = plan or {}
    steps = [s for s in (steps or []) if isinstance(s, dict)]
    changed = [s for s in steps if s.get("changed")]
    report = {
        "server_id": server_id, "volume_id": volume_id, "outcome": outcome,
        "dry_run": bool(dry_run), "class": plan.get("class"), "problems": plan.get("problems", []),
        "plan": {k: plan.get(k) for k in PLAN_FIELDS if k in plan},
        "steps": [{k: s.get(k) for k in ("step", "changed", "did", "duration_s")} for s in steps],
        "changed_anything": bool(changed),
        "final": _final(final),
        "error": _error(error, failed_step),
        # the workflow task that failed (error.step may name the logic inside it: "plan")
        "failed_step": failed_step,
        "mode": mode or "manual", "triggered_by": dict(triggered_by or {}),
        "approval": _approval(approval),
    }
    if isinstance(left_off, dict) and left_off.get("reason"):
        report["left_off"] = {"reason": str(left_off["reason"]),
                              "next": str(left_off.get("next") or "")}
    report["text"] = _text(report)
    return report


def _approval(approval):
    """The approval as asked and answered: {asked, answer, route, reason, by} or None when not
    asked. `by` is who answered as the pack's respond action recorded it in the inquiry's
    response ({user, via: chat|st2, channel}); absent for an answer given another way."""
    if not isinstance(approval, dict) or not approval:
        return None
    out = {k: approval.get(k) for k in ("asked", "answer", "route", "reason") if k in approval}
    by = approval.get("by")
    if isinstance(by, dict) and isinstance(by.get("user"), str) and by["user"]:
        out["by"] = {k: by.get(k) if isinstance(by.get(k), str) else None
                     for k in ("user", "via", "channel")}
    return out


def _approved_by(by):
    where = ", ".join(v for v in (by.get("via"), by.get("channel")) if v)
    return "%s%s" % (by["user"], " (%s)" % where if where else "")


def _final(final):
    if not isinstance(final, dict) or not final:
        return None
    verdict = final.get("classification") or {}
    return {"consistent": final.get("consistent"), "expect": final.get("expect"),
            "class": verdict.get("class"), "problems": verdict.get("problems", []),
            "says": verdict.get("says")}


def _error(error, failed_step):
    if not error and not failed_step:
        return None
    out = {"step": failed_step}
    if isinstance(error, dict):
        inner = error.get("result") if isinstance(error.get("result"), dict) else error
        detail = inner.get("error") if isinstance(inner.get("error"), dict) else None
        if detail:
            out.update(detail)
        elif error.get("stderr"):
            out["message"] = "the action failed unexpectedly: %s" % str(error["stderr"])[-500:]
        elif "message" in error:
            out["message"] = error["message"]
    elif error:
        out["message"] = str(error)
    out.setdefault("message", "step %s failed" % failed_step)
    return out


def _commands(r):
    """The chat line and the st2 CLI line of a dry run and of a remedy of this attachment."""
    v, s = r["volume_id"], r["server_id"]
    cli = "`st2 run dangling_volume.remedy volume_id=%s server_id=%s%%s`" % (v, s)
    return {"look": "`dry run remedy volume %s on server %s` (CLI: %s)"
                    % (v, s, cli % " dry_run=true"),
            "redo": "`remedy volume %s on server %s` (CLI: %s)" % (v, s, cli % ""),
            "check": "`attachments of server %s` (CLI: `st2 run dangling_volume.attachments "
                     "server_id=%s`)" % (s, s)}


def _headline(r):
    """The first line a person reads, and what to type next, by how the run ended."""
    what = "Automatic remedy" if r["mode"] == "automatic" else "Remedy"
    of = "volume %s on server %s" % (r["volume_id"], r["server_id"])
    found = r["class"] or "not classified"
    cmd, outcome = _commands(r), r["outcome"]
    if outcome == "rejected":
        return "%s of %s rejected: nothing was changed." % (what, of), [
            "To look at it again: " + cmd["look"]]
    if outcome == "approval timed out":
        return "%s of %s: nobody approved it in time; nothing was changed." % (what, of), [
            "To run it now: " + cmd["redo"]]
    if outcome == "capped":
        return ("%s of %s not started: the hourly cap on automatic remedies is reached; nothing "
                "was changed." % (what, of), ["Run it by hand if it cannot wait: " + cmd["redo"]])
    if r["error"]:
        tail = []
        if r["error"].get("advice"):
            tail.append("next: %s" % r["error"]["advice"])
        if r["final"] and r["final"]["consistent"] is False:
            tail.append("Still inconsistent: %s" % ", ".join(r["final"]["problems"]))
        tail += ["Power: %s" % s["did"] for s in r["steps"] if s["step"] == "start"]
        if not r["changed_anything"]:
            tail.append("Nothing was changed.")
        tail.append("A dry run shows what a remedy would do: " + cmd["look"])
        return "%s of %s FAILED at %s: %s" % (what, of, r["error"]["step"],
                                              r["error"]["message"]), tail
    if r["dry_run"] or outcome == "dry run":
        return "Dry run: %s is %s; nothing changed." % (of, found), [
            "A real run would run: %s" % " -> ".join(r["plan"].get("steps") or ["nothing"]),
            "To remedy it: " + cmd["redo"]]
    if outcome == "nothing to do":
        return "Nothing to do: %s is %s; nothing changed." % (of, found), [
            cmd["check"] + " shows all its volumes."]
    if outcome == "remedied":
        return ("Remedied %s (it was %s): Nova, Cinder and the hypervisor agree now."
                % (of, found), ["Check: " + cmd["check"]])
    return "%s of %s: %s." % (what, of, outcome or "done"), []


def _text(r):
    """The report as a person reads it, in chat or on the CLI: the headline, what was seen and
    done, then what to type next."""
    headline, tail = _headline(r)
    lines = [headline]
    origin = r["triggered_by"]
    if r["mode"] != "manual" or origin.get("source") not in (None, "operator"):
        lines.append("%s run, started by %s" % (r["mode"], ", ".join(
            "%s %s" % (k, origin[k]) for k in ("source", "event_type", "message_id", "user",
                                               "execution_id") if origin.get(k))))
    if r["class"] and r["problems"] and r["problems"] != [r["class"]]:
        lines.append("found: %s (%s)" % (r["class"], ", ".join(r["problems"])))
    for reason in r["plan"].get("reasons") or []:
        lines.append("why: %s" % reason)
    for s in r["steps"]:
        if s["changed"]:
            lines.append("* %s: %s" % (s["step"], s["did"]))
    if r["approval"] and r["approval"].get("reason"):
        lines.append("approval: %s%s" % (r["approval"]["reason"], ", by " + _approved_by(
            r["approval"]["by"]) if r["approval"].get("by") else ""))
    if r["final"] and not r["error"]:
        lines.append("now: %s" % ("consistent" if r["final"]["consistent"] else
                                  "still inconsistent: " + ", ".join(r["final"]["problems"])))
    if r.get("left_off"):
        lines.append("server LEFT OFF on purpose: %s" % r["left_off"]["reason"])
        lines.append("  next: %s" % r["left_off"]["next"])
    return "\n".join(lines + tail)
