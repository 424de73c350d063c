//! One order against the CA, HTTP-01 only: new order → for each pending authorisation, publish
//! the key authorisation to every proxy (a `well_known` row and `TlsChanged`), check through
//! the proxies that it is served, tell the CA → poll until ready → new key and CSR → finalize →
//! download the chain. Storing the result is `store::finish`'s job.
//!
//! TLS-ALPN-01 is not offered: it would need the proxies to answer a special certificate on the
//! `acme-tls/1` protocol before the domain has any, a second path through the TLS state for a
//! challenge HTTP-01 already covers on every deployment where the proxies listen on port 80.

use std::time::Duration;

use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};

use super::retry::AttemptError;
use super::{Job, Worker, store};

/// The chain and key a successful order produced.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Self-checks of a published answer: the proxies pick it up within one long poll.
const SELF_CHECK_TRIES: u32 = 8;
const SELF_CHECK_FIRST_DELAY: Duration = Duration::from_millis(250);

/// How long to wait for the CA to validate the challenges, and then to issue.
fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(90))
}

/// Runs one order for `job.host`. Paths of the challenge answers it published are pushed onto
/// `published` as they go live, so the caller can take them down whatever happens.
pub async fn attempt(
    w: &Worker,
    job: &Job,
    published: &mut Vec<String>,
) -> Result<Issued, AttemptError> {
    let account = w.account().await?;
    let identifiers = [Identifier::Dns(job.host.clone())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| w.acme_error("creating the order", e))?;

    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| w.acme_error("fetching an authorization", e))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            // The account proved control of the name recently; nothing to answer.
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AttemptError::Failure(format!(
                    "the CA's authorization for {} is {other:?}",
                    job.host
                )));
            }
        }
        let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
            AttemptError::Failure("the CA offered no http-01 challenge".to_owned())
        })?;
        let path = format!("/.well-known/acme-challenge/{}", challenge.token);
        let body = challenge.key_authorization().as_str().to_owned();
        store::publish_challenge(&w.state, &job.host, &path, &body, w.challenge_ttl_ms()).await?;
        published.push(path.clone());
        self_check(w, &job.host, &path, &body).await?;
        challenge
            .set_ready()
            .await
            .map_err(|e| w.acme_error("answering the challenge", e))?;
    }

    let status = order
        .poll_ready(&polling())
        .await
        .map_err(|e| w.acme_error("validating the challenge", e))?;
    if status != OrderStatus::Ready {
        return Err(AttemptError::Failure(
            invalid_reason(&mut order, &job.host).await,
        ));
    }

    let (key_pem, csr) = super::cert::key_and_csr(&job.host)
        .map_err(|e| AttemptError::outage(format_args!("{e:#}")))?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| w.acme_error("finalizing the order", e))?;
    let chain_pem = order
        .poll_certificate(&polling())
        .await
        .map_err(|e| w.acme_error("downloading the certificate", e))?;
    Ok(Issued { chain_pem, key_pem })
}

/// Fetches the answer the way the CA will, through DNS and a proxy, until it matches.
async fn self_check(w: &Worker, host: &str, path: &str, body: &str) -> Result<(), AttemptError> {
    let mut delay = SELF_CHECK_FIRST_DELAY;
    let mut last = String::new();
    for _ in 0..SELF_CHECK_TRIES {
        tokio::time::sleep(delay).await;
        match crate::verify::fetch_well_known(&w.state.config.verify, host, path).await {
            Ok(got) if got.trim() == body => return Ok(()),
            Ok(got) => {
                last = format!(
                    "answered {:?} instead of the key authorization",
                    got.chars().take(80).collect::<String>()
                );
            }
            Err(e) => last = e.to_string(),
        }
        delay = (delay * 2).min(Duration::from_secs(4));
    }
    Err(AttemptError::Failure(format!(
        "self-check of http://{host}{path} failed (does {host} point at the proxies?): {last}"
    )))
}

/// The CA's explanation of an invalid order: the first challenge error it reports.
async fn invalid_reason(order: &mut instant_acme::Order, host: &str) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await
            && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
        {
            return format!("the CA could not validate {host}: {problem}");
        }
    }
    format!("the CA marked the order for {host} invalid")
}
