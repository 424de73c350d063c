//! Click ingestion: a group of proxy batches → one transaction that records the batch ids,
//! inserts the raw events, upserts the 15-minute rollups and bumps `links.clicks`
//! ([`ingest_group`]; `crate::ingest` forms the groups); plus retention pruning.
//!
//! Throughput is the point here (the target is 100,000 events/s into Postgres on two cores), so
//! each table gets exactly one statement per group, whatever its size, with a fixed handful of
//! parameters ([`RowSet`]): on Postgres one array per column expanded by `UNNEST` (sqlx's `Any`
//! driver cannot bind arrays, so each travels as its text literal and is cast server-side), on
//! SQLite one JSON text expanded by `json_each`. No bind-parameter limits, one parse and plan per
//! statement, and the statement text never changes, so it stays in the statement cache. (Measured
//! on Postgres 15: parsing 1000 rows of `text[]` literals is ~2.5x cheaper than
//! `json_to_recordset`.) This is the one place where SQL differs by backend, in
//! [`RowSet::source`] only.
//!
//! Rollups are aggregated in memory first, so a group does one upsert per distinct
//! (link, bucket, dimension, value), and the keys are sorted so concurrent groups (from two
//! control-plane replicas) take row locks in the same order (no deadlocks on Postgres).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::ops::Deref;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use sling_shared::clicks::{ClickBatch, ClickEvent};
use sqlx::Row;

use super::{Backend, Db};

/// Width of a rollup bucket. Every UTC offset in use is a multiple of 15 minutes, so local hour
/// and day boundaries in any zone fall on bucket edges (see `api::stats`).
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// Rollup dimensions. `total` has the empty value; `qr` counts clicks that came through a QR code.
pub const DIMS: &[&str] = &[
    "total", "country", "device", "browser", "os", "referrer", "qr",
];

/// Longest stored dimension value; longer ones (only a misbehaving proxy sends them) are cut.
const MAX_VALUE_LEN: usize = 64;
const MAX_HOST_LEN: usize = 253;
const MAX_VISITOR_LEN: usize = 128;

/// The start of the 15-minute UTC bucket holding `at_ms`.
pub fn bucket_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// A string of a batch, borrowed from the request body unless it had to be unescaped: parsing a
/// batch then allocates one vector, not seven strings per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(StrVisitor).map(Str)
    }
}

fn borrowed(s: &str) -> Str<'_> {
    Str(Cow::Borrowed(s))
}

/// [`ClickBatch`] as the ingest endpoint parses it: the same JSON, strings borrowed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRef<'a> {
    #[serde(borrow)]
    pub batch_id: Str<'a>,
    #[serde(borrow)]
    pub proxy_id: Str<'a>,
    #[serde(borrow)]
    pub events: Vec<EventRef<'a>>,
}

/// [`ClickEvent`], strings borrowed where the JSON allows (the shared definition, so proxies
/// leaving out false flags and absent options parse too).
pub type EventRef<'a> = ClickEvent<Str<'a>>;

impl<'a> From<&'a ClickBatch> for BatchRef<'a> {
    fn from(b: &'a ClickBatch) -> Self {
        BatchRef {
            batch_id: borrowed(&b.batch_id),
            proxy_id: borrowed(&b.proxy_id),
            events: b.events.iter().map(event_ref).collect(),
        }
    }
}

fn event_ref(e: &ClickEvent) -> EventRef<'_> {
    e.map_strings(|s| borrowed(s))
}

/// What one ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ingested {
    /// False when the batch id had been ingested before; nothing was written.
    pub accepted: bool,
    /// Events stored (for known links).
    pub stored: usize,
    /// Events whose link does not exist (deleted since, or never): acknowledged, not stored.
    pub unknown_link: usize,
    /// Feed sequence of the changes that publish links this batch pushed to their click limit.
    pub feed_seq: Option<u64>,
    /// `click` / `qr.scanned` webhook deliveries queued with the batch (the caller wakes the
    /// webhook worker).
    pub webhooks_queued: usize,
}

impl Ingested {
    /// One batch's outcome from its parts' (in part order), the counts summed. Accepted when
    /// this delivery stored the batch's last part. Each part is stored by exactly one delivery,
    /// so of deliveries racing each other exactly one says accepted; with "any part new" two
    /// racing deliveries that each stored one part both did (CI caught it). A retry that only
    /// completes earlier parts after a failure had stored the last one says duplicate: the data
    /// is exact either way, only the batch counters see the difference.
    pub fn merge(parts: impl IntoIterator<Item = Ingested>) -> Ingested {
        parts
            .into_iter()
            .fold(Ingested::default(), |a, p| Ingested {
                accepted: p.accepted,
                stored: a.stored + p.stored,
                unknown_link: a.unknown_link + p.unknown_link,
                feed_seq: a.feed_seq.max(p.feed_seq),
                webhooks_queued: a.webhooks_queued + p.webhooks_queued,
            })
    }
}

/// One value of a [`RowSet`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Text(&'a str),
    Int(i64),
}

/// Rows for one statement, sent as few bind parameters as possible: on Postgres one array per
/// column (`UNNEST(CAST($n AS text[]), CAST($n+1 AS bigint[]), …)`, the array travelling as its
/// text literal because the `Any` driver cannot bind arrays), on SQLite one JSON array of arrays
/// expanded by `json_each`.
pub(crate) struct RowSet<'a> {
    /// (column alias, Postgres element type: `text` or `bigint`).
    cols: &'static [(&'static str, &'static str)],
    rows: Vec<Val<'a>>,
}

impl<'a> RowSet<'a> {
    pub(crate) fn new(cols: &'static [(&'static str, &'static str)], capacity: usize) -> Self {
        Self {
            cols,
            rows: Vec::with_capacity(capacity * cols.len()),
        }
    }

    /// Appends a row; `vals` must have one value per column.
    pub(crate) fn push(&mut self, vals: &[Val<'a>]) {
        debug_assert_eq!(vals.len(), self.cols.len());
        self.rows.extend_from_slice(vals);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The FROM-clause source (aliased `alias`, columns named as in `cols`) whose parameters
    /// start at `$first`, and the parameter values to bind in order.
    pub(crate) fn source(
        &self,
        backend: Backend,
        first: usize,
        alias: &str,
    ) -> sqlx::Result<(String, Vec<String>)> {
        let width = self.cols.len();
        match backend {
            Backend::Postgres => {
                let rows = self.rows.len() / width.max(1);
                let mut arrays: Vec<String> = (0..width)
                    .map(|_| {
                        let mut a = String::with_capacity(rows * 16 + 2);
                        a.push('{');
                        a
                    })
                    .collect();
                for (i, v) in self.rows.iter().enumerate() {
                    let a = &mut arrays[i % width];
                    if i >= width {
                        a.push(',');
                    }
                    match v {
                        Val::Int(n) => {
                            let _ = write!(a, "{n}");
                        }
                        Val::Text(t) => {
                            a.push('"');
                            if t.bytes().any(|b| b == b'"' || b == b'\\') {
                                for c in t.chars() {
                                    if c == '"' || c == '\\' {
                                        a.push('\\');
                                    }
                                    a.push(c);
                                }
                            } else {
                                a.push_str(t);
                            }
                            a.push('"');
                        }
                    }
                }
                for a in &mut arrays {
                    a.push('}');
                }
                let casts: Vec<String> = self
                    .cols
                    .iter()
                    .enumerate()
                    .map(|(i, (_, t))| format!("CAST(${} AS {t}[])", first + i))
                    .collect();
                let names: Vec<&str> = self.cols.iter().map(|(n, _)| *n).collect();
                let sql = format!(
                    "UNNEST({}) AS {alias}({})",
                    casts.join(", "),
                    names.join(", ")
                );
                Ok((sql, arrays))
            }
            Backend::Sqlite => {
                let rows: Vec<Vec<serde_json::Value>> = self
                    .rows
                    .chunks(width)
                    .map(|r| {
                        r.iter()
                            .map(|v| match v {
                                Val::Int(n) => serde_json::Value::from(*n),
                                Val::Text(t) => serde_json::Value::from(*t),
                            })
                            .collect()
                    })
                    .collect();
                let exprs: Vec<String> = self
                    .cols
                    .iter()
                    .enumerate()
                    .map(|(i, (n, _))| format!("json_extract(value, '$[{i}]') AS {n}"))
                    .collect();
                let sql = format!(
                    "(SELECT {} FROM json_each(${first})) AS {alias}",
                    exprs.join(", ")
                );
                Ok((sql, vec![to_json(&rows)?]))
            }
        }
    }
}

/// Runs `sql` (whose other parameters come first, `$1..`) with the row-set parameters bound.
async fn execute_with(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    params: Vec<String>,
) -> sqlx::Result<u64> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = q.bind(p);
    }
    Ok(q.execute(conn).await?.rows_affected())
}

fn to_json<T: Serialize>(v: &T) -> sqlx::Result<String> {
    serde_json::to_string(v).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// `s` cut to at most `max` bytes on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One event as stored: unknown country and referrer are '', other labels `unknown` when empty.
struct Clean<'a> {
    at_ms: i64,
    country: Cow<'a, str>,
    device: &'a str,
    browser: &'a str,
    os: &'a str,
    bot: bool,
    referrer: Cow<'a, str>,
    visitor: &'a str,
    qr: bool,
}

fn label(s: &str) -> &str {
    let s = clip(s.trim(), MAX_VALUE_LEN);
    if s.is_empty() { "unknown" } else { s }
}

/// `s` in ASCII upper (or lower) case, copied only when it is not already.
fn ascii_case(s: &str, upper: bool) -> Cow<'_, str> {
    let wrong = |b: &u8| {
        if upper {
            b.is_ascii_lowercase()
        } else {
            b.is_ascii_uppercase()
        }
    };
    if !s.bytes().any(|b| wrong(&b)) {
        Cow::Borrowed(s)
    } else if upper {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Owned(s.to_ascii_lowercase())
    }
}

fn clean<'a>(e: &'a EventRef<'_>) -> Clean<'a> {
    let country = e
        .country
        .as_deref()
        .map(str::trim)
        .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|c| ascii_case(c, true))
        .unwrap_or_default();
    let referrer = e
        .referrer_host
        .as_deref()
        .map(|h| ascii_case(clip(h.trim(), MAX_HOST_LEN), false))
        .unwrap_or_default();
    Clean {
        at_ms: e.at_ms,
        country,
        device: label(&e.device),
        browser: label(&e.browser),
        os: label(&e.os),
        bot: e.bot,
        referrer,
        visitor: clip(&e.visitor, MAX_VISITOR_LEN),
        qr: e.qr,
    }
}

const EVENT_COLS: &[(&str, &str)] = &[
    ("l", "text"),
    ("t", "text"),
    ("a", "bigint"),
    ("c", "text"),
    ("d", "text"),
    ("b", "text"),
    ("o", "text"),
    ("x", "bigint"),
    ("r", "text"),
    ("v", "text"),
    ("q", "bigint"),
];
const ROLLUP_COLS: &[(&str, &str)] = &[
    ("l", "text"),
    ("t", "text"),
    ("k", "bigint"),
    ("d", "text"),
    ("v", "text"),
    ("c", "bigint"),
    ("x", "bigint"),
];
const COUNT_COLS: &[(&str, &str)] = &[("l", "text"), ("n", "bigint")];
const ID_COLS: &[(&str, &str)] = &[("l", "text")];

/// How many partitions of link ids a batch is split into ([`part_of`]). Each part is stored,
/// and deduplicated, on its own ((batch id, part) is the idempotency key), so on Postgres one
/// writer per part stores groups in parallel without ever waiting on another's rollup or
/// counter rows (`crate::ingest`). Fixed: a batch redelivered after a change of this number
/// would split differently and be stored twice.
pub const PARTS: usize = 2;

/// The partition of a link id: a hash that is the same in every process and release.
pub fn part_of(link_id: &str) -> usize {
    (xxhash_rust::xxh3::xxh3_64(link_id.as_bytes()) % PARTS as u64) as usize
}

/// One part of a batch (its events of one partition of link ids), parsed, validated and
/// cleaned, owning its strings (all in one buffer, so a part is two allocations however many
/// events it holds): what the group writer in `crate::ingest` queues and [`ingest_group`]
/// stores.
#[derive(Debug)]
pub struct Prepared {
    pub batch_id: String,
    pub proxy_id: String,
    /// Which of [`PARTS`] this is.
    pub part: usize,
    text: String,
    events: Vec<PreparedEvent>,
}

/// A byte range of [`Prepared::text`].
#[derive(Debug, Clone, Copy)]
struct Span(u32, u32);

#[derive(Debug)]
struct PreparedEvent {
    link: Span,
    at_ms: i64,
    country: Span,
    device: Span,
    browser: Span,
    os: Span,
    referrer: Span,
    visitor: Span,
    bot: bool,
    qr: bool,
}

impl Prepared {
    fn empty(batch: &BatchRef<'_>, part: usize, events: usize) -> Self {
        Prepared {
            batch_id: batch.batch_id.to_string(),
            proxy_id: batch.proxy_id.to_string(),
            part,
            text: String::with_capacity(events * 80),
            events: Vec::with_capacity(events),
        }
    }

    /// Cleans `batch` (see [`Clean`]) into owned parts, one per partition its events fall in,
    /// in part order; a batch without events is one empty part 0 (so its id is still recorded).
    pub fn split(batch: &BatchRef<'_>) -> Vec<Self> {
        let parts: Vec<usize> = batch.events.iter().map(|e| part_of(&e.link_id)).collect();
        let mut sizes = [0usize; PARTS];
        for &p in &parts {
            sizes[p] += 1;
        }
        let mut out: Vec<Prepared> = (0..PARTS)
            .map(|p| Prepared::empty(batch, p, sizes[p]))
            .collect();
        for (e, &p) in batch.events.iter().zip(&parts) {
            out[p].push(e);
        }
        out.retain(|p| !p.is_empty());
        if out.is_empty() {
            out.push(Prepared::empty(batch, 0, 0));
        }
        out
    }

    fn push(&mut self, e: &EventRef<'_>) {
        let text = &mut self.text;
        let mut put = |s: &str| {
            // Bodies are capped far below 4 GiB (`ingest::MAX_BODY_BYTES`), so offsets fit.
            let start = text.len();
            if s.contains('\0') {
                // Postgres text cannot hold NUL; a batch carrying one must still be storable.
                text.extend(s.chars().filter(|&c| c != '\0'));
            } else {
                text.push_str(s);
            }
            let span = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            Span(span(start), span(text.len() - start))
        };
        let c = clean(e);
        let event = PreparedEvent {
            link: put(&e.link_id),
            at_ms: c.at_ms,
            country: put(&c.country),
            device: put(c.device),
            browser: put(c.browser),
            os: put(c.os),
            referrer: put(&c.referrer),
            visitor: put(c.visitor),
            bot: c.bot,
            qr: c.qr,
        };
        self.events.push(event);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn s(&self, span: Span) -> &str {
        let (a, n) = (span.0 as usize, span.1 as usize);
        self.text.get(a..a + n).unwrap_or("")
    }
}

/// Ingests `batch` at most once: [`ingest_group`] of one.
pub async fn ingest(db: &Db, batch: &BatchRef<'_>, now_ms: i64) -> sqlx::Result<Ingested> {
    let parts = Prepared::split(batch);
    let refs: Vec<&Prepared> = parts.iter().collect();
    Ok(Ingested::merge(ingest_group(db, &refs, now_ms).await?))
}

const BATCH_COLS: &[(&str, &str)] = &[
    ("i", "text"),
    ("k", "bigint"),
    ("p", "text"),
    ("n", "bigint"),
    ("a", "bigint"),
];

/// Ingests several batch parts in one transaction, each at most once; returns one [`Ingested`]
/// per part, in order. A (batch id, part) already stored (or the whole batch, recorded before
/// batches had parts), or repeated earlier in `batches`, is not accepted and contributes
/// nothing. Events for links that do not exist are acknowledged and counted in
/// [`Ingested::unknown_link`], never an error (a batch that could not be acknowledged would be
/// retried forever).
///
/// One transaction for many batches is what makes ingest fast: one commit (one WAL flush) per
/// group, rollups and link counters aggregated across the whole group (a link's counter is
/// updated once per group, not once per batch), and no row-lock waits between concurrent ingest
/// transactions of one process. Every key set is written in sorted order, so two control-plane
/// replicas writing groups at once lock rows in the same order and cannot deadlock.
pub async fn ingest_group(
    db: &Db,
    batches: &[&Prepared],
    now_ms: i64,
) -> sqlx::Result<Vec<Ingested>> {
    if let Some(pg) = &db.pg {
        return super::clicks_pg::ingest_group(pg, batches, now_ms).await;
    }
    let mut out = vec![Ingested::default(); batches.len()];
    let candidates = candidates(batches);
    if candidates.is_empty() {
        return Ok(out);
    }
    // Per-statement times for the debug log (where a slow group spends its time).
    let mut lap = Laps::new();
    let mut w = db.begin_write().await?;
    let backend = w.backend;
    lap.mark("begin");

    let mut ids = RowSet::new(BATCH_COLS, candidates.len());
    for (&(id, part), &i) in &candidates {
        let b = batches[i];
        ids.push(&[
            Val::Text(id),
            Val::Int(part_number(part)),
            Val::Text(&b.proxy_id),
            Val::Int(i64::try_from(b.len()).unwrap_or(i64::MAX)),
            Val::Int(now_ms),
        ]);
    }
    let (src, params) = ids.source(backend, 1, "j")?;
    // The `WHERE` also resolves SQLite's parse ambiguity (see the rollup upsert below).
    let sql = format!(
        "INSERT INTO ingested_batches (batch_id, part, proxy_id, events, ingested_at) \
         SELECT i, k, p, n, a FROM {src} WHERE {NOT_STORED_WHOLE} \
         ON CONFLICT (batch_id, part) DO NOTHING RETURNING batch_id, part"
    );
    let mut q = sqlx::query(&sql);
    for p in params {
        q = q.bind(p);
    }
    let mut stored_ids = Vec::with_capacity(candidates.len());
    for row in q.fetch_all(&mut *w.tx).await? {
        stored_ids.push((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?));
    }
    let fresh = accept(&candidates, &stored_ids, &mut out);
    lap.mark("batch_ids");
    if fresh.is_empty() {
        // Dropping `w` rolls back (nothing was written).
        return Ok(out);
    }

    let link_ids = link_ids(batches, &fresh);
    let mut teams: HashMap<String, String> = HashMap::with_capacity(link_ids.len());
    if !link_ids.is_empty() {
        let mut id_rows = RowSet::new(ID_COLS, link_ids.len());
        for id in &link_ids {
            id_rows.push(&[Val::Text(id)]);
        }
        let (src, params) = id_rows.source(backend, 1, "j")?;
        let sql = format!("SELECT id, team_id FROM links WHERE id IN (SELECT l FROM {src})");
        let mut q = sqlx::query(&sql);
        for p in params {
            q = q.bind(p);
        }
        for row in q.fetch_all(&mut *w.tx).await? {
            teams.insert(row.try_get("id")?, row.try_get("team_id")?);
        }
    }
    let pages: Vec<&str> = page_ids(link_ids.iter().copied());
    if !pages.is_empty() {
        let mut id_rows = RowSet::new(ID_COLS, pages.len());
        for id in &pages {
            id_rows.push(&[Val::Text(id)]);
        }
        let (src, params) = id_rows.source(backend, 1, "j")?;
        let sql = format!("SELECT id, team_id FROM galleries WHERE id IN (SELECT l FROM {src})");
        let mut q = sqlx::query(&sql);
        for p in params {
            q = q.bind(p);
        }
        for row in q.fetch_all(&mut *w.tx).await? {
            teams.insert(row.try_get("id")?, row.try_get("team_id")?);
        }
    }
    lap.mark("links");

    let agg = aggregate(batches, &fresh, &teams, &mut out);
    lap.mark("aggregate");
    let mut feed_seq = None;
    let mut webhooks_queued = 0;
    if !agg.events.is_empty() {
        let mut events = RowSet::new(EVENT_COLS, agg.events.len());
        for e in &agg.events {
            events.push(&[
                Val::Text(e.link),
                Val::Text(e.team),
                Val::Int(e.at_ms),
                Val::Text(e.country),
                Val::Text(e.device),
                Val::Text(e.browser),
                Val::Text(e.os),
                Val::Int(i64::from(e.bot)),
                Val::Text(e.referrer),
                Val::Text(e.visitor),
                Val::Int(i64::from(e.qr)),
            ]);
        }
        let (src, params) = events.source(backend, 1, "j")?;
        let sql = format!(
            "INSERT INTO click_events (link_id, team_id, at_ms, country, device, browser, os, bot, \
             referrer_host, visitor, qr) SELECT l, t, a, c, d, b, o, x, r, v, q FROM {src}"
        );
        execute_with(&mut w.tx, &sql, params).await?;
        lap.mark("events");
        webhooks_queued = queue_click_webhooks(&mut w.tx, backend, &agg.events, now_ms).await?;
        lap.mark("webhooks");

        let mut rows = RowSet::new(ROLLUP_COLS, agg.rollups.len());
        for &(
            (l, k, d, v),
            Sums {
                team: t,
                clicks: c,
                bots: x,
            },
        ) in &agg.rollups
        {
            rows.push(&[
                Val::Text(l),
                Val::Text(t),
                Val::Int(k),
                Val::Text(d),
                Val::Text(v),
                Val::Int(c),
                Val::Int(x),
            ]);
        }
        let (src, params) = rows.source(backend, 1, "j")?;
        // `WHERE true` resolves SQLite's parse ambiguity between a join's ON and the upsert's.
        let sql = format!(
            "INSERT INTO click_rollups (link_id, team_id, bucket_ms, dim, dim_value, clicks, bots) \
             SELECT l, t, k, d, v, c, x FROM {src} WHERE true \
             ON CONFLICT (link_id, bucket_ms, dim, dim_value) DO UPDATE SET \
             clicks = click_rollups.clicks + excluded.clicks, \
             bots = click_rollups.bots + excluded.bots"
        );
        execute_with(&mut w.tx, &sql, params).await?;
        lap.mark("rollups");

        if !agg.humans.is_empty() {
            let mut counts = RowSet::new(COUNT_COLS, agg.humans.len());
            for &(l, n) in &agg.humans {
                counts.push(&[Val::Text(l), Val::Int(n)]);
            }
            let (src, params) = counts.source(backend, 1, "j")?;
            let sql = format!(
                "UPDATE links SET clicks = links.clicks + j.n FROM {src} WHERE links.id = j.l"
            );
            execute_with(&mut w.tx, &sql, params).await?;
            let views: Vec<(&str, i64)> = page_views(&agg.humans);
            if !views.is_empty() {
                let mut rows = RowSet::new(COUNT_COLS, views.len());
                for &(g, n) in &views {
                    rows.push(&[Val::Text(g), Val::Int(n)]);
                }
                let (src, params) = rows.source(backend, 1, "j")?;
                let sql = format!(
                    "UPDATE galleries SET views = galleries.views + j.n FROM {src} \
                     WHERE galleries.id = j.l"
                );
                execute_with(&mut w.tx, &sql, params).await?;
            }
            // With the group's sums, a limit crossed anywhere inside the group is published
            // exactly once, in this transaction.
            let (src, params) = counts.source(backend, 1, "j")?;
            feed_seq = super::links::publish_exhausted(&mut w, &src, params, now_ms).await?;
            lap.mark("counters");
        }
    }
    w.commit().await?;
    lap.mark("commit");
    agg.committed(batches.len(), &fresh, &lap, feed_seq, &mut out);
    if let Some(&first) = fresh.first() {
        out[first].webhooks_queued = webhooks_queued;
    }
    Ok(out)
}

const DELIVERY_COLS: &[(&str, &str)] = &[
    ("i", "text"),
    ("w", "text"),
    ("t", "text"),
    ("e", "text"),
    ("y", "text"),
    ("p", "text"),
];

/// The ids among `ids` that are galleries' (page views), not links'.
pub(super) fn page_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    ids.into_iter()
        .filter(|id| sling_shared::link::is_bio_page_id(id))
        .collect()
}

/// The human views per gallery among a group's human clicks per id.
pub(super) fn page_views<'a>(humans: &[(&'a str, i64)]) -> Vec<(&'a str, i64)> {
    humans
        .iter()
        .copied()
        .filter(|(id, _)| sling_shared::link::is_bio_page_id(id))
        .collect()
}

/// The human clicks of links among a group's events, as webhooks describe them (page views are
/// no link's clicks).
pub(super) fn click_facts<'a>(
    events: &'a [EventRow<'a>],
) -> impl Iterator<Item = super::webhooks::ClickFacts<'a>> {
    events
        .iter()
        .filter(|e| !e.bot && !sling_shared::link::is_bio_page_id(e.link))
        .map(|e| super::webhooks::ClickFacts {
            link: e.link,
            team: e.team,
            at_ms: e.at_ms,
            country: e.country,
            device: e.device,
            browser: e.browser,
            os: e.os,
            referrer: e.referrer,
            qr: e.qr,
        })
}

/// Queues the group's click webhook deliveries in its transaction, so they exist exactly when
/// the clicks do (a retried batch is recognised before this point and queues nothing).
async fn queue_click_webhooks(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    events: &[EventRow<'_>],
    now_ms: i64,
) -> sqlx::Result<usize> {
    let hooks: Vec<(String, String, String)> = sqlx::query_as(super::webhooks::CLICK_HOOKS_SQL)
        .fetch_all(&mut *conn)
        .await?;
    if hooks.is_empty() {
        return Ok(0);
    }
    let deliveries = super::webhooks::click_deliveries(&hooks, click_facts(events));
    for chunk in deliveries.chunks(500) {
        let mut rows = RowSet::new(DELIVERY_COLS, chunk.len());
        for d in chunk {
            rows.push(&[
                Val::Text(&d.id),
                Val::Text(&d.webhook_id),
                Val::Text(&d.team_id),
                Val::Text(&d.event_id),
                Val::Text(d.event_type),
                Val::Text(&d.payload),
            ]);
        }
        let (src, params) = rows.source(backend, 1, "j")?;
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, webhook_id, team_id, event_id, event_type, \
             payload, state, attempts, next_attempt_at, lease_until, created_at) \
             SELECT i, w, t, e, y, p, 'pending', 0, {now_ms}, 0, {now_ms} FROM {src}"
        );
        execute_with(&mut *conn, &sql, params).await?;
    }
    Ok(deliveries.len())
}

/// Keeps the parts of a batch recorded before batches had parts out: such a row (part -1)
/// stands for all of them. Never inserted now, so it needs no lock.
pub(super) const NOT_STORED_WHOLE: &str = "NOT EXISTS (SELECT 1 FROM ingested_batches o \
     WHERE o.batch_id = j.i AND o.part = -1)";

/// A part as stored in `ingested_batches.part` (always below [`PARTS`]).
pub(super) fn part_number(part: usize) -> i64 {
    i64::try_from(part).unwrap_or(i64::MAX)
}

/// The first occurrence of each (batch id, part) in a group, by key (BTreeMap order = lock
/// order).
pub(super) fn candidates<'a>(batches: &[&'a Prepared]) -> BTreeMap<(&'a str, usize), usize> {
    let mut candidates = BTreeMap::new();
    for (i, b) in batches.iter().enumerate() {
        candidates.entry((b.batch_id.as_str(), b.part)).or_insert(i);
    }
    candidates
}

/// Marks the parts the database just stored (`stored`: (batch id, part), the ones not seen
/// before) as accepted; returns their indexes, ascending.
pub(super) fn accept(
    candidates: &BTreeMap<(&str, usize), usize>,
    stored: &[(String, i64)],
    out: &mut [Ingested],
) -> Vec<usize> {
    let mut fresh: Vec<usize> = stored
        .iter()
        .filter_map(|(id, part)| {
            let part = usize::try_from(*part).ok()?;
            candidates.get(&(id.as_str(), part)).copied()
        })
        .collect();
    fresh.sort_unstable();
    for &i in &fresh {
        out[i].accepted = true;
    }
    fresh
}

/// The distinct link ids of the accepted batches, sorted.
pub(super) fn link_ids<'a>(batches: &[&'a Prepared], fresh: &[usize]) -> BTreeSet<&'a str> {
    fresh
        .iter()
        .flat_map(|&i| {
            let b = batches[i];
            b.events.iter().map(move |e| b.s(e.link))
        })
        .collect()
}

/// One event to store, its link known.
pub(super) struct EventRow<'a> {
    pub link: &'a str,
    pub team: &'a str,
    pub at_ms: i64,
    pub country: &'a str,
    pub device: &'a str,
    pub browser: &'a str,
    pub os: &'a str,
    pub bot: bool,
    pub referrer: &'a str,
    pub visitor: &'a str,
    pub qr: bool,
}

/// What a group writes: its events, its rollups summed per (link, bucket, dimension, value) and
/// its human clicks per link, both in key order (= lock order).
pub(super) struct Aggregate<'a> {
    pub events: Vec<EventRow<'a>>,
    pub rollups: Vec<(RollupKey<'a>, Sums<'a>)>,
    pub humans: Vec<(&'a str, i64)>,
}

/// (link, bucket, dimension, value).
pub(super) type RollupKey<'a> = (&'a str, i64, &'static str, &'a str);

/// One rollup row's human and bot clicks, with its link's team (found once, in [`aggregate`]).
#[derive(Clone, Copy)]
pub(super) struct Sums<'a> {
    pub team: &'a str,
    pub clicks: i64,
    pub bots: i64,
}

impl<'a> Sums<'a> {
    fn new(team: &'a str) -> Self {
        Self {
            team,
            clicks: 0,
            bots: 0,
        }
    }

    fn add(&mut self, clicks: i64, bots: i64) {
        self.clicks += clicks;
        self.bots += bots;
    }
}

/// Hashing with foldhash: summing tens of thousands of events is a hash-map hot loop (the
/// BTreeMap of string tuples it replaces took 105-122 ms per 50,000 events). The sums are sorted
/// afterwards for lock order.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// `map` as a vector sorted by key.
fn sorted<K: Ord, V>(map: FastMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = map.into_iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v
}

impl Aggregate<'_> {
    /// After the commit: the group's debug log line, and the feed sequence (of click limits
    /// published) for every accepted batch.
    pub(super) fn committed(
        &self,
        batches: usize,
        fresh: &[usize],
        lap: &Laps,
        feed_seq: Option<u64>,
        out: &mut [Ingested],
    ) {
        tracing::debug!(
            batches,
            fresh = fresh.len(),
            events = self.events.len(),
            rollup_rows = self.rollups.len(),
            links = self.humans.len(),
            ms = %lap,
            "click group stored"
        );
        for &i in fresh {
            out[i].feed_seq = feed_seq;
        }
    }
}

/// Sums the accepted batches' events whose link exists (`teams`: link id → team id); counts the
/// rest in [`Ingested::unknown_link`].
pub(super) fn aggregate<'a>(
    batches: &[&'a Prepared],
    fresh: &[usize],
    teams: &'a HashMap<String, String>,
    out: &mut [Ingested],
) -> Aggregate<'a> {
    let total: usize = fresh.iter().map(|&i| batches[i].len()).sum();
    let mut events = Vec::with_capacity(total);
    let mut rollups: FastMap<RollupKey<'a>, Sums<'a>> = FastMap::default();
    let mut humans: FastMap<&'a str, i64> = FastMap::default();
    for &i in fresh {
        let b = batches[i];
        for e in &b.events {
            let Some((link, team)) = teams.get_key_value(b.s(e.link)) else {
                out[i].unknown_link += 1;
                continue;
            };
            out[i].stored += 1;
            let (link, team) = (link.as_str(), team.as_str());
            let (country, referrer) = (b.s(e.country), b.s(e.referrer));
            let (device, browser, os) = (b.s(e.device), b.s(e.browser), b.s(e.os));
            events.push(EventRow {
                link,
                team,
                at_ms: e.at_ms,
                country,
                device,
                browser,
                os,
                bot: e.bot,
                referrer,
                visitor: b.s(e.visitor),
                qr: e.qr,
            });
            let bucket = bucket_of(e.at_ms);
            let (h, x) = if e.bot { (0, 1) } else { (1, 0) };
            for (dim, value) in [
                ("total", ""),
                ("country", country),
                ("device", device),
                ("browser", browser),
                ("os", os),
                ("referrer", referrer),
            ] {
                rollups
                    .entry((link, bucket, dim, value))
                    .or_insert(Sums::new(team))
                    .add(h, x);
            }
            if e.qr {
                rollups
                    .entry((link, bucket, "qr", ""))
                    .or_insert(Sums::new(team))
                    .add(h, x);
            }
            if !e.bot {
                *humans.entry(link).or_default() += 1;
            }
        }
    }
    Aggregate {
        events,
        rollups: sorted(rollups),
        humans: sorted(humans),
    }
}

/// Named lap times of one group, for its debug log line.
pub(super) struct Laps {
    last: std::time::Instant,
    laps: Vec<(&'static str, std::time::Duration)>,
}

impl Laps {
    pub(super) fn new() -> Self {
        Self {
            last: std::time::Instant::now(),
            laps: Vec::with_capacity(8),
        }
    }

    pub(super) fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((name, now - self.last));
        self.last = now;
    }
}

impl fmt::Display for Laps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, d)) in self.laps.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={:.1}", d.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// Deletes raw events and remembered batch ids older than `cutoff_ms`; returns the events
/// deleted. Rollups are kept forever. On Postgres one delete by time, which the BRIN index on
/// `at_ms` narrows to the old pages. On SQLite one delete per team, so each walks the
/// (team_id, at_ms) index instead of the whole table (events of a team that no longer exists are
/// not pruned there; teams are not deleted through the API).
pub async fn prune(db: &Db, cutoff_ms: i64) -> sqlx::Result<u64> {
    let teams: Vec<Option<String>> = match db.backend {
        Backend::Postgres => vec![None],
        Backend::Sqlite => sqlx::query("SELECT id FROM teams")
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0).map(Some))
            .collect::<sqlx::Result<_>>()?,
    };
    let mut deleted = 0;
    for team in teams {
        let mut w = db.begin_write().await?;
        let q = match &team {
            Some(team) => {
                sqlx::query("DELETE FROM click_events WHERE team_id = $1 AND at_ms < $2").bind(team)
            }
            None => sqlx::query("DELETE FROM click_events WHERE at_ms < $1"),
        };
        deleted += q.bind(cutoff_ms).execute(&mut *w.tx).await?.rows_affected();
        w.commit().await?;
    }
    let mut w = db.begin_write().await?;
    sqlx::query("DELETE FROM ingested_batches WHERE ingested_at < $1")
        .bind(cutoff_ms)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The partition of a link id must never change (a redelivered batch would be split
    /// differently and stored twice): these are pinned, not computed (Python's `xxhash`
    /// package, `xxh3_64_intdigest(id) % 2`, gives the same).
    #[test]
    fn link_partitions_are_stable() {
        let got: Vec<usize> = ["lnk_0", "lnk_1", "lnk_2", "lnk_3", "example", ""]
            .iter()
            .map(|l| part_of(l))
            .collect();
        assert_eq!(got, [0, 1, 1, 1, 0, 0]);
    }

    /// What proxies send (false flags and absent options left out) parses, as does the full form.
    #[test]
    fn parses_compact_and_full_events() {
        let compact = ClickEvent {
            link_id: "lnk_1".into(),
            at_ms: 7,
            country: None,
            device: "desktop".into(),
            browser: "Firefox".into(),
            os: "Linux".into(),
            bot: false,
            referrer_host: None,
            visitor: "ab".into(),
            qr: false,
        };
        let flagged = ClickEvent {
            country: Some("DE".into()),
            bot: true,
            referrer_host: Some("t.co".into()),
            qr: true,
            ..compact.clone()
        };
        let batch = ClickBatch {
            batch_id: "b".into(),
            proxy_id: "p".into(),
            events: vec![compact, flagged],
        };
        let json = serde_json::to_string(&batch).unwrap();
        assert!(!json.contains("\"qr\":false"), "{json}");
        let full = json.replace(
            "\"os\":\"Linux\",\"visitor\"",
            "\"os\":\"Linux\",\"bot\":false,\"referrerHost\":null,\"visitor\"",
        );
        for body in [json, full] {
            let parsed: BatchRef<'_> = serde_json::from_str(&body).unwrap();
            assert_eq!(parsed.events.len(), 2);
            for (got, want) in parsed.events.iter().zip(&batch.events) {
                let want = event_ref(want);
                assert_eq!(
                    (
                        got.country.as_deref(),
                        got.bot,
                        got.referrer_host.as_deref(),
                        got.qr
                    ),
                    (
                        want.country.as_deref(),
                        want.bot,
                        want.referrer_host.as_deref(),
                        want.qr
                    ),
                    "{body}"
                );
                assert_eq!(
                    (&*got.link_id, got.at_ms, &*got.visitor),
                    (&*want.link_id, want.at_ms, &*want.visitor)
                );
            }
        }
    }
}
