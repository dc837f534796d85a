"""A real worker sent more function names than ``GOVERNOR_MAX_FUNCTIONS``: it stores
every event, holds no more functions than the limit, says so, and goes on."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas import CostEvent, encode
from streams.ops.query import query_endpoint
from tests.integration.conftest import start_worker, stop_worker, wait_for

pytestmark = pytest.mark.integration

LIMIT, NAMES = 50, 200


def test_invented_function_names_beyond_the_limit_are_stored_not_held(
        broker: str, tmp_path: Path) -> None:
    stack = start_worker(broker, f"f{uuid.uuid4().hex[:10]}", tmp_path,
                         {"GOVERNOR_MAX_FUNCTIONS": str(LIMIT)})
    try:
        tag = uuid.uuid4().hex[:6]
        now = time.time_ns()
        producer = Producer({"bootstrap.servers": broker})
        for i in range(NAMES):
            event = CostEvent(function=f"invented-{tag}-{i}", invocation_id="1",
                              cost_usd=0.0001, time_unix_nano=now)
            producer.produce(f"{stack.prefix}.costs", encode(event), event.function.encode())
        assert producer.flush(10) == 0

        def stored() -> bool:
            sql = f"SELECT count() FROM cost_events WHERE function LIKE 'invented-{tag}-%'"
            return int(query_endpoint(stack.query_url, sql).rows[0][0]) == NAMES

        wait_for(stored, timeout_s=30)  # every event stored, none lost
        health: dict[str, Any] = stack.health()
        counters = health["counters"]
        assert counters["functions_refused"] == NAMES - LIMIT, health
        assert health["functions"]["open"] + health["functions"]["dormant"] == LIMIT
        assert health["functions"]["limit"] == LIMIT
        assert stack.process.poll() is None and health["ready"]
    finally:
        stop_worker(stack)
