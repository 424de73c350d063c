//! `GET /api/v1/api-logs`: the team's logged API calls, newest first, filtered by `method`,
//! `status`, `path` (prefix), `from` and `to` (RFC 3339), paginated with `page` and `perPage`.
//! Teams whose plan keeps no logs get an empty list (and `apiLogs.enabled: false` in /usage).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::extract::Query;
use super::ok;
use super::paging::Paging;
use crate::auth::Caller;
use crate::db::api_logs::{self, LogFilter};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate::rfc3339;

/// Query parameters (unknown ones, such as `key`, are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogParams {
    pub method: Option<String>,
    pub status: Option<u16>,
    pub path: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<u32>,
    #[serde(alias = "limit", alias = "per_page")]
    pub per_page: Option<u32>,
}

fn time(path: &str, raw: Option<&str>) -> ApiResult<Option<i64>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .map(|t| Some(t.as_millisecond()))
            .map_err(|_| {
                ApiError::invalid_field(
                    &[path],
                    "must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z",
                )
            }),
    }
}

/// `GET /api/v1/api-logs`
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<LogParams>,
) -> ApiResult<Response> {
    let paging = Paging::new(p.page, p.per_page)?;
    let method = match p.method.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(m) if m.len() <= 10 && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(m.to_ascii_uppercase())
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                &["method"],
                "must be an HTTP method",
            ));
        }
    };
    if p.status.is_some_and(|s| !(100..=599).contains(&s)) {
        return Err(ApiError::invalid_field(&["status"], "must be 100 to 599"));
    }
    let path = match p.path.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) if s.len() > 500 => {
            return Err(ApiError::invalid_field(&["path"], "is too long"));
        }
        Some(s) => Some(s.to_owned()),
    };
    let filter = LogFilter {
        method,
        status: p.status.map(i64::from),
        path,
        from_ms: time("from", p.from.as_deref())?,
        to_ms: time("to", p.to.as_deref())?,
        limit: paging.per_page,
        offset: paging.offset(),
    };
    let (rows, total) = api_logs::list(&state.db, &caller.team_id, &filter).await?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": format!("log_{}", r.id),
                "method": r.method,
                "path": r.path,
                "status": r.status,
                "latencyMs": r.latency_us as f64 / 1000.0,
                "keyPrefix": r.key_prefix,
                "createdAt": rfc3339(r.created_at),
            })
        })
        .collect();
    Ok(ok(paging.envelope(items, total)).into_response())
}
