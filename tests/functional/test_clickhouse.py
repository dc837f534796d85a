"""Migrations, the sink and analyst queries on the real (embedded) ClickHouse engine."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from infra import MIGRATIONS_DIR
from schemas import (
    Action,
    Anomaly,
    CostEvent,
    Decision,
    Incident,
    IncidentStatus,
    PolicyDecision,
    Span,
    ThresholdChange,
    Verdict,
    now_ns,
    sign_verdict,
)
from streams.errors import MigrationError, QueryError
from streams.storage.clickhouse import ClickHouseSink, load_migrations, migrate, read_only_query


def _events() -> list[Any]:
    t = now_ns()
    return [
        Span(function="f", trace_id="a" * 32, span_id="b" * 16, name="f",
             start_time_unix_nano=t - 5_000_000, end_time_unix_nano=t,
             attributes={"faas.coldstart": True}, resource={"service.name": "f"}),
        CostEvent(function="f", invocation_id="r1", cost_usd=0.25, custom_usd={"llm": 0.2}),
        Anomaly(function="f", detector="robust_zscore", score=9.0, features={"cost_per_s": 3.0}),
        sign_verdict(Verdict(function="f", action=Action.THROTTLE, rate_rps=2.0, sequence=1,
                             expires_at_unix_nano=t + 10**10), b"k"),
        PolicyDecision(function="f", policy="budget.function_hour", decision=Decision.THROTTLE,
                       rate_rps=2.0, reason="spend $3.10/h over the $2/h budget", team="pay",
                       inputs={"spend_hour_usd": 3.1, "budget_usd_per_hour": 2.0}),
        Incident(function="f", incident_id="f-1", status=IncidentStatus.OPEN, team="pay",
                 title="f: cost 9x baseline, throttled to 2 rps", actions=["throttled to 2 rps"]),
        ThresholdChange(function="team:pay", key="budget_usd_per_hour", old="", new="2.0",
                        actor="ana", change_id="c1"),
    ]


def test_migrations_apply_once_and_are_recorded(clickhouse: Any) -> None:
    names = [m.name for m in load_migrations()]
    assert migrate(clickhouse) == names
    assert migrate(clickhouse) == []
    recorded = read_only_query(clickhouse, "SELECT name FROM governor_migrations ORDER BY version")
    assert [r[0] for r in recorded.rows] == names
    tables = {r[0] for r in read_only_query(clickhouse, "SHOW TABLES").rows}
    assert {"otel_traces", "otel_traces_trace_id_ts", "cost_events", "anomalies",
            "verdicts", "policy_decisions", "incidents", "threshold_changes"} <= tables


def test_an_edited_migration_is_refused(clickhouse: Any, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    migrate(clickhouse, copy)
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(clickhouse, copy)


def test_a_failing_migration_names_the_file(clickhouse: Any, tmp_path: Path) -> None:
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE nope (;\n")
    with pytest.raises(MigrationError, match=r"0001_broken\.sql failed"):
        migrate(clickhouse, tmp_path)


def test_sink_writes_every_event_type_idempotently(clickhouse: Any) -> None:
    migrate(clickhouse)
    sink = ClickHouseSink(clickhouse)
    events = _events()
    assert sink.write(events) == {"otel_traces": 1, "cost_events": 1, "anomalies": 1,
                                  "verdicts": 1, "policy_decisions": 1, "incidents": 1,
                                  "threshold_changes": 1}
    sink.write(events)  # a redelivered batch after a crash
    counts = read_only_query(clickhouse, """
        SELECT (SELECT count() FROM otel_traces FINAL), (SELECT count() FROM cost_events FINAL),
               (SELECT count() FROM anomalies FINAL), (SELECT count() FROM verdicts FINAL),
               (SELECT count() FROM policy_decisions FINAL), (SELECT count() FROM incidents FINAL),
               (SELECT count() FROM threshold_changes FINAL)""")
    assert list(counts.rows[0]) == [1, 1, 1, 1, 1, 1, 1]
    decision = read_only_query(clickhouse, "SELECT decision, rate_rps, inputs['spend_hour_usd'] "
                               "FROM policy_decisions").rows[0]
    assert list(decision) == ["throttle", 2.0, "3.1"]
    change = read_only_query(clickhouse, "SELECT scope, old, new FROM threshold_changes").rows[0]
    assert list(change) == ["team:pay", "", "2.0"]
    span = read_only_query(clickhouse, "SELECT ServiceName, Duration, "
                           "SpanAttributes['faas.coldstart'] FROM otel_traces").rows[0]
    assert list(span) == ["f", 5_000_000, "true"]
    cost = read_only_query(clickhouse, "SELECT cost_usd, custom_usd['llm'] FROM cost_events")
    assert list(cost.rows[0]) == [0.25, 0.2]
    trace = read_only_query(clickhouse, "SELECT TraceId FROM otel_traces_trace_id_ts").rows
    assert trace[0][0] == "a" * 32


@pytest.mark.parametrize("sql", [
    "DROP TABLE otel_traces", "INSERT INTO verdicts VALUES ()",
    "SELECT 1; DROP TABLE otel_traces; SELECT 2",
    "SELECT 1; ALTER TABLE cost_events UPDATE cost_usd = 20000 WHERE 1; SELECT 2",
    "SELECT 1; SET readonly = 1; SELECT 2",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT 1 INTO OUTFILE '/tmp/governor-out.csv'",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV', 'a String')",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "SELECT * FROM cost_events SETTINGS readonly = 0",
    "SET readonly = 0", "OPTIMIZE TABLE cost_events", "SYSTEM DROP DNS CACHE",
    "EXPLAIN SELECT 1 INTO OUTFILE '/tmp/governor-out.csv'",
    "SHOW TABLES INTO OUTFILE '/tmp/governor-out.csv'",
    "-- a comment first\nSELECT 1 INTO OUTFILE '/tmp/governor-out.csv' COMPRESSION 'gzip'",
    "/* ; */ DROP TABLE otel_traces",
    "SELECT 1 -- ; DROP TABLE otel_traces\n; DROP TABLE otel_traces",
])
def test_analyst_queries_are_read_only(clickhouse: Any, sql: str, tmp_path: Path) -> None:
    """Each of these once wrote, read local files or opened connections through the
    "read-only" surface, or tries to; the engine's own parser and its readonly mode
    refuse each, and nothing is written or changed."""
    migrate(clickhouse)
    ClickHouseSink(clickhouse).write(_events())
    before = read_only_query(clickhouse, "SELECT sum(cost_usd) FROM cost_events").rows
    with pytest.raises(QueryError):
        read_only_query(clickhouse, sql)
    assert read_only_query(clickhouse, "EXISTS TABLE otel_traces").rows[0][0] == 1
    assert read_only_query(clickhouse, "SELECT sum(cost_usd) FROM cost_events").rows == before
    assert read_only_query(clickhouse, "SELECT ';' AS s").rows == [(";",)]  # literals are fine
    assert read_only_query(clickhouse, "SELECT 'INTO OUTFILE' AS s").rows == [("INTO OUTFILE",)]
    assert not Path("/tmp/governor-out.csv").exists()


@pytest.mark.parametrize("path", sorted((MIGRATIONS_DIR.parent / "queries").glob("*.sql")),
                         ids=lambda p: p.stem)
def test_shipped_analyst_queries_run(clickhouse: Any, path: Path) -> None:
    migrate(clickhouse)
    ClickHouseSink(clickhouse).write(_events())
    sql = path.read_text().replace("{function}", "f")
    result = read_only_query(clickhouse, sql)
    if path.stem == "what_happened_to_function":
        kinds = [row[1] for row in result.rows]
        assert sorted(kinds) == ["anomaly", "decision", "page", "verdict"]


def test_a_batch_over_150_days_is_stored_in_inserts_clickhouse_accepts(clickhouse: Any) -> None:
    """ClickHouse refuses one insert into more than 100 partitions (a day each for costs
    and spans): such a batch once failed for good and halted ingest."""
    migrate(clickhouse)
    day = 86_400 * 10**9
    start = time.time_ns() - 160 * day
    costs = [CostEvent(function="old", invocation_id=str(i), time_unix_nano=start + i * day)
             for i in range(150)]
    spans = [Span(function="old", trace_id=f"{i:032x}", span_id=f"{i + 1:016x}", name="old",
                  start_time_unix_nano=start + i * day, end_time_unix_nano=start + i * day + 5,
                  time_unix_nano=start + i * day + 5) for i in range(150)]
    written = ClickHouseSink(clickhouse).write([*costs, *spans])
    assert written == {"cost_events": 150, "otel_traces": 150}
    assert clickhouse.query("SELECT count() FROM cost_events").result_rows == [(150,)]
