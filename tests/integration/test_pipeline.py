"""Agent → Kafka → worker → ClickHouse, and worker verdicts back to the agent."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

import agents
from schemas import MAX_REASON_CHARS, CostEvent, DeadLetter, decode, encode
from streams.errors import QueryError
from streams.ops.query import query_endpoint
from streams.storage.clickhouse import load_migrations
from tests.integration.conftest import AgentFactory, WorkerStack, call_at, wait_for

pytestmark = pytest.mark.integration


def _count(stack: WorkerStack, sql: str) -> int:
    return int(query_endpoint(stack.query_url, sql).rows[0][0])


def test_calls_through_the_agent_become_rows_in_clickhouse(
        worker: WorkerStack, agent_for: AgentFactory) -> None:
    agent_for(worker.bootstrap, worker.prefix)
    name = f"orders-{uuid.uuid4().hex[:6]}"

    @agents.govern(function=name, memory_mb=256, team="payments")
    def handler(event: dict[str, int], context: object) -> int:
        if event["n"] % 10 == 0:
            raise ValueError(f"bad order {event['n']}")
        return event["n"]

    @agents.govern(function=name + "-async")
    async def async_handler(event: dict[str, int], context: object) -> int:
        return event["n"]

    for n in range(1, 41):
        try:
            assert handler({"n": n}, None) == n
        except ValueError as exc:
            assert str(exc) == f"bad order {n}"
    assert asyncio.run(async_handler({"n": 5}, None)) == 5
    assert agents.flush(10)

    wait_for(lambda: _count(worker, f"SELECT count() FROM otel_traces "
                                    f"WHERE ServiceName = '{name}'") == 40)
    wait_for(lambda: _count(worker, f"SELECT count() FROM cost_events "
                                    f"WHERE function = '{name}'") == 40)
    rows = query_endpoint(worker.query_url, f"""
        SELECT countIf(StatusCode = 'Error'), countIf(has(Events.Name, 'exception')),
               countIf(SpanAttributes['faas.coldstart'] = 'true'),
               any(ResourceAttributes['faas.max_memory'])
        FROM otel_traces WHERE ServiceName = '{name}'""").rows
    assert rows == [[4, 4, 1, str(256 * 1024 * 1024)]]
    costs = query_endpoint(worker.query_url, f"""
        SELECT countIf(outcome = 'error'), min(cost_usd) > 0, any(team), any(memory_mb)
        FROM cost_events WHERE function = '{name}'""").rows
    assert costs == [[4, True, "payments", 256]]
    wait_for(lambda: _count(worker, f"SELECT count() FROM cost_events "
                                    f"WHERE function = '{name}-async'") == 1)


def test_bad_input_goes_to_the_dlq_with_the_reason(worker: WorkerStack) -> None:
    key = f"broken-{uuid.uuid4().hex[:6]}".encode()
    producer = Producer({"bootstrap.servers": worker.bootstrap, "message.max.bytes": 4 << 20})
    huge = (1 << 20) + 100
    bad = [b"{not json", orjson.dumps({"type": "cost", "function": "x", "invocation_id": "i",
                                       "cost_usd": "a lot"}), b"x" * huge,
           encode(CostEvent(function="x", invocation_id="j", time_unix_nano=4_102_444_800 * 10**9)),
           # under the size limit, but the field's name, quoted in full in the reason,
           # once made a dead letter the DLQ refused: the worker stopped on it for good
           b'{"type":"cost","function":"x","invocation_id":"k","' + "\u200b".encode() * 345_000
           + b'":1}']
    for payload in bad:
        producer.produce(f"{worker.prefix}.costs", payload, key)
    assert producer.flush(10) == 0

    consumer = Consumer({"bootstrap.servers": worker.bootstrap, "group.id": "unused",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(f"{worker.prefix}.dlq", 0, OFFSET_BEGINNING)])
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + 30
    while len(letters) < len(bad) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.key() == key:
            letters.append(decode(msg.value(), DeadLetter))
    consumer.close()
    assert [letter.source_topic for letter in letters] == [f"{worker.prefix}.costs"] * len(bad)
    reasons = [letter.reason for letter in letters]
    assert "not valid JSON" in reasons[0]
    assert "cost.cost_usd: expected a number" in reasons[1]
    assert "over the" in reasons[2] and letters[2].payload_size == huge
    assert "ahead of the worker's clock" in reasons[3]  # dated 2100: no window opens there
    assert "unknown field" in reasons[4] and len(reasons[4]) <= MAX_REASON_CHARS
    assert worker.process.poll() is None, "a bad record must never crash the worker"


def test_governor_query_reaches_the_running_worker(worker: WorkerStack) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "streams", "--data-dir", str(worker.data_dir), "query",
         "SELECT count() AS n FROM governor_migrations", "--format", "json"],
        env=worker.env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert orjson.loads(run.stdout) == [{"n": len(load_migrations())}]
    refused = subprocess.run(
        [sys.executable, "-m", "streams", "--data-dir", str(worker.data_dir), "query",
         "DROP TABLE cost_events"], env=worker.env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "only read queries" in refused.stderr


ESCAPES = [
    "SELECT 1; DROP TABLE otel_traces; SELECT 2",
    "SELECT 1; ALTER TABLE cost_events UPDATE cost_usd = 20000 WHERE 1; SELECT 2",
    "SELECT 1; SET readonly = 1; SELECT 2", "SET readonly = 0",
    "SELECT * FROM cost_events SETTINGS readonly = 0",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "INSERT INTO FUNCTION file('/tmp/governor-endpoint.csv', 'CSV', 'a UInt8') VALUES (1)",
    "SELECT 1 INTO OUTFILE '/tmp/governor-endpoint.csv'",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
]


def test_every_escape_is_refused_and_counted_through_the_endpoint(worker: WorkerStack) -> None:
    """The worker's endpoint runs the same checks as `governor query` on a server: each
    escape is refused and counted, and nothing is written, read or changed."""
    before = worker.health()["counters"]
    assert isinstance(before, dict)
    tables = query_endpoint(worker.query_url, "SELECT count() FROM system.tables").rows
    for sql in ESCAPES:
        with pytest.raises(QueryError):
            query_endpoint(worker.query_url, sql)
    after = worker.health()["counters"]
    assert isinstance(after, dict)
    assert after["queries_refused"] - before.get("queries_refused", 0) == len(ESCAPES)
    assert query_endpoint(worker.query_url, "SELECT count() FROM system.tables").rows == tables
    assert not os.path.exists("/tmp/governor-endpoint.csv")
    assert query_endpoint(worker.query_url, "SELECT 1").rows == [[1]]  # still answering


@pytest.mark.parametrize(("headers", "why"), [
    ({"Content-Type": "application/json", "Origin": "http://evil.example"}, "web pages"),
    ({"Content-Type": "text/plain"}, "application/json"),
])
def test_the_query_endpoint_refuses_what_a_web_page_can_send(
        worker: WorkerStack, headers: dict[str, str], why: str) -> None:
    """A page in a browser on the same host could POST text/plain (no preflight) or
    send an Origin; neither reaches the history."""
    before = worker.health()["counters"]
    assert isinstance(before, dict)
    request = urllib.request.Request(worker.query_url + "/query", method="POST",
                                     data=b'{"sql": "SELECT 1"}', headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403 and why in refused.value.read().decode()
    after = worker.health()["counters"]
    assert isinstance(after, dict)
    assert after["query_cross_site"] == before.get("query_cross_site", 0) + 1


def test_a_runaway_function_is_throttled_by_the_loop(
        worker: WorkerStack, agent_for: AgentFactory) -> None:
    runtime = agent_for(worker.bootstrap, worker.prefix)
    name = f"runaway-{uuid.uuid4().hex[:6]}"

    @agents.govern(function=name, memory_mb=512)
    def handler(event: None, context: None) -> str:
        return "ok"

    def run_at(rate: float, seconds: float) -> int:
        return call_at(handler, rate, seconds)

    assert run_at(20, 6) == 0  # warm-up: a baseline of ~20 calls/s
    refused = wait_for(lambda: run_at(400, 1), timeout_s=20)
    verdict = runtime.verdicts.current(name)
    assert verdict is not None and verdict.action.value == "throttle"
    assert verdict.rate_rps is not None and verdict.rate_rps < 40
    assert refused > 0
    wait_for(lambda: _count(worker, f"SELECT count() FROM anomalies WHERE function = '{name}'"))
    wait_for(lambda: _count(worker, f"SELECT count() FROM verdicts WHERE function = '{name}' "
                                    "AND action = 'throttle' AND startsWith(signature, 'hmac')"))
