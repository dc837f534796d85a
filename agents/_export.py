"""Telemetry export: a bounded, non-blocking processor in front of an exporter.

The handler's thread only appends to a bounded deque (``offer``); a background
thread encodes queued records (:mod:`agents._wire`) and hands batches to the exporter. When
the queue is full the record is dropped and counted — the handler never waits.
Exporters return an :class:`ExportResult` and never raise into the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Protocol

from agents._auth import Sealer
from agents._stats import Stats
from agents._wire import Wire
from agents.kafka_security import PLAINTEXT, KafkaSecurity
from schemas import CostEvent, Event, Span, decode

log = logging.getLogger("governor.agent")

_TOPIC_KIND = {"span": "spans", "cost": "costs"}
REPORT_EVERY_S = 60.0
STALL_S = 10.0
BUFFER_MESSAGES = 20_000
"""The producer's buffer, in messages; what is over it is dropped, never waited for."""
UNBOUNDED = 1 << 30
ROOM_RETRY_S = 0.02


class ExportResult(Enum):
    SUCCESS = 0
    FAILURE = 1


class Exporter(Protocol):
    """Where batches of encoded events go."""

    def export(self, records: Sequence[Wire]) -> ExportResult: ...

    def room(self) -> int:
        """How many records it can take now (the rest of a batch is dropped unencoded)."""
        ...

    def flush(self, timeout_s: float) -> bool:
        """Deliver everything exported so far; ``True`` if done within the budget."""
        ...

    def shutdown(self, timeout_s: float) -> None: ...


class InMemoryExporter:
    """Keeps exported events in a list, decoded from what would go on the wire (so
    they are validated as a worker would); for tests and local experiments."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def export(self, records: Sequence[Wire]) -> ExportResult:
        events = [decode(r.value, Span if r.type == "span" else CostEvent) for r in records]
        with self._lock:
            self.events.extend(events)
        return ExportResult.SUCCESS

    def room(self) -> int:
        return UNBOUNDED

    def of_type(self, cls: type[Any]) -> list[Any]:
        """Exported events of one class."""
        with self._lock:
            return [e for e in self.events if isinstance(e, cls)]

    def flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        return None


class KafkaExporter:
    """Produces events to ``<prefix>.spans`` / ``<prefix>.costs`` keyed by function.

    Idempotent producer, murmur2 partitioning (the same as the workers and the
    Java client), bounded librdkafka buffer. Counters: ``produced`` (handed to the
    producer), ``delivered`` (acknowledged by the broker), ``dropped_*`` by reason (a
    full buffer, a failed delivery, a stalled or failed producer), ``broker_refused``
    (TLS or SASL refused: a warning names it, once a minute). A producer that hit
    a fatal error, or that holds messages and has had none acknowledged for
    :data:`STALL_S` (a broker that came back empty no longer knows the idempotent
    producer's id, and the producer never recovers), is retired: a new one is built on
    the next export, and what the old one still held is counted as dropped.
    """

    def __init__(self, bootstrap: str, topic_prefix: str, stats: Stats,
                 sealer: Sealer | None = None,
                 security: KafkaSecurity = PLAINTEXT) -> None:
        self._stats = stats
        self._headers = sealer.headers if sealer is not None else _no_headers
        self._bootstrap = bootstrap
        self._security = security
        self._topics = {t: f"{topic_prefix}.{kind}" for t, kind in _TOPIC_KIND.items()}
        self._logger = logging.getLogger("governor.agent.kafka")
        self._limit = RateLimited(stats)
        self._logger.addFilter(self._limit)
        self._fatal = False
        self._refused_at = -REPORT_EVERY_S
        self._built_at = 0.0
        self._delivered_at = 0.0
        self._waiting_since = 0.0  # when the producer last held nothing
        self._producer = self._build()

    def _build(self) -> Any:
        from confluent_kafka import Producer

        self._fatal = False
        self._built_at = self._delivered_at = self._waiting_since = time.monotonic()
        return Producer(self._security.client_config(self._bootstrap, {
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "queue.buffering.max.messages": BUFFER_MESSAGES,
            "queue.buffering.max.kbytes": 16_384,
            "message.timeout.ms": 30_000,
            "reconnect.backoff.max.ms": 5_000,
            "logger": self._logger,
            "error_cb": self._on_error,
        }))

    def _renew(self, why: str) -> None:
        """Replace a failed or stalled producer (see the class docstring)."""
        old = self._producer
        left = len(old)
        if left:
            self._stats.add("dropped_producer_reset", left)
        old.purge(in_queue=True, in_flight=True)
        old.flush(0)
        self._producer = self._build()
        self._stats.add("producer_rebuilt")
        log.warning("Governor agent: the Kafka producer %s (the broker may have restarted "
                    "empty); a new producer was built, %d queued records dropped", why, left)

    def export(self, records: Sequence[Wire]) -> ExportResult:
        now = time.monotonic()
        if self._fatal:
            self._renew("hit a fatal error")
        elif now - max(self._delivered_at, self._waiting_since) > STALL_S and self._stalled(now):
            self._renew(f"delivered nothing for {STALL_S:.0f} s")
        produce, headers = self._producer.produce, self._headers
        produced = 0
        for kind, function, value in records:
            try:
                produce(self._topics[kind], value, function.encode(), headers=headers(value),
                        on_delivery=self._on_delivery)
                produced += 1
            except BufferError:
                self._stats.add("dropped_buffer_full")
            except Exception:  # a telemetry error must never reach the handler
                log.debug("produce failed", exc_info=True)
                self._stats.add("dropped_produce_error")
        self._producer.poll(0)
        self._stats.add("produced", produced)
        return ExportResult.SUCCESS if produced == len(records) else ExportResult.FAILURE

    def room(self) -> int:
        self._producer.poll(0)  # serves delivery reports: what they acknowledge makes room
        return BUFFER_MESSAGES - len(self._producer)

    def _stalled(self, now: float) -> bool:
        """Whether the producer still holds what it was given more than :data:`STALL_S`
        ago, once the acknowledgements that came while idle are counted (a quiet spell
        is not a stall)."""
        self._producer.poll(0)
        if not len(self._producer):
            self._waiting_since = now  # nothing held: a stall is timed from here
            return False
        return now - max(self._delivered_at, self._waiting_since) > STALL_S

    def flush(self, timeout_s: float) -> bool:
        return self._producer.flush(timeout_s) == 0

    def shutdown(self, timeout_s: float) -> None:
        left = self._producer.flush(timeout_s)
        if left:
            self._stats.add("dropped_at_shutdown", left)
        self._logger.removeFilter(self._limit)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._stats.add("dropped_delivery_failed")
            return
        self._stats.add("delivered")
        self._delivered_at = time.monotonic()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        self._stats.add("broker_errors")
        if err.fatal():
            self._fatal = True
        log.debug("kafka: %s", err)
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            self._stats.add("broker_refused")
            now = time.monotonic()
            if now - self._refused_at >= REPORT_EVERY_S:
                self._refused_at = now
                log.warning("Governor agent: Kafka refused the connection (%s); telemetry "
                            "is dropped until the GOVERNOR_KAFKA_SECURITY_PROTOCOL, _SSL_* "
                            "and _SASL_* settings match the broker", err.str())


def _no_headers(_value: bytes) -> None:
    return None


class RateLimited(logging.Filter):
    """Lets one log record a minute through per level and message start (librdkafka logs
    every failed connection attempt: dozens a second while a broker is down); the rest
    are counted as ``kafka_logs_suppressed``."""

    def __init__(self, stats: Stats, every_s: float = 60.0) -> None:
        super().__init__()
        self._stats = stats
        self._every_s = every_s
        self._last: dict[tuple[int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, str(record.msg)[:40])
        now = time.monotonic()
        if now - self._last.get(key, -self._every_s) < self._every_s:
            self._stats.add("kafka_logs_suppressed")
            return False
        if len(self._last) > 256:
            self._last.clear()
        self._last[key] = now
        return True


class BatchProcessor:
    """Bounded queue + background export thread.

    ``convert`` turns a queued record (a finished invocation) into encoded events off
    the hot path.
    """

    def __init__(
        self,
        exporter: Exporter,
        convert: Callable[[Any], Sequence[Wire]],
        stats: Stats,
        max_queue: int = 2_000,
        max_batch: int = 512,
        interval_s: float = 0.2,
        events_per_record: int = 2,
    ) -> None:
        self.exporter = exporter
        self._convert = convert
        self._stats = stats
        self._queue: deque[Any] = deque()
        self._max_queue = max_queue
        self._events_per_record = events_per_record  # drops are counted in events
        self._max_batch = max_batch
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="governor-export", daemon=True)
        self._thread.start()

    def offer(self, record: Any) -> None:
        """Queue a record without blocking; drop and count it if the queue is full."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            self._stats.add("dropped_queue_full", self._events_per_record)
            return
        queue.append(record)
        if len(queue) == self._max_batch:  # once as it fills, not on every call after
            self._wake.set()

    def kick(self) -> None:
        """Hand what is queued to the exporter now, on the calling thread, without
        waiting for delivery (before a process may be frozen, as Lambda does)."""
        self._drain()

    def flush(self, timeout_s: float) -> bool:
        """Export what is queued and wait for delivery, within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._drain()
            delivered = self.exporter.flush(max(0.0, deadline - time.monotonic()))
            if not self._queue or time.monotonic() >= deadline:
                return delivered and not self._queue

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop, exporting what is queued; returns within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout_s / 2)
        self._drain()
        if self._queue:  # the exporter had no room: give it half of what is left
            self.flush(max(0.0, deadline - time.monotonic()) / 2)
            if self._queue:
                self._stats.add("dropped_at_shutdown", len(self._queue) * self._events_per_record)
                self._queue.clear()
        self.exporter.shutdown(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        next_report = time.monotonic() + REPORT_EVERY_S
        wait = self._interval_s
        while not self._stopped:
            self._wake.wait(wait)
            self._wake.clear()
            # records held back by a full buffer are retried soon, not a period later
            wait = min(self._interval_s, ROOM_RETRY_S) if self._drain() else self._interval_s
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + REPORT_EVERY_S
                self._stats.report()

    def _drain(self) -> bool:
        """Export what is queued; ``True`` if some of it waits for room."""
        with self._export_lock:
            queue, per = self._queue, self._events_per_record
            while queue:
                take = min(len(queue), self._max_batch, max(0, self.exporter.room()) // per)
                if not take:  # the exporter's buffer is full: the records wait, unencoded,
                    return True  # and the queue's bound sheds what comes meanwhile
                batch: list[Wire] = []
                for _ in range(take):
                    record = queue.popleft()
                    try:
                        batch.extend(self._convert(record))
                    except Exception:
                        log.debug("could not convert %r", record, exc_info=True)
                        self._stats.add("dropped_convert_error", per)
                try:
                    self.exporter.export(batch)
                except Exception:
                    log.debug("exporter raised", exc_info=True)
                    self._stats.add("dropped_export_error", len(batch))
            return False
