//! Rate limits on `/api/…`: per team, reads (GET/HEAD) and writes (everything else) separately,
//! plus an optional hourly cap on both together, from the team's plan; callers without a valid
//! key share a per-client-IP budget (`--anonymous-per-minute`), which also throttles key
//! guessing. Every limit is a GCRA bucket whose whole budget may be spent in a burst.
//!
//! [`middleware`] authenticates the request (once: it leaves the [`Caller`] for the extractor),
//! checks the buckets, answers 429 RATE_LIMITED with `Retry-After` when one is empty, and puts
//! on every response, success or error:
//!
//! - `X-RateLimit-Limit`: the size of the binding bucket (requests per minute of the request's
//!   class, or per hour when the hourly cap is the tighter one);
//! - `X-RateLimit-Remaining`: requests left in it right now;
//! - `X-RateLimit-Reset`: **unix time in seconds** at which the bucket is full again (the form
//!   used by urlplus.cn and utm.bar), not a number of seconds.
//!
//! One replica keeps buckets in memory (`governor`'s keyed GCRA limiters). With `--redis-url`
//! the buckets live in Redis and every replica runs the same GCRA as one Lua script
//! ([`GCRA_LUA`]), which reads the time from Redis itself (`TIME`) and checks and updates all of
//! a request's buckets atomically, so N replicas share one limit instead of allowing N times it.
//! When Redis cannot be reached (or answers slower than [`REDIS_TIMEOUT`]) the replica falls back
//! to its in-memory buckets and logs a warning at most every 30 s: limits then hold per replica
//! (at worst N× the plan across N replicas) rather than failing open completely, and an outage
//! of an optional cache never turns into an API outage.
//!
//! After the response, calls of teams whose plan keeps API logs are handed to
//! [`crate::api_logs::ApiLogSink`] (never awaited).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::auth;
use crate::error::ApiError;
use crate::plans::Plan;
use crate::state::AppState;

/// Longest wait for Redis before a check falls back to the in-memory buckets.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a Redis connection is re-attempted after a failure.
const REDIS_RETRY_MS: i64 = 5_000;
const WARN_EVERY_MS: i64 = 30_000;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Read,
    Write,
}

impl Class {
    pub fn of(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Class::Read
        } else {
            Class::Write
        }
    }
}

/// One GCRA bucket: `limit` requests per `period`, under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub limit: u32,
    pub period: Duration,
}

/// The buckets a team's request of `class` draws on.
pub fn team_buckets(team_id: &str, plan: &Plan, class: Class) -> Vec<Bucket> {
    let (tag, limit) = match class {
        Class::Read => ("r", plan.read_per_minute),
        Class::Write => ("w", plan.write_per_minute),
    };
    let mut out = vec![Bucket {
        key: format!("{{t:{team_id}}}:{tag}"),
        limit,
        period: MINUTE,
    }];
    if let Some(h) = plan.requests_per_hour {
        out.push(Bucket {
            key: format!("{{t:{team_id}}}:h"),
            limit: h,
            period: HOUR,
        });
    }
    out
}

/// The bucket of an unauthenticated client.
pub fn anonymous_bucket(client: &str, per_minute: u32) -> Bucket {
    Bucket {
        key: format!("{{ip:{client}}}:a"),
        limit: per_minute,
        period: MINUTE,
    }
}

/// The outcome of a check, for the binding bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// Until a request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

impl Decision {
    /// The `X-RateLimit-*` headers (and `Retry-After` when refused).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let reset_ms = crate::db::now_ms() + duration_ms_ceil(self.reset_after);
        let reset_unix = (reset_ms + 999) / 1000;
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset_unix));
        if !self.allowed {
            headers.insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs()),
            );
        }
    }

    /// Whole seconds to wait, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        u64::try_from(duration_ms_ceil(self.retry_after).max(1))
            .unwrap_or(1)
            .div_ceil(1000)
    }

    /// The 429 RATE_LIMITED answer to a refused request (headers added by [`Decision::apply`]).
    fn refusal(&self) -> Response {
        ApiError::RateLimited {
            retry_after_secs: self.retry_after_secs(),
        }
        .into_response()
    }

    /// The decision that reports the tightest of several allowed ones.
    fn tighter(self, other: Decision) -> Decision {
        if other.remaining < self.remaining {
            other
        } else {
            self
        }
    }
}

fn duration_ms_ceil(d: Duration) -> i64 {
    i64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// In-memory buckets: one keyed `governor` limiter per distinct (limit, period).
#[derive(Default)]
struct Local {
    limiters: RwLock<HashMap<(u32, Duration), Arc<Keyed>>>,
}

impl Local {
    fn limiter(&self, limit: u32, period: Duration) -> Arc<Keyed> {
        if let Ok(map) = self.limiters.read()
            && let Some(l) = map.get(&(limit, period))
        {
            return l.clone();
        }
        let n = NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period / n.get())
            .unwrap_or_else(|| Quota::per_second(n))
            .allow_burst(n);
        let make = || Arc::new(RateLimiter::keyed(quota).with_middleware());
        match self.limiters.write() {
            Ok(mut map) => map.entry((limit, period)).or_insert_with(make).clone(),
            // A panic elsewhere poisoned the map: keep limiting with a throwaway limiter.
            Err(_) => make(),
        }
    }

    /// Checks the buckets in order and stops at the first that refuses. (A refusal by a later
    /// bucket leaves the earlier ones charged; governor has no refund. The Redis path is exact.)
    fn check(&self, buckets: &[Bucket]) -> Decision {
        let mut out: Option<Decision> = None;
        for b in buckets {
            let limiter = self.limiter(b.limit, b.period);
            let interval = b.period / b.limit.max(1);
            let d = match limiter.check_key(&b.key) {
                Ok(snap) => {
                    let remaining = snap.remaining_burst_capacity();
                    Decision {
                        allowed: true,
                        limit: b.limit,
                        remaining,
                        reset_after: interval * (b.limit.saturating_sub(remaining)),
                        retry_after: Duration::ZERO,
                    }
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(limiter.clock().now());
                    return Decision {
                        allowed: false,
                        limit: b.limit,
                        remaining: 0,
                        reset_after: interval * b.limit,
                        retry_after: wait,
                    };
                }
            };
            out = Some(out.map_or(d, |o| o.tighter(d)));
        }
        out.unwrap_or(Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_after: Duration::ZERO,
            retry_after: Duration::ZERO,
        })
    }

    /// Forgets buckets that are full again (they hold nothing a fresh one would not).
    fn shrink(&self) {
        let limiters: Vec<Arc<Keyed>> = match self.limiters.read() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => return,
        };
        for l in limiters {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// GCRA over several buckets, atomically. `KEYS[i]` is a bucket holding its theoretical arrival
/// time (TAT) in microseconds; `ARGV[2i-1]` its limit and `ARGV[2i]` its period in microseconds.
/// Time comes from Redis (`TIME`), so replicas with skewed clocks agree. The request is allowed
/// only if every bucket allows it, and only then are the TATs advanced. Returns
/// `{allowed, then per bucket: remaining, reset_us, retry_us}`.
pub const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local allowed = 1
local tats = {}
local out = {0}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local e = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + e
  local allow_at = new_tat - period
  if allow_at > now then
    allowed = 0
    out[#out + 1] = 0
    out[#out + 1] = math.ceil(tat - now)
    out[#out + 1] = math.ceil(allow_at - now)
  else
    tats[i] = new_tat
    out[#out + 1] = math.floor((period - (new_tat - now)) / e)
    out[#out + 1] = math.ceil(new_tat - now)
    out[#out + 1] = 0
  end
end
if allowed == 1 then
  for i = 1, #KEYS do
    local ttl_ms = math.ceil((tats[i] - now) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', ttl_ms)
  end
end
out[1] = allowed
return out
";

struct Shared {
    client: redis::Client,
    prefix: String,
    script: redis::Script,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    /// Unix ms of the last failed connection attempt.
    failed_at: AtomicI64,
}

impl Shared {
    async fn conn(&self) -> Option<redis::aio::ConnectionManager> {
        if let Some(c) = self.conn.get() {
            return Some(c.clone());
        }
        let now = crate::db::now_ms();
        if now.saturating_sub(self.failed_at.load(Ordering::Relaxed)) < REDIS_RETRY_MS {
            return None;
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let made = self
            .conn
            .get_or_try_init(|| {
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await;
        match made {
            Ok(c) => Some(c.clone()),
            Err(e) => {
                self.failed_at.store(now, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot connect to Redis; using per-replica rate limits");
                None
            }
        }
    }

    async fn check(&self, buckets: &[Bucket]) -> Result<Decision, String> {
        let mut conn = self.conn().await.ok_or("no Redis connection")?;
        let mut inv = self.script.prepare_invoke();
        for b in buckets {
            inv.key(format!("{}{}", self.prefix, b.key));
            inv.arg(b.limit.max(1));
            inv.arg(u64::try_from(b.period.as_micros()).unwrap_or(u64::MAX));
        }
        let res = tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<Vec<i64>>(&mut conn))
            .await
            .map_err(|_| "Redis timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let allowed = res.first().copied() == Some(1);
        let mut out: Option<Decision> = None;
        for (i, b) in buckets.iter().enumerate() {
            let at = |j: usize| res.get(1 + 3 * i + j).copied().unwrap_or(0).max(0);
            let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
            let d = Decision {
                allowed: at(2) == 0,
                limit: b.limit,
                remaining: u32::try_from(at(0)).unwrap_or(u32::MAX).min(b.limit),
                reset_after: us(at(1)),
                retry_after: us(at(2)),
            };
            out = Some(match out {
                None => d,
                // A refusing bucket is the one to report; otherwise the tightest.
                Some(o) if !o.allowed => o,
                Some(_) if !d.allowed => d,
                Some(o) => o.tighter(d),
            });
        }
        let mut d = out.ok_or("no buckets")?;
        d.allowed = allowed;
        Ok(d)
    }
}

/// The rate limiter of one replica: in-memory buckets, and Redis when configured.
pub struct Limiter {
    local: Local,
    shared: Option<Shared>,
    warned_at: AtomicI64,
}

impl Limiter {
    /// In-memory only.
    pub fn local() -> Self {
        Self {
            local: Local::default(),
            shared: None,
            warned_at: AtomicI64::new(i64::MIN),
        }
    }

    /// Shared through Redis at `url`, every key under `prefix`. Connects lazily (on the first
    /// check), so a Redis that is down at start-up only means per-replica limits until it is up.
    pub fn redis(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("--redis-url {url:?}: {e}"))?;
        Ok(Self {
            local: Local::default(),
            shared: Some(Shared {
                client,
                prefix: prefix.to_owned(),
                script: redis::Script::new(GCRA_LUA),
                conn: tokio::sync::OnceCell::new(),
                failed_at: AtomicI64::new(i64::MIN),
            }),
            warned_at: AtomicI64::new(i64::MIN),
        })
    }

    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Charges one request to every bucket (all or nothing on Redis).
    pub async fn check(&self, buckets: &[Bucket]) -> Decision {
        if let Some(shared) = &self.shared {
            match shared.check(buckets).await {
                Ok(d) => return d,
                Err(e) => {
                    let now = crate::db::now_ms();
                    let last = self.warned_at.load(Ordering::Relaxed);
                    if now.saturating_sub(last) >= WARN_EVERY_MS {
                        self.warned_at.store(now, Ordering::Relaxed);
                        tracing::warn!(
                            error = %e,
                            "Redis rate limiting unavailable; falling back to per-replica limits"
                        );
                    }
                }
            }
        }
        self.local.check(buckets)
    }

    /// Drops in-memory buckets that are full again; call now and then.
    pub fn shrink(&self) {
        self.local.shrink();
    }
}

/// The client address used for the anonymous budget (`ConnectInfo` when served; tests have none).
fn client_ip(req: &Request) -> String {
    client_ip_of(req.extensions())
}

pub(crate) fn client_ip_of(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `answer` (a failure the caller cannot be told more about) if the client IP's anonymous budget
/// allows another request, else 429; with that budget's `X-RateLimit-*` either way. For requests
/// whose team cannot be known because the database does not answer.
pub async fn anonymous_answer(
    limiter: &Limiter,
    client: &str,
    per_minute: u32,
    answer: Response,
) -> Response {
    let decision = limiter.check(&[anonymous_bucket(client, per_minute)]).await;
    let mut res = if decision.allowed {
        answer
    } else {
        decision.refusal()
    };
    decision.apply(res.headers_mut());
    res
}

/// Axum middleware on every `/api/…` route (see the module docs).
pub async fn middleware(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let Some(state) = req.extensions().get::<AppState>().cloned() else {
        tracing::error!("rate-limit middleware without AppState in the request extensions");
        return ApiError::internal(anyhow::anyhow!("misconfigured router")).into_response();
    };
    let class = Class::of(req.method());
    let (parts, body) = req.into_parts();
    let caller = if auth::presents_key(&parts) {
        match auth::authenticate(&parts, &state).await {
            Ok(c) => Some(c),
            // 503 when the database is down; other failures are the handler's to report (401).
            // The team is unknown then, so the client IP's anonymous budget is spent and shown:
            // every response carries X-RateLimit-*, and a client hammering during an outage is
            // slowed like any anonymous caller.
            Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => {
                return anonymous_answer(
                    &state.limiter,
                    &client_ip_of(&parts.extensions),
                    state.config.anonymous_per_minute,
                    e.into_response(),
                )
                .await;
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let log_as = caller.as_ref().map(|_| {
        (
            parts.method.as_str().to_owned(),
            crate::api_logs::loggable_path(&parts.uri),
        )
    });
    let mut req = Request::from_parts(parts, body);
    let (buckets, plan) = match &caller {
        Some(c) => {
            let plan = state.config.plans.resolve(&c.plan);
            (team_buckets(&c.team_id, plan, class), Some(plan))
        }
        None => (
            vec![anonymous_bucket(
                &client_ip(&req),
                state.config.anonymous_per_minute,
            )],
            None,
        ),
    };
    let decision = state.limiter.check(&buckets).await;
    let mut res = if decision.allowed {
        if let Some(c) = &caller {
            req.extensions_mut().insert(c.clone());
        }
        next.run(req).await
    } else {
        decision.refusal()
    };
    decision.apply(res.headers_mut());
    if let (Some(c), Some(plan), Some((method, path))) = (caller, plan, log_as)
        && plan.api_logs
    {
        state.api_logs.record(crate::api_logs::Entry {
            team_id: c.team_id,
            key_prefix: c.key_prefix,
            method,
            path,
            status: res.status().as_u16(),
            latency_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            at_ms: crate::db::now_ms(),
        });
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_gcra() {
        let l = Local::default();
        let b = vec![Bucket {
            key: "k".into(),
            limit: 3,
            period: MINUTE,
        }];
        let ds: Vec<Decision> = (0..4).map(|_| l.check(&b)).collect();
        assert_eq!(
            ds.iter()
                .map(|d| (d.allowed, d.remaining))
                .collect::<Vec<_>>(),
            vec![(true, 2), (true, 1), (true, 0), (false, 0)]
        );
        assert!(ds[3].retry_after > Duration::from_secs(15));
        assert!(ds[3].retry_after_secs() <= 20);
        assert_eq!(Class::of(&Method::HEAD), Class::Read);
        assert_eq!(Class::of(&Method::DELETE), Class::Write);
    }
}
