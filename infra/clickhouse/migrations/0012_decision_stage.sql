-- Where a policy decision was made: by the workers (runtime) or by `governor gate`
-- before a deploy (pre-deploy, pre-commit), and on which git revision.
ALTER TABLE policy_decisions ADD COLUMN IF NOT EXISTS stage LowCardinality(String) DEFAULT 'runtime' AFTER inputs;
ALTER TABLE policy_decisions ADD COLUMN IF NOT EXISTS revision String DEFAULT '' AFTER stage;
