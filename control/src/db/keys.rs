//! API key rows. Secrets never reach the database: only the lookup prefix and the SHA-256 (see
//! `crate::auth`).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::Db;
use crate::auth;

/// A key as authentication needs it.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub team_id: String,
    pub name: String,
    /// The lookup prefix (first 12 characters of the key), safe to show.
    pub prefix: String,
    pub secret_hash: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, team_id, name, prefix, secret_hash, scopes, created_at, expires_at, \
    last_used_at, revoked_at";

fn from_row(row: &AnyRow) -> sqlx::Result<KeyRow> {
    let scopes: String = row.try_get("scopes")?;
    Ok(KeyRow {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        secret_hash: row.try_get("secret_hash")?,
        scopes: serde_json::from_str(&scopes).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub async fn find_by_prefix(db: &Db, prefix: &str) -> sqlx::Result<Option<KeyRow>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE prefix = $1");
    let row = sqlx::query(&sql)
        .bind(prefix)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The key with this prefix and its team's plan, in one query (authentication's only read).
pub async fn find_for_auth(db: &Db, prefix: &str) -> sqlx::Result<Option<(KeyRow, String)>> {
    let sql = "SELECT k.id, k.team_id, k.name, k.prefix, k.secret_hash, k.scopes, k.created_at, \
        k.expires_at, k.last_used_at, k.revoked_at, t.plan FROM api_keys k \
        JOIN teams t ON t.id = k.team_id WHERE k.prefix = $1";
    let row = sqlx::query(sql)
        .bind(prefix)
        .fetch_optional(&db.pool)
        .await?;
    match row {
        Some(r) => Ok(Some((from_row(&r)?, r.try_get("plan")?))),
        None => Ok(None),
    }
}

/// A team's keys, newest first (revoked ones too).
pub async fn list(db: &Db, team_id: &str) -> sqlx::Result<Vec<KeyRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE team_id = $1 ORDER BY created_at DESC, id DESC"
    );
    let rows = sqlx::query(&sql).bind(team_id).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

/// A team's key by id.
pub async fn get(db: &Db, team_id: &str, key_id: &str) -> sqlx::Result<Option<KeyRow>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE team_id = $1 AND id = $2");
    let row = sqlx::query(&sql)
        .bind(team_id)
        .bind(key_id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every key of every team, oldest first (for the CLI).
pub async fn list_all(db: &Db) -> sqlx::Result<Vec<KeyRow>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id");
    let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

/// Revokes a key by id or prefix, whatever its team (for the CLI); false when none matched.
pub async fn revoke_any(db: &Db, id_or_prefix: &str) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE (id = $2 OR prefix = $3) AND revoked_at IS NULL",
    )
    .bind(super::now_ms())
    .bind(id_or_prefix)
    .bind(id_or_prefix)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// Creates a key for `team_id` and returns `(key_id, secret)`; the secret is shown once and
/// never stored. `scopes` must come from [`auth::SCOPES`].
pub async fn create_key(
    db: &Db,
    team_id: &str,
    name: &str,
    scopes: &[String],
    expires_at_ms: Option<i64>,
) -> anyhow::Result<(String, String)> {
    let mut w = db.begin_write().await?;
    let out = insert_key(
        &mut w.tx,
        team_id,
        name,
        scopes,
        expires_at_ms,
        super::now_ms(),
    )
    .await?;
    w.commit().await?;
    Ok(out)
}

/// [`create_key`] inside a caller's transaction.
pub async fn insert_key(
    conn: &mut AnyConnection,
    team_id: &str,
    name: &str,
    scopes: &[String],
    expires_at_ms: Option<i64>,
    now_ms: i64,
) -> anyhow::Result<(String, String)> {
    anyhow::ensure!(!scopes.is_empty(), "a key needs at least one scope");
    for s in scopes {
        anyhow::ensure!(
            auth::is_known_scope(s),
            "unknown scope {s:?} (known: {})",
            auth::SCOPES.join(", ")
        );
    }
    let exists = sqlx::query("SELECT id FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(&mut *conn)
        .await?;
    anyhow::ensure!(exists.is_some(), "no team with id {team_id:?}");
    let id = crate::ids::new_id("key");
    let secret = auth::generate_secret();
    let prefix = auth::lookup_prefix(&secret)
        .ok_or_else(|| anyhow::anyhow!("generated key has an unexpected shape"))?;
    sqlx::query(
        "INSERT INTO api_keys (id, team_id, name, prefix, secret_hash, scopes, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(team_id)
    .bind(name)
    .bind(prefix)
    .bind(auth::hash_secret(&secret))
    .bind(serde_json::to_string(scopes)?)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok((id, secret))
}

/// Revokes a team's key; false when the team has no such key.
pub async fn revoke(db: &Db, team_id: &str, key_id: &str) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND team_id = $3 AND revoked_at IS NULL",
    )
    .bind(super::now_ms())
    .bind(key_id)
    .bind(team_id)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(res.rows_affected() > 0)
}

/// Records that a key was used at `now_ms`.
pub async fn touch(db: &Db, key_id: &str, now_ms: i64) -> sqlx::Result<()> {
    let mut w = db.begin_write().await?;
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(key_id)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await
}
