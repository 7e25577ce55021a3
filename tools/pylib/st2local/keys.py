"""HOME-MADE stand-in for st2's API key endpoints (st2api /v1/keys: MongoDB behind it), so that
st2's OWN ActionService (st2common.services.datastore, st2client) serves every action. KeyServer:
a loopback HTTP server with what st2client's KeyValuePair manager and get_user_info() call: GET
/v1/keys?prefix=&limit=&offset=, GET|PUT|DELETE /v1/keys/<name> (decrypt, ttl, secret), GET
/v1/user; the run's X-Auth-Token required; scope system only. KeyFile: the keys in one JSON file
{name: {name, value, secret, ttl, expire_at}} under an fcntl lock, shared by every process and
run. Secrets are NOT encrypted: stored plain, shown hex-encoded unless decrypted (st2 shows
ciphertext); keep real secrets out of local runs."""
import binascii
import contextlib
import datetime
import fcntl
import json
import os
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def default_path(pack_name):
    """$ST2LOCAL_DATASTORE, else ~/.cache/st2local/<pack>.datastore.json."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.environ.get("ST2LOCAL_DATASTORE") or os.path.join(
        cache, "st2local", pack_name + ".datastore.json")


def opaque(value):
    return binascii.hexlify(str(value).encode("utf-8")).decode("ascii").upper()


class KeyFile(object):
    def __init__(self, path):
        self.path = os.path.abspath(path)

    @contextlib.contextmanager
    def _locked(self, write=False):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            with open(self.path, "a+") as f:
                f.seek(0)
                data = json.loads(f.read() or "{}")
            data = {k: v for k, v in data.items() if v.get("expire_at", 1e12) > time.time()}
            yield data
            if write:
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".kv-")
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)

    def get(self, name):
        with self._locked() as data:
            return data.get(name)

    def list(self, prefix=None):
        with self._locked() as data:
            return [data[k] for k in sorted(data) if not prefix or k.startswith(prefix)]

    def set(self, name, value, ttl=None, secret=False):
        item = {"name": name, "value": str(value), "secret": bool(secret)}
        if ttl:
            item.update(ttl=int(ttl), expire_at=time.time() + float(ttl))
        with self._locked(write=True) as data:
            data[name] = item
        return item

    def delete(self, name):
        with self._locked(write=True) as data:
            return data.pop(name, None) is not None


def api_item(item, decrypt=False):
    """An item as st2's KeyValuePairAPI shows it."""
    hide = item.get("secret") and not decrypt
    expire = item.get("expire_at")
    return {"id": item["name"], "name": item["name"], "scope": "st2kv.system", "ttl": item.get(
        "ttl"), "secret": item.get("secret", False), "encrypted": bool(hide),
        "value": opaque(item["value"]) if hide else item["value"], "expire_timestamp":
        datetime.datetime.utcfromtimestamp(expire).isoformat() + "Z" if expire else None}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, code, body=None):
        data = json.dumps(body).encode("utf-8") if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        server, url = self.server, urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        name = parts[2] if len(parts) == 3 and parts[:2] == ["v1", "keys"] else None
        missing = (404, {"faultstring": 'Resource with a name "%s" not found' % name})
        if self.headers.get("X-Auth-Token") != server.token:
            return self._reply(401, {"faultstring": "Unauthorized - invalid or missing token"})
        if query.get("scope", "system") not in ("system", "st2kv.system"):
            return self._reply(400, {"faultstring": "scope %s unsupported" % query["scope"]})
        if parts == ["v1", "user"] and self.command == "GET":
            return self._reply(200, {"username": server.user, "authentication": {
                "method": "authentication token", "location": "header"}, "impersonated": False,
                "is_service": False, "rbac": {"enabled": False, "roles": [], "is_admin": True}})
        if parts == ["v1", "keys"] and self.command == "GET":
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 0) or 0)
            items = server.store.list(query.get("prefix"))[offset:]
            return self._reply(200, [api_item(i) for i in items[:limit or None]])
        if name and self.command == "GET":
            item = server.store.get(name)
            return self._reply(*((200, api_item(item, query.get("decrypt") == "true"))
                                 if item else missing))
        if name and self.command == "PUT":
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            return self._reply(200, api_item(server.store.set(
                name, body.get("value"), body.get("ttl"), body.get("secret"))))
        if name and self.command == "DELETE":
            return self._reply(*((204,) if server.store.delete(name) else missing))
        return self._reply(404, {"faultstring": "st2local serves /v1/keys and /v1/user only"})

    do_GET = do_PUT = do_DELETE = _handle


class KeyServer(ThreadingHTTPServer):
    """The loopback server: start() -> its API URL (http://127.0.0.1:<port>/v1); .token."""
    daemon_threads = True

    def __init__(self, path, user="stanley"):
        super(KeyServer, self).__init__(("127.0.0.1", 0), _Handler)
        self.store, self.user, self.token = KeyFile(path), user, uuid.uuid4().hex
        self.url = "http://127.0.0.1:%d/v1" % self.server_address[1]

    def start(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self.url

    def stop(self):
        self.shutdown()
        self.server_close()


class KeyLookup(object):
    """{{ st2kv.system.x }} (st2's KeyValueLookup reads MongoDB): opaque secrets unless decrypt."""

    def __init__(self, store, prefix="", decrypt=False):
        self._store, self._prefix, self._decrypt = store, prefix, decrypt

    def __getattr__(self, name):
        return self[name] if not name.startswith("__") else object.__getattribute__(self, name)

    def __getitem__(self, name):
        key = self._prefix + name
        item = self._store.get(key) if self._store else None  # no store: the user scope
        if item is None:
            return KeyLookup(self._store, key + ".", self._decrypt)
        return opaque(item["value"]) if item.get("secret") and not self._decrypt else item["value"]

    def __str__(self):
        return ""
