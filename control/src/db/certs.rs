//! The certificate each custom domain serves, its private key sealed (`crate::seal`). Written by
//! the ACME worker (with `TlsChanged` in the same transaction), read for the fleet's TLS state,
//! the certificate API and the renewal scan.

use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored certificate. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub domain_id: String,
    pub host: String,
    /// Leaf first, then intermediates (PEM).
    pub chain_pem: String,
    /// `seal(PKCS#8 PEM)`.
    pub key_sealed: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
}

const COLUMNS: &str = "c.domain_id, c.host, c.chain_pem, c.key_sealed, c.not_before, c.not_after, \
     c.issued_at";

fn from_row(row: &AnyRow) -> sqlx::Result<CertRow> {
    Ok(CertRow {
        domain_id: row.try_get("domain_id")?,
        host: row.try_get("host")?,
        chain_pem: row.try_get("chain_pem")?,
        key_sealed: row.try_get("key_sealed")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        issued_at: row.try_get("issued_at")?,
    })
}

/// Stores `cert` as its domain's certificate, replacing any previous one.
pub async fn store(conn: &mut sqlx::AnyConnection, cert: &CertRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO certificates \
         (domain_id, host, chain_pem, key_sealed, not_before, not_after, issued_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (domain_id) DO UPDATE SET host = excluded.host, \
         chain_pem = excluded.chain_pem, key_sealed = excluded.key_sealed, \
         not_before = excluded.not_before, not_after = excluded.not_after, \
         issued_at = excluded.issued_at",
    )
    .bind(&cert.domain_id)
    .bind(&cert.host)
    .bind(&cert.chain_pem)
    .bind(&cert.key_sealed)
    .bind(cert.not_before)
    .bind(cert.not_after)
    .bind(cert.issued_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A domain's certificate, if it has one.
pub async fn get<'c, E>(exec: E, domain_id: &str) -> sqlx::Result<Option<CertRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!("SELECT {COLUMNS} FROM certificates c WHERE c.domain_id = $1");
    let row = sqlx::query(&sql)
        .bind(domain_id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every certificate not yet expired at `now_ms`, with its domain's `https_redirect`, by host:
/// what the fleet serves.
pub async fn list_live<'c, E>(exec: E, now_ms: i64) -> sqlx::Result<Vec<(CertRow, bool)>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!(
        "SELECT {COLUMNS}, d.https_redirect FROM certificates c \
         JOIN domains d ON d.id = c.domain_id WHERE c.not_after > $1 ORDER BY c.host"
    );
    let rows = sqlx::query(&sql).bind(now_ms).fetch_all(exec).await?;
    rows.iter()
        .map(|r| Ok((from_row(r)?, r.try_get::<i64, _>("https_redirect")? != 0)))
        .collect()
}
