-- The audit of live threshold changes: who changed which key of which scope
-- (function, team:NAME or *), when, old -> new; change_id groups one command.
CREATE TABLE IF NOT EXISTS threshold_changes (
    event_id String,
    time DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    scope LowCardinality(String),
    key LowCardinality(String),
    old String,
    new String,
    actor LowCardinality(String),
    reason String,
    change_id String,
    undo_of String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (scope, time, event_id);
