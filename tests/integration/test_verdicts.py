"""Verdicts published on Kafka are followed and enforced by the agent."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

import agents
from schemas import Action, Verdict, encode, now_ns, partition_for, sign_verdict
from streams.kafka import topic_spec
from tests.integration.conftest import VERDICT_KEY, AgentFactory, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = int(topic_spec()["verdicts"]["partitions"])


class Publisher:
    """Signs and publishes verdicts the way the worker does."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap})
        self.topic = f"{prefix}.verdicts"
        self.sequence = 0

    def send(self, function: str, action: Action, rate_rps: float | None = None,
             key: str = VERDICT_KEY, sequence: int | None = None,
             expires_in_s: float = 60.0) -> Verdict:
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        verdict = sign_verdict(Verdict(
            function=function, action=action, rate_rps=rate_rps, sequence=sequence,
            expires_at_unix_nano=now_ns() + int(expires_in_s * 1e9), reason="test"), key.encode())
        self.producer.produce(self.topic, encode(verdict), function.encode(),
                              partition=partition_for(function, PARTITIONS))
        assert self.producer.flush(10) == 0
        return verdict


def _governed(name: str) -> Callable[[], str]:
    @agents.govern(function=name)
    def handler() -> str:
        return "ran"
    return handler


def _refused(handler: Callable[[], str]) -> bool:
    try:
        handler()
    except agents.FunctionBlocked:
        return True
    return False


def test_isolate_refuses_and_release_restores(
        broker: str, prefix: str, agent_for: AgentFactory) -> None:
    agent_for(broker, prefix)
    name = f"fn-{uuid.uuid4().hex[:6]}"
    handler = _governed(name)
    assert handler() == "ran"
    publisher = Publisher(broker, prefix)
    publisher.send(name, Action.ISOLATE)
    wait_for(lambda: _refused(handler), timeout_s=20)
    with pytest.raises(agents.FunctionIsolated) as refused:
        handler()
    assert refused.value.function == name
    publisher.send(name, Action.RELEASE)
    wait_for(lambda: not _refused(handler), timeout_s=20)
    assert handler() == "ran"


def test_throttle_limits_calls_to_the_verdict_rate(
        broker: str, prefix: str, agent_for: AgentFactory) -> None:
    runtime = agent_for(broker, prefix)
    name = f"fn-{uuid.uuid4().hex[:6]}"
    handler = _governed(name)
    handler()
    Publisher(broker, prefix).send(name, Action.THROTTLE, rate_rps=20)
    wait_for(lambda: runtime.verdicts.current(name) is not None, timeout_s=20)
    allowed = refused = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        if _refused(handler):
            refused += 1
        else:
            allowed += 1
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    # a token bucket at 20 rps with a burst of 20 admits at most 20 + 20 × elapsed
    assert allowed <= 20 + 20 * elapsed + 1
    assert allowed >= 20 * elapsed * 0.5
    assert refused > allowed


def test_forged_expired_and_replayed_verdicts_are_ignored(
        broker: str, prefix: str, agent_for: AgentFactory) -> None:
    runtime = agent_for(broker, prefix)
    name = f"fn-{uuid.uuid4().hex[:6]}"
    handler = _governed(name)
    handler()
    publisher = Publisher(broker, prefix)
    publisher.send(name, Action.THROTTLE, rate_rps=1000, sequence=10)
    wait_for(lambda: runtime.verdicts.current(name) is not None, timeout_s=20)
    publisher.send(name, Action.ISOLATE, key="not-the-key", sequence=11)  # forged
    publisher.send(name, Action.ISOLATE, sequence=12, expires_in_s=-1)  # expired
    publisher.send(name, Action.ISOLATE, sequence=9)  # replayed / out of order
    marker = publisher.send(name, Action.THROTTLE, rate_rps=999, sequence=13)
    wait_for(lambda: runtime.verdicts.current(name) == marker, timeout_s=20)
    stats = agents.stats()
    assert stats["verdicts_rejected_forged"] == 1
    assert stats["verdicts_rejected_expired"] == 1
    assert stats["verdicts_rejected_replayed"] == 1
    assert handler() == "ran"


def test_agent_partitioning_matches_the_producers(broker: str, prefix: str) -> None:
    """Keys land where ``partition_for`` says, for librdkafka's murmur2 partitioner."""
    producer = Producer({"bootstrap.servers": broker, "partitioner": "murmur2_random"})
    placed: dict[str, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None
        placed[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    names = [f"function-{i}" for i in range(60)]
    for name in names:
        producer.produce(f"{prefix}.verdicts", b"{}", name.encode(), on_delivery=delivered)
    assert producer.flush(10) == 0
    assert placed == {name: partition_for(name, PARTITIONS) for name in names}
    assert len(set(placed.values())) == PARTITIONS


def test_fail_closed_runs_once_the_verdicts_are_known(
        broker: str, prefix: str, agent_for: AgentFactory) -> None:
    agent_for(broker, prefix)
    name = f"fn-{uuid.uuid4().hex[:6]}"

    @agents.govern(function=name, fail_closed=True)
    def handler() -> str:
        return "ran"

    Publisher(broker, prefix).send(f"{name}-other", Action.ISOLATE)  # another key
    wait_for(lambda: not _refused(handler), timeout_s=20)  # in sync with the topic
    Publisher(broker, prefix).send(name, Action.ISOLATE, sequence=5)
    wait_for(lambda: _refused(handler), timeout_s=20)
