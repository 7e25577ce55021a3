"""sensors/nova_detach_sensor.py and .yaml: the st2 glue. The sensor contract of
../shared/reference/stackstorm.md §5 (one class, six methods, the YAML st2 registers, the
trigger ref with the pack prefix), the payload schema the YAML declares equal to the one the
code builds payloads for, idling on an empty or broken config, and an import with only what a
sensor process has on its path (never actions/lib)."""
import inspect
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml

import st2_sensor_service as st2svc

st2svc.put_sensors_on_path()
import nova_consumer as nc  # noqa: E402
import nova_detach_events as nde  # noqa: E402
import nova_detach_sensor  # noqa: E402
from st2reactor.sensor.base import Sensor  # noqa: E402

SENSOR_METHODS = ("setup", "run", "cleanup", "add_trigger", "update_trigger", "remove_trigger")
# SensorTypeAPI's schema (additionalProperties: False): the keys a sensor YAML may have
SENSOR_KEYS = {"name", "pack", "description", "artifact_uri", "entry_point", "enabled",
               "trigger_types", "poll_interval", "metadata_file", "class_name", "uid", "ref",
               "id"}
TRIGGER_KEYS = {"name", "description", "payload_schema", "parameters_schema", "tags",
                "metadata_file", "pack"}


def load_yaml():
    with open(os.path.join(st2svc.SENSORS_DIR, "nova_detach_sensor.yaml")) as f:
        return yaml.safe_load(f)


def test_yaml_is_what_st2_registers():
    meta = load_yaml()
    assert set(meta) <= SENSOR_KEYS
    assert meta["class_name"] == "NovaDetachSensor" and meta["enabled"] is True
    assert meta["description"].strip()
    entry = os.path.join(st2svc.SENSORS_DIR, meta["entry_point"])
    assert os.path.isfile(entry) and entry.endswith("nova_detach_sensor.py")
    [trigger] = meta["trigger_types"]
    assert set(trigger) <= TRIGGER_KEYS and trigger["description"].strip()
    assert "%s.%s" % (st2svc.PACK, trigger["name"]) == nc.TRIGGER_REF == st2svc.TRIGGER_REF
    assert "poll_interval" not in meta  # a passive sensor


def test_yaml_payload_schema_equals_the_one_payloads_are_built_for():
    [trigger] = load_yaml()["trigger_types"]
    assert trigger["payload_schema"] == nde.TRIGGER_PAYLOAD_SCHEMA


def test_one_class_with_the_six_sensor_methods():
    classes = [c for _, c in inspect.getmembers(nova_detach_sensor, inspect.isclass)
               if c.__module__ == nova_detach_sensor.__name__]
    assert classes == [nova_detach_sensor.NovaDetachSensor]
    cls = classes[0]
    assert issubclass(cls, Sensor) and not getattr(cls, "__abstractmethods__", None)
    for name in SENSOR_METHODS:
        assert name in cls.__dict__, "%s is not implemented on the class itself" % name


def make_sensor(tmp_path, notifications):
    service = st2svc.detach_failed_service(datastore_path=tmp_path / "kv.json")
    config = {"notifications": notifications} if notifications is not None else {}
    sensor = nova_detach_sensor.NovaDetachSensor(service, config)
    sensor.setup()
    return sensor, service


def run_then_cleanup(sensor, settle=0.4):
    thread = threading.Thread(target=sensor.run, daemon=True)
    thread.start()
    time.sleep(settle)
    alive = thread.is_alive()
    began = time.monotonic()
    sensor.cleanup()
    thread.join(3)
    return alive, not thread.is_alive(), time.monotonic() - began


@pytest.mark.parametrize("notifications, says", [
    (None, "notifications.transport_url is empty"),
    ({"transport_url": ""}, "notifications.transport_url is empty"),
    ({"transport_url": "amqp://u:pw@h//", "detach_window": 0},
     "notifications.detach_window must be an integer >= 1"),
    ({"transport_url": "ftp://u:topsecret@h/"}, "notifications.transport_url"),
])
def test_an_unconfigured_sensor_idles_says_what_to_set_and_stops_on_cleanup(
        tmp_path, caplog, notifications, says):
    caplog.set_level(logging.INFO)
    sensor, service = make_sensor(tmp_path, notifications)
    alive, ended, took = run_then_cleanup(sensor)
    assert alive, "run() returned by itself: st2 would respawn it, twice at most"
    assert ended and took < 1.0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and says in errors[0]
    assert "st2ctl reload --register-configs" in errors[0]
    assert "topsecret" not in caplog.text
    assert service.dispatched == [] and service.invalid == []


def test_a_configured_sensor_runs_the_consumer_until_cleanup(tmp_path, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.INFO)
    sensor, _ = make_sensor(tmp_path, {"transport_url": "amqp://u:hidden-pw@127.0.0.1:%d//"
                                       % port, "connect_timeout": 1})
    assert isinstance(sensor._consumer, nc.NovaDetachConsumer)
    assert sensor._consumer.settings.transport_url.endswith("%d//" % port)
    alive, ended, took = run_then_cleanup(sensor, settle=0.3)
    assert alive and ended and took < 1.0
    assert "Connection refused" in caplog.text and "hidden-pw" not in caplog.text
    assert all(r.name.startswith("SensorWrapper.dangling_volume.NovaDetachSensor")
               for r in caplog.records if "Connection refused" in r.getMessage())


def test_trigger_hooks_accept_any_trigger(tmp_path):
    sensor, _ = make_sensor(tmp_path, None)
    trigger = {"id": "1", "ref": nc.TRIGGER_REF, "type": nc.TRIGGER_REF, "parameters": {}}
    for hook in (sensor.add_trigger, sensor.update_trigger, sensor.remove_trigger):
        assert hook(trigger) is None


def test_imports_with_only_what_a_sensor_process_sees():
    """sensors/ (the loader adds the file's directory), site-packages and st2 (or its stand-in
    here); never actions/lib, which st2 does not give a sensor."""
    paths = [st2svc.SENSORS_DIR]
    if st2svc.STANDINS in sys.path:
        paths.append(st2svc.STANDINS)
    code = ("import sys; sys.path[:0] = %r; import nova_detach_sensor; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dvremedy', 'lib', 'st2local', 'nova_wire', 'st2_sensor_service')))" % paths)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         timeout=60, env=env, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
