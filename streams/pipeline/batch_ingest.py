"""Batched ingest of the hot topics: an aiokafka ``getmany`` loop inside the Faust app.

Faust hands its agents one message at a time (consumer thread → conductor → stream,
a task and futures per message), which caps a worker near 8,000 events/s whatever
the agent does (benchmarks/README.md, "Pipeline throughput"). The hot topics (costs,
spans) are consumed here instead, a batch at a time, pipelined::

    fetch + decode + handle batch n+1   ─┐  (this loop)
    write batch n to the sink, commit n ─┘  (a task; the insert runs in a thread)

* Each fetch is decoded and handed to its route (the decision step) as it comes; the
  batch only bounds what one sink write and one commit take.
* One consumer of its own group, ``<app_id>.ingest``; Faust's group keeps the
  low-volume topics. Offsets are committed by hand, never automatically.
* Records that fail validation go to the dead-letter topic with the reason; their
  delivery is confirmed before the offsets that cover them are committed.
* A batch's offsets are committed only after the sink wrote it: at-least-once, and a
  crash replays at most the two batches in flight, whose rows replace themselves.
* Partition revoke (a rebalance) and stop *settle* first: the loop finishes the batch
  in hand, writes and commits it, and parks; only then do the partitions go.
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

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.abc import ConsumerRebalanceListener  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    CommitFailedError,
    IllegalStateError,
    KafkaError,
)
from mode import Service

from schemas import Event
from streams.pipeline.authn import TelemetryAuth
from streams.pipeline.decoding import DeadReason, TimeBounds, decode_records
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
    stop_timeout_s: float = 30.0  # longest wait to settle on stop before giving up
    sink_retries: int = 5  # failed writes retried (after 0.5, 1, 2, 4, 5 s) before a crash
    tune_gc: bool = False  # the worker process: see tune_gc()
    bounds: TimeBounds | None = None  # events dated too far from now: dead letters
    auth: Mapping[str, Any] = field(default_factory=dict)  # TLS/SASL: kafka_auth.aiokafka_auth
    telemetry_auth: TelemetryAuth | None = None  # telemetry not authenticated as its
    # function: stored flagged, decides nothing


@dataclass
class _Batch:
    events: list[Event]
    offsets: dict[TopicPartition, int]  # the next offset to read, per partition
    deliveries: list[Awaitable[Any]]  # dead letters sent for this batch
    flagged: set[str]  # event ids stored flagged unauthenticated


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
        self._consumer: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._hold = False  # a rebalance wants the loop parked
        self._unhold = asyncio.Event()
        self._parked = asyncio.Event()
        self._assigned = asyncio.Event()
        self._lag: dict[TopicPartition, int] = {}
        super().__init__(**kwargs)

    @property
    def ready(self) -> bool:
        """True once the group gave this consumer its partitions (and none is revoking)."""
        return self._assigned.is_set() and not self._hold

    @property
    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark after the last fetch, by (topic, partition)
        assigned here (0 when that fetch found none waiting)."""
        if self._consumer is None:
            return {}
        return {(tp.topic, tp.partition): self._lag.get(tp, 0)
                for tp in self._consumer.assignment()}

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
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the ingest consumer starts with the service")
        return self._consumer

    async def on_start(self) -> None:
        c = self.config
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=c.bootstrap, group_id=c.group_id,
            client_id=f"{c.group_id}-consumer",
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=c.batch,
            rebalance_timeout_ms=int(c.rebalance_timeout_s * 1000),
            session_timeout_ms=int(max(6.0, 2 * c.rebalance_timeout_s) * 1000),
            heartbeat_interval_ms=1000,
            **c.auth,
        )
        self._consumer.subscribe(list(self.routes), listener=_Listener(self))
        await self._consumer.start()
        if c.tune_gc:
            tune_gc()
        self._loop_task = asyncio.create_task(self._run(), name="governor-ingest")

    async def on_stop(self) -> None:
        self._stopping = True
        self._unhold.set()
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
            await self._consumer.stop()  # leaves the group: its partitions move at once

    # The loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        writing: asyncio.Task[None] | None = None
        try:
            while not self._stopping:
                if self._hold:
                    await _settle(writing)
                    writing = None
                    self._parked.set()
                    await self._unhold.wait()
                    self._parked.clear()
                    continue
                batch = await self._next_batch()
                if batch is None:  # idle: nothing left uncommitted while waiting
                    await _settle(writing)
                    writing = None
                    continue
                await _settle(writing)  # batch n written and committed before n+1 starts
                writing = asyncio.create_task(self._write_and_commit(batch))
                await asyncio.sleep(0)  # the write starts now, beside the next fetch + decode
            await _settle(writing)
            writing = None
        except Exception as exc:
            log.error("ingest stopped: %r; the worker stops, and the records not "
                      "committed are read again by the next one", exc)
            if not self._stopping:
                await self.crash(exc)
            raise
        finally:
            if writing is not None:  # an error or a cancel: never commit past it
                writing.cancel()
            self._parked.set()

    async def _next_batch(self) -> _Batch | None:
        """Fetch up to ``batch`` records (waiting at most ``within_s`` once some came).
        Each fetch is decoded, its dead letters sent and its valid events handed to their
        routes as it comes, so decisions never wait for the batch to fill; the batch is
        written as one."""
        consumer, c = self.consumer, self.config
        batch = _Batch([], {}, [], set())
        count, deadline = 0, 0.0
        while count < c.batch and not (self._hold or self._stopping):
            wait_s = c.within_s if not count else deadline - time.monotonic()
            if wait_s <= 0:
                break
            part = await consumer.getmany(timeout_ms=int(wait_s * 1000),
                                          max_records=c.batch - count)
            if not part:
                if not count:  # nothing waiting on any partition
                    self._lag.clear()
                break
            if not count:
                deadline = time.monotonic() + c.within_s
            for tp, records in part.items():
                count += len(records)
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    self._lag[tp] = max(0, highwater - records[-1].offset - 1)
            await self._decode(part, batch)
        return batch if count else None

    async def _decode(self, fetched: Mapping[TopicPartition,
                                            Sequence[ConsumerRecord[bytes, bytes]]],
                      batch: _Batch) -> None:
        """Decode ``fetched`` into ``batch``: dead letters sent, valid events handed to
        their routes."""
        by_topic: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp, records in fetched.items():
            by_topic.setdefault(tp.topic, []).extend(records)
            batch.offsets[tp] = records[-1].offset + 1
        for topic, records in by_topic.items():
            route = self.routes[topic]
            decoded = decode_records(records, route.cls, self.config.bounds, time.time_ns(),
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

    async def _write_and_commit(self, batch: _Batch) -> None:
        await self._storer.store(batch.events, batch.deliveries, frozenset(batch.flagged))
        for delivery in batch.deliveries:
            await delivery  # a dead letter not delivered must not be skipped by the commit
        try:
            await self.consumer.commit(batch.offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved on before the commit: their new owner reads these
            # records again and the rows replace themselves.
            self.counters["commit_failures"] += 1
            log.warning("ingest: offsets not committed (%s); they are read again", exc)
        except KafkaError as exc:
            self.counters["commit_failures"] += 1
            log.warning("ingest: offset commit failed (%r); the records are read again "
                        "after a restart or rebalance", exc)

    # Rebalance ------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._assigned.clear()
        for tp in revoked:
            self._lag.pop(tp, None)
        if not revoked or self._loop_task is None or self._loop_task.done():
            return
        self._hold = True
        self._unhold.clear()
        await self._parked.wait()
        log.info("ingest: settled before giving up %d partitions", len(revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("ingest: assigned %d partitions", len(assigned))
        if self._on_assigned_hook is not None:  # before any record of them is read
            owned = {}
            for topic in self.routes:
                total = self.consumer.partitions_for_topic(topic) or set()
                owned[topic] = (frozenset(tp.partition for tp in assigned if tp.topic == topic),
                                len(total))
            await self._on_assigned_hook(owned)
        self._hold = False
        self._unhold.set()
        self._assigned.set()


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


async def _settle(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        await task


class _Listener(ConsumerRebalanceListener):
    """Settles the loop before partitions are revoked; resumes it once assigned."""

    def __init__(self, ingest: BatchIngest) -> None:
        self._ingest = ingest

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._ingest._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._ingest._on_assigned(assigned)
