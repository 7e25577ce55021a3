"""A test double for st2's SensorService (StackStorm/st2:st2reactor/st2reactor/container/
sensor_wrapper.py @v3.9.0, `SensorService`), with the semantics the pack depends on, as
../shared/reference/stackstorm.md §5 states them:

- dispatch(trigger, payload=None, trace_tag=None) goes through dispatch_with_context(), which,
  like st2's TriggerDispatcherService with `[system] validate_trigger_payload = True` and
  `throw_on_validation_error=False`, VALIDATES the payload against the trigger type's
  payload_schema with st2's validator (draft-4 keywords, draft-3 `required: true` per
  property: st2common util/schema CustomValidator) and, when it is invalid or the trigger type
  is unknown, logs a warning and drops it. Unlike st2 it also records the drop in `invalid`, so
  a test can assert that nothing invalid was ever dispatched (st2 would drop it silently);
- get_logger(name) -> logging.Logger "SensorWrapper.<pack>.<Class>.<name>";
- get_value / set_value(ttl=...) / delete_value / list_values with the "<pack>.<ClassName>:"
  prefix for local keys, scope "system" only: tools/st2local/datastore.py DatastoreService over a
  JSON file (so two sensor instances given the same file share it, as two st2 sensor processes
  share st2's datastore);
- get_user_info().

Not st2: no MongoDB, no message bus, no trace database. The recorded dispatches are in
`dispatched` ({"trigger", "payload", "trace_context"}); fail_next_dispatches(n) makes the next n
dispatches raise, as st2's publisher does when its own RabbitMQ is unreachable.

put_sensors_on_path() gives a test what a sensor process has: sensors/ first (st2's loader adds
the sensor file's directory), and tests/st2_standins only when the real st2reactor cannot be
imported, so where st2 is installed the real Sensor base class is the one tested."""
import importlib.util
import logging
import os
import sys
import tempfile
import threading
import time

import jsonschema
import jsonschema.validators

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK = "dangling_volume"
SENSORS_DIR = os.path.join(REPO, "sensors")
STANDINS = os.path.join(REPO, "tests", "st2_standins")
TRIGGER_REF = PACK + ".detach_failed"


def put_sensors_on_path():
    if SENSORS_DIR not in sys.path:
        sys.path.insert(0, SENSORS_DIR)
    if importlib.util.find_spec("st2reactor") is None and STANDINS not in sys.path:
        sys.path.append(STANDINS)  # the real st2 wins where it is installed


def detach_failed_service(**kwargs):
    """A SensorService knowing dangling_volume.detach_failed with the schema the sensor YAML
    declares (read from the YAML, so the double validates what st2 would register)."""
    import yaml
    with open(os.path.join(SENSORS_DIR, "nova_detach_sensor.yaml")) as f:
        meta = yaml.safe_load(f)
    types = {"%s.%s" % (PACK, t["name"]): t.get("payload_schema") or {}
             for t in meta["trigger_types"]}
    return SensorService(types, class_name=meta["class_name"], **kwargs)


def _load_datastore_module():
    # By path, as tools/st2local/action_wrapper.py does: the st2local package's __init__ pulls
    # in its runner, which a sensor test has no use for.
    path = os.path.join(REPO, "tools", "st2local", "datastore.py")
    spec = importlib.util.spec_from_file_location("st2local_datastore_for_sensors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_datastore = _load_datastore_module()


def _required(validator, required, instance, schema):
    """Draft-4 `required` (a list) where it is one; a draft-3 boolean is the job of
    `properties` (properties_draft3), as in st2's CustomValidator."""
    if isinstance(required, bool):
        return
    for error in jsonschema.Draft4Validator.VALIDATORS["required"](
            validator, required, instance, schema):
        yield error


St2PayloadValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator,
    {"properties": jsonschema.Draft3Validator.VALIDATORS["properties"], "required": _required})


def payload_errors(payload, payload_schema):
    """What st2 would find wrong with a trigger payload (empty: it would dispatch it)."""
    validator = St2PayloadValidator(payload_schema)
    return ["%s: %s" % ("/".join(str(p) for p in e.path) or "(payload)", e.message)
            for e in validator.iter_errors(payload)]


class SensorService:
    def __init__(self, trigger_types, class_name="NovaDetachSensor", pack=PACK,
                 datastore_path=None):
        """trigger_types: {"<pack>.<name>": payload_schema}."""
        self.pack, self.class_name = pack, class_name
        self.trigger_types = dict(trigger_types)
        if datastore_path is None:
            datastore_path = os.path.join(tempfile.mkdtemp(prefix="st2-sensor-kv-"), "kv.json")
        self.datastore_path = str(datastore_path)
        self._logger = self.get_logger("SensorService")
        self.datastore_service = _datastore.DatastoreService(
            self.datastore_path, pack, class_name, logger=self.get_logger("DatastoreService"))
        self.dispatched = []  # what st2 would have turned into trigger instances
        self.invalid = []     # what st2 would have dropped (with a warning)
        self._failures_to_inject = []
        self._changed = threading.Condition()

    # -- logging and user

    def get_logger(self, name):
        return logging.getLogger("SensorWrapper.%s.%s.%s" % (self.pack, self.class_name, name))

    def get_user_info(self):
        return self.datastore_service.get_user_info()

    # -- dispatch

    def dispatch(self, trigger, payload=None, trace_tag=None):
        trace_context = {"trace_tag": trace_tag} if trace_tag else None
        return self.dispatch_with_context(trigger, payload=payload, trace_context=trace_context)

    def dispatch_with_context(self, trigger, payload=None, trace_context=None):
        with self._changed:
            if self._failures_to_inject:
                raise self._failures_to_inject.pop(0)
        schema = self.trigger_types.get(trigger)
        errors = (["trigger type %r does not exist" % trigger] if schema is None
                  else payload_errors(payload, schema))
        with self._changed:
            if errors:
                self._logger.warning('Failed to validate payload (%s) for trigger "%s": %s',
                                     payload, trigger, "; ".join(errors))
                self.invalid.append({"trigger": trigger, "payload": payload, "errors": errors})
            else:
                self.dispatched.append({"trigger": trigger, "payload": payload,
                                        "trace_context": trace_context})
            self._changed.notify_all()
        return None

    def fail_next_dispatches(self, count, exc_type=ConnectionError):
        with self._changed:
            self._failures_to_inject.extend(
                exc_type("st2 message bus unreachable (injected)") for _ in range(count))

    def payloads(self, trigger=None):
        with self._changed:
            return [d["payload"] for d in self.dispatched
                    if trigger is None or d["trigger"] == trigger]

    def wait_for(self, predicate, timeout):
        """Wait until predicate(list of dispatched payloads) holds; returns the payloads."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                payloads = [d["payload"] for d in self.dispatched]
                if predicate(payloads):
                    return payloads
                left = deadline - time.monotonic()
                if left <= 0:
                    return payloads
                self._changed.wait(min(left, 0.2))

    # -- datastore (st2's prefix and scope rules)

    def list_values(self, local=True, prefix=None):
        return self.datastore_service.list_values(local=local, prefix=prefix)

    def get_value(self, name, local=True, scope="system", decrypt=False):
        return self.datastore_service.get_value(name, local=local, scope=scope, decrypt=decrypt)

    def set_value(self, name, value, ttl=None, local=True, scope="system", encrypt=False):
        return self.datastore_service.set_value(name, value, ttl=ttl, local=local, scope=scope,
                                                encrypt=encrypt)

    def delete_value(self, name, local=True, scope="system"):
        return self.datastore_service.delete_value(name, local=local, scope=scope)
