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
