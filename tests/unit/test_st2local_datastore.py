"""tools/st2local/datastore.py: st2's datastore rules (stackstorm.md §4) over a shared JSON file.
Python 3.8 and 3.11."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

from st2local.datastore import (ActionService, ActionWrapperInfo, Datastore,  # noqa: E402
                                DatastoreService)


@pytest.fixture
def store(tmp_path):
    return Datastore(str(tmp_path / "kv.json"))


def service(store, cls="Remedy", pack="dangling_volume"):
    return ActionService(ActionWrapperInfo(pack=pack, class_name=cls), store)


def test_local_keys_get_the_pack_and_class_prefix(store):
    svc = service(store)
    assert svc.set_value("last", 42) is True
    assert store.get("dangling_volume.Remedy:last")["value"] == "42"  # stored as str(value)
    assert svc.get_value("last") == "42"
    assert svc.get_value("last", local=False) is None
    assert svc.set_value("global_key", "g", local=False)
    assert store.get("global_key")["value"] == "g"
    assert svc.get_value("global_key", local=False) == "g"
    assert service(store, cls="Other").get_value("last") is None


def test_only_system_scope(store):
    svc = service(store)
    for call in (lambda: svc.get_value("k", scope="user"),
                 lambda: svc.set_value("k", "v", scope="user"),
                 lambda: svc.delete_value("k", scope="st2kv.user")):
        with pytest.raises(ValueError):
            call()


def test_missing_keys_and_delete(store):
    svc = service(store)
    assert svc.get_value("nothing") is None
    assert svc.delete_value("nothing") is False
    svc.set_value("x", "1")
    assert svc.delete_value("x") is True
    assert svc.get_value("x") is None


def test_ttl_expires_the_key(store):
    svc = service(store)
    svc.set_value("short", "v", ttl=1)
    svc.set_value("long", "v", ttl=60)
    assert svc.get_value("short") == "v"
    kvp = [k for k in svc.list_values() if k.name.endswith(":long")][0]
    assert kvp.ttl == 60 and kvp.expire_timestamp.endswith("Z")
    time.sleep(1.2)
    assert svc.get_value("short") is None
    assert svc.get_value("long") == "v"


def test_encrypted_values_need_decrypt(store):
    svc = service(store)
    svc.set_value("password", "s3cret", encrypt=True)
    opaque = svc.get_value("password")
    assert opaque != "s3cret" and opaque
    assert svc.get_value("password", decrypt=True) == "s3cret"
    assert [k.secret for k in svc.list_values()] == [True]


def test_list_values_local_and_prefix(store):
    svc = service(store)
    svc.set_value("fp.1", "a")
    svc.set_value("fp.2", "b")
    svc.set_value("other", "c")
    svc.set_value("fp.global", "d", local=False)
    assert [k.name for k in svc.list_values(prefix="fp.")] == [
        "dangling_volume.Remedy:fp.1", "dangling_volume.Remedy:fp.2"]
    assert [k.value for k in svc.list_values()] == ["a", "b", "c"]
    assert [k.name for k in svc.list_values(local=False, prefix="fp.")] == ["fp.global"]
    assert len(svc.list_values(local=False)) == 4


def test_user_info_and_service_shape(store):
    svc = service(store)
    assert svc.get_user_info()["username"] == "stanley"
    assert isinstance(svc.datastore_service, DatastoreService)
    assert svc._action_wrapper._pack == "dangling_volume"


def test_file_is_shared_and_locked_across_processes(tmp_path):
    path = str(tmp_path / "kv.json")
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from st2local.datastore import Datastore
        store = Datastore(%r)
        for i in range(25):
            store.set("%%s.%%d" %% (sys.argv[1], i), i)
    """ % (os.path.join(REPO, "tools"), path))
    procs = [subprocess.Popen([sys.executable, "-c", script, name]) for name in "abcd"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    names = [item["name"] for item in Datastore(path).list()]
    assert len(names) == 100  # no write lost to a concurrent read-modify-write
