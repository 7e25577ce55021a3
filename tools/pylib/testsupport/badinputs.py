"""The bad-input table's support (tests/unit/test_bad_inputs.py, tests/lab/test_bad_inputs_lab.py).

Unit side: FakeCloud, a recording stand-in for the three views (Nova, Cinder, the hypervisor)
behind the pack's real steps. install() puts it where the steps reach the cloud (the lazy
adapters.cloud.connect, adapters.sshclient.SSHSession, the attachment-record listing), so the
steps run unchanged through dvremedy.runner.run_step. Every call is recorded; mutations() lists
the ones that would change something (any compute/block-storage call that is not a read, any
remote command that is not a read, any upload): a refused input must leave it empty.

Lab side: run() runs one action or the remedy through tools/st2-run, as test_pack_remedy does."""
import copy
import json
import os
import subprocess
import types
import uuid

from dvremedy.adapters.sshclient import CommandResult

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

# -- unit side: a recording fake cloud ----------------------------------------------------------

COMPUTE_READS = {"get_server", "find_server", "servers", "volume_attachments",
                 "get_volume_attachment", "services", "server_actions", "get_server_action",
                 "find_flavor", "get_flavor"}
VOLUME_READS = {"get_volume", "find_volume", "volumes", "attachments", "get_attachment",
                "list_attachments"}
NEUTRAL = {"close"}
# remote commands that only read: virsh dumpxml / list / domblklist, nova-manage get_connector
# and show; anything else (refresh, detach-disk, upload, rm) is a mutation
READ_WORDS = ({"dumpxml", "list", "domblklist", "domstate", "dominfo"},
              {"get_connector", "show"})


def _uid(n):
    return str(uuid.UUID(int=(0x5eed << 96) + n))


SERVER_A, SERVER_B, MISSING = _uid(1), _uid(2), _uid(99)
BOOT_A, DATA_A, STALE_A, BOOT_B, DATA_B, FREE = (_uid(n) for n in range(11, 17))
HOST, CONTROLLER = "cmp1", "ctl1"


def _not_found(what):
    from openstack import exceptions
    return exceptions.NotFoundException(message="%s could not be found" % what)


class FakeCloud(object):
    """Two servers on host cmp1: A (boot volume, a healthy data volume, a data volume with a
    stale Nova mapping whose Cinder record names B) and B (boot, data), and a free volume."""

    def __init__(self):
        self.calls = []
        self.servers, self.bdms, self.volumes, self.records, self.domains = {}, {}, {}, {}, {}
        for sid, n in ((SERVER_A, 1), (SERVER_B, 2)):
            self.servers[sid] = {"name": "srv%d" % n, "status": "ACTIVE", "task_state": None,
                                 "instance_name": "instance-%08x" % n}
            self.bdms[sid], self.domains["instance-%08x" % n] = {}, {"live": [], "config": []}
        self._attach(SERVER_A, BOOT_A, "vda", boot=True)
        self._attach(SERVER_A, DATA_A, "vdb")
        self._attach(SERVER_B, BOOT_B, "vda", boot=True)
        self._attach(SERVER_B, DATA_B, "vdb")
        # A: Nova still maps STALE_A (vdc), the disk is on A's domain, but Cinder's only record
        # of the volume is B's (reserved): the volume is held by server B
        self._attach(SERVER_A, STALE_A, "vdc")
        self.records = {k: v for k, v in self.records.items() if v["volume_id"] != STALE_A}
        self.records[_uid(200)] = {"volume_id": STALE_A, "server_id": SERVER_B,
                                   "status": "reserved"}
        self.volumes[STALE_A]["status"] = "reserved"
        self.volumes[FREE] = {"status": "available", "bootable": False}
        self.compute = _Service(self, "compute", COMPUTE_READS)
        self.block_storage = _Service(self, "block_storage", VOLUME_READS)
        self.attachment_list = _AttachmentList(self)

    def _attach(self, sid, vid, dev, boot=False):
        att = _uid(100 + len(self.records))
        self.volumes[vid] = {"status": "in-use", "bootable": boot}
        self.records[att] = {"volume_id": vid, "server_id": sid, "status": "attached"}
        self.bdms[sid][vid] = {"device": "/dev/" + dev, "attachment_id": att}
        dom = self.domains[self.servers[sid]["instance_name"]]
        for key in ("live", "config"):
            dom[key].append((dev, vid))

    # what a test compares before and after
    def views(self):
        return copy.deepcopy({"nova": {s: dict(v, bdms=self.bdms[s]) for s, v in
                                       self.servers.items()},
                              "cinder": {"volumes": self.volumes, "records": self.records},
                              "hypervisor": self.domains})

    def mutations(self):
        return [c for c in self.calls if c[2]]

    # the SDK's surface the steps use ----------------------------------------------------------
    def get_server(self, server_id):
        if server_id not in self.servers:
            raise _not_found("Instance %s" % server_id)
        s = self.servers[server_id]
        return types.SimpleNamespace(
            id=server_id, name=s["name"], status=s["status"], vm_state="active",
            task_state=s["task_state"], power_state=1, is_locked=False, locked_reason=None,
            compute_host=HOST, instance_name=s["instance_name"], project_id="p" * 32,
            root_device_name="/dev/vda", updated="2026-01-01T00:00:00Z")

    def volume_attachments(self, server_id, *args, **kwargs):
        if server_id not in self.servers:
            raise _not_found("Instance %s" % server_id)
        return [types.SimpleNamespace(volume_id=vid, device=b["device"],
                                      attachment_id=b["attachment_id"], bdm_id="bdm-" + vid[-4:],
                                      delete_on_termination=False, server_id=server_id)
                for vid, b in sorted(self.bdms[server_id].items())]

    def services(self, *args, **kwargs):
        return [types.SimpleNamespace(host=HOST, binary="nova-compute", state="up",
                                      status="enabled", is_forced_down=False,
                                      updated_at="2026-01-01T00:00:00Z")]

    def server_actions(self, *args, **kwargs):
        return []

    def get_volume(self, volume_id):
        vid = getattr(volume_id, "id", volume_id)
        if vid not in self.volumes:
            raise _not_found("Volume %s" % vid)
        v = self.volumes[vid]
        return types.SimpleNamespace(id=vid, name="vol-" + vid[-4:], status=v["status"],
                                     is_bootable=v["bootable"], is_multiattach=False,
                                     updated_at="2025-01-01T00:00:00.000000",
                                     project_id="p" * 32, attachments=[])

    def session(self, target, *args, **kwargs):
        return _Session(self, target)


class _Service(object):
    """conn.compute / conn.block_storage: reads answered from the fake, anything else recorded
    as a mutation (and answered with nothing)."""

    def __init__(self, cloud, name, reads):
        self._cloud, self._name, self._reads = cloud, name, reads

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        cloud, service = self._cloud, self._name

        def call(*args, **kwargs):
            mutating = method not in self._reads and method not in NEUTRAL
            cloud.calls.append((service, method, mutating, args, kwargs))
            impl = getattr(cloud, method, None) if not mutating else None
            return impl(*args, **kwargs) if impl else ([] if not mutating else None)
        return call


class _Conn(object):
    def __init__(self, cloud):
        self.compute, self.block_storage = cloud.compute, cloud.block_storage

    def close(self):
        pass


class _AttachmentList(object):
    """dvremedy.steps.views._attachment_list_type(): Cinder's attachment records (3.27+)."""

    def __init__(self, cloud):
        self._cloud = cloud

    def list(self, session, base_path=None, volume_id=None, instance_id=None, **params):
        self._cloud.calls.append(("block_storage", "attachments", False, (),
                                  dict(params, volume_id=volume_id, instance_id=instance_id)))
        return [types.SimpleNamespace(id=att, volume_id=r["volume_id"], instance=r["server_id"],
                                      status=r["status"], attached_at=None)
                for att, r in sorted(self._cloud.records.items())
                if (volume_id is None or r["volume_id"] == volume_id) and
                (instance_id is None or r["server_id"] == instance_id)]


class _Session(object):
    """An SSHSession stand-in: virsh dumpxml from the fake domains, get_connector for cmp1."""

    def __init__(self, cloud, target):
        self.cloud, self.target = cloud, target

    is_open = True

    def open(self):
        self.cloud.calls.append(("ssh", "connect", False, (self.target.host,), {}))
        return self

    def close(self):
        pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        return False

    def run(self, argv, timeout=None, stdin_text=None, check=False, kill_on_timeout=True):
        words = set(argv)
        reads = bool(words & READ_WORDS[0]) and "detach-disk" not in words or \
            bool(words & READ_WORDS[1])
        self.cloud.calls.append(("ssh", "run", not reads, (self.target.host, list(argv)), {}))
        out = ""
        if "dumpxml" in words:
            out = self._xml(argv[-1], "--inactive" in words)
        elif "get_connector" in words:
            out = json.dumps({"host": self.target.host, "platform": "x86_64", "os_type": "linux",
                              "ip": "127.0.0.1", "multipath": False,
                              "initiator": "iqn.2004-10.com.fake:%s" % self.target.host})
        elif "list" in words:
            names = sorted(self.cloud.domains)
            out = " Id   Name   State\n" + "".join(
                " %d   %s   running\n" % (i, name) for i, name in enumerate(names, 1))
        return CommandResult(list(argv), 0, out, "", 0.01)

    def upload(self, data, remote_path, mode=0o600):
        self.cloud.calls.append(("ssh", "upload", True, (self.target.host, remote_path), {}))

    def remove(self, remote_path):
        self.cloud.calls.append(("ssh", "remove", True, (self.target.host, remote_path), {}))

    def _xml(self, domain, inactive):
        dom = self.cloud.domains.get(domain)
        if dom is None:
            return ""
        disks = "".join(
            "<disk type='block' device='disk'><source dev='/dev/fake/%s'/>"
            "<target dev='%s' bus='virtio'/><serial>%s</serial></disk>" % (vid, dev, vid)
            for dev, vid in dom["config" if inactive else "live"])
        return "<domain><name>%s</name><devices>%s</devices></domain>" % (domain, disks)


def install(monkeypatch, cloud):
    """Route the steps' cloud and SSH access to `cloud` for one test."""
    from dvremedy.adapters import cloud as cloud_mod
    from dvremedy.adapters import sshclient
    from dvremedy.steps import views
    monkeypatch.setattr(cloud_mod, "connect", lambda settings, name=None: _Conn(cloud))
    monkeypatch.setattr(sshclient, "SSHSession", cloud.session)
    monkeypatch.setattr(views, "_attachment_list_type", lambda: cloud.attachment_list)


UNIT_CONFIG = {"cloud": "fake", "ssh": {"key_file": "/nonexistent/id_ed25519",
                                        "known_hosts_file": "/nonexistent/known_hosts"},
               "controller": {"hosts": [CONTROLLER]},
               # a step that gets past its checks fails fast on the fake, which never changes
               "waits": {"power": 0.05, "detach": 0.05, "volume_state": 0.05}}


def merged(base, changes):
    """base with changes merged in, section by section ({"ssh": {"port": "x"}})."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# -- lab side: tools/st2-run ---------------------------------------------------------------------

def run(ref, config_path, params, timeout=300):
    """(execution, report) of `tools/st2-run dangling_volume.<ref> k=v ... --config F --json`;
    objects are passed as JSON (st2 casts them to the declared type)."""
    argv = [os.path.join(REPO, "tools", "st2-run"), "dangling_volume." + ref]
    argv += ["%s=%s" % (k, json.dumps(v) if isinstance(v, (dict, list)) else v)
             for k, v in params.items()]
    proc = subprocess.run(argv + ["--config", config_path, "--json", "--quiet"],
                          capture_output=True, text=True, timeout=timeout)
    try:
        execution = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("st2-run printed no execution (rc %d): %s" % (
            proc.returncode, (proc.stdout + proc.stderr)[-2000:]))
    assert (proc.returncode == 0) == (execution["status"] == "succeeded"), execution
    output = execution["result"].get("output") if isinstance(execution["result"], dict) \
        else None
    return execution, (output or {}).get("report")


def error_text(execution, report):
    """What the caller reads: the report's error (the remedy) or the action's error."""
    if report and report.get("error"):
        return json.dumps(report["error"])
    return json.dumps(execution.get("result"))
