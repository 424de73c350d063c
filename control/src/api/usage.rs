//! `GET /api/v1/usage`: the team's plan and every limit with what is left of it: link quotas
//! per day and month (the same objects LIMIT_REACHED carries), the request rate limits, the
//! domain kinds the plan may use, and API-log retention.
//!
//! Rate-limit buckets cannot be read without being charged in memory (governor has no peek), so
//! `remaining` is given for the class this request itself drew on (reads), exactly as its
//! `X-RateLimit-*` headers say; every response carries the headers of its own class.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::ok;
use crate::auth::Caller;
use crate::db::usage;
use crate::error::ApiResult;
use crate::state::AppState;

/// `GET /api/v1/usage`
pub async fn get(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let plan = state.config.plans.resolve(&caller.plan);
    let now = state.clock.now_ms();
    let quotas = usage::quotas(&state.db, &caller.team_id, plan, now).await?;
    let mut links = serde_json::Map::new();
    for q in quotas {
        links.insert(
            q.period.to_owned(),
            serde_json::to_value(&q).unwrap_or_default(),
        );
    }
    Ok(ok(serde_json::json!({
        "plan": plan.name,
        "links": links,
        "rateLimits": {
            "readPerMinute": plan.read_per_minute,
            "writePerMinute": plan.write_per_minute,
            "requestsPerHour": plan.requests_per_hour,
            "shared": state.limiter.is_shared(),
            "headers": "X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (unix seconds when the bucket is full) on every response",
        },
        "domains": plan.domains,
        "apiLogs": {
            "enabled": plan.api_logs,
            "retentionDays": plan.api_logs.then_some(plan.api_log_retention_days),
        },
    }))
    .into_response())
}
