"""The real actions/workflows/remedy.yaml conducted by the orquesta StackStorm 3.9 pins (via
tools/pylib/st2local) on every path, with the cloud-facing actions scripted (their logic is
tested on the lab) and the report action run for real through st2's python action wrapper.
Python 3.8 and 3.11."""
import json

import pytest

import st2local

from testsupport.views import VOLUME, broken, healthy
from testsupport.workflows import (P, REPO, failed_step, ok_step, params_of, remedy, scripted,
                                   verify_result)


def test_break_1_runs_the_refresh_path_and_restores_power():
    status, ran, report, ex = remedy(broken("1"))
    assert status == "succeeded"
    assert ran == ["identify", "get_connector", "stop_server", "refresh", "detach", "verify",
                   "restore_power", "report_success"]
    assert report["outcome"] == "remedied" and report["final"]["consistent"] is True
    assert [s["step"] for s in report["steps"]] == ["get_connector", "stop", "refresh",
                                                    "detach", "start"]
    assert "* start: start done" in report["text"]


@pytest.mark.parametrize("kind", ["2a", "2b"])
def test_breaks_2a_and_2b_take_the_same_path(kind):
    status, ran, report, _ = remedy(broken(kind))
    assert status == "succeeded" and "refresh" in ran and "restore_power" in ran
    assert report["class"] == {"2a": "stuck_detaching", "2b": "detach_refused"}[kind]


def test_break_4_and_a_healthy_attachment_need_only_the_api_detach():
    for views in (broken("4"), healthy()):
        status, ran, report, _ = remedy(views)
        assert status == "succeeded"
        assert ran == ["identify", "detach", "verify", "restore_power", "report_success"]


def test_healthy_with_detach_false_changes_nothing():
    status, ran, report, _ = remedy(healthy(), detach=False)
    assert status == "succeeded" and ran == ["identify", "report_nothing"]
    assert report["outcome"] == "nothing to do" and report["changed_anything"] is False


def test_dry_run_plans_and_changes_nothing():
    status, ran, report, _ = remedy(broken("2a"), dry_run=True)
    assert status == "succeeded" and ran == ["identify", "report_dry_run"]
    assert report["dry_run"] is True and report["plan"]["reset_volume_to"] == "in-use"
    assert "would run: get_connector -> stop -> refresh -> detach -> verify -> start" \
        in report["text"]


def test_bad_input_fails_at_identify_without_touching_power():
    ex = scripted(broken("1"), identify=failed_step("identify", "server not found"))
    status, ran, report, _ = remedy(broken("1"), ex)
    assert status == "failed" and ran == ["identify", "report_failure"]
    assert report["error"]["message"] == "server not found"


def test_the_report_names_the_failed_task_beside_the_errors_own_step():
    """A refusal of the plan inside identify: the task is identify, the error's step plan."""
    ex = scripted(broken("1"), identify=failed_step("plan", "volume is held by server X"))
    status, _, report, _ = remedy(broken("1"), ex)
    assert status == "failed"
    assert (report["failed_step"], report["error"]["step"]) == ("identify", "plan")


def test_an_id_that_is_not_a_uuid_is_refused_before_the_workflow_starts():
    # the parameter's pattern, checked by st2 when it creates the request
    execution = st2local.run_action(REPO, P + "remedy", {"server_id": "1111; reboot",
                                                         "volume_id": VOLUME},
                                    executors=scripted(broken("1")), progress=None,
                                    config={"cloud": "lab"})
    assert execution["status"] == "failed" and not execution.get("tasks")
    assert "does not match" in json.dumps(execution["result"])


@pytest.mark.parametrize("task", ["refresh", "detach", "verify"])
def test_each_failing_step_restores_power_then_reports_and_fails(task):
    ex = scripted(broken("1"), **{task: failed_step(task, "%s broke" % task)})
    status, ran, report, execution = remedy(broken("1"), ex)
    assert status == "failed"
    assert ran[-2:] == ["restore_after_failure", "report_failure"]
    restore = params_of(execution, "restore_after_failure")[0]
    assert restore["result"]["result"]["power"] == "running"
    assert report["error"] == {"step": task, "kind": "command", "message": "%s broke" % task}
    assert "FAILED at %s: %s broke" % (task, task) in report["text"]


def test_inconsistent_after_the_remedy_is_a_failure_with_the_reason():
    ex = scripted(broken("1"), verify=verify_result(consistent=False))
    status, ran, report, _ = remedy(broken("1"), ex)
    assert status == "failed" and "restore_after_failure" in ran
    assert report["error"]["step"] == "verify"
    assert report["error"]["message"].startswith("still inconsistent after the remedy")


@pytest.mark.parametrize("order", ["first", "last"])
def test_a_failing_get_connector_never_stops_the_server(order):
    """get_connector runs before the stop, alone: a stop can never land after the failure
    was handled (it did, with the two in parallel, when get_connector failed first)."""
    ex = scripted(broken("1"), get_connector=failed_step("get_connector", "ssh broke"))
    completion = ["get_connector"] if order == "first" else ["*", "get_connector"]
    status, ran, report, _ = remedy(broken("1"), ex, order=completion)
    assert status == "failed"
    assert ran == ["identify", "get_connector", "report_failure"]
    assert report["error"]["step"] == "get_connector" and not report["changed_anything"]


def test_a_failing_stop_restores_power_once_the_stop_has_ended():
    ex = scripted(broken("1"), stop_server=failed_step("stop_server", "stop broke"))
    status, ran, report, execution = remedy(broken("1"), ex)
    assert status == "failed"
    assert ran == ["identify", "get_connector", "stop_server", "restore_after_failure",
                   "report_failure"]
    assert params_of(execution, "restore_after_failure")[0]["result"]["result"]["power"] == \
        "running"
    assert report["error"]["step"] == "stop_server"


def test_a_refresh_that_started_and_failed_leaves_the_server_off_and_says_why():
    left = {"reason": "refresh exited 1: left SHUTOFF on purpose", "next": "check events"}
    failed = failed_step("refresh", "nova-manage exited 1")
    failed[1]["result"]["error"]["leave_off"] = left
    status, ran, report, _ = remedy(broken("1"), scripted(broken("1"), refresh=failed))
    assert status == "failed"
    assert ran == ["identify", "get_connector", "stop_server", "refresh", "report_failure"]
    assert "restore_after_failure" not in ran
    assert report["left_off"] == left
    assert "server LEFT OFF on purpose: refresh exited 1" in report["text"]
    assert "  next: check events" in report["text"]


def test_restore_failing_after_a_failure_still_reports():
    ex = scripted(broken("1"), refresh=failed_step("refresh", "rc 7"),
                  restore_power=failed_step("start", "server is ERROR"))
    status, ran, report, _ = remedy(broken("1"), ex)
    assert status == "failed" and ran[-1] == "report_failure"
    assert report["error"]["step"] == "refresh"
    assert any("could not restore the power state" in s["did"] for s in report["steps"])


def test_last_resort_runs_only_when_allowed_and_needed():
    ex = scripted(broken("2b"), verify=[verify_result(False, disk_left=True),
                                        verify_result(True)])
    status, ran, report, _ = remedy(broken("2b"), ex, allow_libvirt_detach=True)
    assert status == "succeeded"
    assert ran[-4:] == ["libvirt_detach", "verify_after_libvirt", "restore_power",
                        "report_success"]
    ex = scripted(broken("2b"), verify=verify_result(False, disk_left=True))
    status, ran, report, _ = remedy(broken("2b"), ex)
    assert status == "failed" and "libvirt_detach" not in ran


def test_a_stopped_server_is_left_stopped():
    views = broken("1")
    views["server"]["status"] = "SHUTOFF"
    status, ran, report, execution = remedy(views)
    assert status == "succeeded"
    assert params_of(execution, "restore_power")[0]["result"]["result"]["power"] == "shutoff"
    assert report["plan"]["steps"] == ["get_connector", "refresh", "detach", "verify"]


def test_kept_attached_the_power_comes_back_before_verify():
    """detach=false: refresh took the disk off the stopped domain; only a start rebuilds it,
    so verify runs after restore and success goes straight to the report."""
    asked = []

    def verify(params):
        asked.append(params["expect"])
        return ok_step("verify", False, consistent=True, expect=params["expect"],
                       disk_left_on_domain=False)
    status, ran, report, _ = remedy(broken("1"), scripted(broken("1"), verify=verify),
                                    detach=False)
    assert status == "succeeded"
    assert ran[3:] == ["refresh", "restore_before_verify", "verify", "report_success"]
    assert asked == ["attached"]
    assert [s["step"] for s in report["steps"]][-1] == "start"


def test_kept_attached_and_still_inconsistent_fails_without_the_last_resort():
    ex = scripted(broken("2b"), verify=verify_result(consistent=False, disk_left=True))
    status, ran, report, _ = remedy(broken("2b"), ex, detach=False, allow_libvirt_detach=True)
    assert status == "failed" and "libvirt_detach" not in ran
    assert ran[-2:] == ["restore_after_failure", "report_failure"]
