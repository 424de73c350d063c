-- Per-domain wording for the landing, 404 and 410 pages (issue 6): JSON of
-- sling_shared::link::DomainPages, '{}' for the built-in pages. Equal on both backends.
ALTER TABLE domains ADD COLUMN pages TEXT NOT NULL DEFAULT '{}';
