"""What ``governor up`` keeps across restarts although its broker stores in memory.

The durable topics (``durable = true`` in ``infra/kafka/topics.toml``: live thresholds,
their audit trail, verdicts, the workers' decision snapshots, on-call feedback) are
copied into the journal (:mod:`streams.ops.journal`, ``.governor/journal.sqlite``)
while the stack runs, and produced again, each record to its own partition with its
key, headers and timestamp, into the new broker before the worker starts.

Why a restore rather than a broker that persists: the Tansu build the ``local`` extra
ships stores in memory or in S3 only (its SQLite and PostgreSQL engines are not
compiled in), and an S3 server is one more process to run; a journal needs nothing
but the standard library. The price: a record still unconsumed by the mirror when
``governor up`` is killed (it follows within a fraction of a second) is lost, and so
are spans and cost events the worker had not taken yet — its ClickHouse history is
kept either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from agents.compacted import make_consumer
from streams.errors import StackError
from streams.kafka import ensure_topics, topic_spec
from streams.ops.journal import Journal, Record
from streams.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Message

JOURNAL_FILE = "journal.sqlite"
log = logging.getLogger("governor.durable")


def durable_topics(prefix: str) -> dict[str, bool]:
    """``{topic: compacted}`` for every durable topic under ``prefix``."""
    return {f"{prefix}.{name}": spec.get("config", {}).get("cleanup.policy") == "compact"
            for name, spec in topic_spec().items() if spec.get("durable")}


def restore(bootstrap: str, journal: Journal, topics: dict[str, bool],
            timeout_s: float = 30.0) -> int:
    """Produce the journal's records of ``topics`` into the broker; how many."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "log_level": 0})
    failed: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    count = 0
    try:
        for r in journal.records():
            if r.topic not in topics:
                continue  # another topic prefix's: kept for when it is used again
            producer.produce(r.topic, r.value, r.key, partition=r.partition,
                             timestamp=r.timestamp_ms, headers=list(r.headers),
                             on_delivery=delivered)
            producer.poll(0)
            count += 1
    except (BufferError, KafkaException) as exc:
        raise StackError(f"cannot restore {journal.path}: {exc}") from None
    if producer.flush(timeout_s) or failed:
        raise StackError(f"cannot restore {journal.path}: "
                         f"{failed[0] if failed else 'the broker did not acknowledge'}")
    return count


class Mirror:
    """Copies the durable topics, from their beginning on, into the journal (a thread)."""

    def __init__(self, bootstrap: str, topics: dict[str, bool], path: Path) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._path = path
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="governor-journal",
                                        daemon=True)

    def start(self) -> Mirror:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Copy what is there still, then stop."""
        self._stopped.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        compacted = frozenset(t for t, is_compacted in self._topics.items() if is_compacted)
        journal = Journal(self._path)
        consumer = make_consumer(self._bootstrap, log)
        try:
            meta = consumer.list_topics(timeout=10).topics
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                             for topic in self._topics if topic in meta
                             for p in meta[topic].partitions])
            while True:
                stopping = self._stopped.is_set()
                messages = consumer.consume(500, 0.2)
                journal.add((_record(m) for m in messages if not m.error()), compacted)
                if stopping and not messages:
                    return
        except Exception:  # the stack runs on; what is journalled so far stays
            log.exception("the journal stopped copying; later changes are not kept")
        finally:
            consumer.close()
            journal.close()


def _record(msg: Message) -> Record:
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return Record(msg.topic() or "", msg.partition() or 0, _bytes(msg.key()),
                  _bytes(msg.value()), tuple((name, _bytes(v)) for name, v in pairs),
                  msg.timestamp()[1])


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


@contextmanager
def durable(settings: Settings, bootstrap: str) -> Iterator[int]:
    """Create the topics, restore the journal into them and mirror them while the block
    runs; yield how many records were restored."""
    topics = durable_topics(settings.topic_prefix)
    ensure_topics(bootstrap, settings.topic_prefix)
    path = settings.data_dir / JOURNAL_FILE
    journal = Journal(path)
    try:
        restored = restore(bootstrap, journal, topics)
    finally:
        journal.close()
    mirror = Mirror(bootstrap, topics, path).start()
    try:
        yield restored
    finally:
        mirror.stop()
