"""st2's OWN ActionService (python_runner.python_action_wrapper, st2common.services.datastore,
st2client) against tools/pylib/st2local/keys.py, the loopback stand-in of st2's /v1/keys API:
key prefixes, scope, TTL, secrets, listing, deletion, the user, and one file shared by several
processes. StackStorm 3.9.0 (st2common); Python 3.8 and 3.11."""
import os
import subprocess
import sys
import textwrap
import time

import pytest
import st2common
from oslo_config import cfg
from python_runner.python_action_wrapper import ActionService

from st2local.keys import KeyFile, KeyServer

pytestmark = pytest.mark.skipif(not st2common.__version__.startswith("3.9"),
                                reason="written against StackStorm 3.9's ActionService")


class Wrapper(object):
    """What st2's ActionService reads from the PythonActionWrapper."""

    def __init__(self, class_name="Remedy", pack="dangling_volume"):
        self._pack, self._class_name, self._log_level = pack, class_name, "debug"


@pytest.fixture
def server(tmp_path, monkeypatch):
    server = KeyServer(str(tmp_path / "kv.json"), user="alice")
    url = server.start()
    cfg.CONF.set_override("api_url", url[:-len("/v1")], group="auth")
    monkeypatch.setenv("ST2_ACTION_AUTH_TOKEN", server.token)
    yield server
    cfg.CONF.clear_override("api_url", group="auth")
    server.stop()


def service(cls="Remedy"):
    return ActionService(Wrapper(cls))


def test_local_keys_get_the_pack_and_class_prefix(server):
    svc = service()
    assert svc.set_value("last", 42) is True
    assert server.store.get("dangling_volume.Remedy:last")["value"] == "42"  # str(value)
    assert svc.get_value("last") == "42"
    assert svc.get_value("last", local=False) is None
    assert svc.set_value("global_key", "g", local=False)
    assert server.store.get("global_key")["value"] == "g"
    assert svc.get_value("global_key", local=False) == "g"
    assert service("Other").get_value("last") is None


def test_only_system_scope(server):
    svc = service()
    for call in (lambda: svc.get_value("k", scope="user"),
                 lambda: svc.set_value("k", "v", scope="user"),
                 lambda: svc.delete_value("k", scope="st2kv.user")):
        with pytest.raises(ValueError, match="Scope .* is unsupported"):
            call()


def test_missing_keys_and_delete(server):
    svc = service()
    assert svc.get_value("nothing") is None
    assert svc.delete_value("nothing") is True  # st2client treats the API's 404 as done
    svc.set_value("x", "1")
    assert svc.delete_value("x") is True
    assert svc.get_value("x") is None


def test_ttl_expires_the_key(server):
    svc = service()
    svc.set_value("short", "v", ttl=1)
    svc.set_value("long", "v", ttl=60)
    assert svc.get_value("short") == "v"
    kvp = [k for k in svc.list_values() if k.name.endswith(":long")][0]
    assert kvp.ttl == 60 and kvp.expire_timestamp.endswith("Z")
    time.sleep(1.2)
    assert svc.get_value("short") is None
    assert svc.get_value("long") == "v"


def test_encrypted_values_need_decrypt(server):
    svc = service()
    svc.set_value("password", "s3cret", encrypt=True)
    opaque = svc.get_value("password")
    assert opaque != "s3cret" and opaque
    assert svc.get_value("password", decrypt=True) == "s3cret"
    assert [k.secret for k in svc.list_values()] == [True]


def test_list_values_local_and_prefix(server):
    svc = service()
    svc.set_value("fp.1", "a")
    svc.set_value("fp.2", "b")
    svc.set_value("other", "c")
    svc.set_value("fp.global", "d", local=False)
    assert [k.name for k in svc.list_values(prefix="fp.")] == [
        "dangling_volume.Remedy:fp.1", "dangling_volume.Remedy:fp.2"]
    assert [k.value for k in svc.list_values()] == ["a", "b", "c"]
    assert [k.name for k in svc.list_values(local=False, prefix="fp.")] == ["fp.global"]
    assert len(svc.list_values(local=False)) == 4
    assert len(svc.list_values(local=False, limit=2, offset=1)) == 2


def test_user_info_and_a_wrong_token_is_refused(server, monkeypatch):
    assert service().get_user_info()["username"] == "alice"
    monkeypatch.setenv("ST2_ACTION_AUTH_TOKEN", "not-the-token")
    svc = service()
    assert svc.get_value("anything") is None  # st2 logs the API error and returns None
    with pytest.raises(Exception, match="Unauthorized"):
        svc.set_value("k", "v")


def test_file_is_shared_and_locked_across_processes(tmp_path):
    path = str(tmp_path / "kv.json")
    script = textwrap.dedent("""
        import sys
        from st2local.keys import KeyFile
        store = KeyFile(%r)
        for i in range(25):
            store.set("%%s.%%d" %% (sys.argv[1], i), i)
    """ % path)
    procs = [subprocess.Popen([sys.executable, "-c", script, name]) for name in "abcd"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    assert len(KeyFile(path).list()) == 100  # no write lost to a concurrent read-modify-write
    assert os.path.exists(path + ".lock")
