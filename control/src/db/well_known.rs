//! Plain-text answers every proxy serves at a well-known path: the key authorisations of ACME
//! HTTP-01 challenges and the tokens of `/.well-known/sling-verify/`. Rows reach the proxies in
//! the TLS state (`/internal/v1/tls`); a writer appends `TlsChanged` to the feed in the same
//! transaction so they refetch it. Rows expire: `list_live` hides expired ones at once and
//! `prune` deletes them later.

use sling_shared::tls::WellKnownEntry;
use sqlx::Row;

use super::Db;

/// Inserts or replaces the answer at (`host`, `path`).
pub async fn put(
    conn: &mut sqlx::AnyConnection,
    host: &str,
    path: &str,
    body: &str,
    expires_at_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO well_known (host, path, body, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (host, path) DO UPDATE SET body = excluded.body, \
         expires_at = excluded.expires_at",
    )
    .bind(host)
    .bind(path)
    .bind(body)
    .bind(expires_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes one answer; true when there was one.
pub async fn delete(conn: &mut sqlx::AnyConnection, host: &str, path: &str) -> sqlx::Result<bool> {
    let res = sqlx::query("DELETE FROM well_known WHERE host = $1 AND path = $2")
        .bind(host)
        .bind(path)
        .execute(conn)
        .await?;
    Ok(res.rows_affected() > 0)
}

/// Deletes every answer for `host` (the domain is gone); returns how many.
pub async fn delete_host(conn: &mut sqlx::AnyConnection, host: &str) -> sqlx::Result<u64> {
    let res = sqlx::query("DELETE FROM well_known WHERE host = $1")
        .bind(host)
        .execute(conn)
        .await?;
    Ok(res.rows_affected())
}

/// Every answer not yet expired at `now_ms`, ordered by host and path.
pub async fn list_live<'c, E>(exec: E, now_ms: i64) -> sqlx::Result<Vec<WellKnownEntry>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT host, path, body FROM well_known WHERE expires_at > $1 ORDER BY host, path",
    )
    .bind(now_ms)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(WellKnownEntry {
                host: r.try_get("host")?,
                path: r.try_get("path")?,
                body: r.try_get("body")?,
            })
        })
        .collect()
}

/// Deletes expired answers; returns how many. No `TlsChanged` is appended: nobody should ask
/// for an expired answer any more, and proxies drop their copy at their next refetch.
pub async fn prune(db: &Db, now_ms: i64) -> sqlx::Result<u64> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query("DELETE FROM well_known WHERE expires_at <= $1")
        .bind(now_ms)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await?;
    Ok(res.rows_affected())
}
