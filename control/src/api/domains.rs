//! `GET /api/v1/domains`, `GET/PATCH /api/v1/domains/{id}`: per-domain behaviour at the edge —
//! where `/` redirects (else the proxy's landing page) and where unknown slugs redirect (else its
//! 404 page). A change is appended to the feed in the same transaction, so every proxy applies it
//! within one long poll.
//!
//! A team sees the default domain and its own. The default domain is shared by every team, so
//! changing it needs a key holding `*` (the operator's admin key); `domains:write` suffices for a
//! team's own domains (custom domains arrive with the certificate issue).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::extract::Json;
use super::link_body::present;
use super::ok;
use crate::auth::Caller;
use crate::db::{self, changes, domains, domains::DomainRow};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate;

/// A domain as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainView {
    pub id: String,
    pub host: String,
    pub is_default: bool,
    pub verified: bool,
    pub root_redirect: Option<String>,
    pub not_found_redirect: Option<String>,
}

impl From<DomainRow> for DomainView {
    fn from(d: DomainRow) -> Self {
        Self {
            id: d.id,
            host: d.host,
            is_default: d.is_default,
            verified: d.verified,
            root_redirect: d.root_redirect,
            not_found_redirect: d.not_found_redirect,
        }
    }
}

/// `PATCH /api/v1/domains/{id}`: an absent field is unchanged, `null` clears it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainPatch {
    #[serde(default, deserialize_with = "present")]
    pub root_redirect: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub not_found_redirect: Option<Option<String>>,
}

/// `GET /api/v1/domains`
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let rows = domains::list_visible(&state.db, &caller.team_id).await?;
    let items: Vec<DomainView> = rows.into_iter().map(DomainView::from).collect();
    Ok(ok(serde_json::json!({ "items": items })).into_response())
}

/// `GET /api/v1/domains/{id}`
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = domains::get_visible(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    Ok(ok(DomainView::from(row)).into_response())
}

/// `PATCH /api/v1/domains/{id}`
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(patch): Json<DomainPatch>,
) -> ApiResult<Response> {
    let root = redirect(&state, "rootRedirect", patch.root_redirect).await?;
    let not_found = redirect(&state, "notFoundRedirect", patch.not_found_redirect).await?;
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let mut row = domains::get_visible(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    if row.is_default {
        // Shared by every team: only the operator's all-powerful key may change it.
        caller.require("*")?;
    }
    if let Some(v) = root {
        row.root_redirect = v;
    }
    if let Some(v) = not_found {
        row.not_found_redirect = v;
    }
    if !domains::update_behaviour(&mut w.tx, &row, now).await? {
        return Err(ApiError::NotFound("domain"));
    }
    let seq = changes::append(&mut w, &[row.upsert_op()], now).await?;
    w.commit().await?;
    state.changes_committed(seq);
    Ok(ok(DomainView::from(row)).into_response())
}

/// A validated redirect target: an http(s) URL that does not point back at sling (a loop).
async fn redirect(
    state: &AppState,
    field: &'static str,
    raw: Option<Option<String>>,
) -> ApiResult<Option<Option<String>>> {
    let Some(Some(raw)) = raw else {
        return Ok(raw);
    };
    let url = validate::url(&[field], &raw)?;
    if super::links::is_own_host(state, url.host_str().unwrap_or("")).await? {
        return Err(ApiError::invalid_url(
            &[field],
            "must not point at a domain sling serves (it would loop)",
        ));
    }
    Ok(Some(Some(url.to_string())))
}

/// The hand-written OpenAPI part of the domain operations, for `openapi::operation`.
pub fn openapi_operation(op: super::Op) -> serde_json::Value {
    use super::Op;
    use serde_json::json;
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok_json = |d: &str, schema: serde_json::Value| {
        json!({"description": d, "content": {"application/json": {"schema": {
            "type": "object", "required": ["success", "data"],
            "properties": {"success": {"const": true}, "data": schema}}}}})
    };
    let s = json!({"type": "string"});
    let url = json!({"type": ["string", "null"], "format": "uri"});
    let domain = json!({"type": "object", "properties": {
        "id": s, "host": s, "isDefault": {"type": "boolean"}, "verified": {"type": "boolean"},
        "rootRedirect": url, "notFoundRedirect": url}});
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    match op {
        Op::ListDomains => json!({"tags": ["domains"], "responses": {"200": ok_json(
            "The default domain and the team's own",
            json!({"type": "object", "properties": {"items": {"type": "array", "items": domain}}}))}}),
        Op::GetDomain => json!({"tags": ["domains"], "parameters": id, "responses": {
            "200": ok_json("The domain", domain), "404": err("NOT_FOUND")}}),
        _ => json!({
            "tags": ["domains"],
            "parameters": id,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false,
                "properties": {"rootRedirect": url, "notFoundRedirect": url}}}}},
            "responses": {
                "200": ok_json("The updated domain", domain),
                "400": err("INVALID_URL: not http(s), or a sling domain (loop)"),
                "403": err("FORBIDDEN: the default domain needs a `*` key"),
                "404": err("NOT_FOUND"),
            },
        }),
    }
}
