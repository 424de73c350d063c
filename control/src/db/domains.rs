//! Domain lookups the link API needs: which domain a host names, whether a team may put links
//! on it, and whether a URL points back at a host sling itself serves.

use sling_shared::feed::ChangeOp;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRow {
    pub id: String,
    /// `None` for the default domain (shared by every team).
    pub team_id: Option<String>,
    pub host: String,
    pub is_default: bool,
    pub verified: bool,
    pub root_redirect: Option<String>,
    pub not_found_redirect: Option<String>,
}

impl DomainRow {
    /// The change that tells proxies about this domain.
    pub fn upsert_op(&self) -> ChangeOp {
        ChangeOp::UpsertDomain {
            id: self.id.clone(),
            host: self.host.clone(),
            root_redirect: self.root_redirect.clone(),
            not_found_redirect: self.not_found_redirect.clone(),
            pages: Default::default(),
        }
    }
}

pub(crate) const COLUMNS: &str =
    "id, team_id, host, is_default, verified, root_redirect, not_found_redirect";

pub(crate) fn from_row(row: &AnyRow) -> sqlx::Result<DomainRow> {
    Ok(DomainRow {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        host: row.try_get("host")?,
        is_default: row.try_get::<i64, _>("is_default")? != 0,
        verified: row.try_get::<i64, _>("verified")? != 0,
        root_redirect: row.try_get("root_redirect")?,
        not_found_redirect: row.try_get("not_found_redirect")?,
    })
}

pub async fn by_host<'c, E>(exec: E, host: &str) -> sqlx::Result<Option<DomainRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!("SELECT {COLUMNS} FROM domains WHERE host = $1");
    let row = sqlx::query(&sql).bind(host).fetch_optional(exec).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn default_domain<'c, E>(exec: E) -> sqlx::Result<Option<DomainRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!(
        "SELECT {COLUMNS} FROM domains WHERE is_default = 1 ORDER BY created_at, id LIMIT 1"
    );
    let row = sqlx::query(&sql).fetch_optional(exec).await?;
    row.as_ref().map(from_row).transpose()
}

/// Is `host` a domain sling serves (any team's, verified or not, or the default)?
pub async fn is_served_host(db: &Db, host: &str) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT id FROM domains WHERE host = $1")
        .bind(host)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.is_some())
}

/// The domains a team sees: the default domain (shared by every team) and its own, default first.
pub async fn list_visible(db: &Db, team_id: &str) -> sqlx::Result<Vec<DomainRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM domains WHERE is_default = 1 OR team_id = $1 \
         ORDER BY is_default DESC, created_at, id"
    );
    let rows = sqlx::query(&sql).bind(team_id).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

/// One domain the team sees (the default domain or its own); another team's is `None`.
pub async fn get_visible<'c, E>(exec: E, team_id: &str, id: &str) -> sqlx::Result<Option<DomainRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql =
        format!("SELECT {COLUMNS} FROM domains WHERE id = $1 AND (is_default = 1 OR team_id = $2)");
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(team_id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stores a domain's per-domain behaviour.
pub async fn update_behaviour(
    conn: &mut sqlx::AnyConnection,
    row: &DomainRow,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE domains SET root_redirect = $1, not_found_redirect = $2, updated_at = $3 \
         WHERE id = $4",
    )
    .bind(&row.root_redirect)
    .bind(&row.not_found_redirect)
    .bind(now_ms)
    .bind(&row.id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
