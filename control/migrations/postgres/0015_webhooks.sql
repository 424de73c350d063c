-- Webhooks: where a team's events are POSTed, signed with the webhook's secret (sealed at rest
-- under the secret key: it has to be read back to sign). `events` is a JSON array of event
-- types, or ["*"].
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    team_id      TEXT NOT NULL,
    url          TEXT NOT NULL,
    events       TEXT NOT NULL,
    secret       TEXT NOT NULL,
    description  TEXT NOT NULL,
    active       BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX webhooks_team ON webhooks(team_id, created_at);

-- One row per (webhook, event), written in the transaction of the change the event describes,
-- so an event is delivered exactly when its change committed. `state`: pending, delivered or
-- failed (attempts used up). A worker leases a due row (`lease_until`) before sending it.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       TEXT NOT NULL,
    team_id          TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT NOT NULL,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, created_at);
