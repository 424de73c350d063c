//! Link-creation quotas: one counter row per (team, period, period start) in `usage_counters`.
//!
//! Creating links calls [`consume`] inside the same write transaction as the inserts. The
//! counter is bumped with an upsert that returns the new count: on Postgres the upsert holds the
//! row lock until commit, so a concurrent create waits and then sees the committed count; on
//! SQLite writers are serialised by [`Db::begin_write`](super::Db::begin_write). Either way two
//! concurrent creates cannot both take the last unit of a quota. When the new count passes the
//! limit, `consume` returns LIMIT_REACHED and the caller drops (rolls back) the transaction.
//!
//! Periods are calendar days and months in UTC; a new period is simply a new row, so a quota
//! "resets" at 00:00:00 UTC (daily) and on the 1st at 00:00:00 UTC (monthly) with no job to run.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::Db;
use crate::error::ApiError;
use crate::plans::Plan;
use crate::validate::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Month, Period::Day];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }

    /// The plan's limit for this period (`None` = unlimited).
    pub fn limit(self, plan: &Plan) -> Option<u64> {
        match self {
            Period::Day => plan.links_per_day,
            Period::Month => plan.links_per_month,
        }
    }

    /// `[start, end)` of the period containing `now_ms`, in unix ms (UTC calendar).
    pub fn bounds(self, now_ms: i64) -> (i64, i64) {
        use jiff::tz::TimeZone;
        let ts = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let date = ts.to_zoned(TimeZone::UTC).date();
        let (start, next) = match self {
            Period::Day => (date, date.tomorrow()),
            Period::Month => (date.first_of_month(), date.last_of_month().tomorrow()),
        };
        let ms = |d: jiff::civil::Date| {
            d.to_zoned(TimeZone::UTC)
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(i64::MAX)
        };
        (ms(start), next.map(ms).unwrap_or(i64::MAX))
    }
}

/// One quota's state, as the `quota` object of LIMIT_REACHED and the entries of `GET /usage`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    pub plan_type: String,
    pub period: &'static str,
    pub current_count: u64,
    /// `null` when unlimited.
    pub limit: Option<u64>,
    /// `null` when unlimited.
    pub remaining: Option<u64>,
    /// Start of the next period (RFC 3339, UTC).
    pub resets_at: String,
}

impl Quota {
    fn new(plan: &Plan, period: Period, count: u64, now_ms: i64) -> Self {
        let limit = period.limit(plan);
        Quota {
            plan_type: plan.name.clone(),
            period: period.as_str(),
            current_count: count,
            limit,
            remaining: limit.map(|l| l.saturating_sub(count)),
            resets_at: rfc3339(period.bounds(now_ms).1),
        }
    }

    fn error(self) -> ApiError {
        let limit = self.limit.unwrap_or(0);
        let message = format!(
            "the {} plan allows {limit} new links per {}; the quota resets at {}",
            self.plan_type, self.period, self.resets_at
        );
        ApiError::LimitReached {
            message,
            quota: serde_json::to_value(&self).unwrap_or_default(),
        }
    }
}

/// Adds `n` to the counter and returns the new count (locks the row on Postgres).
async fn bump(
    conn: &mut AnyConnection,
    team_id: &str,
    period: Period,
    now_ms: i64,
    n: u64,
) -> sqlx::Result<u64> {
    let start = period.bounds(now_ms).0;
    let row = sqlx::query(
        "INSERT INTO usage_counters (team_id, period, period_start, count) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (team_id, period, period_start) \
         DO UPDATE SET count = usage_counters.count + excluded.count RETURNING count",
    )
    .bind(team_id)
    .bind(period.as_str())
    .bind(start)
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_one(&mut *conn)
    .await?;
    let count: i64 = row.try_get(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Counts `n` new links against every quota of `plan`, inside the caller's write transaction.
/// LIMIT_REACHED (with the quota object) when any period would go past its limit; the caller
/// must then drop the transaction, which undoes the increments.
pub async fn consume(
    conn: &mut AnyConnection,
    team_id: &str,
    plan: &Plan,
    n: u64,
    now_ms: i64,
) -> Result<(), ApiError> {
    for period in Period::ALL {
        let after = bump(conn, team_id, period, now_ms, n).await?;
        if let Some(limit) = period.limit(plan)
            && after > limit
        {
            let before = after.saturating_sub(n);
            return Err(Quota::new(plan, period, before, now_ms).error());
        }
    }
    Ok(())
}

/// How many links the team may still create now (`None`: unlimited) and the current count of
/// each period, taking the counter rows' locks for the rest of the transaction. With `Err`,
/// nothing at all may be created: the error is LIMIT_REACHED for the exhausted period.
pub async fn available(
    conn: &mut AnyConnection,
    team_id: &str,
    plan: &Plan,
    now_ms: i64,
) -> Result<(Option<u64>, Vec<(Period, u64)>), ApiError> {
    let mut left: Option<u64> = None;
    let mut counts = Vec::with_capacity(2);
    for period in Period::ALL {
        let count = bump(conn, team_id, period, now_ms, 0).await?;
        counts.push((period, count));
        if let Some(limit) = period.limit(plan) {
            if count >= limit {
                return Err(Quota::new(plan, period, count, now_ms).error());
            }
            let rem = limit - count;
            left = Some(left.map_or(rem, |l| l.min(rem)));
        }
    }
    Ok((left, counts))
}

/// The LIMIT_REACHED error for a bulk item refused because the quota ran out mid-request:
/// `counts` as [`available`] returned them, `used` the links created since.
pub fn exhausted(plan: &Plan, counts: &[(Period, u64)], used: u64, now_ms: i64) -> ApiError {
    let tightest = counts
        .iter()
        .filter_map(|&(p, c)| {
            let c = c + used;
            p.limit(plan).map(|l| (p, c, l.saturating_sub(c)))
        })
        .min_by_key(|&(_, _, rem)| rem);
    match tightest {
        Some((p, c, _)) => Quota::new(plan, p, c, now_ms).error(),
        None => Quota::new(plan, Period::Month, 0, now_ms).error(),
    }
}

/// The current state of every quota (no locks; for `GET /api/v1/usage`).
pub async fn quotas(db: &Db, team_id: &str, plan: &Plan, now_ms: i64) -> sqlx::Result<Vec<Quota>> {
    let mut out = Vec::new();
    for period in Period::ALL {
        let count = count(db, team_id, period, now_ms).await?;
        out.push(Quota::new(plan, period, count, now_ms));
    }
    Ok(out)
}

/// Links counted in the period containing `now_ms`.
pub async fn count(db: &Db, team_id: &str, period: Period, now_ms: i64) -> sqlx::Result<u64> {
    let row = sqlx::query(
        "SELECT count FROM usage_counters WHERE team_id = $1 AND period = $2 AND period_start = $3",
    )
    .bind(team_id)
    .bind(period.as_str())
    .bind(period.bounds(now_ms).0)
    .fetch_optional(&db.pool)
    .await?;
    match row {
        Some(r) => Ok(u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0)),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .unwrap_or_default()
    }

    #[test]
    fn utc_periods() {
        let now = ms("2025-01-31T23:59:59Z");
        assert_eq!(
            Period::Day.bounds(now),
            (ms("2025-01-31T00:00:00Z"), ms("2025-02-01T00:00:00Z"))
        );
        assert_eq!(
            Period::Month.bounds(now),
            (ms("2025-01-01T00:00:00Z"), ms("2025-02-01T00:00:00Z"))
        );
        let leap = ms("2024-02-29T12:00:00Z");
        assert_eq!(Period::Month.bounds(leap).1, ms("2024-03-01T00:00:00Z"));
        let dec = ms("2025-12-31T23:59:59.999Z");
        assert_eq!(Period::Month.bounds(dec).1, ms("2026-01-01T00:00:00Z"));
    }
}
