"""ClickHouse: versioned migrations, the batched idempotent sink and read-only queries
(:mod:`.clickhouse`). Imports only errors and the DDL in :mod:`infra`.
"""
