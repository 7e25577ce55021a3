"""The real actions/workflows/sweep.yaml through the orquesta StackStorm 3.9 pins (via
tools/pylib/st2local): the audit scripted, plan_sweep and sweep_summary run for real, and the
remedy either scripted (its outcomes) or conducted for real with its own actions scripted (the
approval gate inside it). Python 3.8 and 3.11."""
import os

import pytest

import st2local
from st2local import py_result, wf_result

from testsupport.views import broken
from testsupport.workflows import scripted

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

P = "dangling_volume."
A = ("aaaaaaaa-0000-4000-8000-00000000000%d", "bbbbbbbb-0000-4000-8000-00000000000%d")


def finding(i, cls="nova_only", **extra):
    return dict({"server_id": A[0] % i, "volume_id": A[1] % i, "class": cls}, **extra)


def audit(remedies, needs_operator=0, complete=True):
    return py_result({"complete": complete, "counts": {
        "findings": len(remedies) + needs_operator, "needs_operator": needs_operator},
        "remedies": remedies, "remedies_left_out": 0, "hosts_not_seen": [],
        "report": {"json": "/r/a.json", "table": "/r/a.txt"}})


def remedy_outcome(outcome, status="succeeded"):
    return wf_result({"report": {"outcome": outcome, "error": {"message": "rc 7"}
                                 if outcome == "failed" else None}}, status=status)


def sweep(executors, config=None, answer=None, datastore=None, **params):
    execution = st2local.run_action(REPO, P + "sweep", params, executors=executors,
                                    progress=None, answer=answer, datastore_path=datastore,
                                    config=dict({"cloud": "lab"}, **(config or {})))
    return execution, (execution["result"].get("output") or {}).get("summary")


def calls(execution, task):
    return [t for t in execution["tasks"] if t["id"] == task]


def test_each_finding_with_a_remedy_runs_automatic_and_the_summary_counts_them():
    seen = []

    def remedy(params):
        seen.append(params)
        return remedy_outcome({0: "remedied", 1: "rejected", 2: "capped"}[len(seen) - 1])
    ex = {P + "audit": audit([finding(1), finding(2, "stuck_detaching"), finding(3)],
                             needs_operator=1), P + "remedy": remedy}
    execution, summary = sweep(ex, config={"audit": {"sweep_concurrency": 1}})
    assert execution["status"] == "succeeded"
    assert [p["server_id"] for p in seen] == [A[0] % 1, A[0] % 2, A[0] % 3]
    for p in seen:
        assert p["mode"] == "automatic" and p["detach"] is False
        assert p["triggered_by"] == {"source": "sweep", "execution_id": execution["id"],
                                     "finding": p["triggered_by"]["finding"]}
    assert summary["counts"] == {"remedied": 1, "declined": 1, "capped": 1}
    assert summary["needs_operator"] == 1
    assert "1 findings need an operator" in summary["text"]


def test_the_last_resort_is_left_to_an_operator():
    ex = {P + "audit": audit([finding(1, "hypervisor_only", allow_libvirt_detach=True)]),
          P + "remedy": remedy_outcome("remedied")}
    execution, summary = sweep(ex)
    assert execution["status"] == "succeeded" and not calls(execution, "remedy_batch")
    assert summary["remedies"] == [] and "allow_libvirt_detach=true" in \
        summary["left_alone"][0]["why"]


def test_dry_run_starts_no_remedy():
    ex = {P + "audit": audit([finding(1), finding(2)]), P + "remedy": remedy_outcome("x")}
    execution, summary = sweep(ex, dry_run=True)
    assert execution["status"] == "succeeded" and not calls(execution, "remedy_batch")
    assert [r["result"] for r in summary["remedies"]] == ["would remedy"] * 2
    assert summary["text"].startswith("sweep (dry run): 2 finding(s); would remedy 2")


def test_a_failed_remedy_does_not_stop_the_others_and_fails_the_sweep_after_the_summary():
    outcomes = iter([remedy_outcome("failed", "failed"), remedy_outcome("remedied")])
    ex = {P + "audit": audit([finding(1), finding(2)]),
          P + "remedy": lambda params: next(outcomes)}
    execution, summary = sweep(ex, config={"audit": {"sweep_concurrency": 1}})
    assert execution["status"] == "failed"
    assert summary["counts"] == {"failed": 1, "remedied": 1}
    assert summary["remedies"][0]["error"] == "rc 7"


def test_concurrency_comes_from_the_config():
    ex = {P + "audit": audit([finding(i) for i in range(1, 5)]),
          P + "remedy": remedy_outcome("remedied")}
    execution, _ = sweep(ex, config={"audit": {"sweep_concurrency": 3}})
    plan = calls(execution, "plan_sweep")[0]["result"]["result"]
    assert plan["concurrency"] == 3 and len(plan["todo"]) == 4


def test_a_failed_audit_fails_the_sweep_and_starts_nothing():
    ex = {P + "audit": py_result({"error": {"message": "no admin"}}, status="failed"),
          P + "remedy": remedy_outcome("remedied")}
    execution, _ = sweep(ex)
    assert execution["status"] == "failed" and not calls(execution, "remedy_batch")


@pytest.mark.parametrize("answer,outcome", [("approve", "remedied"), ("reject", "declined")])
def test_the_real_remedy_inside_the_sweep_asks_before_a_power_off(tmp_path, answer, outcome):
    views = broken("1")
    views["server"]["id"], views["volume_id"] = A[0] % 1, A[1] % 1
    ex = dict(scripted(views), **{P + "audit": audit([finding(1)])})
    execution, summary = sweep(ex, answer=answer, datastore=str(tmp_path / "ds.json"))
    assert execution["status"] == "succeeded"
    assert summary["counts"] == {outcome: 1}


def test_batches_of_the_configured_size_until_every_finding_had_its_run():
    outcomes = iter([remedy_outcome("remedied"), remedy_outcome("failed", "failed")] +
                    [remedy_outcome("remedied")] * 3)
    ex = {P + "audit": audit([finding(i) for i in range(1, 6)]),
          P + "remedy": lambda params: next(outcomes)}
    execution, summary = sweep(ex, config={"audit": {"sweep_concurrency": 2}})
    items = [t["item_id"] for t in sorted(calls(execution, "remedy_batch"),
                                          key=lambda t: t["start"])]
    # three runs of the task: 2 + 2 + 1 items (the two items of a batch start together, in
    # either order on a loaded machine)
    assert sorted(items) == [0, 0, 0, 1, 1] and items[-1] == 0, items
    assert summary["counts"] == {"remedied": 4, "failed": 1}
    assert execution["status"] == "failed"
