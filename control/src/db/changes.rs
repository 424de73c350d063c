//! The change log that feeds the proxies. Appended in the same transaction as the write it
//! describes; read by the long-poll feed; pruned after a retention period (a proxy that falls
//! further behind is told to reload a snapshot).

use sling_shared::feed::{Change, ChangeOp};
use sqlx::Row;

use super::{Backend, Db, WriteTx};

/// Any constant works; it only has to be the same for every writer.
const FEED_LOCK_KEY: i64 = 0x5_1196;

/// Appends `ops` and returns the sequence of the last one. Call it as the last statement before
/// commit: on Postgres it takes the feed lock, which is held until the transaction ends.
pub async fn append(w: &mut WriteTx, ops: &[ChangeOp], now_ms: i64) -> sqlx::Result<u64> {
    if w.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FEED_LOCK_KEY)
            .execute(&mut *w.tx)
            .await?;
    }
    let mut last = 0i64;
    for op in ops {
        last = sqlx::query("INSERT INTO changes (op, created_at) VALUES ($1, $2) RETURNING seq")
            .bind(op_json(op)?)
            .bind(now_ms)
            .fetch_one(&mut *w.tx)
            .await?
            .try_get::<i64, _>(0)?;
    }
    Ok(last as u64)
}

/// [`append`] on a native Postgres connection inside its transaction (click ingest,
/// `db::clicks_pg`), under the same feed lock.
pub(crate) async fn append_pg(
    conn: &mut sqlx::PgConnection,
    ops: &[ChangeOp],
    now_ms: i64,
) -> sqlx::Result<u64> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FEED_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let json = ops.iter().map(op_json).collect::<sqlx::Result<Vec<_>>>()?;
    let last: Option<i64> = sqlx::query_scalar(
        "INSERT INTO changes (op, created_at) SELECT o, $2 FROM UNNEST($1::text[]) \
         WITH ORDINALITY AS j(o, n) ORDER BY n RETURNING seq",
    )
    .bind(&json)
    .bind(now_ms)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .max();
    Ok(last.unwrap_or(0) as u64)
}

fn op_json(op: &ChangeOp) -> sqlx::Result<String> {
    serde_json::to_string(op).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Changes with `seq > after`, ascending, at most `limit`.
pub async fn after(db: &Db, after: u64, limit: usize) -> sqlx::Result<Vec<Change>> {
    let rows = sqlx::query("SELECT seq, op FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&db.pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get(0)?;
        let op: String = row.try_get(1)?;
        let op: ChangeOp =
            serde_json::from_str(&op).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        out.push(Change {
            seq: seq as u64,
            op,
        });
    }
    Ok(out)
}

/// The highest sequence written (0 when nothing has been).
pub async fn head(db: &Db) -> sqlx::Result<u64> {
    let row = sqlx::query("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM changes")
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get::<i64, _>(0)? as u64)
}

/// The lowest sequence still kept, if any.
pub async fn oldest(db: &Db) -> sqlx::Result<Option<u64>> {
    let row = sqlx::query("SELECT CAST(MIN(seq) AS BIGINT) FROM changes")
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get::<Option<i64>, _>(0)?.map(|s| s as u64))
}

/// Deletes changes older than `cutoff_ms` that a published snapshot already includes, always
/// keeping the newest row so the head sequence never goes backwards. A write transaction like any
/// other: on SQLite it queues on the in-process write lock instead of sleeping in SQLite's busy
/// handler while API writes wait behind it.
pub async fn prune(db: &Db, cutoff_ms: i64, snapshot_seq: u64) -> sqlx::Result<u64> {
    let mut w = db.begin_write().await?;
    let res = sqlx::query(
        "DELETE FROM changes WHERE created_at < $1 AND seq <= $2 \
         AND seq < (SELECT MAX(seq) FROM changes)",
    )
    .bind(cutoff_ms)
    .bind(snapshot_seq as i64)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(res.rows_affected())
}
