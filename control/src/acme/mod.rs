//! ACME in the control plane (`--acme-directory`): a background worker that turns due rows of
//! `acme_orders` into certificates.
//!
//! Each tick it queues renewals (`db::acme::enqueue_renewals`: certificates past
//! `--acme-renew-fraction` of their lifetime), then takes due orders with a lease
//! (`db::acme::take`, safe across replicas) and runs each in its own task while a companion loop
//! extends the lease; losing the lease (the domain was deleted, so its row cascaded away) drops
//! the order on the spot. Modules, one job each: [`client`] (HTTPS to the CA, the persistent
//! account), [`order`] (the HTTP-01 exchange), [`cert`] (key, CSR, reading the chain),
//! [`store`] (the transactions), [`retry`] (outage vs failure, backoff).

pub mod cert;
pub mod client;
pub mod order;
pub mod retry;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::Account;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::db::{self, acme};
use crate::state::AppState;
use retry::AttemptError;

/// `--acme-*` configuration.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The CA's directory URL.
    pub directory_url: String,
    /// `mailto:` contacts for the account.
    pub contact: Vec<String>,
    /// Trust only this CA certificate (PEM) for the CA's HTTPS, instead of the platform roots.
    pub ca_cert: Option<PathBuf>,
    /// How often due orders are looked for (a forced renewal wakes the worker at once).
    pub poll: Duration,
    /// Renew once this fraction of a certificate's lifetime has passed.
    pub renew_fraction: f64,
    /// Real failures (not outages) after which an order gives up.
    pub max_failures: u32,
    /// First retry delay, doubled per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl AcmeConfig {
    /// Defaults for everything but the directory (what the flags default to).
    pub fn new(directory_url: impl Into<String>) -> Self {
        Self {
            directory_url: directory_url.into(),
            contact: Vec::new(),
            ca_cert: None,
            poll: Duration::from_secs(5),
            renew_fraction: 2.0 / 3.0,
            max_failures: 5,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
        }
    }

    fn renew_permille(&self) -> i64 {
        (self.renew_fraction.clamp(0.0, 1.0) * 1000.0).round() as i64
    }
}

/// How long a taken order is ours without renewing the lease.
const LEASE: Duration = Duration::from_secs(60);
/// Orders run at once by one replica.
const MAX_IN_FLIGHT: usize = 4;
/// A renewal that gave up is queued again after this pause.
const FAILED_RENEWAL_PAUSE: Duration = Duration::from_secs(24 * 3600);
/// How long a published challenge answer stays servable at most.
const CHALLENGE_TTL: Duration = Duration::from_secs(3600);

/// What one taken order is about.
#[derive(Debug, Clone)]
pub struct Job {
    pub domain_id: String,
    pub host: String,
    /// `issue` or `renew`.
    pub kind: String,
    pub attempts: i64,
    pub failures: i64,
}

/// State shared by the worker's tasks.
pub struct Worker {
    pub state: AppState,
    pub cfg: Arc<AcmeConfig>,
    /// This replica's lease owner id.
    pub owner: String,
    account: tokio::sync::Mutex<Option<Account>>,
    retry_after: client::RetryAfter,
}

impl Worker {
    pub fn new(state: AppState, cfg: Arc<AcmeConfig>) -> Self {
        Self {
            state,
            cfg,
            owner: crate::ids::new_id("acme"),
            account: tokio::sync::Mutex::new(None),
            retry_after: client::RetryAfter::default(),
        }
    }

    /// The ACME account, loaded (or created) on first use.
    pub async fn account(&self) -> Result<Account, AttemptError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let account = client::account(
            &self.state.db,
            &self.state.config.sealer,
            &self.cfg,
            &self.retry_after,
        )
        .await
        .map_err(|e| AttemptError::Outage {
            reason: format!("{e:#}"),
            not_before: self.retry_after.take(),
        })?;
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Classifies an instant-acme error, with the CA's latest `Retry-After`.
    pub fn acme_error(&self, context: &str, e: instant_acme::Error) -> AttemptError {
        AttemptError::from_acme(context, e, self.retry_after.take())
    }

    pub fn challenge_ttl_ms(&self) -> i64 {
        i64::try_from(CHALLENGE_TTL.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Runs the worker until shutdown; returns at once without `--acme-directory`. Orders in flight
/// at shutdown are dropped: their leases expire and any replica (or the next start) resumes.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let Some(cfg) = state.config.acme.clone() else {
        return;
    };
    let worker = Arc::new(Worker::new(state.clone(), Arc::new(cfg)));
    let scan_every = (worker.cfg.poll * 10).min(Duration::from_secs(60));
    let mut last_scan: Option<tokio::time::Instant> = None;
    let mut in_flight = JoinSet::new();
    tracing::info!(directory = %worker.cfg.directory_url, "ACME worker started");
    loop {
        if last_scan.is_none_or(|t| t.elapsed() >= scan_every) {
            last_scan = Some(tokio::time::Instant::now());
            scan_renewals(&worker).await;
        }
        take_due(&worker, &mut in_flight).await;
        tokio::select! {
            _ = tokio::time::sleep(worker.cfg.poll) => {}
            _ = state.acme_wake.notified() => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
}

async fn scan_renewals(w: &Worker) {
    let pause = i64::try_from(FAILED_RENEWAL_PAUSE.as_millis()).unwrap_or(i64::MAX);
    match acme::enqueue_renewals(&w.state.db, db::now_ms(), w.cfg.renew_permille(), pause).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(certificates = n, "renewals queued"),
        Err(e) => tracing::warn!(error = %e, "renewal scan failed; will retry"),
    }
}

async fn take_due(w: &Arc<Worker>, in_flight: &mut JoinSet<()>) {
    let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
    if room == 0 {
        return;
    }
    let now = db::now_ms();
    let ids = match acme::due_ids(&w.state.db, now, room).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "reading due ACME orders failed; will retry");
            return;
        }
    };
    for id in ids {
        let until = now.saturating_add(lease_ms());
        match acme::take(&w.state.db, &id, &w.owner, now, until).await {
            Ok(Some(row)) => {
                in_flight.spawn(process(w.clone(), row));
            }
            Ok(None) => {} // another replica was quicker
            Err(e) => tracing::warn!(error = %e, domain = %id, "taking an ACME order failed"),
        }
    }
}

fn lease_ms() -> i64 {
    i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX)
}

/// Runs one taken order to an outcome and records it.
async fn process(w: Arc<Worker>, row: acme::OrderRow) {
    let domain = match acme::domain(&w.state.db.pool, &row.domain_id).await {
        Ok(Some(d)) => d,
        Ok(None) => return, // deleted: its order row is gone with it
        Err(e) => {
            tracing::warn!(error = %e, "reading the domain of an ACME order failed");
            return; // the lease expires and the order is tried again
        }
    };
    let job = Job {
        domain_id: row.domain_id,
        host: domain.host,
        kind: row.kind,
        attempts: row.attempts,
        failures: row.failures,
    };
    let mut published = Vec::new();
    let result = if !domain.verified {
        Err(AttemptError::Failure(
            "the domain's ownership is not verified".to_owned(),
        ))
    } else if let Err(e) = store::begin(&w.state, &job).await {
        Err(e.into())
    } else {
        tokio::select! {
            r = order::attempt(&w, &job, &mut published) => r,
            gone = keep_lease(&w, &job.domain_id) => Err(gone),
        }
    };
    let result = result.and_then(|issued| {
        let facts = cert::leaf_facts(&issued.chain_pem).map_err(|e| {
            AttemptError::Failure(format!("the CA's certificate is unreadable: {e:#}"))
        })?;
        Ok((issued, facts))
    });
    let outcome = match result {
        Ok((issued, facts)) => store::finish(&w, &job, &issued, &facts, &published).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {}
        Err(AttemptError::Gone) => {
            tracing::info!(host = %job.host, "domain deleted mid-order; result discarded");
            if let Err(e) = store::abandon(&w.state, &job.host, &published).await {
                tracing::warn!(error = %e, "removing challenge answers failed; they expire");
            }
        }
        Err(e) => match store::fail(&w, &job, &e, &published).await {
            Ok(true) => match &e {
                AttemptError::Failure(reason) => {
                    tracing::warn!(host = %job.host, %reason, "ACME order failed");
                }
                other => {
                    tracing::info!(host = %job.host, reason = %other.reason(), "ACME order delayed");
                }
            },
            Ok(false) => {
                tracing::info!(host = %job.host, "domain deleted mid-order; attempt discarded");
            }
            // The lease expires and the order runs again: delayed, not dropped.
            Err(db_err) => {
                tracing::warn!(error = %db_err, host = %job.host, "recording an ACME failure failed");
            }
        },
    }
}

/// Extends the lease every third of its length; returns when the lease is lost for good.
async fn keep_lease(w: &Worker, domain_id: &str) -> AttemptError {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let until = db::now_ms().saturating_add(lease_ms());
        match acme::extend_lease(&w.state.db, domain_id, &w.owner, until).await {
            Ok(true) => {}
            Ok(false) => return AttemptError::Gone,
            // A database outage: keep working; `finish` re-checks the lease before storing.
            Err(e) => tracing::warn!(error = %e, "extending an ACME lease failed"),
        }
    }
}
