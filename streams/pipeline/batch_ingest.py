"""Batched ingest of the hot topics: a librdkafka consumer's loop inside the Faust app.

Faust hands its agents one message at a time (consumer thread → conductor → stream,
a task and futures per message), which caps a worker near 8,000 events/s whatever
the agent does (benchmarks/README.md, "Pipeline throughput"). The hot topics (costs,
spans) are consumed here instead, a batch at a time, pipelined::

    fetch + decode + handle batch n+1   ─┐  (this loop)
    write batch n to the sink, commit n ─┘  (a task; the insert runs in a thread)

* Each fetch is decoded and handed to its route (the decision step) as it comes; the
  batch only bounds what one sink write and one commit take.
* One consumer of its own group, ``<app_id>.ingest``
  (:class:`~streams.pipeline.ingest_consumer.IngestConsumer`: librdkafka fetches and
  parses on its own threads); Faust's group keeps the low-volume topics. Offsets are
  committed by hand, never automatically.
* Records that fail validation go to the dead-letter topic with the reason; their
  delivery is confirmed before the offsets that cover them are committed.
* A batch's offsets are committed only after the sink wrote it: at-least-once, and a
  crash replays at most the two batches in flight, whose rows replace themselves.
* Partition revoke (a rebalance) and stop *settle* first: the write in flight and the
  batch in hand are written and committed; only then do the partitions go.
* A failed sink write goes through :class:`~streams.pipeline.storing.Storer`: refused
  events to the dead-letter topic, the rest stored and committed; an outage waited out
  with nothing further consumed (back-pressure) — the batch in hand is still decided,
  nothing is dropped, nothing committed past it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mode import Service

from agents.kafka_security import PLAINTEXT, KafkaSecurity
from schemas import Event
from streams.pipeline.authn import TelemetryAuth
from streams.pipeline.decoding import DeadReason, TimeBounds, decode_messages
from streams.pipeline.ingest_consumer import CommitFailed, Fetched, IngestConsumer, Partition
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.storing import Probe, SendDead, Storer, Write

log = logging.getLogger("governor.ingest")

#: ``handle(events)``: what a topic's valid events go through before the sink write.
Handle = Callable[[Sequence[Any]], Awaitable[None]]
#: ``on_assigned({topic: (partitions assigned here, partitions in all)})``: after each
#: rebalance, before any record of the new assignment is read.
OnAssigned = Callable[[Mapping[str, tuple[frozenset[int], int]]], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    """One topic's records: decoded as ``cls``, valid events passed to ``handle``."""

    cls: type[Event]
    handle: Handle | None = None


@dataclass(frozen=True)
class IngestConfig:
    """How the ingest consumer fetches; defaults suit one worker process."""

    bootstrap: str
    group_id: str
    batch: int = 2000  # records per batch (one sink insert per table per batch)
    within_s: float = 0.5  # longest wait to fill a batch once its first record came
    rebalance_timeout_s: float = 3.0
    stop_timeout_s: float = 30.0  # longest wait to settle on stop or revoke before giving up
    sink_retries: int = 5  # failed writes retried (after 0.5, 1, 2, 4, 5 s) before a crash
    tune_gc: bool = False  # the worker process: see tune_gc()
    bounds: TimeBounds | None = None  # events dated too far from now: dead letters
    security: KafkaSecurity = PLAINTEXT  # TLS/SASL to the brokers
    telemetry_auth: TelemetryAuth | None = None  # telemetry not authenticated as its
    # function: stored flagged, decides nothing


@dataclass
class _Batch:
    events: list[Event] = field(default_factory=list)
    offsets: dict[Partition, int] = field(default_factory=dict)  # the next offset to read
    deliveries: list[Awaitable[Any]] = field(default_factory=list)  # its dead letters sent
    flagged: set[str] = field(default_factory=set)  # event ids stored flagged unauthenticated
    records: int = 0  # records fetched into it


class BatchIngest(Service):
    """Consume ``routes`` (topic → :class:`Route`) in batches; see the module doc.

    ``counters`` gets ``in_<type>`` (valid events), ``dlq_<type>`` (dead letters),
    ``sink_errors`` and ``commit_failures``; the ``write`` callable counts rows.
    ``metrics`` (optional) gets events in and dead letters by topic and reason.
    """

    def __init__(self, config: IngestConfig, routes: Mapping[str, Route], write: Write,
                 send_dead: SendDead, counters: Counter[str], probe: Probe | None = None,
                 on_assigned: OnAssigned | None = None, metrics: WorkerMetrics | None = None,
                 **kwargs: Any) -> None:
        self.config = config
        self.metrics = metrics
        self._topic_of = {route.cls.TYPE: topic for topic, route in routes.items()}
        self._on_assigned_hook = on_assigned
        self.routes = dict(routes)
        self._send_dead = send_dead
        self.counters = counters
        self._storer = Storer(write, send_dead, counters, probe, config.sink_retries,
                              lambda: self._stopping, refused=self._refused)
        self._consumer: IngestConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._open = _Batch()  # fetched, decoded and handed to routes, not yet written
        self._writing: asyncio.Task[None] | None = None  # the batch before it
        self._assigned = False
        self._lag: dict[Partition, int] = {}
        self._sent: dict[Partition, int] = {}  # offsets committed without an answer yet
        super().__init__(**kwargs)

    @property
    def ready(self) -> bool:
        """True once the group gave this consumer its partitions (and none is revoking)."""
        return self._assigned

    @property
    def lag(self) -> dict[Partition, int]:
        """Records behind the high watermark after the last fetch, by (topic, partition)
        assigned here (0 when that fetch found none waiting)."""
        if self._consumer is None:
            return {}
        return {tp: self._lag.get(tp, 0) for tp in self._consumer.assignment()}

    @property
    def consuming(self) -> bool:
        """The fetch loop runs (not crashed, not stopped)."""
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def sink_down_s(self) -> float:
        """How long the sink has refused every write (0 while it takes them)."""
        return self._storer.down_s

    def _refused(self, event: Event) -> None:
        """The sink refused ``event``: a dead letter of its topic, in the metrics."""
        if self.metrics is not None:
            self.metrics.dlq.labels(self._topic_of.get(event.type, event.type),
                                    DeadReason.SINK_REFUSED.value).inc()

    @property
    def caught_up(self) -> bool:
        """No backlog: the records left behind the last fetch are fewer than a batch
        (an empty fetch means none at all)."""
        return sum(self._lag.values()) < self.config.batch

    @property
    def consumer(self) -> IngestConsumer:
        if self._consumer is None:
            raise RuntimeError("the ingest consumer starts with the service")
        return self._consumer

    async def on_start(self) -> None:
        c = self.config
        self._consumer = IngestConsumer(c.bootstrap, c.security, {
            "group.id": c.group_id, "client.id": f"{c.group_id}-consumer",
            "session.timeout.ms": int(max(6.0, 2 * c.rebalance_timeout_s) * 1000),
            "heartbeat.interval.ms": 1000}, list(self.routes), self._on_revoked,
            self._on_assigned, self._commit_failed, settle_s=c.stop_timeout_s)
        await self._consumer.start()
        if c.tune_gc:
            tune_gc()
        self._loop_task = asyncio.create_task(self._run(), name="governor-ingest")

    async def on_stop(self) -> None:
        self._stopping = True
        if self._consumer is not None:
            self._consumer.interrupt()  # the fetch waiting for records returns now
        task = self._loop_task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), self.config.stop_timeout_s)
            except TimeoutError:
                log.error("ingest: could not settle within %.0f s; stopping without a "
                          "commit (the uncommitted records are read again)",
                          self.config.stop_timeout_s)
                task.cancel()
            except Exception:  # logged by _run; the consumer still stops
                pass
        if self._consumer is not None:
            # leaves the group: its partitions move at once
            await self._consumer.close(self.config.stop_timeout_s)

    # The loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._stopping:
                batch = await self._next_batch()
                await self._settle()  # batch n written and committed before n+1 starts
                if batch is None:  # idle: nothing left uncommitted while waiting
                    continue
                self._writing = asyncio.create_task(self._write_and_commit(batch))
                await asyncio.sleep(0)  # the write starts now, beside the next fetch + decode
            await self._settle()
            open_, self._open = self._open, _Batch()
            await self._write_and_commit(open_, last=True)
        except Exception as exc:
            log.error("ingest stopped: %r; the worker stops, and the records not "
                      "committed are read again by the next one", exc)
            if not self._stopping:
                await self.crash(exc)
            raise
        finally:
            if self._writing is not None:  # an error or a cancel: never commit past it
                self._writing.cancel()

    async def _settle(self) -> None:
        """Until the batch being written is written and committed."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _next_batch(self) -> _Batch | None:
        """Fetch up to ``batch`` records (waiting at most ``within_s`` once some came).
        Each fetch is decoded, its dead letters sent and its valid events handed to their
        routes as it comes, so decisions never wait for the batch to fill; the batch is
        written as one. A rebalance during a fetch writes what was fetched before it
        (:meth:`_on_revoked`) and the batch goes on with what comes after."""
        consumer, c = self.consumer, self.config
        deadline = 0.0
        while self._open.records < c.batch and not self._stopping:
            wait_s = c.within_s if not self._open.records else deadline - time.monotonic()
            if wait_s <= 0:
                break
            fetched = await consumer.fetch(c.batch - self._open.records, wait_s)
            if not fetched.records:
                if not self._open.records:  # nothing waiting on any partition
                    self._lag.clear()
                break
            if not self._open.records:
                deadline = time.monotonic() + c.within_s
            await self._decode(fetched, self._open)
        batch, self._open = self._open, _Batch()
        return batch if batch.records else None

    async def _decode(self, fetched: Fetched, batch: _Batch) -> None:
        """Decode ``fetched`` into ``batch``: dead letters sent, valid events handed to
        their routes."""
        by_topic: dict[str, list[Any]] = {}
        last: dict[Partition, int] = {}
        message: Any
        for message in fetched.records:
            topic = message.topic()
            by_topic.setdefault(topic, []).append(message)
            last[topic, message.partition()] = message.offset()
        batch.records += len(fetched.records)
        for tp, offset in last.items():
            batch.offsets[tp] = offset + 1
            highwater = fetched.highwater.get(tp)
            if highwater is not None:
                self._lag[tp] = max(0, highwater - offset - 1)
        for topic, records in by_topic.items():
            route = self.routes[topic]
            decoded = decode_messages(records, route.cls, self.config.bounds, time.time_ns(),
                                      self.config.telemetry_auth)
            for letter in decoded.dead:
                batch.deliveries.append(await self._send_dead(letter))
            self.counters[f"dlq_{route.cls.TYPE}"] += len(decoded.dead)
            self.counters[f"in_{route.cls.TYPE}"] += len(decoded.good)
            if self.metrics is not None:
                self.metrics.taken(topic, len(decoded.good), decoded.reasons)
            if decoded.flagged:
                self.counters[f"unauthenticated_{route.cls.TYPE}"] += len(decoded.flagged)
                batch.flagged.update(e.event_id for e in decoded.flagged)
            if route.handle is not None and decoded.good:
                await route.handle(decoded.good)
            batch.events.extend(decoded.good)
            batch.events.extend(decoded.flagged)

    async def _write_and_commit(self, batch: _Batch, last: bool = False) -> None:
        """Store ``batch``, then commit its offsets (``last``: before the partitions go,
        waiting for the broker's answer)."""
        await self._storer.store(batch.events, batch.deliveries, frozenset(batch.flagged))
        for delivery in batch.deliveries:
            await delivery  # a dead letter not delivered must not be skipped by the commit
        offsets = batch.offsets
        if last:  # every offset sent since the last answered commit, answered now
            offsets, self._sent = {**self._sent, **offsets}, {}
        else:
            self._sent.update(offsets)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets, wait=last)
        except CommitFailed as exc:
            self._commit_failed(str(exc))

    def _commit_failed(self, reason: str) -> None:
        """The partitions moved on before a commit, or the broker refused it: their owner
        reads these records again and the rows replace themselves."""
        self.counters["commit_failures"] += 1
        log.warning("ingest: offsets not committed (%s); the records are read again after a "
                    "restart or rebalance", reason)

    # Rebalance ------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[Partition]) -> None:
        """Before ``revoked`` go (the consumer's thread waits): the write in flight and
        the batch in hand are written and committed."""
        self._assigned = False
        for tp in revoked:
            self._lag.pop(tp, None)
        if not revoked or self._loop_task is None or self._loop_task.done():
            return
        await self._settle()
        open_, self._open = self._open, _Batch()
        await self._write_and_commit(open_, last=True)
        log.info("ingest: settled before giving up %d partitions", len(revoked))

    async def _on_assigned(self, assigned: set[Partition], totals: Mapping[str, int]) -> None:
        log.info("ingest: assigned %d partitions", len(assigned))
        try:
            if self._on_assigned_hook is not None:  # before any record of them is read
                await self._on_assigned_hook({
                    topic: (frozenset(p for t, p in assigned if t == topic),
                            totals.get(topic, 0))
                    for topic in self.routes})
        finally:  # failed or cancelled (logged by the consumer), the partitions are here
            self._assigned = True


def tune_gc(gen0: int = 10_000, gen1: int = 20, gen2: int = 20) -> None:
    """Keep the cyclic garbage collector from eating a busy worker's time.

    Every batch allocates thousands of short-lived objects, nearly all freed by
    reference counting, yet each ~700 allocations start a young collection and every
    100th of those walks the whole heap (the detectors of every function: hundreds of
    MB). That was a quarter of the worker's time at 20,000 events/s. So: freeze what
    startup built (modules, the app, restored decision state) out of the collector's
    view, and collect a generation every ``gen0`` allocations (×``gen1``, ×``gen2``).
    Cycles are still collected, only less often. Process-wide: the worker calls it
    once, when its ingest starts.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, gen1, gen2)
