"""``governor query``: run a read-only SQL query wherever the data lives.

A ClickHouse server is queried directly. The embedded chDB engine can be opened by
one process only, so while a worker owns it the query goes to that worker's
read-only endpoint (found through the stack file); otherwise it is opened here.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson

from streams.errors import QueryError
from streams.ops.stackfile import read_stack_file
from streams.settings import Settings
from streams.storage.clickhouse import QueryResult, connect, read_only_query


def run_query(settings: Settings, sql: str, timeout_s: float = 60.0) -> QueryResult:
    """Run ``sql`` read-only against the configured ClickHouse."""
    if settings.embedded_clickhouse:
        stack = read_stack_file(settings)
        if stack and stack.get("clickhouse") == settings.clickhouse_dsn:
            return query_endpoint(str(stack["query_url"]), sql, timeout_s,
                                  settings.query_token)
    return read_only_query(connect(settings.clickhouse_dsn), sql)


def query_endpoint(url: str, sql: str, timeout_s: float = 60.0, token: str = "") -> QueryResult:
    """POST ``sql`` to a worker's ``/query`` endpoint (with its bearer ``token``)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url.rstrip("/") + "/query", data=orjson.dumps({"sql": sql}), headers=headers,
        method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: dict[str, Any] = orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = orjson.loads(exc.read()).get("error", str(exc))
        except orjson.JSONDecodeError:
            message = str(exc)
        raise QueryError(message) from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise QueryError(f"the worker's query endpoint at {url} did not answer: {exc}") from None
    return QueryResult(body["columns"], body["rows"], float(body.get("elapsed_s", 0.0)))
