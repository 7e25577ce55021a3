"""Issue 17, the lab half: a TABLE of bad inputs to `dangling_volume.remedy` and the single
actions, each run through tools/st2-run (the python runner's wrapper, orquesta) against the
lab's real Nova, Cinder and hypervisor. Each row is refused with an error naming what is wrong,
and the three views (testsupport.labchecks.state: Nova's mappings and the server's power, every
volume's Cinder status and attachment records, the domain's live and next-boot disks) of both
servers, and the free volume, are as they were before the table ran.

The module makes its cloud once: server A (boot volume, a healthy data volume, and a data
volume whose Cinder record is server B's while A's Nova still maps it: `lab/break
cinder-reset` then `POST /attachments` as admin), server B with a data volume, a free volume,
a connector taken on the controller (`lab/break wrong-connector`), and pack configs with one
thing wrong each. Refused remedies fail at identify, run nothing after it, and leave the
server's power as it was."""
import concurrent.futures
import json
import os
import time

import pytest

import labcloud
from testsupport.badinputs import error_text, run
from testsupport.lab import run_lab_tool
from testsupport.labchecks import state

MISSING = "00000000-0000-4000-8000-00000000dead"

# (name, action, params with placeholders, config name, expected substrings)
# placeholders: {A} {B} server ids; {A_BOOT} {A_DATA} {A_HELD} {B_DATA} {FREE} volume ids
ROWS = [
    ("unknown-server", "remedy", {"server_id": MISSING, "volume_id": "{A_DATA}"}, "good",
     ["does not exist"]),
    ("unknown-volume", "remedy", {"server_id": "{A}", "volume_id": MISSING}, "good",
     ["does not exist"]),
    ("volume-not-attached", "remedy", {"server_id": "{A}", "volume_id": "{FREE}"}, "good",
     ["not attached"]),
    ("boot-volume", "remedy", {"server_id": "{A}", "volume_id": "{A_BOOT}"}, "good",
     ["boot volume"]),
    ("another-servers-volume", "remedy", {"server_id": "{A}", "volume_id": "{B_DATA}"}, "good",
     ["not attached to server {A}"]),
    ("volume-held-by-second-server", "remedy", {"server_id": "{A}", "volume_id": "{A_HELD}"},
     "good", ["held by server {B}", "operator"]),
    # the demo project's credentials: server A is another project's, invisible to it
    ("another-projects-server", "remedy", {"server_id": "{A}", "volume_id": "{A_DATA}",
                                           "cloud": "lab-demo"}, "good", ["does not exist"]),
    ("unknown-host-key", "remedy", {"server_id": "{A}", "volume_id": "{A_DATA}"},
     "known_hosts_without_hypervisor", ["is not in"]),
    ("changed-host-key", "remedy", {"server_id": "{A}", "volume_id": "{A_DATA}"},
     "known_hosts_changed_key", ["does NOT match"]),
    ("unreachable-ssh", "remedy", {"server_id": "{A}", "volume_id": "{A_DATA}"},
     "hypervisor_unreachable", ["SSH to", "127.0.0.9"]),
    ("config-api_timeout-0", "remedy", {"server_id": "{A}", "volume_id": "{A_DATA}"},
     "api_timeout_0", ["api_timeout"]),
    ("refresh-wrong-host-connector", "refresh", {"server_id": "{A}", "volume_id": "{A_DATA}",
                                                 "connector": "{WRONG_CONNECTOR}"}, "good",
     ["rc 7", "Run get_connector on"]),
    ("refresh-connector-lacking-keys", "refresh",
     {"server_id": "{A}", "volume_id": "{A_DATA}", "connector": {"host": "lab-compute"}},
     "good", ["connector lacks"]),
    ("get_connector-unknown-host-key", "get_connector", {"server_id": "{A}"},
     "known_hosts_without_hypervisor", ["is not in"]),
    ("get_connector-changed-host-key", "get_connector", {"server_id": "{A}"},
     "known_hosts_changed_key", ["does NOT match"]),
    ("get_connector-unreachable-ssh", "get_connector", {"server_id": "{A}"},
     "hypervisor_unreachable", ["SSH to", "127.0.0.9"]),
    ("stop_server-config-waits.power-negative", "stop_server", {"server_id": "{A}"},
     "waits_power_negative", ["waits.power"]),
    ("get_connector-config-ssh.port-x", "get_connector", {"server_id": "{A}"}, "ssh_port_x",
     ["ssh.port"]),
    ("stop_server-unknown-server", "stop_server", {"server_id": MISSING}, "good",
     ["does not exist"]),
    ("libvirt_detach-not-allowed", "libvirt_detach", {"server_id": "{A}",
                                                      "volume_id": "{A_DATA}"}, "good",
     ["last resort"]),
]


def _configs(lab, directory):
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        good = json.load(f)
    hv_host = lab["compute_host"]
    hv, port = lab["ssh"]["hosts"][hv_host], lab["ssh"]["port"]
    ctl = lab["ssh"]["hosts"][lab["controller_host"]]
    with open(good["ssh"]["known_hosts_file"]) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    ctl_lines = [ln for ln in lines if ln.startswith("[%s]" % ctl)]
    assert ctl_lines, lines
    known = {
        # the controller's key only: the hypervisor's is unknown
        "known_hosts_without_hypervisor": "\n".join(ctl_lines) + "\n",
        # the controller's key under the hypervisor's address: a changed key
        "known_hosts_changed_key": "\n".join(ctl_lines + [
            "[%s]:%d %s" % (hv, port, ctl_lines[0].split(" ", 1)[1])]) + "\n",
    }
    variants = {"good": good}
    for name, text in known.items():
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        variants[name] = dict(good, ssh=dict(good["ssh"], known_hosts_file=path))
    variants["hypervisor_unreachable"] = dict(good, hosts=dict(good["hosts"], address_map=dict(
        good["hosts"]["address_map"], **{hv_host: "127.0.0.9"})))
    variants["api_timeout_0"] = dict(good, api_timeout=0)
    variants["waits_power_negative"] = dict(good, waits={"power": -1})
    variants["ssh_port_x"] = dict(good, ssh=dict(good["ssh"], port="x"))
    paths = {}
    for name, config in variants.items():
        paths[name] = os.path.join(directory, name + ".json")
        with open(paths[name], "w") as f:
            json.dump(config, f)
    return paths


@pytest.fixture(scope="module")
def world(lab, conn, tmp_path_factory):
    """The module's cloud (see the docstring); everything made is removed at the end."""
    directory = str(tmp_path_factory.mktemp("bad-inputs"))
    started = time.monotonic()
    made, record, free = [], None, None

    def create(name, n):
        c = labcloud.connect(lab)           # one connection per thread
        info = labcloud.create_server(c, "t-badinput-%s-%d" % (name, os.getpid()),
                                      data_volumes=n)
        made.append(info)
        return info
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            fa, fb = pool.submit(create, "a", 2), pool.submit(create, "b", 1)
            free = conn.block_storage.create_volume(name="t-badinput-free", size=1)
            a, b = fa.result(), fb.result()
        labcloud.volume_status(conn, free.id, "available")
        held = a["volume_ids"][1]
        out = run_lab_tool("break", "cinder-reset", a["server_id"], held)
        assert out.returncode == 0, out.stdout + out.stderr
        # server B's attachment record on the volume A's Nova still maps (Cinder 3.27+, admin)
        resp = conn.block_storage.post("/attachments", json={"attachment": {
            "volume_uuid": held, "instance_uuid": b["server_id"]}}, microversion="3.27")
        assert resp.status_code == 200, resp.text
        record = resp.json()["attachment"]["id"]
        wrong = os.path.join(directory, "wrong-connector.json")
        out = run_lab_tool("break", "wrong-connector", wrong)
        assert out.returncode == 0, out.stdout + out.stderr
        with open(wrong) as f:
            wrong_connector = json.load(f)
        ids = {"A": a["server_id"], "B": b["server_id"], "A_BOOT": a["boot_volume_id"],
               "A_DATA": a["volume_ids"][0], "A_HELD": held, "B_DATA": b["volume_ids"][0],
               "FREE": free.id}
        views = {"A": state(lab, conn, a), "B": state(lab, conn, b)}
        assert views["A"]["server"][0] == views["B"]["server"][0] == "ACTIVE"
        yield {"ids": ids, "a": a, "b": b, "free": free.id, "configs": _configs(lab, directory),
               "wrong_connector": wrong_connector, "views": views,
               "setup_s": round(time.monotonic() - started, 1)}
    finally:
        if record:
            conn.block_storage.delete("/attachments/%s" % record, microversion="3.27")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda info: labcloud.delete_server(
                labcloud.connect(lab), info["server_id"], info["volume_ids"]), made))
        if free is not None:
            conn.block_storage.delete_volume(free.id, ignore_missing=True)


def _fill(value, world):
    if value == "{WRONG_CONNECTOR}":
        return world["wrong_connector"]
    if isinstance(value, str):
        return value.format(**world["ids"])
    return value


def _free_volume(conn, volume_id):
    vol = conn.block_storage.get_volume(volume_id)
    return vol.status, sorted(a.id for a in conn.block_storage.attachments(volume_id=volume_id))


@pytest.mark.parametrize("name, action, params, config, expected", ROWS,
                         ids=[r[0] for r in ROWS])
def test_bad_input_on_the_lab_is_refused_and_changes_nothing(lab, conn, world, name, action,
                                                             params, config, expected):
    given = {k: _fill(v, world) for k, v in params.items()}
    free_before = _free_volume(conn, world["free"])
    execution, report = run(action, world["configs"][config], given)
    message = error_text(execution, report)
    try:
        assert execution["status"] == "failed", "accepted: %s" % message[:2000]
        for text in expected:
            text = _fill(text, world)
            assert text in message, "%r not in the error: %s" % (text, message[:2000])
        if action == "remedy":
            ran = [t["id"] for t in sorted(execution["tasks"], key=lambda t: t["start"])]
            assert ran == ["identify", "report_failure"], ran
            assert report["changed_anything"] is False and report["steps"] == []
            # the step that refused: the report's failed_step where it has one, else its error's
            assert report.get("failed_step", report["error"].get("step")) == "identify", \
                report["error"]
    finally:
        # nothing changed, whatever the row's outcome: both servers (power included), every
        # volume's status and records, the domains' disks; the free volume
        assert state(lab, conn, world["a"]) == world["views"]["A"]
        assert state(lab, conn, world["b"]) == world["views"]["B"]
        assert _free_volume(conn, world["free"]) == free_before


def test_the_lab_table_is_wide_enough():
    """Issue 17: at least 10 of the bad inputs on the lab."""
    assert len({r[0] for r in ROWS}) == len(ROWS) >= 10
