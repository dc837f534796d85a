"""The worker's Prometheus metrics, served at ``GET /metrics`` on its HTTP port.

One :class:`WorkerMetrics` per app, in a :class:`~prometheus_client.CollectorRegistry`
of its own (never the process-global one, so two apps in one process do not collide).
Counters and histograms are updated where things happen; gauges (consumer lag, window
backlog, readiness) and the worker's plain counters (``/health``'s ``counters``) are
read when Prometheus scrapes, through :class:`Probes`.

==================================  ==================================================
``governor_events_in_total``        valid records taken, by ``topic``
``governor_events_out_total``       records published, by ``topic``
``governor_dlq_total``              dead letters, by source ``topic`` and ``reason``
                                    (a :class:`~streams.pipeline.decoding.DeadReason`)
``governor_consumer_lag``           records behind the high watermark, by ``topic`` and
                                    ``partition``: the hot topics' batch consumer, and
                                    Faust's agents' topics as of their last fetch
``governor_decisions_total``        policy decisions, by ``kind`` (throttle, isolate …)
``governor_verdicts_total``         verdicts issued, by ``action``
``governor_pages_total``            incident events paged, by ``kind`` (runbook section)
``governor_sink_write_seconds``     one ClickHouse insert, by ``table``
``governor_sink_errors_total``      failed ClickHouse inserts, by ``table``
``governor_detector_seconds``       one decision, by ``detector`` (``window``: a closed
                                    window; ``fast_path``: an open one so far)
``governor_window_backlog``         windows with events not decided yet
``governor_ready``                  1 when consuming and writing (``/readyz``), else 0
``governor_up_seconds``             seconds since the worker started
``governor_worker_events_total``    the worker's counters of ``/health``, by ``name``
``governor_pager_events_total``     page deliveries, by ``outcome`` (delivered, retried,
                                    failed, dropped, skipped)
``process_*``                       the process's CPU, memory and file descriptors
==================================  ==================================================
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas import Event, Incident, PolicyDecision, Verdict
from streams.paging.incidents import incident_kind, is_paged
from streams.pipeline.decoding import DeadReason

__all__ = ["CONTENT_TYPE", "Probes", "WorkerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition's ``Content-Type``: the text format every Prometheus reads."""

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            5.0, 10.0)
_NAME = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True)
class Probes:
    """What the scrape reads from the running worker."""

    lag: Callable[[], Mapping[tuple[str, int], int]]
    """Records behind, by (topic, partition)."""
    backlog: Callable[[], int]
    ready: Callable[[], bool]
    counters: Callable[[], Mapping[str, int]]
    pager: Callable[[], Mapping[str, int]]


class WorkerMetrics:
    """A worker's metrics; :meth:`exposition` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("governor_events_in", "Valid records taken, by topic.",
                                 ["topic"], registry=r)
        self.events_out = Counter("governor_events_out", "Records published, by topic.",
                                  ["topic"], registry=r)
        self.dlq = Counter("governor_dlq", "Records sent to the dead-letter topic, by "
                           "source topic and reason.", ["topic", "reason"], registry=r)
        self.decisions = Counter("governor_decisions", "Policy decisions, by kind.",
                                 ["kind"], registry=r)
        self.verdicts = Counter("governor_verdicts", "Verdicts issued, by action.",
                                ["action"], registry=r)
        self.pages = Counter("governor_pages", "Incident events paged, by kind.", ["kind"],
                             registry=r)
        self.sink_write = Histogram("governor_sink_write_seconds", "One ClickHouse insert, "
                                    "by table.", ["table"], buckets=_SECONDS, registry=r)
        self.sink_errors = Counter("governor_sink_errors", "Failed ClickHouse inserts, by "
                                   "table.", ["table"], registry=r)
        self.detector = Histogram("governor_detector_seconds", "One decision on a function, "
                                  "by detector path.", ["detector"], buckets=_SECONDS,
                                  registry=r)
        self.window = self.detector.labels("window")
        """A closed window decided (its children bound once: the paths are hot)."""
        self.fast_path = self.detector.labels("fast_path")
        self.started = time.monotonic()
        ProcessCollector(registry=r)

    def watch(self, probes: Probes) -> None:
        """Read ``probes`` on every scrape (once; the app calls it when it is built)."""
        self.registry.register(_Live(self, probes))

    def taken(self, topic: str, good: int, dead: Mapping[DeadReason, int]) -> None:
        """One batch of ``topic`` decoded: ``good`` events, ``dead`` letters by reason."""
        if good:
            self.events_in.labels(topic).inc(good)
        for reason, n in dead.items():
            self.dlq.labels(topic, reason.value).inc(n)

    def published(self, topic: str, event: Event) -> None:
        """``event`` went out on ``topic``."""
        self.events_out.labels(topic).inc()
        if isinstance(event, PolicyDecision):
            self.decisions.labels(event.decision.value).inc()
        elif isinstance(event, Verdict):
            self.verdicts.labels(event.action.value).inc()
        elif isinstance(event, Incident) and is_paged(event):
            self.pages.labels(incident_kind(event)).inc()

    def inserted(self, table: str, seconds: float, ok: bool) -> None:
        """One ClickHouse insert into ``table`` took ``seconds``; failed unless ``ok``."""
        self.sink_write.labels(table).observe(seconds)
        if not ok:
            self.sink_errors.labels(table).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    """The gauges and plain counters, read at scrape time."""

    def __init__(self, metrics: WorkerMetrics, probes: Probes) -> None:
        self._metrics = metrics
        self._probes = probes

    def collect(self) -> Iterator[Metric]:
        p = self._probes
        lag = GaugeMetricFamily("governor_consumer_lag", "Records behind the high "
                                "watermark, by topic and partition.",
                                labels=["topic", "partition"])
        for (topic, partition), behind in sorted(p.lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        yield GaugeMetricFamily("governor_window_backlog", "Windows with events not "
                                "decided yet.", value=p.backlog())
        yield GaugeMetricFamily("governor_ready", "1 when consuming and writing, else 0.",
                                value=1 if p.ready() else 0)
        yield GaugeMetricFamily("governor_up_seconds", "Seconds since the worker started.",
                                value=time.monotonic() - self._metrics.started)
        counters = CounterMetricFamily("governor_worker_events", "The worker's counters "
                                       "(as in /health), by name.", labels=["name"])
        for name, value in sorted(p.counters().items()):
            counters.add_metric([_NAME.sub("_", name)], value)
        yield counters
        pager = CounterMetricFamily("governor_pager_events", "Page deliveries, by outcome.",
                                    labels=["outcome"])
        for outcome, value in sorted(p.pager().items()):
            pager.add_metric([outcome], value)
        yield pager

    def describe(self) -> Iterator[Metric]:
        return iter(())
