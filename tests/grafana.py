"""The provisioned Grafana dashboards' ClickHouse queries, made runnable outside Grafana.

Grafana sends a panel's ``rawSql`` to the ``grafana-clickhouse-datasource`` plugin with
its variables interpolated; the plugin's backend then expands its macros. The tests do
both steps here, the way those two do (the plugin's ``pkg/macros``):

* ``$__timeFilter(col)`` → ``col >= toDateTime(FROM) AND col <= toDateTime(TO)``, in
  whole seconds since the epoch; ``$__fromTime`` / ``$__toTime`` → ``toDateTime(s)``;
  ``$__timeInterval(col)`` → ``toStartOfInterval(toDateTime(col), INTERVAL N second)``
  and ``$__interval_s`` → ``N``;
* ``${name:singlequote}`` → the selected values, each quoted (``'a','b'``), or, when
  "All" is selected, the variable's custom all value inserted as it is (Grafana does
  not format it).

Any other ``$`` left in the SQL is an error: a macro or variable these tests do not
know would reach ClickHouse unexpanded.

``python -m tests.grafana CHDB_PATH DASHBOARD.json…`` runs every ClickHouse panel of the
dashboards on that chDB data directory (a process of its own: chDB opens one path per
process) over the last six hours, with "All" and with each function selected, and
prints a JSON report: per panel, its columns, row count and whether the first column
is a time.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

CLICKHOUSE = "grafana-clickhouse-datasource"
ALL = "$__all"


def clickhouse_panels(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(panel title, rawSql)`` of every ClickHouse target of ``dashboard``."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if (target.get("datasource") or panel["datasource"])["type"] == CLICKHOUSE:
                yield panel["title"], target["rawSql"]


def expand(sql: str, start_s: int, end_s: int, interval_s: int,
           variables: dict[str, tuple[Sequence[str] | str, str]]) -> str:
    """``sql`` as ClickHouse receives it from Grafana over ``[start_s, end_s]``;
    ``variables`` maps a name to (selected values or :data:`ALL`, its all value)."""
    def variable(match: re.Match[str]) -> str:
        selected, all_value = variables[match[1]]
        if selected == ALL:
            return all_value
        return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
                        for v in selected)

    sql = re.sub(r"\$\{(\w+):singlequote\}", variable, sql)
    sql = re.sub(r"\$__timeFilter\((\w+)\)",
                 rf"\1 >= toDateTime({start_s}) AND \1 <= toDateTime({end_s})", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)",
                 rf"toStartOfInterval(toDateTime(\1), INTERVAL {interval_s} second)", sql)
    sql = (sql.replace("$__fromTime", f"toDateTime({start_s})")
           .replace("$__toTime", f"toDateTime({end_s})")
           .replace("$__interval_s", str(interval_s)))
    if "$" in sql:
        raise ValueError(f"unexpanded macro or variable left in: {sql}")
    return sql


def _run(chdb_path: str, paths: Sequence[str]) -> dict[str, Any]:
    from streams.storage.clickhouse import connect, read_only_query

    client = connect(f"chdb://{chdb_path}")
    end_s = int(time.time()) + 60
    start_s = end_s - 6 * 3600
    report: dict[str, Any] = {}
    for path in paths:
        dashboard = orjson.loads(Path(path).read_bytes())
        [fn] = [v for v in dashboard["templating"]["list"] if v["name"] == "function"]
        everything = {"function": (ALL, str(fn["allValue"]))}
        options = read_only_query(client, expand(fn["query"], start_s, end_s, 30,
                                                 everything)).rows
        functions = [str(row[0]) for row in options]
        panels: dict[str, list[dict[str, Any]]] = {}
        report[dashboard["uid"]] = {"functions": functions, "panels": panels}
        for title, raw in clickhouse_panels(dashboard):
            runs = []
            for selected in [ALL, *([f] for f in functions)]:
                chosen = {"function": (selected, str(fn["allValue"]))}
                result = read_only_query(client, expand(raw, start_s, end_s, 30, chosen))
                runs.append({"selected": selected, "columns": list(result.columns),
                             "rows": len(result.rows),
                             "first_is_time": bool(result.rows) and isinstance(
                                 result.rows[0][0], datetime)})
            panels[title] = runs
    return report


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(_run(sys.argv[1], sys.argv[2:])).decode())
