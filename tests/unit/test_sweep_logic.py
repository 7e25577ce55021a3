"""The sweep's pure choices and summary (dvremedy.model.sweep), on both Pythons."""
from dvremedy.model.sweep import plan_sweep, summarize

F = {"server_id": "s1", "volume_id": "v1", "class": "nova_only"}


def test_plan_keeps_the_last_resort_and_notes_what_it_cannot_do():
    audit = {"remedies": [F, dict(F, volume_id="v2", allow_libvirt_detach=True)],
             "remedies_left_out": 3, "complete": False,
             "hosts_not_seen": [{"host": "cmp9"}], "counts": {"needs_operator": 2},
             "report": {"table": "/r/a.txt"}}
    plan = plan_sweep(audit, concurrency=0)
    assert plan["todo"] == [dict(F, detach=False)] and plan["concurrency"] == 1
    assert [row["volume_id"] for row in plan["left_alone"]] == ["v2"]
    assert len(plan["notes"]) == 3 and "cmp9" in plan["notes"][2]


def test_summary_buckets_each_outcome_and_a_missing_report_is_a_failure():
    plan = plan_sweep({"remedies": [F] * 6}, concurrency=2)
    outcomes = ["remedied", "nothing to do", "rejected", "approval timed out", "capped"]
    results = [{"output": {"report": {"outcome": o}}} for o in outcomes] + [
        {"output": None, "errors": [{"message": "identify failed"}]}]
    s = summarize(plan, results, audit={"counts": {"findings": 6}})
    assert s["counts"] == {"remedied": 1, "nothing to do": 1, "declined": 2, "capped": 1,
                           "failed": 1}
    assert s["remedies"][-1]["said"] == "identify failed"
    assert s["text"].splitlines()[0] == (
        "sweep: 6 finding(s); capped 1, declined 2, failed 1, nothing to do 1, remedied 1")
