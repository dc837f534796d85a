-- What the detectors flagged, with the features and baseline that drove it.
CREATE TABLE IF NOT EXISTS anomalies (
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    function LowCardinality(String),
    detector LowCardinality(String),
    score Float64,
    threshold Float64,
    severity LowCardinality(String),
    window_start DateTime64(9, 'UTC'),
    window_end DateTime64(9, 'UTC'),
    features Map(LowCardinality(String), Float64),
    baseline Map(LowCardinality(String), Float64),
    explanation String,
    cost_impact_usd_per_hour Float64,
    version LowCardinality(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (function, time, event_id)
TTL toDateTime(time) + toIntervalDay(730);
