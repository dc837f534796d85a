"""ClickHouse: versioned migrations, the batched idempotent sink and read-only queries
(:mod:`.clickhouse`), their results as plain values (:mod:`.values`). Imports only
errors and the DDL in :mod:`infra`.
"""
