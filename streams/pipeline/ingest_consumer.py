"""The batched ingest's Kafka consumer: librdkafka (confluent-kafka) on a thread of its own.

librdkafka fetches and parses records on its own threads, outside the interpreter
lock; the event loop only takes the finished records. Every call that can block runs
off the loop, on the consumer's own (daemon) thread: ``consume``, where librdkafka also
serves rebalance callbacks, and commits, queued to it (a commit from any other thread
would wait for a rebalance that waits for it). Commits are sent without waiting for the
broker's answer, in order, except the last before the partitions go (stop, revoke);
a refused one is logged and counted when its answer comes.

The loop never calls the consumer itself: during a rebalance callback librdkafka holds
it, and the callback waits for the loop. The assignment is kept here, as the callbacks
change it, and each fetch returns its partitions' end offsets with its records.

The revoke callback runs the ingest's coroutine on the loop and waits for it,
committing what it asks meanwhile: the partitions go once the ingest settled. The
assignment hook runs when the consume that assigned returns, before any of its records
is handed over (no callback calls the consumer: see :meth:`IngestConsumer._assigned_hook`).
Every wait is bounded: a rebalance step
that takes longer than ``settle_s`` is cancelled and the partitions go without it
(what it did not commit is read again by their next owner), and ``close`` gives up
after its timeout; a stuck broker or sink never holds the worker, or its exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from agents.kafka_security import KafkaSecurity

log = logging.getLogger("governor.ingest")
T = TypeVar("T")

Partition = tuple[str, int]
"""(topic, partition)."""
#: ``on_revoked(partitions)`` / ``on_assigned(partitions, partitions in all by topic)``
OnRevoked = Callable[[set[Partition]], Coroutine[Any, Any, None]]
OnAssigned = Callable[[set[Partition], Mapping[str, int]], Coroutine[Any, Any, None]]

#: What librdkafka keeps fetched ahead, in all; once over, it fetches again this soon
#: (its default, a second, lets a busy worker drain the queue and wait).
PREFETCH_KBYTES = 32_768
PREFETCH_BACKOFF_MS = 20
METADATA_TIMEOUT_S = 10.0
_SERVE_S = 0.01  # how often a rebalance callback looks for commits while it waits
_SLICE_S = 0.2  # the longest consume: how late an assignment's hook may run


class CommitFailed(Exception):
    """The offsets were not committed (the partitions moved, or the broker refused)."""


class IngestConsumer:
    """One consumer of ``topics`` in ``group_id``; call :meth:`start` on the event loop."""

    def __init__(self, bootstrap: str, security: KafkaSecurity, config: Mapping[str, Any],
                 topics: list[str], on_revoked: OnRevoked, on_assigned: OnAssigned,
                 on_commit_failed: Callable[[str], None], settle_s: float = 30.0) -> None:
        self._bootstrap, self._security = bootstrap, security
        self._config = {"enable.auto.commit": False, "enable.auto.offset.store": False,
                        "auto.offset.reset": "earliest",
                        "queued.max.messages.kbytes": PREFETCH_KBYTES,
                        "fetch.queue.backoff.ms": PREFETCH_BACKOFF_MS,
                        "log_level": 4, "on_commit": self._committed, **config}
        self._topics = topics
        self._on_revoked, self._on_assigned = on_revoked, on_assigned
        self._on_commit_failed = on_commit_failed
        self._settle_s = settle_s
        self._consumer: Consumer | None = None
        self._assignment: frozenset[Partition] = frozenset()
        self._assign_pending = False  # assigned in a consume, its hook not run yet
        self._interrupted = False  # a fetch returns at its next slice
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own = _Thread("governor-ingest-consumer")
        self._commits: queue.SimpleQueue[_Commit] = queue.SimpleQueue()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(self._security.client_config(self._bootstrap, self._config),
                                  logger=log)
        self._consumer.subscribe(self._topics, on_assign=self._assign, on_revoke=self._revoke)

    async def fetch(self, max_records: int, wait_s: float) -> Fetched:
        """Up to ``max_records`` records: waits up to ``wait_s`` for the first, then
        takes what librdkafka holds already."""
        consumer = self._running()
        return await asyncio.wrap_future(self._own.submit(self._fetch, consumer, max_records,
                                                          wait_s))

    async def commit(self, offsets: Mapping[Partition, int], wait: bool = False) -> None:
        """Commit ``offsets`` (the next offset to read, by partition) on the consumer's
        thread: sent, or with ``wait`` (and during a rebalance) answered by the broker;
        :class:`CommitFailed` when it refused them."""
        consumer = self._running()
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._commits.put(_Commit([TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                  wait, done))
        self._own.submit(self._serve, consumer)  # unless a callback does first
        await asyncio.wrap_future(done)

    def interrupt(self) -> None:
        """Make the fetch in progress, and any later one, return within a slice of
        0.2 s, with what it has (the ingest is stopping)."""
        self._interrupted = True

    def assignment(self) -> frozenset[Partition]:
        """The partitions assigned here (none while they are being revoked)."""
        return self._assignment

    async def close(self, timeout_s: float = 30.0) -> None:
        """Leave the group (the partitions move at once) and stop the thread; after
        ``timeout_s`` the partitions move when the group's session times out."""
        if self._consumer is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self._own.submit(self._consumer.close)),
                                       timeout_s)
            except TimeoutError:
                log.error("ingest: the consumer did not leave its group within %.0f s; its "
                          "partitions move when the group's session times out", timeout_s)
        self._own.stop()

    # Rebalance callbacks: on the consumer's thread, inside consume() or close(); they
    # must not call the consumer, save a synchronous commit --------------------------

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment, self._assign_pending = frozenset(), False
        self._on_loop(consumer, self._on_revoked({(tp.topic, tp.partition)
                                                  for tp in partitions}))

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Kept; the hook runs once the consume returns, before its records are handed
        over (a callback must not call the consumer: see :meth:`_assigned_hook`)."""
        self._assignment = frozenset((tp.topic, tp.partition) for tp in partitions)
        self._assign_pending = True

    def _on_loop(self, consumer: Consumer, hook: Coroutine[Any, Any, None]) -> None:
        """Run ``hook`` on the event loop and wait for it, committing what it asks
        meanwhile, for ``settle_s`` at most (then it is cancelled); an error is logged
        (raised here it would surface from the next consume)."""
        loop = self._loop
        assert loop is not None
        try:
            future = asyncio.run_coroutine_threadsafe(hook, loop)
        except RuntimeError:  # the loop is closed: nobody waits for the partitions
            hook.close()
            return
        deadline = time.monotonic() + self._settle_s
        while True:
            try:
                future.result(_SERVE_S)
                return
            except TimeoutError:
                if loop.is_closed():
                    return
                if time.monotonic() > deadline:
                    future.cancel()
                    log.error("ingest: a rebalance step took over %.0f s and was cancelled; "
                              "the partitions go without it (what it did not commit is "
                              "read again by their next owner)", self._settle_s)
                    return
                self._serve(consumer, wait=True)
            except Exception:
                log.exception("ingest: a rebalance step failed")
                return

    # On the consumer's thread ------------------------------------------------------

    def _fetch(self, consumer: Consumer, max_records: int, wait_s: float) -> Fetched:
        """The commits asked for, then the first record (waiting up to ``wait_s``), then
        up to ``max_records`` in all of what is fetched already, and the assigned
        partitions' end offsets (a cached read each, fewer calls than one per record to
        find the partitions fetched); errors logged, or raised when fatal."""
        self._serve(consumer)
        deadline = time.monotonic() + wait_s
        while True:  # in slices: an assignment's hook runs soon after its callback
            first = consumer.consume(1, max(0.0, min(_SLICE_S, deadline - time.monotonic())))
            if first or self._assign_pending or self._interrupted \
                    or time.monotonic() >= deadline:
                break
        if first and max_records > 1:
            first += consumer.consume(max_records - 1, 0)
        if self._assign_pending:
            self._assigned_hook(consumer)
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

    def _assigned_hook(self, consumer: Consumer) -> None:
        """Run the assignment hook with the topics' partition counts, after the consume
        whose callback assigned them and before any of its records is handed over.

        Not in the callback itself: confluent-kafka keeps one per-thread call state for
        each client, and a consumer call made inside a callback (``list_topics`` here)
        clears it, so the next callback of the same consume aborts the process.
        """
        self._assign_pending = False
        totals = {}
        for topic in self._topics:
            try:
                found = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
                totals[topic] = len(found.partitions) if found is not None else 0
            except KafkaException as exc:
                log.warning("ingest: no metadata for %s (%s)", topic, exc)
                totals[topic] = 0
        self._on_loop(consumer, self._on_assigned(set(self._assignment), totals))

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
            with contextlib.suppress(RuntimeError):  # a closed loop: the ingest stopped
                self._loop.call_soon_threadsafe(self._on_commit_failed, str(error))


    def _running(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("the ingest consumer starts with the service")
        return self._consumer


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



class _Thread:
    """One daemon thread running the calls given to it, in order (a librdkafka call
    that never returns holds neither the event loop nor the process's exit)."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((lambda: fn(*args), future))
        return future

    def stop(self) -> None:
        """Ends the thread once the calls given before are done."""
        self._calls.put(None)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, future = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)
