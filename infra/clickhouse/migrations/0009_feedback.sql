-- On-call's word on incidents: false alarm or confirmed, by whom and why, and the
-- threshold change a false alarm made (undo it with `governor thresholds undo`).
CREATE TABLE IF NOT EXISTS feedback (
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    function LowCardinality(String),
    incident_id String,
    judgement LowCardinality(String),
    detector LowCardinality(String),
    kind LowCardinality(String),
    ratio Float64,
    actor LowCardinality(String),
    reason String,
    change_id String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (function, time, event_id)
TTL toDateTime(time) + toIntervalDay(730);
