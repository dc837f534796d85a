"""ClickHouse access: connect, migrate, write events, answer read-only queries.

Everything goes through ``clickhouse-connect``: a ClickHouse server over HTTP(S) or
the embedded chDB engine (``chdb:///path``), with the same client API.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson

from infra import MIGRATIONS_DIR
from schemas import (
    Anomaly,
    CostEvent,
    Event,
    Feedback,
    Incident,
    PolicyDecision,
    Span,
    ThresholdChange,
    Verdict,
)
from streams.errors import MigrationError, QueryError, StackError

MIGRATIONS_TABLE = "governor_migrations"


def connect(dsn: str, database: str | None = None) -> Any:
    """A ``clickhouse-connect`` client for ``dsn`` (``http(s)://…`` or ``chdb:///path``),
    on ``database`` when given (else the DSN's)."""
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    try:
        if database:
            return clickhouse_connect.get_client(dsn=dsn, database=database)
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        raise StackError(f"cannot open ClickHouse at {_redact(dsn)}: {exc}") from exc


def _redact(dsn: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", dsn)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """The file's statements, split at semicolons that end a line."""
        body = "\n".join(line for line in self.sql.splitlines()
                         if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations in version order, from files named ``NNNN_description.sql``."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.match(r"^(\d+)_(\w+)\.sql$", path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql")
        found.append(Migration(int(match[1]), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return found


def migrate(client: Any, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply each migration not yet recorded, once; return the names applied.

    An applied migration whose file changed since is an error: add a new one instead.
    """
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, "
        "checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version")
    done = {row[0]: (row[1], row[2]) for row in
            client.query(f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE}").result_rows}
    applied = []
    for migration in load_migrations(directory):
        if migration.version in done:
            name, checksum = done[migration.version]
            if checksum != migration.checksum:
                raise MigrationError(
                    f"{migration.name} changed after it was applied as {name}; "
                    "never edit an applied migration, add a new one")
            continue
        for statement in migration.statements():
            try:
                client.command(statement)
            except Exception as exc:
                raise MigrationError(f"{migration.name} failed: {exc}") from exc
        client.insert(MIGRATIONS_TABLE, [[migration.version, migration.name, migration.checksum]],
                      column_names=["version", "name", "checksum"])
        applied.append(migration.name)
    return applied


def _str_map(values: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in values.items()}


def _span_duration(e: Span) -> int:
    return e.end_time_unix_nano - e.start_time_unix_nano


def _attributes(field: str) -> Callable[[Any], dict[str, str]]:
    get = attrgetter(field)
    return lambda e: _str_map(get(e))


def _each(items: str, field: str) -> Callable[[Any], list[Any]]:
    """``field`` of each of an event's ``items`` (a nested column)."""
    get_items, get = attrgetter(items), attrgetter(field)
    return lambda e: [get(x) for x in get_items(e)]


def _each_attributes(items: str) -> Callable[[Any], list[dict[str, str]]]:
    get_items = attrgetter(items)
    return lambda e: [_str_map(x.attributes) for x in get_items(e)]


Source = str | Callable[[Any], Any]
"""Where a column's values come from: an attribute path of the event, or a function."""


class _Table:
    """A table and, for each column, where its values come from; rows are extracted
    column by column (a C-level ``attrgetter`` per column where it can be)."""

    def __init__(self, name: str, columns: Sequence[tuple[str, Source]]) -> None:
        self.name = name
        self.columns = tuple(column for column, _ in columns)
        self._getters = [attrgetter(source) if isinstance(source, str) else source
                         for _, source in columns]

    def data(self, events: Sequence[Event]) -> list[list[Any]]:
        return [list(map(get, events)) for get in self._getters]


_TABLES: dict[type[Event], _Table] = {
    Span: _Table("otel_traces", (
        ("Timestamp", "start_time_unix_nano"), ("TraceId", "trace_id"), ("SpanId", "span_id"),
        ("ParentSpanId", "parent_span_id"), ("TraceState", "trace_state"),
        ("SpanName", "name"), ("SpanKind", "kind.value"), ("ServiceName", "function"),
        ("ResourceAttributes", _attributes("resource")), ("ScopeName", "scope_name"),
        ("ScopeVersion", "scope_version"), ("SpanAttributes", _attributes("attributes")),
        ("Duration", _span_duration), ("StatusCode", "status_code.value"),
        ("StatusMessage", "status_message"),
        ("Events.Timestamp", _each("events", "time_unix_nano")),
        ("Events.Name", _each("events", "name")),
        ("Events.Attributes", _each_attributes("events")),
        ("Links.TraceId", _each("links", "trace_id")),
        ("Links.SpanId", _each("links", "span_id")),
        ("Links.TraceState", _each("links", "trace_state")),
        ("Links.Attributes", _each_attributes("links")))),
    CostEvent: _Table("cost_events", (
        ("event_id", "event_id"), ("time", "time_unix_nano"), ("function", "function"),
        ("invocation_id", "invocation_id"), ("trace_id", "trace_id"), ("span_id", "span_id"),
        ("provider", "provider"), ("version", "version"), ("team", "team"),
        ("memory_mb", "memory_mb"), ("duration_ms", "duration_ms"),
        ("billed_duration_ms", "billed_duration_ms"), ("cold_start", "cold_start"),
        ("outcome", "outcome.value"), ("egress_bytes", "egress_bytes"),
        ("cost_usd", "cost_usd"), ("compute_usd", "compute_usd"),
        ("request_usd", "request_usd"), ("egress_usd", "egress_usd"),
        ("custom_usd", "custom_usd"))),
    Anomaly: _Table("anomalies", (
        ("event_id", "event_id"), ("time", "time_unix_nano"), ("function", "function"),
        ("detector", "detector"), ("score", "score"), ("threshold", "threshold"),
        ("severity", "severity.value"), ("window_start", "window_start_unix_nano"),
        ("window_end", "window_end_unix_nano"), ("features", "features"),
        ("baseline", "baseline"), ("explanation", "explanation"),
        ("cost_impact_usd_per_hour", "cost_impact_usd_per_hour"), ("version", "version"),
        ("driver", "driver.value"), ("held", "held.value"))),
    Verdict: _Table("verdicts", (
        ("event_id", "event_id"), ("time", "time_unix_nano"), ("function", "function"),
        ("action", "action.value"), ("rate_rps", "rate_rps"),
        ("issued_at", "issued_at_unix_nano"), ("expires_at", "expires_at_unix_nano"),
        ("sequence", "sequence"), ("reason", "reason"), ("anomaly_id", "anomaly_id"),
        ("issuer", "issuer"), ("signature", "signature"))),
    PolicyDecision: _Table("policy_decisions", (
        ("event_id", "event_id"), ("time", "time_unix_nano"), ("function", "function"),
        ("team", "team"), ("version", "version"), ("policy", "policy"),
        ("decision", "decision.value"), ("rate_rps", "rate_rps"),
        ("severity", "severity.value"), ("reason", "reason"),
        ("window_start", "window_start_unix_nano"), ("anomaly_id", "anomaly_id"),
        ("bundle", "bundle"), ("inputs", _attributes("inputs")), ("stage", "stage"),
        ("revision", "revision"))),
    Incident: _Table("incidents", (
        ("event_id", "event_id"), ("time", "time_unix_nano"), ("incident_id", "incident_id"),
        ("function", "function"), ("team", "team"), ("status", "status.value"),
        ("severity", "severity.value"), ("title", "title"), ("summary", "summary"),
        ("driver", "driver"), ("cost_impact_usd_per_hour", "cost_impact_usd_per_hour"),
        ("actions", "actions"), ("runbook_url", "runbook_url"),
        ("opened_at", "opened_at_unix_nano"), ("resolved_at", "resolved_at_unix_nano"),
        ("updates", "updates"), ("kind", "kind"), ("folded_into", "folded_into"))),
    Feedback: _Table("feedback", (
        ("event_id", "event_id"), ("time", "time_unix_nano"), ("function", "function"),
        ("incident_id", "incident_id"), ("judgement", "judgement.value"),
        ("detector", "detector"), ("kind", "kind"), ("ratio", "ratio"), ("actor", "actor"),
        ("reason", "reason"), ("change_id", "change_id"))),
    ThresholdChange: _Table("threshold_changes", (
        ("event_id", "event_id"), ("time", "time_unix_nano"), ("scope", "function"),
        ("key", "key"), ("old", "old"), ("new", "new"), ("actor", "actor"),
        ("reason", "reason"), ("change_id", "change_id"), ("undo_of", "undo_of"))),
}


_TELEMETRY: dict[type[Event], str] = {Span: "Unauthenticated", CostEvent: "unauthenticated"}
"""Telemetry tables and their column that flags rows not authenticated as their function."""


OUTAGE_CODES = frozenset({
    60,   # UNKNOWN_TABLE: detached, dropped or not yet created
    81,   # UNKNOWN_DATABASE
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    173,  # CANNOT_ALLOCATE_MEMORY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    218,  # TABLE_IS_DROPPED
    225,  # NO_ZOOKEEPER
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY: a replica lost its coordination service
    243,  # NOT_ENOUGH_SPACE
    252,  # TOO_MANY_PARTS: merges behind inserts
    279,  # ALL_CONNECTION_TRIES_FAILED
    285,  # TOO_FEW_LIVE_REPLICAS
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED
    439,  # CANNOT_SCHEDULE_TASK
    473,  # DEADLOCK_AVOIDED
    999,  # KEEPER_EXCEPTION
})
"""ClickHouse error codes that say the server or a table cannot take writes *now*,
whatever the rows: an outage to wait out, never a reason to refuse the data."""

_CODE = re.compile(r"\bCode: (\d+)\b")


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` (from a write) is one of :data:`OUTAGE_CODES`."""
    match = _CODE.search(str(error))
    return match is not None and int(match.group(1)) in OUTAGE_CODES


Observe = Callable[[str, float, bool], None]
"""``observe(table, seconds, ok)``: one insert into ``table`` took ``seconds``."""


class ClickHouseSink:
    """Writes batches of events to their tables, one insert per table per batch.

    Idempotent: tables are ReplacingMergeTree on the event's identity, so a batch
    redelivered after a crash replaces itself.
    """

    def __init__(self, client: Any, observe: Observe | None = None) -> None:
        """``observe(table, seconds, ok)`` is told of every insert (the worker's metrics)."""
        self._client = client
        self._observe = observe

    def ping(self) -> None:
        """Raise unless ClickHouse answers."""
        self._client.query("SELECT 1")

    def write(self, events: Iterable[Event], flagged: frozenset[str] = frozenset()
              ) -> dict[str, int]:
        """Insert ``events``; return rows written per table. Telemetry whose id is in
        ``flagged`` is marked unauthenticated. A table's rows go in one insert unless
        they span more than :data:`DAYS_PER_INSERT` days (ClickHouse refuses an insert
        into over 100 partitions; some tables have one a day)."""
        by_table: dict[type[Event], list[Event]] = defaultdict(list)
        for event in events:
            if type(event) in _TABLES:
                by_table[type(event)].append(event)
        written = {}
        for cls, batch in by_table.items():
            table = _TABLES[cls]
            for part in _by_days(batch):
                data, columns = table.data(part), table.columns
                if cls in _TELEMETRY:
                    data.append([e.event_id in flagged for e in part] if flagged
                                else [False] * len(part))
                    columns = (*columns, _TELEMETRY[cls])
                self._insert(table.name, data, columns)
            written[table.name] = len(batch)
        return written

    def _insert(self, table: str, data: list[list[Any]], columns: Sequence[str]) -> None:
        """One insert, column by column (a third less of the client's CPU than by rows)."""
        if self._observe is None:
            self._client.insert(table, data, column_names=columns, column_oriented=True)
            return
        started = time.perf_counter()
        try:
            self._client.insert(table, data, column_names=columns, column_oriented=True)
        except Exception:
            self._observe(table, time.perf_counter() - started, False)
            raise
        self._observe(table, time.perf_counter() - started, True)


DAYS_PER_INSERT = 90
_DAY_NS = 86_400_000_000_000
_START, _TIME = attrgetter("start_time_unix_nano"), attrgetter("time_unix_nano")


def _by_days(events: list[Event]) -> list[list[Event]]:
    """``events`` in runs covering at most :data:`DAYS_PER_INSERT` days each (by the
    day that partitions them: a span's start, any other event's time)."""
    def day(e: Event) -> int:
        return (e.start_time_unix_nano if isinstance(e, Span) else e.time_unix_nano) \
            // _DAY_NS
    times = list(map(_START if events and isinstance(events[0], Span) else _TIME, events))
    if not times or max(times) // _DAY_NS - min(times) // _DAY_NS < DAYS_PER_INSERT:
        return [events]  # a batch of one table: the usual case, checked in C
    if len({day(e) for e in events}) <= DAYS_PER_INSERT:
        return [events]
    parts: list[list[Event]] = []
    days: set[int] = set()
    for event in sorted(events, key=day):
        if day(event) not in days and len(days) == DAYS_PER_INSERT:
            parts.append([])
            days = set()
        if not parts:
            parts.append([])
        parts[-1].append(event)
        days.add(day(event))
    return parts


@dataclass(frozen=True)
class QueryResult:
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    elapsed_s: float
    rows_per_second_limit: int = 0  # the read rate it was held to (0: none)


_READ_ROOTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "Explain", "Describe",
               "Show", "Exists")
"""Root nodes of the engine's syntax tree for a read (a SELECT, WITH, SHOW, DESCRIBE,
EXISTS or EXPLAIN statement)."""


def _statement_problem(client: Any, sql: str, parameters: Mapping[str, str] | None = None
                       ) -> str | None:
    """Why ``sql`` is refused, from the engine's own parser: more than one statement
    (``formatQuerySingleLine`` of the text passed as a value, so nothing in it runs),
    then from its syntax tree (``EXPLAIN AST``) anything but a read, a result written
    out (``INTO OUTFILE``: a literal child of the statement's root), or a function that
    reaches beyond the history (:func:`_function_problem`). The engine's ``readonly=1``
    also refuses any change of a setting. ``parameters`` are the query's
    own (``{name:Type}``), bound by the engine for ``EXPLAIN AST`` as for the query."""
    try:
        client.query("SELECT formatQuerySingleLine({sql:String})", parameters={"sql": sql},
                     settings={"readonly": 1})
        rows = client.query(f"EXPLAIN AST {sql}", parameters=parameters or None,
                            settings={"readonly": 1}).result_rows
    except Exception as exc:
        message = str(exc).strip().splitlines()[0]
        if "Multi-statements are not allowed" in message:
            return "one statement per query: remove the ';' and what follows"
        raise QueryError(_parameter_advice(message)) from exc
    lines = [str(row[0]) for row in rows]
    if not lines or not lines[0].startswith(_READ_ROOTS):
        return "only read queries (SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN) are allowed"
    if any(line.startswith(" Literal") for line in lines):
        return "INTO OUTFILE is not allowed: results are returned, never written"
    return _function_problem(lines)


_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                              "generateseries", "values", "null", "view"})
"""Table functions an analyst may read from: they make rows up. Every other one reaches
beyond the history (files, the network, programs, the host process's own objects)."""
_FILE_FUNCTIONS = frozenset({"file"})
"""Functions that read a file of the host wherever they stand in a query."""
_FUNCTION_NODE = re.compile(r"^(\s*)Function (\S+)")


def _function_problem(lines: Sequence[str]) -> str | None:
    """Why a read's syntax tree (``EXPLAIN AST`` lines) is refused for what it calls: a
    table function outside :data:`_TABLE_FUNCTIONS`, or a function of
    :data:`_FILE_FUNCTIONS` anywhere (in a lambda or a subquery too)."""
    for above, line in zip(["", *lines], lines, strict=False):
        node = _FUNCTION_NODE.match(line)
        if node is None:
            continue
        name = node[2].lower()
        if name in _FILE_FUNCTIONS:
            return f"{node[2]}() is not allowed: analyst queries read the history, not files"
        is_table = above.strip().startswith("TableExpression") and (
            len(above) - len(above.lstrip()) == len(node[1]) - 1)
        if is_table and name not in _TABLE_FUNCTIONS:
            return (f"table function {node[2]}() is not allowed: analyst queries read the "
                    "history's tables (and numbers(), zeros(), values(), generate_series())")
    return None


QUERY_SECONDS = 30
"""An analyst's query is stopped after this long (``max_execution_time``)."""
QUERY_ROWS = 100_000
"""…and refused if its result would hold more rows than this."""
QUERY_NICENESS = 19
"""…and its engine threads run at this ``nice`` value: the ingest comes first."""


QUERY_PARAMETERS = 100
"""At most this many query parameters, each name an identifier…"""
PARAMETER_CHARS = 65_536
"""…and each value at most this long."""
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{(\w+):[^}]+\}")
"""A ``{name:Type}`` query parameter, as the client library finds them to bind them
on the server (the pattern of ``clickhouse_connect.driver.binding``)."""


def checked_parameters(sql: str, parameters: Mapping[str, str] | None) -> dict[str, str]:
    """``parameters`` if each is a ``{name:Type}`` placeholder of ``sql`` with a text
    value; else :class:`QueryError`. Values are only ever bound by the engine: a name
    the query does not hold as a placeholder is refused, never substituted into it."""
    if not parameters:
        return {}
    if len(parameters) > QUERY_PARAMETERS:
        raise QueryError(f"at most {QUERY_PARAMETERS} query parameters")
    placeholders = set(_PLACEHOLDER.findall(sql))
    checked = {}
    for name, value in parameters.items():
        if not isinstance(name, str) or not _PARAMETER_NAME.match(name):
            raise QueryError(f"query parameter name {name!r}: use letters, digits and _")
        if not isinstance(value, str) or len(value) > PARAMETER_CHARS:
            raise QueryError(f"query parameter {name}: the value must be text of at most "
                             f"{PARAMETER_CHARS} characters")
        if name not in placeholders:
            raise QueryError(f"query parameter {name}: the query has no {{{name}:Type}} "
                             "placeholder for it")
        checked[name] = value
    return checked


def _parameter_advice(message: str) -> str:
    """The engine's message, with how to give a parameter the query lacks."""
    missing = re.search(r"Substitution `(\w+)` is not set", message)
    if missing:
        name = missing[1]
        return (f"the query needs a value for {{{name}}}: governor query --param {name}=VALUE "
                f'(the endpoint: "params": {{"{name}": "VALUE"}})')
    return message


def read_only_query(client: Any, sql: str, parameters: Mapping[str, str] | None = None,
                    threads: int = 0, rows_per_second: int = 0) -> QueryResult:
    """Run an analyst's query with ``readonly=1``, a time limit, a result-size limit,
    at most ``threads`` engine threads (0: the engine's default) at the lowest CPU
    priority (:data:`QUERY_NICENESS`), reading at most ``rows_per_second`` rows a
    second from its first rows on (0: no limit; the engine sleeps between blocks to
    keep to it); refuse anything
    but one read statement (:func:`_statement_problem`).
    ``parameters`` fill the query's ``{name:Type}`` placeholders, bound by the engine
    (:func:`checked_parameters`)."""
    sql = sql.strip().removesuffix(";")
    bound = checked_parameters(sql, parameters)
    problem = _statement_problem(client, sql, bound)
    if problem is not None:
        raise QueryError(problem)
    started = time.perf_counter()
    try:
        result = client.query(sql, parameters=bound or None, settings={
            "readonly": 1, "max_execution_time": QUERY_SECONDS,
            "max_result_rows": QUERY_ROWS, "result_overflow_mode": "throw",
            "os_thread_priority": QUERY_NICENESS,
            **({"max_threads": threads} if threads else {}),
            **({"max_execution_speed": rows_per_second,
                "timeout_before_checking_execution_speed": 0} if rows_per_second else {})})
    except Exception as exc:
        message = _parameter_advice(str(exc).strip().splitlines()[0])
        if "(READONLY)" in message:
            message += (" — analyst queries only read the history: no table functions that "
                        "reach files, the network or programs, no settings changes")
        elif rows_per_second and "TIMEOUT_EXCEEDED" in message:
            message += (f" — the worker has a backlog to catch up, and until it has an "
                        f"analyst query reads at most {rows_per_second:,} rows a second "
                        "(GOVERNOR_QUERY_BACKLOG_ROWS_PER_SECOND): narrow the query "
                        "(a shorter time range, fewer functions) or run it again once the "
                        "worker's lag is gone")
        raise QueryError(message) from exc
    return QueryResult(result.column_names, result.result_rows, time.perf_counter() - started,
                       rows_per_second)
