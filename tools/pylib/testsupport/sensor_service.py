"""A recording sensor service: what the sensor (sensors/nova_detach_sensor.py, the real class on
st2's real `st2reactor.sensor.base.Sensor`) is given in the tests that run it in a process of
their own with real threads and sockets: the broker tier (tests/broker, a real RabbitMQ), the
sensor's lab test (tests/lab/test_sensor_lab.py), the unit tests of the consumer
(tests/unit/test_sensor_consumer.py, test_sensor_glue.py) and bench/sensor_bench.py.

It stands in for st2tests' MockSensorService (st2tests/st2tests/mocks/sensor.py) and for st2's
own SensorService (st2reactor/st2reactor/container/sensor_wrapper.py @v3.9.0). Neither can be
used there:
- importing st2tests (st2tests.base, .sensors, .mocks) and st2reactor's sensor_wrapper runs
  eventlet's monkey_patch() on the whole process (socket, thread, os, time), and these tests
  need the unpatched ones: kombu against a real broker, the consumer in a real thread, sshd;
  the st2tests-based sensor tests run in a pytest run of their own (tests/test_*.py);
- st2's SensorService also needs MongoDB and st2's own RabbitMQ (TriggerDispatcherService).

What is st2's own code here: the payload check is st2's (validators/api/reactor.py
validate_trigger_payload validates with st2common.util.schema.validate, CustomValidator,
use_default and allow_default_none, which is called here), and the datastore methods are st2's
`st2common.services.datastore.BaseDatastoreService` (key prefix "<pack>.<Class>:", scope rules,
logging and returning None on errors), with its API client replaced by a JSON file (TTL kept),
so two sensor instances given the same file share it, as two st2 sensor processes share st2's
datastore. None of these imports patches the process (tests check it).

What st2 does that this records instead: dispatch() validates like st2 (with
`[system] validate_trigger_payload = True`, throw_on_validation_error=False): an invalid payload
or an unknown trigger type is logged as a warning and dropped; here the drop is also recorded in
`invalid`, so a test can assert nothing invalid was ever dispatched. Dispatched triggers are in
`dispatched` ({"trigger", "payload", "trace_context"}); fail_next_dispatches(n) makes the next
n dispatches raise, as st2's publisher does when its own RabbitMQ is unreachable. Logger names
are st2's: "st2.SensorWrapper.<pack>.<Class>.<name>"."""
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
import types

import yaml
from st2client.models.keyvalue import KeyValuePair
from st2common.constants.keyvalue import SYSTEM_SCOPE
from st2common.services.datastore import BaseDatastoreService
from st2common.util import schema as util_schema

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PACK = "dangling_volume"
SENSORS_DIR = os.path.join(REPO, "sensors")
TRIGGER_REF = PACK + ".detach_failed"
DEFAULT_PAGE_SIZE = 100  # st2's [api] max_page_size default


def payload_errors(payload, payload_schema):
    """What st2 finds wrong with a trigger payload (empty: it dispatches it), with st2's own
    validation call (validators/api/reactor.py validate_trigger_payload)."""
    try:
        util_schema.validate(instance=payload, schema=payload_schema,
                             cls=util_schema.CustomValidator, use_default=True,
                             allow_default_none=True)
    except Exception as exc:  # jsonschema.ValidationError, or a schema error
        return [str(getattr(exc, "message", exc))]
    return []


class JsonFileKeys:
    """The part of st2client's `client.keys` manager BaseDatastoreService uses, over one JSON
    file ({name: {"value", "scope", "secret", "expire_at"}}), locked for each operation."""

    def __init__(self, path):
        self.path = str(path)

    def _locked(self, change):
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    with open(self.path) as f:
                        data = json.load(f)
                except (OSError, ValueError):
                    data = {}
                now = time.time()
                data = {k: v for k, v in data.items()
                        if v.get("expire_at") is None or v["expire_at"] > now}
                result, changed = change(data)
                if changed:
                    tmp = self.path + ".tmp"
                    with open(tmp, "w") as f:
                        json.dump(data, f)
                    os.replace(tmp, self.path)
                return result
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _pair(name, item):
        kvp = KeyValuePair()
        kvp.id = kvp.name = name
        kvp.value = item["value"]
        kvp.scope = item.get("scope", SYSTEM_SCOPE)
        kvp.secret = item.get("secret", False)
        if item.get("expire_at") is not None:
            kvp.ttl = max(0, int(round(item["expire_at"] - time.time())))
        return kvp

    def get_by_id(self, id, params=None):  # noqa: A002 (st2client's signature)
        return self._locked(lambda data: (
            self._pair(id, data[id]) if id in data else None, False))

    def get_all(self, prefix=None, limit=None, offset=0):
        def read(data):
            names = sorted(n for n in data if not prefix or n.startswith(prefix))
            names = names[offset:offset + limit if limit else None]
            return [self._pair(n, data[n]) for n in names], False
        return self._locked(read)

    def update(self, instance):
        ttl = getattr(instance, "ttl", None)
        item = {"value": instance.value, "scope": getattr(instance, "scope", SYSTEM_SCOPE),
                "secret": bool(getattr(instance, "secret", False)),
                "expire_at": time.time() + ttl if ttl else None}

        def write(data):
            data[instance.name] = item
            return instance, True
        return self._locked(write)

    def delete(self, instance, params=None):
        def remove(data):
            if instance.name not in data:
                raise KeyError("Resource %s not found" % instance.name)  # st2client: 404
            del data[instance.name]
            return True, True
        return self._locked(remove)


class FileDatastoreService(BaseDatastoreService):
    """st2's BaseDatastoreService with a JSON file where st2's API would be."""

    def __init__(self, logger, pack_name, class_name, path, username="stanley"):
        super(FileDatastoreService, self).__init__(logger=logger, pack_name=pack_name,
                                                   class_name=class_name)
        self._username = username
        self._client = types.SimpleNamespace(
            keys=JsonFileKeys(path), get_user_info=self._user_info)

    def _user_info(self):
        return {"username": self._username, "authentication": {"method": "authentication token"},
                "rbac": {"enabled": False, "roles": [], "is_admin": True}}

    def get_api_client(self):
        return self._client

    def list_values(self, local=True, prefix=None, limit=None, offset=0):
        # st2 reads the default page size from its config ([api] max_page_size)
        return super(FileDatastoreService, self).list_values(
            local=local, prefix=prefix, limit=limit or DEFAULT_PAGE_SIZE, offset=offset)


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
        self.datastore_service = FileDatastoreService(
            self.get_logger("DatastoreService"), pack, class_name, self.datastore_path)
        self.dispatched = []  # what st2 would have turned into trigger instances
        self.invalid = []     # what st2 would have dropped (with a warning)
        self._failures_to_inject = []
        self._changed = threading.Condition()

    # -- logging and user

    def get_logger(self, name):
        # st2common.log.getLogger("SensorWrapper.<pack>.<Class>") + "." + name
        return logging.getLogger("st2.SensorWrapper.%s.%s.%s" % (self.pack, self.class_name,
                                                                 name))

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
        errors = (['Trigger type with reference "%s" doesn\'t exist in the database' % trigger]
                  if schema is None else payload_errors(payload, schema) if schema else [])
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

    # -- datastore: st2's BaseDatastoreService

    def list_values(self, local=True, prefix=None):
        return self.datastore_service.list_values(local=local, prefix=prefix)

    def get_value(self, name, local=True, scope=SYSTEM_SCOPE, decrypt=False):
        return self.datastore_service.get_value(name, local=local, scope=scope, decrypt=decrypt)

    def set_value(self, name, value, ttl=None, local=True, scope=SYSTEM_SCOPE, encrypt=False):
        return self.datastore_service.set_value(name, value, ttl=ttl, local=local, scope=scope,
                                                encrypt=encrypt)

    def delete_value(self, name, local=True, scope=SYSTEM_SCOPE):
        return self.datastore_service.delete_value(name, local=local, scope=scope)


def sensor_metadata():
    with open(os.path.join(SENSORS_DIR, "nova_detach_sensor.yaml")) as f:
        return yaml.safe_load(f)


def detach_failed_service(**kwargs):
    """A SensorService knowing dangling_volume.detach_failed with the schema the sensor YAML
    declares (read from the YAML, so it validates what st2 would register)."""
    meta = sensor_metadata()
    types_ = {"%s.%s" % (PACK, t["name"]): t.get("payload_schema") or {}
              for t in meta["trigger_types"]}
    return SensorService(types_, class_name=meta["class_name"], **kwargs)
