"""A local stand-in for st2's key-value datastore, shared by every process of a local run.

st2 keeps keys in MongoDB behind its REST API; actions reach them through
`self.action_service.get_value/set_value/delete_value/list_values` (st2common/services/
datastore.py, ../shared/reference/stackstorm.md §4). Here the keys live in one JSON file,
read and written under an exclusive `fcntl.flock` on `<file>.lock`, so separate action processes
(and separate runs) see each other's writes. Semantics kept from st2:
- `local=True` (the default) prefixes the name with `"<pack>.<ClassName>:"`; `local=False` uses the
  name as given;
- only scope "system" (any other raises ValueError);
- values are stored as `str(value)`; `ttl` (seconds) expires the key;
- `get_value` of a missing or expired key returns None; `delete_value` of a missing key returns
  False; `set_value` returns True;
- `encrypt=True` marks the key secret: `get_value(..., decrypt=False)` then returns an opaque hex
  string (st2 returns ciphertext), `decrypt=True` the value. This is not encryption: the file
  holds the plain value, so keep real secrets out of local runs.
- `list_values(local=True, prefix=None)` returns KeyValuePair-like objects (`.name`, `.value`,
  `.scope`, `.secret`, `.ttl`, `.expire_timestamp`).
No third-party imports: tools/st2local/action_wrapper.py loads this file by path inside the action
process.
"""
import binascii
import contextlib
import datetime
import fcntl
import json
import logging
import os
import tempfile
import time

__all__ = ["Datastore", "DatastoreService", "ActionService", "ActionWrapperInfo",
           "KeyValuePair", "SYSTEM_SCOPE", "default_path"]

SYSTEM_SCOPE = "system"
KEY_SEPARATOR = ":"
ENV_PATH = "ST2LOCAL_DATASTORE"


def default_path(pack_name="dangling_volume"):
    """$ST2LOCAL_DATASTORE, else ~/.cache/st2local/<pack>.datastore.json (outside the repo)."""
    if os.environ.get(ENV_PATH):
        return os.environ[ENV_PATH]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "st2local", "%s.datastore.json" % pack_name)


def _opaque(value):
    return binascii.hexlify(value.encode("utf-8")).decode("ascii").upper()


class KeyValuePair(object):
    """What st2client's `keys.get_all()` items look like, reduced to the fields packs read."""

    def __init__(self, item):
        self.id = item["name"]
        self.name = item["name"]
        self.scope = item.get("scope", SYSTEM_SCOPE)
        self.secret = bool(item.get("secret"))
        self.value = _opaque(item["value"]) if self.secret else item["value"]
        self.ttl = item.get("ttl")
        expire = item.get("expire_at")
        self.expire_timestamp = (
            datetime.datetime.fromtimestamp(expire, datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if expire else None)

    def __repr__(self):
        return "<KeyValuePair name=%s,value=%s>" % (self.name, self.value)


class Datastore(object):
    """The JSON file, locked for every read-modify-write. Names are full key names."""

    def __init__(self, path=None):
        self.path = os.path.abspath(path or default_path())

    @contextlib.contextmanager
    def _locked(self):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
        with open(self.path + ".lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (IOError, OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".st2local-kv-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    @staticmethod
    def _live(data, now):
        return {k: v for k, v in data.items()
                if not v.get("expire_at") or v["expire_at"] > now}

    def get(self, name):
        with self._locked():
            return self._live(self._read(), time.time()).get(name)

    def set(self, name, value, ttl=None, secret=False, scope=SYSTEM_SCOPE):
        with self._locked():
            now = time.time()
            data = self._live(self._read(), now)
            item = {"name": name, "value": str(value), "scope": scope, "secret": bool(secret)}
            if ttl:
                item["ttl"] = int(ttl)
                item["expire_at"] = now + float(ttl)
            data[name] = item
            self._write(data)
        return True

    def delete(self, name):
        with self._locked():
            data = self._live(self._read(), time.time())
            if name not in data:
                return False
            del data[name]
            self._write(data)
        return True

    def list(self, prefix=None):
        with self._locked():
            data = self._live(self._read(), time.time())
        return [data[k] for k in sorted(data) if not prefix or k.startswith(prefix)]

    def clear(self):
        with self._locked():
            self._write({})


class DatastoreService(object):
    """st2's BaseDatastoreService over a local Datastore: the methods and key rules packs use."""

    def __init__(self, datastore, pack_name, class_name, logger=None, user="stanley"):
        if not isinstance(datastore, Datastore):
            datastore = Datastore(datastore)
        self._datastore = datastore
        self._pack_name = pack_name
        self._class_name = class_name
        self._user = user
        self._logger = logger or logging.getLogger("st2local.datastore")

    def _full_name(self, name, local):
        if local:
            return "%s.%s%s%s" % (self._pack_name, self._class_name, KEY_SEPARATOR, name)
        return name

    @staticmethod
    def _check_scope(scope):
        if scope != SYSTEM_SCOPE:
            raise ValueError("Scope %s is unsupported." % scope)

    def get_user_info(self):
        return {"username": self._user,
                "authentication": {"method": "st2local", "location": "local"},
                "rbac": {"enabled": False, "roles": [], "is_admin": True}}

    def list_values(self, local=True, prefix=None):
        if local:
            key_prefix = self._full_name("", True) + (prefix or "")
        else:
            key_prefix = prefix
        return [KeyValuePair(item) for item in self._datastore.list(prefix=key_prefix)]

    def get_value(self, name, local=True, scope=SYSTEM_SCOPE, decrypt=False):
        self._check_scope(scope)
        full = self._full_name(name, local)
        self._logger.debug("Retrieving value from the datastore (name=%s)", full)
        try:
            item = self._datastore.get(full)
        except Exception as exc:  # st2 logs API errors and returns None
            self._logger.exception("Exception retrieving value from datastore (name=%s): %s",
                                   full, exc)
            return None
        if not item:
            return None
        if item.get("secret") and not decrypt:
            return _opaque(item["value"])
        return item["value"]

    def set_value(self, name, value, ttl=None, local=True, scope=SYSTEM_SCOPE, encrypt=False):
        self._check_scope(scope)
        full = self._full_name(name, local)
        self._logger.debug("Setting value in the datastore (name=%s)", full)
        return self._datastore.set(full, str(value), ttl=ttl, secret=encrypt, scope=scope)

    def delete_value(self, name, local=True, scope=SYSTEM_SCOPE):
        self._check_scope(scope)
        full = self._full_name(name, local)
        self._logger.debug("Deleting value from the datastore (name=%s)", full)
        try:
            return self._datastore.delete(full)
        except Exception as exc:
            self._logger.exception("Exception deleting value from datastore (name=%s): %s",
                                   full, exc)
            return False


class ActionWrapperInfo(object):
    """What st2's Action base class reads from `action_service._action_wrapper`."""

    def __init__(self, pack, class_name, log_level="debug", file_path=None, user="stanley"):
        self._pack = pack
        self._class_name = class_name
        self._log_level = log_level
        self._file_path = file_path
        self._user = user


class ActionService(object):
    """st2's ActionService (the `action_service` an action is constructed with): datastore
    methods with the `"<pack>.<ClassName>:"` prefix rule, plus get_user_info()."""

    def __init__(self, action_wrapper, datastore):
        self._action_wrapper = action_wrapper
        self._datastore = datastore
        self._datastore_service = None

    @property
    def datastore_service(self):
        if self._datastore_service is None:
            wrapper = self._action_wrapper
            self._datastore_service = DatastoreService(
                self._datastore, wrapper._pack, wrapper._class_name,
                logger=logging.getLogger("actions.python.%s" % wrapper._class_name),
                user=getattr(wrapper, "_user", "stanley"))
        return self._datastore_service

    def get_user_info(self):
        return self.datastore_service.get_user_info()

    def list_values(self, local=True, prefix=None):
        return self.datastore_service.list_values(local=local, prefix=prefix)

    def get_value(self, name, local=True, scope=SYSTEM_SCOPE, decrypt=False):
        return self.datastore_service.get_value(name, local=local, scope=scope, decrypt=decrypt)

    def set_value(self, name, value, ttl=None, local=True, scope=SYSTEM_SCOPE, encrypt=False):
        return self.datastore_service.set_value(name, value, ttl=ttl, local=local, scope=scope,
                                                encrypt=encrypt)

    def delete_value(self, name, local=True, scope=SYSTEM_SCOPE):
        return self.datastore_service.delete_value(name, local=local, scope=scope)
