"""The pure core: classifying the three views of an attachment and planning the remedy.
Views are built by hand in the shape views.identify() returns, one per lab break."""
import copy

import pytest

from dvremedy.errors import InputError, StateError
from dvremedy.model import classify as c
from dvremedy.model.plan import make_plan
from testsupport.views import ATT, ATT2, OTHER, broken, healthy


@pytest.mark.parametrize("kind, problems", [
    ("1", [c.NOVA_ONLY]),
    ("2a", [c.STUCK_DETACHING, c.MISSING_ON_HYPERVISOR]),
    ("2b", [c.DETACH_REFUSED]),
    ("4", [c.MISSING_ON_HYPERVISOR]),
    ("mismatch", [c.ATTACHMENT_MISMATCH]),
    ("orphan", [c.CINDER_ONLY]),
])
def test_each_break_is_classified_with_every_problem_seen(kind, problems):
    verdict = c.classify(broken(kind))
    assert verdict["problems"] == problems
    assert verdict["class"] == problems[0]
    assert not verdict["healthy"]


def test_healthy_only_when_all_three_agree():
    verdict = c.classify(healthy())
    assert verdict == dict(verdict, healthy=True, problems=[], **{"class": c.HEALTHY})
    assert verdict["says"]["hypervisor"] == "live: sdb; next boot: sdb"


def test_stuck_attaching_and_unreachable_hypervisor():
    v = healthy()
    v["cinder"]["attachments"][0]["status"] = "reserved"
    v["cinder"]["status"] = "reserved"
    assert c.STUCK_ATTACHING in c.classify(v)["problems"]
    v = healthy()
    v["hypervisor"] = {"reachable": False, "live": [], "config": []}
    assert c.classify(v)["problems"] == [c.HYPERVISOR_UNKNOWN]


def test_not_attached_and_hypervisor_only():
    v = broken("orphan")
    v["cinder"].update(status="available", attachments=[])
    assert c.classify(v)["problems"] == [c.NOT_ATTACHED]
    v["hypervisor"]["live"] = ["sdc"]
    assert c.classify(v)["problems"] == [c.HYPERVISOR_ONLY]


def test_attachment_of_another_server_is_not_ours():
    v = broken("1")
    v["cinder"]["attachments"] = [{"id": ATT2, "status": "attached", "server_id": OTHER}]
    v["cinder"]["status"] = "in-use"
    assert c.classify(v)["problems"] == [c.NOVA_ONLY]


def plan_for(views, **kw):
    return make_plan(views, c.classify(views), **kw)


def test_refresh_path_stops_a_running_server_and_starts_it_again():
    p = plan_for(broken("1"))
    assert p["action"] == "refresh"
    assert p["steps"] == ["get_connector", "stop", "refresh", "detach", "verify", "start"]
    assert p["original_power"] == "running" and p["reset_volume_to"] is None


def test_stopped_server_is_not_stopped_or_started():
    v = broken("2b")
    v["server"]["status"] = "SHUTOFF"
    p = plan_for(v, detach=False, allow_libvirt_detach=True)
    # kept attached: no last resort (it would remove the disk the run keeps)
    assert p["steps"] == ["get_connector", "refresh", "verify"]
    assert p["original_power"] == "shutoff"


def test_kept_attached_verifies_after_the_start():
    """refresh takes the disk off the stopped domain; only a start rebuilds it."""
    p = plan_for(broken("1"), detach=False)
    assert p["steps"] == ["get_connector", "stop", "refresh", "start", "verify"]


def test_stuck_detaching_resets_to_in_use_when_its_attachment_exists():
    p = plan_for(broken("2a"))
    assert p["action"] == "refresh" and p["reset_volume_to"] == "in-use"
    v = broken("2a")
    v["cinder"]["attachments"] = []
    v["nova"]["attachment_id"] = ATT
    assert plan_for(v)["reset_volume_to"] == "available"


def test_healthy_detach_true_is_a_plain_detach_and_false_is_nothing():
    assert plan_for(healthy())["steps"] == ["detach", "verify"]
    assert plan_for(healthy(), detach=False)["action"] == "nothing"


def test_disk_missing_on_hypervisor_only_needs_the_api_detach():
    p = plan_for(broken("4"))
    assert p["action"] == "detach_only"
    keep = plan_for(broken("4"), detach=False)
    assert keep["action"] == "refresh"  # power-on rebuilds the disk from the BDMs


@pytest.mark.parametrize("mutate, error, text", [
    (lambda v: v["nova"].update(device="/dev/sda"), InputError, "boot volume"),
    (lambda v: (v.update(nova=None), v["cinder"].update(status="available", attachments=[]),
                v["hypervisor"].update(live=[], config=[])), InputError, "not attached"),
    (lambda v: v.update(nova=None, cinder=healthy()["cinder"]),
     StateError, "needs an operator"),
    (lambda v: v["server"].update(task_state="powering-off"), StateError, "busy"),
    (lambda v: v.update(hypervisor={"reachable": False, "live": [], "config": [],
                                    "error": {"message": "connection refused"}}),
     StateError, "connection refused"),
])
def test_refusals_say_why(mutate, error, text):
    v = broken("1")
    mutate(v)
    with pytest.raises(error) as exc:
        plan_for(v)
    assert text in str(exc.value)


def test_hypervisor_only_needs_the_explicit_last_resort():
    v = broken("orphan")
    v["cinder"].update(status="available", attachments=[])
    v["hypervisor"]["live"] = ["sdb"]
    with pytest.raises(StateError, match="allow_libvirt_detach=true"):
        plan_for(v)
    assert plan_for(v, allow_libvirt_detach=True)["steps"] == ["libvirt_detach", "verify"]


def test_classify_does_not_modify_its_input():
    v = broken("2a")
    before = copy.deepcopy(v)
    plan_for(v)
    assert v == before
