-- Every verdict issued (by a worker or an operator), signed as it was sent.
CREATE TABLE IF NOT EXISTS verdicts (
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    function LowCardinality(String),
    action LowCardinality(String),
    rate_rps Nullable(Float64),
    issued_at DateTime64(9, 'UTC'),
    expires_at DateTime64(9, 'UTC'),
    sequence UInt64,
    reason String,
    anomaly_id String,
    issuer LowCardinality(String),
    signature String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (function, time, event_id)
TTL toDateTime(time) + toIntervalDay(730);
