"""Benchmark (not a test): the dangling_volume.detach_failed sensor's consumer on a real RabbitMQ
that this script starts itself (tools/pylib/testsupport/rabbitmq_process.py: 127.0.0.5, free
ports, never the lab's), with Nova-like traffic of which 99.9 % the pack ignores
(instance.update, ~3 kB bodies in the oslo 2.0 envelope) and 0.1 % detach failures (a legacy
detach_volume ERROR, or a versioned instance.volume_detach.start + compute.exception pair).

1. Filter rate: a durable queue bound like the sensor's is filled with N persistent messages,
   then drained by (a) a raw kombu consumer that only acks, and (b) the sensor's real consumer
   path (NovaDetachConsumer: its own connection, declares, prefetch, the per-message filter,
   dispatch into the recording SensorService double with its datastore dedup). Same prefetch,
   same process, alternating rounds; messages/s from consume() to the N-th message handled.
   Target: sensor >= 0.8x raw (median of the per-round ratios).
2. Latency from publish to dispatch: the sensor consumes a live stream at a fixed rate
   (--latency-rate), published by a separate process (no shared GIL); each failure's completing
   message is timed at publish (CLOCK_MONOTONIC, shared by the processes) and at dispatch. The
   raw consumer takes the same stream first, timed at delivery: the floor the broker and the
   machine set. Target: sensor p99 <= 50 ms, every failure dispatched.

On a shared 2-core machine the broker, the publisher and the consumer compete for CPU, so wall
rates vary from round to round: the ratio is taken per round (raw and sensor back to back) and
the consumer thread's CPU time per message is reported as well, which noise affects less.

Run: bench/run sensor_bench.py [--messages N] [--rounds R]
     [--latency-seconds S] [--latency-rate R] [--profile]
(results to stdout and bench/results/sensor.json; exit 1 when a target is missed)"""
import argparse
import cProfile
import json
import logging
import multiprocessing
import os
import pstats
import socket
import statistics
import sys
import tempfile
import threading
import time

import kombu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from testsupport import nova_wire as wire
from testsupport import rabbitmq_process
from testsupport import sensor_service as st2svc
import consumer_messages as cm  # sensors/, on the path through bench/run
import consumer_settings as cs
import nova_consumer as nc

ROUTING_KEYS = list(cs.DEFAULTS["routing_keys"])
RELEVANT_EVERY = 1000  # 0.1 %


def traffic(count, seed_offset=0):
    """(routing key, body) pairs: 99.9 % instance.update, 0.1 % detach failures."""
    items = []
    for i in range(count):
        if (i + seed_offset) % RELEVANT_EVERY == RELEVANT_EVERY // 2:
            items.extend(failure(i))
            continue
        msg = wire.instance_update()
        items.append((wire.routing_key(msg), wire.v2(msg), None))
    return items[:count]


def failure(i):
    """A failure's messages; the last one completes it (its message id is what is timed)."""
    server, volume = wire.new_id(), wire.new_id()
    if i % 2:
        msg = wire.legacy_error(server, volume)
        return [(wire.routing_key(msg), wire.v2(msg), msg["message_id"])]
    request_id = wire.new_request_id()
    start = wire.detach_start(server, volume, request_id=request_id)
    exc = wire.compute_exception(request_id=request_id)
    return [(wire.routing_key(start), wire.v2(start), None),
            (wire.routing_key(exc), wire.v2(exc), exc["message_id"])]


def declare_queue(url, name):
    exchange = wire.nova_exchange()
    with kombu.Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        exchange(channel).declare()
        queue = kombu.Queue(name, exchange=exchange, durable=True, auto_delete=False,
                            channel=channel)
        queue.queue_declare()
        for key in ROUTING_KEYS:
            queue.bind_to(exchange=exchange.name, routing_key=key)


def fill(url, items):
    with kombu.Connection(url, connect_timeout=5) as conn:
        producer = kombu.Producer(conn.channel())
        for key, body, _ in items:
            wire.publish(producer, body, key)


def delete_queue(url, name):
    with kombu.Connection(url, connect_timeout=5) as conn:
        conn.default_channel.queue_delete(name)


def raw_consume(url, name, on_message, connected, stop):
    """A plain kombu consumer on the bench queue until `stop`: the baseline the sensor is
    measured against (it only acks, in on_message)."""
    with kombu.Connection(url, connect_timeout=5) as conn:
        queue = kombu.Queue(name, exchange=wire.nova_exchange(), durable=True,
                            auto_delete=False)
        consumer = kombu.Consumer(conn.channel(), queues=[queue], on_message=on_message,
                                  auto_declare=False)
        consumer.qos(prefetch_count=cm.PREFETCH_COUNT)
        consumer.consume()
        connected.set()
        while not stop.is_set():
            try:
                conn.drain_events(timeout=0.2)
            except socket.timeout:
                pass


def drain_raw(url, name, count):
    """The baseline: a kombu consumer that acks each message and does nothing else. Run, like
    the sensor, in a thread of its own while this thread watches its count every 2 ms."""
    done, connected, stop, cpu = [0], threading.Event(), threading.Event(), [0.0]

    def on_message(message):
        message.ack()
        done[0] += 1

    def consume():
        cpu0 = time.thread_time()
        raw_consume(url, name, on_message, connected, stop)
        cpu[0] = time.thread_time() - cpu0
    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    connected.wait(30)
    began = time.perf_counter()
    while done[0] < count:
        time.sleep(0.002)
    took = time.perf_counter() - began
    stop.set()
    thread.join(5)
    return took, cpu[0], None


def make_sensor(url, name, datastore_dir):
    service = st2svc.detach_failed_service(
        datastore_path=os.path.join(datastore_dir, "%s.json" % name))
    settings = cs.Settings.from_config({"notifications": {
        "transport_url": url, "queue": name}})
    logger = logging.getLogger("bench.sensor")
    return nc.NovaDetachConsumer(settings, service, logger), service


def drain_sensor(url, name, count, datastore_dir, profile=None):
    consumer, service = make_sensor(url, name, datastore_dir)
    cpu = [0.0]

    def run():
        if profile is not None:
            profile.enable()
        cpu0 = time.thread_time()
        try:
            consumer.run()
        finally:
            cpu[0] = time.thread_time() - cpu0
            if profile is not None:
                profile.disable()
    thread = threading.Thread(target=run, daemon=True)
    stats = consumer.stats
    thread.start()
    consumer.connected.wait(30)
    began = time.perf_counter()
    while stats["irrelevant"] + stats["relevant"] + stats["malformed"] < count:
        time.sleep(0.002)
    took = time.perf_counter() - began
    consumer.stop()
    thread.join(5)
    assert service.invalid == [], service.invalid
    return took, cpu[0], len(service.dispatched)


def filter_rates(url, messages, rounds, datastore_dir, profile):
    """Alternating raw/sensor drains of the same traffic; per kind the rates (msg/s) and the
    consumer thread's CPU per message (us), per round the sensor/raw rate ratio."""
    out = {"raw": [], "sensor": [], "raw_cpu_us": [], "sensor_cpu_us": [], "ratios": []}
    items = traffic(messages)
    expected = sum(1 for _, _, timed in items if timed)
    for r in range(rounds):
        this_round = {}
        for kind in ("raw", "sensor") if r % 2 == 0 else ("sensor", "raw"):
            name = "bench.%s.%d" % (kind, r)
            declare_queue(url, name)
            fill(url, items)
            if kind == "raw":
                took, cpu, dispatched = drain_raw(url, name, len(items))
            else:
                took, cpu, dispatched = drain_sensor(url, name, len(items), datastore_dir,
                                                     profile if r == 0 else None)
                assert dispatched == expected, (dispatched, expected)
            delete_queue(url, name)
            this_round[kind] = len(items) / took
            out[kind].append(this_round[kind])
            out[kind + "_cpu_us"].append(cpu / len(items) * 1e6)
            print("  round %d %-6s %8.0f msg/s  %5.1f us CPU/msg" % (
                r + 1, kind, this_round[kind], out[kind + "_cpu_us"][-1]), flush=True)
        out["ratios"].append(this_round["sensor"] / this_round["raw"])
    return out, expected


def paced_publisher(url, count, rate, conn_out):
    """In a process of its own (spawned: no GIL or fork state shared with the consumer): make
    `count` messages, publish them at `rate` msg/s, send back {message_id: publish time} of the
    messages that complete a failure (CLOCK_MONOTONIC, the same in every process)."""
    items = traffic(count)
    published = {}
    with kombu.Connection(url, connect_timeout=5) as conn:
        producer = kombu.Producer(conn.channel())
        began = time.monotonic()
        for i, (key, body, timed) in enumerate(items):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if timed:
                published[timed] = time.monotonic()
                # the header is for the raw consumer's clock; the sensor never reads headers
                wire.publish(producer, body, key, headers={"bench_id": timed})
            else:
                wire.publish(producer, body, key)
    conn_out.send((published, len(items)))
    conn_out.close()


def stream(url, seconds, rate):
    """Start the paced publisher; returns a function that waits for its report."""
    parent_end, child_end = multiprocessing.Pipe(duplex=False)
    publisher = multiprocessing.get_context("spawn").Process(
        target=paced_publisher, args=(url, int(seconds * rate), rate, child_end))
    publisher.start()

    def report():
        result = parent_end.recv()
        publisher.join(30)
        return result
    return report


def latency(url, kind, seconds, rate, datastore_dir):
    """Publish-to-dispatch (sensor) or publish-to-delivery (raw) times in ms, sorted."""
    name = "bench.latency.%s" % kind
    received, stop = {}, threading.Event()
    if kind == "sensor":
        consumer, service = make_sensor(url, name, datastore_dir)
        dispatch = service.dispatch

        def timed_dispatch(trigger, payload=None, trace_tag=None):
            received[payload["message_id"]] = time.monotonic()
            return dispatch(trigger, payload=payload, trace_tag=trace_tag)
        service.dispatch = timed_dispatch
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        consumer.connected.wait(30)
    else:
        connected = threading.Event()

        def on_message(message):
            bench_id = (message.headers or {}).get("bench_id")
            if bench_id:
                received[bench_id] = time.monotonic()
            message.ack()

        def consume():
            raw_consume(url, name, on_message, connected, stop)
        declare_queue(url, name)
        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        connected.wait(30)
    published, streamed = stream(url, seconds, rate)()
    deadline = time.monotonic() + 10
    while len(received) < len(published) and time.monotonic() < deadline:
        time.sleep(0.05)
    if kind == "sensor":
        consumer.stop()
    stop.set()
    thread.join(5)
    delete_queue(url, name)
    samples = sorted((received[m] - t) * 1000.0 for m, t in published.items() if m in received)
    return {"samples": len(samples), "failures": len(published), "messages": streamed,
            "p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
            "max_ms": samples[-1] if samples else None}


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values))) - 1))
    return sorted_values[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000, help="per drain round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--latency-rate", type=float, default=2000.0,
                        help="msg/s of the live stream (0.1 %% of them detach failures)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the sensor's first drain round (top functions)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    work = tempfile.mkdtemp(prefix="sensor-bench-")
    broker = rabbitmq_process.RabbitMQ(os.path.join(work, "rabbitmq"), name="dvbench")
    profile = cProfile.Profile() if args.profile else None
    try:
        broker.start()
        print("Python %s; broker on %s; %d messages per round, 1 in %d a detach failure"
              % (sys.version.split()[0], rabbitmq_process.AMQP_ADDRESS, args.messages,
                 RELEVANT_EVERY), flush=True)
        rates, failures = filter_rates(broker.url, args.messages, args.rounds, work, profile)
        print("latency: %.0f s of live traffic at %.0f msg/s, raw consumer then sensor"
              % (args.latency_seconds, args.latency_rate), flush=True)
        lat = {kind: latency(broker.url, kind, args.latency_seconds, args.latency_rate, work)
               for kind in ("raw", "sensor")}
    finally:
        broker.close()
    median = statistics.median
    ratio = median(rates["ratios"])
    result = dict(rates, python=sys.version.split()[0], messages_per_round=args.messages,
                  rounds=args.rounds, failures_per_round=failures,
                  raw_median=median(rates["raw"]), sensor_median=median(rates["sensor"]),
                  ratio_median=ratio, latency_rate=args.latency_rate,
                  latency_seconds=args.latency_seconds, latency=lat)
    sensor_lat = lat["sensor"]
    lat_ok = (sensor_lat["samples"] == sensor_lat["failures"] and sensor_lat["p99_ms"] <= 50)
    print("\nfilter rate, median of %d rounds: raw kombu %.0f msg/s (%.1f us CPU/msg), sensor "
          "%.0f msg/s (%.1f us CPU/msg); sensor/raw per round %s, median %.2fx "
          "(target >= 0.8x) %s" % (
              args.rounds, median(rates["raw"]), median(rates["raw_cpu_us"]),
              median(rates["sensor"]), median(rates["sensor_cpu_us"]),
              " ".join("%.2f" % x for x in rates["ratios"]), ratio,
              "OK" if ratio >= 0.8 else "MISSED"))
    for kind, what in (("raw", "publish -> delivery (raw kombu, for reference)"),
                       ("sensor", "publish -> dispatch (sensor)")):
        r = lat[kind]
        print("latency %s over %d of %d failures: p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            what, r["samples"], r["failures"], r["p50_ms"], r["p99_ms"],
            r["max_ms"] if r["max_ms"] is not None else float("nan")))
    print("latency target (sensor p99 <= 50 ms, every failure dispatched): %s"
          % ("OK" if lat_ok else "MISSED"))
    out_dir = os.path.join(REPO, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sensor.json"), "w") as f:
        json.dump(result, f, indent=1)
    if profile is not None:
        print("\nsensor drain, round 1, top functions by own time:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    return 0 if ratio >= 0.8 and lat_ok else 1


if __name__ == "__main__":
    sys.exit(main())
