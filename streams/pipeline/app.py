"""The Faust application: binds the worker's routes (:mod:`streams.pipeline.routes`)
to topics, timers and web pages. ``create_app(settings, prepared)`` builds everything;
nothing is registered at import time.

* ``spans``, ``costs`` (the hot topics): :class:`~streams.pipeline.batch_ingest.BatchIngest`,
  an aiokafka batch consumer inside the app (group ``<app_id>.ingest``):
  :meth:`Routes.take <streams.pipeline.routes.Routes.take>` then ``on_spans`` /
  ``on_costs``; offsets committed after the ClickHouse write
* ``anomalies``, ``verdicts``, ``decisions``, ``incidents``, ``audit``: Faust agents →
  ``Routes.take`` (so operators' verdicts and threshold changes land too); operators'
  verdicts also go to ``Routes.on_verdicts``
* timers: ``Routes.close_windows`` (the decision step) and ``Routes.reload`` (policies)
* pages: ``POST /query`` → ``Routes.query``; ``GET /health`` → ``Routes.health``;
  ``GET /metrics`` (Prometheus, :mod:`streams.pipeline.metrics`); ``GET /healthz``
  (liveness: the process serves) and ``GET /readyz`` (200 when consuming and writing,
  else 503 and ``Routes.readiness``'s reason); ``GET /incidents/ID`` →
  ``Routes.incident`` (pages link there); ``GET /docs/runbook.md`` (the runbook)

Records that fail validation go to the DLQ topic with the reason. Sink writes happen
before a batch is acknowledged, and are idempotent, so a crash between the two only
replays rows that replace themselves.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.exceptions import NotReady, ProducerSendError
from faust.web import Request, Response, View

from schemas import (
    Anomaly,
    CostEvent,
    DeadLetter,
    Event,
    Feedback,
    Incident,
    PolicyDecision,
    Span,
    ThresholdChange,
    Verdict,
    encode,
    partition_for,
)
from streams.paging.dispatch import dispatcher_from_settings
from streams.pipeline.batch_ingest import BatchIngest, IngestConfig, Route
from streams.pipeline.decoding import Record, TimeBounds
from streams.pipeline.kafka_auth import faust_credentials
from streams.pipeline.metrics import CONTENT_TYPE, Probes
from streams.pipeline.prepare import Prepared
from streams.pipeline.routes import OUT_TOPICS, FollowUp, Routes
from streams.settings import Settings

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
"""The runbook the worker serves at ``/docs/runbook.md`` (the pages' default link)."""

POLICY_CHECK_SECONDS = 2.0
"""How often a worker looks for a changed policy bundle."""

log = logging.getLogger("governor.worker")


class TopicOutbox:
    """The routes' :class:`~streams.pipeline.routes.Outbox` on the app's topics.

    Verdicts go to ``partition_for(function, verdict_partitions)``, where agents look.
    """

    def __init__(self, app: faust.App, settings: Settings, verdict_partitions: int) -> None:
        def topic(kind: str) -> Any:
            return app.topic(settings.topic(kind), key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")

        self.topics = {kind: topic(kind) for kind in (
            "anomalies", "verdicts", "dlq", "decisions", "incidents", "audit", "state",
            "feedback")}
        self._verdict_partitions = verdict_partitions

    async def publish(self, event: Event) -> None:
        kind = OUT_TOPICS[type(event)]
        partition = (partition_for(event.function, self._verdict_partitions)
                     if isinstance(event, Verdict) else None)
        await self.topics[kind].send(key=event.function.encode(), value=encode(event),
                                     partition=partition)

    async def dead(self, letter: DeadLetter) -> Awaitable[Any]:
        delivery: Awaitable[Any] = await self.topics["dlq"].send(
            key=letter.key.encode(), value=encode(letter))
        return delivery

    async def snapshot(self, function: str, blob: bytes) -> None:
        await self.topics["state"].send(key=function.encode(), value=blob)


def create_app(settings: Settings, prepared: Prepared) -> tuple[faust.App, Routes]:
    """Build the worker's Faust app for ``settings`` from what
    :func:`~streams.pipeline.prepare.prepare` found; the app and its routes."""
    security = settings.kafka_security
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(security),
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
    routes = Routes(settings, prepared, dispatcher_from_settings(settings))
    outbox = routes.outbox = TopicOutbox(app, settings, prepared.verdict_partitions)
    batch, within = settings.sink_batch, settings.sink_within_seconds

    async def on_verdicts(verdicts: Sequence[Verdict]) -> None:
        await routes.on_verdicts(verdicts, time.time_ns())

    sinks: list[tuple[str, type[Event], FollowUp | None]] = [
        ("verdicts", Verdict, on_verdicts), ("anomalies", Anomaly, None),
        ("decisions", PolicyDecision, None), ("incidents", Incident, None),
        ("audit", ThresholdChange, None), ("feedback", Feedback, None)]
    for kind, cls, then in sinks:
        app.agent(outbox.topics[kind], name=f"governor.{cls.TYPE}")(
            _sink(routes, cls, batch, within, then))

    ingest = BatchIngest(
        IngestConfig(settings.kafka_bootstrap, f"{settings.app_id}.ingest", batch=batch,
                     within_s=within, rebalance_timeout_s=settings.rebalance_timeout_seconds,
                     tune_gc=True, bounds=TimeBounds(int(settings.max_event_age_seconds * 1e9),
                                                     int(settings.max_event_lead_seconds * 1e9)),
                     security=security,
                     telemetry_auth=prepared.telemetry_auth),
        {settings.topic("spans"): Route(Span, routes.on_spans),
         settings.topic("costs"): Route(CostEvent, routes.on_costs)},
        routes.write, outbox.dead, routes.counters, probe=routes.data_refused,
        on_assigned=routes.hand_over, metrics=routes.metrics)
    routes.ingest_ready = lambda: ingest.ready
    routes.ingest_problem = lambda: _ingest_problem(ingest)
    routes.caught_up = lambda: ingest.caught_up
    routes.lag = lambda: {**_faust_lag(app), **ingest.lag}
    pager = routes.pager.stats
    routes.metrics.watch(Probes(
        lag=routes.lag, backlog=lambda: routes.windows.open_windows,
        ready=lambda: routes.readiness() is None, counters=lambda: dict(routes.counters),
        pager=lambda: {k: getattr(pager, k) for k in (
            "delivered", "retried", "failed", "dropped", "skipped")}))
    app.service(ingest)  # type: ignore[arg-type]

    @app.timer(interval=min(1.0, settings.window_seconds / 4))
    async def close_windows() -> None:
        if app.should_stop:
            return
        try:
            await routes.close_windows(time.time_ns())
        except (NotReady, ProducerSendError):
            if not app.should_stop:
                raise
            # stopping: the producer went away under the windows being decided
            log.info("stopping: the windows still open are not decided (their events are "
                     "stored)")

    @app.timer(interval=POLICY_CHECK_SECONDS)
    async def reload_policies() -> None:
        routes.reload()

    async def on_ready(sender: Any, **kwargs: Any) -> None:
        routes.app_ready = True

    app.on_rebalance_complete.connect(on_ready)  # type: ignore[arg-type]

    class QueryView(View):
        async def post(self, request: Request) -> Response:
            refused = _cross_site(request.headers)
            if refused is not None:
                routes.counters["query_cross_site"] += 1
                return self.bytes(orjson.dumps({"error": refused}), status=403,
                                  content_type="application/json")
            if not _authorized(request.headers, settings.query_token):
                routes.counters["query_unauthorized"] += 1
                return self.bytes(orjson.dumps({"error": "missing or wrong bearer token: send "
                                                "Authorization: Bearer $GOVERNOR_QUERY_TOKEN"}),
                                  status=401, content_type="application/json")
            status, body = await routes.query(await request.json())
            return self.bytes(orjson.dumps(body, default=str), status=status,
                              content_type="application/json")

    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json(routes.health())

    class IncidentView(View):
        async def get(self, request: Request, incident_id: str) -> Response:
            if not _authorized(request.headers, settings.query_token):
                return self.json({"error": "send Authorization: Bearer "
                                  "$GOVERNOR_QUERY_TOKEN"}, status=401)
            status, body = await routes.incident(incident_id)
            return self.bytes(orjson.dumps(body, default=str), status=status,
                              content_type="application/json")

    class RunbookView(View):
        async def get(self, request: Request) -> Response:
            if not RUNBOOK.is_file():
                return self.text("the runbook is not installed here: set "
                                 "GOVERNOR_RUNBOOK_URL to your copy of docs/runbook.md",
                                 status=404)
            return self.bytes(RUNBOOK.read_bytes(), content_type="text/markdown")

    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(routes.metrics.exposition(),
                              headers={"Content-Type": CONTENT_TYPE})

    class LiveView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"live": True})

    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            reason = routes.readiness()
            return self.json({"ready": reason is None, "reason": reason or ""},
                             status=200 if reason is None else 503)

    app.page("/query")(QueryView)
    app.page("/health")(HealthView)
    app.page("/metrics")(MetricsView)
    app.page("/healthz")(LiveView)
    app.page("/readyz")(ReadyView)
    app.page("/incidents/{incident_id}")(IncidentView)
    app.page("/docs/runbook.md")(RunbookView)
    return app, routes


def _faust_lag(app: faust.App) -> dict[tuple[str, int], int]:
    """Records behind on the topics Faust's agents consume, by (topic, partition), as
    its monitor saw them at the last fetch."""
    monitor = app.monitor
    read = monitor.tp_read_offsets or {}
    return {(tp.topic, tp.partition): max(0, end - read.get(tp, -1) - 1)
            for tp, end in list((monitor.tp_end_offsets or {}).items())}


def _ingest_problem(ingest: BatchIngest) -> str | None:
    """Why the batch ingest neither consumes nor writes, or ``None``."""
    if not ingest.consuming:
        return "the ingest loop is not running"
    down = ingest.sink_down_s
    if down > 0:
        return f"ClickHouse has refused writes for {down:.0f} s; consumption is paused"
    return None


def _cross_site(headers: Any) -> str | None:
    """Why a query request is refused: the endpoint serves the CLI and tools, never web
    pages, so a request a browser sent (it carries ``Origin``) or one that is not JSON
    (a page's form or ``text/plain`` post needs no CORS preflight) is refused."""
    if headers.get("Origin"):
        return "requests from web pages are refused (Origin header); use governor query"
    if not str(headers.get("Content-Type", "")).startswith("application/json"):
        return "send Content-Type: application/json with {\"sql\": \"SELECT ...\"}"
    return None


def _authorized(headers: Any, token: str) -> bool:
    """Whether the request carries the endpoint's bearer token (any, when it has none)."""
    if not token:
        return True
    given = str(headers.get("Authorization", ""))
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _sink(routes: Routes, cls: type[Event], batch: int, within: float,
          then: FollowUp | None) -> Any:
    """A Faust agent body: batches of ``cls`` records through :meth:`Routes.take`."""

    async def consume(stream: Any) -> None:
        async for events in stream.take_events(batch, within=within):
            records = [Record(e.message.topic, e.message.partition, e.message.offset,
                              e.message.key, e.message.value) for e in events]
            await routes.take(records, cls, then)

    return consume
