//! Why an attempt failed and when to try again.
//!
//! Two kinds of failure are kept apart. An *outage* (the CA unreachable or answering 5xx, a
//! rate limit, the database away) only delays the order: it is retried with backoff forever.
//! A *failure* (the CA found the challenge or the order invalid, our own self-check could not
//! fetch the answer through the proxies) counts towards `--acme-max-attempts`, after which the
//! order and the domain are marked failed with the reason.

use std::time::{Duration, SystemTime};

/// How one attempt ended, when it did not end with a certificate.
#[derive(Debug)]
pub enum AttemptError {
    /// Try again later, without counting it as a failure; `not_before` is the CA's
    /// `Retry-After` when it sent one (rate limits).
    Outage {
        reason: String,
        not_before: Option<SystemTime>,
    },
    /// A real failure, with the reason to show on the domain.
    Failure(String),
    /// The domain (or our lease on its order) went away mid-order: drop everything.
    Gone,
}

impl AttemptError {
    pub fn outage(reason: impl std::fmt::Display) -> Self {
        Self::Outage {
            reason: reason.to_string(),
            not_before: None,
        }
    }

    /// Classifies an error from instant-acme. `retry_after` is the CA's latest `Retry-After`.
    pub fn from_acme(
        context: &str,
        e: instant_acme::Error,
        retry_after: Option<SystemTime>,
    ) -> Self {
        match &e {
            instant_acme::Error::Api(problem) => {
                let kind = problem
                    .r#type
                    .as_deref()
                    .and_then(|t| t.rsplit(':').next())
                    .unwrap_or("");
                let reason = format!("{context}: {problem}");
                match kind {
                    // Limits lift with time; the CA says when.
                    "rateLimited" => Self::Outage {
                        reason,
                        not_before: retry_after,
                    },
                    // The CA's own trouble, or a nonce race: nothing wrong with the order.
                    "serverInternal" | "badNonce" => Self::Outage {
                        reason,
                        not_before: retry_after,
                    },
                    _ if problem.status.is_some_and(|s| s >= 500) => Self::Outage {
                        reason,
                        not_before: retry_after,
                    },
                    _ => Self::Failure(reason),
                }
            }
            // Transport trouble, timeouts, unparsable answers (a proxy's error page): an outage.
            _ => Self::Outage {
                reason: format!("{context}: {e}"),
                not_before: retry_after,
            },
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Outage { reason, .. } | Self::Failure(reason) => reason,
            Self::Gone => "the domain was deleted",
        }
    }
}

impl From<sqlx::Error> for AttemptError {
    fn from(e: sqlx::Error) -> Self {
        Self::outage(format_args!("database: {e}"))
    }
}

/// The delay before attempt `attempts + 1`: `base × 2^(attempts − 1)`, at most `max`.
pub fn backoff(attempts: i64, base: Duration, max: Duration) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1u32 << exp).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        let got: Vec<u64> = (1..=8).map(|a| backoff(a, base, max).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff(0, base, max), base);
        assert_eq!(backoff(i64::MAX, base, max), max);
    }

    fn problem(kind: &str, status: u16) -> instant_acme::Error {
        let json = serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": "x",
            "status": status,
        });
        instant_acme::Error::Api(serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn rate_limits_and_server_errors_are_outages_the_rest_failures() {
        let later = SystemTime::now() + Duration::from_secs(600);
        match AttemptError::from_acme("new order", problem("rateLimited", 429), Some(later)) {
            AttemptError::Outage { not_before, .. } => assert_eq!(not_before, Some(later)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            AttemptError::from_acme("x", problem("serverInternal", 500), None),
            AttemptError::Outage { .. }
        ));
        assert!(matches!(
            AttemptError::from_acme("x", problem("unauthorized", 403), None),
            AttemptError::Failure(_)
        ));
        assert!(matches!(
            AttemptError::from_acme("x", problem("rejectedIdentifier", 400), None),
            AttemptError::Failure(_)
        ));
        assert!(matches!(
            AttemptError::from_acme("x", instant_acme::Error::Str("nope"), None),
            AttemptError::Outage { .. }
        ));
    }
}
