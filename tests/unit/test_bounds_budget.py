"""Issue 17 item 7: every action's shipped st2 timeout covers its worst case under the default
config (with margin), and run_step refuses a config that does not fit before any call."""
import pytest

from dvremedy import budget
from dvremedy.runner import run_step
from dvremedy.settings import Settings
from dvremedy.steps import remedy

SERVER = "03549f61-9cee-4bdf-b5e9-39c18d815a06"
VOLUME = "4abf2cfe-5208-47bb-9a72-15114a722113"
KOLLA = {"controller": {"staging": "copy_into", "owner": "nova"},
         "commands": {"controller_nova_manage": ["docker", "exec", "nova_conductor",
                                                 "nova-manage"]}}


@pytest.mark.parametrize("action", sorted(budget.STEPS))
@pytest.mark.parametrize("config", [{}, KOLLA], ids=["default", "kolla"])
def test_every_action_timeout_covers_its_worst_case_with_margin(action, config):
    worst = budget.worst_case(action, Settings(config))
    assert worst * 1.15 <= budget.action_timeout(action), (action, worst)


def test_every_step_of_an_action_has_a_budget():
    for (module, name), action in budget.ACTION_OF.items():
        assert action in budget.STEPS and module.startswith("dvremedy.")
    assert ("dvremedy.steps.remedy", remedy.detach.__name__) in budget.ACTION_OF


def test_the_worst_case_grows_with_each_bound():
    base = Settings({})
    assert budget.worst_case("detach", Settings({"waits": {"detach": 1180}})) == \
        budget.worst_case("detach", base) + 1000
    assert budget.worst_case("refresh", Settings({"waits": {"refresh": 700}})) == \
        budget.worst_case("refresh", base) + 100
    more = Settings({"ssh": {"connect_retries": 3}})
    assert budget.worst_case("get_connector", more) > budget.worst_case("get_connector", base)
    two = Settings({"controller": {"hosts": ["c1", "c2"]}})
    assert budget.worst_case("refresh", two) > budget.worst_case("refresh", base)


class NoConnection(object):
    """Stands in for StepContext's connection: any use fails the test."""

    def __getattr__(self, name):
        raise AssertionError("the step ran: conn.%s" % name)


def test_a_config_that_cannot_fit_is_refused_by_the_step_before_any_call(monkeypatch):
    import dvremedy.adapters.cloud
    monkeypatch.setattr(dvremedy.adapters.cloud, "connect", lambda *a, **k: NoConnection())
    ok, result = run_step({"cloud": "c", "waits": {"detach": 10000}}, remedy.detach,
                          server_id=SERVER, volume_id=VOLUME)
    assert ok is False
    error = result["error"]
    assert error["kind"] == "bad_config" and error["step"] == "detach"
    assert error["action_timeout_s"] == budget.action_timeout("detach")
    assert error["worst_case_s"] > 10000 and "waits.detach" in error["config_keys"]
    for words in ("waits.detach", "actions/detach.yaml", "st2ctl reload --register-configs",
                  "Nothing was done"):
        assert words in error["message"]


def test_a_config_that_fits_goes_on_to_the_step(monkeypatch):
    seen = []

    def fake_detach(ctx, server_id, volume_id):
        seen.append(server_id)
        return {"step": "detach"}
    fake_detach.__module__, fake_detach.__name__ = "dvremedy.steps.remedy", "detach"
    ok, _ = run_step({"waits": {"detach": 200}}, fake_detach, server_id=SERVER,
                     volume_id=VOLUME)
    assert ok and seen == [SERVER]
    ok, result = run_step({"waits": {"detach": 10000}}, fake_detach, server_id=SERVER,
                          volume_id=VOLUME)
    assert not ok and seen == [SERVER] and result["error"]["kind"] == "bad_config"
