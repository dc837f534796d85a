"""What ``@govern`` costs a function: import time, CPU per warm call, memory growth.

Run: ``.venv/bin/python benchmarks/agent_overhead.py [--batches N] [--memory-calls M]``

* Import: ``import agents`` in a fresh interpreter (median of 5), against
  ``opentelemetry.sdk.trace`` alone measured the same way.
* CPU per warm call of ``def handler(event, context): return event``: bare, wrapped,
  and the OpenTelemetry SDK alone (one span started and ended, no processor), in
  batches of 1,500 calls. *Hot path* is the handler thread's CPU during the batch
  (``thread_time_ns``): what the call itself pays. The export of each batch runs
  after it (a flush that waits for delivery), so the export thread does not compete
  with the timed calls for the 2 cores (they may be SMT siblings, where concurrent
  work slows both); *export* is the process CPU of that flush per call, librdkafka's
  threads included, and *total* = hot path + export. The queue holds a whole batch,
  so nothing is dropped while measuring. "Added" = median wrapped − median bare.
  Broker up: an embedded Tansu broker started here. Broker down: a loopback port
  nobody listens on.
* Wall time added per warm call in a tight loop, the way a busy function runs: the
  export thread running at its default period (it competes with the calls for the GIL),
  broker up, batches of 1,500 calls interleaved with the bare handler's; median of the
  rounds' differences.
* Lambda mode (flush-on-return, as inside AWS Lambda without the layer): wall time of
  each invocation, broker up and down, against the bare handler's, median and p99; and
  with the layer, each invocation's records handed to the extension's socket (a
  separate process reading it stands in for the extension, whose delivery to Kafka is
  off the function's path).
* Memory: RSS before and after ``--memory-calls`` wrapped calls with the broker down.

Each configuration runs in a fresh interpreter, so one's threads (a producer still
retrying a dead broker) cannot slow another.

Targets (printed, never asserted): ≤ 10 µs wall and ≤ 8 µs calling-thread CPU added per
warm call, ≤ 100 µs median per invocation in Lambda mode, import ≤ 100 ms, memory growth
≤ 50 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import agents
from streams.kafka import ensure_topics
from streams.ops.broker import free_port, start_broker

BATCH, WARMUP = 1_500, 3_000
TARGET_US, TARGET_WALL_US, TARGET_LAMBDA_US = 8.0, 10.0, 100.0
TARGET_IMPORT_MS, TARGET_MB = 100.0, 50.0
LAMBDA_CALLS = 3_000
EVENT: dict[str, Any] = {"id": 1}


def bare(event: Any, context: Any) -> Any:
    return event


_tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("bench")


def otel_only(event: Any, context: Any) -> Any:
    _tracer.start_span("bench").end()
    return event


def import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) * 1000 for _ in range(6)]
    return statistics.median(runs[1:])  # the first run may compile bytecode


def batch(handler: Callable[[Any, Any], Any], drain: Callable[[], object]) -> tuple[float, float]:
    """µs per call of one batch: (handler-thread CPU, process CPU of exporting it)."""
    t0 = time.thread_time_ns()
    for _ in range(BATCH):
        handler(EVENT, None)
    t1 = time.thread_time_ns()
    p0 = time.process_time_ns()
    drain()
    p1 = time.process_time_ns()
    return (t1 - t0) / BATCH / 1000, (p1 - p0) / BATCH / 1000


def measure(bootstrap: str, prefix: str, batches: int, wait: float) -> dict[str, float]:
    agents.configure(agents.AgentSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix,
                                          verdict_key=b"bench", queue_size=BATCH,
                                          export_interval_ms=3_600_000))
    wrapped = agents.govern(function="bench", memory_mb=128)(bare)
    for _ in range(WARMUP):
        wrapped(EVENT, None)
    agents.flush(wait)
    before = agents.stats()
    drain: Callable[[], object] = lambda: agents.flush(wait)  # noqa: E731
    # Interleaved rounds: a noisy moment on the machine hits all three variants alike,
    # and each round's differences are taken before the median.
    added, otel, export = [], [], []
    for _ in range(batches):
        base = batch(bare, drain)[0]
        otel.append(batch(otel_only, drain)[0] - base)
        hot, exported = batch(wrapped, drain)
        added.append(hot - base)
        export.append(exported)
    after = agents.stats()
    dropped = sum(v - before.get(k, 0) for k, v in after.items() if k.startswith("dropped_"))
    agents.shutdown(1.0)
    hot = statistics.median(added)
    return {"hot": hot, "hot_min": min(added), "export": statistics.median(export),
            "total": hot + statistics.median(export),
            "otel": statistics.median(otel), "dropped": dropped,
            "produced": after.get("produced", 0) - before.get("produced", 0)}


def wall(bootstrap: str, prefix: str, batches: int) -> dict[str, float]:
    """µs of wall time added per warm call, the export thread running at its default."""
    agents.configure(agents.AgentSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix,
                                          verdict_key=b"bench"))
    wrapped = agents.govern(function="bench-wall", memory_mb=128)(bare)

    def timed(handler: Callable[[Any, Any], Any]) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(BATCH):
            handler(EVENT, None)
        return (time.perf_counter_ns() - t0) / BATCH / 1000

    for _ in range(WARMUP):
        wrapped(EVENT, None)
    added = []
    for _ in range(batches):
        base = timed(bare)
        added.append(timed(wrapped) - base)
        time.sleep(0.05)  # let the export thread catch up, as between bursts
    stats = agents.stats()
    agents.shutdown(1.0)
    return {"wall": statistics.median(added), "wall_min": min(added),
            "produced": stats.get("produced", 0),
            "queue_full": stats.get("dropped_queue_full", 0),
            "buffer_full": stats.get("dropped_buffer_full", 0),
            "dropped": sum(v for k, v in stats.items() if k.startswith("dropped_"))}


RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    s.recv(262144)
"""


def with_extension(bootstrap: str, prefix: str) -> dict[str, float]:
    """Lambda mode with the layer: records handed to a separate process over the
    extension's socket (this receiver stands in for it, reading and discarding)."""
    path = f"/tmp/governor-bench-{uuid.uuid4().hex[:8]}.sock"
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, path], stdout=subprocess.PIPE,
                                text=True)
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        return in_lambda(bootstrap, prefix, extension_socket=path)
    finally:
        receiver.kill()
        receiver.wait()
        if os.path.exists(path):
            os.unlink(path)


def in_lambda(bootstrap: str, prefix: str, extension_socket: str = "") -> dict[str, float]:
    """µs of wall time per invocation in flush-on-return mode, and the bare handler's."""
    agents.configure(agents.AgentSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix,
                                          verdict_key=b"bench", flush_on_return=True,
                                          flush_timeout_ms=50,
                                          extension_socket=extension_socket))
    wrapped = agents.govern(function="bench-lambda", memory_mb=128)(bare)
    governed, plain = [], []
    for i in range(LAMBDA_CALLS):
        for handler, into in ((wrapped, governed), (bare, plain)):
            t0 = time.perf_counter_ns()
            handler(EVENT, None)
            into.append((time.perf_counter_ns() - t0) / 1000)
        if i % 100 == 0:
            time.sleep(0.01)
    stats = agents.stats()
    agents.shutdown(1.0)
    governed.sort()
    return {"median": statistics.median(governed) - statistics.median(plain),
            "p99": governed[int(0.99 * len(governed))],
            "flushes_skipped": stats.get("flushes_skipped", 0),
            "flushes_batched": stats.get("flushes_batched", 0),
            "handed": stats.get("handed_to_extension", 0)}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def memory_growth(calls: int) -> tuple[float, dict[str, int]]:
    agents.configure(agents.AgentSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}",
                                          verdict_key=b"bench"))
    wrapped = agents.govern(function="bench-memory", memory_mb=128)(bare)
    for _ in range(WARMUP):
        wrapped(EVENT, None)
    start = rss_mb()
    for _ in range(calls):
        wrapped(EVENT, None)
    growth = rss_mb() - start
    stats = agents.stats()
    agents.shutdown(0.5)
    return growth, stats


def run_part(part: str, args: argparse.Namespace) -> Any:
    """Run one configuration in this interpreter; return its figures."""
    if part == "down":
        return measure(f"127.0.0.1:{free_port()}", "bench", args.batches, wait=0.0)
    if part == "lambda-down":
        return in_lambda(f"127.0.0.1:{free_port()}", "bench")
    if part == "lambda-extension":
        return with_extension(f"127.0.0.1:{free_port()}", "bench")
    if part == "memory":
        return memory_growth(args.memory_calls)
    broker = start_broker()
    try:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        ensure_topics(broker.bootstrap, prefix)
        if part == "wall":
            return wall(broker.bootstrap, prefix, args.batches)
        if part == "lambda-up":
            return in_lambda(broker.bootstrap, prefix)
        return measure(broker.bootstrap, prefix, args.batches, wait=10.0)
    finally:
        broker.stop()


def in_child(part: str, args: argparse.Namespace) -> Any:
    out = subprocess.run([sys.executable, __file__, "--part", part, "--batches",
                          str(args.batches), "--memory-calls", str(args.memory_calls)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--memory-calls", type=int, default=1_000_000)
    parser.add_argument("--part", choices=("up", "down", "wall", "lambda-up", "lambda-down",
                                           "lambda-extension", "memory"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(run_part(args.part, args)))
        return

    imports = {m: import_ms(m) for m in ("agents", "opentelemetry.sdk.trace")}
    up, down = in_child("up", args), in_child("down", args)
    walled = in_child("wall", args)
    lambdas = {"broker up": in_child("lambda-up", args),
               "broker down": in_child("lambda-down", args),
               "with the layer's extension": in_child("lambda-extension", args)}
    growth, stats = in_child("memory", args)

    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        print(f"{name:<52} {value:>12} {target:>10} {verdict}")

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.batches} batches "
          f"of {BATCH} calls per variant\n")
    row("import agents (median of 5)", f"{imports['agents']:.1f} ms",
        f"<= {TARGET_IMPORT_MS:.0f} ms", imports["agents"] <= TARGET_IMPORT_MS)
    otel_ms = imports["opentelemetry.sdk.trace"]
    row("  import opentelemetry.sdk.trace (baseline)", f"{otel_ms:.1f} ms")
    row("  ratio", f"{imports['agents'] / otel_ms:.2f}x")
    for tag, r in (("broker up", up), ("broker down", down)):
        row(f"[{tag}] added per warm call, hot path", f"{r['hot']:.1f} us",
            f"<= {TARGET_US:.0f} us", r["hot"] <= TARGET_US)
        row(f"[{tag}]   best batch", f"{r['hot_min']:.1f} us")
        row(f"[{tag}]   OTel SDK span alone, hot path", f"{r['otel']:.1f} us")
        row(f"[{tag}]   ratio agent / OTel SDK span", f"{r['hot'] / r['otel']:.2f}x")
        row(f"[{tag}] export per call (off the call path)", f"{r['export']:.1f} us")
        row(f"[{tag}] total CPU added per call", f"{r['total']:.1f} us")
        row(f"[{tag}]   events produced / dropped while timed",
            f"{r['produced']:.0f} / {r['dropped']:.0f}")
    row("[broker up] wall time added per warm call, export live", f"{walled['wall']:.1f} us",
        f"<= {TARGET_WALL_US:.0f} us", walled["wall"] <= TARGET_WALL_US)
    row("[broker up]   best batch", f"{walled['wall_min']:.1f} us")
    row("[broker up]   events produced / dropped: agent queue full, producer buffer "
        "full (the broker's pace) / other",
        f"{walled['produced']:.0f} / {walled['queue_full']:.0f}, {walled['buffer_full']:.0f}"
        f" / {walled['dropped'] - walled['queue_full'] - walled['buffer_full']:.0f}")
    for tag, r in lambdas.items():
        row(f"[Lambda mode, {tag}] added per invocation, median", f"{r['median']:.1f} us",
            f"<= {TARGET_LAMBDA_US:.0f} us", r["median"] <= TARGET_LAMBDA_US)
        row(f"[Lambda mode, {tag}]   p99 per invocation", f"{r['p99']:.1f} us")
        row(f"[Lambda mode, {tag}]   flushes batched / skipped (breaker)",
            f"{r['flushes_batched']:.0f} / {r['flushes_skipped']:.0f}")
    row(f"RSS growth over {args.memory_calls:,} calls, broker down", f"{growth:.1f} MB",
        f"<= {TARGET_MB:.0f} MB", growth <= TARGET_MB)
    drops = {k: v for k, v in stats.items() if k.startswith("dropped_")}
    print(f"\ndrops counted over the memory run (events): {drops}")
    print(f"agent overhead: {up['hot']:.1f} us/call added (broker up)")


if __name__ == "__main__":
    main()
