-- Clicks and analytics (issue 5). Kept column-for-column equal to sqlite/0004_clicks.sql.
-- No foreign keys to links: a deleted link's history stays (team-wide stats still count it) and
-- a click for a link deleted meanwhile must not fail its whole batch.

-- Batch ids already ingested: the idempotency key of POST /internal/v1/clicks. Pruned after the
-- click retention period.
CREATE TABLE ingested_batches (
    batch_id     TEXT PRIMARY KEY,
    proxy_id     TEXT NOT NULL,
    events       BIGINT NOT NULL,
    ingested_at  BIGINT NOT NULL
);
CREATE INDEX ingested_batches_at ON ingested_batches(ingested_at);

-- Raw events, kept for --click-retention-days; unique visitors are counted from them at query
-- time. Unknown values are '' (country, referrer_host); bot and qr are 0/1.
CREATE TABLE click_events (
    link_id        TEXT NOT NULL,
    team_id        TEXT NOT NULL,
    at_ms          BIGINT NOT NULL,
    country        TEXT NOT NULL,
    device         TEXT NOT NULL,
    browser        TEXT NOT NULL,
    os             TEXT NOT NULL,
    bot            BIGINT NOT NULL,
    referrer_host  TEXT NOT NULL,
    visitor        TEXT NOT NULL,
    qr             BIGINT NOT NULL
);
CREATE INDEX click_events_link_at ON click_events(link_id, at_ms);
CREATE INDEX click_events_team_at ON click_events(team_id, at_ms);

-- Counts per (link, 15-minute UTC bucket, dimension, value), kept forever. dim is one of total,
-- country, device, browser, os, referrer, qr; clicks counts humans, bots counts flagged bots.
CREATE TABLE click_rollups (
    link_id    TEXT NOT NULL,
    team_id    TEXT NOT NULL,
    bucket_ms  BIGINT NOT NULL,
    dim        TEXT NOT NULL,
    dim_value  TEXT NOT NULL,
    clicks     BIGINT NOT NULL,
    bots       BIGINT NOT NULL,
    PRIMARY KEY (link_id, bucket_ms, dim, dim_value)
);
CREATE INDEX click_rollups_team_bucket ON click_rollups(team_id, bucket_ms);
