-- The list endpoint's sort orders end with the link id as a tie-break (ORDER BY col, id), and a
-- page is found by skipping OFFSET rows. With (team_id, col) alone every skipped row was read from
-- the table to sort ties by id: 70-150 ms for a page deep in 100,000 links. With the id in the
-- index the skipping is an index-only scan, and only the page's rows are read. Identical on
-- SQLite and Postgres.
DROP INDEX links_team_created;
DROP INDEX links_team_updated;
DROP INDEX links_team_clicks;
DROP INDEX links_team_slug;
CREATE INDEX links_team_created ON links(team_id, created_at, id);
CREATE INDEX links_team_updated ON links(team_id, updated_at, id);
CREATE INDEX links_team_clicks ON links(team_id, clicks, id);
CREATE INDEX links_team_slug ON links(team_id, slug, id);
