"""The worker's routes, called directly: real decoding, the real ClickHouse engine,
the real decision step with the shipped policies, a file pager; topics replaced by
an in-memory outbox (the app's topic outbox is exercised by the integration tier)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import (
    Action,
    Anomaly,
    CostEvent,
    Incident,
    IncidentStatus,
    PolicyDecision,
    Verdict,
    encode,
    partition_for,
    sign_verdict,
    verify_verdict,
)
from streams.control.follower import ControlFollower
from streams.decisions.policy import PolicyEngine
from streams.paging.dispatch import dispatcher_from_settings
from streams.pipeline.console import Status
from streams.pipeline.decoding import Record
from streams.pipeline.prepare import Prepared
from streams.pipeline.routes import InMemoryOutbox, Routes
from streams.pipeline.storing import Storer
from streams.settings import Settings
from streams.storage import clickhouse as clickhouse_module
from streams.storage.clickhouse import migrate

KEY = b"r" * 32
S = 1_000_000_000
T0 = 1_800_000_000 * S
WINDOW = 10 * S


@pytest.fixture(autouse=True)
def _collected_here() -> None:
    """The last test's workers are collected on this thread: a policy engine (regorus)
    must be dropped on the thread that made it, not on the database's."""
    gc.collect()


@pytest.fixture
def routes(clickhouse: Any, chdb_dir: Path, tmp_path: Path) -> Iterator[Routes]:
    migrate(clickhouse)
    settings = Settings(warmup_windows=3, learning_windows=0, hold_seconds=0,
                        pager_file=str(tmp_path / "pages"), clickhouse_url=f"chdb://{chdb_dir}")
    control = ControlFollower("127.0.0.1:9", settings, b"")  # not started: defaults apply
    prepared = Prepared(clickhouse, KEY, b"t" * 32, 4, {}, PolicyEngine(settings.policy_dir),
                        control)
    routes = Routes(settings, prepared, dispatcher_from_settings(settings))
    yield routes
    routes.close(2.0)


def _records(events: list[Any], topic: str = "governor.costs") -> list[Record]:
    return [Record(topic, 0, offset, e.function.encode(), encode(e))
            for offset, e in enumerate(events)]


def _calls(window: int, calls: int, cost: float = 0.0001) -> list[CostEvent]:
    start = T0 + window * WINDOW
    return [CostEvent(function="checkout", invocation_id=f"{window}-{i}", cost_usd=cost,
                      team="payments", time_unix_nano=start + i * (WINDOW // calls))
            for i in range(calls)]


def _count(routes: Routes, sql: str) -> int:
    status, body = asyncio.run(routes.query({"sql": sql}))
    assert status == 200, body
    return int(body["rows"][0][0])


def test_a_cost_event_is_stored_and_counted_into_its_window(routes: Routes) -> None:
    [event] = _calls(0, 1)
    asyncio.run(routes.take(_records([event]), CostEvent, routes.on_costs))
    assert _count(routes, f"SELECT count() FROM cost_events WHERE event_id = "
                          f"'{event.event_id}'") == 1
    assert routes.counters["in_cost"] == 1 and routes.counters["rows_cost_events"] == 1
    [(function, window)] = routes.windows.close_due(T0 + 2 * WINDOW)
    assert (function, window.invocations, window.cost_usd) == ("checkout", 1, 0.0001)


def test_a_bad_record_goes_to_the_dlq_and_the_rest_of_its_batch_is_stored(
        routes: Routes) -> None:
    good = _calls(0, 2)
    records = _records(good)
    records.insert(1, Record("governor.costs", 0, 99, b"checkout", b'{"type": "cost"'))
    asyncio.run(routes.take(records, CostEvent, routes.on_costs))
    outbox = routes.outbox
    assert isinstance(outbox, InMemoryOutbox)
    [letter] = outbox.dead_letters
    assert (letter.source_topic, letter.offset, letter.function) == ("governor.costs", 99,
                                                                     "checkout")
    assert "fix the producer" in letter.reason
    assert routes.counters["dlq_cost"] == 1 and routes.counters["in_cost"] == 2
    metric = routes.metrics.registry.get_sample_value
    assert metric("governor_dlq_total", {"topic": "governor.costs", "reason": "malformed"}) == 1
    assert metric("governor_events_in_total", {"topic": "governor.costs"}) == 2
    assert metric("governor_sink_write_seconds_count", {"table": "cost_events"}) == 1
    assert _count(routes, "SELECT count() FROM cost_events") == 2


async def _runaway(routes: Routes) -> None:
    """Six normal windows, then one 50 times as busy: the function is throttled."""
    for w in range(6):
        await routes.take(_records(_calls(w, 50)), CostEvent, routes.on_costs)
        await routes.close_windows(T0 + (w + 1) * WINDOW + S)
    await routes.take(_records(_calls(6, 2500)), CostEvent, routes.on_costs)
    await routes.close_windows(T0 + 7 * WINDOW + S)


def test_a_runaway_closes_into_a_signed_throttle_a_decision_and_a_page(
        routes: Routes, tmp_path: Path) -> None:
    seen: list[Any] = []
    routes.watchers.append(seen.append)
    asyncio.run(_runaway(routes))
    outbox = routes.outbox
    assert isinstance(outbox, InMemoryOutbox)
    kinds = [type(e) for e in outbox.events]
    assert Anomaly in kinds and PolicyDecision in kinds and Incident in kinds
    [verdict] = [e for e in outbox.events if isinstance(e, Verdict)]
    assert verdict.action is Action.THROTTLE and verdict.issued_at_unix_nano == T0 + 7 * WINDOW + S
    verify_verdict(verdict, KEY)
    [decision] = [e for e in outbox.events if isinstance(e, PolicyDecision)]
    assert decision.policy == "cost_guard.anomaly" and decision.anomaly_id == verdict.anomaly_id
    [incident] = [e for e in outbox.events if isinstance(e, Incident)]
    assert incident.kind == "cost-anomaly" and incident.driver == "invocations"
    assert "checkout" in outbox.snapshots
    routes.pager.close(5.0)
    [page] = [orjson.loads(line) for line in (tmp_path / "pages").read_text().splitlines()]
    assert page["incident_id"] == incident.incident_id
    metric = routes.metrics.registry.get_sample_value
    assert metric("governor_verdicts_total", {"action": "throttle"}) == 1
    assert metric("governor_decisions_total", {"kind": "throttle"}) == 1
    assert metric("governor_pages_total", {"kind": "cost-anomaly"}) == 1
    assert metric("governor_events_out_total", {"topic": "governor.verdicts"}) == 1
    assert metric("governor_detector_seconds_count", {"detector": "window"}) == 7
    assert routes.counters["issued_verdict"] == 1 and routes.counters["issued_anomaly"] >= 1
    assert seen == outbox.events  # what `governor up` prints as it happens
    operator = sign_verdict(Verdict(function="checkout", action=Action.RELEASE, sequence=2**62,
                                    expires_at_unix_nano=T0 + 900 * S, issuer="operator:ana"),
                            KEY)
    asyncio.run(routes.on_verdicts([verdict, operator], T0 + 8 * WINDOW))
    assert operator in seen and seen.count(verdict) == 1  # an operator's; not its own echo
    status = Status.of(routes)
    assert (status.events, status.dead) == (2800, 0)
    asyncio.run(routes.take(_records([incident], "governor.incidents"), Incident))
    status, history = asyncio.run(routes.incident(incident.incident_id))
    assert status == 200 and history["rows"][0][history["columns"].index("status")] == "open"
    assert asyncio.run(routes.incident("0" * 16))[0] == 404


def test_a_verdict_not_signed_with_the_workers_key_is_neither_stored_nor_followed(
        routes: Routes) -> None:
    """Anyone who can write to the verdicts topic once could lift a function's throttle
    for decades (an "operator" release), or push its verdict sequence past what agents
    take; now such a record is a dead letter and changes nothing."""
    outbox = InMemoryOutbox()
    routes.outbox = outbox
    forged = [
        Verdict(function="checkout", action=Action.RELEASE, sequence=1,
                issuer="operator:mallory", expires_at_unix_nano=4_102_444_800 * S),
        sign_verdict(Verdict(function="checkout", action=Action.RELEASE, sequence=2**63 - 1,
                             issuer="x", expires_at_unix_nano=T0 + S), b"another key " * 3)]
    seen: list[Verdict] = []

    async def follow(verdicts: Any) -> None:
        seen.extend(verdicts)
        await routes.on_verdicts(verdicts, T0)

    asyncio.run(routes.take(_records(forged, "governor.verdicts"), Verdict, follow))
    unsigned, other_key = outbox.dead_letters
    assert "is unsigned" in unsigned.reason and "neither stored nor followed" in unsigned.reason
    assert "does not match" in other_key.reason
    assert seen == [] and _count(routes, "SELECT count() FROM verdicts") == 0
    assert routes.counters["verdicts_refused"] == 2
    assert routes.metrics.registry.get_sample_value(
        "governor_dlq_total", {"topic": "governor.verdicts", "reason": "unsigned"}) == 2
    # the function's next verdict is numbered as if the forged ones had never come
    assert routes.step.lifecycle.issuer.issue(
        "checkout", Action.THROTTLE, "r", T0).sequence == T0 // 1000
    operator = sign_verdict(Verdict(function="checkout", action=Action.ISOLATE, sequence=2,
                                    issuer="operator:ana", expires_at_unix_nano=T0 + 60 * S),
                            KEY)
    asyncio.run(routes.take(_records([operator], "governor.verdicts"), Verdict, follow))
    assert seen == [operator] and _count(routes, "SELECT count() FROM verdicts") == 1


def test_a_rebalance_whose_snapshots_cannot_be_read_still_hands_the_functions_over(
        routes: Routes) -> None:
    """The state topic cannot be read (no broker answers): the rebalance still moves
    the ownership within its read bound. A function now decided elsewhere is dropped
    here with its open incident, so two workers never decide it; the failure is
    counted."""
    asyncio.run(_runaway(routes))
    assert routes.step.tracker.is_open("checkout")
    routes.settings = routes.settings.replace(kafka_bootstrap="127.0.0.1:9")
    routes.hand_over_read_s = 0.5
    elsewhere = partition_for("checkout", 4)
    mine = frozenset(p for p in range(4) if p != elsewhere)
    asyncio.run(routes.hand_over({routes.settings.topic("costs"): (mine, 4)}))
    assert routes.counters["snapshot_reads_failed"] == 1
    assert routes.counters["functions_handed_over"] >= 1
    assert not routes.step.tracker.is_open("checkout")
    assert routes.cost_partitions == sorted(mine)


def test_an_ingest_whose_assignment_hook_fails_is_ready_all_the_same(routes: Routes) -> None:
    """The hook (the hand-over) raised, or was cancelled after its bound: the partitions
    are assigned all the same, so the worker says it is ready (their records come)."""
    from streams.pipeline.batch_ingest import BatchIngest, IngestConfig, Route

    async def failing(owned: object) -> None:
        raise RuntimeError("the state topic is gone")

    ingest = BatchIngest(IngestConfig("127.0.0.1:9", "g"),
                         {"governor.costs": Route(CostEvent)}, routes.write,
                         InMemoryOutbox().dead, routes.counters, on_assigned=failing)
    assert not ingest.ready
    with pytest.raises(RuntimeError):  # the consumer logs it; the rebalance goes on
        asyncio.run(ingest._on_assigned({("governor.costs", 0)}, {"governor.costs": 1}))
    assert ingest.ready


def test_a_restarted_worker_re_asserts_an_open_incident_at_once_and_resolves_it_unprompted(
        routes: Routes, clickhouse: Any, chdb_dir: Path) -> None:
    """The worker that throttled a function stops; the next one takes its snapshot. The
    open incident is restored when the partitions are assigned (not on the function's
    next event, which may never come) and re-asserted; its windows keep closing without
    events, so the function is released and the incident resolved."""
    asyncio.run(_runaway(routes))
    outbox = routes.outbox
    assert isinstance(outbox, InMemoryOutbox)
    blob = outbox.snapshots["checkout"]
    settings = routes.settings
    prepared = Prepared(clickhouse, KEY, b"t" * 32, 4, {"checkout": blob},
                        PolicyEngine(settings.policy_dir),
                        ControlFollower("127.0.0.1:9", settings, b""))
    reasserted: list[Incident] = []
    pager = dispatcher_from_settings(settings.replace(pager_file=""))
    pager.resume = reasserted.extend  # type: ignore[method-assign]
    after = Routes(settings, prepared, pager)
    try:
        after.step.hand_over(lambda function: True, {})
        assert after.step.tracker.is_open("checkout")  # before any event of it
        now = T0 + 8 * WINDOW + S
        asyncio.run(after.close_windows(now))
        [incident] = reasserted
        assert incident.function == "checkout" and incident.status is not IncidentStatus.RESOLVED

        async def quiet(windows: int) -> None:
            for w in range(1, windows + 1):
                await after.close_windows(now + w * WINDOW)

        asyncio.run(quiet(12))
        published = after.outbox
        assert isinstance(published, InMemoryOutbox)
        assert [v.action for v in published.events if isinstance(v, Verdict)][-1:] == [
            Action.RELEASE]
        [resolved] = [e for e in published.events if isinstance(e, Incident)]
        assert resolved.status is IncidentStatus.RESOLVED
        assert resolved.incident_id == incident.incident_id
    finally:
        after.close(2.0)


def test_the_query_route_answers_reads_and_refuses_the_rest(routes: Routes) -> None:
    assert _count(routes, "SELECT 41 + 1") == 42
    status, body = asyncio.run(routes.query({"sql": "DROP TABLE cost_events"}))
    assert status == 400 and "error" in body
    status, body = asyncio.run(routes.query(["SELECT 1"]))
    assert status == 400 and "send JSON" in body["error"]


@pytest.mark.parametrize(("params", "answer"), [
    ({"who": "o'brien", "n": 41}, (200, [["o'brien", 42]])),
    ({"who": "x", "n": "41"}, (200, [["x", 42]])),
    ({"who": ["x"], "n": 1}, (400, "must be an object of names to text or numbers")),
    ({"who": True, "n": 1}, (400, "must be an object of names to text or numbers")),
    ("who=x", (400, "must be an object of names to text or numbers")),
    ({"who": "x"}, (400, "needs a value for {n}")),
    ({"who": "x", "n": 1, "more": "y"}, (400, "no {more:Type} placeholder")),
])
def test_the_query_route_binds_params_as_query_parameters(
        routes: Routes, params: object, answer: tuple[int, object]) -> None:
    status, body = asyncio.run(routes.query(
        {"sql": "SELECT {who:String} AS who, {n:UInt8} + 1 AS n", "params": params}))
    assert status == answer[0], body
    if status == 200:
        assert body["rows"] == answer[1]
    else:
        assert str(answer[1]) in body["error"]


def test_the_health_route_says_not_ready_until_the_app_has_its_partitions(
        routes: Routes) -> None:
    health = routes.health()
    assert health["ready"] is False and health["thresholds_synced"] is False
    assert health["policy_bundle"] and health["pages"]["submitted"] == 0
    routes.app_ready = True
    assert routes.health()["ready"] is True


def test_readiness_names_what_keeps_the_worker_from_consuming_and_writing(
        routes: Routes) -> None:
    assert "consumer group" in (routes.readiness() or "")
    routes.app_ready = True
    routes.ingest_ready = lambda: False
    assert "no partitions" in (routes.readiness() or "")
    routes.ingest_ready = lambda: True
    routes.ingest_problem = lambda: "ClickHouse has refused writes for 12 s"
    assert routes.readiness() == "ClickHouse has refused writes for 12 s"
    routes.ingest_problem = lambda: None
    assert routes.readiness() is None


async def _burst_after_a_warm_up(routes: Routes, caught_up: bool) -> list[Any]:
    """Six normal windows closed, then 250 calls in the first 2 s of the next one (125
    calls/s where 5 are usual), taken 2 s into it; what the routes published for them."""
    for w in range(6):
        await routes.take(_records(_calls(w, 50)), CostEvent, routes.on_costs)
        await routes.close_windows(T0 + (w + 1) * WINDOW + S)
    outbox = routes.outbox
    assert isinstance(outbox, InMemoryOutbox)
    outbox.events.clear()
    start = T0 + 6 * WINDOW
    routes.clock = lambda: start + 2 * S
    routes.caught_up = lambda: caught_up
    burst = [CostEvent(function="checkout", invocation_id=f"b{i}", cost_usd=0.0001,
                       team="payments", time_unix_nano=start + i * (2 * S // 250))
             for i in range(250)]
    await routes.take(_records(burst), CostEvent, routes.on_costs)
    return list(outbox.events)


def test_the_fast_path_throttles_a_runaway_before_its_window_closes(routes: Routes) -> None:
    events = asyncio.run(_burst_after_a_warm_up(routes, caught_up=True))
    [verdict] = [e for e in events if isinstance(e, Verdict)]
    assert verdict.action is Action.THROTTLE  # and no window has closed since the warm-up
    assert verdict.issued_at_unix_nano == T0 + 6 * WINDOW + 2 * S
    [anomaly] = [e for e in events if isinstance(e, Anomaly)]
    assert anomaly.window_end_unix_nano == T0 + 6 * WINDOW + 2 * S  # judged on 2 s


def test_no_fast_path_while_the_ingest_works_through_a_backlog(routes: Routes) -> None:
    assert asyncio.run(_burst_after_a_warm_up(routes, caught_up=False)) == []


def test_a_row_the_sink_refuses_is_isolated_to_the_dlq_and_the_rest_stored(
        routes: Routes, clickhouse: Any) -> None:
    """The real ClickHouse engine refuses one row (a table constraint stands in for any
    row-level refusal); the probe finds the sink answering with a data error, so the
    batch is split until that row is alone: it goes to the DLQ with the sink's reason,
    every other row is stored once."""
    from streams.pipeline.batch_ingest import BatchIngest, IngestConfig, Route

    clickhouse.command("ALTER TABLE cost_events ADD CONSTRAINT sane CHECK cost_usd < 1000")
    events = _calls(0, 9)
    poison = CostEvent(function="checkout", invocation_id="poison", cost_usd=5000.0,
                       team="payments", time_unix_nano=T0)
    batch = [*events[:4], poison, *events[4:]]
    outbox = InMemoryOutbox()
    ingest = BatchIngest(IngestConfig("127.0.0.1:9", "g"),
                         {"governor.costs": Route(CostEvent)}, routes.write, outbox.dead,
                         routes.counters, probe=routes.data_refused, metrics=routes.metrics)
    asyncio.run(ingest._storer.store(batch, []))
    [letter] = outbox.dead_letters
    assert "poison" in letter.payload and "sane" in letter.reason
    assert "the rest of its batch was stored" in letter.reason
    assert _count(routes, "SELECT count() FROM cost_events") == 9
    assert routes.counters["sink_refused"] == 1
    assert routes.metrics.registry.get_sample_value(
        "governor_dlq_total", {"topic": "governor.costs", "reason": "sink_refused"}) == 1
    assert routes.metrics.registry.get_sample_value(
        "governor_sink_errors_total", {"table": "cost_events"}) >= 1
    assert ingest.sink_down_s == 0  # the sink answered: bad data, not an outage


@pytest.mark.parametrize(("down", "up"), [
    # merges behind inserts: the engine refuses every insert with TOO_MANY_PARTS
    ("ALTER TABLE cost_events MODIFY SETTING parts_to_throw_insert = 1, "
     "parts_to_delay_insert = 1",
     "ALTER TABLE cost_events MODIFY SETTING parts_to_throw_insert = 3000, "
     "parts_to_delay_insert = 1000"),
    ("DETACH TABLE cost_events", "ATTACH TABLE cost_events"),  # UNKNOWN_TABLE
])
def test_a_sink_that_cannot_take_writes_is_waited_out_never_dead_lettered(
        routes: Routes, down: str, up: str) -> None:
    """The real engine stops taking writes while it still answers queries (too many
    parts; a detached table): that is an outage, not bad data. The store waits with
    back-off (the caller consumes nothing meanwhile) and, once the table takes writes
    again, stores every row once; nothing goes to the DLQ."""
    asyncio.run(routes.write(_calls(9, 1)))  # a part exists
    routes.clickhouse.command(down)
    outbox = InMemoryOutbox()
    storer = Storer(routes.write, outbox.dead, routes.counters, probe=routes.data_refused)

    async def outage() -> None:
        storing = asyncio.create_task(storer.store(_calls(0, 20), []))
        while routes.counters["sink_outage_retries"] < 2:
            assert not storing.done()
            await asyncio.sleep(0.05)
        assert storer.down_s > 0  # what /readyz reports while the outage lasts
        routes.clickhouse.command(up)
        await asyncio.wait_for(storing, 30)

    asyncio.run(outage())
    assert storer.down_s == 0
    assert routes.metrics.registry.get_sample_value(
        "governor_sink_errors_total", {"table": "cost_events"}) >= 2
    assert outbox.dead_letters == [] and routes.counters["sink_refused"] == 0
    assert _count(routes, "SELECT count() FROM cost_events FINAL") == 21
    assert _count(routes, "SELECT count() FROM cost_events") == 21


def test_an_event_the_decision_step_fails_on_is_dead_lettered_and_the_batch_goes_on(
        routes: Routes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the decision step on one event (a bug its data triggers) costs that
    event its decision, not the batch: it is stored, dead-lettered with the reason, and
    every other event is windowed and decided."""
    step_on_event = routes.step.on_event

    def fragile(event: CostEvent, window_ns: int) -> list[Anomaly]:
        if event.invocation_id == "0-3":
            raise ZeroDivisionError("a bug this event triggers")
        return step_on_event(event, window_ns)

    monkeypatch.setattr(routes.step, "on_event", fragile)
    outbox = InMemoryOutbox()
    routes.outbox = outbox
    asyncio.run(routes.take(_records(_calls(0, 6)), CostEvent, routes.on_costs))
    [letter] = outbox.dead_letters
    assert "ZeroDivisionError" in letter.reason and '"0-3"' in letter.payload
    assert routes.counters["decision_errors"] == 1
    assert routes.metrics.registry.get_sample_value(
        "governor_dlq_total", {"topic": "governor.costs", "reason": "undecidable"}) == 1
    assert _count(routes, "SELECT count() FROM cost_events") == 6
    [(_, window)] = routes.windows.close_due(T0 + 2 * WINDOW)
    assert window.invocations == 6  # windowed before the step failed


def test_analyst_queries_are_limited_in_rows_and_run_beside_ingest(routes: Routes) -> None:
    status, body = asyncio.run(routes.query({"sql": "SELECT number FROM numbers(200000)"}))
    assert status == 400 and "limit" in body["error"].lower()
    status, body = asyncio.run(routes.query({"sql": "SELECT count() FROM numbers(1000)"}))
    assert status == 200 and body["rows"] == [[1000]]
    assert routes._read_client is not routes.clickhouse  # its own connection
    status, body = asyncio.run(routes.query({
        "sql": "SELECT getSetting('max_threads'), getSetting('os_thread_priority')"}))
    assert status == 200 and body["rows"] == [[routes.settings.query_threads, 19]] == [[1, 19]]


def test_analyst_queries_read_slowly_while_the_ingest_has_a_backlog(
        routes: Routes, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = "SELECT getSetting('max_execution_speed')"
    status, body = asyncio.run(routes.query({"sql": limit}))
    assert status == 200 and body["rows"] == [[0]] and "rows_per_second_limit" not in body
    routes.caught_up = lambda: False
    status, body = asyncio.run(routes.query({"sql": limit}))
    rate = routes.settings.query_backlog_rows_per_second
    assert status == 200 and body["rows"] == [[rate]] == [[100_000]]
    assert body["rows_per_second_limit"] == rate
    assert routes.counters["queries_slowed"] == 1
    status, body = asyncio.run(routes.query({"sql": limit + " SETTINGS max_execution_speed = 0"}))
    assert status == 400 and "READONLY" in body["error"]  # the analyst cannot lift it
    # the engine holds a backlog-time read of a table to the rate from its first rows
    # on: 600,000 rows at 1,000,000 a second outlast a 0.2 s limit (unheld: a few ms)
    routes.clickhouse.command("CREATE TABLE read_rate (x UInt64) ENGINE = MergeTree ORDER BY x")
    routes.clickhouse.command("INSERT INTO read_rate SELECT number FROM numbers(600000)")
    routes.settings = dataclasses.replace(routes.settings,
                                          query_backlog_rows_per_second=1_000_000)
    monkeypatch.setattr(clickhouse_module, "QUERY_SECONDS", 0.2)
    status, body = asyncio.run(routes.query({"sql": "SELECT sum(x) FROM read_rate"}))
    assert status == 400 and "TIMEOUT_EXCEEDED" in body["error"]
    assert "backlog" in body["error"] and "GOVERNOR_QUERY_BACKLOG_ROWS_PER_SECOND" in body["error"]
    routes.caught_up = lambda: True
    status, body = asyncio.run(routes.query({"sql": limit}))
    assert status == 200 and body["rows"] == [[0]] and routes.counters["queries_slowed"] == 3


def test_telemetry_of_functions_beyond_the_limit_is_stored_but_not_decided(
        routes: Routes) -> None:
    routes.step.settings = dataclasses.replace(routes.step.settings, max_functions=2)
    events = [dataclasses.replace(e, function=f"fn-{i}")
              for i, e in enumerate(_calls(0, 4))]
    asyncio.run(routes.take(_records(events), CostEvent, routes.on_costs))
    assert _count(routes, "SELECT count() FROM cost_events") == 4  # nothing lost
    assert routes.counters["functions_refused"] == 2
    closed = routes.windows.close_due(T0 + 2 * WINDOW)
    assert sorted(function for function, _ in closed) == ["fn-0", "fn-1"]
    health = routes.health()
    assert health["counters"]["functions_refused"] == 2
    assert health["functions"] == {"open": 2, "dormant": 0, "limit": 2}
