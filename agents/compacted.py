"""Compacted topics with confluent-kafka alone: read one to its end, or follow it.

Shared by the agent (its verdicts) and the workers (live thresholds, decision
snapshots, operator commands), so the broker's quirks are handled in one place:

* no consumer group: partitions are assigned, read from the beginning (a compacted
  topic's history is its state) and never committed;
* "the end" is each partition's high watermark; a partition whose tail was compacted
  away ends when the position passes it, an empty one has nothing to read;
* some brokers (Tansu) report the high watermark as the last batch's base offset + 1,
  so the rest of that batch lies past it and arrives with the same fetch: a read to
  the end drains what was already fetched.

Light on purpose: the agent imports it, so nothing here may import more than
confluent-kafka (and that only when a reader runs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from agents.kafka_security import PLAINTEXT, KafkaSecurity

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

log = logging.getLogger("governor.compacted")

Select = Callable[[int], Iterable[int]]
"""Given a topic's partition count, the partitions to follow."""


def all_partitions(count: int) -> Iterable[int]:
    return range(count)


def make_consumer(bootstrap: str, logger: logging.Logger | None = None,
                  security: KafkaSecurity = PLAINTEXT, **overrides: Any) -> Consumer:
    """A consumer that never joins its group (librdkafka requires a ``group.id``)."""
    from confluent_kafka import Consumer

    return Consumer(security.client_config(bootstrap, {
        "group.id": "governor-unused",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
        **({"logger": logger} if logger is not None else {"log_level": 0}),
        **overrides,
    }))


def end_offsets(consumer: Consumer, topic: str, partitions: Iterable[int] | None,
                timeout_s: float) -> dict[int, int]:
    """High watermarks of ``topic``'s partitions (all, or ``partitions``) that hold
    records; empty when the topic does not exist."""
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    ends = {}
    for p in sorted(meta.partitions) if partitions is None else partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                   timeout=timeout_s, cached=False)
        if high > max(low, 0):
            ends[p] = high
    return ends


class Reading(NamedTuple):
    """What :func:`read_to_end` read, and the partitions it could not finish in time."""

    records: list[Message]
    unread: list[int]


def read_to_end(bootstrap: str, topic: str, partitions: Iterable[int] | None = None,
                timeout_s: float = 10.0, logger: logging.Logger | None = None,
                security: KafkaSecurity = PLAINTEXT) -> Reading:
    """Every record of ``topic`` (or of its ``partitions``) from the beginning up to the
    high watermarks at the time of the call, in offset order per partition.

    Raises ``confluent_kafka.KafkaException`` when the broker cannot be asked.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = make_consumer(bootstrap, logger, security)
    try:
        ends = end_offsets(consumer, topic, partitions, timeout_s)
        if not ends:
            return Reading([], [])
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records = []
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                records.append(msg)
            for p in list(ends):
                [position] = consumer.position([TopicPartition(topic, p)])
                if position.offset >= ends[p]:
                    del ends[p]
        while (msg := consumer.poll(0.1)) is not None:  # the rest of the last batch
            if not msg.error():
                records.append(msg)
        return Reading(records, sorted(ends))
    finally:
        consumer.close()


class Follower:
    """Follows a compacted topic from the beginning in a daemon thread.

    ``select(partition_count)`` says which partitions to follow; call :meth:`refresh`
    when its answer may have changed (new partitions are added, none dropped).
    ``on_record(message)`` runs in the follower's thread for every record; what it
    raises is logged and counted, never stops the follower. ``on_problem(what)`` is
    told ``"consumer_error"``, ``"record_failed"`` or ``"stopped"``.
    """

    def __init__(self, bootstrap: str, topic: str, on_record: Callable[[Message], None], *,
                 name: str, select: Select = all_partitions,
                 on_problem: Callable[[str], None] | None = None,
                 logger: logging.Logger | None = None,
                 security: KafkaSecurity = PLAINTEXT) -> None:
        self.topic = topic
        self.last_contact = 0.0
        """``time.monotonic()`` when the broker last answered."""
        self._bootstrap = bootstrap
        self._security = security
        self._on_record = on_record
        self._select = select
        self._on_problem = on_problem or (lambda what: None)
        self._logger = logger
        self._synced = threading.Event()
        self._refresh = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Follower:
        self._thread.start()
        return self

    def refresh(self) -> None:
        """Ask ``select`` again (e.g. the agent governs a new function)."""
        self._refresh.set()

    @property
    def synced(self) -> bool:
        """Every followed partition has been read up to its high watermark."""
        return self._synced.is_set()

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopped.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout_s)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        consumer = make_consumer(self._bootstrap, self._logger, self._security)
        assigned: set[int] = set()
        count = 0
        next_check = 0.0
        try:
            while not self._stopped.is_set():
                if self._refresh.is_set() or not count:
                    try:
                        meta = consumer.list_topics(self.topic, timeout=2.0).topics[self.topic]
                        count = 0 if meta.error is not None else len(meta.partitions)
                    except (KafkaException, KeyError):
                        count = 0
                    if not count:
                        self._stopped.wait(0.5)
                        continue
                    self._refresh.clear()
                    if new := set(self._select(count)) - assigned:
                        consumer.incremental_assign(
                            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new])
                        assigned |= new
                        self._synced.clear()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 1.0
                    self._check_sync(consumer, assigned)
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    self._on_problem("consumer_error")
                    continue
                self.last_contact = time.monotonic()
                try:
                    self._on_record(msg)
                except Exception:
                    log.exception("record at %s/%s:%s not applied", self.topic,
                                  msg.partition(), msg.offset())
                    self._on_problem("record_failed")
        except Exception:  # never let the follower take its process down
            log.exception("follower of %s stopped", self.topic)
            self._on_problem("stopped")
        finally:
            consumer.close()

    def _check_sync(self, consumer: Consumer, assigned: set[int]) -> None:
        """Synced once the position reached every followed partition's high watermark."""
        from confluent_kafka import KafkaException, TopicPartition

        if not assigned:
            return
        try:
            for partition in assigned:
                tp = TopicPartition(self.topic, partition)
                _, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
                [position] = consumer.position([tp])
                if high > 0 and position.offset < high:
                    return
            self.last_contact = time.monotonic()
            self._synced.set()
        except KafkaException:
            self._on_problem("consumer_error")
