-- Pages as they were sent: one row per open / update / resolve of an incident.
-- The latest row of an incident_id is its current state.
CREATE TABLE IF NOT EXISTS incidents (
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    incident_id String,
    function LowCardinality(String),
    team LowCardinality(String),
    status LowCardinality(String),
    severity LowCardinality(String),
    title String,
    summary String,
    driver String,
    cost_impact_usd_per_hour Float64,
    actions Array(String),
    runbook_url String,
    opened_at DateTime64(9, 'UTC'),
    resolved_at DateTime64(9, 'UTC'),
    updates UInt32,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (function, incident_id, time, event_id)
TTL toDateTime(time) + toIntervalDay(730);
