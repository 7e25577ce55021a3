"""The remedy never makes a healthy cloud worse (issue 17): the plan's refusals, the refresh
step's guards (another server's volume, the lock, a failed refresh leaving the server off) and
the last resort's boot guard, against recording fakes of openstacksdk's proxies. Each test
here failed before its fix: the plan detached a healthy volume in automatic mode, reset a
volume another server held, counted Nova's own detach as stuck, and detached a volume whose
boot role it could not see."""
import datetime
from types import SimpleNamespace

import pytest

from dvremedy.errors import CloudError, InputError, NovaManageError, StateError
from dvremedy.model import classify, plan
from dvremedy.settings import Settings
from dvremedy.steps import remedy, views
from testsupport.views import ATT2, OTHER, SERVER, VOLUME, broken, healthy

NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)


def plan_of(v, mode="manual", detach=True, stuck_after=600):
    verdict = classify.classify(v, stuck_after=stuck_after, now=NOW)
    return plan.make_plan(v, verdict, detach=detach, mode=mode)


def held_by_other(v, multiattach=False):
    v["cinder"]["multiattach"] = multiattach
    v["cinder"]["attachments"].append({"id": ATT2, "status": "detaching", "server_id": OTHER})
    return v


# the plan ------------------------------------------------------------------------------------

def test_automatic_mode_plans_nothing_for_a_healthy_attachment_manual_still_detaches():
    assert plan_of(healthy(), mode="automatic")["action"] == plan.NOTHING
    assert plan_of(healthy(), mode="manual")["action"] == plan.DETACH_ONLY


def test_a_volume_another_server_holds_is_refused_by_name():
    v = held_by_other(broken("1"))
    with pytest.raises(StateError) as err:
        plan_of(v)
    assert "held by server %s" % OTHER in err.value.message
    assert "Needs an operator" in err.value.message
    assert err.value.details["held_by"] == [OTHER]


def test_a_multiattach_volume_another_server_holds_is_not_refused():
    assert plan_of(held_by_other(broken("1"), multiattach=True))["action"] == plan.REFRESH


def test_the_reset_target_counts_only_this_servers_attachments():
    v = held_by_other(broken("1"), multiattach=True)
    # before: another server's `detaching` record made this volume "stuck" -> reset available
    assert remedy._reset_target(v["cinder"], SERVER) is None


def test_a_down_nova_compute_is_refused_before_anything():
    v = broken("1")
    v["server"]["compute_service"] = {"host": "cmp1", "state": "down", "status": "enabled"}
    with pytest.raises(StateError) as err:
        plan_of(v)
    assert "nova-compute on cmp1 is down" in err.value.message
    v["server"]["compute_service"]["state"] = "up"
    assert plan_of(v)["action"] == plan.REFRESH


def test_an_unfinished_nova_action_is_in_progress_not_stuck():
    v = broken("2a")
    v["cinder"]["updated_at"] = "2026-12-07T11:59:30"
    v["nova_actions"] = [{"action": "detach_volume", "request_id": "req-1",
                          "start_time": "2026-12-07T11:59:29", "finished": False}]
    with pytest.raises(StateError) as err:
        plan_of(v)
    assert "Nova is still at work" in err.value.message and "req-1" in err.value.message
    # Nova has ended its detach (with an error): a young `detaching` volume is stuck
    v["nova_actions"][0]["finished"] = True
    assert plan_of(v)["class"] == classify.STUCK_DETACHING


def test_without_nova_actions_a_young_transitional_volume_is_in_progress():
    v = broken("2a")
    v["cinder"]["updated_at"] = "2026-12-07T11:59:30"
    v["nova_actions"] = None        # Nova did not show them
    with pytest.raises(StateError, match="may still be in progress"):
        plan_of(v)
    assert plan_of(v, stuck_after=10)["class"] == classify.STUCK_DETACHING


@pytest.mark.parametrize("root, bootable, expected", [
    ("/dev/sda", True, classify.NOT_BOOT),      # the device is /dev/sdb
    (None, False, classify.NOT_BOOT),
    (None, "false", classify.NOT_BOOT),
    (None, True, classify.BOOT_UNKNOWN),
    (None, None, classify.BOOT_UNKNOWN),
])
def test_boot_evidence(root, bootable, expected):
    v = healthy()
    v["server"]["root_device_name"] = root
    assert classify.boot_evidence(v["server"], v["nova"], {"bootable": bootable}) == expected


def test_a_detach_of_what_may_be_the_boot_volume_is_refused_a_refresh_is_not():
    v = broken("1")
    v["server"]["root_device_name"] = None       # hidden by policy
    v["cinder"]["bootable"] = True
    with pytest.raises(StateError, match="cannot tell whether volume"):
        plan_of(v)
    assert plan_of(v, detach=False)["steps"] == ["get_connector", "stop", "refresh", "start",
                                                 "verify"]


def test_the_boot_volume_itself_is_refused():
    v = healthy()
    v["nova"]["device"] = "/dev/sda"
    with pytest.raises(InputError, match="boot volume"):
        plan_of(v)


# the refresh step ----------------------------------------------------------------------------

class Recorder:
    """Records every call made through it; `answers` maps a method name to a value, an
    exception to raise, or a callable."""

    def __init__(self, log, **answers):
        self._log, self._answers = log, answers

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self._log.append((name, args, kwargs))
            answer = self._answers.get(name)
            if isinstance(answer, BaseException):
                raise answer
            return answer(*args, **kwargs) if callable(answer) else answer
        return call


def fake_ctx(log, server, volume, attachments=(), **compute_answers):
    records = [SimpleNamespace(id=a["id"], status=a["status"], instance=a["server_id"],
                               attached_at=None, volume_id=VOLUME) for a in attachments]
    compute = Recorder(log, **dict({"get_server": server, "volume_attachments": []},
                                   **compute_answers))
    storage = Recorder(log, get_volume=volume)
    ctx = SimpleNamespace(conn=SimpleNamespace(compute=compute, block_storage=storage),
                          settings=Settings({"ssh": {"key_file": "/k"},
                                             "controller": {"hosts": ["ctl"]}}),
                          progress=lambda msg: None,
                          controller=lambda: ("ctl", "session"))
    return ctx, records


def server(locked=False, reason=None, status="SHUTOFF"):
    return SimpleNamespace(id=SERVER, status=status, task_state=None, compute_host="cmp1",
                           is_locked=locked, locked_reason=reason, instance_name="instance-1",
                           root_device_name="/dev/sda")


def volume(status="in-use", multiattach=False, bootable=False):
    return SimpleNamespace(id=VOLUME, name="v", status=status, is_bootable=bootable,
                           is_multiattach=multiattach, updated_at=None, project_id="p")


CONNECTOR = {"host": "cmp1", "multipath": False, "platform": "x86_64", "os_type": "linux",
             "initiator": "iqn.x", "ip": "127.0.0.2"}


@pytest.fixture
def attachments_of(monkeypatch):
    def use(records):
        monkeypatch.setattr(views, "_attachment_list_type", lambda: SimpleNamespace(
            list=lambda *a, **k: records))
    return use


def refresh_with(monkeypatch, attachments_of, outcomes, srv, vol, attachments=(), **answers):
    """Run remedy.refresh with novamanage.refresh answering `outcomes` in turn."""
    log = []
    ctx, records = fake_ctx(log, srv, vol, attachments, **answers)
    attachments_of(records)
    calls = []

    def fake_refresh(*args, **kwargs):
        calls.append(args)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    monkeypatch.setattr(remedy.novamanage, "refresh", fake_refresh)
    return ctx, log, calls


def test_refresh_refuses_a_volume_another_server_holds_before_any_reset(
        monkeypatch, attachments_of):
    ctx, log, calls = refresh_with(
        monkeypatch, attachments_of, [{"exit_code": 0}], server(), volume("detaching"),
        [{"id": ATT2, "status": "detaching", "server_id": OTHER}])
    with pytest.raises(StateError, match="held by server %s" % OTHER):
        remedy.refresh(ctx, SERVER, VOLUME, CONNECTOR)
    assert not calls
    assert not [c for c in log if c[0] in ("reset_volume_status", "stop_server")]


def needs_unlock():
    return NovaManageError("refresh exited 5: must be unlocked", step="refresh", exit_code=5,
                           needs_unlock=True, refresh_started=True)


def test_a_locked_instance_is_unlocked_for_refresh_and_locked_again_with_its_reason(
        monkeypatch, attachments_of):
    ctx, log, calls = refresh_with(monkeypatch, attachments_of, [needs_unlock(),
                                                                 {"exit_code": 0}],
                                   server(locked=True, reason="ticket 42"), volume())
    out = remedy.refresh(ctx, SERVER, VOLUME, CONNECTOR)
    names = [c[0] for c in log if c[0] in ("unlock_server", "lock_server")]
    assert names == ["unlock_server", "lock_server"] and len(calls) == 2
    assert [c[2] for c in log if c[0] == "lock_server"] == [{"locked_reason": "ticket 42"}]
    assert "locked the server again (reason: ticket 42)" in out["did"]


def test_the_lock_comes_back_when_the_second_refresh_fails_too(monkeypatch, attachments_of):
    failed = NovaManageError("refresh exited 1", step="refresh", exit_code=1,
                             refresh_started=True)
    ctx, log, _ = refresh_with(monkeypatch, attachments_of, [needs_unlock(), failed],
                               server(locked=True, reason="r"), volume())
    with pytest.raises(NovaManageError) as err:
        remedy.refresh(ctx, SERVER, VOLUME, CONNECTOR)
    locks = [c[0] for c in log if c[0].endswith("lock_server")]
    assert locks == ["unlock_server", "lock_server"]
    assert "left SHUTOFF on purpose" in err.value.details["leave_off"]["reason"]


def test_an_admins_lock_the_owner_cannot_lift_is_named(monkeypatch, attachments_of):
    refused = CloudError("unlock failed: HTTP 403", http_status=403)
    ctx, log, calls = refresh_with(monkeypatch, attachments_of, [needs_unlock()],
                                   server(locked=True), volume(), unlock_server=refused)
    with pytest.raises(StateError) as err:
        remedy.refresh(ctx, SERVER, VOLUME, CONNECTOR)
    assert "locked_by admin" in err.value.message and len(calls) == 1
    assert "leave_off" not in err.value.details      # nothing was refreshed: power comes back


def test_a_refresh_that_started_and_failed_says_to_leave_the_server_off(
        monkeypatch, attachments_of):
    timed_out = NovaManageError("refresh timed out", step="refresh", timed_out=True,
                                refresh_started=True)
    ctx, _, _ = refresh_with(monkeypatch, attachments_of, [timed_out], server(), volume())
    with pytest.raises(NovaManageError) as err:
        remedy.refresh(ctx, SERVER, VOLUME, CONNECTOR)
    left = err.value.details["leave_off"]
    assert left["reason"].startswith("refresh timed out")
    assert "openstack server event list %s" % SERVER in left["next"]


def test_a_refresh_that_never_started_lets_the_power_come_back(monkeypatch, attachments_of):
    not_sent = NovaManageError("upload failed", step="refresh", refresh_started=False)
    ctx, _, _ = refresh_with(monkeypatch, attachments_of, [not_sent], server(), volume())
    with pytest.raises(NovaManageError) as err:
        remedy.refresh(ctx, SERVER, VOLUME, CONNECTOR)
    assert "leave_off" not in err.value.details


# the last resort -----------------------------------------------------------------------------

@pytest.mark.parametrize("root, bootable, device", [
    ("/dev/sdb", False, "/dev/sdb"),     # the root device itself
    (None, True, "/dev/sdb"),            # hidden root device, a bootable volume
])
def test_virsh_detach_disk_is_refused_on_what_is_or_may_be_the_boot_volume(
        root, bootable, device):
    log = []
    srv = server(status="ACTIVE")
    srv.root_device_name = root
    attached = [SimpleNamespace(volume_id=VOLUME, device=device, attachment_id="a", bdm_id="b",
                                delete_on_termination=False)]
    ctx, _ = fake_ctx(log, srv, volume(bootable=bootable), volume_attachments=attached)
    ctx.ssh = lambda host: pytest.fail("no SSH before the boot guard")
    with pytest.raises(StateError, match="boot volume"):
        remedy.libvirt_detach(ctx, SERVER, VOLUME, allow=True)


# the reads -----------------------------------------------------------------------------------

def test_recent_actions_reads_events_only_of_young_busy_actions():
    log = []
    acts = [SimpleNamespace(action="detach_volume", request_id="req-new",
                            start_time="2026-12-07T11:58:00.000000", message=None),
            SimpleNamespace(action="lock", request_id="req-lock",
                            start_time="2026-12-07T11:59:00.000000", message=None),
            SimpleNamespace(action="attach_volume", request_id="req-old",
                            start_time="2026-12-07T10:00:00.000000", message=None)]
    detail = SimpleNamespace(message=None, events=[SimpleNamespace(finish_time=None)])
    conn = SimpleNamespace(compute=Recorder(log, server_actions=acts,
                                            get_server_action=detail))
    out = views.recent_actions(conn, SERVER, 600, NOW)
    assert [(a["request_id"], a["finished"]) for a in out] == [("req-new", False),
                                                               ("req-lock", True)]
    assert [c[1][0] for c in log if c[0] == "get_server_action"] == ["req-new"]
    assert views.recent_actions(conn, SERVER, 0, NOW) == []


def test_compute_service_is_none_when_the_api_hides_it():
    conn = SimpleNamespace(compute=Recorder([], services=CloudError("HTTP 403",
                                                                    http_status=403)))
    assert views.compute_service(conn, "cmp1") is None
    row = SimpleNamespace(host="cmp1", binary="nova-compute", state="down", status="enabled",
                          is_forced_down=False, updated_at="t")
    conn = SimpleNamespace(compute=Recorder([], services=[row]))
    assert views.compute_service(conn, "cmp1")["state"] == "down"
