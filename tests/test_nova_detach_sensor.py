"""The dangling_volume.detach_failed sensor (sensors/nova_detach_sensor.py) on st2tests'
BaseSensorTestCase, as st2-run-pack-tests runs Exchange pack tests: the class on st2's real
Sensor base instantiated with st2tests' MockSensorService (get_sensor_instance), setup() and
cleanup() without a broker, the idle path on a missing or broken config (what it logs through
the service's logger), and the dispatch path: a decoded Nova message fed to the consumer's
message handler dispatches dangling_volume.detach_failed once (assertTriggerDispatched), with a
payload st2 would accept (MockSensorService does not validate: st2's own validator does it
here against the schema the sensor YAML registers), and the dedup key lands in the datastore.

The consumer against a real RabbitMQ is the broker tier (tests/broker), which cannot use
st2tests: importing st2tests eventlet-patches the process. This file sits directly in tests/
(st2tests finds the pack at the test file's directory + ..) and runs in the st2tests pytest run
(`pytest tests/`)."""
import os
import threading
import time

import yaml
from st2common.util import schema as util_schema
from st2reactor.sensor.base import Sensor
from st2tests.base import BaseSensorTestCase

from dispatch_dedup import Deduplicator
import nova_consumer
import nova_detach_sensor
from testsupport import nova_wire as wire

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIGGER = "dangling_volume.detach_failed"


def _sensor_yaml():
    with open(os.path.join(REPO, "sensors", "nova_detach_sensor.yaml")) as f:
        return yaml.safe_load(f)


def st2_accepts(payload):
    """st2's payload check (validators/api/reactor.py validate_trigger_payload) against the
    payload_schema the sensor YAML registers; raises what st2 would log before dropping it."""
    [trigger] = _sensor_yaml()["trigger_types"]
    util_schema.validate(instance=payload, schema=trigger["payload_schema"],
                         cls=util_schema.CustomValidator, use_default=True,
                         allow_default_none=True)
    return True


class Message:
    """What the consumer's handler uses of a kombu Message (the broker tier uses real ones)."""

    def __init__(self, body, routing_key):
        self.body = body
        self.delivery_info = {"routing_key": routing_key, "redelivered": False}
        self.properties = {"content_type": "application/json"}
        self.state = None

    def ack(self):
        self.state = "acked"

    def reject(self, requeue=False):
        self.state = "requeued" if requeue else "rejected"


class TestNovaDetachSensor(BaseSensorTestCase):
    sensor_cls = nova_detach_sensor.NovaDetachSensor

    def configured(self, **notifications):
        settings = dict({"transport_url": "amqp://nova:hidden-pw@127.0.0.1:1//",
                         "connect_timeout": 1}, **notifications)
        sensor = self.get_sensor_instance(config={"notifications": settings})
        sensor.setup()
        return sensor

    def logged(self, level):
        return [call.args[0] % call.args[1:] if len(call.args) > 1 else call.args[0]
                for call in getattr(self.sensor_service.get_logger("x"), level).call_args_list]

    def test_instantiated_on_st2s_sensor_base_with_the_service_and_config(self):
        config = {"notifications": {"transport_url": ""}}
        sensor = self.get_sensor_instance(config=config)
        self.assertIsInstance(sensor, Sensor)
        self.assertIs(sensor.sensor_service, self.sensor_service)
        self.assertEqual(sensor.config, config)
        self.assertIsNone(sensor.consumer)  # nothing happens before setup()

    def test_an_unconfigured_sensor_idles_says_what_to_set_and_stops_on_cleanup(self):
        for notifications, says in [
                (None, "notifications.transport_url is empty"),
                ({"transport_url": ""}, "notifications.transport_url is empty"),
                ({"transport_url": "amqp://u:pw@h//", "detach_window": 0},
                 "notifications.detach_window must be an integer >= 1"),
                ({"transport_url": "ftp://u:topsecret@h/"}, "notifications.transport_url")]:
            with self.subTest(notifications=notifications):
                self.setUp()  # a fresh MockSensorService (and its mock logger) each time
                config = {"notifications": notifications} if notifications is not None else {}
                sensor = self.get_sensor_instance(config=config)
                sensor.setup()
                self.assertIsNone(sensor.consumer)
                thread = threading.Thread(target=sensor.run, daemon=True)
                thread.start()
                time.sleep(0.3)
                self.assertTrue(thread.is_alive(), "run() returned by itself: st2 would "
                                "respawn it, twice at most")
                began = time.monotonic()
                sensor.cleanup()
                thread.join(3)
                self.assertFalse(thread.is_alive())
                self.assertLess(time.monotonic() - began, 1.0)
                [error] = self.logged("error")
                self.assertIn(says, error)
                self.assertIn("st2ctl reload --register-configs", error)
                self.assertNotIn("topsecret", " ".join(self.logged("error") +
                                                       self.logged("warning")))
                self.assertEqual(self.get_dispatched_triggers(), [])

    def test_setup_builds_the_consumer_without_connecting_and_cleanup_needs_no_run(self):
        sensor = self.configured(detach_window=30)
        self.assertIsInstance(sensor.consumer, nova_consumer.NovaDetachConsumer)
        self.assertEqual(sensor.consumer.settings.detach_window, 30)
        self.assertFalse(sensor.consumer.connected.is_set())
        began = time.monotonic()
        sensor.cleanup()
        self.assertLess(time.monotonic() - began, 1.0)

    def test_a_failed_detach_is_dispatched_once_with_a_payload_st2_accepts(self):
        sensor = self.configured()
        server, volume = wire.new_id(), wire.new_id()
        body = wire.v2(wire.legacy_error(server, volume, "compute-7"))
        message = Message(body, wire.ERROR_LEGACY)
        sensor.consumer._on_message(message)
        self.assertEqual(message.state, "acked")
        dispatched = self.get_last_dispatched_trigger()
        payload = dispatched["payload"]
        self.assertEqual((payload["server_id"], payload["volume_id"], payload["host"]),
                         (server, volume, "compute-7"))
        self.assertTrue(self.assertTriggerDispatched(trigger=TRIGGER, payload=payload))
        self.assertTrue(st2_accepts(payload))
        # the same failure again (a retrying user): acked, not dispatched a second time
        again = Message(wire.v2(wire.legacy_error(server, volume, "compute-7")),
                        wire.ERROR_LEGACY)
        sensor.consumer._on_message(again)
        self.assertEqual(again.state, "acked")
        self.assertEqual(len(self.get_dispatched_triggers()), 1)
        # remembered in st2's datastore through the sensor service, under the class's prefix
        [kvp] = self.sensor_service.list_values(local=True,
                                                prefix=Deduplicator.KEY_PREFIX)
        self.assertEqual(kvp.name, "tests.NovaDetachSensor:%s"
                         % Deduplicator.key(server, volume))
        sensor.cleanup()

    def test_messages_that_are_not_failed_detaches_dispatch_nothing(self):
        sensor = self.configured()
        for body, key in [
                (wire.v2(wire.instance_update()), wire.INFO_V),
                (wire.v2(wire.legacy_volume_detached(wire.new_id(), wire.new_id())),
                 wire.INFO_LEGACY)]:
            message = Message(body, key)
            sensor.consumer._on_message(message)
            self.assertEqual(message.state, "acked")
        self.assertEqual(self.get_dispatched_triggers(), [])
        sensor.cleanup()

    def test_trigger_hooks_accept_any_trigger(self):
        sensor = self.get_sensor_instance(config={})
        sensor.setup()
        trigger = {"id": "1", "ref": TRIGGER, "type": TRIGGER, "parameters": {}}
        for hook in (sensor.add_trigger, sensor.update_trigger, sensor.remove_trigger):
            self.assertIsNone(hook(trigger))
        sensor.cleanup()
