//! `GET /api/v1/links/{id}/stats` and `GET /api/v1/stats` (team-wide, with top links).
//!
//! Query: `start`, `end` (RFC 3339, or `YYYY-MM-DD` meaning local midnight in `tz`; an `end` date
//! is inclusive, so `end=2026-05-25` runs to the end of that local day), `tz` (IANA name,
//! default UTC), `interval` (`hour`, `day` (default), `week` (ISO, from Monday), `month`),
//! `includeBots` (default false), `format=csv|json` or `Accept: text/csv`, and for the
//! team-wide call `top` (how many top links, 1–100, default 10). Default range: the 30 local days
//! ending today, up to now.
//!
//! **Why local boundaries are exact.** Clicks are summed from 15-minute UTC rollups. Every UTC
//! offset in the tz database since 1970 is a whole multiple of 15 minutes (+05:30 Kolkata,
//! +05:45 Kathmandu, DST shifts of 30 or 60 minutes), so every local hour, day, week or month
//! boundary is also a 15-minute bucket edge: a rollup bucket never straddles two local buckets,
//! and summing whole rollup buckets gives exact local figures — hour buckets in Kathmandu, and
//! the 23- and 25-hour days of a DST change, included. Requested instants that are not on a
//! bucket edge (`start=…T10:07:00Z`) are widened to whole buckets (`start` down, `end` up).
//!
//! Unique visitors are `COUNT(DISTINCT visitor)` over the raw events of each range, so they are
//! exact for any range and zone but only cover the raw-event retention period
//! (`--click-retention-days`); clicks come from rollups kept forever. The visitor key itself
//! rotates daily on the proxy, so a person is one unique per day at most.
//!
//! CSV is one flat table, `dimension,value,clicks,uniqueClicks`: a `total` row, then `qr`, then
//! `country`, `device`, `browser`, `os`, `referrer` rows (desc by clicks, as in JSON), then one
//! `overTime` row per bucket (value = bucket start) and, team-wide, one `topLink` row per link
//! (value = link id). `uniqueClicks` is filled on `total` and `overTime` rows; an unknown country
//! or a direct visit (JSON `null`) is an empty value.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, ToSpan, Unit, Zoned, ZonedRound};
use serde::{Deserialize, Serialize};

use super::extract::{Path, Query};
use super::ok;
use crate::auth::Caller;
use crate::db::clicks::{BUCKET_MS, bucket_of};
use crate::db::links;
use crate::db::stats::{self, Scope};
use crate::error::{ApiError, ApiResult, Detail};
use crate::state::AppState;

/// Most buckets one `overTime` may hold.
pub const MAX_BUCKETS: usize = 10_000;
pub const DEFAULT_DAYS: i64 = 30;
pub const DEFAULT_TOP: i64 = 10;
pub const MAX_TOP: i64 = 100;
const MAX_PARAM_LEN: usize = 100;

/// The raw query string; everything is validated by hand for precise error details.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsQuery {
    start: Option<String>,
    end: Option<String>,
    tz: Option<String>,
    interval: Option<String>,
    #[serde(alias = "include_bots")]
    include_bots: Option<String>,
    format: Option<String>,
    top: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// The local start of the bucket holding `z`.
    fn floor(self, z: &Zoned) -> Result<Zoned, jiff::Error> {
        match self {
            Interval::Hour => z.round(
                ZonedRound::new()
                    .smallest(Unit::Hour)
                    .mode(RoundMode::Trunc),
            ),
            Interval::Day => z.start_of_day(),
            Interval::Week => {
                let back = i64::from(z.weekday().to_monday_zero_offset());
                z.start_of_day()?.checked_sub(back.days())?.start_of_day()
            }
            Interval::Month => z.first_of_month()?.start_of_day(),
        }
    }

    /// The local start of the bucket after the one starting at `b`.
    fn next(self, b: &Zoned) -> Result<Zoned, jiff::Error> {
        let next = match self {
            // An absolute hour, then back to the local hour (matters only for 30-minute DST).
            Interval::Hour => self.floor(&b.checked_add(1.hour())?)?,
            Interval::Day => b.tomorrow()?.start_of_day()?,
            Interval::Week => b.checked_add(1.week())?.start_of_day()?,
            Interval::Month => b.checked_add(1.month())?.first_of_month()?.start_of_day()?,
        };
        if next.timestamp() > b.timestamp() {
            Ok(next)
        } else {
            b.checked_add(1.hour())
        }
    }
}

/// Validated parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub tz: TimeZone,
    pub tz_name: String,
    /// `[from_ms, to_ms)` on 15-minute bucket edges.
    pub from_ms: i64,
    pub to_ms: i64,
    pub interval: Interval,
    pub include_bots: bool,
    pub csv: bool,
    pub top: i64,
    /// Bucket starts, then the end of the last bucket (`len = buckets + 1`).
    pub bounds: Vec<Zoned>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_field(&[field], message)
}

fn parse_bool(field: &str, v: Option<&str>) -> ApiResult<bool> {
    match v.map(str::trim) {
        None | Some("") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(_) => Err(bad(field, "expected true or false")),
    }
}

/// `start`/`end`: an RFC 3339 instant, or a date (local midnight; for an inclusive `end`, the
/// next local midnight).
fn parse_instant(field: &str, v: &str, tz: &TimeZone, end: bool) -> ApiResult<Timestamp> {
    let v = v.trim();
    if v.len() > MAX_PARAM_LEN {
        return Err(bad(field, "too long"));
    }
    if let Ok(ts) = v.parse::<Timestamp>() {
        return Ok(ts);
    }
    let date: jiff::civil::Date = v.parse().map_err(|_| {
        bad(
            field,
            "expected an RFC 3339 time with offset (2026-05-01T00:00:00Z) or a date (2026-05-01)",
        )
    })?;
    let out_of_range = |_| bad(field, "date out of range");
    let day = date
        .to_zoned(tz.clone())
        .and_then(|z| z.start_of_day())
        .map_err(out_of_range)?;
    let day = if end {
        day.tomorrow()
            .and_then(|z| z.start_of_day())
            .map_err(out_of_range)?
    } else {
        day
    };
    Ok(day.timestamp())
}

impl Params {
    pub fn parse(q: &StatsQuery, now: Timestamp) -> ApiResult<Params> {
        let tz_name = q.tz.as_deref().map(str::trim).unwrap_or("UTC");
        let tz_name = if tz_name.is_empty() { "UTC" } else { tz_name };
        if tz_name.len() > MAX_PARAM_LEN {
            return Err(bad("tz", "too long"));
        }
        let tz = TimeZone::get(tz_name).map_err(|_| {
            bad(
                "tz",
                format!("unknown time zone {tz_name:?}; use an IANA name such as Europe/Paris"),
            )
        })?;
        let interval = match q.interval.as_deref().map(str::trim) {
            None | Some("") | Some("day") => Interval::Day,
            Some("hour") => Interval::Hour,
            Some("week") => Interval::Week,
            Some("month") => Interval::Month,
            Some(_) => return Err(bad("interval", "expected hour, day, week or month")),
        };
        let include_bots = parse_bool("includeBots", q.include_bots.as_deref())?;
        let csv = match q.format.as_deref().map(str::trim) {
            None | Some("") | Some("json") => false,
            Some("csv") => true,
            Some(_) => return Err(bad("format", "expected json or csv")),
        };
        let top = match q.top.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_TOP,
            Some(t) => t
                .parse::<i64>()
                .ok()
                .filter(|t| (1..=MAX_TOP).contains(t))
                .ok_or_else(|| bad("top", format!("expected an integer from 1 to {MAX_TOP}")))?,
        };
        let end = match q.end.as_deref() {
            Some(e) if !e.trim().is_empty() => parse_instant("end", e, &tz, true)?,
            _ => now,
        };
        let start = match q.start.as_deref() {
            Some(s) if !s.trim().is_empty() => parse_instant("start", s, &tz, false)?,
            _ => end
                .to_zoned(tz.clone())
                .start_of_day()
                .and_then(|d| d.checked_sub((DEFAULT_DAYS - 1).days()))
                .and_then(|d| d.start_of_day())
                .map_err(|_| bad("end", "out of range"))?
                .timestamp(),
        };
        if end <= start {
            return Err(ApiError::InvalidRequest {
                message: "end must be after start".into(),
                details: vec![Detail::at(&["end"], "must be after start")],
            });
        }
        let from_ms = bucket_of(start.as_millisecond());
        let to_ms = bucket_of(end.as_millisecond().saturating_add(BUCKET_MS - 1));
        let bounds = buckets(&tz, interval, from_ms, to_ms)?;
        Ok(Params {
            tz,
            tz_name: tz_name.to_owned(),
            from_ms,
            to_ms,
            interval,
            include_bots,
            csv,
            top,
            bounds,
        })
    }

    fn bound_ms(&self) -> Vec<i64> {
        self.bounds
            .iter()
            .map(|z| z.timestamp().as_millisecond())
            .collect()
    }
}

/// Local bucket boundaries covering `[from_ms, to_ms)`: the first is the local start of the
/// bucket holding `from_ms`, the last is at or after `to_ms`.
fn buckets(tz: &TimeZone, interval: Interval, from_ms: i64, to_ms: i64) -> ApiResult<Vec<Zoned>> {
    let range = |_| bad("start", "out of the supported range");
    let from = Timestamp::from_millisecond(from_ms).map_err(range)?;
    let mut b = interval.floor(&from.to_zoned(tz.clone())).map_err(range)?;
    let mut out = Vec::new();
    loop {
        let at = b.timestamp().as_millisecond();
        out.push(b.clone());
        if at >= to_ms {
            return Ok(out);
        }
        if out.len() > MAX_BUCKETS {
            return Err(ApiError::InvalidRequest {
                message: format!(
                    "the range holds more than {MAX_BUCKETS} {} buckets; narrow it or use a longer interval",
                    interval.as_str()
                ),
                details: vec![Detail::at(
                    &["interval"],
                    format!("more than {MAX_BUCKETS} buckets"),
                )],
            });
        }
        b = interval
            .next(&b)
            .map_err(|_| bad("end", "out of the supported range"))?;
    }
}

/// RFC 3339 with the zone's offset at that instant (`2026-03-08T00:00:00-05:00`).
fn rfc3339(z: &Zoned) -> String {
    z.timestamp().display_with_offset(z.offset()).to_string()
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub start: String,
    pub clicks: i64,
    pub unique_clicks: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopLinkView {
    pub id: String,
    pub slug: String,
    pub domain: String,
    pub clicks: i64,
}

/// The figures both endpoints return; `top_links` only team-wide.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_id: Option<String>,
    pub start: String,
    pub end: String,
    pub tz: String,
    pub interval: &'static str,
    pub include_bots: bool,
    pub total_clicks: i64,
    pub unique_clicks: i64,
    pub qr_clicks: i64,
    pub by_country: Vec<serde_json::Value>,
    pub by_device: Vec<serde_json::Value>,
    pub by_browser: Vec<serde_json::Value>,
    pub by_os: Vec<serde_json::Value>,
    pub by_referrer: Vec<serde_json::Value>,
    pub over_time: Vec<Bucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_links: Option<Vec<TopLinkView>>,
    /// (dimension, value, clicks) rows in output order, for CSV.
    #[serde(skip)]
    rows: Vec<(&'static str, Option<String>, i64)>,
}

/// Output name of each breakdown dimension: (dim, JSON key of the value).
const BREAKDOWNS: &[(&str, &str)] = &[
    ("country", "country"),
    ("device", "device"),
    ("browser", "browser"),
    ("os", "os"),
    ("referrer", "referrer"),
];

/// Gathers every figure for `scope`.
pub async fn compute(
    state: &AppState,
    scope: Scope<'_>,
    p: &Params,
    link_id: Option<String>,
) -> ApiResult<StatsView> {
    let db = &state.db;
    let bounds = p.bound_ms();
    let unique_bounds = clamped(&bounds, p);
    let (by, series, uniques, per_bucket) = tokio::try_join!(
        stats::breakdown(db, scope, p.from_ms, p.to_ms, p.include_bots),
        stats::series(db, scope, p.from_ms, p.to_ms, p.include_bots),
        stats::uniques(db, scope, p.from_ms, p.to_ms, p.include_bots),
        stats::uniques_per_bucket(db, scope, &unique_bounds, p.include_bots),
    )?;
    let top_links = match scope {
        Scope::Team(team) => Some(
            stats::top_links(db, team, p.from_ms, p.to_ms, p.include_bots, p.top)
                .await?
                .into_iter()
                .map(|t| TopLinkView {
                    id: t.id,
                    slug: t.slug,
                    domain: t.domain,
                    clicks: t.clicks,
                })
                .collect(),
        ),
        Scope::Link(_) => None,
    };

    let mut total = 0;
    let mut qr = 0;
    let mut dims: HashMap<&str, Vec<(String, i64)>> = HashMap::new();
    for (dim, value, clicks) in by {
        match dim.as_str() {
            "total" => total += clicks,
            "qr" => qr += clicks,
            _ if clicks > 0 => {
                if let Some((d, _)) = BREAKDOWNS.iter().find(|(d, _)| *d == dim) {
                    dims.entry(d).or_default().push((value, clicks));
                }
            }
            _ => {}
        }
    }
    let mut rows = vec![("total", None, total), ("qr", None, qr)];
    let mut lists: Vec<Vec<serde_json::Value>> = Vec::new();
    for (dim, key) in BREAKDOWNS {
        let mut list = dims.remove(dim).unwrap_or_default();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        lists.push(
            list.iter()
                .map(|(v, n)| {
                    let v = (!v.is_empty()).then(|| v.clone());
                    serde_json::json!({ *key: v, "clicks": n })
                })
                .collect(),
        );
        rows.extend(list.into_iter().map(|(v, n)| (*dim, Some(v), n)));
    }

    // Zero-filled buckets; each 15-minute rollup lands in exactly one (see the module docs).
    let mut over_time: Vec<Bucket> = p.bounds[..p.bounds.len().saturating_sub(1)]
        .iter()
        .map(|z| Bucket {
            start: rfc3339(z),
            clicks: 0,
            unique_clicks: 0,
        })
        .collect();
    for (bucket, clicks) in series {
        let i = bounds.partition_point(|b| *b <= bucket);
        if let Some(slot) = i.checked_sub(1).and_then(|i| over_time.get_mut(i)) {
            slot.clicks += clicks;
        }
    }
    for (i, n) in per_bucket {
        if let Some(slot) = over_time.get_mut(i) {
            slot.unique_clicks = n;
        }
    }
    let mut lists = lists.into_iter();
    let mut next = || lists.next().unwrap_or_default();
    Ok(StatsView {
        link_id,
        start: rfc3339(
            &Timestamp::from_millisecond(p.from_ms)
                .unwrap_or(Timestamp::UNIX_EPOCH)
                .to_zoned(p.tz.clone()),
        ),
        end: rfc3339(
            &Timestamp::from_millisecond(p.to_ms)
                .unwrap_or(Timestamp::UNIX_EPOCH)
                .to_zoned(p.tz.clone()),
        ),
        tz: p.tz_name.clone(),
        interval: p.interval.as_str(),
        include_bots: p.include_bots,
        total_clicks: total,
        unique_clicks: uniques,
        qr_clicks: qr,
        by_country: next(),
        by_device: next(),
        by_browser: next(),
        by_os: next(),
        by_referrer: next(),
        over_time,
        top_links,
        rows,
    })
}

/// Bucket bounds cut to the queried range, so per-bucket uniques count the same events as the
/// totals (the first local bucket may start before `from`, the last end after `to`).
fn clamped(bounds: &[i64], p: &Params) -> Vec<i64> {
    bounds
        .iter()
        .map(|b| (*b).clamp(p.from_ms, p.to_ms))
        .collect()
}

fn wants_csv(p: &Params, q: &StatsQuery, headers: &HeaderMap) -> bool {
    if q.format.as_deref().is_some_and(|f| !f.trim().is_empty()) {
        return p.csv;
    }
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|m| {
                m.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))
            })
        })
}

/// Spreadsheets evaluate a cell that starts with one of these as a formula, and a referrer host
/// comes from the visitor's `Referer` (`http://=1+1/` has the host `=1+1`). Such a value is
/// written after a `'`, which spreadsheets show as text (OWASP's advice on CSV injection).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

fn csv_field(out: &mut String, v: &str) {
    let guarded;
    let v = if v.starts_with(FORMULA_START) {
        guarded = format!("'{v}");
        guarded.as_str()
    } else {
        v
    };
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// The flat CSV table described in the module docs.
pub fn to_csv(v: &StatsView) -> String {
    let mut out = String::from("dimension,value,clicks,uniqueClicks\r\n");
    let mut row = |dim: &str, value: &str, clicks: i64, uniques: Option<i64>| {
        out.push_str(dim);
        out.push(',');
        csv_field(&mut out, value);
        out.push(',');
        out.push_str(&clicks.to_string());
        out.push(',');
        if let Some(u) = uniques {
            out.push_str(&u.to_string());
        }
        out.push_str("\r\n");
    };
    for (dim, value, clicks) in &v.rows {
        let uniques = (*dim == "total").then_some(v.unique_clicks);
        row(dim, value.as_deref().unwrap_or(""), *clicks, uniques);
    }
    for b in &v.over_time {
        row("overTime", &b.start, b.clicks, Some(b.unique_clicks));
    }
    for t in v.top_links.iter().flatten() {
        row("topLink", &t.id, t.clicks, None);
    }
    out
}

fn respond(view: StatsView, csv: bool, filename: &str) -> Response {
    if !csv {
        return ok(view).into_response();
    }
    let mut res = to_csv(&view).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// `GET /api/v1/links/{id}/stats`
pub async fn link(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = Params::parse(&q, Timestamp::now())?;
    let link = links::get(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("link"))?;
    let view = compute(&state, Scope::Link(&link.id), &p, Some(link.id.clone())).await?;
    let csv = wants_csv(&p, &q, &headers);
    // The id is ours (`lnk_…`, alphanumerics), safe in a header.
    Ok(respond(view, csv, &format!("stats-{}.csv", link.id)))
}

/// `GET /api/v1/galleries/{id}/stats`: the views of a gallery's page, with the same figures a
/// link's clicks have (the proxies record each view as a click under the gallery's id).
pub async fn gallery(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = Params::parse(&q, Timestamp::now())?;
    let g = crate::db::galleries::get(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("gallery"))?;
    let view = compute(&state, Scope::Link(&g.id), &p, None).await?;
    let csv = wants_csv(&p, &q, &headers);
    Ok(respond(view, csv, &format!("stats-{}.csv", g.id)))
}

/// `GET /api/v1/stats`
pub async fn team(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<StatsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = Params::parse(&q, Timestamp::now())?;
    let view = compute(&state, Scope::Team(&caller.team_id), &p, None).await?;
    let csv = wants_csv(&p, &q, &headers);
    Ok(respond(view, csv, "stats.csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        let field = |v: &str| {
            let mut out = String::new();
            csv_field(&mut out, v);
            out
        };
        assert_eq!(field("example.org"), "example.org");
        assert_eq!(field("a,b\"c"), "\"a,b\"\"c\"");
        assert_eq!(field("=1+1"), "'=1+1");
        assert_eq!(field("+cmd"), "'+cmd");
        assert_eq!(field("-2"), "'-2");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("\tx"), "'\tx");
        assert_eq!(
            field("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(field("a=b"), "a=b");
        assert_eq!(field(""), "");
    }
}
