"""Benchmark (not a test): the remedy against the cloud's own critical path and against the
seed runbook scripted in bash, all three in one run on the lab, each on break 1 (Cinder reset
behind Nova's back), each timed from its first API call to the server running again.

- critical path: max(stop, get_connector) + refresh + detach (until Cinder says available) +
  start (until ACTIVE), each a direct call: openstacksdk in this process, nova-manage over one
  SSH connection, polling every 0.1 s;
- remedy: `tools/st2-run dangling_volume.remedy` (the real workflow through Orquesta, each
  action in its own process as in st2); timed from identify's start to restore_power's end,
  with the split per task and the per-action overhead (process start to first API call);
- runbook: `lab/runbook` (bash, the openstack CLI, nova-manage over ssh, 1 s polling).

Run: bench/run remedy_bench.py [--rounds N]  (lab up; results to stdout
and bench/results/remedy.json)."""
import argparse
import json
import os
import re
import subprocess
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import labcloud
from dvremedy.adapters import novamanage
from dvremedy.adapters.sshclient import SSHSession, SSHTarget

POLL = 0.1


def broken_server(conn, lab, name):
    info = labcloud.create_server(conn, name, data_volumes=1)
    subprocess.run([os.path.join(REPO, "lab", "break"), "cinder-reset", info["server_id"],
                    info["volume_ids"][0]], check=True, capture_output=True)
    return info


def _target(lab, host):
    s = lab["ssh"]
    return SSHTarget(host=host, address=s["hosts"][host], port=s["port"], user=s["user"],
                     key_file=s["key_file"], known_hosts_file=s["known_hosts_file"],
                     connect_timeout=10, command_timeout=120)


def _wait(probe, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(POLL)
    raise RuntimeError("timed out")


def critical_path(conn, lab, info):
    sid, vid = info["server_id"], info["volume_ids"][0]
    hv = SSHSession(_target(lab, lab["compute_host"]))
    ctl = SSHSession(_target(lab, lab["controller_host"]))
    hv.open()
    ctl.open()
    t = {}
    out = {}

    def stop():
        t0 = time.monotonic()
        conn.compute.stop_server(sid)
        _wait(lambda: conn.compute.get_server(sid).status == "SHUTOFF")
        t["stop"] = time.monotonic() - t0

    def connector():
        t0 = time.monotonic()
        out["connector"] = novamanage.get_connector(hv, ["nova-manage"])
        t["get_connector"] = time.monotonic() - t0
    start = time.monotonic()
    threads = [threading.Thread(target=stop), threading.Thread(target=connector)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t0 = time.monotonic()
    novamanage.refresh(ctl, ["nova-manage"], sid, vid, out["connector"])
    t["refresh"] = time.monotonic() - t0
    t0 = time.monotonic()
    conn.compute.delete_volume_attachment(sid, vid, ignore_missing=False)
    _wait(lambda: conn.block_storage.get_volume(vid).status == "available")
    t["detach"] = time.monotonic() - t0
    t0 = time.monotonic()
    conn.compute.start_server(sid)
    _wait(lambda: conn.compute.get_server(sid).status == "ACTIVE")
    t["start"] = time.monotonic() - t0
    t["wall"] = time.monotonic() - start
    t["critical_path"] = max(t["stop"], t["get_connector"]) + t["refresh"] + t["detach"] \
        + t["start"]
    hv.close()
    ctl.close()
    return t


def remedy(lab, info):
    config = os.path.join(lab["lab_dir"], "dangling_volume.yaml")
    proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.remedy",
                           "server_id=%s" % info["server_id"],
                           "volume_id=%s" % info["volume_ids"][0],
                           "--config", config, "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("remedy failed: %s %s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
    return json.loads(proc.stdout)


def runbook(info):
    proc = subprocess.run([os.path.join(REPO, "lab", "runbook"), info["server_id"],
                           info["volume_ids"][0]], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("runbook failed: %s" % proc.stderr[-2000:])
    marks = [float(m) for m in re.findall(r"^\[\s*([\d.]+)s\]", proc.stdout, re.M)]
    return {"wall": marks[-1] - marks[0], "steps": proc.stdout}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    lab = labcloud.load_lab()
    conn = labcloud.connect(lab)
    results = []
    for r in range(args.rounds):
        servers = [broken_server(conn, lab, "bench-%d-%d" % (r, i)) for i in range(3)]
        row = {"critical": critical_path(conn, lab, servers[0]),
               "remedy": remedy(lab, servers[1]),
               "runbook": runbook(servers[2])}
        results.append(row)
        for info in servers:
            labcloud.delete_server(conn, info["server_id"], info["volume_ids"])
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "remedy.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    overhead = action_overhead(lab)
    summarise(results, overhead)


def remedy_timing(execution):
    """From identify's start to restore_power's end, and the split per task."""
    tasks = {t["id"]: t for t in execution["tasks"]}
    start = tasks["identify"]["start"]
    end = tasks["restore_power"]["start"] + tasks["restore_power"]["duration"]
    return end - start, [(t["id"], t["start"] - start, t["duration"])
                         for t in sorted(execution["tasks"], key=lambda t: t["start"])]


_OVERHEAD_PROBE = r"""
import json, sys, time
t0 = time.monotonic()
from dvremedy.adapters.cloud import connect
from dvremedy.settings import Settings
import openstack  # noqa: F401  (what the first call needs, imported lazily by the pack)
t1 = time.monotonic()
conn = connect(Settings(json.load(open(sys.argv[1]))))
conn.authorize()
t2 = time.monotonic()
next(iter(conn.compute.servers(limit=1)), None)
t3 = time.monotonic()
next(iter(conn.block_storage.volumes(limit=1)), None)
t4 = time.monotonic()
print(json.dumps({"imports": t1 - t0, "keystone_token": t2 - t1,
                  "first_compute_call": t3 - t2, "first_volume_call": t4 - t3}))
"""


def action_overhead(lab):
    """What each action process pays before its first useful answer, on the Python st2 runs
    (3.8): the wrapper (a python action that makes no call: report), the pack's imports, a
    Keystone token, and each service's first call (version discovery included)."""
    wrapper = []
    for _ in range(5):
        proc = subprocess.run([os.path.join(REPO, "tools", "st2-run"), "dangling_volume.report",
                               "server_id=x", "volume_id=y", "outcome=bench", "--json",
                               "--quiet"], capture_output=True, text=True)
        wrapper.append(json.loads(proc.stdout)["duration"])
    parts = []
    for _ in range(3):
        proc = subprocess.run([os.path.join(REPO, ".venvs", "pack-py38", "bin", "python"),
                               "-c", _OVERHEAD_PROBE,
                               os.path.join(lab["lab_dir"], "dangling_volume.yaml")],
                              capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "actions", "lib")))
        parts.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    median = {k: sorted(p[k] for p in parts)[1] for k in parts[0]}
    median["action_wrapper"] = sorted(wrapper)[2]
    return median


def summarise(results, overhead):
    for row in results:
        crit = row["critical"]["critical_path"]
        rem, split = remedy_timing(row["remedy"])
        book = row["runbook"]["wall"]
        print("critical path %.1f s (stop %.1f, get_connector %.1f, refresh %.1f, detach %.1f, "
              "start %.1f)" % tuple([crit] + [row["critical"][k] for k in (
                  "stop", "get_connector", "refresh", "detach", "start")]))
        print("scripted runbook %.1f s" % book)
        print("remedy %.1f s = %.2f x critical path (target <= 1.25); runbook / remedy = %.2f "
              "(target >= 1.4)" % (rem, rem / crit, book / rem))
        for name, at, took in split:
            print("  %-22s at %5.1f s took %5.2f s" % (name, at, took))
    print("per-action overhead before the first useful answer (medians): " + ", ".join(
        "%s %.2f s" % kv for kv in sorted(overhead.items())) +
        "; total %.2f s" % sum(overhead.values()))


if __name__ == "__main__":
    main()
