-- Accounts (issue 7): link-creation quota counters and API call logs. Kept column-for-column
-- equal to sqlite/0003_accounts.sql.

-- One row per team and quota period ('day' or 'month'), keyed by the period's start (unix ms,
-- UTC). Link creation increments it in the same write transaction as the insert, so concurrent
-- creates cannot overshoot a quota; old rows are harmless (a new period is a new row).
CREATE TABLE usage_counters (
    team_id       TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    period        TEXT NOT NULL,
    period_start  BIGINT NOT NULL,
    count         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (team_id, period, period_start)
);

-- API calls of teams whose plan keeps logs. Never the key itself, never bodies; `path` has
-- secret-bearing query parameters removed before it is written.
CREATE TABLE api_logs (
    id          BIGSERIAL PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    key_prefix  TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      BIGINT NOT NULL,
    latency_us  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX api_logs_team_created ON api_logs(team_id, created_at);

-- The bootstrap admin team runs the instance: it moves to the built-in `unlimited` plan.
UPDATE teams SET plan = 'unlimited' WHERE name = 'admin' AND plan = 'free';
