-- Saved QR codes. `content` is exactly what the code encodes (for kind 'link', the link's
-- short URL with ?qr=1, so its scans are counted as QR clicks of that link); `style` is the
-- drawing style as JSON (size, margin, colours, cornerRadius, errorCorrection).
CREATE TABLE qr_codes (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    link_id     TEXT,
    title       TEXT NOT NULL,
    content     TEXT NOT NULL,
    style       TEXT NOT NULL,
    format      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX qr_codes_team_created ON qr_codes(team_id, created_at, id);
CREATE INDEX qr_codes_team_link ON qr_codes(team_id, link_id);
