"""The batched ingest against the real broker: dead letters, commit after the sink
write, settling on stop and on rebalance, and a restarted worker resuming."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents._auth import Sealer, function_key
from schemas import CostEvent, DeadLetter, Event, encode
from streams.bench.throughput import make_events
from streams.ops.query import query_endpoint
from streams.pipeline.authn import TelemetryAuth
from streams.pipeline.batch_ingest import BatchIngest, IngestConfig, Route, Write
from tests.integration.conftest import WorkerStack, start_worker, stop_worker, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 6  # of a costs topic (infra/kafka/topics.toml)


def _produce(bootstrap: str, topic: str, payloads: Iterable[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in payloads:
        producer.produce(topic, value, key)
    assert producer.flush(10) == 0


def _costs(count: int, seed: int = 0) -> list[CostEvent]:
    return list(make_events(count, 20, seed=seed))


def _payloads(events: Iterable[CostEvent]) -> list[tuple[bytes, bytes]]:
    return [(e.function.encode(), encode(e)) for e in events]


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Offsets committed by ``group`` on ``topic``, summed over its partitions (asked of
    the group's coordinator by an admin client: every wait bounded)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    asked = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p)
                                                 for p in range(PARTITIONS)])
    [found] = admin.list_consumer_group_offsets([asked], request_timeout=10).values()
    return sum(max(tp.offset, 0) for tp in found.result(15).topic_partitions)


class Harness:
    """A :class:`BatchIngest` on one costs topic with a sink and DLQ held in memory."""

    def __init__(self, bootstrap: str, topic: str, group: str, *,
                 write: Write | None = None, sink_retries: int = 5, batch: int = 500,
                 within_s: float = 0.1, stop_timeout_s: float = 15,
                 auth: TelemetryAuth | None = None) -> None:
        self.written: list[CostEvent] = []
        self.decided: list[CostEvent] = []
        self.flagged: set[str] = set()
        self.letters: list[DeadLetter] = []
        self.deliveries: list[asyncio.Future[None]] = []
        self.confirm_dead_letters = True
        self.counters: Counter[str] = Counter()
        self.ingest = BatchIngest(
            IngestConfig(bootstrap, group, batch=batch, within_s=within_s,
                         sink_retries=sink_retries, stop_timeout_s=stop_timeout_s,
                         telemetry_auth=auth),
            {topic: Route(CostEvent, self.decide)}, write or self.write, self.send_dead,
            self.counters)

    async def write(self, events: Sequence[Event], flagged: frozenset[str] = frozenset()
                    ) -> None:
        self.written.extend(e for e in events if isinstance(e, CostEvent))
        self.flagged |= flagged

    async def decide(self, events: Sequence[CostEvent]) -> None:
        self.decided.extend(events)

    async def send_dead(self, letter: DeadLetter) -> Awaitable[Any]:
        self.letters.append(letter)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.confirm_dead_letters:
            delivered.set_result(None)
        self.deliveries.append(delivered)
        return delivered

    async def start(self) -> Harness:
        await self.ingest.start()
        return self

    async def stop(self) -> None:
        await self.ingest.stop()


async def until(condition: Callable[[], object], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_telemetry_decides_only_when_authenticated_as_its_function(
        broker: str, prefix: str) -> None:
    """Every record is stored; only those carrying the MAC of the function they name
    reach the decision step — not another function's key, none, an unknown key id, or
    a MAC of other bytes. Each refusal is counted."""
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    secret = b"telemetry-secret-of-the-workers-0123456789"
    own = Sealer(function_key(b"k1", secret, "checkout").decode())
    mallory = Sealer(function_key(b"k1", secret, "mallory").decode())
    other_id = Sealer(function_key(b"k9", secret, "checkout").decode())
    events = [dataclasses.replace(e, function="checkout") for e in _costs(6, seed=5)]
    values = [encode(e) for e in events]
    records = [
        (values[0], own.headers(values[0])),  # genuine
        (values[1], mallory.headers(values[1])),  # another function's key
        (values[2], None),  # no MAC
        (values[3], other_id.headers(values[3])),  # a key id the workers do not hold
        (values[4], own.headers(values[0])),  # a genuine MAC of other bytes (replayed)
        (values[5], own.headers(values[5])),  # genuine
    ]
    producer = Producer({"bootstrap.servers": broker})
    for value, headers in records:
        producer.produce(topic, value, b"checkout", headers=headers)
    assert producer.flush(10) == 0

    async def run() -> Harness:
        h = Harness(broker, topic, group, auth=TelemetryAuth({b"k1": secret}))
        await h.start()
        try:
            await until(lambda: len(h.written) == len(records))
        finally:
            await h.stop()
        return h

    h = asyncio.run(run())
    assert [e.event_id for e in h.decided] == [events[0].event_id, events[5].event_id]
    assert h.flagged == {e.event_id for e in events[1:5]}
    assert h.counters["unauthenticated_cost"] == 4 and h.counters["in_cost"] == 2


def test_a_bad_record_becomes_a_dead_letter_with_the_reason_before_its_commit(
        broker: str, prefix: str) -> None:
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    good = _costs(3)
    _produce(broker, topic, [*_payloads(good), (b"bad-fn", b'{"type": "cost", "cost_usd": 1')])

    async def run() -> Harness:
        h = Harness(broker, topic, group)
        h.confirm_dead_letters = False  # the DLQ has not confirmed delivery yet
        await h.start()
        try:
            await until(lambda: len(h.written) == 3 and h.letters)
            await asyncio.sleep(0.5)
            assert await asyncio.to_thread(_committed, broker, group, topic) < 4
            h.deliveries[0].set_result(None)
            await until(lambda: _committed(broker, group, topic) == 4)
        finally:
            await h.stop()
        return h

    h = asyncio.run(run())
    [letter] = h.letters
    assert letter.source_topic == topic and letter.key == "bad-fn"
    assert "not valid JSON" in letter.reason
    assert h.counters["dlq_cost"] == 1 and h.counters["in_cost"] == 3
    assert sorted(e.event_id for e in h.written) == sorted(e.event_id for e in good)


def test_offsets_are_committed_only_after_the_sink_wrote_the_batch(
        broker: str, prefix: str) -> None:
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    _produce(broker, topic, _payloads(_costs(200)))

    async def run() -> None:
        release = asyncio.Event()
        attempts: list[int] = []

        async def slow_write(events: Sequence[Event], flagged: frozenset[str]) -> None:
            attempts.append(len(events))
            await release.wait()
            h.written.extend(e for e in events if isinstance(e, CostEvent))

        h = Harness(broker, topic, group, write=slow_write)
        await h.start()
        try:
            await until(lambda: attempts)
            await asyncio.sleep(1.0)  # time enough for a commit that should not happen
            assert await asyncio.to_thread(_committed, broker, group, topic) == 0
            release.set()
            await until(lambda: _committed(broker, group, topic) == 200)
            assert len(h.written) == 200
        finally:
            await h.stop()

    asyncio.run(run())


def test_a_failed_write_commits_nothing_and_the_next_consumer_reads_it_all(
        broker: str, prefix: str) -> None:
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    events = _costs(300)
    _produce(broker, topic, _payloads(events))

    async def failing_write(events: Sequence[Event]) -> None:
        raise ConnectionError("ClickHouse is down")

    async def first() -> Counter[str]:
        h = Harness(broker, topic, group, write=failing_write, sink_retries=1)
        await h.start()
        try:
            await until(lambda: h.counters["sink_errors"] >= 2)  # tried twice, then gave up
            await asyncio.sleep(0.5)
        finally:
            await h.stop()
        return h.counters

    async def second() -> Harness:
        h = Harness(broker, topic, group)
        await h.start()
        try:
            await until(lambda: len(h.written) >= 300)
        finally:
            await h.stop()
        return h

    counters = asyncio.run(first())
    assert counters["in_cost"] > 0
    assert _committed(broker, group, topic) == 0
    h = asyncio.run(second())
    assert {e.event_id for e in h.written} == {e.event_id for e in events}
    assert _committed(broker, group, topic) == 300


def test_stop_settles_the_write_in_flight_and_a_restart_replays_nothing(
        broker: str, prefix: str) -> None:
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    before, after = _costs(400, seed=1), _costs(100, seed=2)
    _produce(broker, topic, _payloads(before))

    async def first() -> Harness:
        h: Harness

        async def slow_write(events: Sequence[Event], flagged: frozenset[str]) -> None:
            await asyncio.sleep(0.3)
            h.written.extend(e for e in events if isinstance(e, CostEvent))

        h = Harness(broker, topic, group, write=slow_write)
        await h.start()
        await until(lambda: h.counters["in_cost"] > 0)
        await h.stop()  # while a write is in flight
        return h

    async def second() -> Harness:
        h = Harness(broker, topic, group)
        await h.start()
        try:
            await until(lambda: len(h.written) >= 100)
            await asyncio.sleep(1.0)  # a replay would arrive now
        finally:
            await h.stop()
        return h

    h1 = asyncio.run(first())
    assert h1.written and len(h1.written) == h1.counters["in_cost"]  # nothing taken, unwritten
    assert _committed(broker, group, topic) == len(h1.written)
    _produce(broker, topic, _payloads(after))
    h2 = asyncio.run(second())
    ids = [e.event_id for e in h1.written + h2.written]
    assert len(ids) == len(set(ids)) == 500  # every event once: nothing lost, no replay
    assert _committed(broker, group, topic) == 500


def test_a_rebalance_settles_the_write_in_flight_before_the_partitions_move(
        broker: str, prefix: str) -> None:
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    events = _costs(1_000, seed=3)
    half = len(events) // 2

    async def run() -> tuple[Harness, Harness]:
        harnesses: list[Harness] = []

        def slow(index: int) -> Write:
            async def write(batch: Sequence[Event], flagged: frozenset[str]) -> None:
                await asyncio.sleep(1.0)  # a write is in flight when the rebalance starts
                harnesses[index].written.extend(e for e in batch if isinstance(e, CostEvent))
            return write

        a = Harness(broker, topic, group, write=slow(0), batch=100)
        b = Harness(broker, topic, group, write=slow(1), batch=100)
        harnesses += [a, b]
        await a.start()
        try:
            await until(lambda: a.ingest.ready)
            await asyncio.to_thread(_produce, broker, topic, _payloads(events[:half]))
            await until(lambda: a.counters["in_cost"] > 0)
            await b.start()  # joins the group while a is writing: a settles, then shares
            try:
                await until(lambda: a.ingest.ready and b.ingest.ready)
                assert a.ingest.consumer.assignment() and b.ingest.consumer.assignment()
                await asyncio.to_thread(_produce, broker, topic, _payloads(events[half:]))
                await until(lambda: len(a.written) + len(b.written) >= len(events))
                await asyncio.sleep(1.0)  # a replay would arrive now
            finally:
                await b.stop()
        finally:
            await a.stop()
        return a, b

    a, b = asyncio.run(run())
    ids = [e.event_id for e in a.written + b.written]
    assert len(ids) == len(set(ids)) == len(events)  # every event once: none lost, none twice
    assert b.written, "the second consumer got partitions of its own"
    assert _committed(broker, group, topic) == len(events)


def test_a_rebalance_step_that_hangs_is_cancelled_and_the_partitions_move(
        broker: str, prefix: str) -> None:
    """The batch in hand at a revoke is written before the partitions go; when that
    write hangs, the revoke waits ``stop_timeout_s`` at most, then cancels it, commits
    nothing of it, and the partitions move: every record is stored once, by the
    consumers that own them next."""
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    events = _costs(300, seed=6)
    hung: list[int] = []

    async def run() -> tuple[Harness, Harness]:
        async def write(batch: Sequence[Event], flagged: frozenset[str]) -> None:
            if not hung:  # the first write, the revoke's, never returns
                hung.append(len(batch))
                await asyncio.Event().wait()
            a.written.extend(e for e in batch if isinstance(e, CostEvent))

        # one batch open for 30 s: the records are in hand, unwritten, when b joins
        a = Harness(broker, topic, group, write=write, batch=1_000, within_s=30,
                    stop_timeout_s=3)
        b = Harness(broker, topic, group)
        await a.start()
        try:
            await until(lambda: a.ingest.ready)
            await asyncio.to_thread(_produce, broker, topic, _payloads(events))
            await until(lambda: a.counters["in_cost"] == len(events))
            await b.start()
            try:
                await until(lambda: len({e.event_id for e in a.written + b.written})
                            == len(events), timeout_s=60)
                await until(lambda: _committed(broker, group, topic) == len(events))
                await asyncio.sleep(1.0)  # a replay would arrive now
            finally:
                await b.stop()
        finally:
            await a.stop()
        return a, b

    a, b = asyncio.run(run())
    assert hung == [len(events)]  # the revoke's write: cancelled, nothing of it stored
    ids = [e.event_id for e in a.written + b.written]
    assert len(ids) == len(set(ids)) == len(events)
    assert b.written


def _counter(stack: WorkerStack, name: str) -> int:
    counters = stack.health()["counters"]
    assert isinstance(counters, dict)
    return int(counters.get(name, 0))


def _count(query_url: str, sql: str) -> int:
    return int(query_endpoint(query_url, sql).rows[0][0])


def test_a_restarted_worker_resumes_from_the_committed_offsets(
        broker: str, prefix: str, tmp_path: Path) -> None:
    topic = f"{prefix}.costs"
    first_events, second_events = _costs(2_000, seed=4), _costs(1_000, seed=5)
    stack = start_worker(broker, prefix, tmp_path)
    try:
        _produce(broker, topic, _payloads(first_events))
        wait_for(lambda: _counter(stack, "rows_cost_events") == 2_000)
    finally:
        stop_worker(stack)
    assert stack.process.returncode == 0
    assert _committed(broker, "governor-worker.ingest", topic) == 2_000
    _produce(broker, topic, _payloads(second_events))  # while no worker runs
    stack = start_worker(broker, prefix, tmp_path)
    try:
        wait_for(lambda: _counter(stack, "in_cost") == 1_000)
        # reads run beside the sink's writes, not behind them: wait for the rows
        wait_for(lambda: _count(stack.query_url,
                                "SELECT count() FROM cost_events FINAL") == 3_000)
    finally:
        stop_worker(stack)


def test_a_sink_outage_pauses_consumption_and_loses_nothing(
        broker: str, prefix: str, clickhouse: Any, tmp_path: Path) -> None:
    """The real engine stops taking inserts (TOO_MANY_PARTS, as when merges fall behind)
    while records keep arriving. The ingest keeps deciding the batch in hand, consumes
    no further (back-pressure) and commits nothing past what is stored; once inserts
    are taken again every record is stored exactly once (with and without FINAL) and
    none is dead-lettered."""
    from streams.control.follower import ControlFollower
    from streams.decisions.policy import PolicyEngine
    from streams.paging.dispatch import dispatcher_from_settings
    from streams.pipeline.prepare import Prepared
    from streams.pipeline.routes import InMemoryOutbox, Routes
    from streams.settings import Settings
    from streams.storage.clickhouse import migrate

    migrate(clickhouse)
    settings = Settings(pager_file=str(tmp_path / "pages"))
    prepared = Prepared(clickhouse, b"r" * 32, b"t" * 32, 4, {},
                        PolicyEngine(settings.policy_dir),
                        ControlFollower("127.0.0.1:9", settings, b""))
    routes = Routes(settings, prepared, dispatcher_from_settings(settings))
    outbox = routes.outbox = InMemoryOutbox()
    topic, group = f"{prefix}.costs", f"g-{uuid.uuid4().hex[:8]}"
    before, during = _costs(1_000, seed=1), _costs(3_000, seed=2)
    table = "ALTER TABLE cost_events MODIFY SETTING parts_to_throw_insert = {}, " \
            "parts_to_delay_insert = {}"

    def stored(final: str = "") -> int:
        return int(clickhouse.query(f"SELECT count() FROM cost_events {final}").result_rows[0][0])

    async def run() -> tuple[int, int, int]:
        ingest = BatchIngest(IngestConfig(broker, group, batch=200, within_s=0.1),
                             {topic: Route(CostEvent, routes.on_costs)}, routes.write,
                             outbox.dead, routes.counters, probe=routes.data_refused)
        await ingest.start()
        try:
            await asyncio.to_thread(_produce, broker, topic, _payloads(before))
            await until(lambda: stored() == 1_000)
            clickhouse.command(table.format(1, 1))  # the outage
            await asyncio.to_thread(_produce, broker, topic, _payloads(during))
            await until(lambda: routes.counters["sink_outage_retries"] >= 3)
            await asyncio.sleep(2.0)
            seen, kept = routes.counters["in_cost"], stored()
            committed = await asyncio.to_thread(_committed, broker, group, topic)
            clickhouse.command(table.format(3000, 1000))  # recovered
            await until(lambda: stored() == 4_000, timeout_s=60)
            await until(lambda: _committed(broker, group, topic) == 4_000)
        finally:
            await ingest.stop()
            routes.close(2.0)
        return seen, kept, committed

    seen, kept, committed = asyncio.run(run())
    assert kept == 1_000 and committed <= 1_000  # nothing stored or committed meanwhile
    assert 1_000 < seen <= 1_000 + 2 * 200  # the batches in hand were decided, no more
    assert outbox.dead_letters == [] and routes.counters["sink_refused"] == 0
    assert stored("FINAL") == stored() == 4_000
    ids = {e.event_id for e in [*before, *during]}
    found = {r[0] for r in clickhouse.query("SELECT event_id FROM cost_events").result_rows}
    assert found == ids
