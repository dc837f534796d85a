-- Why a cost anomaly was reported but not enforced (learning, below the enforcement
-- ratio, a routine burst); empty when it was not held back. Held-back anomalies never page.
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS held LowCardinality(String) DEFAULT '' AFTER driver;
