//! The database side of an order, each step one write transaction: publishing a challenge
//! answer (with `TlsChanged`), storing the certificate (sealed key, domain `active`, outbox
//! event, challenge answers removed, `TlsChanged`), and recording a failure (backoff or give up,
//! domain reason, outbox event on giving up).

use std::time::SystemTime;

use serde_json::json;
use sling_shared::feed::ChangeOp;

use super::cert::LeafFacts;
use super::order::Issued;
use super::retry::{AttemptError, backoff};
use super::{Job, Worker};
use crate::db::acme::Settle;
use crate::db::{self, acme, certs, changes, outbox, well_known};
use crate::state::AppState;

/// Serves `body` at `http://host{path}` on every proxy until `ttl_ms` from now.
pub async fn publish_challenge(
    state: &AppState,
    host: &str,
    path: &str,
    body: &str,
    ttl_ms: i64,
) -> sqlx::Result<()> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    well_known::put(&mut w.tx, host, path, body, now.saturating_add(ttl_ms)).await?;
    let seq = changes::append(&mut w, &[ChangeOp::TlsChanged], now).await?;
    w.commit().await?;
    state.changes_committed(seq);
    Ok(())
}

/// Deletes the answers in `paths` (in `w`); true when any existed.
async fn remove_challenges(
    conn: &mut sqlx::AnyConnection,
    host: &str,
    paths: &[String],
) -> sqlx::Result<bool> {
    let mut any = false;
    for path in paths {
        any |= well_known::delete(conn, host, path).await?;
    }
    Ok(any)
}

/// Marks an issuance as under way (a renewal leaves the serving domain `active`).
pub async fn begin(state: &AppState, job: &Job) -> sqlx::Result<()> {
    if job.kind != "issue" {
        return Ok(());
    }
    let mut w = state.db.begin_write().await?;
    acme::set_domain_status(&mut w.tx, &job.domain_id, "issuing", None, db::now_ms()).await?;
    w.commit().await
}

/// Stores the certificate. `Gone` when the domain or our lease disappeared meanwhile: then
/// nothing is stored.
pub async fn finish(
    wk: &Worker,
    job: &Job,
    issued: &Issued,
    facts: &LeafFacts,
    published: &[String],
) -> Result<(), AttemptError> {
    let state = &wk.state;
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    // The lease check and the domain check come first: a deleted domain cascades its order row
    // away, so no certificate is ever stored for a domain that no longer exists.
    if !acme::settle(&mut w.tx, &job.domain_id, &wk.owner, &Settle::Done, now).await? {
        return Err(AttemptError::Gone);
    }
    let Some(domain) = acme::domain(&mut *w.tx, &job.domain_id).await? else {
        return Err(AttemptError::Gone);
    };
    let renewed = certs::get(&mut *w.tx, &job.domain_id).await?.is_some();
    certs::store(
        &mut w.tx,
        &certs::CertRow {
            domain_id: job.domain_id.clone(),
            host: domain.host.clone(),
            chain_pem: issued.chain_pem.clone(),
            key_sealed: state.config.sealer.seal(issued.key_pem.as_bytes()),
            not_before: facts.not_before,
            not_after: facts.not_after,
            issued_at: now,
        },
    )
    .await?;
    acme::set_domain_status(&mut w.tx, &job.domain_id, "active", None, now).await?;
    remove_challenges(&mut w.tx, &domain.host, published).await?;
    let event = if renewed {
        "certificate.renewed"
    } else {
        "certificate.issued"
    };
    outbox::append(
        &mut w.tx,
        domain.team_id.as_deref(),
        event,
        &json!({
            "domainId": job.domain_id,
            "host": domain.host,
            "serial": facts.serial,
            "issuer": facts.issuer,
            "notBefore": crate::validate::rfc3339(facts.not_before),
            "notAfter": crate::validate::rfc3339(facts.not_after),
        }),
        now,
    )
    .await?;
    let seq = changes::append(&mut w, &[ChangeOp::TlsChanged], now).await?;
    w.commit().await?;
    state.changes_committed(seq);
    tracing::info!(host = %domain.host, serial = %facts.serial, event, "certificate stored");
    Ok(())
}

/// Records a failed attempt: retry with backoff, or give up after `max_failures` real failures.
/// Takes the attempt's challenge answers down either way. Returns false when the order was gone
/// (the domain deleted meanwhile, or the lease lost): then only the answers are removed.
pub async fn fail(
    wk: &Worker,
    job: &Job,
    err: &AttemptError,
    published: &[String],
) -> sqlx::Result<bool> {
    let state = &wk.state;
    let cfg = &wk.cfg;
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let took_down = remove_challenges(&mut w.tx, &job.host, published).await?;
    let attempts = job.attempts.saturating_add(1);
    let (failures, not_before) = match err {
        AttemptError::Failure(_) => (job.failures.saturating_add(1), None),
        AttemptError::Outage { not_before, .. } => (job.failures, *not_before),
        AttemptError::Gone => (job.failures, None),
    };
    let reason = err.reason();
    let give_up =
        matches!(err, AttemptError::Failure(_)) && failures >= i64::from(cfg.max_failures.max(1));
    let settled = if give_up {
        acme::settle(
            &mut w.tx,
            &job.domain_id,
            &wk.owner,
            &Settle::Failed {
                attempts,
                failures,
                error: reason,
            },
            now,
        )
        .await?
    } else {
        let mut next = now.saturating_add(millis(backoff(attempts, cfg.retry_base, cfg.retry_max)));
        // A rate limit's Retry-After wins over a shorter backoff.
        if let Some(at) = not_before.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
            next = next.max(millis(at));
        }
        acme::settle(
            &mut w.tx,
            &job.domain_id,
            &wk.owner,
            &Settle::Retry {
                attempts,
                failures,
                next_attempt_at: next,
                error: reason,
            },
            now,
        )
        .await?
    };
    if settled && let Some(domain) = acme::domain(&mut *w.tx, &job.domain_id).await? {
        let has_cert = certs::get(&mut *w.tx, &job.domain_id).await?.is_some();
        // A domain keeps serving (and stays `active`) while its current certificate is valid;
        // the reason still shows why the renewal has not happened.
        let status = match (give_up, has_cert) {
            (_, true) => "active",
            (true, false) => "failed",
            (false, false) => "issuing",
        };
        acme::set_domain_status(&mut w.tx, &job.domain_id, status, Some(reason), now).await?;
        if give_up {
            outbox::append(
                &mut w.tx,
                domain.team_id.as_deref(),
                "certificate.failed",
                &json!({
                    "domainId": job.domain_id,
                    "host": domain.host,
                    "reason": reason,
                    "attempts": attempts,
                    "renewal": has_cert,
                }),
                now,
            )
            .await?;
        }
    }
    let seq = if took_down {
        Some(changes::append(&mut w, &[ChangeOp::TlsChanged], now).await?)
    } else {
        None
    };
    w.commit().await?;
    if let Some(seq) = seq {
        state.changes_committed(seq);
    }
    Ok(settled)
}

/// Takes down the answers of an order abandoned because its domain went away.
pub async fn abandon(state: &AppState, host: &str, published: &[String]) -> sqlx::Result<()> {
    if published.is_empty() {
        return Ok(());
    }
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    if remove_challenges(&mut w.tx, host, published).await? {
        let seq = changes::append(&mut w, &[ChangeOp::TlsChanged], now).await?;
        w.commit().await?;
        state.changes_committed(seq);
    }
    Ok(())
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
