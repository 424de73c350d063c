//! The certificate path inside the control plane, on SQLite and Postgres: the fleet's TLS state
//! endpoint (auth, opened keys, a key that does not open is skipped), the order lease that
//! keeps two replicas off one domain, the renewal scan, and the certificate API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, each_backend};
use serde_json::Value;
use sling_control::db::{self, acme, certs};
use sling_shared::feed::ChangeOp;
use sling_shared::tls::{TLS_STATE_PATH, TlsState};

const FLEET: &str = "test-fleet-token";
const DAY: i64 = 86_400_000;

/// A custom domain row for `team_id`, straight into the table.
async fn insert_domain(h: &Harness, team_id: &str, host: &str, verified: bool) -> String {
    let id = sling_control::ids::new_id("dom");
    let now = db::now_ms();
    sqlx::query(
        "INSERT INTO domains (id, team_id, host, is_default, verified, status, created_at, \
         updated_at) VALUES ($1, $2, $3, 0, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(team_id)
    .bind(host)
    .bind(i64::from(verified))
    .bind(if verified { "verified" } else { "pending" })
    .bind(now)
    .execute(&h.db.pool)
    .await
    .unwrap();
    id
}

/// A self-signed certificate for `host` valid over [not_before, not_after] (unix ms), and its key.
fn self_signed(host: &str, not_before: i64, not_after: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    let ts = |ms: i64| {
        let secs = ms / 1000;
        rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs as u64)
    };
    params.not_before = ts(not_before);
    params.not_after = ts(not_after);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

async fn store_cert(
    h: &Harness,
    domain_id: &str,
    host: &str,
    not_before: i64,
    not_after: i64,
    sealer: &sling_control::seal::Sealer,
) -> (String, String) {
    let (chain, key) = self_signed(host, not_before, not_after);
    let mut w = h.db.begin_write().await.unwrap();
    certs::store(
        &mut w.tx,
        &certs::CertRow {
            domain_id: domain_id.to_owned(),
            host: host.to_owned(),
            chain_pem: chain.clone(),
            key_sealed: sealer.seal(key.as_bytes()),
            not_before,
            not_after,
            issued_at: not_before,
        },
    )
    .await
    .unwrap();
    w.commit().await.unwrap();
    (chain, key)
}

async fn tls_state(h: &Harness, auth: Option<&str>) -> (u16, Option<TlsState>) {
    let r = h.call("GET", TLS_STATE_PATH, auth, None).await;
    let state = serde_json::from_slice(&r.body).ok();
    (r.status.as_u16(), state)
}

#[tokio::test]
async fn tls_state_needs_the_fleet_token() {
    each_backend(|h| async move {
        assert_eq!(tls_state(&h, None).await.0, 401);
        assert_eq!(tls_state(&h, Some("wrong")).await.0, 401);
        // A customer key, even the admin's, is refused.
        let key = h.key.clone();
        let (status, state) = tls_state(&h, Some(&key)).await;
        assert_eq!(status, 401);
        assert!(state.is_none());
        let (status, state) = tls_state(&h, Some(FLEET)).await;
        assert_eq!(status, 200);
        assert_eq!(state.unwrap().certs, vec![]);
        h
    })
    .await;
}

#[tokio::test]
async fn tls_state_serves_live_certificates_with_opened_keys() {
    each_backend(|h| async move {
        let now = db::now_ms();
        let sealer = h.state.config.sealer.clone();
        let team = h.team_id.clone();
        let good = insert_domain(&h, &team, "good.example", true).await;
        let (chain, key) = store_cert(
            &h,
            &good,
            "good.example",
            now - DAY,
            now + 60 * DAY,
            &sealer,
        )
        .await;
        sqlx::query("UPDATE domains SET https_redirect = 1 WHERE id = $1")
            .bind(&good)
            .execute(&h.db.pool)
            .await
            .unwrap();
        // Sealed under another key (a replica with a different --secret-key): skipped, not a 500.
        let other = insert_domain(&h, &team, "other-key.example", true).await;
        let wrong = sling_control::seal::Sealer::new([1; 32]);
        store_cert(
            &h,
            &other,
            "other-key.example",
            now - DAY,
            now + 60 * DAY,
            &wrong,
        )
        .await;
        // Expired: not served.
        let old = insert_domain(&h, &team, "expired.example", true).await;
        store_cert(
            &h,
            &old,
            "expired.example",
            now - 90 * DAY,
            now - DAY,
            &sealer,
        )
        .await;
        // A challenge answer, live, and one expired.
        let mut w = h.db.begin_write().await.unwrap();
        db::well_known::put(
            &mut w.tx,
            "good.example",
            "/.well-known/acme-challenge/t1",
            "t1.k",
            now + DAY,
        )
        .await
        .unwrap();
        db::well_known::put(
            &mut w.tx,
            "good.example",
            "/.well-known/acme-challenge/t0",
            "t0.k",
            now - 1,
        )
        .await
        .unwrap();
        db::changes::append(&mut w, &[ChangeOp::TlsChanged], now)
            .await
            .unwrap();
        w.commit().await.unwrap();
        let head = h.feed_head().await;

        let (status, state) = tls_state(&h, Some(FLEET)).await;
        assert_eq!(status, 200);
        let state = state.unwrap();
        assert_eq!(state.seq, head);
        assert_eq!(
            state.certs.len(),
            1,
            "{:?}",
            state.certs.iter().map(|c| &c.host).collect::<Vec<_>>()
        );
        let c = &state.certs[0];
        assert_eq!(c.host, "good.example");
        assert_eq!(c.chain_pem, chain);
        assert_eq!(c.key_pem, key);
        assert!(c.https_redirect);
        assert_eq!(c.not_after, (now + 60 * DAY) / 1000);
        assert_eq!(state.well_known.len(), 1);
        assert_eq!(state.well_known[0].path, "/.well-known/acme-challenge/t1");
        assert_eq!(state.well_known[0].body, "t1.k");
        // The key never appears in the database in clear.
        let stored: String =
            sqlx::query_scalar("SELECT key_sealed FROM certificates WHERE domain_id = $1")
                .bind(&good)
                .fetch_one(&h.db.pool)
                .await
                .unwrap();
        assert!(!stored.contains("PRIVATE KEY"));
        h
    })
    .await;
}

#[tokio::test]
async fn one_replica_at_a_time_holds_an_order() {
    each_backend(|h| async move {
        let team = h.team_id.clone();
        let id = insert_domain(&h, &team, "lease.example", true).await;
        let now = db::now_ms();
        let mut w = h.db.begin_write().await.unwrap();
        acme::request(&mut w.tx, &id, "issue", now).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(
            acme::due_ids(&h.db, now, 10).await.unwrap(),
            vec![id.clone()]
        );

        // Both replicas race for it; exactly one wins.
        let (a, b) = tokio::join!(
            acme::take(&h.db, &id, "replica-a", now, now + 60_000),
            acme::take(&h.db, &id, "replica-b", now, now + 60_000),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.is_some() != b.is_some(), "a: {a:?}, b: {b:?}");
        let (winner, loser) = if a.is_some() {
            ("replica-a", "replica-b")
        } else {
            ("replica-b", "replica-a")
        };
        assert!(acme::due_ids(&h.db, now, 10).await.unwrap().is_empty());
        assert!(
            acme::extend_lease(&h.db, &id, winner, now + 120_000)
                .await
                .unwrap()
        );
        assert!(
            !acme::extend_lease(&h.db, &id, loser, now + 120_000)
                .await
                .unwrap()
        );
        // The loser cannot record an outcome for it either.
        let mut w = h.db.begin_write().await.unwrap();
        assert!(
            !acme::settle(&mut w.tx, &id, loser, &acme::Settle::Done, now)
                .await
                .unwrap()
        );
        drop(w);

        // A forced renewal while it runs joins the running order (lease and kind kept).
        let mut w = h.db.begin_write().await.unwrap();
        acme::request(&mut w.tx, &id, "renew", now).await.unwrap();
        w.commit().await.unwrap();
        let row = acme::get(&h.db.pool, &id).await.unwrap().unwrap();
        assert_eq!(
            (row.kind.as_str(), row.lease_owner.as_deref()),
            ("issue", Some(winner))
        );

        // An expired lease (the winner died) lets the other replica take over.
        let later = now + 121_000;
        let taken = acme::take(&h.db, &id, loser, later, later + 60_000)
            .await
            .unwrap();
        assert_eq!(taken.unwrap().lease_owner.as_deref(), Some(loser));
        assert!(!acme::extend_lease(&h.db, &id, winner, later).await.unwrap());

        // A retry frees the lease and waits for its time.
        let mut w = h.db.begin_write().await.unwrap();
        let retry = acme::Settle::Retry {
            attempts: 1,
            failures: 1,
            next_attempt_at: later + 5_000,
            error: "boom",
        };
        assert!(
            acme::settle(&mut w.tx, &id, loser, &retry, later)
                .await
                .unwrap()
        );
        w.commit().await.unwrap();
        assert!(acme::due_ids(&h.db, later, 10).await.unwrap().is_empty());
        assert_eq!(
            acme::due_ids(&h.db, later + 5_000, 10).await.unwrap(),
            vec![id.clone()]
        );

        // Deleting the domain takes its order with it: a worker's lease is lost at once.
        let taken = acme::take(&h.db, &id, "replica-c", later + 5_000, later + 65_000)
            .await
            .unwrap();
        assert!(taken.is_some());
        sqlx::query("DELETE FROM domains WHERE id = $1")
            .bind(&id)
            .execute(&h.db.pool)
            .await
            .unwrap();
        assert!(
            !acme::extend_lease(&h.db, &id, "replica-c", later + 70_000)
                .await
                .unwrap()
        );
        assert!(acme::get(&h.db.pool, &id).await.unwrap().is_none());
        h
    })
    .await;
}

#[tokio::test]
async fn renewals_are_queued_past_the_fraction_of_the_lifetime() {
    each_backend(|h| async move {
        let now = db::now_ms();
        let sealer = h.state.config.sealer.clone();
        let team = h.team_id.clone();
        // 90-day certificates: 61 days old is past two thirds, 30 days old is not.
        let aged = insert_domain(&h, &team, "aged.example", true).await;
        store_cert(
            &h,
            &aged,
            "aged.example",
            now - 61 * DAY,
            now + 29 * DAY,
            &sealer,
        )
        .await;
        let fresh = insert_domain(&h, &team, "fresh.example", true).await;
        store_cert(
            &h,
            &fresh,
            "fresh.example",
            now - 30 * DAY,
            now + 60 * DAY,
            &sealer,
        )
        .await;

        assert_eq!(
            acme::enqueue_renewals(&h.db, now, 667, DAY).await.unwrap(),
            1
        );
        let row = acme::get(&h.db.pool, &aged).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.kind.as_str()), ("due", "renew"));
        assert!(acme::get(&h.db.pool, &fresh).await.unwrap().is_none());
        // Already due: not queued twice.
        assert_eq!(
            acme::enqueue_renewals(&h.db, now, 667, DAY).await.unwrap(),
            0
        );

        // A renewal that gave up waits out the pause before it is queued again.
        let taken = acme::take(&h.db, &aged, "r", now, now + 60_000)
            .await
            .unwrap();
        assert!(taken.is_some());
        let mut w = h.db.begin_write().await.unwrap();
        let failed = acme::Settle::Failed {
            attempts: 5,
            failures: 5,
            error: "no",
        };
        assert!(
            acme::settle(&mut w.tx, &aged, "r", &failed, now)
                .await
                .unwrap()
        );
        w.commit().await.unwrap();
        assert_eq!(
            acme::enqueue_renewals(&h.db, now + 1000, 667, DAY)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            acme::enqueue_renewals(&h.db, now + DAY + 1000, 667, DAY)
                .await
                .unwrap(),
            1
        );
        let row = acme::get(&h.db.pool, &aged).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.attempts), ("due", 0));
        h
    })
    .await;
}

#[tokio::test]
async fn certificate_api_shows_details_and_forces_renewals() {
    each_backend(|h| async move {
        let now = db::now_ms();
        let sealer = h.state.config.sealer.clone();
        let team = h.team_id.clone();
        let id = insert_domain(&h, &team, "api.example", true).await;
        let uri = format!("/api/v1/domains/{id}/certificate");

        let r = h.admin("GET", &uri, None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["status"], "none");
        assert_eq!(r.data()["serial"], Value::Null);

        store_cert(&h, &id, "api.example", now - DAY, now + 89 * DAY, &sealer).await;
        let r = h.admin("GET", &uri, None).await;
        let d = r.data();
        assert_eq!(d["status"], "active");
        assert!(d["issuer"].as_str().unwrap().contains("Test CA"), "{d}");
        assert!(d["serial"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
        assert!(d["notAfter"].as_str().unwrap().ends_with('Z'), "{d}");
        assert!(!r.json.to_string().contains("PRIVATE KEY"));

        // Forcing a renewal: 202, the order is due now.
        let r = h.admin("POST", &format!("{uri}/renew"), None).await;
        assert_eq!(r.status, 202, "{}", r.json);
        assert_eq!(r.data()["status"], "renewing");
        assert_eq!(r.data()["order"]["kind"], "renew");
        assert_eq!(
            acme::due_ids(&h.db, db::now_ms(), 10).await.unwrap(),
            vec![id.clone()]
        );

        // Scopes, teams, verification.
        let reader = h.key_with(&["domains:read"]).await;
        let r = h
            .call("POST", &format!("{uri}/renew"), Some(&reader), None)
            .await;
        r.assert_error(403, "FORBIDDEN");
        assert_eq!(h.call("GET", &uri, Some(&reader), None).await.status, 200);
        let (_, stranger) = h.team_key("strangers", &["domains:*"]).await;
        h.call("GET", &uri, Some(&stranger), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.call("POST", &format!("{uri}/renew"), Some(&stranger), None)
            .await
            .assert_error(404, "NOT_FOUND");
        let pending = insert_domain(&h, &team, "pending.example", false).await;
        h.admin(
            "POST",
            &format!("/api/v1/domains/{pending}/certificate/renew"),
            None,
        )
        .await
        .assert_error(403, "DOMAIN_NOT_VERIFIED");
        h
    })
    .await;
}

mod worker {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use sling_control::acme::order::Issued;
    use sling_control::acme::retry::AttemptError;
    use sling_control::acme::{AcmeConfig, Job, Worker, cert, store};

    use super::*;

    fn worker(h: &Harness) -> Worker {
        let mut cfg = AcmeConfig::new("https://ca.invalid/dir");
        cfg.max_failures = 2;
        cfg.retry_base = Duration::from_secs(1);
        cfg.retry_max = Duration::from_secs(4);
        Worker::new(h.state.clone(), Arc::new(cfg))
    }

    /// Queues and takes an order for `id` as `w`, returning the job.
    async fn take(h: &Harness, w: &Worker, id: &str, host: &str, at: i64) -> Job {
        let row = acme::take(&h.db, id, &w.owner, at, at + 60_000)
            .await
            .unwrap()
            .expect("order is due and free");
        Job {
            domain_id: id.to_owned(),
            host: host.to_owned(),
            kind: row.kind,
            attempts: row.attempts,
            failures: row.failures,
        }
    }

    async fn queue(h: &Harness, id: &str, at: i64) {
        let mut w = h.db.begin_write().await.unwrap();
        acme::request(&mut w.tx, id, "issue", at).await.unwrap();
        w.commit().await.unwrap();
    }

    async fn domain_status(h: &Harness, id: &str) -> (String, Option<String>) {
        let row = sqlx::query("SELECT status, failure_reason FROM domains WHERE id = $1")
            .bind(id)
            .fetch_one(&h.db.pool)
            .await
            .unwrap();
        use sqlx::Row;
        (row.get(0), row.get(1))
    }

    async fn events(h: &Harness) -> Vec<String> {
        db::outbox::list_for_team(&h.db.pool, &h.team_id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    #[tokio::test]
    async fn an_issued_certificate_is_stored_only_while_its_domain_exists() {
        each_backend(|h| async move {
            let w = worker(&h);
            let now = db::now_ms();
            let team = h.team_id.clone();
            let (chain_pem, key_pem) = self_signed("kept.example", now - DAY, now + 89 * DAY);
            let facts = cert::leaf_facts(&chain_pem).unwrap();
            let issued = Issued { chain_pem, key_pem };

            // Deleted mid-order: the result is discarded, nothing stored.
            let gone = insert_domain(&h, &team, "gone.example", true).await;
            queue(&h, &gone, now).await;
            let job = take(&h, &w, &gone, "gone.example", now).await;
            sqlx::query("DELETE FROM domains WHERE id = $1")
                .bind(&gone)
                .execute(&h.db.pool)
                .await
                .unwrap();
            let r = store::finish(&w, &job, &issued, &facts, &[]).await;
            assert!(matches!(r, Err(AttemptError::Gone)), "{r:?}");
            // A failure recorded for it changes nothing either.
            let failed = AttemptError::Failure("x".into());
            assert!(!store::fail(&w, &job, &failed, &[]).await.unwrap());
            assert!(certs::get(&h.db.pool, &gone).await.unwrap().is_none());

            // Alive: stored with its key sealed, domain active, event, proxies told.
            let kept = insert_domain(&h, &team, "kept.example", true).await;
            queue(&h, &kept, now).await;
            let job = take(&h, &w, &kept, "kept.example", now).await;
            store::publish_challenge(
                &h.state,
                "kept.example",
                "/.well-known/acme-challenge/x",
                "x.y",
                60_000,
            )
            .await
            .unwrap();
            let head = h.feed_head().await;
            store::finish(
                &w,
                &job,
                &issued,
                &facts,
                &["/.well-known/acme-challenge/x".to_owned()],
            )
            .await
            .unwrap();
            let stored = certs::get(&h.db.pool, &kept).await.unwrap().unwrap();
            assert_eq!(
                h.state
                    .config
                    .sealer
                    .open_string(&stored.key_sealed)
                    .unwrap(),
                issued.key_pem
            );
            assert_eq!(domain_status(&h, &kept).await, ("active".to_owned(), None));
            assert_eq!(events(&h).await, ["certificate.issued"]);
            assert_eq!(h.changes_after(head).await, vec![ChangeOp::TlsChanged]);
            assert!(
                db::well_known::list_live(&h.db.pool, now)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                acme::get(&h.db.pool, &kept).await.unwrap().unwrap().state,
                "done"
            );

            // The next certificate for it is a renewal.
            queue(&h, &kept, now).await;
            let job = take(&h, &w, &kept, "kept.example", now).await;
            store::finish(&w, &job, &issued, &facts, &[]).await.unwrap();
            assert_eq!(
                events(&h).await,
                ["certificate.issued", "certificate.renewed"]
            );
            h
        })
        .await;
    }

    #[tokio::test]
    async fn failures_back_off_then_give_up_and_outages_only_wait() {
        each_backend(|h| async move {
            let w = worker(&h);
            let team = h.team_id.clone();
            let id = insert_domain(&h, &team, "flaky.example", true).await;
            let mut now = db::now_ms();
            queue(&h, &id, now).await;

            // The CA is down: retried after the backoff, never counted as a failure.
            let job = take(&h, &w, &id, "flaky.example", now).await;
            store::fail(&w, &job, &AttemptError::outage("connection refused"), &[])
                .await
                .unwrap();
            let row = acme::get(&h.db.pool, &id).await.unwrap().unwrap();
            assert_eq!(
                (row.state.as_str(), row.attempts, row.failures),
                ("due", 1, 0)
            );
            assert!(row.next_attempt_at >= now + 1_000, "{row:?}");
            let (status, reason) = domain_status(&h, &id).await;
            assert_eq!(status, "issuing");
            assert!(reason.unwrap().contains("connection refused"));

            // Rate limited: the CA's Retry-After wins over the short backoff.
            now = row.next_attempt_at;
            let job = take(&h, &w, &id, "flaky.example", now).await;
            let later = SystemTime::now() + Duration::from_secs(3600);
            let limited = AttemptError::Outage {
                reason: "rateLimited".into(),
                not_before: Some(later),
            };
            store::fail(&w, &job, &limited, &[]).await.unwrap();
            let row = acme::get(&h.db.pool, &id).await.unwrap().unwrap();
            assert!(row.next_attempt_at >= db::now_ms() + 3_500_000, "{row:?}");
            assert_eq!(row.failures, 0);

            // A failed validation counts; its challenge answer is taken down with TlsChanged.
            now = row.next_attempt_at;
            let job = take(&h, &w, &id, "flaky.example", now).await;
            let path = "/.well-known/acme-challenge/tok".to_owned();
            store::publish_challenge(&h.state, "flaky.example", &path, "tok.k", 60_000)
                .await
                .unwrap();
            let head = h.feed_head().await;
            store::fail(
                &w,
                &job,
                &AttemptError::Failure("incorrect response".into()),
                &[path],
            )
            .await
            .unwrap();
            assert_eq!(h.changes_after(head).await, vec![ChangeOp::TlsChanged]);
            assert!(
                db::well_known::list_live(&h.db.pool, db::now_ms())
                    .await
                    .unwrap()
                    .is_empty()
            );
            let row = acme::get(&h.db.pool, &id).await.unwrap().unwrap();
            assert_eq!(
                (row.state.as_str(), row.attempts, row.failures),
                ("due", 3, 1)
            );
            assert!(events(&h).await.is_empty());

            // The second failure gives up (max 2): order and domain failed, with the reason.
            now = row.next_attempt_at;
            let job = take(&h, &w, &id, "flaky.example", now).await;
            store::fail(
                &w,
                &job,
                &AttemptError::Failure("incorrect response".into()),
                &[],
            )
            .await
            .unwrap();
            let row = acme::get(&h.db.pool, &id).await.unwrap().unwrap();
            assert_eq!((row.state.as_str(), row.failures), ("failed", 2));
            assert_eq!(
                domain_status(&h, &id).await,
                ("failed".to_owned(), Some("incorrect response".to_owned()))
            );
            assert_eq!(events(&h).await, ["certificate.failed"]);
            assert!(
                acme::due_ids(&h.db, now + 10 * DAY, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            h
        })
        .await;
    }
}
