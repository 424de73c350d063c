-- Foundation schema (Postgres). Kept column-for-column equal to sqlite/0001_foundation.sql:
-- times are unix milliseconds (BIGINT), flags are 0/1 BIGINT, lists and maps are JSON text, so the
-- same queries run on both backends through sqlx's Any driver.
CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    plan        TEXT NOT NULL DEFAULT 'free',
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name          TEXT NOT NULL DEFAULT '',
    prefix        TEXT NOT NULL UNIQUE,
    secret_hash   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_team ON api_keys(team_id);

CREATE TABLE domains (
    id                  TEXT PRIMARY KEY,
    team_id             TEXT REFERENCES teams(id) ON DELETE CASCADE,
    host                TEXT NOT NULL UNIQUE,
    is_default          BIGINT NOT NULL DEFAULT 0,
    verified            BIGINT NOT NULL DEFAULT 0,
    root_redirect       TEXT,
    not_found_redirect  TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE links (
    id              TEXT PRIMARY KEY,
    team_id         TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    domain_id       TEXT NOT NULL REFERENCES domains(id),
    slug            TEXT NOT NULL,
    destination_url TEXT NOT NULL,
    title           TEXT,
    description     TEXT,
    tags            TEXT NOT NULL DEFAULT '[]',
    password_hash   TEXT,
    expires_at      BIGINT,
    expired_url     TEXT,
    click_limit     BIGINT,
    geo_targets     TEXT NOT NULL DEFAULT '{}',
    device_targets  TEXT NOT NULL DEFAULT '{}',
    ios_url         TEXT,
    android_url     TEXT,
    utm_source      TEXT,
    utm_medium      TEXT,
    utm_campaign    TEXT,
    utm_term        TEXT,
    utm_content     TEXT,
    external_id     TEXT,
    redirect_type   BIGINT NOT NULL DEFAULT 302,
    forward_query   BIGINT NOT NULL DEFAULT 1,
    active          BIGINT NOT NULL DEFAULT 1,
    archived        BIGINT NOT NULL DEFAULT 0,
    visible         BIGINT NOT NULL DEFAULT 1,
    clicks          BIGINT NOT NULL DEFAULT 0,
    channel         TEXT NOT NULL DEFAULT 'api',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (domain_id, slug),
    UNIQUE (team_id, external_id)
);
CREATE INDEX links_team_created ON links(team_id, created_at);

-- One row per (link, tag): tag filters use an index instead of scanning JSON.
CREATE TABLE link_tags (
    link_id  TEXT NOT NULL REFERENCES links(id) ON DELETE CASCADE,
    team_id  TEXT NOT NULL,
    tag      TEXT NOT NULL,
    PRIMARY KEY (link_id, tag)
);
CREATE INDEX link_tags_team_tag ON link_tags(team_id, tag);

-- The change log that feeds the proxies: seq is the feed sequence.
CREATE TABLE changes (
    seq         BIGSERIAL PRIMARY KEY,
    op          TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
