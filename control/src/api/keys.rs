//! `GET/POST/DELETE /api/v1/api-keys`: the team's API keys. The secret is returned once, by
//! `POST`, and never again (only its hash is stored); lists show the lookup prefix instead.
//! A key can only mint keys with scopes it holds itself (no escalation from `account:write`
//! to `*`). `DELETE` revokes: the key is refused from the next request on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::extract::{Json, Path, Query};
use super::ok;
use super::paging::PageParams;
use crate::auth::{self, Caller};
use crate::db::{
    self,
    keys::{self, KeyRow},
};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate::rfc3339;

const MAX_NAME_LEN: usize = 100;
const MAX_EXPIRY_DAYS: u32 = 3650;

/// A key as listed (never the secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<KeyRow> for KeyView {
    fn from(k: KeyRow) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
        }
    }
}

/// `POST /api/v1/api-keys`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    pub name: Option<String>,
    pub scopes: Vec<String>,
    /// RFC 3339 time in the future.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Alternative to `expiresAt`.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// `GET /api/v1/api-keys`: the team's keys that are not revoked, newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<Response> {
    let paging = p.paging()?;
    let live: Vec<KeyRow> = keys::list(&state.db, &caller.team_id)
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect();
    let total = live.len() as u64;
    let items: Vec<KeyView> = paging.slice(live).into_iter().map(KeyView::from).collect();
    Ok(ok(paging.envelope(items, total)).into_response())
}

/// `POST /api/v1/api-keys` → 201 with the key and its `secret` (shown this once).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateKey>,
) -> ApiResult<Response> {
    let name = body.name.unwrap_or_default().trim().to_owned();
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            &["name"],
            format!("must be at most {MAX_NAME_LEN} characters, without control characters"),
        ));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::invalid_field(&["scopes"], "must not be empty"));
    }
    let mut scopes: Vec<String> = Vec::with_capacity(body.scopes.len());
    for s in body.scopes {
        let s = s.trim().to_owned();
        if !auth::is_known_scope(&s) {
            return Err(ApiError::invalid_field(
                &["scopes"],
                format!("unknown scope {s:?}; known: {}", auth::SCOPES.join(", ")),
            ));
        }
        if !auth::scope_allows(&caller.scopes, &s) {
            return Err(ApiError::Forbidden { scope: s });
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let now = db::now_ms();
    let expires_at = match (body.expires_at.as_deref(), body.expires_in_days) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                &["expiresAt"],
                "give expiresAt or expiresInDays, not both",
            ));
        }
        (Some(t), None) => Some(crate::validate::future_time(&["expiresAt"], t, now)?),
        (None, Some(d)) if d == 0 || d > MAX_EXPIRY_DAYS => {
            return Err(ApiError::invalid_field(
                &["expiresInDays"],
                format!("must be between 1 and {MAX_EXPIRY_DAYS}"),
            ));
        }
        (None, Some(d)) => Some(now + i64::from(d) * 86_400_000),
        (None, None) => None,
    };
    let (id, secret) = keys::create_key(&state.db, &caller.team_id, &name, &scopes, expires_at)
        .await
        .map_err(ApiError::from)?;
    let row = keys::get(&state.db, &caller.team_id, &id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("created key {id} vanished")))?;
    let mut view = serde_json::to_value(KeyView::from(row)).map_err(ApiError::internal)?;
    view["secret"] = serde_json::Value::from(secret);
    Ok((StatusCode::CREATED, ok(view)).into_response())
}

/// `DELETE /api/v1/api-keys/{id}` → 204; the key is refused from the next request on.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if keys::revoke(&state.db, &caller.team_id, &id).await? {
        state.key_cache.evict_key(&id);
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound("API key"))
    }
}
