-- Every non-allow policy decision, with the figures the policy compared and the
-- digest of the bundle that made it ("what did Governor do to X, and why").
CREATE TABLE IF NOT EXISTS policy_decisions (
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    function LowCardinality(String),
    team LowCardinality(String),
    version LowCardinality(String),
    policy LowCardinality(String),
    decision LowCardinality(String),
    rate_rps Nullable(Float64),
    severity LowCardinality(String),
    reason String,
    window_start DateTime64(9, 'UTC'),
    anomaly_id String,
    bundle LowCardinality(String),
    inputs Map(LowCardinality(String), String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (function, time, event_id)
TTL toDateTime(time) + toIntervalDay(730);
