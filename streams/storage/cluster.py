"""The migrations for a ClickHouse cluster: replicated local tables, distributed ones.

A single server runs ``infra/clickhouse/migrations/`` as they are. On a cluster each
table ``T`` becomes

* ``T_local`` on every node (``ON CLUSTER``), ``ReplicatedReplacingMergeTree`` (or
  ``ReplicatedMergeTree``) under ``/clickhouse/tables/{shard}/{database}/T_local`` and
  ``{replica}`` — the macros each node defines — with the same columns, order,
  partitioning and TTL;
* ``T``, a ``Distributed`` table over them, sharded by the function's name, so workers
  and analysts use the same names as on one server, and one function's rows are on one
  shard (``FINAL`` there keeps the last of a redelivered event).

Materialized views read and write the local tables; ``ALTER TABLE`` runs on both.
:func:`cluster_migrations` derives all of it from the single-server migrations, so the
two never drift; ``governor schema --cluster NAME`` prints it for a DBA to apply (with
``clickhouse-client --multiquery``), and a test parses every statement with the
engine's own parser.

>>> [s.split("(")[0] for s in cluster_statements(
...     "CREATE TABLE IF NOT EXISTS t (function String) ENGINE = ReplacingMergeTree "
...     "ORDER BY function", "prod")]  # doctest: +NORMALIZE_WHITESPACE
["CREATE TABLE IF NOT EXISTS t_local ON CLUSTER 'prod' ",
 "CREATE TABLE IF NOT EXISTS t ON CLUSTER 'prod' AS t_local ENGINE = Distributed"]
"""

from __future__ import annotations

import re

from streams.storage.clickhouse import MIGRATIONS_TABLE, Migration, load_migrations

SHARD_KEYS = {"otel_traces": "ServiceName", "otel_traces_trace_id_ts": "TraceId",
              "threshold_changes": "scope"}
"""The column a table is sharded by, when it is not ``function``."""

_CREATE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+) \(", re.S)
_ENGINE = re.compile(r"\)\s*ENGINE = (ReplacingMergeTree|MergeTree)\b")
_VIEW = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\s+TO (\w+)\s+AS (.*)$",
                   re.S)
_FROM = re.compile(r"\bFROM (\w+)\b")
_ALTER = re.compile(r"^ALTER TABLE (\w+) (.*)$", re.S)


def cluster_statements(sql: str, cluster: str) -> list[str]:
    """The cluster form of one migration statement (see the module docstring)."""
    on = f"ON CLUSTER '{cluster}'"
    if (create := _CREATE.match(sql)) and (engine := _ENGINE.search(sql)):
        table = create[1]
        local = f"{table}_local"
        replicated = (f") ENGINE = Replicated{engine[1]}('/clickhouse/tables/{{shard}}/"
                      f"{{database}}/{local}', '{{replica}}')")
        body = sql[create.end():engine.start()] + replicated + sql[engine.end():]
        key = SHARD_KEYS.get(table, "function")
        return [f"CREATE TABLE IF NOT EXISTS {local} {on} ({body}",
                f"CREATE TABLE IF NOT EXISTS {table} {on} AS {local} ENGINE = Distributed("
                f"'{cluster}', currentDatabase(), {local}, cityHash64({key}))"]
    if view := _VIEW.match(sql):
        select = _FROM.sub(lambda m: f"FROM {m[1]}_local", view[3])
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view[1]} {on} TO {view[2]}_local "
                f"AS {select}"]
    if alter := _ALTER.match(sql):
        return [f"ALTER TABLE {alter[1]}_local {on} {alter[2]}",
                f"ALTER TABLE {alter[1]} {on} {alter[2]}"]
    raise ValueError(f"no cluster form for: {sql[:80]}…; add one in streams/storage/cluster.py")


def cluster_migrations(cluster: str, migrations: list[Migration] | None = None) -> str:
    """Every migration's statements in their cluster form, as one SQL script, each
    recorded in ``governor_migrations`` (one table replicated to every node), so that
    workers starting against the cluster find them applied and apply nothing."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", cluster):
        raise ValueError(f"cluster name {cluster!r}: letters, digits, '_', '.', '-' only")
    parts = [f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ON CLUSTER '{cluster}' "
             "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') "
             "DEFAULT now64(3)) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/"
             f"{{database}}/{MIGRATIONS_TABLE}', '{{replica}}') ORDER BY version;"]
    for migration in migrations if migrations is not None else load_migrations():
        parts.append(f"-- {migration.name}")
        parts += [f"{statement};" for sql in migration.statements()
                  for statement in cluster_statements(sql, cluster)]
        parts.append(f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES "
                     f"({migration.version}, '{migration.name}', '{migration.checksum}');")
    return "\n".join(parts) + "\n"
