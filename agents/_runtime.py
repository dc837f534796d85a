"""The per-process agent runtime: settings, exporter pipeline and verdict cache.

Built lazily on the first governed call (never at import), or explicitly with
:func:`configure`; :func:`shutdown` flushes it (also registered with ``atexit``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from agents import _egress
from agents._auth import Sealer
from agents._cost import load_prices
from agents._export import UNBOUNDED, BatchProcessor, Exporter, ExportResult, KafkaExporter
from agents._redact import Redactor
from agents._settings import AgentSettings
from agents._stats import Stats
from agents._verdicts import VerdictCache, VerdictFollower
from agents._wire import Wire, encode_invocation

log = logging.getLogger("governor.agent")

FLUSH_EVERY_S = 1.0
"""Flush-on-return waits for delivery at most once a second (see
:meth:`Runtime.flush_on_return`)."""

class _DiscardExporter:
    """Used when no broker is configured: counts what it is handed, keeps nothing."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def export(self, records: Sequence[Wire]) -> ExportResult:
        self._stats.add("dropped_no_broker", len(records))
        return ExportResult.SUCCESS

    def room(self) -> int:
        return UNBOUNDED

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
            exporter, encode_invocation, self.stats, max_queue=settings.queue_size,
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

