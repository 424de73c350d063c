//! Write transactions survive their owners being cancelled or leaking them, on SQLite and
//! Postgres: the pool never hands out a connection still inside a transaction, so later writes
//! neither fail with "begin_with at non-zero transaction depth", nor wait on SQLite's write lock
//! until "database is locked", nor vanish into a savepoint that is never committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, each_backend};
use sling_control::db::{self, Db};
use sling_shared::tls::WellKnownEntry;
use sqlx::Connection;

const FAR: i64 = i64::MAX / 2;

/// Writes one answer per round through `begin_write`, each within two seconds, then checks on a
/// separate connection that every one of them was committed.
async fn writes_still_commit(h: &Harness, label: &str, rounds: usize) {
    for i in 0..rounds {
        let write = async {
            let mut w = h.db.begin_write().await?;
            db::well_known::put(&mut w.tx, "after.test", &format!("/{label}/{i}"), "ok", FAR)
                .await?;
            w.commit().await
        };
        match tokio::time::timeout(Duration::from_secs(2), write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{:?}: write {i} after {label} failed: {e}", h.kind),
            Err(_) => panic!("{:?}: write {i} after {label} hung", h.kind),
        }
    }
    let seen = committed_answers(h)
        .await
        .iter()
        .filter(|e| e.host == "after.test" && e.path.starts_with(&format!("/{label}/")))
        .count();
    assert_eq!(seen, rounds, "{:?}: committed writes after {label}", h.kind);
}

/// Every well-known answer, read over a second, independent connection: only what was committed.
async fn committed_answers(h: &Harness) -> Vec<WellKnownEntry> {
    let other = Db::connect(&h.url).await.unwrap();
    let live = db::well_known::list_live(&other.pool, 0).await.unwrap();
    other.close().await;
    live
}

/// A connection given back with an open write transaction (owner forgotten, as a cancelled
/// begin leaves it) is closed by the pool, not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_transaction_does_not_poison_the_pool() {
    each_backend(|h| async move {
        {
            let mut conn = h.db.pool.acquire().await.unwrap();
            let mut tx = (*conn).begin().await.unwrap();
            // A write, so SQLite holds its write lock for this transaction.
            db::well_known::put(&mut tx, "leak.test", "/x", "uncommitted", FAR)
                .await
                .unwrap();
            std::mem::forget(tx);
            // Back to the pool, still inside the transaction.
        }
        writes_still_commit(&h, "leak", 40).await;
        assert!(
            !committed_answers(&h)
                .await
                .iter()
                .any(|e| e.host == "leak.test"),
            "{:?}: the leaked transaction's write was rolled back",
            h.kind
        );
        h
    })
    .await;
}

/// Callers dropped at every point of `begin_write` (a lost `select!`, a client gone) leave
/// no transaction behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_begins_leave_no_transaction_behind() {
    each_backend(|h| async move {
        for i in 0..400u64 {
            let begin = h.db.begin_write();
            let _ = tokio::time::timeout(Duration::from_micros(i % 80), begin).await;
        }
        writes_still_commit(&h, "cancel", 40).await;
        h
    })
    .await;
}
