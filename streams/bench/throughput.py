"""``governor bench throughput``: cost events through a real worker process.

:func:`run_throughput` starts the embedded broker (or uses ``bootstrap``), creates the
topics under a fresh prefix, runs ``python -m streams worker`` (its own consumer
group, a temporary data dir with embedded chDB) and, once ``/health`` says ready,
produces pre-encoded :class:`~schemas.CostEvent` s for ``functions`` functions as fast
as one producer can, each with its function's MAC (the worker authenticates telemetry,
as ``governor worker`` does by default). A thread polls ``/health`` every 50 ms; events/s is the
``in_cost`` counter's rise between the first poll that saw a consumed event and the
first that saw all of them, over the time between those polls. Worker CPU comes
from ``/proc/<pid>/stat`` over the same span, RSS from ``/proc/<pid>/status`` at the end.

The worker has no counter for detector time, so it is measured here, in this process
(:func:`time_detectors`): a :class:`~streams.decisions.detection.Decider` like the worker's
(three robust z-scores per function, warmed up first so they score and learn) closes
and decides as many windows as the run closed (at least one per function) — close,
``on_window`` and the state snapshot, which is what the worker's timer does per
window — plus the per-event fast path (``on_event``), in thread CPU time.
Detector µs per event = (windows closed in the run × µs per window + events × fast
path µs) / events.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from agents._auth import Sealer, function_key
from agents.kafka_security import PLAINTEXT, KafkaSecurity
from schemas import CostEvent, encode
from streams.decisions.detection import Decider
from streams.decisions.snapshots import seal
from streams.decisions.windows import WindowAggregator
from streams.errors import BenchmarkError
from streams.kafka import ensure_topics
from streams.ops.broker import free_port, start_broker
from streams.settings import Settings

TARGET_EVENTS_PER_S = 50_000
POLL_S = 0.05
READY_TIMEOUT_S = 90.0
_VERDICT_KEY = secrets.token_hex(32)  # this run only
_STATE_KEY = secrets.token_hex(32)
_TELEMETRY_SECRET = secrets.token_hex(32)  # this run only: telemetry authenticated, as
# governor worker does by default; each event carries its function's MAC


@dataclass(frozen=True)
class Sample:
    """One ``/health`` poll of every worker: when, their counters summed, their CPU
    seconds so far, and each one's ``in_cost``."""

    t: float
    counters: dict[str, int]
    cpu_s: float
    each: tuple[int, ...] = ()


@dataclass(frozen=True)
class DetectorCost:
    """Detector CPU measured in-process on warm detectors (see :func:`time_detectors`)."""

    windows_timed: int
    us_per_window: float
    events_timed: int
    fast_path_us_per_event: float
    us_per_open_window: float = 0.0  # the sub-window fast path, on a warm function


@dataclass(frozen=True)
class ThroughputResult:
    """What one run measured."""

    events: int
    functions: int
    bootstrap: str
    embedded_broker: bool
    produce_s: float
    measured_events: int  # consumed between the first and the last poll that saw progress
    measured_s: float
    worker_cpu_s: float  # over the measured span
    rows_written: int
    dead_letters: int
    windows_closed: int  # by the worker, up to its last consumed event
    rss_mb: float
    peak_rss_mb: float
    detector: DetectorCost
    workers: int = 1
    per_worker_events: tuple[int, ...] = ()  # consumed by each worker in the run
    heavy_queries: int = 0  # analyst queries run to the end during the run
    slowed_queries: int = 0  # …of which read slowly: the worker had a backlog then
    backlog: bool = False  # produced before the workers started (else while they ran)

    @property
    def events_per_s_per_worker(self) -> float:
        return self.events_per_s / self.workers

    @property
    def events_per_s(self) -> float:
        return self.measured_events / self.measured_s if self.measured_s > 0 else 0.0

    @property
    def worker_cpu_us_per_event(self) -> float:
        return self.worker_cpu_s / self.measured_events * 1e6 if self.measured_events else 0.0

    @property
    def detector_us_per_event(self) -> float:
        d = self.detector
        total_us = (self.windows_closed * d.us_per_window
                    + self.events * d.fast_path_us_per_event)
        return total_us / self.events if self.events else 0.0


def function_names(functions: int) -> list[str]:
    return [f"bench-fn-{i:05d}" for i in range(functions)]


def make_events(events: int, functions: int, seed: int = 7) -> Iterator[CostEvent]:
    """``events`` valid cost events, round-robin over ``functions`` functions, with
    some spread in cost and duration (a steady, unremarkable load)."""
    rng = random.Random(seed)
    names = function_names(functions)
    for i in range(events):
        duration = rng.uniform(20.0, 80.0)
        compute = duration * 128 / 1024 / 1000 * 0.0000166667
        yield CostEvent(
            function=names[i % functions], invocation_id=f"bench-{i}", duration_ms=duration,
            billed_duration_ms=math.ceil(duration), compute_usd=compute, request_usd=2e-7,
            cost_usd=compute + 2e-7, version="v1", team="bench")


HEAVY_QUERY = ("SELECT a.function, count(), sum(a.cost_usd), quantileExact(0.99)(a.duration_ms) "
               "FROM cost_events AS a CROSS JOIN numbers(200) AS n GROUP BY a.function "
               "ORDER BY 2 DESC LIMIT 10")
"""An analyst's heavy query: every cost row two hundred times over, grouped."""


def run_throughput(events: int = 200_000, functions: int = 1_000,
                   bootstrap: str | None = None, settings: Settings | None = None,
                   workers: int = 1, heavy_query: bool = False,
                   backlog: bool = False) -> ThroughputResult:
    """Measure ``workers`` worker processes (one consumer group) on ``events`` cost
    events for ``functions`` functions.

    ``bootstrap``: an existing broker (its bench topics are deleted afterwards);
    ``None`` starts the embedded one. Other ``GOVERNOR_*`` variables pass through to
    the workers (e.g. ``GOVERNOR_SINK_BATCH``, ``GOVERNOR_CLICKHOUSE_URL``);
    ``settings`` (default: from the environment) shapes the detector timing.
    ``heavy_query``: an analyst's :data:`HEAVY_QUERY` runs on the first worker's query
    endpoint, one after another, while the events are consumed.
    ``backlog``: every event is produced before the workers start, so they drain a
    backlog (a restart after an outage) and the bench's own producer does not share
    the machine with them while they are measured; else events are produced while
    the ready workers consume them.
    """
    if events < 1 or functions < 1 or workers < 1:
        raise BenchmarkError("--events, --functions and --workers must be at least 1")
    settings = settings or Settings.from_env()
    security = PLAINTEXT if bootstrap is None else settings.kafka_security
    broker = None
    with tempfile.TemporaryDirectory(prefix="governor-throughput-") as tmp:
        data_dir = Path(tmp)
        started: list[tuple[subprocess.Popen[bytes], str]] = []
        prefix = f"bench{uuid.uuid4().hex[:10]}"
        try:
            if bootstrap is None:
                broker = start_broker(data_dir / "broker.log")
                bootstrap = broker.bootstrap
            ensure_topics(bootstrap, prefix, security=security)
            payloads = _sealed(make_events(events, functions))
            topic = f"{prefix}.costs"
            produce_s = _produce(bootstrap, topic, payloads, security) if backlog else 0.0
            for i in range(workers):  # all spawned at once, then each waited for
                port = free_port()
                own = data_dir / f"worker-{i}"
                own.mkdir()
                started.append((_start_worker(bootstrap, prefix, own, port),
                                f"http://127.0.0.1:{port}/health"))
            for i, (worker, health) in enumerate(started):
                _wait_ready(worker, health, data_dir / f"worker-{i}")
            if workers > 1 and not backlog:  # every worker in the group before the first event
                _wait_assigned([health for _, health in started])
            reader = _Reader(started[0][1].removesuffix("/health")) if heavy_query else None
            watcher = _Watcher(started, events, data_dir)
            watcher.start()
            if reader is not None:
                reader.start()
            if not backlog:
                produce_s = _produce(bootstrap, topic, payloads, security)
            samples = watcher.finish()
            if reader is not None:
                reader.stopping.set()
            final = _wait_written([health for _, health in started], events,
                                  samples[-1].counters)
            memory = [_rss_mb(worker.pid) for worker, _ in started]
        finally:
            for worker, _ in started:
                _stop(worker)
            if broker is not None:
                broker.stop()
            elif bootstrap is not None:
                _delete_topics(bootstrap, prefix, security)
    first = next(s for s in samples if s.counters.get("in_cost", 0) > 0)
    last = samples[-1]
    if first is last:  # all of it in one poll interval: count from the first sample
        first = samples[0]
    windows = last.counters.get("windows_closed", 0)
    detector = time_detectors(settings, functions, max(windows, functions), events)
    return ThroughputResult(
        events=events, functions=functions, bootstrap=bootstrap,
        embedded_broker=broker is not None, produce_s=produce_s,
        measured_events=last.counters.get("in_cost", 0) - first.counters.get("in_cost", 0),
        measured_s=last.t - first.t, worker_cpu_s=last.cpu_s - first.cpu_s,
        rows_written=final.get("rows_cost_events", 0), dead_letters=final.get("dlq_cost", 0),
        windows_closed=windows, rss_mb=max(m[0] for m in memory),
        peak_rss_mb=max(m[1] for m in memory), detector=detector, workers=workers,
        per_worker_events=last.each, heavy_queries=reader.done if reader else 0,
        slowed_queries=reader.slowed if reader else 0,
        backlog=backlog)


def ratio(without: float, with_: float) -> float:
    """``with / without`` of one pair of rates measured in turn (0 without a baseline)."""
    return with_ / without if without else 0.0


def median_ratio(rates: list[tuple[float, float]]) -> float:
    """The median :func:`ratio` over pairs of rates ``(without, with)``."""
    return statistics.median(ratio(without, with_) for without, with_ in rates)


class _Reader(threading.Thread):
    """Runs :data:`HEAVY_QUERY` on a worker's query endpoint until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(name="throughput-reader", daemon=True)
        self.url, self.done, self.slowed = url, 0, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        from streams.ops.query import query_endpoint

        while not self.stopping.is_set():
            with contextlib.suppress(Exception):  # a refused or timed-out query: go on
                result = query_endpoint(self.url, HEAVY_QUERY, timeout_s=60)
                self.done += 1
                self.slowed += result.rows_per_second_limit > 0


def _wait_assigned(healths: list[str], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until every worker decides some of the costs topic's partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if all(_health(h).get("cost_partitions") for h in healths):
                return
        time.sleep(0.2)
    raise BenchmarkError(f"the workers did not share the partitions within {timeout_s:.0f} s")


def _start_worker(bootstrap: str, prefix: str, data_dir: Path,
                  port: int) -> subprocess.Popen[bytes]:
    """A worker process of its own consumer group (so it never joins a real one)."""
    env = {**os.environ, "GOVERNOR_KAFKA_BOOTSTRAP": bootstrap, "GOVERNOR_TOPIC_PREFIX": prefix,
           "GOVERNOR_DATA_DIR": str(data_dir), "GOVERNOR_VERDICT_KEY": _VERDICT_KEY,
           "GOVERNOR_STATE_KEY": _STATE_KEY,
           "GOVERNOR_TELEMETRY_AUTH": "on", "GOVERNOR_TELEMETRY_KEY": f"b1:{_TELEMETRY_SECRET}",
           "GOVERNOR_QUERY_PORT": str(port), "GOVERNOR_QUERY_HOST": "127.0.0.1",
           "GOVERNOR_APP_ID": f"governor-{prefix}"}
    with open(data_dir / "worker.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(worker: subprocess.Popen[bytes], health: str, data_dir: Path) -> None:
    """Until ``worker`` says it is ready; BenchmarkError if it exits or takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if worker.poll() is not None:
            raise BenchmarkError(f"the worker exited with status {worker.returncode}:\n"
                                 + _log_tail(data_dir))
        with contextlib.suppress(OSError, ValueError):
            if _health(health).get("ready"):
                return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the worker was not ready within {READY_TIMEOUT_S:.0f} s:\n"
                                 + _log_tail(data_dir))
        time.sleep(0.2)


Payload = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]
"""A record to produce: key, value, headers."""


def _sealed(events: Iterable[CostEvent]) -> list[Payload]:
    """Each event encoded, with its function's MAC as an agent sends it."""
    sealers: dict[str, Sealer] = {}
    payloads = []
    for e in events:
        sealer = sealers.get(e.function)
        if sealer is None:
            key = function_key(b"b1", _TELEMETRY_SECRET.encode(), e.function, e.team).decode()
            sealer = sealers[e.function] = Sealer(key)
        value = encode(e)
        payloads.append((e.function.encode(), value, sealer.headers(value)))
    return payloads


class _Watcher(threading.Thread):
    """Polls the workers' ``/health`` every :data:`POLL_S` until they consumed
    ``total`` events (or one exited, or far too long passed)."""

    def __init__(self, workers: list[tuple[subprocess.Popen[bytes], str]], total: int,
                 data_dir: Path) -> None:
        super().__init__(name="throughput-watch", daemon=True)
        self.workers, self.total, self.data_dir = workers, total, data_dir
        self.timeout_s = 60.0 + total / 2_000  # far beyond any plausible run
        self.samples = [Sample(time.monotonic(), {}, self._cpu_s(), (0,) * len(workers))]
        self.failure: list[BaseException] = []

    def _cpu_s(self) -> float:
        return sum(_cpu_s(worker.pid) for worker, _ in self.workers)

    def _alive(self) -> bool:
        return all(worker.poll() is None for worker, _ in self.workers)

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline and self._alive():
                each = [_health(health)["counters"] for _, health in self.workers]
                summed: Counter[str] = Counter()
                for counters in each:
                    summed.update(counters)
                self.samples.append(Sample(time.monotonic(), dict(summed), self._cpu_s(),
                                           tuple(c.get("in_cost", 0) for c in each)))
                if summed.get("in_cost", 0) >= self.total:
                    return
                time.sleep(POLL_S)
        except (OSError, ValueError, KeyError) as exc:
            self.failure.append(exc)

    def finish(self) -> list[Sample]:
        """The samples, once every event was consumed; BenchmarkError if they were not."""
        self.join()
        consumed = self.samples[-1].counters.get("in_cost", 0)
        if self.failure or consumed < self.total:
            reason = f"polling /health failed: {self.failure[0]}" if self.failure else (
                "a worker exited" if not self._alive()
                else f"timed out after {self.timeout_s:.0f} s")
            raise BenchmarkError(f"the workers consumed {consumed:,} of {self.total:,} "
                                 f"events ({reason}):\n" + _log_tail(self.data_dir))
        return self.samples


def _produce(bootstrap: str, topic: str, payloads: list[Payload],
             security: KafkaSecurity = PLAINTEXT) -> float:
    """Produce ``payloads`` to ``topic`` as fast as one producer can; seconds taken."""
    from confluent_kafka import Producer

    total = len(payloads)
    producer = Producer(security.client_config(bootstrap, {
        "linger.ms": 20, "batch.num.messages": 10_000, "partitioner": "murmur2_random",
        "queue.buffering.max.messages": max(100_000, total + 1),
        "queue.buffering.max.kbytes": 1_048_576, "log_level": 0}))
    started = time.monotonic()
    for key, value, headers in payloads:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                producer.poll(0.05)
        producer.poll(0)
    flush_s = 30 + total / 10_000
    if producer.flush(flush_s) > 0:
        raise BenchmarkError(f"the producer could not deliver every event within {flush_s:.0f} s")
    return time.monotonic() - started


def _wait_written(healths: list[str], events: int, counters: dict[str, int],
                  timeout_s: float = 10.0) -> dict[str, int]:
    """The workers' counters, summed, once the sink has written every event (or
    ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while counters.get("rows_cost_events", 0) < events and time.monotonic() < deadline:
        time.sleep(POLL_S)
        summed: Counter[str] = Counter()
        for health in healths:
            summed.update(_health(health)["counters"])
        counters = dict(summed)
    return counters


def time_detectors(settings: Settings, functions: int, windows: int,
                   events: int) -> DetectorCost:
    """Thread CPU per closed window and per event of a worker-like :class:`Decider`.

    Every function is warmed up (``warmup_windows`` + 1 windows, untimed), then at
    least ``windows`` windows are closed and decided in rounds of one per function,
    each holding ``events / windows`` events with some spread; then the fast path
    runs over ``min(events, 100,000)`` events.
    """
    window_ns = int(settings.window_seconds * 1e9)
    decider = Decider(settings)
    state_key = _STATE_KEY.encode()
    per_window = max(1, events // max(windows, 1))
    distinct = min(2 * per_window, 32)  # events per function, reused round-robin
    pool = list(make_events(distinct * functions, functions, seed=11))
    rng = random.Random(3)

    def fill() -> WindowAggregator:
        aggregator = WindowAggregator(window_ns)
        for function in range(functions):
            count = max(1, round(per_window * rng.uniform(0.8, 1.2)))
            for k in range(count):
                aggregator.add(pool[k % distinct * functions + function])
        return aggregator

    due = time.time_ns() + 10 * window_ns
    for _ in range(settings.warmup_windows + 1):
        for function, window in fill().close_due(due):
            decider.on_window(function, window, due)
    timed, cpu_ns = 0, 0
    while timed < windows:
        aggregator = fill()
        start = time.thread_time_ns()
        for function, window in aggregator.close_due(due):
            decider.on_window(function, window, due)
            seal(function, decider.state(function) or {}, state_key)
            timed += 1
        cpu_ns += time.thread_time_ns() - start
    fast = (pool * (min(events, 100_000) // len(pool) + 1))[:min(events, 100_000)]
    start = time.thread_time_ns()
    for event in fast:
        decider.on_event(event, window_ns)
    fast_ns = time.thread_time_ns() - start
    looks, open_ns = 0, 0
    while looks < windows:  # each warm function's open window, looked at halfway
        aggregator = fill()
        for function, window in aggregator.close_due(due):
            start = time.thread_time_ns()
            decider.on_partial(function, window, window.start_ns + window_ns // 2)
            open_ns += time.thread_time_ns() - start
            looks += 1
    return DetectorCost(timed, cpu_ns / timed / 1e3, len(fast), fast_ns / len(fast) / 1e3,
                        open_ns / looks / 1e3)


def format_report(r: ThroughputResult) -> list[str]:
    """The report's lines; the last is ``throughput: <N> events/s per worker``."""
    d = r.detector
    broker = "embedded Tansu" if r.embedded_broker else "GOVERNOR_KAFKA_BOOTSTRAP"
    verdict = "PASS" if r.events_per_s_per_worker >= TARGET_EVENTS_PER_S else "BELOW"
    rows = [
        ("events produced", f"{r.events:,} cost events, {r.functions:,} functions, "
         f"in {r.produce_s:.1f} s ({r.events / max(r.produce_s, 1e-9):,.0f}/s, one producer), "
         + ("all before the workers started (a backlog)" if r.backlog
            else "while the workers consumed them")),
        ("measured span", f"{r.measured_events:,} events consumed in {r.measured_s:.2f} s "
         "(first → last consumed, /health every 50 ms)"),
        ("events/s per worker process", f"{r.events_per_s_per_worker:,.0f} "
         f"(target ≥ {TARGET_EVENTS_PER_S:,}: {verdict})"),
        *([("events/s, all workers", f"{r.events_per_s:,.0f}; each consumed "
            + ", ".join(f"{n:,}" for n in r.per_worker_events))] if r.workers > 1 else []),
        *([("analyst queries meanwhile", f"{r.heavy_queries:,} heavy queries run to the end "
            f"on the first worker's endpoint, {r.slowed_queries:,} of them read slowly "
            "(the worker had a backlog)")] if r.heavy_queries else []),
        ("worker CPU per event", f"{r.worker_cpu_us_per_event:.1f} µs "
         f"({r.worker_cpu_s / max(r.measured_s, 1e-9):.2f} cores busy)"),
        ("rows written / dead letters", f"{r.rows_written:,} / {r.dead_letters:,}"),
        ("windows closed in the run", f"{r.windows_closed:,}"),
        ("detector per window", f"{d.us_per_window:.1f} µs (close + on_window + snapshot, "
         f"{d.windows_timed:,} warm windows, in-process)"),
        ("detector fast path per event", f"{d.fast_path_us_per_event:.2f} µs "
         f"(on_event, {d.events_timed:,} events, in-process)"),
        ("detector per open window", f"{d.us_per_open_window:.1f} µs (the sub-window fast "
         "path: on_partial on a warm function's window so far, in-process)"),
        ("detector per event", f"{r.detector_us_per_event:.2f} µs "
         "(windows closed × per window + events × fast path) / events"),
        ("worker RSS", f"{r.rss_mb:,.0f} MB (peak {r.peak_rss_mb:,.0f} MB)"),
    ]
    width = max(len(name) for name, _ in rows) + 2
    who = "one worker process" if r.workers == 1 else f"{r.workers} worker processes"
    return [f"bench throughput: {who}, broker {r.bootstrap} ({broker}), telemetry "
            "authenticated", "", *(f"{name:<{width}}{value}" for name, value in rows), "",
            f"throughput: {round(r.events_per_s_per_worker)} events/s per worker"
            + (f" ({round(r.events_per_s)} in all)" if r.workers > 1 else "")]


def _health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict[str, Any] = orjson.loads(response.read())
    return body


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident set size of process ``pid``, MB."""
    found = dict(_status_lines(pid))
    return found.get("VmRSS", 0) / 1024, found.get("VmHWM", 0) / 1024


def _status_lines(pid: int) -> Iterator[tuple[str, int]]:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                yield name, int(value.split()[0])


def _delete_topics(bootstrap: str, prefix: str, security: KafkaSecurity = PLAINTEXT) -> None:
    """Remove the run's topics from a broker this benchmark did not start."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(security.client_config(bootstrap, {"log_level": 0}))
    with contextlib.suppress(Exception):
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix + ".")]
        for future in admin.delete_topics(names, request_timeout=10).values() if names else ():
            with contextlib.suppress(Exception):
                future.result()


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _log_tail(data_dir: Path, chars: int = 3000) -> str:
    """The end of each worker's log under ``data_dir``."""
    tails = [f"{path.parent.name}: " + path.read_text(errors="replace")[-chars:]
             for path in sorted(data_dir.rglob("worker.log"))]
    return "\n".join(tails) or "(no worker log)"
