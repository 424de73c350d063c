//! ACME work and its bookkeeping: the persistent account per directory, and `acme_orders`, the
//! queue with at most one row — hence one order in flight — per domain.
//!
//! A replica takes a due order with one conditional `UPDATE` (lease free or expired); Postgres
//! re-checks the `WHERE` on the locked row and SQLite runs one writer at a time, so two replicas
//! never both take it. Every later write to the row names the lease owner, so a replica whose
//! lease was lost (or whose row vanished with its domain) changes nothing.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

/// A row of `acme_orders`. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub domain_id: String,
    /// `due`, `done` or `failed`.
    pub state: String,
    /// `issue` or `renew`.
    pub kind: String,
    /// Every try so far (drives the backoff).
    pub attempts: i64,
    /// Tries that failed for real (challenge or order invalid); only these give up an order.
    pub failures: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

const COLUMNS: &str = "domain_id, state, kind, attempts, failures, next_attempt_at, lease_owner, \
     lease_until, last_error, updated_at";

fn from_row(row: &AnyRow) -> sqlx::Result<OrderRow> {
    Ok(OrderRow {
        domain_id: row.try_get("domain_id")?,
        state: row.try_get("state")?,
        kind: row.try_get("kind")?,
        attempts: row.try_get("attempts")?,
        failures: row.try_get("failures")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        last_error: row.try_get("last_error")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn get<'c, E>(exec: E, domain_id: &str) -> sqlx::Result<Option<OrderRow>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!("SELECT {COLUMNS} FROM acme_orders WHERE domain_id = $1");
    let row = sqlx::query(&sql)
        .bind(domain_id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Asks for an order now. A finished or failed row starts over with fresh counters; a row that
/// is already due (waiting or in flight) keeps its kind, counters and lease and is merely made
/// due now, so a forced renewal never starts a second order beside a running one.
pub async fn request(
    conn: &mut sqlx::AnyConnection,
    domain_id: &str,
    kind: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO acme_orders \
         (domain_id, state, kind, attempts, failures, next_attempt_at, updated_at) \
         VALUES ($1, 'due', $2, 0, 0, $3, $3) \
         ON CONFLICT (domain_id) DO UPDATE SET \
         kind = CASE WHEN acme_orders.state = 'due' THEN acme_orders.kind ELSE excluded.kind END, \
         attempts = CASE WHEN acme_orders.state = 'due' THEN acme_orders.attempts ELSE 0 END, \
         failures = CASE WHEN acme_orders.state = 'due' THEN acme_orders.failures ELSE 0 END, \
         last_error = CASE WHEN acme_orders.state = 'due' THEN acme_orders.last_error \
         ELSE NULL END, \
         state = 'due', next_attempt_at = excluded.next_attempt_at, \
         updated_at = excluded.updated_at",
    )
    .bind(domain_id)
    .bind(kind)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Domain ids of orders due at `now_ms` whose lease is free, oldest first.
pub async fn due_ids(db: &Db, now_ms: i64, limit: usize) -> sqlx::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT domain_id FROM acme_orders WHERE state = 'due' AND next_attempt_at <= $1 \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at, domain_id \
         LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit as i64)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("domain_id")).collect()
}

/// Takes the order of `domain_id` for `owner` until `lease_until_ms`, if it is due and its lease
/// is free or expired; `None` when another replica has it or it is not due.
pub async fn take(
    db: &Db,
    domain_id: &str,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> sqlx::Result<Option<OrderRow>> {
    let mut w = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE acme_orders SET lease_owner = $1, lease_until = $2, updated_at = $3 \
         WHERE domain_id = $4 AND state = 'due' AND next_attempt_at <= $3 \
         AND (lease_until IS NULL OR lease_until < $3)",
    )
    .bind(owner)
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(domain_id)
    .execute(&mut *w.tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    let row = get(&mut *w.tx, domain_id).await?;
    w.commit().await?;
    Ok(row)
}

/// Extends `owner`'s lease; false when the lease is no longer `owner`'s or the row is gone (the
/// domain was deleted): the work must stop.
pub async fn extend_lease(
    db: &Db,
    domain_id: &str,
    owner: &str,
    lease_until_ms: i64,
) -> sqlx::Result<bool> {
    let mut w = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE acme_orders SET lease_until = $1 WHERE domain_id = $2 AND lease_owner = $3 \
         AND state = 'due'",
    )
    .bind(lease_until_ms)
    .bind(domain_id)
    .bind(owner)
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// How an attempt ended, for [`settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle<'a> {
    /// A certificate was stored.
    Done,
    /// Try again at `next_attempt_at`.
    Retry {
        attempts: i64,
        failures: i64,
        next_attempt_at: i64,
        error: &'a str,
    },
    /// Give up until someone asks again.
    Failed {
        attempts: i64,
        failures: i64,
        error: &'a str,
    },
}

/// Records how `owner`'s attempt ended and frees the lease; false (nothing written) when the
/// lease is no longer `owner`'s or the row is gone.
pub async fn settle(
    conn: &mut sqlx::AnyConnection,
    domain_id: &str,
    owner: &str,
    outcome: &Settle<'_>,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let (state, attempts, failures, next, error) = match *outcome {
        Settle::Done => ("done", 0, 0, now_ms, None),
        Settle::Retry {
            attempts,
            failures,
            next_attempt_at,
            error,
        } => ("due", attempts, failures, next_attempt_at, Some(error)),
        Settle::Failed {
            attempts,
            failures,
            error,
        } => ("failed", attempts, failures, now_ms, Some(error)),
    };
    let done = sqlx::query(
        "UPDATE acme_orders SET state = $1, attempts = $2, failures = $3, next_attempt_at = $4, \
         last_error = $5, lease_owner = NULL, lease_until = NULL, updated_at = $6 \
         WHERE domain_id = $7 AND lease_owner = $8",
    )
    .bind(state)
    .bind(attempts)
    .bind(failures)
    .bind(next)
    .bind(error)
    .bind(now_ms)
    .bind(domain_id)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Queues a renewal for every certificate past `not_before + permille/1000 × lifetime` that has
/// no order due, and none that failed within the last `failed_pause_ms` (a failed renewal is
/// tried again after that pause, not in a tight loop). Returns how many were queued.
pub async fn enqueue_renewals(
    db: &Db,
    now_ms: i64,
    permille: i64,
    failed_pause_ms: i64,
) -> sqlx::Result<u64> {
    let mut w = db.begin_write().await?;
    // `WHERE` on the SELECT also keeps SQLite from reading ON CONFLICT as a join constraint.
    let done = sqlx::query(
        "INSERT INTO acme_orders \
         (domain_id, state, kind, attempts, failures, next_attempt_at, updated_at) \
         SELECT c.domain_id, 'due', 'renew', 0, 0, $1, $1 FROM certificates c \
         WHERE c.not_before + ((c.not_after - c.not_before) * $2) / 1000 <= $1 \
         AND NOT EXISTS (SELECT 1 FROM acme_orders o WHERE o.domain_id = c.domain_id \
         AND (o.state = 'due' OR (o.state = 'failed' AND o.updated_at > $3))) \
         ON CONFLICT (domain_id) DO UPDATE SET state = 'due', kind = 'renew', attempts = 0, \
         failures = 0, last_error = NULL, next_attempt_at = excluded.next_attempt_at, \
         updated_at = excluded.updated_at",
    )
    .bind(now_ms)
    .bind(permille)
    .bind(now_ms.saturating_sub(failed_pause_ms))
    .execute(&mut *w.tx)
    .await?;
    w.commit().await?;
    Ok(done.rows_affected())
}

/// The facts about a domain the worker needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFacts {
    pub id: String,
    pub team_id: Option<String>,
    pub host: String,
    pub status: String,
    pub verified: bool,
}

pub async fn domain<'c, E>(exec: E, id: &str) -> sqlx::Result<Option<DomainFacts>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT id, team_id, host, status, verified FROM domains WHERE id = $1")
        .bind(id)
        .fetch_optional(exec)
        .await?;
    row.map(|r| {
        Ok(DomainFacts {
            id: r.try_get("id")?,
            team_id: r.try_get("team_id")?,
            host: r.try_get("host")?,
            status: r.try_get("status")?,
            verified: r.try_get::<i64, _>("verified")? != 0,
        })
    })
    .transpose()
}

/// Sets a domain's lifecycle status and failure reason (the certificate part of it:
/// `issuing`, `active`, `failed`); false when the domain is gone.
pub async fn set_domain_status(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    status: &str,
    failure_reason: Option<&str>,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE domains SET status = $1, failure_reason = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(failure_reason)
    .bind(now_ms)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The sealed credentials of the account on `directory_url`, if one was created.
pub async fn account(db: &Db, directory_url: &str) -> sqlx::Result<Option<String>> {
    let row = sqlx::query("SELECT credentials_sealed FROM acme_accounts WHERE directory_url = $1")
        .bind(directory_url)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// Stores an account's sealed credentials unless one is stored already (another replica
/// created one first); returns the credentials now stored, which every replica then uses.
pub async fn store_account(
    db: &Db,
    directory_url: &str,
    credentials_sealed: &str,
    now_ms: i64,
) -> sqlx::Result<String> {
    let mut w = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO acme_accounts (directory_url, credentials_sealed, created_at) \
         VALUES ($1, $2, $3) ON CONFLICT (directory_url) DO NOTHING",
    )
    .bind(directory_url)
    .bind(credentials_sealed)
    .bind(now_ms)
    .execute(&mut *w.tx)
    .await?;
    let row = sqlx::query("SELECT credentials_sealed FROM acme_accounts WHERE directory_url = $1")
        .bind(directory_url)
        .fetch_one(&mut *w.tx)
        .await?;
    w.commit().await?;
    row.try_get(0)
}
