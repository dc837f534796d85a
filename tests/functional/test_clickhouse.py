"""Migrations, the sink and analyst queries on the real (embedded) ClickHouse engine."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from infra import MIGRATIONS_DIR, QUERIES_DIR
from schemas import (
    Action,
    Anomaly,
    CostEvent,
    Decision,
    Feedback,
    Incident,
    IncidentStatus,
    Judgement,
    PolicyDecision,
    Span,
    ThresholdChange,
    Verdict,
    now_ns,
    sign_verdict,
)
from streams.errors import MigrationError, QueryError
from streams.storage.clickhouse import ClickHouseSink, load_migrations, migrate, read_only_query
from streams.storage.values import plain, plain_rows


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


@pytest.mark.parametrize("sql", [
    "SELECT file({path:String})",  # the scalar function, which readonly lets through
    "SELECT arrayMap(p -> file(p), [{path:String}])",
    "WITH file({path:String}) AS key SELECT length(key)",
    "SELECT count() FROM cost_events WHERE function IN (SELECT file({path:String}))",
    "DESCRIBE TABLE file({path:String}, 'CSV')",  # schema inference reads the first row
    "SELECT * FROM Python(settings)",  # the embedded engine reads the host's objects
    "SELECT * FROM numbers(1) AS n JOIN file({path:String}, 'LineAsString') AS f ON 1",
])
def test_analyst_queries_never_read_a_file_of_the_host(clickhouse: Any, sql: str,
                                                       tmp_path: Path) -> None:
    """The worker's keys sit in its data directory and environment: no function of an
    analyst's query reaches them, however it is written."""
    secret = tmp_path / "verdict.key"
    secret.write_text("s3cr3t-signing-key\n")
    migrate(clickhouse)
    with pytest.raises(QueryError, match="not allowed") as refused:
        read_only_query(clickhouse, sql, {"path": str(secret)} if "{path" in sql else None)
    assert "s3cr3t" not in str(refused.value)
    assert read_only_query(clickhouse, "SELECT count() FROM numbers(3) AS a "
                           "JOIN (SELECT number FROM numbers(2)) AS b USING number").rows == [(2,)]


SHIPPED = sorted(QUERIES_DIR.glob("*.sql"))
PARAMS = {"what_happened_to_function": {"function": "f"}}
"""The parameters each shipped query takes (every other takes none)."""


def _timeline(t: int) -> list[Any]:
    """Function f's history with its kinds interleaved in time, and one of g's."""
    s = 1_000_000_000
    return [
        Anomaly(function="f", detector="robust_zscore", score=9.0, time_unix_nano=t - 50 * s),
        PolicyDecision(function="f", policy="cost_guard.anomaly", decision=Decision.THROTTLE,
                       rate_rps=2.0, reason="cost 9x", time_unix_nano=t - 40 * s),
        sign_verdict(Verdict(function="f", action=Action.THROTTLE, rate_rps=2.0, sequence=1,
                             expires_at_unix_nano=t + 10**10, time_unix_nano=t - 30 * s), b"k"),
        Incident(function="f", incident_id="f-1", status=IncidentStatus.OPEN, team="pay",
                 title="f: cost 9x", opened_at_unix_nano=t - 20 * s, time_unix_nano=t - 20 * s),
        Anomaly(function="f", detector="cusum", score=7.0, time_unix_nano=t - 10 * s),
        Anomaly(function="g", detector="cusum", score=7.0, time_unix_nano=t - 45 * s),
        Incident(function="g", incident_id="g-1", status=IncidentStatus.OPEN, team="pay",
                 title="g: cost 5x", opened_at_unix_nano=t - 600 * s, time_unix_nano=t - 600 * s),
        Incident(function="g", incident_id="g-1", status=IncidentStatus.RESOLVED, team="pay",
                 title="g: cost 5x", opened_at_unix_nano=t - 600 * s,
                 resolved_at_unix_nano=t - 300 * s, time_unix_nano=t - 300 * s),
        CostEvent(function="f", invocation_id="r1", cost_usd=0.25, time_unix_nano=t - 5 * s),
        Feedback(function="g", incident_id="g-1", judgement=Judgement.FALSE_ALARM,
                 detector="cusum", actor="ana", reason="the nightly batch"),
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_analyst_queries_run(clickhouse: Any, path: Path) -> None:
    """Each shipped query runs with the parameters it declares, bound by the engine
    (no text is filled in), and names only what it takes."""
    migrate(clickhouse)
    ClickHouseSink(clickhouse).write([*_events(), *_timeline(now_ns())])
    sql = path.read_text()
    assert not re.search(r"'\{\w+\}'", sql), "placeholders are {name:Type} parameters"
    params = PARAMS.get(path.stem, {})
    assert set(re.findall(r"\{(\w+):\w+\}", sql)) == set(params)
    assert read_only_query(clickhouse, sql, params).rows  # each has something to show
    if params:
        with pytest.raises(QueryError, match=r"needs a value for \{function\}"):
            read_only_query(clickhouse, sql)


def test_what_happened_to_a_function_is_one_timeline_in_time_order(clickhouse: Any) -> None:
    """The ORDER BY once bound to the last SELECT of the UNION ALL only; the whole
    timeline of f (not g's) comes oldest first."""
    migrate(clickhouse)
    ClickHouseSink(clickhouse).write(_timeline(now_ns()))
    sql = (QUERIES_DIR / "what_happened_to_function.sql").read_text()
    rows = read_only_query(clickhouse, sql, {"function": "f"}).rows
    assert [row[1] for row in rows] == ["anomaly", "decision", "verdict", "page", "anomaly"]
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert [row[2] for row in rows][::4] == ["robust_zscore", "cusum"]
    assert read_only_query(clickhouse, sql, {"function": "nobody"}).rows == []
    injected = read_only_query(clickhouse, sql, {"function": "f' OR 1 = 1 OR '"}).rows
    assert injected == []  # a value, never text of the query


def test_open_incidents_have_no_resolution_time(clickhouse: Any) -> None:
    """An open incident once showed resolved = 1970-01-01 00:00:00."""
    migrate(clickhouse)
    ClickHouseSink(clickhouse).write(_timeline(now_ns()))
    result = read_only_query(clickhouse, (QUERIES_DIR / "incidents_last_week.sql").read_text())
    rows = {row["incident_id"]: row for row in
            (dict(zip(result.columns, plain(r), strict=True)) for r in result.rows)}
    assert rows["f-1"]["resolved"] is None and rows["f-1"]["seconds_open"] is None
    assert rows["f-1"]["last_status"] == "open"
    assert rows["g-1"]["seconds_open"] == 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", rows["g-1"]["resolved"])
    assert [row[0] for row in result.rows] == ["f-1", "g-1"]  # the latest opened first


def test_an_hour_without_verdicts_shows_null(clickhouse: Any) -> None:
    migrate(clickhouse)
    ClickHouseSink(clickhouse).write([CostEvent(function="h", invocation_id="1", cost_usd=1.0)])
    sql = (QUERIES_DIR / "spend_vs_verdicts.sql").read_text()
    [row] = read_only_query(clickhouse, sql).rows
    assert row[0] == "h" and row[-1] is None


@pytest.mark.parametrize(("params", "why"), [
    ({"other": "x"}, "no {other:Type} placeholder"),
    ({"function": "f", "extra": "x"}, "no {extra:Type} placeholder"),
    ({"bad name": "x"}, "use letters, digits and _"),
    ({"function": 3}, "must be text"),
])
def test_query_parameters_are_only_bound_to_placeholders(clickhouse: Any, params: Any,
                                                         why: str) -> None:
    """A parameter the query does not declare as {name:Type} would be put into its text
    by the client library (%(name)s): refused instead."""
    with pytest.raises(QueryError, match=re.escape(why)):
        read_only_query(clickhouse, "SELECT {function:String} AS f", params)
    with pytest.raises(QueryError, match=re.escape("no {function:Type} placeholder")):
        read_only_query(clickhouse, "SELECT '%(function)s' AS f", {"function": "x"})


@pytest.mark.parametrize("sql", [
    "SELECT {f:String}; DROP TABLE otel_traces",
    "SELECT {f:String} INTO OUTFILE '/tmp/governor-out.csv'",
    "SELECT * FROM file({f:String}, 'LineAsString')",
])
def test_parameters_leave_the_read_only_checks_in_force(clickhouse: Any, sql: str) -> None:
    migrate(clickhouse)
    with pytest.raises(QueryError):
        read_only_query(clickhouse, sql, {"f": "/etc/hostname"})
    assert read_only_query(clickhouse, "EXISTS TABLE otel_traces").rows[0][0] == 1
    assert not Path("/tmp/governor-out.csv").exists()


def test_plain_values_are_what_the_endpoint_sends(clickhouse: Any) -> None:
    """Times in ISO-8601 UTC with Z, NULL as None, maps, arrays, decimals, UUIDs and
    non-finite floats as JSON carries them: the same as the worker's endpoint returns."""
    result = read_only_query(clickhouse, """
        SELECT toDateTime64('2026-03-01 12:30:05.25', 9, 'UTC') AS t9,
               toDateTime('2026-03-01 12:30:05', 'Europe/Berlin') AS berlin,
               toDate('2026-03-01') AS d, CAST(NULL, 'Nullable(String)') AS n,
               map('a', 1) AS m, [1.5, nan] AS a, toDecimal64(1.25, 2) AS dec,
               toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS u, true AS b,
               toUInt256('123456789012345678901234567890') AS big""")
    row = dict(zip(result.columns, plain_rows(result.rows)[0], strict=True))
    assert row == {"t9": "2026-03-01T12:30:05.250000Z", "berlin": "2026-03-01T11:30:05Z",
                   "d": "2026-03-01", "n": None, "m": {"a": 1}, "a": [1.5, "nan"],
                   "dec": "1.25", "u": "61f0c404-5cb3-11e7-907b-a6006ad3dba0", "b": True,
                   "big": "123456789012345678901234567890"}
    assert orjson.loads(orjson.dumps(row)) == row  # JSON carries it unchanged


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
