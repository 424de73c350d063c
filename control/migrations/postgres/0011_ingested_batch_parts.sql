-- Click ingest on Postgres runs one writer per partition of link ids (db::clicks::PARTS), so
-- the writers never wait on each other's rollup and counter rows; a batch is stored as one part
-- per partition its events fall in, each in its own transaction. The idempotency key is so
-- (batch_id, part). Rows from before this migration stood for a whole batch: part -1, which
-- every part of a redelivered batch checks for. Kept column-for-column equal to
-- sqlite/0011_ingested_batch_parts.sql.
ALTER TABLE ingested_batches ADD COLUMN part BIGINT NOT NULL DEFAULT -1;
ALTER TABLE ingested_batches ALTER COLUMN part DROP DEFAULT;
ALTER TABLE ingested_batches DROP CONSTRAINT ingested_batches_pkey;
ALTER TABLE ingested_batches ADD PRIMARY KEY (batch_id, part);
