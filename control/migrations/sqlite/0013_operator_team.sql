-- The operator's team: the one bootstrap creates. Only it may change what every tenant shares
-- (the default domain), whatever scopes another team's keys hold. Databases made before this
-- column get their oldest team, which is the one bootstrap made.
ALTER TABLE teams ADD COLUMN is_operator BIGINT NOT NULL DEFAULT 0;
UPDATE teams SET is_operator = 1
    WHERE id = (SELECT id FROM teams ORDER BY created_at, id LIMIT 1);
CREATE UNIQUE INDEX teams_one_operator ON teams (is_operator) WHERE is_operator = 1;
