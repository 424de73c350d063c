-- Human views of a gallery's published page, counted by click ingest (the proxies record a view
-- as a click event whose link id is the gallery's id).
ALTER TABLE galleries ADD COLUMN views BIGINT NOT NULL DEFAULT 0;
