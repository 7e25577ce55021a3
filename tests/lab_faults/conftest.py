"""The fault-injection tier: `dangling_volume.remedy` on a broken attachment (lab/break
cinder-reset: class nova_only) while something fails under it: SSH cut or unreachable, nova-api
or cinder-api answering 5xx or never, nova-compute or cinder-volume down, refresh failing.
Faults go in on the wire (testsupport.faultproxy, selected through the pack config's SSH
address map and a copy of clouds.yaml with endpoint overrides) or by stopping a lab service
(started again, whatever happens). Each test asserts the outcome the workflow promises for
its fault (README "failure table"). Run alone, these tests skip without a lab; LAB_REQUIRED=1
makes a missing lab fail. They use the lab exclusively: run them under
`flock /tmp/dv-lab.lock`."""
import copy
import json
import os
import subprocess
import time

import pytest
import yaml

import labcloud
from testsupport.faultproxy import HTTPFaultProxy, TCPFaultProxy
from testsupport.lab import REPO, run_lab_tool
from testsupport.labchecks import state
# the lab's fixtures, shared with tests/lab
from testsupport import labfixtures

lab, conn, make_server = labfixtures.lab, labfixtures.conn, labfixtures.make_server

# the lab's own code to stop and start one of its services (as lab/break backend-down does;
# pytest.ini puts lab/ on the path)
from labctl import procs as lab_procs
from labctl.settings import Settings as LabSettings
from labctl.up import start_daemon, wait_service_up

SSH_PROXY_HYPERVISOR = "127.0.0.12"   # the forwarders listen on the lab's SSH port (ssh.port
SSH_PROXY_CONTROLLER = "127.0.0.13"   # is one setting for every host) at addresses of their own
NOTHING_LISTENS = "127.0.0.14"
RUN_TIMEOUT = 600


# a broken attachment and the config to remedy it with ----------------------------------------

@pytest.fixture
def broken(make_server):
    """A server whose data volume was reset behind Nova's back (class nova_only). (Servers are
    made one at a time: made in parallel, the lab's scheduler answers NoValidHost.)"""
    info = make_server()
    out = run_lab_tool("break", "cinder-reset", info["server_id"], info["volume_ids"][0])
    assert out.returncode == 0, out.stdout + out.stderr
    return info


@pytest.fixture
def config(lab):
    """A copy of the lab's pack config to change for one fault (written by `remedy`)."""
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        return copy.deepcopy(json.load(f))


class Run(object):
    """One remedy run and what the cloud looked like around it."""

    def __init__(self, execution, returncode, before, after, lock_before, lock_after, status,
                 seconds):
        self.execution = execution
        self.returncode = returncode
        self.report = (execution.get("result") or {}).get("output", {}).get("report") or {}
        self.error = self.report.get("error") or {}
        self.before, self.after = before, after
        self.lock_before, self.lock_after = lock_before, lock_after
        self.status = status          # the server's status after the run
        self.seconds = seconds

    @property
    def tasks(self):
        return [t["id"] for t in self.execution.get("tasks", [])]

    def explain(self):
        return "tasks %s\nreport error %s\nreport text:\n%s" % (
            self.tasks, json.dumps(self.error, indent=1)[:3000], self.report.get("text"))


@pytest.fixture
def remedy(lab, conn, tmp_path):
    """remedy(info, config) runs dangling_volume.remedy through tools/st2-run on the broken
    attachment with that pack config and returns a Run."""
    def run(info, cfg, *extra):
        sid, vid = info["server_id"], info["volume_ids"][0]
        path = tmp_path / "dangling_volume.yaml"
        path.write_text(json.dumps(cfg))
        before = state(lab, conn, info)
        lock_before = conn.compute.get_server(sid).is_locked
        started = time.monotonic()
        proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.remedy",
                               "server_id=%s" % sid, "volume_id=%s" % vid] + list(extra) +
                              ["--config", str(path), "--json"],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
        seconds = time.monotonic() - started
        try:
            execution = json.loads(proc.stdout)
        except ValueError:
            pytest.fail("st2-run printed no JSON (rc %d): %s %s" % (
                proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
        assert (proc.returncode == 0) == (execution["status"] == "succeeded")
        srv = conn.compute.get_server(sid)
        return Run(execution, proc.returncode, before, state(lab, conn, info), lock_before,
                   srv.is_locked, srv.status, seconds)
    return run


class Contract(object):
    """Collects every way a run misses its contract, so one failure lists them all."""

    def __init__(self, run):
        self.run = run
        self.misses = []

    def expect(self, ok, what):
        if not ok:
            self.misses.append(what)

    def failed_at(self, step):
        r = self.run
        self.expect(r.execution.get("status") == "failed" and r.returncode == 1,
                    "execution status %r (rc %d), expected failed" % (
                        r.execution.get("status"), r.returncode))
        self.expect(r.report.get("outcome") == "failed",
                    "report outcome %r, expected 'failed'" % r.report.get("outcome"))
        self.expect(r.report.get("failed_step") == step,
                    "report failed_step %r (error.step %r), expected %r" % (
                        r.report.get("failed_step"), r.error.get("step"), step))

    def server(self, status, lock_checked_by_caller=False):
        """The power state afterwards, and the lock as found (unless the caller checks it: a
        refresh cut off from us holds the instance lock until it ends on the controller)."""
        r = self.run
        self.expect(r.status == status, "server %s afterwards, expected %s" % (r.status, status))
        if not lock_checked_by_caller:
            self.expect(r.lock_after == r.lock_before, "server lock %r afterwards, %r before"
                        % (r.lock_after, r.lock_before))

    def ended_unchanged_at(self, step):
        """Failed at `step` before anything was changed: the server as found, running."""
        self.failed_at(step)
        self.server("ACTIVE")
        self.unchanged()

    def unchanged(self):
        r = self.run
        self.expect(r.after == r.before, "the cloud changed:\n  before %s\n  after  %s" % (
            r.before, r.after))
        self.expect(not r.report.get("changed_anything"), "report says changed_anything")

    def message_has(self, *words):
        message = (self.run.error.get("message") or "")
        low = message.lower()
        for word in words:
            self.expect(word.lower() in low, "error message lacks %r: %r" % (word, message))

    def evidence(self, **facts):
        """The error carries these facts (at its top level or in a nested dict of it)."""
        for key, value in facts.items():
            found = _find(self.run.error, key)
            self.expect(value in found, "error evidence %s=%r, expected %r" % (
                key, found, value))

    def left_off(self, expected):
        left = self.run.report.get("left_off")
        if expected:
            self.expect(isinstance(left, dict) and left.get("reason") and left.get("next"),
                        "report left_off %r, expected a dict with reason and next" % (left,))
        else:
            self.expect(not left, "report left_off %r, expected none" % (left,))

    def check(self):
        assert not self.misses, "%d contract miss(es):\n- %s\n%s" % (
            len(self.misses), "\n- ".join(self.misses), self.run.explain())


def _find(data, key):
    """Every value of `key` in data and the dicts and lists it holds."""
    found = []
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key:
                found.append(v)
            found.extend(_find(v, key))
    elif isinstance(data, list):
        for v in data:
            found.extend(_find(v, key))
    return found


@pytest.fixture
def contract():
    return Contract


# faults on the wire ---------------------------------------------------------------------------

@pytest.fixture
def ssh_forwarder(lab, config, tmp_path):
    """forward(nova_host, faults) puts a TCPFaultProxy in front of that lab host's sshd, on an
    address of its own at the lab's SSH port, and points the config's address map and a copy
    of known_hosts (the host's key, at the new address) at it."""
    made = []
    port = lab["ssh"]["port"]
    known = tmp_path / "known_hosts"
    with open(lab["ssh"]["known_hosts_file"]) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    known.write_text("\n".join(lines) + "\n")
    config["ssh"]["known_hosts_file"] = str(known)

    def forward(host, faults=None):
        listen = {lab["compute_host"]: SSH_PROXY_HYPERVISOR,
                  lab["controller_host"]: SSH_PROXY_CONTROLLER}[host]
        upstream = lab["ssh"]["hosts"][host]
        prefix = "[%s]:%d " % (upstream, port)
        keys = [line[len(prefix):] for line in lines if line.startswith(prefix)]
        assert keys, "no known_hosts line for %s" % prefix
        with open(str(known), "a") as f:
            f.writelines("[%s]:%d %s\n" % (listen, port, key) for key in keys)
        proxy = TCPFaultProxy((listen, port), (upstream, port), faults).start()
        made.append(proxy)
        config["hosts"]["address_map"][host] = listen
        return proxy
    yield forward
    for proxy in made:
        proxy.stop()


@pytest.fixture
def api_proxies(lab, conn, config, tmp_path):
    """HTTP fault proxies in front of nova-api and cinder-api (no rules yet: everything
    passes), selected by a copy of clouds.yaml with endpoint overrides the config names."""
    ports = lab["ports"]
    nova = HTTPFaultProxy("http://127.0.0.1:%d" % ports["nova-api"]).start()
    cinder = HTTPFaultProxy("http://127.0.0.1:%d" % ports["cinder-api"]).start()
    with open(lab["clouds_yaml"]) as f:
        clouds = yaml.safe_load(f)
    cloud = clouds["clouds"][config["cloud"]]
    cloud["compute_endpoint_override"] = nova.url("/v2.1")
    cloud["block_storage_endpoint_override"] = cinder.url("/v3/%s" % conn.current_project_id)
    path = tmp_path / "clouds.yaml"
    with open(os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        yaml.safe_dump(clouds, f)
    config["clouds_yaml"] = str(path)
    try:
        yield nova, cinder
    finally:
        nova.stop()
        cinder.stop()


# faults of the lab's services ------------------------------------------------------------------

class LabServices(object):
    """Stop one of the lab's services and always start it again (lab/break backend-down's way:
    labctl's stop_service, start_daemon, wait_service_up)."""

    KINDS = {"nova-compute": "compute", "cinder-volume": "volume"}

    def __init__(self, conn):
        self.conn = conn
        self.settings = LabSettings()
        self.stopped = []

    def stop(self, name):
        assert name in self.KINDS, name
        if name not in self.stopped:
            self.stopped.append(name)
        lab_procs.stop_service(self.settings, name, log=lambda msg: None)

    def start_all(self):
        errors = []
        for name in list(self.stopped):
            try:
                if not lab_procs.alive(lab_procs.read_pid(self.settings, name)):
                    start_daemon(self.settings, name)
                wait_service_up(self.settings, self.KINDS[name], 120)
                self.stopped.remove(name)
            except Exception as exc:  # every service gets its chance; reported below
                errors.append("%s: %s" % (name, exc))
        assert not errors, "could not start the lab again: %s" % "; ".join(errors)

    def wait_compute_state(self, want, timeout):
        """Until Nova's service list shows nova-compute `want` ('down' / 'up')."""
        def probe():
            rows = [s for s in self.conn.compute.services() if s.binary == "nova-compute"]
            return bool(rows) and all(s.state == want for s in rows)
        return labcloud.wait_until("nova-compute to be %s in Nova's service list" % want,
                                   probe, timeout, interval=1)


@pytest.fixture
def lab_services(conn, broken):
    """(after broken, so the services are up again before its server is deleted)"""
    services = LabServices(conn)
    try:
        yield services
    finally:
        services.start_all()
