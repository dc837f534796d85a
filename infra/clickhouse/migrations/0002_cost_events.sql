-- One row per invocation with its cost breakdown. Idempotent on event_id: a
-- redelivered event has the same sort key and replaces itself on merge
-- (read with FINAL for exact counts right after a redelivery).
CREATE TABLE IF NOT EXISTS cost_events (
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    function LowCardinality(String),
    invocation_id String,
    trace_id String,
    span_id String,
    provider LowCardinality(String),
    version LowCardinality(String),
    team LowCardinality(String),
    memory_mb UInt32,
    duration_ms Float64,
    billed_duration_ms Float64,
    cold_start Bool,
    outcome LowCardinality(String),
    egress_bytes UInt64,
    cost_usd Float64,
    compute_usd Float64,
    request_usd Float64,
    egress_usd Float64,
    custom_usd Map(LowCardinality(String), Float64),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(time)
ORDER BY (function, toStartOfHour(time), event_id)
TTL toDateTime(time) + toIntervalDay(400)
SETTINGS ttl_only_drop_parts = 1;
