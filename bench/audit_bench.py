"""Benchmark (not a test): the audit's cost as the cloud grows, and against the naive audit.

In a project of its own on the lab: N = 100 data-volume attachments on 25 servers (4 each),
then 2N = 200 on 50, a few broken each time (break 1: Cinder reset behind Nova's back; break
4: the disk gone from the domain). At N and at 2N:

- fast tier: the audit's API reads alone (compute services, the project, servers, volumes and
  attachment records, page by page) and the correlation; requests counted at the HTTP layer
  (a response hook on the connection's requests session: every request, the Keystone token
  and version documents included), wall time from the first request to the classification;
- full audit: audit.audit() as the action runs it (plus the hypervisor read over SSH, the
  look-ups and the deep tier for the suspects), with its findings checked against the breaks;
  requests split into pages, suspects (one 2.89 read each, plus look-ups) and the constant.

At 2N, in the same run: a naive audit as operators' scripts do it, one server at a time
(list the servers, then each server's attachments at 2.89 and each attached volume).

Targets: requests <= pages + suspects + a constant; fast tier at 2N <= 2.1 x at N; the fast
tier >= 5 x fewer requests and >= 3 x faster than the naive audit.

Run: bench/run audit_bench.py [--rounds 3] [--parallel 4]
(lab up; figures to stdout and bench/results/audit.json; everything it made is deleted)."""
import argparse
import concurrent.futures
import datetime
import json
import os
import statistics
import subprocess
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import labcloud
from dvremedy.adapters.cloud import connect
from dvremedy.model import correlate
from dvremedy.runner import session_opener
from dvremedy.settings import Settings
from dvremedy.steps import audit

SERVERS_PER_STEP = 25
DATA_PER_SERVER = 4


def hooked_connection(settings):
    """A fresh connection (no token, no version documents cached) whose every HTTP request
    is logged as (method, url) by a requests response hook."""
    conn = connect(settings)
    sent = []
    conn.session.session.hooks["response"].append(
        lambda response, *args, **kwargs: sent.append((response.request.method,
                                                       response.url)))
    return conn, sent


def fast_tier(settings, project_id):
    """The audit's API reads (audit.fast_tier) and the correlation, nothing over SSH."""
    conn, sent = hooked_connection(settings)
    started = time.monotonic()
    fast = audit.fast_tier(conn, settings, scope="project", project=project_id,
                           cloud_name=settings.cloud)
    inv = {"servers": fast["servers"], "volumes": fast["volumes"], "records": fast["records"],
           "hypervisors": {}, "deep": {}, "scope": fast["scope"]}
    verdicts = [correlate.verdict_of(v, settings.audit_stuck_after)
                for v in correlate.all_views(inv)]
    wall = time.monotonic() - started
    conn.close()
    pages = fast["pages"].pages
    return {"wall_s": round(wall, 3), "requests": len(sent), "pages": sum(pages.values()),
            "page_detail": dict(pages), "attachments": len(verdicts),
            "servers": len(inv["servers"]), "timings": fast["timings"]}


def full_audit(settings, project_id):
    conn, sent = hooked_connection(settings)
    started = time.monotonic()
    report = audit.audit(conn, session_opener(settings), settings,
                         scope="project", project=project_id, cloud_name=settings.cloud)
    wall = time.monotonic() - started
    conn.close()
    api = report["api"]
    pages = sum(api["pages"].values())
    suspects = sum(api["single_reads"].get(k, 0) for k in ("server_attachments", "server",
                                                           "volume"))
    return {"wall_s": round(wall, 3), "requests": len(sent), "pages": pages,
            "suspects": suspects, "constant": len(sent) - pages - suspects,
            "timings": report["timings"],
            "findings": sorted((f["server_id"], f["volume_id"], f["class"])
                               for f in report["findings"]),
            "healthy": report["counts"]["healthy"], "domains": report["hypervisors"]["domains"]}


def naive_audit(settings, project_id):
    """What operators' scripts do: every server, then its attachments, then each volume."""
    conn, sent = hooked_connection(settings)
    started = time.monotonic()
    disagree = []
    for server in conn.compute.servers(details=True, all_projects=True,
                                       project_id=project_id):
        for att in conn.compute.volume_attachments(server):
            vol = conn.block_storage.get_volume(att.volume_id)
            theirs = {a.get("attachment_id") for a in vol.attachments or []
                      if a.get("server_id") == server.id}
            if att.attachment_id not in theirs:
                disagree.append((server.id, att.volume_id))
    wall = time.monotonic() - started
    conn.close()
    return {"wall_s": round(wall, 3), "requests": len(sent), "disagree": sorted(disagree)}


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def grow(lab, project_id, tag, first, count, parallel):
    """`count` servers with DATA_PER_SERVER data volumes each, `parallel` at a time."""
    def one(i):
        pconn = labcloud.connect_project(lab, project_id)   # one connection per worker
        return labcloud.create_server(pconn, "bench-%s-%03d" % (tag, i),
                                      data_volumes=DATA_PER_SERVER)
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(first, first + count)))


def lab_break(kind, *args):
    subprocess.run([os.path.join(REPO, "lab", "break"), kind] + list(args), check=True,
                   capture_output=True, timeout=300)


def measure(label, settings, project_id, rounds, expected, log):
    fast = [fast_tier(settings, project_id) for _ in range(rounds)]
    full = [full_audit(settings, project_id) for _ in range(rounds)]
    found = {(s, v): c for s, v, c in full[-1]["findings"]}
    assert found == expected, "the audit did not find exactly the breaks: %s" % found
    out = {"fast_tier": fast, "full_audit": full,
           "fast_wall_s": median_of(fast, "wall_s"), "fast_requests": fast[-1]["requests"],
           "full_wall_s": median_of(full, "wall_s"), "full_requests": full[-1]["requests"]}
    f, a = fast[-1], full[-1]
    log("%s: %d servers, %d attachments checked (%d healthy, %d broken)" % (
        label, f["servers"], f["attachments"], a["healthy"], len(found)))
    log("  fast tier : %d requests (%d pages %s + %d constant), %.3f s median of %s" % (
        f["requests"], f["pages"], f["page_detail"], f["requests"] - f["pages"],
        out["fast_wall_s"], [r["wall_s"] for r in fast]))
    log("  full audit: %d requests = %d pages + %d suspects + %d constant; %.3f s median "
        "of %s (hypervisor read %.2f s for %d domains, in parallel with the pages)" % (
            a["requests"], a["pages"], a["suspects"], a["constant"], out["full_wall_s"],
            [r["wall_s"] for r in full], a["timings"]["hypervisors_s"], a["domains"]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--servers", type=int, default=SERVERS_PER_STEP,
                        help="servers per step (N = 4 x this); smaller only to try the script")
    args = parser.parse_args()
    lab = labcloud.load_lab()
    with open(os.path.join(lab["lab_dir"], "dangling_volume.yaml")) as f:
        config = json.load(f)
    config["audit"] = {"stuck_after": 0}     # breaks made seconds ago count as stuck
    settings = Settings(config)
    conn = labcloud.connect(lab)
    tag = uuid.uuid4().hex[:6]
    project = labcloud.create_project(conn, "bench-audit-" + tag)
    results = {"when": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "page_size": settings.audit_page_size, "rounds": args.rounds,
               "parallel_setup": args.parallel}

    def log(line):
        print(line, flush=True)
    try:
        t0 = time.monotonic()
        made = grow(lab, project.id, tag, 0, args.servers, args.parallel)
        setup_n = time.monotonic() - t0
        log("set-up N: %d servers, %d data volumes attached in %.0f s" % (
            len(made), len(made) * DATA_PER_SERVER, setup_n))
        t0 = time.monotonic()
        expected = {}
        step = len(made)
        for info, kind, cls in ((made[step // 8], "cinder-reset", "nova_only"),
                                (made[step // 2], "cinder-reset", "nova_only"),
                                (made[3 * step // 4], "hypervisor-only",
                                 "missing_on_hypervisor")):
            lab_break(kind, info["server_id"], info["volume_ids"][1])
            expected[(info["server_id"], info["volume_ids"][1])] = cls
        breaks_n = time.monotonic() - t0
        results["N"] = measure("N", settings, project.id, args.rounds, expected, log)

        t0 = time.monotonic()
        more = grow(lab, project.id, tag, args.servers, args.servers, args.parallel)
        setup_2n = time.monotonic() - t0
        log("set-up 2N: %d more servers, %d more data volumes in %.0f s" % (
            len(more), len(more) * DATA_PER_SERVER, setup_2n))
        t0 = time.monotonic()
        for info, kind, cls in ((more[step // 5], "cinder-reset", "nova_only"),
                                (more[2 * step // 3], "hypervisor-only",
                                 "missing_on_hypervisor")):
            lab_break(kind, info["server_id"], info["volume_ids"][2])
            expected[(info["server_id"], info["volume_ids"][2])] = cls
        breaks_2n = time.monotonic() - t0
        results["2N"] = measure("2N", settings, project.id, args.rounds, expected, log)
        naive = [naive_audit(settings, project.id) for _ in range(args.rounds)]
        results["naive_2N"] = {"runs": naive, "wall_s": median_of(naive, "wall_s"),
                               "requests": naive[-1]["requests"]}
        nova_only = {k for k, c in expected.items() if c == "nova_only"}
        assert set(naive[-1]["disagree"]) == nova_only   # it sees what the API shows, no more
        n, n2, nv = results["N"], results["2N"], results["naive_2N"]
        log("naive at 2N: %d requests, %.3f s median of %s" % (
            nv["requests"], nv["wall_s"], [r["wall_s"] for r in naive]))
        exact = {
            "fast_time_2N_over_N": n2["fast_wall_s"] / n["fast_wall_s"],
            "fast_requests_2N_over_N": n2["fast_requests"] / n["fast_requests"],
            "naive_over_fast_requests_2N": nv["requests"] / n2["fast_requests"],
            "naive_over_fast_time_2N": nv["wall_s"] / n2["fast_wall_s"],
            "naive_over_full_requests_2N": nv["requests"] / n2["full_requests"],
            "naive_over_full_time_2N": nv["wall_s"] / n2["full_wall_s"],
        }
        ratios = {k: round(v, 2) for k, v in exact.items()}
        bound = {label: r["full_audit"][-1]["requests"] <= r["full_audit"][-1]["pages"] +
                 r["full_audit"][-1]["suspects"] + 10 for label, r in (("N", n), ("2N", n2))}
        results["targets_met"] = {
            "requests <= pages + suspects + 10 (N, 2N)": bound["N"] and bound["2N"],
            "fast tier time 2N <= 2.1 x N": exact["fast_time_2N_over_N"] <= 2.1,
            "naive / fast tier requests >= 5": exact["naive_over_fast_requests_2N"] >= 5,
            "naive / fast tier time >= 3": exact["naive_over_fast_time_2N"] >= 3}
        results["ratios"] = ratios
        results["setup"] = {"N_s": round(setup_n, 1), "breaks_N_s": round(breaks_n, 1),
                            "2N_extra_s": round(setup_2n, 1),
                            "breaks_2N_s": round(breaks_2n, 1)}
        log("ratios: %s" % json.dumps(ratios))
        log("targets met: %s" % json.dumps(results["targets_met"]))
    finally:
        t0 = time.monotonic()
        servers, volumes = labcloud.purge_project(lab, project.id, parallel=args.parallel)
        results["cleanup"] = {"servers": servers, "volumes": volumes,
                              "s": round(time.monotonic() - t0, 1)}
        log("cleaned up: %d servers, %d volumes, the project, in %.0f s" % (
            servers, volumes, results["cleanup"]["s"]))
        os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
        with open(os.path.join(REPO, "bench", "results", "audit.json"), "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
