"""The per-process agent runtime: settings, exporter pipeline and verdict cache.

Built lazily on the first governed call (never at import), or explicitly with
:func:`configure`; :func:`shutdown` flushes it (also registered with ``atexit``).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import StatusCode as OtelStatus
from opentelemetry.trace import Tracer

from agents import _egress
from agents._cost import Price, load_prices
from agents._export import BatchProcessor, Exporter, ExportResult, KafkaExporter
from agents._settings import AgentSettings
from agents._stats import Stats
from agents._verdicts import VerdictCache, VerdictFollower
from schemas import CostEvent, Event, Outcome, Span, SpanEvent, SpanKind, StatusCode

log = logging.getLogger("governor.agent")

_KINDS = {
    OtelKind.INTERNAL: SpanKind.INTERNAL, OtelKind.SERVER: SpanKind.SERVER,
    OtelKind.CLIENT: SpanKind.CLIENT, OtelKind.PRODUCER: SpanKind.PRODUCER,
    OtelKind.CONSUMER: SpanKind.CONSUMER,
}
_STATUS = {OtelStatus.UNSET: StatusCode.UNSET, OtelStatus.OK: StatusCode.OK,
           OtelStatus.ERROR: StatusCode.ERROR}


class _DiscardExporter:
    """Used when no broker is configured: counts what it is handed, keeps nothing."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def export(self, events: Sequence[Event]) -> ExportResult:
        self._stats.add("dropped_no_broker", len(events))
        return ExportResult.SUCCESS

    def flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Finished:
    """One invocation as the hot path leaves it; events are built off the hot path."""

    function: str
    version: str
    team: str
    provider: str
    price: Price
    memory_mb: int
    span: ReadableSpan
    invocation_id: str
    cold_start: bool
    outcome: Outcome
    duration_ms: float
    custom_usd: dict[str, float]
    egress_bytes: int


class Runtime:
    """Everything the decorator needs, shared by all governed functions of a process."""

    def __init__(self, settings: AgentSettings, exporter: Exporter | None = None) -> None:
        self.settings = settings
        self.stats = Stats()
        self.verdicts = VerdictCache(settings.verdict_key, self.stats)
        if exporter is None:
            exporter = (KafkaExporter(settings.kafka_bootstrap, settings.topic_prefix, self.stats)
                        if settings.kafka_bootstrap else _DiscardExporter(self.stats))
        self.prices = load_prices(Path(settings.prices_file) if settings.prices_file else None)
        self.processor = BatchProcessor(
            exporter, to_events, self.stats, max_queue=settings.queue_size,
            interval_s=settings.export_interval_ms / 1000.0)
        self.follower = (VerdictFollower(settings.kafka_bootstrap, settings.topic("verdicts"),
                                         self.verdicts, self.stats,
                                         stale_after_s=settings.verdict_stale_seconds)
                         if settings.kafka_bootstrap else None)
        internal = settings.egress_internal
        _egress.set_internal(_egress.INTERNAL_DEFAULT if internal is None else internal)
        if settings.egress:
            _egress.install()

    def tracer(self, function: str, resource: dict[str, Any]) -> Tracer:
        """A tracer for ``function``'s invocation spans (handed to the runtime by the
        decorator, so no span processor runs on the hot path)."""
        provider = TracerProvider(resource=Resource.create(resource))
        if self.follower is not None:
            self.follower.watch(function)
        return provider.get_tracer("faas-governor", "0.1.0")

    def in_sync(self) -> bool:
        """Whether the verdicts of this process's functions are known and fresh."""
        return self.follower is not None and self.follower.in_sync()

    def flush(self, timeout_s: float) -> bool:
        """Export queued telemetry and wait for delivery within ``timeout_s``."""
        return self.processor.flush(timeout_s)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        if self.follower is not None:
            self.follower.stop()
        self.processor.shutdown(timeout_s)


def to_events(done: Finished) -> list[Event]:
    """The span and cost events of a finished invocation, priced."""
    bill = done.price.invocation(duration_ms=done.duration_ms, memory_mb=done.memory_mb,
                                 egress_bytes=done.egress_bytes)
    custom = done.custom_usd
    total = bill.compute_usd + bill.request_usd + bill.egress_usd + sum(custom.values())
    span = _span_event(done.span, {"governor.cost.usd": total,
                                   "governor.egress.bytes": done.egress_bytes})
    cost = CostEvent(
        function=done.function, invocation_id=done.invocation_id,
        time_unix_nano=span.time_unix_nano,
        trace_id=span.trace_id, span_id=span.span_id, provider=done.provider,
        version=done.version, team=done.team, memory_mb=done.memory_mb,
        duration_ms=done.duration_ms, billed_duration_ms=bill.billed_duration_ms,
        cold_start=done.cold_start, outcome=done.outcome, egress_bytes=done.egress_bytes,
        cost_usd=total, compute_usd=bill.compute_usd, request_usd=bill.request_usd,
        egress_usd=bill.egress_usd, custom_usd=custom)
    return [span, cost]


def _span_event(span: ReadableSpan, extra: dict[str, Any]) -> Span:
    ctx = span.context
    assert ctx is not None and span.start_time is not None and span.end_time is not None
    trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
    resource = _attributes(span.resource.attributes)
    scope = span.instrumentation_scope
    return Span(
        function=str(resource.get("service.name", "unknown")),
        event_id=trace_id + span_id,
        time_unix_nano=span.end_time,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=f"{span.parent.span_id:016x}" if span.parent else "",
        trace_state=ctx.trace_state.to_header() if ctx.trace_state else "",
        name=span.name,
        kind=_KINDS.get(span.kind, SpanKind.UNSPECIFIED),
        start_time_unix_nano=span.start_time,
        end_time_unix_nano=span.end_time,
        status_code=_STATUS[span.status.status_code],
        status_message=span.status.description or "",
        attributes={**_attributes(span.attributes), **extra},
        resource=resource,
        scope_name=scope.name if scope else "",
        scope_version=(scope.version or "") if scope else "",
        events=[SpanEvent(name=e.name, time_unix_nano=e.timestamp,
                          attributes=_attributes(e.attributes)) for e in span.events],
    )


def _attributes(attrs: Any) -> dict[str, str | int | float | bool]:
    out: dict[str, str | int | float | bool] = {}
    for key, value in (attrs or {}).items():
        out[key] = value if isinstance(value, str | int | float | bool) else json.dumps(
            list(value), default=str)
    return out


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    runtime = _runtime
    if runtime is None:
        with _lock:
            if _runtime is None:
                _install(Runtime(AgentSettings.from_env()))
            runtime = _runtime
    assert runtime is not None
    return runtime


def configure(settings: AgentSettings | None = None, exporter: Exporter | None = None) -> Runtime:
    """Replace the process's runtime (the old one is flushed and stopped)."""
    with _lock:
        old = _runtime
        _install(Runtime(settings or AgentSettings.from_env(), exporter))
    if old is not None:
        old.shutdown(timeout_s=1.0)
    assert _runtime is not None
    return _runtime


def shutdown(timeout_s: float = 5.0) -> None:
    """Flush and stop the runtime, if one was started."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.shutdown(timeout_s)


def _install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


atexit.register(shutdown, 2.0)

