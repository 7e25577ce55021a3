"""The admission step (hourly cap, approval settings) against st2's OWN ActionService (StackStorm
3.9: python_runner's ActionService -> st2common.services.datastore -> st2client) talking to the
loopback /v1/keys stand-in of tools/pylib/st2local/keys.py, and against a datastore that fails
the way st2's does (errors logged, None returned)."""
import datetime

import pytest

from dvremedy.errors import InputError
from dvremedy.runner import StepContext
from dvremedy.settings import Settings
from dvremedy.steps.admission import admit, counter_key, decide

from oslo_config import cfg
from python_runner.python_action_wrapper import ActionService
from st2common import config as st2_config

from st2local.keys import KeyServer

NOON = datetime.datetime(2026, 11, 25, 12, 30)


def context(**automatic):
    return StepContext(Settings({"cloud": "lab", "automatic": automatic}))


class Wrapper(object):
    """What st2's ActionService reads from its PythonActionWrapper."""
    _pack, _class_name, _log_level = "dangling_volume", "Admit", "debug"


@pytest.fixture
def store(tmp_path, monkeypatch):
    server = KeyServer(str(tmp_path / "ds.json"))
    # st2's [auth] options exist only once st2's config registered them (another module's
    # import did that when this file ran after it; alone it failed with NoSuchGroupError)
    st2_config.register_opts(ignore_errors=True)
    cfg.CONF.set_override("api_url", server.start()[:-len("/v1")], group="auth")
    monkeypatch.setenv("ST2_ACTION_AUTH_TOKEN", server.token)
    yield ActionService(Wrapper())
    cfg.CONF.clear_override("api_url", group="auth")
    server.stop()


class DeadStore:
    """st2's ActionService when the API does not answer: get -> None, set -> None."""

    def get_value(self, name, local=True, **_):
        return None

    def set_value(self, name, value, ttl=None, local=True, **_):
        return None


def test_decide_is_pure_and_names_the_setting():
    assert decide("manual", 99, 0)[0] is True
    assert decide("automatic", 2, 3) == (True, "automatic run 3 of at most 3 this hour")
    admitted, why = decide("automatic", 3, 3)
    assert not admitted and "automatic.max_per_hour is 3" in why
    assert not decide("automatic", 0, 0)[0]


def test_counts_per_clock_hour_with_a_global_key(store):
    ctx = context(max_per_hour=2)
    first = admit(ctx, store, "automatic", {"source": "sensor"}, "stanley", "e1", now=NOON)
    assert first["admitted"] and first["count"] == 1 and first["changed"]
    assert first["counter"] == "dangling_volume.automatic_remedies.20261125T12"
    assert store.get_value(counter_key(NOON), local=False) == "1"
    assert admit(ctx, store, "automatic", now=NOON)["admitted"]
    third = admit(ctx, store, "automatic", now=NOON)
    assert not third["admitted"] and third["count"] == 2 and not third["changed"]
    next_hour = NOON + datetime.timedelta(hours=1)
    assert admit(ctx, store, "automatic", now=next_hour)["count"] == 1


def test_a_datastore_that_does_not_answer_closes_the_gate():
    result = admit(context(max_per_hour=5), DeadStore(), "automatic", now=NOON)
    assert not result["admitted"] and "did not take the hourly counter" in result["did"]


def test_an_unreadable_counter_counts_as_full(store):
    store.set_value(counter_key(NOON), "garbage", local=False)
    assert not admit(context(max_per_hour=5), store, "automatic", now=NOON)["admitted"]


def test_approval_settings_and_origin():
    result = admit(context(pre_approved=False, approval_route="ops", approval_ttl=5),
                   DeadStore(), "manual", None, "alice", "e9")
    assert result["admitted"] and result["approval"] == {"required": False, "route": "ops",
                                                         "ttl": 5}
    assert result["triggered_by"] == {"source": "operator", "user": "alice",
                                      "execution_id": "e9"}
    store = DeadStore()
    auto = admit(context(pre_approved=True), store, "automatic", {"source": "sweep"})
    assert auto["approval"]["required"] is False and auto["triggered_by"]["source"] == "sweep"


@pytest.mark.parametrize("mode,origin", [("auto", None), ("automatic", "sensor")])
def test_bad_input_is_refused(mode, origin):
    with pytest.raises(InputError):
        admit(context(), DeadStore(), mode, origin)
