//! `api_logs` rows: batch insert, filtered listing, retention pruning (see `crate::api_logs`).

use sqlx::any::AnyArguments;
use sqlx::{Any, Row, query::Query};

use super::Db;
use crate::api_logs::Entry;

/// A stored log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub id: i64,
    pub key_prefix: String,
    pub method: String,
    pub path: String,
    pub status: i64,
    pub latency_us: i64,
    pub created_at: i64,
}

/// Inserts entries with one multi-row statement.
pub async fn insert_batch(db: &Db, entries: &[Entry]) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO api_logs (team_id, key_prefix, method, path, status, latency_us, created_at) VALUES ",
    );
    for i in 0..entries.len() {
        let b = i * 7;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7
        ));
    }
    let mut q = sqlx::query(&sql);
    for e in entries {
        q = q
            .bind(e.team_id.clone())
            .bind(e.key_prefix.clone())
            .bind(e.method.clone())
            .bind(e.path.clone())
            .bind(i64::from(e.status))
            .bind(i64::try_from(e.latency_us).unwrap_or(i64::MAX))
            .bind(e.at_ms);
    }
    let mut w = db.begin_write().await?;
    q.execute(&mut *w.tx).await?;
    w.commit().await
}

/// Filters of `GET /api/v1/api-logs`.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub method: Option<String>,
    pub status: Option<i64>,
    /// Path prefix.
    pub path: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: u32,
    pub offset: u64,
}

/// A team's log rows, newest first, and the total matching.
pub async fn list(db: &Db, team_id: &str, f: &LogFilter) -> sqlx::Result<(Vec<LogRow>, u64)> {
    let mut conds = vec!["team_id = $1".to_owned()];
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    if f.method.is_some() {
        conds.push(format!("method = ${}", next()));
    }
    if f.status.is_some() {
        conds.push(format!("status = ${}", next()));
    }
    if f.path.is_some() {
        conds.push(format!("path LIKE ${} ESCAPE '\\'", next()));
    }
    if f.from_ms.is_some() {
        conds.push(format!("created_at >= ${}", next()));
    }
    if f.to_ms.is_some() {
        conds.push(format!("created_at < ${}", next()));
    }
    let where_ = conds.join(" AND ");
    let count_sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM api_logs WHERE {where_}");
    let total: i64 = bind_filters(sqlx::query(&count_sql), team_id, f)
        .fetch_one(&db.pool)
        .await?
        .try_get(0)?;
    let (l, o) = (next(), next());
    let list_sql = format!(
        "SELECT id, key_prefix, method, path, status, latency_us, created_at FROM api_logs \
         WHERE {where_} ORDER BY created_at DESC, id DESC LIMIT ${l} OFFSET ${o}"
    );
    let rows = bind_filters(sqlx::query(&list_sql), team_id, f)
        .bind(i64::from(f.limit))
        .bind(i64::try_from(f.offset).unwrap_or(i64::MAX))
        .fetch_all(&db.pool)
        .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(LogRow {
                id: r.try_get("id")?,
                key_prefix: r.try_get("key_prefix")?,
                method: r.try_get("method")?,
                path: r.try_get("path")?,
                status: r.try_get("status")?,
                latency_us: r.try_get("latency_us")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok((rows, u64::try_from(total).unwrap_or(0)))
}

/// Binds the filter values in the order [`list`] numbered them.
fn bind_filters<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    team_id: &str,
    f: &LogFilter,
) -> Query<'q, Any, AnyArguments<'q>> {
    q = q.bind(team_id.to_owned());
    if let Some(m) = &f.method {
        q = q.bind(m.clone());
    }
    if let Some(s) = f.status {
        q = q.bind(s);
    }
    if let Some(p) = &f.path {
        let escaped = p
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q = q.bind(format!("{escaped}%"));
    }
    if let Some(t) = f.from_ms {
        q = q.bind(t);
    }
    if let Some(t) = f.to_ms {
        q = q.bind(t);
    }
    q
}

/// The plan names teams are on.
pub async fn plans_in_use(db: &Db) -> sqlx::Result<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT plan FROM teams")
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Deletes log rows older than `cutoff_ms` of teams on `plan`.
pub async fn prune(db: &Db, plan: &str, cutoff_ms: i64) -> sqlx::Result<u64> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query(
        "DELETE FROM api_logs WHERE created_at < $1 AND team_id IN (SELECT id FROM teams WHERE plan = $2)",
    )
    .bind(cutoff_ms)
    .bind(plan)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(res.rows_affected())
}
