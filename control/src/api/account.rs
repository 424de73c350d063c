//! `GET/PATCH /api/v1/account`: the caller's team (name, plan, creation time). Only the name can
//! be changed through the API; plans are changed by the operator (`sling teams set-plan`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::extract::Json;
use super::ok;
use crate::auth::Caller;
use crate::db::teams::{self, Team};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate::rfc3339;

/// The account as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub created_at: String,
}

impl From<Team> for AccountView {
    fn from(t: Team) -> Self {
        Self {
            id: t.id,
            name: t.name,
            plan: t.plan,
            created_at: rfc3339(t.created_at),
        }
    }
}

/// `PATCH /api/v1/account`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountPatch {
    pub name: Option<String>,
}

/// `GET /api/v1/account`
pub async fn get(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let team = teams::find_by_id(&state.db, &caller.team_id)
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    Ok(ok(AccountView::from(team)).into_response())
}

/// `PATCH /api/v1/account`
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Json(patch): Json<AccountPatch>,
) -> ApiResult<Response> {
    if let Some(name) = &patch.name {
        let name = teams::valid_name(name).map_err(|e| ApiError::invalid_field(&["name"], e))?;
        if !teams::rename(&state.db, &caller.team_id, name).await? {
            return Err(ApiError::NotFound("account"));
        }
    }
    get(State(state), caller).await
}

/// The hand-written OpenAPI part of the account operations (issue 7), for `openapi::operation`.
pub fn openapi_operation(op: super::Op) -> serde_json::Value {
    use super::Op;
    use super::openapi::{error_ref as err, ok_json};
    use serde_json::json;
    let s = json!({"type": "string"});
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let account = json!({"type": "object", "properties": {
        "id": s, "name": s, "plan": s, "createdAt": {"type": "string", "format": "date-time"}}});
    let key = json!({"type": "object", "properties": {
        "id": s, "name": s, "prefix": s, "scopes": {"type": "array", "items": s},
        "createdAt": {"type": "string", "format": "date-time"}, "expiresAt": time, "lastUsedAt": time}});
    let quota = json!({"type": "object", "properties": {
        "planType": s, "period": {"enum": ["day", "month"]}, "currentCount": {"type": "integer"},
        "limit": {"type": ["integer", "null"]}, "remaining": {"type": ["integer", "null"]},
        "resetsAt": {"type": "string", "format": "date-time"}}});
    let q = |name: &str, schema: serde_json::Value, d: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": d});
    let list_of = |item: serde_json::Value| {
        json!({"type": "object", "properties": {"items": {"type": "array", "items": item},
            "pagination": {"$ref": "#/components/schemas/Pagination"}}})
    };
    match op {
        Op::GetAccount => {
            json!({"tags": ["account"], "responses": {"200": ok_json("The account", account)}})
        }
        Op::UpdateAccount => json!({
            "tags": ["account"],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false,
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100}}}}}},
            "responses": {"200": ok_json("The updated account", account), "400": err("INVALID_REQUEST")},
        }),
        Op::ListApiKeys => {
            json!({"tags": ["account"], "parameters": super::paging::openapi_parameters(), "responses": {"200": ok_json("Keys that are not revoked, newest first", list_of(key))}})
        }
        Op::CreateApiKey => json!({
            "tags": ["account"],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["scopes"], "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "maxLength": 100},
                    "scopes": {"type": "array", "items": {"enum": crate::auth::SCOPES}, "minItems": 1},
                    "expiresAt": {"type": "string", "format": "date-time"},
                    "expiresInDays": {"type": "integer", "minimum": 1, "maximum": 3650}}}}}},
            "responses": {
                "201": ok_json("The key, with `secret` (shown only this once)", key),
                "400": err("INVALID_REQUEST: unknown scope, bad expiry"),
                "403": err("FORBIDDEN: a key can only grant scopes it holds"),
            },
        }),
        Op::RevokeApiKey => json!({
            "tags": ["account"],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": s}],
            "responses": {"204": {"description": "Revoked; empty body"}, "404": err("NOT_FOUND")},
        }),
        Op::GetUsage => json!({
            "tags": ["account"],
            "responses": {"200": ok_json("Plan, link quotas (links.day, links.month), rate limits, domains, API logs", json!({
                "type": "object", "properties": {
                    "plan": s,
                    "links": {"type": "object", "properties": {"day": quota, "month": quota}},
                    "rateLimits": {"type": "object"},
                    "domains": {"type": "array", "items": {"enum": ["default", "premium", "custom"]}},
                    "apiLogs": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "retentionDays": {"type": ["integer", "null"]}}}}}))},
        }),
        Op::ListApiLogs => json!({
            "tags": ["account"],
            "parameters": [
                q("method", s.clone(), "HTTP method"),
                q("status", json!({"type": "integer"}), "Response status"),
                q("path", s.clone(), "Path prefix"),
                q("from", json!({"type": "string", "format": "date-time"}), "Calls at or after"),
                q("to", json!({"type": "string", "format": "date-time"}), "Calls before"),
                q("page", json!({"type": "integer", "minimum": 1, "default": 1}), "Page number"),
                q("perPage", json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20}), "Page size"),
            ],
            "responses": {
                "200": ok_json("Logged calls, newest first (never keys or bodies)", list_of(json!({
                    "type": "object", "properties": {"id": s, "method": s, "path": s, "status": {"type": "integer"},
                    "latencyMs": {"type": "number"}, "keyPrefix": s, "createdAt": {"type": "string", "format": "date-time"}}}))),
                "400": err("INVALID_REQUEST"),
            },
        }),
        _ => json!({"responses": {}}),
    }
}
