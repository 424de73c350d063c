//! Stats queries over the click tables, for one link or a whole team. Clicks come from the
//! 15-minute rollups (kept forever); unique visitors are counted from the raw events (kept for
//! the retention period) because distinct counts cannot be summed across buckets.
//!
//! Every range is `[from_ms, to_ms)` on 15-minute bucket edges. `include_bots` is bound as the
//! multiplier / threshold 0 or 1: `clicks + bots * $n` and `bot <= $n`.

use sqlx::Row;

use super::Db;
use super::clicks::{RowSet, Val};

/// Whose clicks: one link (or a gallery's page views, by its id), or every link of a team. The
/// caller has already checked that the link belongs to the team.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Link(&'a str),
    Team(&'a str),
}

impl Scope<'_> {
    /// The column that selects the scope's rows; for a team, also leaving out its galleries'
    /// page views (stored like clicks, under the gallery's id), which are no link's clicks.
    fn column(&self, alias: &str) -> String {
        use sling_shared::link::BIO_PAGE_ID_PREFIX as PAGE;
        match self {
            Scope::Link(_) => format!("{alias}link_id"),
            Scope::Team(_) => format!(
                "substr({alias}link_id, 1, {}) <> '{PAGE}' AND {alias}team_id",
                PAGE.len()
            ),
        }
    }
    fn id(&self) -> &str {
        match self {
            Scope::Link(id) | Scope::Team(id) => id,
        }
    }
}

/// Clicks per (dimension, value) over the range, `total` and `qr` included.
pub async fn breakdown(
    db: &Db,
    scope: Scope<'_>,
    from_ms: i64,
    to_ms: i64,
    include_bots: bool,
) -> sqlx::Result<Vec<(String, String, i64)>> {
    let sql = format!(
        "SELECT dim, dim_value, CAST(SUM(clicks + bots * $1) AS BIGINT) FROM click_rollups \
         WHERE {} = $2 AND bucket_ms >= $3 AND bucket_ms < $4 GROUP BY dim, dim_value",
        scope.column("")
    );
    sqlx::query(&sql)
        .bind(i64::from(include_bots))
        .bind(scope.id())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Clicks per 15-minute bucket (only buckets with rows).
pub async fn series(
    db: &Db,
    scope: Scope<'_>,
    from_ms: i64,
    to_ms: i64,
    include_bots: bool,
) -> sqlx::Result<Vec<(i64, i64)>> {
    let sql = format!(
        "SELECT bucket_ms, CAST(SUM(clicks + bots * $1) AS BIGINT) FROM click_rollups \
         WHERE {} = $2 AND dim = 'total' AND bucket_ms >= $3 AND bucket_ms < $4 \
         GROUP BY bucket_ms",
        scope.column("")
    );
    sqlx::query(&sql)
        .bind(i64::from(include_bots))
        .bind(scope.id())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Distinct visitors over the whole range.
pub async fn uniques(
    db: &Db,
    scope: Scope<'_>,
    from_ms: i64,
    to_ms: i64,
    include_bots: bool,
) -> sqlx::Result<i64> {
    let sql = format!(
        "SELECT CAST(COUNT(DISTINCT visitor) AS BIGINT) FROM click_events \
         WHERE bot <= $1 AND {} = $2 AND at_ms >= $3 AND at_ms < $4",
        scope.column("")
    );
    sqlx::query(&sql)
        .bind(i64::from(include_bots))
        .bind(scope.id())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&db.pool)
        .await?
        .try_get(0)
}

const BOUND_COLS: &[(&str, &str)] = &[("i", "bigint"), ("lo", "bigint"), ("hi", "bigint")];

/// Distinct visitors per bucket `[bounds[i], bounds[i + 1])`, as (i, count) for the non-empty
/// ones. The bucket list travels as a row set (see `db::clicks::RowSet`).
pub async fn uniques_per_bucket(
    db: &Db,
    scope: Scope<'_>,
    bounds: &[i64],
    include_bots: bool,
) -> sqlx::Result<Vec<(usize, i64)>> {
    let mut list = RowSet::new(BOUND_COLS, bounds.len());
    for (i, w) in bounds.windows(2).enumerate() {
        list.push(&[
            Val::Int(i64::try_from(i).unwrap_or(i64::MAX)),
            Val::Int(w[0]),
            Val::Int(w[1]),
        ]);
    }
    if list.is_empty() {
        return Ok(Vec::new());
    }
    // Row-set parameters first: SQLite numbers `$N` parameters in order of appearance.
    let (src, params) = list.source(db.backend, 1, "b")?;
    let (team_or_link, bots) = (params.len() + 1, params.len() + 2);
    let sql = format!(
        "SELECT b.i, CAST(COUNT(DISTINCT ev.visitor) AS BIGINT) FROM {src} \
         JOIN click_events ev ON {col} = ${team_or_link} AND ev.at_ms >= b.lo \
         AND ev.at_ms < b.hi AND ev.bot <= ${bots} GROUP BY b.i",
        col = scope.column("ev.")
    );
    let mut q = sqlx::query(&sql);
    for p in params {
        q = q.bind(p);
    }
    let q = q.bind(scope.id()).bind(i64::from(include_bots));
    q.fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| {
            let i: i64 = r.try_get(0)?;
            Ok((usize::try_from(i).unwrap_or(usize::MAX), r.try_get(1)?))
        })
        .collect()
}

/// A team's most-clicked existing links over the range.
#[derive(Debug, Clone)]
pub struct TopLink {
    pub id: String,
    pub slug: String,
    pub domain: String,
    pub clicks: i64,
}

pub async fn top_links(
    db: &Db,
    team_id: &str,
    from_ms: i64,
    to_ms: i64,
    include_bots: bool,
    limit: i64,
) -> sqlx::Result<Vec<TopLink>> {
    let rows = sqlx::query(
        "SELECT r.link_id, l.slug, d.host, CAST(SUM(r.clicks + r.bots * $1) AS BIGINT) AS n \
         FROM click_rollups r JOIN links l ON l.id = r.link_id \
         JOIN domains d ON d.id = l.domain_id \
         WHERE r.team_id = $2 AND l.team_id = $3 AND r.dim = 'total' \
         AND r.bucket_ms >= $4 AND r.bucket_ms < $5 \
         GROUP BY r.link_id, l.slug, d.host \
         ORDER BY n DESC, r.link_id LIMIT $6",
    )
    .bind(i64::from(include_bots))
    .bind(team_id)
    .bind(team_id)
    .bind(from_ms)
    .bind(to_ms)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TopLink {
                id: r.try_get(0)?,
                slug: r.try_get(1)?,
                domain: r.try_get(2)?,
                clicks: r.try_get(3)?,
            })
        })
        .filter(|t: &sqlx::Result<TopLink>| t.as_ref().map_or(true, |t| t.clicks > 0))
        .collect()
}
