"""The batched ingest's Kafka consumer: librdkafka (confluent-kafka) on a thread of its own.

librdkafka fetches and parses records on its own threads, outside the interpreter
lock; the event loop only takes the finished records. Every call that can block runs
off the loop, on the consumer's own thread: ``consume``, where librdkafka also serves
rebalance callbacks, and commits, queued to it (a commit from any other thread would
wait for a rebalance that waits for it). Commits are sent without waiting for the
broker's answer, in order, except the last before the partitions go (stop, revoke);
a refused one is logged and counted when its answer comes.

The loop never calls the consumer itself: during a rebalance callback librdkafka holds
it, and the callback waits for the loop. The assignment is kept here, as the callbacks
change it, and each fetch returns its partitions' end offsets with its records.

Rebalance callbacks run the ingest's coroutines on the loop and wait for them,
committing what they ask meanwhile: the consumer's thread holds the rebalance until
the ingest settled (revoke) or read the new partitions' state (assign), and no record
of the new assignment is returned before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from agents.kafka_security import KafkaSecurity

log = logging.getLogger("governor.ingest")

Partition = tuple[str, int]
"""(topic, partition)."""
#: ``on_revoked(partitions)`` / ``on_assigned(partitions, partitions in all by topic)``
OnRevoked = Callable[[set[Partition]], Awaitable[None]]
OnAssigned = Callable[[set[Partition], Mapping[str, int]], Awaitable[None]]

#: What librdkafka keeps fetched ahead, in all; once over, it fetches again this soon
#: (its default, a second, lets a busy worker drain the queue and wait).
PREFETCH_KBYTES = 32_768
PREFETCH_BACKOFF_MS = 20
METADATA_TIMEOUT_S = 10.0
_SERVE_S = 0.01  # how often a rebalance callback looks for commits while it waits


class CommitFailed(Exception):
    """The offsets were not committed (the partitions moved, or the broker refused)."""


class IngestConsumer:
    """One consumer of ``topics`` in ``group_id``; call :meth:`start` on the event loop."""

    def __init__(self, bootstrap: str, security: KafkaSecurity, config: Mapping[str, Any],
                 topics: list[str], on_revoked: OnRevoked, on_assigned: OnAssigned,
                 on_commit_failed: Callable[[str], None]) -> None:
        self._bootstrap, self._security = bootstrap, security
        self._config = {"enable.auto.commit": False, "enable.auto.offset.store": False,
                        "auto.offset.reset": "earliest",
                        "queued.max.messages.kbytes": PREFETCH_KBYTES,
                        "fetch.queue.backoff.ms": PREFETCH_BACKOFF_MS,
                        "log_level": 4, "on_commit": self._committed, **config}
        self._topics = topics
        self._on_revoked, self._on_assigned = on_revoked, on_assigned
        self._on_commit_failed = on_commit_failed
        self._consumer: Consumer | None = None
        self._assignment: frozenset[Partition] = frozenset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own = ThreadPoolExecutor(1, thread_name_prefix="governor-ingest-consumer")
        self._commits: queue.SimpleQueue[_Commit] = queue.SimpleQueue()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(self._security.client_config(self._bootstrap, self._config),
                                  logger=log)
        self._consumer.subscribe(self._topics, on_assign=self._assign, on_revoke=self._revoke)

    async def fetch(self, max_records: int, wait_s: float) -> Fetched:
        """Up to ``max_records`` records: waits up to ``wait_s`` for the first, then
        takes what librdkafka holds already."""
        loop, consumer = self._running()
        return await loop.run_in_executor(self._own, self._fetch, consumer, max_records,
                                          wait_s)

    async def commit(self, offsets: Mapping[Partition, int], wait: bool = False) -> None:
        """Commit ``offsets`` (the next offset to read, by partition) on the consumer's
        thread: sent, or with ``wait`` (and during a rebalance) answered by the broker;
        :class:`CommitFailed` when it refused them."""
        loop, consumer = self._running()
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._commits.put(_Commit([TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  wait, done))
        loop.run_in_executor(self._own, self._serve, consumer)  # unless a callback does first
        await asyncio.wrap_future(done)

    def assignment(self) -> frozenset[Partition]:
        """The partitions assigned here (none while they are being revoked)."""
        return self._assignment

    async def close(self) -> None:
        """Leave the group (the partitions move at once) and stop the threads."""
        if self._consumer is not None and self._loop is not None:
            await self._loop.run_in_executor(self._own, self._consumer.close)
        self._own.shutdown(wait=False)

    # Rebalance callbacks: on the consumer's thread, inside consume() or close() ------

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment = frozenset()
        self._on_loop(consumer, self._on_revoked({(tp.topic, tp.partition)
                                                  for tp in partitions}))

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        owned = {(tp.topic, tp.partition) for tp in partitions}
        totals = {}
        for topic in self._topics:
            try:
                found = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
                totals[topic] = len(found.partitions) if found is not None else 0
            except KafkaException as exc:
                log.warning("ingest: no metadata for %s (%s)", topic, exc)
                totals[topic] = 0
        self._assignment = frozenset(owned)
        self._on_loop(consumer, self._on_assigned(owned, totals))

    def _on_loop(self, consumer: Consumer, hook: Awaitable[None]) -> None:
        """Run ``hook`` on the event loop and wait for it, committing what it asks
        meanwhile; an error is logged (raised here it would surface from the next
        consume)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(_awaited(hook), self._loop)
        while True:
            try:
                future.result(_SERVE_S)
                return
            except concurrent.futures.TimeoutError:
                self._serve(consumer, wait=True)
            except Exception:
                log.exception("ingest: a rebalance step failed")
                return

    # On the consumer's thread ------------------------------------------------------

    def _fetch(self, consumer: Consumer, max_records: int, wait_s: float) -> Fetched:
        """The commits asked for, then the first record (waiting up to ``wait_s``), then
        up to ``max_records`` in all of what is fetched already, and the assigned
        partitions' end offsets; errors logged, or raised when fatal."""
        self._serve(consumer)
        first = consumer.consume(1, wait_s)
        if first and max_records > 1:
            first += consumer.consume(max_records - 1, 0)
        records = []
        for message in first:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.fatal():
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("ingest: consumer error: %s", error)
        return Fetched(records, {tp: high for tp in self._assignment
                                 if (high := _highwater(consumer, tp)) is not None})

    def _serve(self, consumer: Consumer, wait: bool = False) -> None:
        """Make the commits asked for so far (each waited for, with ``wait``)."""
        while True:
            try:
                commit = self._commits.get_nowait()
            except queue.Empty:
                return
            try:
                if wait or commit.wait:
                    consumer.commit(offsets=commit.offsets, asynchronous=False)
                else:
                    consumer.commit(offsets=commit.offsets, asynchronous=True)
            except KafkaException as exc:
                commit.done.set_exception(CommitFailed(str(exc.args[0] if exc.args else exc)))
            else:
                commit.done.set_result(None)

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (served inside consume)."""
        if error is not None and error.code() != KafkaError._NO_OFFSET and self._loop:
            self._loop.call_soon_threadsafe(self._on_commit_failed, str(error))


    def _running(self) -> tuple[asyncio.AbstractEventLoop, Consumer]:
        if self._consumer is None or self._loop is None:
            raise RuntimeError("the ingest consumer starts with the service")
        return self._loop, self._consumer


@dataclass(frozen=True)
class Fetched:
    """A fetch: its records (none with an error), and the end offset of each partition
    assigned, as librdkafka last saw it."""

    records: list[Message]
    highwater: dict[Partition, int]


def _highwater(consumer: Consumer, tp: Partition) -> int | None:
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
    except KafkaException:
        return None
    return int(high) if high is not None and high >= 0 else None


@dataclass(frozen=True)
class _Commit:
    offsets: list[TopicPartition]
    wait: bool
    done: concurrent.futures.Future[None]


async def _awaited(hook: Awaitable[None]) -> None:
    await hook
