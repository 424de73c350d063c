//! Domains: lookups the link API needs (which domain a host names, whether a team may put links
//! on it, whether a URL points back at a host sling itself serves), and the custom-domain
//! lifecycle of `api/domains.rs` (add, verify, fail, delete). Team-scoped functions take the
//! team id and never see another team's rows.

use sling_shared::feed::ChangeOp;
use sling_shared::link::DomainPages;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRow {
    pub id: String,
    /// `None` for the default domain and premium domains (shared by every team).
    pub team_id: Option<String>,
    pub host: String,
    pub is_default: bool,
    /// Ownership proven: what the link API checks. Stays true through issuing/active/failed.
    pub verified: bool,
    pub root_redirect: Option<String>,
    pub not_found_redirect: Option<String>,
    /// `pending`, `verified`, `issuing`, `active` or `failed`.
    pub status: String,
    /// `dns` or `http` once verified.
    pub verify_method: Option<String>,
    pub verify_token: Option<String>,
    pub failure_reason: Option<String>,
    pub verified_at: Option<i64>,
    pub https_redirect: bool,
    /// The domain's own wording for its landing, 404 and 410 pages.
    pub pages: DomainPages,
    pub created_at: i64,
}

impl DomainRow {
    /// The change that tells proxies about this domain.
    pub fn upsert_op(&self) -> ChangeOp {
        ChangeOp::UpsertDomain {
            id: self.id.clone(),
            host: self.host.clone(),
            root_redirect: self.root_redirect.clone(),
            not_found_redirect: self.not_found_redirect.clone(),
            pages: self.pages.clone(),
        }
    }
}

pub(crate) const COLUMNS: &str = "id, team_id, host, is_default, verified, root_redirect, \
     not_found_redirect, status, verify_method, verify_token, failure_reason, verified_at, \
     https_redirect, pages, created_at";

pub(crate) fn from_row(row: &AnyRow) -> sqlx::Result<DomainRow> {
    Ok(DomainRow {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        host: row.try_get("host")?,
        is_default: row.try_get::<i64, _>("is_default")? != 0,
        verified: row.try_get::<i64, _>("verified")? != 0,
        root_redirect: row.try_get("root_redirect")?,
        not_found_redirect: row.try_get("not_found_redirect")?,
        status: row.try_get("status")?,
        verify_method: row.try_get("verify_method")?,
        verify_token: row.try_get("verify_token")?,
        failure_reason: row.try_get("failure_reason")?,
        verified_at: row.try_get("verified_at")?,
        https_redirect: row.try_get::<i64, _>("https_redirect")? != 0,
        pages: pages_from_json(&row.try_get::<String, _>("pages")?)?,
        created_at: row.try_get("created_at")?,
    })
}

/// The stored JSON of `domains.pages` (written only by [`pages_json`]).
fn pages_from_json(s: &str) -> sqlx::Result<DomainPages> {
    serde_json::from_str(s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// `pages` as stored.
pub fn pages_json(pages: &DomainPages) -> sqlx::Result<String> {
    serde_json::to_string(pages).map_err(|e| sqlx::Error::Encode(Box::new(e)))
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
        "UPDATE domains SET root_redirect = $1, not_found_redirect = $2, pages = $3, \
         updated_at = $4 WHERE id = $5",
    )
    .bind(&row.root_redirect)
    .bind(&row.not_found_redirect)
    .bind(pages_json(&row.pages)?)
    .bind(now_ms)
    .bind(&row.id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Status names of the lifecycle (see the 0005 migration).
pub mod status {
    pub const PENDING: &str = "pending";
    pub const VERIFIED: &str = "verified";
    pub const FAILED: &str = "failed";
}

/// One of the team's own custom domains (never the default or a premium domain).
pub async fn get_own<'c, E>(exec: E, team_id: &str, id: &str) -> sqlx::Result<Option<DomainRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!("SELECT {COLUMNS} FROM domains WHERE id = $1 AND team_id = $2");
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(team_id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// How many custom domains the team has (every status counts: a pending one is reserved).
pub async fn count_own(conn: &mut sqlx::AnyConnection, team_id: &str) -> sqlx::Result<u64> {
    let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM domains WHERE team_id = $1")
        .bind(team_id)
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
}

/// Inserts a new custom domain as given.
pub async fn insert(
    conn: &mut sqlx::AnyConnection,
    d: &DomainRow,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO domains (id, team_id, host, is_default, verified, root_redirect, \
         not_found_redirect, status, verify_method, verify_token, failure_reason, verified_at, \
         https_redirect, created_at, updated_at) \
         VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&d.id)
    .bind(&d.team_id)
    .bind(&d.host)
    .bind(i64::from(d.verified))
    .bind(&d.root_redirect)
    .bind(&d.not_found_redirect)
    .bind(&d.status)
    .bind(&d.verify_method)
    .bind(&d.verify_token)
    .bind(&d.failure_reason)
    .bind(d.verified_at)
    .bind(i64::from(d.https_redirect))
    .bind(d.created_at)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a still unverified domain of the team verified by `method`; false when it is gone or
/// was verified meanwhile (a concurrent check, the background task), so it happens once.
pub async fn mark_verified(
    conn: &mut sqlx::AnyConnection,
    team_id: &str,
    id: &str,
    method: &str,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let res = sqlx::query(
        "UPDATE domains SET verified = 1, status = 'verified', verify_method = $1, \
         verified_at = $2, failure_reason = NULL, updated_at = $2 \
         WHERE id = $3 AND team_id = $4 AND verified = 0",
    )
    .bind(method)
    .bind(now_ms)
    .bind(id)
    .bind(team_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Records why an unverified domain is not verified yet, and its status (`pending` to keep
/// trying, `failed` to stop). No-op on a verified domain.
pub async fn record_check_failure(
    conn: &mut sqlx::AnyConnection,
    team_id: &str,
    id: &str,
    status: &str,
    reason: &str,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let res = sqlx::query(
        "UPDATE domains SET status = $1, failure_reason = $2, updated_at = $3 \
         WHERE id = $4 AND team_id = $5 AND verified = 0",
    )
    .bind(status)
    .bind(reason)
    .bind(now_ms)
    .bind(id)
    .bind(team_id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Unverified custom domains still being checked (`pending`), oldest first.
pub async fn pending(db: &Db, limit: usize) -> sqlx::Result<Vec<DomainRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM domains WHERE verified = 0 AND status = 'pending' \
         AND team_id IS NOT NULL ORDER BY created_at, id LIMIT $1"
    );
    let rows = sqlx::query(&sql)
        .bind(limit as i64)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Sets the plain-HTTP → HTTPS redirect flag.
pub async fn set_https_redirect(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    on: bool,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE domains SET https_redirect = $1, updated_at = $2 WHERE id = $3")
        .bind(i64::from(on))
        .bind(now_ms)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a team's custom domain and everything hanging off it: its links (and their tags),
/// galleries, well-known answers, ACME order and certificate. Returns how many links went; `None` when the
/// team has no such custom domain. The caller appends `DeleteDomain` (which drops the links at
/// the edge too) and `TlsChanged` in the same transaction.
pub async fn delete_own(
    conn: &mut sqlx::AnyConnection,
    team_id: &str,
    id: &str,
) -> sqlx::Result<Option<u64>> {
    let Some(d) = get_own(&mut *conn, team_id, id).await? else {
        return Ok(None);
    };
    sqlx::query(
        "DELETE FROM link_tags WHERE link_id IN (SELECT id FROM links WHERE domain_id = $1)",
    )
    .bind(&d.id)
    .execute(&mut *conn)
    .await?;
    let links = sqlx::query("DELETE FROM links WHERE domain_id = $1 AND team_id = $2")
        .bind(&d.id)
        .bind(team_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    super::galleries::delete_on_domain(&mut *conn, &d.id).await?;
    super::well_known::delete_host(&mut *conn, &d.host).await?;
    // Explicit, though ON DELETE CASCADE covers both: a worker holding the order's lease finds
    // the row gone and stores nothing.
    sqlx::query("DELETE FROM acme_orders WHERE domain_id = $1")
        .bind(&d.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM certificates WHERE domain_id = $1")
        .bind(&d.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM domains WHERE id = $1 AND team_id = $2")
        .bind(&d.id)
        .bind(team_id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(links))
}

/// Queues the first certificate order of a newly verified domain. The ACME worker takes it when
/// ACME is configured and leaves it alone otherwise; an existing row is kept.
pub async fn request_certificate(
    conn: &mut sqlx::AnyConnection,
    domain_id: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO acme_orders (domain_id, state, kind, attempts, next_attempt_at, updated_at) \
         VALUES ($1, 'due', 'issue', 0, $2, $2) ON CONFLICT (domain_id) DO NOTHING",
    )
    .bind(domain_id)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes sure every premium host (`--premium-domains`) has a shared row (no team, verified,
/// active) so links can live on it, publishing `UpsertDomain` for each row it creates; returns
/// the feed sequence of those (0 when none). A host already held by a team is left alone
/// (logged): it is theirs.
pub async fn ensure_premium(db: &Db, hosts: &[String]) -> sqlx::Result<u64> {
    if hosts.is_empty() {
        return Ok(0);
    }
    let now = super::now_ms();
    let mut w = db.begin_write().await?;
    let mut ops = Vec::new();
    for host in hosts {
        match by_host(&mut *w.tx, host).await? {
            Some(d) if d.team_id.is_some() || d.is_default => {
                tracing::warn!(host = %host, domain_id = %d.id,
                    "premium domain is already another domain; not shared");
            }
            Some(_) => {}
            None => {
                let d = DomainRow {
                    id: crate::ids::new_id("dom"),
                    team_id: None,
                    host: host.clone(),
                    is_default: false,
                    verified: true,
                    root_redirect: None,
                    not_found_redirect: None,
                    status: "active".into(),
                    verify_method: None,
                    verify_token: None,
                    failure_reason: None,
                    verified_at: Some(now),
                    https_redirect: false,
                    pages: Default::default(),
                    created_at: now,
                };
                insert(&mut w.tx, &d, now).await?;
                ops.push(d.upsert_op());
            }
        }
    }
    let seq = if ops.is_empty() {
        0
    } else {
        super::changes::append(&mut w, &ops, now).await?
    };
    w.commit().await?;
    Ok(seq)
}
