-- Custom domains, certificates and ACME (issue 8). Kept column-for-column equal between
-- sqlite/ and postgres/. Times are unix milliseconds.

-- Lifecycle: pending → verified → issuing → active, or failed (with failure_reason). The default
-- domain and domains that existed before this migration are active. `verified` stays the flag
-- the link API checks (ownership proven); `status` is what the API shows.
ALTER TABLE domains ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
-- 'dns' (TXT record at _sling-challenge.<host>) or 'http' (token at /.well-known/sling-verify/).
ALTER TABLE domains ADD COLUMN verify_method TEXT;
ALTER TABLE domains ADD COLUMN verify_token TEXT;
ALTER TABLE domains ADD COLUMN failure_reason TEXT;
ALTER TABLE domains ADD COLUMN verified_at BIGINT;
ALTER TABLE domains ADD COLUMN https_redirect BIGINT NOT NULL DEFAULT 0;

-- The certificate a domain serves. The private key is sealed (AEAD, key from configuration):
-- key_sealed = base64(nonce || ciphertext of the PKCS#8 PEM).
CREATE TABLE certificates (
    domain_id    TEXT PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
    host         TEXT NOT NULL,
    chain_pem    TEXT NOT NULL,
    key_sealed   TEXT NOT NULL,
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    issued_at    BIGINT NOT NULL
);

-- One ACME account per directory URL; its credentials (JSON from instant-acme) sealed as above.
CREATE TABLE acme_accounts (
    directory_url      TEXT PRIMARY KEY,
    credentials_sealed TEXT NOT NULL,
    created_at         BIGINT NOT NULL
);

-- Work for the ACME worker: at most one row, hence one order in flight, per domain. A replica
-- takes a row by setting lease_owner/lease_until where the lease is free or expired.
-- state: 'due' (order when next_attempt_at has passed), 'done', 'failed' (gave up).
-- kind: 'issue' or 'renew'.
CREATE TABLE acme_orders (
    domain_id        TEXT PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
    state            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX acme_orders_due ON acme_orders(state, next_attempt_at);

-- Plain-text answers every proxy serves (HTTP-01 key authorisations, sling-verify tokens).
CREATE TABLE well_known (
    host        TEXT NOT NULL,
    path        TEXT NOT NULL,
    body        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (host, path)
);

-- Events for webhooks (domain.verified, certificate.issued, certificate.renewed,
-- certificate.failed, ...), written in the same transaction as the change they describe.
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,
    team_id     TEXT,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX outbox_created ON outbox(created_at, id);
