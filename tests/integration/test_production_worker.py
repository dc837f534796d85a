"""A worker with production settings: telemetry authenticated (it acts only on
telemetry carrying the MAC of the function it names) and the query endpoint bound
beyond loopback, behind a bearer token."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

import agents
from agents._auth import Sealer, function_key
from schemas import CostEvent, encode, now_ns
from streams.ops.query import query_endpoint
from tests.integration.conftest import (
    VERDICT_KEY,
    WorkerStack,
    call_at,
    start_worker,
    stop_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

SECRET = b"telemetry-secret-held-by-workers-only-0123456789"
TOKEN = "query-token-for-analysts-0123456789abcdef"


@pytest.fixture(scope="module")
def production_worker(broker: str, tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[WorkerStack]:
    stack = start_worker(broker, f"a{uuid.uuid4().hex[:10]}", tmp_path_factory.mktemp("auth"),
                         {"GOVERNOR_TELEMETRY_AUTH": "on",
                          "GOVERNOR_TELEMETRY_KEY": f"k1:{SECRET.decode()}",
                          "GOVERNOR_QUERY_HOST": "0.0.0.0", "GOVERNOR_QUERY_TOKEN": TOKEN})
    yield stack
    stop_worker(stack)


def _count(stack: WorkerStack, sql: str) -> int:
    return int(query_endpoint(stack.query_url, sql, token=TOKEN).rows[0][0])


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"bearer {TOKEN}", TOKEN])
def test_the_query_endpoint_beyond_loopback_requires_its_token(
        production_worker: WorkerStack, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(production_worker.query_url + "/query", method="POST",
                                     data=b'{"sql": "SELECT 1"}', headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401 and "bearer token" in refused.value.read().decode()
    counters = production_worker.health()["counters"]
    assert isinstance(counters, dict) and counters["query_unauthorized"] >= 1
    assert query_endpoint(production_worker.query_url, "SELECT 1", token=TOKEN).rows == [[1]]


def test_spoofed_telemetry_is_stored_flagged_and_never_enforced(
        production_worker: WorkerStack, tmp_path: Path) -> None:
    """Mallory holds its own function key and floods the costs topic with a runaway in
    the victim's name: stored, flagged, counted, never throttled. The same runaway sent
    by the victim itself is throttled."""
    stack = production_worker
    victim = f"victim-{uuid.uuid4().hex[:6]}"
    runtime = agents.configure(agents.AgentSettings(
        kafka_bootstrap=stack.bootstrap, topic_prefix=stack.prefix,
        verdict_key=VERDICT_KEY.encode(), export_interval_ms=50,
        function_key=function_key(b"k1", SECRET, victim).decode()))
    try:
        @agents.govern(function=victim, memory_mb=512)
        def handler(event: None, context: None) -> str:
            return "ok"

        def run_at(rate: float, seconds: float) -> int:
            return call_at(handler, rate, seconds)

        assert run_at(20, 6) == 0  # a baseline of ~20 authenticated calls/s
        mallory = Sealer(function_key(b"k1", SECRET, "mallory").decode())
        producer = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 5})
        forged = 0
        for second in range(6):  # 20x the calls, each 100x the cost, in the victim's name
            for _ in range(400):
                event = CostEvent(function=victim, invocation_id=uuid.uuid4().hex,
                                  memory_mb=512, duration_ms=100, billed_duration_ms=100,
                                  cost_usd=1e-4, compute_usd=1e-4, time_unix_nano=now_ns())
                value = encode(event)
                producer.produce(f"{stack.prefix}.costs", value, victim.encode(),
                                 headers=mallory.headers(value))
                forged += 1
            producer.flush(5)
            assert run_at(20, 1) == 0, f"throttled by forged telemetry after {second + 1} s"
        wait_for(lambda: _count(stack, f"SELECT count() FROM cost_events WHERE function = "
                                       f"'{victim}' AND unauthenticated") == forged)
        counters = stack.health()["counters"]
        assert isinstance(counters, dict) and counters["unauthenticated_cost"] >= forged
        assert _count(stack, f"SELECT count() FROM verdicts WHERE function = '{victim}'") == 0
        assert _count(stack, f"SELECT count() FROM cost_events WHERE function = '{victim}' "
                             "AND NOT unauthenticated") > 100

        refused = wait_for(lambda: run_at(400, 1), timeout_s=20)  # the victim's own runaway
        verdict = runtime.verdicts.current(victim)
        assert refused > 0 and verdict is not None and verdict.action.value == "throttle"
    finally:
        agents.shutdown(2.0)
