-- The idempotency key of click ingest becomes (batch_id, part); see
-- postgres/0011_ingested_batch_parts.sql. SQLite cannot change a primary key in place, so the
-- table is rebuilt; rows from before stood for a whole batch (part -1).
CREATE TABLE ingested_batches_parts (
    batch_id     TEXT NOT NULL,
    proxy_id     TEXT NOT NULL,
    events       BIGINT NOT NULL,
    ingested_at  BIGINT NOT NULL,
    part         BIGINT NOT NULL,
    PRIMARY KEY (batch_id, part)
);
INSERT INTO ingested_batches_parts (batch_id, proxy_id, events, ingested_at, part)
    SELECT batch_id, proxy_id, events, ingested_at, -1 FROM ingested_batches;
DROP TABLE ingested_batches;
ALTER TABLE ingested_batches_parts RENAME TO ingested_batches;
CREATE INDEX ingested_batches_at ON ingested_batches(ingested_at);
