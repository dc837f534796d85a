"""``governor query``: run a read-only SQL query wherever the data lives.

A ClickHouse server is queried directly. The embedded chDB engine can be opened by
one process only, so while a worker owns it the query goes to that worker's
read-only endpoint (found through the stack file); otherwise it is opened here.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streams.errors import QueryError
from streams.ops.stackfile import read_stack_file
from streams.settings import Settings
from streams.storage.clickhouse import QueryResult, connect, read_only_query
from streams.storage.values import plain_rows


def run_query(settings: Settings, sql: str, timeout_s: float = 60.0,
              params: Mapping[str, str] | None = None) -> QueryResult:
    """Run ``sql`` read-only against the configured ClickHouse, ``params`` bound to its
    ``{name:Type}`` placeholders; cells are plain values
    (:func:`~streams.storage.values.plain`), the same whichever way the query ran."""
    if settings.embedded_clickhouse:
        stack = read_stack_file(settings)
        if stack and stack.get("clickhouse") == settings.clickhouse_dsn:
            return query_endpoint(str(stack["query_url"]), sql, timeout_s,
                                  settings.query_token, params)
    result = read_only_query(connect(settings.clickhouse_dsn), sql, params)
    return QueryResult(result.columns, plain_rows(result.rows), result.elapsed_s,
                       result.rows_per_second_limit)


def query_endpoint(url: str, sql: str, timeout_s: float = 60.0, token: str = "",
                   params: Mapping[str, str] | None = None) -> QueryResult:
    """POST ``sql`` (and its ``params``) to a worker's ``/query`` endpoint (with its
    bearer ``token``)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body: dict[str, Any] = {"sql": sql}
    if params:
        body["params"] = dict(params)
    request = urllib.request.Request(
        url.rstrip("/") + "/query", data=orjson.dumps(body), headers=headers,
        method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer: dict[str, Any] = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = orjson.loads(exc.read()).get("error", str(exc))
        except orjson.JSONDecodeError:
            message = str(exc)
        raise QueryError(message) from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise QueryError(f"the worker's query endpoint at {url} did not answer: {exc}") from None
    return QueryResult(answer["columns"], answer["rows"], float(answer.get("elapsed_s", 0.0)),
                       int(answer.get("rows_per_second_limit", 0)))


@dataclass(frozen=True, slots=True)
class LastSeen:
    """What the history holds of one function: its latest cost event and how many."""

    function: str
    team: str  # of its latest cost event ("" if that one carries none)
    time: str  # of its latest cost event, ISO-8601 UTC
    cost_events: int


LAST_SEEN_SQL = (
    "SELECT argMax(team, time), max(time), count() FROM cost_events "
    "WHERE function = {function:String}")


def last_seen(settings: Settings, function: str) -> LastSeen | None:
    """The latest cost event of ``function`` in the history, through :func:`run_query`;
    ``None`` when it has none (or the history has no ``cost_events`` table yet)."""
    try:
        result = run_query(settings, LAST_SEEN_SQL, params={"function": function})
    except QueryError as exc:
        if "UNKNOWN_TABLE" in str(exc) or "Unknown table" in str(exc):
            return None  # no worker has created the history's tables yet
        raise
    team, time, count = result.rows[0]
    if not count:
        return None
    return LastSeen(function, str(team), str(time), int(count))
