//! Webhook delivery: a background worker POSTs each queued delivery (`db::webhooks`) to its
//! webhook's URL, signed, and retries failures after 5 s, 30 s, 2 min and 10 min (go2.gg's
//! schedule) before marking it failed. Deliveries are rows written with the change they
//! describe, so an outage of the receiver, the database or this process delays them; it never
//! drops one. A worker leases a row before sending it, so replicas never send one twice at once
//! (a crash between sending and recording can repeat one: receivers dedupe by `id`). Each
//! delivery runs in its own task, at most [`MAX_PER_WEBHOOK`] per webhook, so a slow receiver
//! delays only its own. An inactive webhook's deliveries wait until it is active again.
//!
//! Every request carries:
//! - `X-Webhook-Id` (the delivery id), `X-Webhook-Event` (the event type), `X-Webhook-Timestamp`
//!   (unix seconds);
//! - `X-Webhook-Signature: sha256=<hex>`: HMAC-SHA256 under the webhook's secret of
//!   `<timestamp>.<body>`, so a receiver can check both the body and its freshness.
//!
//! The body is `{"id": <event id>, "type", "createdAt", "teamId", "data": {…}}`.
//!
//! Outbound requests are SSRF-guarded as ownership checks are (`verify::resolve_vetted`): the
//! host is resolved once, private, loopback, link-local and other reserved addresses are refused
//! (`--allow-private-webhooks` lifts that), the connection goes to the vetted address only, and
//! redirects are not followed.

use std::net::SocketAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use crate::db::{self, webhooks};
use crate::state::AppState;
use crate::validate::rfc3339;
use crate::verify::{self, VerifyConfig};

/// How deliveries are sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Let webhooks reach private and loopback addresses (`--allow-private-webhooks`).
    pub allow_private: bool,
    /// Budget of one attempt, connection included.
    pub timeout: Duration,
    /// Waits before the second, third, … attempt; their count is the number of retries.
    pub retry_delays: Vec<Duration>,
    /// How often the worker looks for due deliveries when nothing wakes it.
    pub poll: Duration,
    /// Finished deliveries are kept this long (for `GET /webhooks/{id}/deliveries`).
    pub retention: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Duration::from_secs(10),
            retry_delays: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
                Duration::from_secs(600),
            ],
            poll: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

pub const ID_HEADER: &str = "x-webhook-id";
pub const EVENT_HEADER: &str = "x-webhook-event";
pub const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";

/// Deliveries one worker has in flight at once, in all and to one webhook: a slow receiver
/// holds up only its own deliveries, never another webhook's.
const MAX_IN_FLIGHT: usize = 32;
const MAX_PER_WEBHOOK: usize = 2;
/// Due rows looked at per round (enough to find other webhooks' behind a busy one's).
const SCAN: u32 = 200;

/// How many deliveries are in flight per webhook.
#[derive(Debug, Default)]
struct InFlight(std::sync::Mutex<std::collections::HashMap<String, usize>>);

impl InFlight {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        // Plain counters, valid whatever a panicking holder was doing.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn has_room(&self, webhook: &str) -> bool {
        self.map().get(webhook).copied().unwrap_or(0) < MAX_PER_WEBHOOK
    }
}

/// Counts one delivery in flight until dropped (also when its task panics).
struct Slot {
    in_flight: std::sync::Arc<InFlight>,
    webhook: String,
}

impl Slot {
    fn take(in_flight: &std::sync::Arc<InFlight>, webhook: &str) -> Slot {
        *in_flight.map().entry(webhook.to_owned()).or_insert(0) += 1;
        Slot {
            in_flight: in_flight.clone(),
            webhook: webhook.to_owned(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.in_flight.map();
        if let Some(n) = map.get_mut(&self.webhook) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.webhook);
            }
        }
    }
}

/// `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs until `shutdown` turns true, then gives the deliveries in flight one timeout to end (an
/// unfinished one is sent again once its lease expires).
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let cfg = std::sync::Arc::new(state.config.webhooks.clone());
    let in_flight = std::sync::Arc::new(InFlight::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_prune = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        if let Err(error) = start_due(&state, &cfg, &in_flight, &mut tasks).await {
            tracing::warn!(error = %format!("{error:#}"), "webhook deliveries could not be read; retrying");
        }
        if last_prune.elapsed() > Duration::from_secs(3600) {
            last_prune = tokio::time::Instant::now();
            let cutoff = db::now_ms() - cfg.retention.as_millis() as i64;
            if let Err(error) = webhooks::prune(&state.db, cutoff).await {
                tracing::warn!(%error, "pruning webhook deliveries failed");
            }
        }
        tokio::select! {
            _ = state.webhook_wake.notified() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = shutdown.changed() => {}
            // A slot came free.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(cfg.timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Leases due deliveries while there is room and starts a task for each; returns how many.
async fn start_due(
    state: &AppState,
    cfg: &std::sync::Arc<WebhookConfig>,
    in_flight: &std::sync::Arc<InFlight>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<usize> {
    if tasks.len() >= MAX_IN_FLIGHT {
        return Ok(0);
    }
    let lease_ms = (cfg.timeout.as_millis() as i64)
        .saturating_mul(3)
        .max(30_000);
    let mut started = 0;
    for (id, webhook) in webhooks::due(&state.db, db::now_ms(), SCAN).await? {
        if tasks.len() >= MAX_IN_FLIGHT {
            break;
        }
        if !in_flight.has_room(&webhook) {
            continue;
        }
        let Some((delivery, hook)) =
            webhooks::claim(&state.db, &id, db::now_ms(), lease_ms).await?
        else {
            continue;
        };
        let slot = Slot::take(in_flight, &webhook);
        let (state, cfg) = (state.clone(), cfg.clone());
        tasks.spawn(async move {
            let _slot = slot;
            deliver(&state, &cfg, &delivery, &hook).await;
        });
        started += 1;
    }
    Ok(started)
}

/// Sends one delivery and records the outcome.
async fn deliver(
    state: &AppState,
    cfg: &WebhookConfig,
    delivery: &webhooks::DeliveryRow,
    hook: &webhooks::WebhookRow,
) {
    let outcome = attempt(state, cfg, delivery, hook).await;
    if outcome.delivered {
        tracing::debug!(delivery = %delivery.id, webhook = %hook.id, "webhook delivered");
    } else {
        tracing::info!(delivery = %delivery.id, webhook = %hook.id, attempt = delivery.attempts + 1,
            error = outcome.error.as_deref().unwrap_or(""), retry = outcome.retry_at.is_some(),
            "webhook delivery failed");
    }
    // A failed write leaves the lease to expire: the attempt is made again later.
    if let Err(error) =
        webhooks::record_attempt(&state.db, &delivery.id, &outcome, db::now_ms()).await
    {
        tracing::warn!(%error, delivery = %delivery.id, "recording a webhook attempt failed");
    }
}

/// One attempt at one delivery.
async fn attempt(
    state: &AppState,
    cfg: &WebhookConfig,
    delivery: &webhooks::DeliveryRow,
    hook: &webhooks::WebhookRow,
) -> webhooks::Outcome {
    let failed = |status: Option<i64>, error: String| {
        let next = usize::try_from(delivery.attempts)
            .ok()
            .and_then(|done| cfg.retry_delays.get(done));
        webhooks::Outcome {
            delivered: false,
            status,
            error: Some(error),
            retry_at: next.map(|d| db::now_ms() + d.as_millis() as i64),
        }
    };
    let secret = match state.config.sealer.open(&hook.secret) {
        Ok(s) => s,
        Err(_) => {
            return failed(
                None,
                "the webhook's secret cannot be opened with this replica's secret key".into(),
            );
        }
    };
    let data: serde_json::Value =
        serde_json::from_str(&delivery.payload).unwrap_or(serde_json::Value::Null);
    let body = serde_json::json!({
        "id": delivery.event_id,
        "type": delivery.event_type,
        "createdAt": rfc3339(delivery.created_at),
        "teamId": hook.team_id,
        "data": data,
    })
    .to_string();
    let timestamp = db::now_ms() / 1000;
    let signature = sign(&secret, timestamp, body.as_bytes());
    match post(state, cfg, &hook.url, delivery, timestamp, &signature, body).await {
        Ok(status) if (200..300).contains(&status) => webhooks::Outcome {
            delivered: true,
            status: Some(i64::from(status)),
            error: None,
            retry_at: None,
        },
        Ok(status) => failed(Some(i64::from(status)), format!("HTTP status {status}")),
        Err(error) => failed(None, error),
    }
}

/// POSTs `body` to `url` through the SSRF guard; the response status, or what went wrong.
async fn post(
    state: &AppState,
    cfg: &WebhookConfig,
    url: &str,
    delivery: &webhooks::DeliveryRow,
    timestamp: i64,
    signature: &str,
    body: String,
) -> Result<u16, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| "the URL has no host".to_owned())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| "the URL has no port".to_owned())?;
    let guard = VerifyConfig {
        allow_private: cfg.allow_private,
        timeout: cfg.timeout,
        ..state.config.verify.clone()
    };
    let addrs = verify::resolve_vetted(&guard, &host)
        .await
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for ip in addrs {
        let addr = SocketAddr::new(ip, port);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // Pinned: reqwest connects to the vetted address, never resolving the host again.
            .resolve(&host, addr)
            .user_agent(concat!("sling-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let sent = client
            .post(parsed.clone())
            .header("content-type", "application/json")
            .header(ID_HEADER, &delivery.id)
            .header(EVENT_HEADER, &delivery.event_type)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => return Ok(resp.status().as_u16()),
            Err(e) if e.is_connect() => {
                last = verify::http_error(e, addr, cfg.timeout).to_string();
            }
            Err(e) => return Err(verify::http_error(e, addr, cfg.timeout).to_string()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            super::sign(b"whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "sha256=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
