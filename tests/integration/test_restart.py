"""A restarted worker resumes every function's baseline instead of warming up again, and
what else lies on the state topic is refused, counted and never run."""

from __future__ import annotations

import hashlib
import hmac
import pickle
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

import agents
from streams.decisions.snapshots import load_snapshots, seal, unseal
from tests.integration.conftest import (
    STATE_KEY,
    VERDICT_KEY,
    AgentFactory,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_a_restarted_worker_flags_a_burst_without_a_new_warm_up(
        broker: str, prefix: str, tmp_path: Path, agent_for: AgentFactory) -> None:
    runtime = agent_for(broker, prefix)
    name = f"steady-{uuid.uuid4().hex[:6]}"

    @agents.govern(function=name)
    def handler() -> str:
        return "ok"

    def run_at(rate: float, seconds: float) -> int:
        refused, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                handler()
            except agents.FunctionThrottled:
                refused += 1
            time.sleep(1 / rate)
        return refused

    first = start_worker(broker, prefix, tmp_path)
    try:
        assert run_at(20, 7) == 0  # the baseline: ~20 calls/s for 7 one-second windows
        agents.flush(5)
        time.sleep(2)  # the last windows close and their state is published
    finally:
        stop_worker(first)
    second = start_worker(broker, prefix, tmp_path)
    try:
        # A burst right away: without the restored baseline the new worker would take
        # it as the first windows of history and say nothing.
        wait_for(lambda: run_at(400, 1), timeout_s=15)
        verdict = runtime.verdicts.current(name)
        assert verdict is not None and verdict.action.value == "throttle"
        assert second.health()["counters"]["snapshots_restored"] == 1  # type: ignore[index]
    finally:
        stop_worker(second)


class _RunsACommand:
    """Pickles into a call of os.system: what a plain unpickler would run on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_snapshots_that_are_not_the_workers_own_are_refused_and_run_nothing(
        broker: str, prefix: str, tmp_path: Path, agent_for: AgentFactory) -> None:
    """On the state topic before the worker starts: a pickle that would create a file
    (under the MAC of the state key itself, and of the verdict key), a snapshot sealed
    with the verdict key, and a well-signed one of the wrong shape. Each is refused and
    counted by its reason; no file appears; the functions start cold and then publish
    genuine snapshots of their own."""
    tag = uuid.uuid4().hex[:6]
    names = {reason: f"{reason}-{tag}" for reason in ("pickle", "pickled", "key", "shape")}
    marker = tmp_path / "ran"
    payload = pickle.dumps({"detection": _RunsACommand(marker)})
    state_key, verdict_key = STATE_KEY.encode(), VERDICT_KEY.encode()
    malformed = orjson.dumps({"format": 2, "function": names["shape"],
                              "state": {"detection": {"kind": "pickle"}, "team": ""}})
    records = {
        names["pickle"]: hmac.new(state_key, payload, hashlib.sha256).digest() + payload,
        names["pickled"]: hmac.new(verdict_key, payload, hashlib.sha256).digest() + payload,
        names["key"]: seal(names["key"], {"detection": {}, "team": ""}, verdict_key),
        names["shape"]: hmac.new(state_key, malformed, hashlib.sha256).digest() + malformed,
    }
    producer = Producer({"bootstrap.servers": broker})
    for function, blob in records.items():
        producer.produce(f"{prefix}.state", blob, function.encode())
    assert producer.flush(10) == 0
    agent_for(broker, prefix)
    worker = start_worker(broker, prefix, tmp_path)
    try:
        counters = worker.health()["counters"]
        assert isinstance(counters, dict)
        # what needs no parsing is checked as the worker starts
        assert counters.get("snapshots_refused_pickle") == 2, counters
        assert counters.get("snapshots_refused_key") == 1, counters
        handlers = [agents.govern(function=name)(lambda: "ok") for name in names.values()]
        deadline = time.monotonic() + 30
        published: dict[str, bytes] = {}
        while time.monotonic() < deadline and len(published) < len(names):
            for handler in handlers:
                handler()
            agents.flush(2)
            time.sleep(0.5)
            published = {name: blob
                         for name, blob in load_snapshots(broker, f"{prefix}.state", 10).items()
                         if name in names.values() and blob != records[name]}
        counters = worker.health()["counters"]
        assert isinstance(counters, dict)
        assert counters.get("snapshots_refused_shape") == 1, counters  # on first use
        assert "snapshots_restored" not in counters
        assert set(published) == set(names.values())  # they went on, cold
        for name, blob in published.items():
            assert unseal(blob, name, state_key).reader("detection").integer("layout")
        assert worker.process.poll() is None
    finally:
        stop_worker(worker)
    assert not marker.exists()
