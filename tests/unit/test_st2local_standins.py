"""The st2 stand-ins (tests/st2_standins) meet the contract of ../shared/reference/stackstorm.md
§2 (PackConfigDict), §4 (Action) and §5 (sensors). Where the real st2 is installed these tests
run against it instead, and must pass unchanged. Python 3.8 and 3.11."""
import abc
import importlib.util
import io
import logging
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STANDINS = os.path.join(REPO, "tests", "st2_standins")
if importlib.util.find_spec("st2common") is None and STANDINS not in sys.path:
    sys.path.append(STANDINS)  # the real st2 wins where it is installed

from st2common.runners.base_action import Action  # noqa: E402
from st2reactor.sensor import base as sensor_base  # noqa: E402
from st2reactor.sensor.base import PollingSensor, Sensor  # noqa: E402

SENSOR_METHODS = {"setup", "run", "cleanup", "add_trigger", "update_trigger", "remove_trigger"}


class Wrapper(object):
    _pack = "mypack"
    _class_name = "Greet"
    _log_level = "info"


class Service(object):
    _action_wrapper = Wrapper()


class Greet(Action):
    def run(self, name="x"):
        self.logger.info("hello %s", name)
        self.logger.debug("not shown at info")
        return name


def test_action_run_is_abstract():
    assert Action.__abstractmethods__ == frozenset({"run"})

    class NoRun(Action):
        pass

    with pytest.raises(TypeError):
        NoRun()


def test_action_sets_config_service_and_logger():
    service = Service()
    action = Greet(config={"a": 1}, action_service=service)
    assert action.action_service is service
    assert isinstance(action.config, dict)
    assert action.config["a"] == 1
    assert action.config.get("b", "dflt") == "dflt"
    assert action.logger.name == "actions.python.Greet"
    assert Greet().config == {}


def test_missing_config_key_raises_value_error_naming_pack_and_key():
    action = Greet(config={"a": 1}, action_service=Service())
    with pytest.raises(ValueError) as err:
        action.config["cloud"]
    message = str(err.value)
    assert 'pack "mypack"' in message and 'key "cloud"' in message
    assert "mypack.yaml" in message
    with pytest.raises(ValueError):
        Greet(config=None).config["anything"]  # no service: pack "unknown", still ValueError


def test_logger_writes_to_stderr_with_st2_format(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)

    class Fmt(Action):  # a fresh class: its logger (and handler) is made now, on `stream`
        def run(self):
            self.logger.warning("careful")
            return True

    class FmtWrapper(Wrapper):
        _log_level = "warning"

    class FmtService(object):
        _action_wrapper = FmtWrapper()

    action = Fmt(action_service=FmtService())
    action.logger.info("below the level")
    action.run()
    assert stream.getvalue() == "actions.python.Fmt: WARNING  careful\n"
    assert action.logger.level == logging.WARNING


def test_base_sensor_has_exactly_six_abstract_methods():
    assert set(sensor_base.BaseSensor.__abstractmethods__) == SENSOR_METHODS
    assert set(Sensor.__abstractmethods__) == SENSOR_METHODS
    assert set(PollingSensor.__abstractmethods__) == (SENSOR_METHODS - {"run"}) | {"poll"}
    assert isinstance(Sensor, abc.ABCMeta)


class NoOpHooks(object):
    """The sensor contract's methods these tests do not exercise."""

    def setup(self):
        pass

    def cleanup(self):
        pass

    def add_trigger(self, trigger):
        pass

    def update_trigger(self, trigger):
        pass

    def remove_trigger(self, trigger):
        pass


class Passive(NoOpHooks, Sensor):
    def run(self):
        return "ran"


def test_sensor_keeps_service_and_config():
    service = object()
    sensor = Passive(sensor_service=service, config={"k": "v"})
    assert sensor.sensor_service is service and sensor.config == {"k": "v"}
    assert Passive(service).config == {}

    class Incomplete(Sensor):
        def run(self):
            pass

    with pytest.raises(TypeError):
        Incomplete(service)


class Stop(Exception):
    pass


class Poller(NoOpHooks, PollingSensor):
    def __init__(self, *args, **kwargs):
        super(Poller, self).__init__(*args, **kwargs)
        self.polls = 0

    def poll(self):
        self.polls += 1
        if self.polls == 3:
            raise Stop()


def test_polling_sensor_loop_polls_then_sleeps_the_interval(monkeypatch):
    sleeps = []
    monkeypatch.setattr(sensor_base.concurrency, "sleep", sleeps.append)
    sensor = Poller(sensor_service=None, config=None)
    assert sensor.get_poll_interval() == 5
    sensor.set_poll_interval(30)
    assert sensor.get_poll_interval() == 30
    with pytest.raises(Stop):
        sensor.run()
    assert sensor.polls == 3
    assert sleeps == [30, 30]
    assert Poller(None, None, poll_interval=7).get_poll_interval() == 7
