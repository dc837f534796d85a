"""What ``@govern`` costs a function: import time, CPU per warm call, memory growth.

Run: ``.venv/bin/python benchmarks/agent_overhead.py [--calls N] [--memory-calls M]``

1. Import time: ``import agents`` timed inside a fresh interpreter (perf_counter around
   the import; the first run compiles bytecode into a temporary PYTHONPYCACHEPREFIX and is
   shown apart, then median of 5); in-run baseline: ``opentelemetry.sdk.trace``.
2. CPU per warm call of ``def handler(event, context): return event``, bare and wrapped,
   in batches (after a 2,000-call warm-up), as per-call µs per batch, medians. Thread CPU
   (``thread_time_ns``) is the handler thread only; process CPU (``process_time_ns``) adds
   the agent's export/verdict threads and librdkafka's threads — what the function pays,
   so it is the headline. "added" = median(wrapped) − median(bare). Configurations:
   (a) broker up: an embedded Tansu broker started here, topics under a unique prefix;
   (b) broker down: ``kafka_bootstrap`` on a free port nobody listens on.
   Back-to-back calls outrun the export thread, so records get dropped (counted) and
   their export CPU is never spent; the "flush(0)" rows call ``agents.flush(0)`` inside
   the timed window every 1,000 calls, so every queued record is converted and produced.
   Reference: the OTel SDK alone (TracerProvider, no-op SpanProcessor, start_span + end).
3. Memory: current RSS (``/proc/self/statm``) before, at each quarter of and after
   ``--memory-calls`` wrapped calls with the broker down, and the agent's counters.

Nothing is asserted; targets are printed as PASS/MISS.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

import agents
from streams.stack import ensure_topics, free_port, start_broker

ROOT = Path(__file__).resolve().parents[1]

WARMUP, DRAIN_EVERY = 2_000, 1_000
TARGET_US, TARGET_IMPORT_MS, TARGET_MB = 15.0, 150.0, 50.0
EVENT: dict[str, Any] = {"id": 1}
Handler = Callable[[Any, Any], Any]


def bare(event: Any, context: Any) -> Any:
    return event


wrapped: Handler = agents.govern(function="bench", memory_mb=128)(bare)
_tracer = TracerProvider()
_tracer.add_span_processor(SpanProcessor())  # the base class: every hook a no-op
_otel_tracer = _tracer.get_tracer("bench")


def otel_alone(event: Any, context: Any) -> Any:
    span = _otel_tracer.start_span("bench")
    try:
        return bare(event, context)
    finally:
        span.end()


def import_ms(module: str, runs: int = 5) -> tuple[float, float]:
    """(median ms of ``runs`` warm imports, ms of the first import compiling from source),
    each in a fresh interpreter, bytecode cached under a temporary PYTHONPYCACHEPREFIX."""
    code = f"import time; t = time.perf_counter_ns(); import {module}; " \
           "print(time.perf_counter_ns() - t)"
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        times = [int(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                                    capture_output=True, text=True).stdout) / 1e6
                 for _ in range(runs + 1)]
    return statistics.median(times[1:]), times[0]


def dropped(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.startswith("dropped"))


def cpu_per_call(fn: Handler, calls: int, per_batch: int, governed: bool = False,
                 after: Callable[[], object] | None = None) -> tuple[float, float, int, int]:
    """Median thread and process µs per call over ``calls // per_batch`` batches, plus
    the agent's drop counters' growth while timed and the number of timed calls."""
    for _ in range(WARMUP):
        fn(EVENT, None)
    batches, thread, process = max(1, calls // per_batch), [], []
    before = dropped(agents.stats()) if governed else 0
    for _ in range(batches):
        t0, p0 = time.thread_time_ns(), time.process_time_ns()
        for _ in range(per_batch):
            fn(EVENT, None)
        if after is not None:
            after()
        thread.append((time.thread_time_ns() - t0) / per_batch / 1e3)
        process.append((time.process_time_ns() - p0) / per_batch / 1e3)
    lost = dropped(agents.stats()) - before if governed else 0
    return statistics.median(thread), statistics.median(process), lost, batches * per_batch


def run_config(label: str, bootstrap: str, calls: int) -> dict[str, Any]:
    per_batch = max(1, calls // 20)
    out: dict[str, Any] = {"bare": cpu_per_call(bare, calls, per_batch),
                           "otel": cpu_per_call(otel_alone, calls, per_batch)}
    runtime = agents.configure(agents.AgentSettings(
        kafka_bootstrap=bootstrap, verdict_key=b"k", topic_prefix=label))
    try:
        out["wrapped"] = cpu_per_call(wrapped, calls, per_batch, True)
        out["drained"] = cpu_per_call(wrapped, calls, DRAIN_EVERY, True,
                                      lambda: agents.flush(0.0))
    finally:
        agents.shutdown(1.0)
    out["stats"] = runtime.stats.snapshot()
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_phase(calls: int) -> tuple[list[float], float, dict[str, int], dict[str, int]]:
    runtime = agents.configure(agents.AgentSettings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}", verdict_key=b"k", topic_prefix="mem"))
    try:
        for _ in range(WARMUP):
            wrapped(EVENT, None)
        gc.collect()
        rss, t0 = [rss_mb()], time.perf_counter()
        for _ in range(4):
            for _ in range(calls // 4):
                wrapped(EVENT, None)
            rss.append(rss_mb())
        wall = time.perf_counter() - t0
        live = agents.stats()
    finally:
        agents.shutdown(2.0)
    return rss, wall, live, runtime.stats.snapshot()


def target(value: float, limit: float, unit: str) -> tuple[str, str]:
    return f"<= {limit:.0f} {unit}", "PASS" if value <= limit else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000,
                        help="timed calls per variant, in 20 batches (default 100000)")
    parser.add_argument("--memory-calls", type=int, default=1_000_000,
                        help="wrapped calls of the memory phase, broker down (default 1000000)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"{args.calls} timed calls per variant, {args.memory_calls} memory-phase calls")

    (imp_agents, cold_agents), (imp_otel, cold_otel) = (
        import_ms("agents"), import_ms("opentelemetry.sdk.trace"))

    broker = start_broker()
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        ensure_topics(broker.bootstrap, prefix)
        up = run_config(prefix, broker.bootstrap, args.calls)
        print("broker up done:", up["stats"])
        down = run_config(f"down-{prefix}", f"127.0.0.1:{free_port()}", args.calls)
        print("broker down done:", down["stats"])
        mem = memory_phase(args.memory_calls)
    finally:
        agents.shutdown(1.0)
        broker.stop()

    rss, wall, live, final = mem
    rows: list[tuple[str, ...]] = [
        ("import agents (median of 5)", f"{imp_agents:.1f} ms",
         *target(imp_agents, TARGET_IMPORT_MS, "ms")),
        ("import opentelemetry.sdk.trace (baseline)", f"{imp_otel:.1f} ms"),
        ("  ratio agents / otel sdk", f"{imp_agents / imp_otel:.2f}x"),
        ("  first import, no .pyc: agents / otel sdk", f"{cold_agents:.0f} / {cold_otel:.0f} ms"),
    ]
    for name, res in (("broker up", up), ("broker down", down)):
        (bt, bp, *_), (ot, op, *_), (wt, wp, wl, wn), (dt, dp, dl, dn) = (
            res[k] for k in ("bare", "otel", "wrapped", "drained"))
        tag = f"[{name}]"
        rows += [
            (f"{tag} bare handler, thread / process CPU", f"{bt:.2f} / {bp:.2f} us"),
            (f"{tag} added by @govern, process CPU", f"{wp - bp:.1f} us",
             *target(wp - bp, TARGET_US, "us")),
            (f"{tag}   handler thread CPU only", f"{wt - bt:.1f} us"),
            (f"{tag}   dropped_* counted while timed / calls", f"{wl} / {wn}"),
            (f"{tag} added, flush(0) every {DRAIN_EVERY}, process", f"{dp - bp:.1f} us",
             *target(dp - bp, TARGET_US, "us")),
            (f"{tag}   handler thread CPU only", f"{dt - bt:.1f} us"),
            (f"{tag}   dropped_* counted while timed / calls", f"{dl} / {dn}"),
            (f"{tag} OTel SDK alone added, thread / process", f"{ot - bt:.1f} / {op - bp:.1f} us"),
            (f"{tag}   @govern / OTel SDK alone (process)", f"{(wp - bp) / (op - bp):.1f}x"),
        ]
    rows += [
        ("RSS MB: before, after each quarter (broker down)", " ".join(f"{r:.0f}" for r in rss)),
        (f"RSS growth over {args.memory_calls} calls", f"{rss[-1] - rss[0]:.1f} MB",
         *target(rss[-1] - rss[0], TARGET_MB, "MB")),
        ("  memory phase wall time", f"{wall:.1f} s ({args.memory_calls / wall:,.0f}/s)"),
    ]
    print()
    for row in [("figure", "measured", "target"), ("-" * 48, "-" * 22, "-" * 9, "----"), *rows]:
        label, value, limit, mark = (*row, "", "")[:4]
        print(f"{label:<48} {value:>22} {limit:>9} {mark}")
    print(f"\nagents.stats() after {args.memory_calls} calls (broker down): {live}")
    print(f"after shutdown ({args.memory_calls + WARMUP} calls in all): {final}")
    print(f"agent overhead: {up['wrapped'][1] - up['bare'][1]:.1f} us/call added (broker up)")


if __name__ == "__main__":
    main()
