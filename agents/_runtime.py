"""The per-process agent runtime: settings, exporter pipeline and verdict cache.

Built lazily on the first governed call (never at import), or explicitly with
:func:`configure`; :func:`shutdown` flushes it (also registered with ``atexit``).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.trace import StatusCode as OtelStatus

from agents import _egress
from agents._auth import Sealer
from agents._cost import load_prices
from agents._export import BatchProcessor, Exporter, ExportResult, KafkaExporter
from agents._redact import Redactor
from agents._settings import AgentSettings
from agents._stats import Stats
from agents._verdicts import VerdictCache, VerdictFollower
from schemas import CostEvent, Event, Span, SpanEvent, SpanKind, SpanLink, StatusCode

log = logging.getLogger("governor.agent")
__version__ = "0.1.0"

FLUSH_EVERY_S = 1.0
"""Flush-on-return waits for delivery at most once a second (see
:meth:`Runtime.flush_on_return`)."""

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


class Runtime:
    """Everything the decorator needs, shared by all governed functions of a process."""

    def __init__(self, settings: AgentSettings, exporter: Exporter | None = None) -> None:
        self.settings = settings
        self.stats = Stats()
        for problem in settings.problems:
            log.warning("Governor agent: %s", problem)
        self.verdicts = VerdictCache(settings.verdict_key, self.stats)
        self.handoff = exporter is None and bool(settings.extension_socket)
        if self.handoff:  # the Lambda extension delivers; the function only hands over
            from agents.extension import ExtensionExporter

            exporter = ExtensionExporter(settings.extension_socket, self.stats)
        elif exporter is None:
            sealer = Sealer(settings.function_key) if settings.function_key else None
            exporter = (KafkaExporter(settings.kafka_bootstrap, settings.topic_prefix,
                                      self.stats, sealer, settings.kafka_security)
                        if settings.kafka_bootstrap else _DiscardExporter(self.stats))
        self.prices = load_prices(Path(settings.prices_file) if settings.prices_file else None)
        self.processor = BatchProcessor(
            exporter, to_events, self.stats, max_queue=settings.queue_size,
            interval_s=settings.export_interval_ms / 1000.0)
        self.breaker = Breaker()
        self.redactor = (Redactor(settings.redact_values, settings.redact_keys,
                                  settings.redact_patterns) if settings.redact else None)
        self._flushed_at = -FLUSH_EVERY_S
        self.follower = (VerdictFollower(settings.kafka_bootstrap, settings.topic("verdicts"),
                                         self.verdicts, self.stats,
                                         stale_after_s=settings.verdict_stale_seconds,
                                         security=settings.kafka_security)
                         if settings.kafka_bootstrap else None)
        internal = settings.egress_internal
        _egress.set_internal(_egress.INTERNAL_DEFAULT if internal is None else internal)
        if settings.egress:
            _egress.install()

    def watch(self, function: str) -> None:
        """Follow the verdicts for ``function`` (a governed function of this process)."""
        if self.follower is not None:
            self.follower.watch(function)

    def in_sync(self) -> bool:
        """Whether the verdicts of this process's functions are known and fresh."""
        return self.follower is not None and self.follower.in_sync()

    def flush(self, timeout_s: float) -> bool:
        """Export queued telemetry and wait for delivery within ``timeout_s``."""
        return self.processor.flush(timeout_s)

    def flush_on_return(self, timeout_s: float) -> None:
        """The flush at the end of an invocation (flush-on-return), of what earlier
        invocations queued: at most one every :data:`FLUSH_EVERY_S` (records wait in
        the producer's buffer, sent whenever the process runs), and skipped while the
        broker is known to be down (:class:`Breaker`), so no call waits for it."""
        now = time.monotonic()
        if now - self._flushed_at < FLUSH_EVERY_S:
            self.stats.add("flushes_batched")
            return
        if not self.breaker.allows():
            self.stats.add("flushes_skipped")
            return
        self._flushed_at = now
        self.breaker.record(self.processor.flush(timeout_s))

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop following verdicts and export what is queued, within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        if self.follower is not None:
            self.follower.stop(min(1.0, timeout_s / 4))
        self.processor.shutdown(max(0.0, deadline - time.monotonic()))


def to_events(record: tuple[Any, ...]) -> list[Event]:
    """The span and cost events of a finished invocation, priced.

    ``record`` is what the decorator queues: the bound function, the ended
    :class:`~agents._span.InvocationSpan`, the invocation id, cold start, trigger,
    outcome, billed duration (the agent's flush included), custom costs, egress bytes
    and the AWS X-Ray trace header (linked from the span).
    """
    (bound, span, invocation_id, cold, trigger, outcome, duration_ms, custom, egress,
     xray) = record
    trace_int, span_int, parent_int = span.trace_id, span.span_id, span.parent_span_id
    trace_state, start, end, status = span.trace_state, span.start_time, span.end_time, \
        span.status
    bill = bound.price.invocation(duration_ms=duration_ms, memory_mb=bound.memory_mb,
                                  egress_bytes=egress)
    total = bill.compute_usd + bill.request_usd + bill.egress_usd + sum(custom.values())
    trace_id, span_id = f"{trace_int:032x}", f"{span_int:016x}"
    redactor = bound.runtime.redactor
    attributes = _attributes(span.attributes) if span.attributes else {}
    message = status.description or ""
    events = [(name, at, _attributes(a)) for name, at, a in span.events]
    if redactor is not None:  # before anything leaves the function
        attributes, message = redactor.attributes(attributes), redactor.text(message)
        events = [(name, at, redactor.attributes(a)) for name, at, a in events]
    attributes.update({"faas.invocation_id": invocation_id, "faas.coldstart": cold,
                       "faas.trigger": trigger, "governor.cost.usd": total,
                       "governor.egress.bytes": egress})
    span_event = Span(
        function=bound.function, event_id=trace_id + span_id, time_unix_nano=end,
        trace_id=trace_id, span_id=span_id,
        parent_span_id=f"{parent_int:016x}" if parent_int else "",
        trace_state=trace_state.to_header() if trace_state else "",
        name=span.name, kind=SpanKind.SERVER, start_time_unix_nano=start,
        end_time_unix_nano=end, status_code=_STATUS[status.status_code],
        status_message=message, attributes=attributes,
        resource=bound.resource, scope_name="faas-governor", scope_version=__version__,
        events=[SpanEvent(name=name, time_unix_nano=at, attributes=a)
                for name, at, a in events],
        links=_xray_link(xray))
    cost = CostEvent(
        function=bound.function, event_id=f"{trace_id}{span_id}c", time_unix_nano=end,
        invocation_id=invocation_id, trace_id=trace_id, span_id=span_id,
        provider=bound.provider, version=bound.version, team=bound.team,
        memory_mb=bound.memory_mb, duration_ms=duration_ms,
        billed_duration_ms=bill.billed_duration_ms, cold_start=cold, outcome=outcome,
        egress_bytes=egress, cost_usd=total, compute_usd=bill.compute_usd,
        request_usd=bill.request_usd, egress_usd=bill.egress_usd, custom_usd=custom)
    return [span_event, cost]


def _xray_link(header: str) -> list[SpanLink]:
    """The AWS X-Ray trace of the call (``Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;…``) as
    a span link; none when the header is absent or malformed."""
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    root, parent = fields.get("Root", "").split("-"), fields.get("Parent", "").lower()
    trace_id = "".join(root[1:]).lower() if len(root) == 3 and root[0] == "1" else ""
    if len(trace_id) != 32 or len(parent) != 16 or not _is_hex(trace_id + parent):
        return []
    return [SpanLink(trace_id=trace_id, span_id=parent,
                     attributes={"link.source": "aws.xray",
                                 "aws.xray.sampled": fields.get("Sampled", "") == "1"})]


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _attributes(attrs: Any) -> dict[str, str | int | float | bool]:
    out: dict[str, str | int | float | bool] = {}
    for key, value in (attrs or {}).items():
        out[key] = value if isinstance(value, str | int | float | bool) else json.dumps(
            list(value), default=str)
    return out


class Breaker:
    """Stops flush-on-return waiting for a broker that is down.

    After ``failures`` flushes in a row miss their deadline the breaker opens: flushes
    are skipped (the export thread keeps delivering in the background) for
    ``cooldown_s``, doubling on each failed trial up to ``max_cooldown_s``; then one
    flush is tried, and a success closes it.
    """

    def __init__(self, failures: int = 3, cooldown_s: float = 5.0,
                 max_cooldown_s: float = 300.0) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._failed = 0
        self._open_until = 0.0
        self._cooldown = cooldown_s

    def allows(self) -> bool:
        return self._failed < self.failures or time.monotonic() >= self._open_until

    def record(self, delivered: bool) -> None:
        if delivered:
            self._failed, self._cooldown = 0, self.cooldown_s
            return
        self._failed += 1
        if self._failed >= self.failures:
            if self._failed > self.failures:  # a trial failed: back off further
                self._cooldown = min(2 * self._cooldown, self.max_cooldown_s)
            self._open_until = time.monotonic() + self._cooldown
            if self._failed == self.failures:
                log.warning("Governor agent: telemetry not delivered by %d flushes in a row; "
                            "calls no longer wait for the broker until it is back",
                            self.failures)


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

