"""Automatic remedies through the real workflow and the orquesta StackStorm 3.9 pins (via
tools/pylib/st2local): the approval gate (approved, rejected, timed out, pre-approved, not
needed), the hourly cap kept in the local st2 datastore across runs (st2's ActionService in the
admit process, through the /v1/keys stand-in), and the origin echoed in the report. The
cloud-facing actions are scripted as in test_remedy_workflow; admit and report run for real in
their own processes. Python 3.8 and 3.11."""
import datetime
import json
import time

import pytest
from st2local import py_result

from testsupport.views import broken, healthy
from testsupport.workflows import failed_step, identify_result, params_of, remedy, scripted

SENSOR = {"source": "sensor", "event_type": "compute.exception", "message_id": "m-1",
          "host": "lab-compute"}


@pytest.fixture
def datastore(tmp_path):
    return str(tmp_path / "datastore.json")


def automatic(views, datastore, answer=None, config=None, **params):
    return remedy(views, mode="automatic", triggered_by=SENSOR, answer=answer,
                  datastore=datastore, config=config, **params)


def counters(datastore):
    with open(datastore) as f:
        keys = json.load(f)
    return {k: v["value"] for k, v in keys.items()
            if k.startswith("dangling_volume.automatic_remedies.")}


def test_approved_power_off_runs_the_remedy_and_the_report_says_who_started_it(datastore):
    status, ran, report, execution = automatic(broken("1"), datastore, answer="approve")
    assert status == "succeeded"
    assert ran[:2] == ["identify", "ask_approval"] and "stop_server" in ran
    assert ran[-2:] == ["restore_power", "report_success"]
    assert report["mode"] == "automatic" and report["outcome"] == "remedied"
    assert report["triggered_by"]["message_id"] == "m-1"
    assert report["triggered_by"]["execution_id"] == execution["id"]
    assert report["approval"]["answer"] == "approved"
    ask = params_of(execution, "ask_approval")[0]["result"]
    assert ask["route"] == "dangling_volume" and ask["ttl"] == 60
    assert ask["schema"]["properties"]["approved"] == dict(
        ask["schema"]["properties"]["approved"], type="boolean", required=True)
    question = ask["schema"]["properties"]["approved"]["description"]
    assert "by get_connector -> stop -> refresh -> detach -> verify -> start" in question
    assert "the server is powered off and started again" in question
    # the approval came later: identify ran again before anything was changed
    assert ran[2:5] == ["reidentify", "get_connector", "stop_server"]


@pytest.mark.parametrize("approved,outcome", [(True, "remedied"), (False, "rejected")])
def test_the_report_names_who_answered_as_respond_recorded_it(datastore, approved, outcome):
    by = {"user": "alice", "via": "chat", "channel": "#ops"}
    status, _, report, _ = automatic(broken("1"), datastore,
                                     answer={"approved": approved, "by": by})
    assert status == "succeeded" and report["outcome"] == outcome
    assert report["approval"]["by"] == by
    assert "by alice (chat, #ops)" in report["text"]


DECLINES = [("reject", "rejected"), ("timeout", "approval timed out")]


@pytest.mark.parametrize("answer,outcome", DECLINES)
def test_rejected_or_expired_approval_ends_cleanly_and_changes_nothing(
        datastore, answer, outcome):
    status, ran, report, _ = automatic(broken("1"), datastore, answer=answer)
    assert status == "succeeded"
    assert ran == ["identify", "ask_approval", "report_declined"]
    assert report["outcome"] == outcome and report["changed_anything"] is False
    assert report["steps"] == []
    assert "nothing was changed" in report["text"]


def test_without_an_answer_the_workflow_waits_paused_before_any_power_off(datastore):
    status, ran, _, _ = automatic(broken("1"), datastore, answer=None)
    assert status == "paused" and "stop_server" not in ran


def test_route_and_ttl_come_from_the_pack_config(datastore):
    config = {"automatic": {"approval_route": "storage-oncall", "approval_ttl": 15}}
    _, _, _, execution = automatic(broken("1"), datastore, answer="reject", config=config)
    ask = params_of(execution, "ask_approval")[0]["result"]
    assert (ask["route"], ask["ttl"]) == ("storage-oncall", 15)


def test_pre_approved_config_skips_the_question(datastore):
    status, ran, report, _ = automatic(broken("1"), datastore,
                                       config={"automatic": {"pre_approved": True}})
    assert status == "succeeded" and "ask_approval" not in ran and "stop_server" in ran
    assert report["approval"] is None


def test_an_automatic_run_asks_before_any_change_not_only_a_power_off(datastore):
    """A detach of an in-use volume needs approval as a power-off does (no answer: paused)."""
    stopped = broken("1")
    stopped["server"]["status"] = "SHUTOFF"
    for views in (stopped, broken("4")):
        status, ran, _, _ = automatic(views, datastore)
        assert status == "paused" and ran == ["identify", "ask_approval"], ran


def test_an_automatic_run_plans_nothing_for_a_healthy_attachment(datastore):
    """The rule's trigger is not a reason to detach a healthy, in-use volume: before, the
    automatic run planned detach_only and detached it without asking."""
    status, ran, report, execution = automatic(healthy(), datastore)
    assert status == "succeeded" and ran == ["identify", "report_nothing"]
    assert report["outcome"] == "nothing to do" and not report["changed_anything"]
    assert "never detaches a volume it did not find broken" in report["text"]
    assert not params_of(execution, "admit")


def test_the_run_refuses_when_the_attachment_changed_while_the_approval_was_pending(datastore):
    """Approved an hour later: identify reads again, and a new class ends the run unchanged."""
    later = broken("2a")
    ex = scripted(broken("1"), identify=[
        py_result(identify_result(broken("1"), mode="automatic")),
        py_result(identify_result(later, mode="automatic"))])
    status, ran, report, _ = automatic(broken("1"), datastore, answer="approve", executors=ex)
    assert status == "failed"
    assert ran == ["identify", "ask_approval", "reidentify", "report_failure"]
    assert report["error"]["step"] == "reidentify"
    assert "changed while the approval was pending" in report["error"]["message"]
    assert "approved nova_only (refresh), now stuck_detaching" in report["error"]["message"]
    assert not report["changed_anything"]


def test_manual_runs_never_ask_and_never_count(datastore):
    status, ran, report, _ = remedy(broken("1"), datastore=datastore)
    assert status == "succeeded" and "ask_approval" not in ran
    assert report["mode"] == "manual" and report["triggered_by"]["source"] == "operator"
    assert report["triggered_by"]["user"] == "stanley"
    with pytest.raises(OSError):
        counters(datastore)  # no datastore key was ever written


def test_the_hourly_cap_stops_the_third_run_and_the_report_says_so(datastore):
    now = datetime.datetime.now()  # the counter is per clock hour (the admit process's clock):
    if now.minute == 59 and now.second >= 20:  # do not let the three runs straddle two hours
        time.sleep(61 - now.second)
    config = {"automatic": {"max_per_hour": 2, "pre_approved": True}}
    for _ in range(2):
        status, ran, _, _ = automatic(broken("4"), datastore, config=config)
        assert status == "succeeded" and "detach" in ran
    assert list(counters(datastore).values()) == ["2"]
    status, ran, report, _ = automatic(broken("4"), datastore, config=config)
    assert status == "succeeded" and ran == ["identify", "report_capped"]
    assert report["outcome"] == "capped" and report["changed_anything"] is False
    assert "hourly cap reached: 2 automatic remedies" in report["text"]
    assert list(counters(datastore).values()) == ["2"]  # a refused run is not counted


def test_a_cap_of_zero_turns_automatic_remedies_off(datastore):
    status, ran, report, _ = automatic(broken("1"), datastore,
                                       config={"automatic": {"max_per_hour": 0}})
    assert status == "succeeded" and ran == ["identify", "report_capped"]
    assert "automatic remedies are off" in report["text"]


def test_ids_that_do_not_exist_do_not_spend_the_hourly_cap(datastore):
    # identify refuses ids Nova or Cinder do not know: the run ends before admit, so a burst of
    # bad ids (a chat typo, a forged trigger) cannot use up the automatic remedies of the hour
    config = {"automatic": {"max_per_hour": 1, "pre_approved": True}}
    missing = scripted(healthy(), identify=failed_step(
        "identify", "server 0f0f0f0f-0000-4000-8000-000000000000 not found"))
    for _ in range(2):
        status, ran, report, execution = automatic(healthy(), datastore, config=config,
                                                   executors=missing)
        assert status == "failed" and ran == ["identify", "report_failure"]
        assert not params_of(execution, "admit")
        assert report["triggered_by"]["message_id"] == "m-1"  # the origin all the same
        assert report["triggered_by"]["execution_id"] == execution["id"]
    with pytest.raises(OSError):
        counters(datastore)  # no counter was ever written
    # a dry run and a healthy attachment kept attached spend nothing either
    for params in ({"dry_run": True}, {"detach": False}):
        status, ran, _, execution = automatic(healthy(), datastore, config=config, **params)
        assert status == "succeeded" and not params_of(execution, "admit"), ran
    with pytest.raises(OSError):
        counters(datastore)
    # the cap is still whole: the one run of the hour it allows goes through
    status, ran, _, _ = automatic(broken("4"), datastore, config=config)
    assert status == "succeeded" and "detach" in ran
    assert list(counters(datastore).values()) == ["1"]
