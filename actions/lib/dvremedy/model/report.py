"""The remedy's report: what was seen, what each step did, the final state. Pure: built from
what the workflow collected, readable by a machine (the dict) and a person (`text`)."""


PLAN_FIELDS = ("action", "steps", "reasons", "original_power", "reset_volume_to")


# outcomes that end the run with nothing changed, on purpose (the workflow still succeeds)
DECLINED = {"rejected": "the approval was rejected: nothing was changed",
            "approval timed out": "nobody answered the approval in time: nothing was changed",
            "capped": "not started"}


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


def _text(r):
    lines = ["volume %s on server %s: %s" % (r["volume_id"], r["server_id"], r["outcome"])]
    origin = r["triggered_by"]
    if r["mode"] != "manual" or origin.get("source") not in (None, "operator"):
        lines.append("%s run, started by %s" % (r["mode"], ", ".join(
            "%s %s" % (k, origin[k]) for k in ("source", "event_type", "message_id", "user",
                                               "execution_id") if origin.get(k))))
    if r["class"]:
        lines.append("found: %s%s" % (r["class"], (" (" + ", ".join(r["problems"]) + ")")
                                      if r["problems"] else ""))
    for reason in r["plan"].get("reasons") or []:
        lines.append("  why: %s" % reason)
    if r["dry_run"]:
        lines.append("dry run, nothing changed; would run: %s" % " -> ".join(
            r["plan"].get("steps") or ["nothing"]))
    for s in r["steps"]:
        lines.append("  %s %s: %s" % ("*" if s["changed"] else "-", s["step"], s["did"]))
    if r["approval"] and r["approval"].get("reason"):
        lines.append("approval: %s%s" % (r["approval"]["reason"], ", by " + _approved_by(
            r["approval"]["by"]) if r["approval"].get("by") else ""))
    if r["outcome"] in DECLINED:
        lines.append(DECLINED[r["outcome"]])
    if r["final"]:
        lines.append("now: %s" % ("consistent" if r["final"]["consistent"] else
                                  "still inconsistent: " + ", ".join(r["final"]["problems"])))
    if r["error"]:
        lines.append("FAILED at %s: %s" % (r["error"]["step"], r["error"]["message"]))
        if r["error"].get("advice"):
            lines.append("  next: %s" % r["error"]["advice"])
    if r.get("left_off"):
        lines.append("server LEFT OFF on purpose: %s" % r["left_off"]["reason"])
        lines.append("  next: %s" % r["left_off"]["next"])
    return "\n".join(lines)
