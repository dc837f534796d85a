"""The one compacted-topic reader (``agents.compacted``) on the real broker: read to the
end, follow, survive a record its handler cannot take. The agent's verdicts, the
workers' thresholds and snapshots and the operator commands all go through it."""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from agents.compacted import Follower, read_to_end
from tests.integration.conftest import wait_for


def _topic(broker: str, partitions: int = 3) -> str:
    name = f"compacted-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker, "log_level": 0})
    [future] = admin.create_topics([NewTopic(name, partitions, 1, config={
        "cleanup.policy": "compact"})]).values()
    future.result()
    return name


def _produce(broker: str, topic: str, records: list[tuple[bytes, bytes | None, int]]) -> None:
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 50, "log_level": 0})
    for key, value, partition in records:
        producer.produce(topic, value, key, partition)
    assert producer.flush(10) == 0


def test_read_to_end_reads_every_record_of_every_partition(broker: str) -> None:
    topic = _topic(broker)
    assert read_to_end(broker, topic).records == []  # empty: nothing to wait for
    records: list[tuple[bytes, bytes | None, int]] = [
        (f"k{i}".encode(), f"v{i}".encode(), i % 3) for i in range(60)]
    _produce(broker, topic, records)  # lingered: several records per batch
    reading = read_to_end(broker, topic, timeout_s=10)
    assert reading.unread == []
    got = sorted((m.key(), m.value()) for m in reading.records)
    assert got == sorted((k, v) for k, v, _ in records)  # the last batch's tail too
    only = read_to_end(broker, topic, [1], timeout_s=10)
    assert {m.partition() for m in only.records} == {1} and len(only.records) == 20


def test_a_missing_topic_reads_as_empty(broker: str) -> None:
    assert read_to_end(broker, f"absent-{uuid.uuid4().hex[:8]}", timeout_s=5).records == []


def test_the_follower_syncs_then_follows_and_survives_a_bad_record(broker: str) -> None:
    topic = _topic(broker, partitions=2)
    _produce(broker, topic, [(b"a", b"1", 0), (b"b", b"2", 1)])
    seen: list[bytes] = []
    problems: list[str] = []
    lock = threading.Lock()

    def on_record(msg: object) -> None:
        value = msg.value()  # type: ignore[attr-defined]
        if value == b"boom":
            raise ValueError("a record its handler cannot take")
        with lock:
            seen.append(value)

    follower = Follower(broker, topic, on_record, name="test-follower", select=lambda n: {0, 1},
                        on_problem=problems.append).start()
    try:
        assert follower.wait_synced(20)
        assert sorted(seen) == [b"1", b"2"]
        _produce(broker, topic, [(b"c", b"boom", 0), (b"d", b"3", 0)])
        wait_for(lambda: b"3" in seen, 20)
        assert problems == ["record_failed"]
    finally:
        follower.stop()


def test_the_follower_takes_only_the_partitions_it_selects(broker: str) -> None:
    topic = _topic(broker, partitions=3)
    _produce(broker, topic, [(b"x", b"p0", 0), (b"y", b"p2", 2)])
    wanted = {2}
    seen: list[bytes | None] = []
    follower = Follower(broker, topic, lambda m: seen.append(m.value()), name="test-select",
                        select=lambda n: set(wanted)).start()
    try:
        assert follower.wait_synced(20)
        assert seen == [b"p2"]
        wanted.add(0)
        follower.refresh()
        wait_for(lambda: b"p0" in seen, 20)
    finally:
        follower.stop()
