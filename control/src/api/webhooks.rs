//! `/api/v1/webhooks`: where a team's events are sent (delivery in `crate::webhooks`).
//!
//! A webhook has a URL (http or https; private, loopback and link-local hosts are refused here
//! when given as addresses, and at every delivery after resolving), the event types it wants
//! ([`EVENTS`], or `*`), a description and an `active` flag. Its signing secret (`whsec_…`) is
//! shown when it is created and when it is rotated (`PATCH` with `"rotateSecret": true`), never
//! otherwise; it is kept sealed. `POST …/test` queues a `webhook.test` event to it now;
//! `GET …/deliveries` lists what was sent, with each attempt's outcome.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extract::{Json, Path, Query};
use super::ok;
use super::paging::{PageParams, Paging};
use crate::auth::Caller;
use crate::db::{self, webhooks, webhooks::WebhookRow};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate::{self, rfc3339};

/// The events a webhook can ask for.
pub const EVENTS: &[&str] = &[
    "click",
    "qr.scanned",
    "link.created",
    "link.updated",
    "link.deleted",
    "domain.verified",
    "domain.deleted",
    "certificate.issued",
    "certificate.renewed",
    "certificate.failed",
];
/// Webhooks a team may have.
pub const MAX_WEBHOOKS: i64 = 20;
const MAX_DESCRIPTION_LEN: usize = 200;

/// A webhook as the API shows it (the secret only when just made or rotated).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookView {
    id: String,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    created_at: String,
    updated_at: String,
}

fn view(row: WebhookRow, secret: Option<String>) -> WebhookView {
    WebhookView {
        description: (!row.description.is_empty()).then_some(row.description),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        id: row.id,
        url: row.url,
        events: row.events,
        active: row.active,
        secret,
    }
}

fn new_secret() -> String {
    let rand: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("whsec_{rand}")
}

/// An http(s) URL whose host, when it is an address, is a public one (unless allowed).
fn target(state: &AppState, raw: &str) -> ApiResult<String> {
    let url = validate::url(&["url"], raw)?;
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    let host = url.host_str().unwrap_or("").trim_end_matches('.');
    let local_name = host == "localhost" || host.ends_with(".localhost");
    if !state.config.webhooks.allow_private
        && (literal.is_some_and(|ip| !crate::verify::is_public(ip)) || local_name)
    {
        return Err(ApiError::invalid_url(
            &["url"],
            format!(
                "{host} is a private, loopback or reserved address, which webhooks may not reach"
            ),
        ));
    }
    Ok(url.to_string())
}

fn events(raw: Vec<String>) -> ApiResult<Vec<String>> {
    if raw.is_empty() {
        return Err(ApiError::invalid_field(
            &["events"],
            "give at least one event, or \"*\" for all",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let e = e.trim().to_owned();
        if e != "*" && !EVENTS.contains(&e.as_str()) {
            return Err(ApiError::InvalidRequest {
                message: format!("unknown event {e:?} (known: *, {})", EVENTS.join(", ")),
                details: vec![crate::error::Detail::with_path(
                    vec![json!("events"), json!(i)],
                    format!("unknown event {e:?}"),
                )],
            });
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn description(raw: Option<String>) -> ApiResult<String> {
    Ok(match raw {
        Some(d) => {
            validate::text(&["description"], &d, MAX_DESCRIPTION_LEN, false)?.unwrap_or_default()
        }
        None => String::new(),
    })
}

/// `POST /api/v1/webhooks`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    url: String,
    events: Vec<String>,
    description: Option<String>,
    active: Option<bool>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateBody>,
) -> ApiResult<Response> {
    let url = target(&state, &body.url)?;
    let events = events(body.events)?;
    let description = description(body.description)?;
    if webhooks::count(&state.db, &caller.team_id).await? >= MAX_WEBHOOKS {
        return Err(ApiError::invalid_field(
            &["url"],
            format!("a team may have at most {MAX_WEBHOOKS} webhooks"),
        ));
    }
    let secret = new_secret();
    let now = db::now_ms();
    let row = WebhookRow {
        id: crate::ids::new_id("wh"),
        team_id: caller.team_id.clone(),
        url,
        events,
        secret: state.config.sealer.seal(secret.as_bytes()),
        description,
        active: body.active.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    webhooks::insert(&state.db, &row).await?;
    tracing::info!(webhook_id = %row.id, "webhook created");
    Ok((StatusCode::CREATED, ok(view(row, Some(secret)))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<Response> {
    let paging = p.paging()?;
    let rows = webhooks::list(&state.db, &caller.team_id).await?;
    let total = rows.len() as u64;
    let items: Vec<WebhookView> = paging
        .slice(rows)
        .into_iter()
        .map(|r| view(r, None))
        .collect();
    Ok(ok(paging.envelope(items, total)).into_response())
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<WebhookRow> {
    webhooks::get(&state.db.pool, &caller.team_id, id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(view(find(&state, &caller, &id).await?, None)).into_response())
}

/// `PATCH /api/v1/webhooks/{id}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "super::link_body::present")]
    description: Option<Option<String>>,
    active: Option<bool>,
    #[serde(default)]
    rotate_secret: bool,
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PatchBody>,
) -> ApiResult<Response> {
    let mut row = find(&state, &caller, &id).await?;
    if let Some(url) = body.url {
        row.url = target(&state, &url)?;
    }
    if let Some(e) = body.events {
        row.events = events(e)?;
    }
    if let Some(d) = body.description {
        row.description = description(d)?;
    }
    if let Some(active) = body.active {
        row.active = active;
    }
    let secret = body.rotate_secret.then(new_secret);
    if let Some(s) = &secret {
        row.secret = state.config.sealer.seal(s.as_bytes());
    }
    row.updated_at = db::now_ms();
    if !webhooks::update(&state.db, &row).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    Ok(ok(view(row, secret)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if !webhooks::delete(&state.db, &caller.team_id, &id).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A delivery as the API shows it.
fn delivery_view(d: webhooks::DeliveryRow) -> Value {
    json!({
        "id": d.id,
        "webhookId": d.webhook_id,
        "eventId": d.event_id,
        "event": d.event_type,
        "state": d.state,
        "attempts": d.attempts,
        "nextAttemptAt": (d.state == "pending").then(|| rfc3339(d.next_attempt_at)),
        "lastStatus": d.last_status,
        "lastError": d.last_error,
        "data": serde_json::from_str::<Value>(&d.payload).unwrap_or(Value::Null),
        "createdAt": rfc3339(d.created_at),
        "finishedAt": d.finished_at.map(rfc3339),
    })
}

/// `POST /api/v1/webhooks/{id}/test`: queues a `webhook.test` event now, active or not.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let hook = webhooks::get(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))?;
    let event_id = crate::ids::new_id("evt");
    let payload = json!({"webhookId": hook.id, "message": "a test event from sling"});
    let event = webhooks::Event {
        id: &event_id,
        event_type: webhooks::TEST_EVENT,
        payload: &payload,
    };
    let delivery_id = webhooks::insert_delivery(&mut w.tx, &hook, &event, now).await?;
    w.commit().await?;
    state.webhook_wake.notify_one();
    let delivery = webhooks::get_delivery(&state.db, &caller.team_id, &delivery_id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    Ok((StatusCode::ACCEPTED, ok(delivery_view(delivery))).into_response())
}

pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
) -> ApiResult<Response> {
    let paging: Paging = p.paging()?;
    let hook = find(&state, &caller, &id).await?;
    let (rows, total) = webhooks::list_deliveries(
        &state.db,
        &caller.team_id,
        &hook.id,
        paging.per_page,
        paging.offset(),
    )
    .await?;
    let items: Vec<Value> = rows.into_iter().map(delivery_view).collect();
    Ok(ok(paging.envelope(items, total)).into_response())
}

/// The OpenAPI operations of this module.
pub fn openapi_operation(op: super::Op) -> Value {
    use super::Op;
    use super::openapi::{error_ref as err, ok_json};
    let s = json!({"type": "string"});
    let mut known: Vec<&str> = vec!["*"];
    known.extend(EVENTS);
    let hook = json!({"type": "object", "properties": {
        "id": s, "url": s, "events": {"type": "array", "items": {"enum": known}},
        "description": {"type": ["string", "null"]}, "active": {"type": "boolean"},
        "secret": {"type": "string", "description": "Only when created or rotated"},
        "createdAt": s, "updatedAt": s}});
    let delivery = json!({"type": "object", "properties": {
        "id": s, "webhookId": s, "eventId": s, "event": s,
        "state": {"enum": ["pending", "delivered", "failed"]}, "attempts": {"type": "integer"},
        "nextAttemptAt": {"type": ["string", "null"]}, "lastStatus": {"type": ["integer", "null"]},
        "lastError": {"type": ["string", "null"]}, "data": {"type": "object"},
        "createdAt": s, "finishedAt": {"type": ["string", "null"]}}});
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": s}]);
    let body = |required: Value| {
        json!({"required": true, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false, "required": required, "properties": {
            "url": {"type": "string", "format": "uri"}, "events": {"type": "array", "items": {"enum": known}},
            "description": s, "active": {"type": "boolean"},
            "rotateSecret": {"type": "boolean", "description": "PATCH only: a new secret, shown once"}}}}}})
    };
    let list = |items: Value| {
        json!({"type": "object", "properties": {
        "items": {"type": "array", "items": items}, "pagination": {"$ref": "#/components/schemas/Pagination"}}})
    };
    let bad = err(
        "INVALID_REQUEST or INVALID_URL (not http(s), a private or loopback address, an unknown event)",
    );
    match op {
        Op::CreateWebhook => json!({"tags": ["webhooks"],
            "description": "Deliveries are POSTed with X-Webhook-Signature: sha256=HMAC-SHA256(secret, \"<X-Webhook-Timestamp>.<body>\"), and retried after 5 s, 30 s, 2 min and 10 min.",
            "requestBody": body(json!(["url", "events"])),
            "responses": {"201": ok_json("The webhook, with its secret (shown once)", hook), "400": bad}}),
        Op::ListWebhooks => {
            json!({"tags": ["webhooks"], "parameters": super::paging::openapi_parameters(),
            "responses": {"200": ok_json("The team's webhooks", list(hook))}})
        }
        Op::UpdateWebhook => {
            json!({"tags": ["webhooks"], "parameters": id, "requestBody": body(json!([])),
            "responses": {"200": ok_json("The webhook", hook), "400": bad, "404": err("NOT_FOUND")}})
        }
        Op::DeleteWebhook => json!({"tags": ["webhooks"], "parameters": id,
            "responses": {"204": {"description": "Deleted with its deliveries"}, "404": err("NOT_FOUND")}}),
        Op::TestWebhook => json!({"tags": ["webhooks"], "parameters": id,
            "responses": {"202": ok_json("The queued delivery of a webhook.test event", delivery), "404": err("NOT_FOUND")}}),
        Op::ListWebhookDeliveries => {
            let mut params = super::paging::openapi_parameters();
            if let (Some(p), Some(first)) =
                (params.as_array_mut(), id.as_array().and_then(|a| a.first()))
            {
                p.insert(0, first.clone());
            }
            json!({"tags": ["webhooks"], "parameters": params,
                "responses": {"200": ok_json("Deliveries, newest first", list(delivery)), "404": err("NOT_FOUND")}})
        }
        _ => json!({"tags": ["webhooks"], "parameters": id,
            "responses": {"200": ok_json("The webhook", hook), "404": err("NOT_FOUND")}}),
    }
}
