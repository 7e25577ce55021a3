"""Stand-in for StackStorm/st2:st2reactor/st2reactor/sensor/base.py @v3.9.0 (`BaseSensor`,
`Sensor`, `PollingSensor`).

On PYTHONPATH only when the real st2reactor cannot be imported (tests, lint); where st2 is
installed the real module wins and the suite must pass unchanged. Written from the contract in
../shared/reference/stackstorm.md §5:
- `BaseSensor.__init__(self, sensor_service, config=None)` sets `self.sensor_service` and
  `self.config` (and the older `_sensor_service`/`_config` aliases);
- six abstract methods: setup, run, cleanup, add_trigger, update_trigger, remove_trigger;
- `PollingSensor(sensor_service, config=None, poll_interval=5)`: abstract `poll()`;
  `run()` is `while True: poll(); sleep(poll_interval)`; get/set_poll_interval().
st2 sleeps through `st2common.util.concurrency.sleep` (eventlet under st2); here `concurrency` is
a small namespace with the same `sleep` name, so a test may patch `<module>.concurrency.sleep`
the same way on both.
"""
import abc
import time
import types

__all__ = ["Sensor", "PollingSensor"]

concurrency = types.SimpleNamespace(sleep=time.sleep)


class BaseSensor(abc.ABC):
    """Base of all sensors; not instantiated directly."""

    def __init__(self, sensor_service, config=None):
        self._sensor_service = sensor_service
        self.sensor_service = sensor_service
        self._config = config or {}
        self.config = self._config

    @abc.abstractmethod
    def setup(self):
        """Initialisation, before run()."""

    @abc.abstractmethod
    def run(self):
        """Run the sensor."""

    @abc.abstractmethod
    def cleanup(self):
        """Clean up when the sensor process exits."""

    @abc.abstractmethod
    def add_trigger(self, trigger):
        """A trigger of this sensor's types was created."""

    @abc.abstractmethod
    def update_trigger(self, trigger):
        """A trigger was updated."""

    @abc.abstractmethod
    def remove_trigger(self, trigger):
        """A trigger was deleted."""


class Sensor(BaseSensor):
    """Passive sensor: run() blocks (e.g. a consumer loop)."""

    @abc.abstractmethod
    def run(self):
        pass


class PollingSensor(BaseSensor):
    """Active sensor: poll() is called every poll_interval seconds."""

    def __init__(self, sensor_service, config=None, poll_interval=5):
        super(PollingSensor, self).__init__(sensor_service=sensor_service, config=config)
        self._poll_interval = poll_interval

    @abc.abstractmethod
    def poll(self):
        """Poll the third-party system once."""

    def run(self):
        while True:
            self.poll()
            concurrency.sleep(self._poll_interval)

    def get_poll_interval(self):
        return self._poll_interval

    def set_poll_interval(self, poll_interval):
        self._poll_interval = poll_interval
