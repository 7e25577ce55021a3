"""Benchmark (not a test): does the lab hold the scale the audit's benchmarks need? Creates
N servers, each booted from a volume with K data volumes attached (default 60 x (1 + 4) = 300
volumes), a few at a time, then reports the counts, the time, the lab's RSS, and deletes it
all again. Run: bench/run lab_capacity.py [--servers 60] [--data 4]"""
import argparse
import concurrent.futures
import os
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import labcloud


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=60)
    parser.add_argument("--data", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    lab = labcloud.load_lab()
    t0 = time.monotonic()
    made = []

    def one(i):
        conn = labcloud.connect(lab)  # one connection per worker thread
        return labcloud.create_server(conn, "cap-%03d" % i, data_volumes=args.data)
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        for n, info in enumerate(pool.map(one, range(args.servers)), 1):
            made.append(info)
            if n % 10 == 0:
                print("%3d servers, %4d volumes in %.0f s" % (
                    n, n * (1 + args.data), time.monotonic() - t0), flush=True)
    conn = labcloud.connect(lab)
    servers = [s for s in conn.compute.servers(all_projects=True) if s.name.startswith("cap-")]
    volumes = [v for v in conn.block_storage.volumes(all_projects=True)
               if (v.name or "").startswith("cap-")]
    in_use = [v for v in volumes if v.status == "in-use"]
    print("created %d servers ACTIVE=%d, %d volumes (%d in-use) in %.0f s" % (
        len(servers), sum(s.status == "ACTIVE" for s in servers), len(volumes), len(in_use),
        time.monotonic() - t0))
    print(subprocess.run([os.path.join(REPO, "lab", "status")], capture_output=True,
                         text=True).stdout.strip().splitlines()[-2])
    t1 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda info: labcloud.delete_server(labcloud.connect(lab),
                                                          info["server_id"],
                                                          info["volume_ids"]), made))
    print("deleted in %.0f s" % (time.monotonic() - t1))


if __name__ == "__main__":
    main()
