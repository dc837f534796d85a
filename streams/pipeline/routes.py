"""The worker's routes, one named handler each: what happens to a record, a timer
tick or a request. :mod:`streams.pipeline.app` binds them to Faust; tests call them
directly with an :class:`InMemoryOutbox`.

============================  ===========================================================
route                         does
============================  ===========================================================
:meth:`Routes.take`           decode a batch of one topic → DLQ → ClickHouse → follow-up
:meth:`Routes.on_costs`       cost events into the windows and the per-event fast path
:meth:`Routes.on_spans`       spans into the function profiles (team, egress, datasets)
:meth:`Routes.on_verdicts`    an operator's verdict takes over the function's lifecycle
:meth:`Routes.close_windows`  due windows → the decision step → anomalies, decisions,
                              verdicts, incidents and state snapshots published
:meth:`Routes.reload`         a changed policy bundle is loaded
:meth:`Routes.query`          a read-only SQL query (``POST /query``)
:meth:`Routes.health`         readiness and counters (``GET /health``)
============================  ===========================================================

A cost event's path: :meth:`BatchIngest._take <streams.pipeline.batch_ingest.BatchIngest>`
→ :func:`~streams.pipeline.decoding.decode_records` → :meth:`Routes.write` →
:meth:`ClickHouseSink.write <streams.storage.clickhouse.ClickHouseSink.write>` (table
``cost_events``), then :meth:`Routes.on_costs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from schemas import (
    Anomaly,
    CostEvent,
    DeadLetter,
    Event,
    Incident,
    PolicyDecision,
    SignatureError,
    Span,
    Verdict,
    partition_for,
    verify_verdict,
)
from streams.decisions.lifecycle import VerdictIssuer
from streams.decisions.snapshots import load_snapshots
from streams.decisions.step import DecisionStep
from streams.decisions.windows import WindowAggregator
from streams.errors import QueryError
from streams.paging.dispatch import PageDispatcher
from streams.pipeline.decoding import (
    DeadReason,
    Decoded,
    RecordLike,
    decode_records,
    event_dead_letter,
)
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.prepare import Prepared
from streams.pipeline.storing import Storer
from streams.settings import Settings
from streams.storage.clickhouse import (
    ClickHouseSink,
    QueryResult,
    connect,
    is_outage,
    read_only_query,
)
from streams.storage.values import plain_rows

INCIDENT_SQL = """\
SELECT time, status, severity, function, team, title, summary, driver,
       cost_impact_usd_per_hour, actions, runbook_url, opened_at, updates
FROM incidents FINAL WHERE incident_id = {incident_id:String} ORDER BY time, updates"""
"""One incident's rows (``GET /incidents/ID``)."""

YIELD_EVERY = 100
"""Functions decided on between yields to the event loop when windows close."""

HAND_OVER_READ_S = 10.0
"""A rebalance's snapshot read waits this long for each of its two steps (the end
offsets, then the records): well inside the ingest's bound on a rebalance step (30 s),
so a slow state topic costs warmth, never the hand-over itself."""

log = logging.getLogger("governor.worker")

FollowUp = Callable[[Sequence[Any]], Awaitable[None]]

OUT_TOPICS: dict[type[Event], str] = {Anomaly: "anomalies", PolicyDecision: "decisions",
                                      Incident: "incidents", Verdict: "verdicts"}
"""The topic kind (:meth:`Settings.topic`) each published event type goes to."""
IN_TOPICS = {CostEvent.TYPE: "costs", Span.TYPE: "spans"}
"""The topic kind the decision step's input comes from, by event type."""


class Outbox(Protocol):
    """Where the routes' output goes: topics (and the pager, for incidents)."""

    async def publish(self, event: Event) -> None:
        """An anomaly, policy decision, verdict or incident, keyed by its function."""

    async def dead(self, letter: DeadLetter) -> Awaitable[Any]:
        """Start sending a record that could not be taken, with the reason; its
        delivery, to await before the batch's offsets are committed."""

    async def snapshot(self, function: str, blob: bytes) -> None:
        """The function's sealed decision state."""


class InMemoryOutbox:
    """An :class:`Outbox` that keeps what it is given, for tests and tools."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.dead_letters: list[DeadLetter] = []
        self.snapshots: dict[str, bytes] = {}

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    async def dead(self, letter: DeadLetter) -> Awaitable[Any]:
        self.dead_letters.append(letter)
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def snapshot(self, function: str, blob: bytes) -> None:
        self.snapshots[function] = blob


class Routes:
    """A worker's state (sink, windows, decision step, pager, counters) and its routes."""

    def __init__(self, settings: Settings, prepared: Prepared, pager: PageDispatcher) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.clickhouse = prepared.clickhouse
        self.sink = ClickHouseSink(prepared.clickhouse, self.metrics.inserted)
        self.db = ThreadPoolExecutor(1, thread_name_prefix="governor-clickhouse")
        # analysts' queries: their own connection and threads, so reads never stall ingest
        self.reads = ThreadPoolExecutor(2, thread_name_prefix="governor-query")
        self._read_client: Any = None
        self.hand_over_read_s = HAND_OVER_READ_S
        self.windows = WindowAggregator(int(settings.window_seconds * 1e9),
                                        lateness_ns=int(settings.lateness_seconds * 1e9))
        self.counters: Counter[str] = Counter()
        self.cost_partitions: list[int] = []  # the costs topic's partitions decided here
        self.verdict_key = prepared.verdict_key  # verdicts read back are checked with it
        self.step = DecisionStep(settings, VerdictIssuer(
            prepared.verdict_key, int(settings.verdict_ttl_seconds * 1e9), settings.app_id),
            prepared.policies, prepared.control.thresholds, prepared.snapshots,
            state_key=prepared.state_key, counters=self.counters)
        self.windows.retire = self.step.retire
        self.control = prepared.control
        self.pager = pager
        self.outbox: Outbox = InMemoryOutbox()  # the app sets its topics' outbox
        self.app_ready = False  # Faust's group has its partitions
        self.ingest_ready: Callable[[], bool] = lambda: True
        self.ingest_problem: Callable[[], str | None] = lambda: None
        """Why the batch ingest neither consumes nor writes, or ``None``."""
        self.caught_up: Callable[[], bool] = lambda: True  # the hot topics have no backlog
        self.clock: Callable[[], int] = time.time_ns  # the fast path's now
        self.lag: Callable[[], Mapping[tuple[str, int], int]] = dict
        """Records behind per (topic, partition) of the hot topics (the app sets it)."""
        self.watchers: list[Callable[[Event], None]] = []
        """Told of every event published and every operator's verdict seen."""

    @property
    def ready(self) -> bool:
        """Both consumer groups (Faust's and the batch ingest's) have their partitions."""
        return self.app_ready and self.ingest_ready()

    def readiness(self) -> str | None:
        """Why the worker is not ready (``/readyz``: consuming and writing), or ``None``."""
        if not self.app_ready:
            return "joining the consumer group of the verdict, anomaly and control topics"
        if not self.ingest_ready():
            return "the ingest consumer has no partitions yet (joining or rebalancing)"
        return self.ingest_problem()

    # ------------------------------------------------------------------ records

    async def take(self, records: Sequence[RecordLike], cls: type[Event],
                   then: FollowUp | None = None) -> None:
        """One batch of one topic: decode, dead letters to the DLQ, rows to ClickHouse
        (through a :class:`~streams.pipeline.storing.Storer`: rows it refuses to the DLQ,
        an outage waited out), then the follow-up on the valid events."""
        decoded = decode_records(records, cls)
        if cls is Verdict:
            self._refuse_unsigned(decoded)
        for letter in decoded.dead:
            await self.outbox.dead(letter)
        self.counters[f"dlq_{cls.TYPE}"] += len(decoded.dead)
        self.counters[f"in_{cls.TYPE}"] += len(decoded.good)
        topic = records[0].topic if records else ""
        self.metrics.taken(topic, len(decoded.good), decoded.reasons)

        def refused(event: Event) -> None:
            self.metrics.dlq.labels(topic, DeadReason.SINK_REFUSED.value).inc()

        await Storer(self.write, self.outbox.dead, self.counters, self.data_refused,
                     refused=refused).store(decoded.good, [])
        if then is not None:
            await then(decoded.good)

    def _refuse_unsigned(self, decoded: Decoded[Any]) -> None:
        """Move the verdicts not signed with the workers' key (the operators' is the
        same) from ``decoded.good`` to its dead letters: anyone who can write to the
        topic could otherwise lift a throttle here, or push a function's verdict
        sequence past what agents take. Agents refuse them too."""
        signed = []
        for verdict in decoded.good:
            try:
                verify_verdict(verdict, self.verdict_key)
            except SignatureError as exc:
                if self.counters["verdicts_refused"] == 0:  # the rest: counted, dead letters
                    log.warning("verdict refused (further ones are counted in "
                                "verdicts_refused and sent to the DLQ): %s", exc)
                self.counters["verdicts_refused"] += 1
                decoded.dead.append(event_dead_letter(
                    verdict, f"{exc}; a verdict not signed with the workers' key is neither "
                             "stored nor followed (agents refuse it too): sign it with "
                             "`governor verdict ACTION FUNCTION`"))
                decoded.reasons[DeadReason.UNSIGNED] += 1
            else:
                signed.append(verdict)
        decoded.good[:] = signed

    async def write(self, events: Sequence[Event], flagged: frozenset[str] = frozenset()
                    ) -> None:
        """Insert ``events`` into their ClickHouse tables (idempotent on ``event_id``);
        those in ``flagged`` marked unauthenticated."""
        if events:
            written = await asyncio.get_running_loop().run_in_executor(
                self.db, self.sink.write, events, flagged)
            self.counters.update({f"rows_{k}": v for k, v in written.items()})

    async def hand_over(self, owned: Mapping[str, tuple[frozenset[int], int]]) -> None:
        """After a rebalance of the ingest: this worker decides the functions whose cost
        partitions it was assigned. The others' state is dropped (their new owner
        restores it); the latest snapshots are read so that functions taken over resume
        warm, with their verdicts and open incidents, not from what was read at start."""
        mine, total = owned.get(self.settings.topic("costs"), (frozenset(), 0))
        if not total:
            return

        def decides(function: str) -> bool:
            return partition_for(function, total) in mine

        try:
            snapshots = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(load_snapshots, self.settings.kafka_bootstrap,
                                        self.settings.topic("state"), self.hand_over_read_s,
                                        security=self.settings.kafka_security))
        except Exception as exc:  # the ownership still moves: those functions warm up
            self.counters["snapshot_reads_failed"] += 1
            log.warning("rebalance: no state snapshots read (%s); the functions taken over "
                        "warm up again, deciding nothing until then", exc)
            snapshots = {}
        self.cost_partitions = sorted(mine)
        dropped = self.step.hand_over(decides, snapshots)
        self.pager.forget(self.step.handed_over)
        self.step.handed_over.clear()
        self.windows.drop(decides)
        self.counters["functions_handed_over"] += dropped
        log.info("rebalance: %d of %d cost partitions here; %d functions handed over to "
                 "other workers, %d snapshots read", len(mine), total, dropped, len(snapshots))

    async def data_refused(self, error: Exception) -> bool:
        """Whether ClickHouse refused the data of a failed write, rather than being unable
        to take writes: it answers a trivial query and ``error`` is not an outage's
        (:func:`~streams.storage.clickhouse.is_outage`: a detached or read-only table,
        too many parts, no memory …)."""
        if is_outage(error):
            return False
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.db, self.sink.ping)
        except Exception:
            return False
        return True

    async def on_costs(self, events: Sequence[CostEvent]) -> None:
        """Each event into its own window (in event time); a late one, whose window has
        closed, is stored but decides nothing. Then the fast path: each function's open
        window so far, when the ingest is caught up (a backlog's windows are past)."""
        window_ns = self.windows.window_ns
        touched: set[str] = set()
        for event in events:
            try:
                if not self.step.admits(event.function, self.windows):
                    continue
                if not self.windows.add(event):
                    self.counters["late_cost"] += 1
                    continue
                touched.add(event.function)
                found = self.step.on_event(event, window_ns)
            except Exception as exc:  # one event the decision step cannot take: DLQ
                await self._undecidable(event, exc)
                continue
            for anomaly in found:
                await self.publish(anomaly)
        if not self.caught_up():
            return
        now_ns = self.clock()
        for function in touched:
            window = self.windows.current(function, now_ns)
            if window is None:
                continue
            started = time.perf_counter()
            try:
                decided = self.step.on_partial(function, window, now_ns)
            except Exception:  # one function's failure must not stop the others' decisions
                log.exception("fast path failed for %s; its window decides at close", function)
                self.counters["decision_errors"] += 1
                continue
            finally:
                self.metrics.fast_path.observe(time.perf_counter() - started)
            for out in decided:
                await self.publish(out)

    async def on_spans(self, events: Sequence[Span]) -> None:
        for span in events:
            try:
                self.step.on_span(span, self.windows)
            except Exception as exc:
                await self._undecidable(span, exc)

    async def _undecidable(self, event: Event, error: Exception) -> None:
        """Dead-letter an event the decision step failed on (it is still stored); the
        rest of the batch goes on."""
        log.exception("the decision step failed on a %s event of %s; sent to the DLQ",
                      event.type, event.function)
        self.counters["decision_errors"] += 1
        self.metrics.dlq.labels(self.settings.topic(IN_TOPICS[event.type]),
                                DeadReason.UNDECIDABLE.value).inc()
        await self.outbox.dead(event_dead_letter(
            event, f"the decision step failed on this event ({error!r:.300}); it was stored "
                   "but decides nothing: report it with this record"))

    async def on_verdicts(self, verdicts: Sequence[Verdict], now_ns: int) -> None:
        own = self.step.lifecycle.issuer.issuer
        for verdict in verdicts:
            if verdict.issuer != own:
                for watch in self.watchers:
                    watch(verdict)
            for event in self.step.on_verdict(verdict, now_ns):
                await self.publish(event)

    async def publish(self, event: Event) -> None:
        await self.outbox.publish(event)
        if isinstance(event, Incident):
            self.pager.submit(event)
        self.counters[f"issued_{event.TYPE}"] += 1
        self.metrics.published(self.settings.topic(OUT_TOPICS[type(event)]), event)
        for watch in self.watchers:
            watch(event)

    # ------------------------------------------------------------------ timers

    async def close_windows(self, now_ns: int) -> None:
        """Decide on every window due at ``now_ns``; one function's failure is logged
        and skipped, never stops the others."""
        step = self.step
        due = self.windows.close_due(now_ns, self.caught_up())
        for n, (function, window) in enumerate(due, 1):
            self.counters["windows_closed"] += 1
            started = time.perf_counter()
            try:
                events = step.on_window(function, window, now_ns)
                snapshot = step.snapshot(function)
            except Exception:  # one function's failure must not stop the others' decisions
                log.exception("decision step failed for %s; its window is skipped", function)
                self.counters["decision_errors"] += 1
                continue
            finally:
                self.metrics.window.observe(time.perf_counter() - started)
            for event in events:
                await self.publish(event)
            if snapshot is not None:
                await self.outbox.snapshot(function, snapshot)
                self.metrics.events_out.labels(self.settings.topic("state")).inc()
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the ingest run between chunks of functions
        for event in step.tracker.sweep(now_ns):
            await self.publish(event)
        if step.resumed:  # restored open incidents: re-assert them to the pagers
            self.pager.resume(step.tracker.open_incidents(now_ns, step.resumed))
            for function in step.resumed:  # and decide on until they are resolved
                self.windows.watch(function, now_ns)
            step.resumed.clear()

    def reload(self) -> bool:
        """Load the policy bundle if its files changed; whether it did."""
        policies = self.step.policies
        if not policies.reload_if_changed():
            return False
        log.warning("policy bundle %s loaded from %s", policies.digest, policies.directory)
        self.counters["policy_reloads"] += 1
        return True

    # ------------------------------------------------------------------ requests

    async def query(self, body: object) -> tuple[int, dict[str, Any]]:
        """``{"sql": "SELECT … {name:Type}", "params": {"name": "value"}}`` → (HTTP status,
        columns and rows as plain values, or the error). ``params`` (optional) are bound
        by the engine as query parameters, never put into the text."""
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str):
            return 400, {"error": "send JSON {\"sql\": \"SELECT ...\"}"}
        params = body.get("params") if isinstance(body, dict) else None
        if params is not None and not (
                isinstance(params, dict)
                and all(isinstance(v, str | int | float) and not isinstance(v, bool)
                        for v in params.values())):
            return 400, {"error": "\"params\" must be an object of names to text or numbers"}
        bound = {str(k): str(v) for k, v in (params or {}).items()}
        # the ingest comes first: while it has a backlog, a query reads slowly
        rate = 0 if self.caught_up() else self.settings.query_backlog_rows_per_second
        if rate:
            self.counters["queries_slowed"] += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self.reads, self._read_only, sql, bound, rate)
        except QueryError as exc:
            self.counters["queries_refused"] += 1
            return 400, {"error": str(exc)}
        return 200, {"columns": list(result.columns), "rows": plain_rows(result.rows),
                     "elapsed_s": result.elapsed_s,
                     **({"rows_per_second_limit": rate} if rate else {})}

    async def incident(self, incident_id: str) -> tuple[int, dict[str, Any]]:
        """One incident's history as it was paged (every open, update and resolve, in
        time order): the page on-call reach from an alert (``generatorURL``)."""
        status, body = await self.query({"sql": INCIDENT_SQL,
                                         "params": {"incident_id": incident_id}})
        if status == 200 and not body["rows"]:
            return 404, {"error": f"no incident {incident_id!r} in the history"}
        return status, body

    def _read_only(self, sql: str, params: dict[str, str] | None = None,
                   rows_per_second: int = 0) -> QueryResult:
        if self._read_client is None:
            self._read_client = connect(self.settings.clickhouse_dsn,
                                        getattr(self.clickhouse, "database", None))
        try:
            return read_only_query(self._read_client, sql, params,
                                   self.settings.query_threads, rows_per_second)
        except QueryError:
            # a refused result may leave the connection mid-read: start a fresh one
            client, self._read_client = self._read_client, None
            with contextlib.suppress(Exception):
                client.close()
            raise

    def health(self) -> dict[str, Any]:
        pager = self.pager.stats
        policies = self.step.policies
        return {
            "ready": self.ready, "counters": dict(self.counters),
            "policy_bundle": policies.digest, "policy_error": policies.last_error,
            "thresholds_synced": self.control.synced,
            "cost_partitions": self.cost_partitions,
            "control_rejected": self.control.rejected,
            "functions": {"open": len(self.windows), "dormant": self.step.decider.dormant,
                          "limit": self.step.settings.max_functions},
            "pages": {k: getattr(pager, k) for k in (
                "submitted", "delivered", "retried", "failed", "dropped", "skipped")}}

    def close(self, timeout_s: float = 5.0) -> None:
        """After the timers and the ingest have stopped: nothing more is paged."""
        self.pager.close(timeout_s)
        self.control.stop()
        self.db.shutdown(wait=False)
        self.reads.shutdown(wait=False)
