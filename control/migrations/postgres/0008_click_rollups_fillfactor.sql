-- Click ingest upserts every touched rollup row once per group transaction. With full pages
-- each such update moves the row to another page and inserts into both indexes; leaving 30%
-- of each page free lets most updates stay on their page (HOT: no index writes), measured ~35%
-- faster upserts on Postgres 15. Affects new pages only; no rewrite, no columns change.
-- SQLite has no equivalent (sqlite/0008_click_rollups_fillfactor.sql is empty on purpose).
ALTER TABLE click_rollups SET (fillfactor = 70);
