"""The Faust application: ingest → windows → decisions → verdicts and pages, plus sinks.

``create_app(settings, prepared)`` builds everything; nothing is registered at
import time. Consumers:

* ``spans``, ``costs`` (the hot topics): :class:`~streams.batch_ingest.BatchIngest`,
  an aiokafka batch consumer inside the app (group ``<app_id>.ingest``): decode →
  DLQ → cost events into the feature windows and the per-event fast path →
  ClickHouse (``otel_traces``, ``cost_events``) → offsets committed
* ``anomalies``, ``verdicts``, ``decisions``, ``incidents``, ``audit``: Faust agents →
  ClickHouse (so operators' verdicts and threshold changes land too); operators'
  verdicts also take over the function's verdict lifecycle
* a timer closes windows and runs the decision step (:mod:`streams.governance`:
  detectors → Rego policies → verdict lifecycle → incidents), publishing anomalies,
  policy decisions, signed verdicts (keyed and partitioned by function) and
  incidents, which the page dispatcher delivers; it also reloads the policy bundle
  when its files change
* live thresholds come from the control topic, followed by every worker

Records that fail validation go to the DLQ topic with the reason. Sink writes
happen before a batch is acknowledged, and are idempotent, so a crash between the
two only replays rows that replace themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from schemas import (
    Anomaly,
    CostEvent,
    DeadLetter,
    Event,
    Incident,
    PolicyDecision,
    Span,
    ThresholdChange,
    Verdict,
    encode,
    partition_for,
)
from streams.batch_ingest import BatchIngest, IngestConfig, Route
from streams.clickhouse import ClickHouseSink, read_only_query
from streams.errors import QueryError
from streams.features import WindowAggregator
from streams.governance import Governance
from streams.ingest import Record, decode_records
from streams.lifecycle import VerdictIssuer
from streams.pagers import dispatcher_from_settings
from streams.settings import Settings
from streams.worker import Prepared

POLICY_CHECK_SECONDS = 2.0
"""How often a worker looks for a changed policy bundle."""
YIELD_EVERY = 100
"""Functions decided on between yields to the event loop when windows close."""

log = logging.getLogger("governor.worker")


class Worker:
    """State shared by the app's agents: sink, windows, decisions, pager, counters."""

    def __init__(self, settings: Settings, prepared: Prepared) -> None:
        self.settings = settings
        self.clickhouse = prepared.clickhouse
        self.sink = ClickHouseSink(prepared.clickhouse)
        self.db = ThreadPoolExecutor(1, thread_name_prefix="governor-clickhouse")
        self.windows = WindowAggregator(int(settings.window_seconds * 1e9))
        self.governance = Governance(settings, VerdictIssuer(
            prepared.verdict_key.encode(), int(settings.verdict_ttl_seconds * 1e9),
            settings.app_id), prepared.policies, prepared.control.thresholds,
            prepared.snapshots)
        self.windows.retire = self.governance.retire
        self.control = prepared.control
        self.pager = dispatcher_from_settings(settings)
        self.counters: Counter[str] = Counter()
        self.app_ready = False  # Faust's group has its partitions
        self.ingest: BatchIngest | None = None

    @property
    def ready(self) -> bool:
        """Both consumer groups (Faust's and the batch ingest's) have their partitions."""
        return self.app_ready and (self.ingest is None or self.ingest.ready)

    async def write(self, events: Sequence[Event]) -> None:
        if events:
            written = await asyncio.get_running_loop().run_in_executor(
                self.db, self.sink.write, events)
            self.counters.update({f"rows_{k}": v for k, v in written.items()})

    async def query(self, sql: str) -> dict[str, Any]:
        result = await asyncio.get_running_loop().run_in_executor(
            self.db, read_only_query, self.clickhouse, sql)
        return {"columns": list(result.columns), "rows": [list(r) for r in result.rows],
                "elapsed_s": result.elapsed_s}


def create_app(settings: Settings, prepared: Prepared) -> faust.App:
    """Build the worker's Faust app for ``settings`` from what :func:`prepare` found.

    Verdicts go to ``partition_for(function, prepared.verdict_partitions)``, where
    agents look; decision state restored from ``prepared.snapshots``.
    """
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=True,
        web_host=settings.query_host,
        web_port=settings.query_port,
        web_bind=settings.query_host,
        broker_rebalance_timeout=settings.rebalance_timeout_seconds,
        broker_session_timeout=max(6.0, 2 * settings.rebalance_timeout_seconds),
        broker_heartbeat_interval=1.0,
        topic_allow_declare=False,
        producer_linger=0.005,
        consumer_auto_offset_reset="earliest",
    )
    worker = Worker(settings, prepared)
    verdict_partitions = prepared.verdict_partitions
    app.governor = worker  # type: ignore[attr-defined]

    def topic(kind: str) -> Any:
        return app.topic(settings.topic(kind), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    anomalies, verdicts, dlq = topic("anomalies"), topic("verdicts"), topic("dlq")
    decisions, incidents, audit = topic("decisions"), topic("incidents"), topic("audit")
    state = topic("state")
    governance = worker.governance
    batch, within = settings.sink_batch, settings.sink_within_seconds

    async def ingest(stream: Any, cls: type[Event],
                     then: Callable[[Sequence[Any]], Awaitable[None]] | None = None) -> None:
        async for batch_events in stream.take_events(batch, within=within):
            records = [Record(e.message.topic, e.message.partition, e.message.offset,
                              e.message.key, e.message.value) for e in batch_events]
            good, dead = decode_records(records, cls)
            for letter in dead:
                await dlq.send(key=letter.key.encode(), value=encode(letter))
            worker.counters[f"dlq_{cls.TYPE}"] += len(dead)
            worker.counters[f"in_{cls.TYPE}"] += len(good)
            await worker.write(good)
            if then is not None:
                await then(good)

    def sink(channel: Any, cls: type[Event],
             then: Callable[[Sequence[Any]], Awaitable[None]] | None = None) -> None:
        async def consume(stream: Any) -> None:
            await ingest(stream, cls, then)

        app.agent(channel, name=f"governor.{cls.TYPE}")(consume)

    async def on_verdicts(seen: Sequence[Verdict]) -> None:
        now = time.time_ns()
        for verdict in seen:
            for event in governance.on_verdict(verdict, now):
                await publish(event)

    sink(verdicts, Verdict, on_verdicts)
    for channel, cls in ((anomalies, Anomaly), (decisions, PolicyDecision),
                         (incidents, Incident), (audit, ThresholdChange)):
        sink(channel, cls)

    async def on_spans(events: Sequence[Span]) -> None:
        for span in events:
            governance.on_span(span)

    async def on_costs(events: Sequence[CostEvent]) -> None:
        window_ns = worker.windows.window_ns
        for event in events:
            worker.windows.add(event)
            for anomaly in governance.on_event(event, window_ns):
                await publish(anomaly)

    async def send_dead(letter: DeadLetter) -> Any:
        return await dlq.send(key=letter.key.encode(), value=encode(letter))

    worker.ingest = BatchIngest(
        IngestConfig(settings.kafka_bootstrap, f"{settings.app_id}.ingest", batch=batch,
                     within_s=within, rebalance_timeout_s=settings.rebalance_timeout_seconds,
                     tune_gc=True),
        {settings.topic("spans"): Route(Span, on_spans),
         settings.topic("costs"): Route(CostEvent, on_costs)},
        worker.write, send_dead, worker.counters)
    app.service(worker.ingest)  # type: ignore[arg-type]

    async def publish(event: Event) -> None:
        key = event.function.encode()
        if isinstance(event, Verdict):
            await verdicts.send(key=key, value=encode(event),
                                partition=partition_for(event.function, verdict_partitions))
        elif isinstance(event, Incident):
            await incidents.send(key=key, value=encode(event))
            worker.pager.submit(event)
        else:
            await (decisions if isinstance(event, PolicyDecision) else anomalies).send(
                key=key, value=encode(event))
        worker.counters[f"{event.TYPE}s_issued"] += 1

    @app.timer(interval=min(1.0, settings.window_seconds / 4))
    async def close_windows() -> None:
        now = time.time_ns()
        for n, (function, window) in enumerate(worker.windows.close_due(now), 1):
            worker.counters["windows_closed"] += 1
            try:
                events = governance.on_window(function, window, now)
                snapshot = governance.snapshot(function)
            except Exception:  # one function's failure must not stop the others' decisions
                log.exception("decision step failed for %s; its window is skipped", function)
                worker.counters["decision_errors"] += 1
                continue
            for event in events:
                await publish(event)
            if snapshot is not None:
                await state.send(key=function.encode(), value=snapshot)
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the ingest run between chunks of functions
        for event in governance.tracker.sweep(now):
            await publish(event)
        if governance.resumed:  # restored open incidents: re-assert them to the pagers
            worker.pager.resume(governance.tracker.open_incidents(now, governance.resumed))
            governance.resumed.clear()

    @app.timer(interval=POLICY_CHECK_SECONDS)
    async def reload_policies() -> None:
        if governance.policies.reload_if_changed():
            log.warning("policy bundle %s loaded from %s", governance.policies.digest,
                        governance.policies.directory)
            worker.counters["policy_reloads"] += 1


    async def on_ready(sender: Any, **kwargs: Any) -> None:
        worker.app_ready = True

    app.on_rebalance_complete.connect(on_ready)  # type: ignore[arg-type]

    class QueryView(View):
        async def post(self, request: Request) -> Response:
            body = await request.json()
            sql = body.get("sql") if isinstance(body, dict) else None
            if not isinstance(sql, str):
                return self.json({"error": "send JSON {\"sql\": \"SELECT ...\"}"}, status=400)
            try:
                return self.bytes(orjson.dumps(await worker.query(sql), default=str),
                                  content_type="application/json")
            except QueryError as exc:
                return self.json({"error": str(exc)}, status=400)

    class HealthView(View):
        async def get(self, request: Request) -> Response:
            pager = worker.pager.stats
            return self.json({
                "ready": worker.ready, "counters": dict(worker.counters),
                "policy_bundle": governance.policies.digest,
                "policy_error": governance.policies.last_error,
                "thresholds_synced": worker.control.synced,
                "pages": {k: getattr(pager, k) for k in (
                    "submitted", "delivered", "retried", "failed", "dropped", "skipped")}})

    app.page("/query")(QueryView)
    app.page("/health")(HealthView)
    return app
