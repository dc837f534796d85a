"""The agent's telemetry on the real broker: keyed, partitioned and decodable."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import agents
from schemas import CostEvent, Span, decode, partition_for
from streams.kafka import topic_spec
from tests.integration.conftest import AgentFactory

pytestmark = pytest.mark.integration


def _read(broker: str, topic: str, key: bytes, want: int) -> list[tuple[int, bytes]]:
    partitions = int(topic_spec()[topic.rsplit(".", 1)[1]]["partitions"])
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "unused",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    found: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 20
    while len(found) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.key() == key:
            found.append((msg.partition(), msg.value()))
    consumer.close()
    return found


def test_spans_and_cost_events_arrive_and_decode(
        broker: str, prefix: str, agent_for: AgentFactory) -> None:
    agent_for(broker, prefix)
    name = f"export-{uuid.uuid4().hex[:6]}"

    @agents.govern(function=name, memory_mb=1024, team="search")
    def handler(n: int) -> int:
        agents.record_cost(n, 0.001, kind="api_calls")
        return n

    assert [handler(n) for n in range(1, 26)] == list(range(1, 26))
    assert agents.flush(10)
    spans = _read(broker, f"{prefix}.spans", name.encode(), 25)
    costs = _read(broker, f"{prefix}.costs", name.encode(), 25)
    assert len(spans) == len(costs) == 25
    partitions = int(topic_spec()["spans"]["partitions"])
    assert {p for p, _ in spans} == {partition_for(name, partitions)}
    decoded_costs = [decode(v, CostEvent) for _, v in costs]
    decoded_spans = [decode(v, Span) for _, v in spans]
    assert sorted(c.custom_usd["api_calls"] for c in decoded_costs) == pytest.approx(
        [n * 0.001 for n in range(1, 26)])
    assert {c.team for c in decoded_costs} == {"search"}
    assert {s.span_id for s in decoded_spans} == {c.span_id for c in decoded_costs}
    stats = agents.stats()
    assert stats.get("produced") == 50
    assert not [k for k in stats if k.startswith("dropped_")]


def test_telemetry_resumes_after_the_broker_restarts_empty(tmp_path: object) -> None:
    """The broker comes back on the same port with nothing (no topics, no producer
    ids): the idempotent producer's fatal error retires it, a new one is built, and
    the function's telemetry is delivered again within seconds."""
    from streams.kafka import ensure_topics
    from streams.ops.broker import start_broker

    first = start_broker()
    port = int(first.bootstrap.rsplit(":", 1)[1])
    prefix = f"r{uuid.uuid4().hex[:8]}"
    ensure_topics(first.bootstrap, prefix)
    agents.configure(agents.AgentSettings(kafka_bootstrap=first.bootstrap, topic_prefix=prefix,
                                          verdict_key=b"k"))
    second = None
    try:
        @agents.govern(function="survivor")
        def handler() -> int:
            return 1

        for _ in range(50):
            handler()
        assert agents.flush(10)
        before = agents.stats().get("delivered", 0)
        assert before == 100
        first.stop()
        second = start_broker(port=port)
        ensure_topics(second.bootstrap, prefix)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and agents.stats().get("delivered", 0) < before + 40:
            handler()
            time.sleep(0.05)
        stats = agents.stats()
        assert stats.get("delivered", 0) >= before + 40, stats
        assert _read(second.bootstrap, f"{prefix}.costs", b"survivor", 20)
        started = time.monotonic()
        agents.shutdown(1.0)
        assert time.monotonic() - started < 1.5  # shutdown keeps to its timeout
    finally:
        agents.shutdown(0.5)
        if second is not None:
            second.stop()
