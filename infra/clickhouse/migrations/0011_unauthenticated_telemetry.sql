-- Telemetry that was not authenticated as the function it names (no MAC, unknown key
-- id, or another function's key): stored, flagged here, and it decided nothing.
ALTER TABLE cost_events ADD COLUMN IF NOT EXISTS unauthenticated Bool DEFAULT false AFTER custom_usd;
ALTER TABLE otel_traces ADD COLUMN IF NOT EXISTS Unauthenticated Bool DEFAULT false;
