//! `GET /api/v1/domains/{id}/certificate` (what the domain serves: issuer, serial, validity, and
//! where its ACME order stands; never the key) and `POST …/certificate/renew` (order a new
//! certificate now; at most one order per domain runs, so a renewal asked for while one is
//! running joins it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ok;
use crate::auth::Caller;
use crate::db::{self, acme, certs, domains};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate::rfc3339;

/// A domain's certificate as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateView {
    pub domain_id: String,
    pub host: String,
    /// `none` (never ordered), `issuing`, `active`, `renewing` (active, a new one on order),
    /// `expired`, or `failed` (gave up; see `order.lastError`).
    pub status: &'static str,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub issued_at: Option<String>,
    pub order: Option<OrderView>,
}

/// The domain's ACME order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    /// `due` (waiting or running), `done` or `failed`.
    pub state: String,
    /// `issue` or `renew`.
    pub kind: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
}

fn status(cert: Option<&certs::CertRow>, order: Option<&acme::OrderRow>, now: i64) -> &'static str {
    let due = order.is_some_and(|o| o.state == "due");
    let failed = order.is_some_and(|o| o.state == "failed");
    match cert {
        Some(c) if c.not_after <= now => {
            if due {
                "issuing"
            } else {
                "expired"
            }
        }
        Some(_) if due => "renewing",
        Some(_) => "active",
        None if due => "issuing",
        None if failed => "failed",
        None => "none",
    }
}

async fn view(state: &AppState, domain: &domains::DomainRow) -> ApiResult<CertificateView> {
    let cert = certs::get(&state.db.pool, &domain.id).await?;
    let order = acme::get(&state.db.pool, &domain.id).await?;
    let facts = cert
        .as_ref()
        .and_then(|c| crate::acme::cert::leaf_facts(&c.chain_pem).ok());
    Ok(CertificateView {
        domain_id: domain.id.clone(),
        host: domain.host.clone(),
        status: status(cert.as_ref(), order.as_ref(), db::now_ms()),
        issuer: facts.as_ref().map(|f| f.issuer.clone()),
        serial: facts.as_ref().map(|f| f.serial.clone()),
        not_before: cert.as_ref().map(|c| rfc3339(c.not_before)),
        not_after: cert.as_ref().map(|c| rfc3339(c.not_after)),
        issued_at: cert.as_ref().map(|c| rfc3339(c.issued_at)),
        order: order.map(|o| OrderView {
            next_attempt_at: (o.state == "due").then(|| rfc3339(o.next_attempt_at)),
            state: o.state,
            kind: o.kind,
            attempts: o.attempts,
            last_error: o.last_error,
        }),
    })
}

/// `GET /api/v1/domains/{id}/certificate`
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let domain = domains::get_visible(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    Ok(ok(view(&state, &domain).await?).into_response())
}

/// `POST /api/v1/domains/{id}/certificate/renew`: 202 with the certificate view.
pub async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let domain = domains::get_visible(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    if domain.team_id.is_none() {
        super::domains::require_operator(&mut w.tx, &caller, &domain.host).await?;
    }
    if !domain.verified {
        return Err(ApiError::DomainNotVerified(domain.host));
    }
    let has_cert = certs::get(&mut *w.tx, &id).await?.is_some();
    acme::request(
        &mut w.tx,
        &id,
        if has_cert { "renew" } else { "issue" },
        now,
    )
    .await?;
    w.commit().await?;
    state.acme_wake.notify_one();
    let body = ok(view(&state, &domain).await?);
    Ok((StatusCode::ACCEPTED, body).into_response())
}

/// The hand-written OpenAPI part of the certificate operations, for `openapi::operation`.
pub fn openapi_operation(op: super::Op) -> serde_json::Value {
    use super::openapi::{error_ref as err, ok_json};
    use serde_json::json;
    let s = json!({"type": "string"});
    let opt = json!({"type": ["string", "null"]});
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let order = json!({"type": ["object", "null"], "properties": {
        "state": {"enum": ["due", "done", "failed"]}, "kind": {"enum": ["issue", "renew"]},
        "attempts": {"type": "integer"}, "nextAttemptAt": time, "lastError": opt}});
    let cert = json!({"type": "object", "properties": {
        "domainId": s, "host": s,
        "status": {"enum": ["none", "issuing", "active", "renewing", "expired", "failed"]},
        "issuer": opt, "serial": opt, "notBefore": time, "notAfter": time, "issuedAt": time,
        "order": order}});
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    match op {
        super::Op::RenewCertificate => json!({"tags": ["domains"], "parameters": id, "responses": {
            "202": ok_json("Ordered; the worker picks it up at once", cert),
            "403": err("FORBIDDEN (a shared domain needs a `*` key of the operator's team) or DOMAIN_NOT_VERIFIED"),
            "404": err("NOT_FOUND")}}),
        _ => json!({"tags": ["domains"], "parameters": id, "responses": {
            "200": ok_json("The domain's certificate (never its key) and ACME order", cert),
            "404": err("NOT_FOUND")}}),
    }
}
