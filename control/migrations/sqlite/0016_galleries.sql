-- Link-in-bio pages. A gallery is the draft a team edits; `published_html` is the page the
-- proxies serve at /@handle on its domain (rendered when it was last published; NULL while
-- unpublished), so edits reach visitors only when the team publishes them again.
CREATE TABLE galleries (
    id              TEXT PRIMARY KEY,
    team_id         TEXT NOT NULL,
    domain_id       TEXT NOT NULL,
    handle          TEXT NOT NULL,
    title           TEXT NOT NULL,
    bio             TEXT,
    avatar_url      TEXT,
    theme           TEXT NOT NULL,
    custom_css      TEXT,
    published_html  TEXT,
    published_at    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX galleries_domain_handle ON galleries(domain_id, handle);
CREATE INDEX galleries_team_created ON galleries(team_id, created_at, id);

-- A gallery's entries, shown in `position` order. `kind`: link, header, divider, embed, image.
CREATE TABLE gallery_items (
    id          TEXT PRIMARY KEY,
    gallery_id  TEXT NOT NULL,
    team_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT,
    url         TEXT,
    image_url   TEXT,
    active      BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX gallery_items_gallery ON gallery_items(gallery_id, position);
