//! API keys and the [`Caller`] extractor.
//!
//! A key is `sk_` + 40 random alphanumerics (≈238 bits). The database keeps its first 12
//! characters (`prefix`, unique and indexed) for lookup and the SHA-256 of the whole key for
//! verification, compared in constant time. A fast hash is the right tool here: slow password
//! hashes (argon2, bcrypt) exist to make guessing low-entropy human passwords expensive, but a
//! 238-bit random secret cannot be guessed, so a leaked table gives nothing away and every
//! request stays cheap to authenticate.
//!
//! A key is accepted from `Authorization: Bearer <key>`, `X-API-Key: <key>` or `?key=<key>`.
//! Missing, unknown, revoked or expired keys get 401; a key without the scope an endpoint needs
//! gets 403 naming the scope. The scope a route needs is read from the route table
//! (`crate::api::ROUTES`) by the extractor itself, before the body is parsed; a route that is not
//! in the table requires `*`.
//!
//! [`authenticate`] runs once per request, in the rate-limit middleware (`crate::ratelimit`),
//! which needs the team to pick its budget; it leaves the [`Caller`] in the request extensions
//! where the extractor finds it. Nothing is cached between requests: revoking a key takes effect
//! on the next request on every replica.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::{header, request::Parts};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{self, keys};
use crate::error::ApiError;
use crate::state::AppState;

pub const KEY_PREFIX: &str = "sk_";
pub const KEY_RANDOM_LEN: usize = 40;
/// Characters of the key stored in clear for lookup.
pub const LOOKUP_PREFIX_LEN: usize = 12;
/// `last_used_at` is refreshed at most this often per key.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Every scope a key may hold. `x:*` grants every `x:…` scope, `*` grants everything.
pub const SCOPES: &[&str] = &[
    "*",
    "links:*",
    "links:read",
    "links:write",
    "links:delete",
    "stats:*",
    "stats:read",
    "domains:*",
    "domains:read",
    "domains:write",
    "domains:delete",
    "qr:*",
    "qr:read",
    "qr:write",
    "qr:delete",
    "webhooks:*",
    "webhooks:read",
    "webhooks:write",
    "webhooks:delete",
    "galleries:*",
    "galleries:read",
    "galleries:write",
    "galleries:delete",
    "account:*",
    "account:read",
    "account:write",
];

/// A fresh secret key.
pub fn generate_secret() -> String {
    let rand: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(KEY_RANDOM_LEN)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{rand}")
}

/// SHA-256 of the key, lower-case hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The part of a key stored in clear, or `None` when the string cannot be a key.
pub fn lookup_prefix(secret: &str) -> Option<&str> {
    let plausible = secret.len() == KEY_PREFIX.len() + KEY_RANDOM_LEN
        && secret.starts_with(KEY_PREFIX)
        && secret[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric());
    plausible.then(|| &secret[..LOOKUP_PREFIX_LEN])
}

/// Does a key holding `granted` have `required` (a concrete scope like `links:read`)?
pub fn scope_allows(granted: &[String], required: &str) -> bool {
    granted.iter().any(|g| {
        g == "*"
            || g == required
            || g.strip_suffix(":*")
                .is_some_and(|res| required.split_once(':').is_some_and(|(r, _)| r == res))
    })
}

pub fn is_known_scope(s: &str) -> bool {
    SCOPES.contains(&s)
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub team_id: String,
    pub key_id: String,
    /// The key's lookup prefix (`sk_` + 9 characters): safe to log and show.
    pub key_prefix: String,
    pub scopes: Vec<String>,
    /// The team's plan name (`teams.plan`), resolved through `config.plans`.
    pub plan: String,
}

impl Caller {
    /// 403 FORBIDDEN unless the key holds `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if scope_allows(&self.scopes, scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                scope: scope.to_owned(),
            })
        }
    }
}

/// The key a request presents, from whichever of the three places carries it.
fn presented_key(parts: &Parts) -> Result<Option<String>, ApiError> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
        let (scheme, token) = v.trim().split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::Unauthorized(
                "expected Authorization: Bearer <api key>",
            ));
        }
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(v) = parts.headers.get("x-api-key") {
        let v = v
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed X-API-Key header"))?;
        return Ok(Some(v.trim().to_owned()));
    }
    let from_query = parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
    });
    Ok(from_query)
}

/// Does the request carry a key at all (in any of the three places)?
pub fn presents_key(parts: &Parts) -> bool {
    !matches!(presented_key(parts), Ok(None))
}

/// Authenticates the key a request presents: one indexed query (key joined with its team's
/// plan), a constant-time hash comparison, revocation and expiry checked against the row just
/// read (so a revocation is effective on the very next request, on every replica). Scopes are
/// not checked here (see the [`Caller`] extractor).
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let secret = presented_key(parts)?.ok_or(ApiError::Unauthorized(
        "an API key is required (Authorization: Bearer, X-API-Key or ?key=)",
    ))?;
    let invalid = ApiError::Unauthorized("invalid, revoked or expired API key");
    let Some(prefix) = lookup_prefix(&secret) else {
        return Err(invalid);
    };
    let (key, plan) = match state.key_cache.get(prefix) {
        Some(hit) => hit,
        None => {
            let Some((key, plan)) = keys::find_for_auth(&state.db, prefix).await? else {
                return Err(invalid);
            };
            state.key_cache.put(&key, &plan);
            (key, plan)
        }
    };
    let presented = hash_secret(&secret);
    if !bool::from(presented.as_bytes().ct_eq(key.secret_hash.as_bytes())) {
        return Err(invalid);
    }
    let now = db::now_ms();
    if key.revoked_at.is_some() || key.expires_at.is_some_and(|e| e <= now) {
        return Err(invalid);
    }
    if key.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_MS) {
        // Off the request's path: a lost update only makes `last_used_at` a minute staler.
        let db = state.db.clone();
        let id = key.id.clone();
        tokio::spawn(async move {
            if let Err(e) = keys::touch(&db, &id, now).await {
                tracing::debug!(error = %e, key_id = %id, "could not update last_used_at");
            }
        });
    }
    Ok(Caller {
        team_id: key.team_id,
        key_id: key.id,
        key_prefix: key.prefix,
        scopes: key.scopes,
        plan,
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The rate-limit middleware has usually authenticated the request already.
        let caller = match parts.extensions.get::<Caller>() {
            Some(c) => c.clone(),
            None => authenticate(parts, state).await?,
        };
        // The scope comes from the route table; a route missing from it needs `*` (fail closed).
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .and_then(|p| crate::api::find_route(p.as_str(), &parts.method));
        match route {
            Some(r) => {
                if let Some(scope) = r.scope {
                    caller.require(scope)?;
                }
            }
            None => caller.require("*")?,
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_scopes() {
        let k = generate_secret();
        assert_eq!(k.len(), 43);
        assert_eq!(lookup_prefix(&k), Some(&k[..12]));
        assert_eq!(lookup_prefix("sk_short"), None);
        assert_eq!(hash_secret("abc").len(), 64);
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(scope_allows(&s(&["*"]), "links:write"));
        assert!(scope_allows(&s(&["links:*"]), "links:delete"));
        assert!(scope_allows(&s(&["links:read"]), "links:read"));
        assert!(!scope_allows(&s(&["links:read"]), "links:write"));
        assert!(!scope_allows(&s(&["qr:*"]), "links:read"));
        assert!(!scope_allows(&s(&["link:*"]), "links:read"));
    }
}
