//! The database: one sqlx `Any` pool over SQLite (the default, a file under the data dir) or
//! Postgres, with migrations per backend. Every query in `db/` is written once and runs on both:
//! `$N` placeholders in ascending order, times as unix-millisecond BIGINTs, flags as 0/1 BIGINTs,
//! lists and maps as JSON text.
//!
//! Writes go through [`Db::begin_write`]. On SQLite it serialises writers inside the process (one
//! writer at a time is all SQLite allows; waiting on an async mutex beats `SQLITE_BUSY`). On
//! Postgres, [`changes::append`] takes a transaction-scoped advisory lock so feed sequence numbers
//! become visible in commit order and a proxy reading the feed can never skip one.

pub mod acme;
pub mod api_logs;
pub mod certs;
pub mod changes;
pub mod clicks;
mod clicks_pg;
pub mod domains;
pub mod galleries;
pub mod keys;
pub mod links;
pub mod outbox;
pub mod qr_codes;
pub mod snapshot;
pub mod stats;
pub mod teams;
pub mod usage;
pub mod webhooks;
pub mod well_known;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Postgres only: a few native connections for click ingest, which needs `COPY` and binary
    /// array parameters that the `Any` driver does not offer (see `clicks_pg`).
    pub(crate) pg: Option<sqlx::PgPool>,
    /// Held for the life of a write transaction on SQLite only.
    write_lock: Arc<Mutex<()>>,
}

/// A write transaction. Commit with [`WriteTx::commit`]; dropping it rolls back.
pub struct WriteTx {
    pub tx: Transaction<'static, Any>,
    pub backend: Backend,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> sqlx::Result<()> {
        self.tx.commit().await
    }
}

/// The SQLite URL for a data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("sling.db").display())
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!("unsupported database url (expected sqlite:// or postgres://)");
        };
        if backend == Backend::Sqlite
            && let Some(path) = url
                .strip_prefix("sqlite://")
                .and_then(|p| p.split('?').next())
            && let Some(parent) = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; busy_timeout covers the
                        // rare cross-process writer (a `sling keys create` while serving).
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA busy_timeout=5000").await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        // SQLite's default page cache is 2 MiB per connection, smaller than one
                        // list index of 100,000 links: each deep page then re-read it through
                        // pread. 64 MiB is a ceiling, not an allocation.
                        conn.execute("PRAGMA cache_size=-65536").await?;
                        conn.execute("PRAGMA temp_store=MEMORY").await?;
                    }
                    Ok(())
                })
            })
            .after_release(move |conn, _meta| {
                Box::pin(async move { Ok(release_outside_transaction(conn, backend).await) })
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        let pg = match backend {
            // Lazy: connections open with the first click group, not at start (the `Any` pool
            // above has just proved the server reachable).
            Backend::Postgres => Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy(url)
                    .context("parsing the Postgres url for click ingest")?,
            ),
            Backend::Sqlite => None,
        };
        Ok(Self {
            pool,
            backend,
            pg,
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .context("applying migrations")?;
        Ok(())
    }

    /// Opens a write transaction. Cancel-safe: the lock and the `BEGIN` run in their own task,
    /// so a caller dropped mid-begin (a `select!` losing, a client gone) leaves either a whole
    /// transaction, dropped and rolled back with the task's output, or none. Dropping sqlx's
    /// own begin future after the server began but before it answered leaves the connection
    /// inside a transaction that nothing owns: on SQLite, the write lock held for good.
    pub async fn begin_write(&self) -> sqlx::Result<WriteTx> {
        let (pool, backend, lock) = (self.pool.clone(), self.backend, self.write_lock.clone());
        let task = tokio::spawn(async move {
            let guard = match backend {
                Backend::Sqlite => Some(lock.lock_owned().await),
                Backend::Postgres => None,
            };
            let tx = match backend {
                // IMMEDIATE takes the write lock up front, where busy_timeout applies. A deferred
                // transaction that reads first and then writes fails at once with "database is
                // locked" when any other connection (a key's last-used touch, feed pruning,
                // another process) is writing at that moment.
                Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
                Backend::Postgres => pool.begin().await?,
            };
            Ok(WriteTx {
                tx,
                backend,
                _guard: guard,
            })
        });
        match task.await {
            Ok(res) => res,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels the task.
            Err(_) => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Closes every connection; later queries fail at once (tests of the database-down paths).
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
    }

    /// Cheap liveness check for `/readyz`.
    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// Whether a connection coming back to the pool may be reused: not while it is still inside a
/// transaction (a savepoint begun and then cancelled, any transaction leaked past its owner), or
/// the next `BEGIN` on it fails and, on SQLite, every other writer waits on its lock. Such a
/// connection is closed instead, which rolls the transaction back.
async fn release_outside_transaction(conn: &mut sqlx::AnyConnection, backend: Backend) -> bool {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return true;
    }
    // SQLite counts the depth on its worker thread: a dropped transaction's rollback is queued
    // there and may not have run yet. A ping runs after it.
    if backend == Backend::Sqlite && conn.ping().await.is_err() {
        return false;
    }
    if conn.is_in_transaction() {
        tracing::warn!("a database connection came back inside a transaction; closing it");
        return false;
    }
    true
}

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
