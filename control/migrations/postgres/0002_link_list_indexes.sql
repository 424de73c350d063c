-- Indexes for the sort orders of GET /api/v1/links (createdAt is covered by
-- links_team_created in 0001; (team_id, external_id) by its unique constraint; api_keys.prefix
-- by its unique constraint). Identical on SQLite and Postgres.
CREATE INDEX links_team_updated ON links(team_id, updated_at);
CREATE INDEX links_team_clicks ON links(team_id, clicks);
CREATE INDEX links_team_slug ON links(team_id, slug);
