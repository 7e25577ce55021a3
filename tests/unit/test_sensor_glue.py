"""sensors/nova_detach_sensor.py and .yaml: the st2 glue, without st2tests (which eventlet-
patches the process: the st2tests-based sensor tests are tests/test_nova_detach_sensor.py, in a
pytest run of their own). The sensor contract of docs/stackstorm.md, "What a sensor process
sees" (one class on st2's real Sensor base, six methods, the YAML st2 registers, the trigger ref
with the pack prefix), the payload schema the YAML declares equal to the one the code builds
payloads for, a configured sensor's consumer on real sockets with st2's logger names, and an
import with only what a sensor process has on its path (never actions/lib)."""
import inspect
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import yaml

from testsupport import sensor_service as recording  # not st2tests: see its header
import consumer_messages as cm
import nova_consumer as nc
import nova_detach_events as nde
import nova_detach_sensor
from st2reactor.sensor.base import Sensor

SENSOR_METHODS = ("setup", "run", "cleanup", "add_trigger", "update_trigger", "remove_trigger")
# SensorTypeAPI's schema (additionalProperties: False): the keys a sensor YAML may have
SENSOR_KEYS = {"name", "pack", "description", "artifact_uri", "entry_point", "enabled",
               "trigger_types", "poll_interval", "metadata_file", "class_name", "uid", "ref",
               "id"}
TRIGGER_KEYS = {"name", "description", "payload_schema", "parameters_schema", "tags",
                "metadata_file", "pack"}


def load_yaml():
    with open(os.path.join(recording.SENSORS_DIR, "nova_detach_sensor.yaml")) as f:
        return yaml.safe_load(f)


def test_yaml_is_what_st2_registers():
    meta = load_yaml()
    assert set(meta) <= SENSOR_KEYS
    assert meta["class_name"] == "NovaDetachSensor" and meta["enabled"] is True
    assert meta["description"].strip()
    entry = os.path.join(recording.SENSORS_DIR, meta["entry_point"])
    assert os.path.isfile(entry) and entry.endswith("nova_detach_sensor.py")
    [trigger] = meta["trigger_types"]
    assert set(trigger) <= TRIGGER_KEYS and trigger["description"].strip()
    assert "%s.%s" % (recording.PACK, trigger["name"]) == cm.TRIGGER_REF == recording.TRIGGER_REF
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
    service = recording.detach_failed_service(datastore_path=tmp_path / "kv.json")
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
    assert all(r.name.startswith("st2.SensorWrapper.dangling_volume.NovaDetachSensor.")
               for r in caplog.records if "Connection refused" in r.getMessage())


def test_imports_with_only_what_a_sensor_process_sees():
    """sensors/ (st2's loader adds the file's directory), site-packages and st2 (the pack
    venv's .pth); never actions/lib, which st2 does not give a sensor, nor any test support.
    The child gets sensors/ through PYTHONPATH (nothing else of this process's path), from /."""
    code = ("import sys, nova_detach_sensor, st2reactor.sensor.base as base; "
            "print(nova_detach_sensor.NovaDetachSensor.__mro__[1] is base.Sensor); "
            "print(base.__file__); import eventlet.patcher as p; "
            "print(p.is_monkey_patched('socket') or p.is_monkey_patched('thread')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dvremedy', 'lib', 'st2local', 'nova_wire', 'testsupport', 'st2tests')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = recording.SENSORS_DIR
    out = subprocess.run([sys.executable, "-s", "-c", code], capture_output=True, text=True,
                         timeout=60, env=env, cwd="/")
    assert out.returncode == 0, out.stderr
    is_real, base_file, patched, support = out.stdout.strip().splitlines()
    assert is_real == "True"
    assert patched == "False"  # st2's Sensor base does not eventlet-patch on import
    assert "/site-packages/st2reactor/" in base_file, base_file  # st2's, no stand-in
    assert support == "[]"
