-- Typed causes: the figure that drives an anomaly, an incident's kind (its runbook
-- section) and the summary incident a rate-limited page was folded into.
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS driver LowCardinality(String) DEFAULT '' AFTER version;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT '' AFTER updates;
ALTER TABLE incidents ADD COLUMN IF NOT EXISTS folded_into String DEFAULT '' AFTER kind;
