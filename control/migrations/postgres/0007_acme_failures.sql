-- ACME orders count two things apart: `attempts` (every try, for the backoff) and `failures`
-- (tries the CA or the self-check answered with a real failure). Only failures give up on an
-- order: an outage of the CA or the database delays work, never drops it.
ALTER TABLE acme_orders ADD COLUMN failures BIGINT NOT NULL DEFAULT 0;
