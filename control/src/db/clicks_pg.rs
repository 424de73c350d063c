//! Click ingest on Postgres: the same transaction as [`super::clicks::ingest_group`] (batch ids,
//! events, rollups, counters, click limits), written through a native Postgres connection
//! because two things it needs are out of reach of the `Any` driver:
//! - raw events go in with one binary `COPY … FROM STDIN`: no SQL to parse, no text to convert
//!   (an `INSERT … SELECT FROM UNNEST` of text-literal arrays spent most of its time decoding the
//!   arrays);
//! - the other statements bind their columns as binary arrays (`UNNEST($1::text[], …)`), which
//!   Postgres decodes without parsing literals.
//!
//! The grouping, deduplication and aggregation are shared with the SQLite path; only the writing
//! differs.

use std::collections::HashMap;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};

use super::clicks::{
    Aggregate, EventRow, Ingested, Laps, NOT_STORED_WHOLE, Prepared, Sums, accept, aggregate,
    candidates, click_facts, link_ids, page_ids, page_views, part_number,
};
use super::{changes, links};

/// Stores a group (see [`super::clicks::ingest_group`] for the contract).
pub(super) async fn ingest_group(
    pool: &PgPool,
    batches: &[&Prepared],
    now_ms: i64,
) -> sqlx::Result<Vec<Ingested>> {
    let mut out = vec![Ingested::default(); batches.len()];
    let candidates = candidates(batches);
    if candidates.is_empty() {
        return Ok(out);
    }
    let mut lap = Laps::new();
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    lap.mark("begin");

    let mut ids = Vec::with_capacity(candidates.len());
    let mut parts = Vec::with_capacity(candidates.len());
    let mut proxies = Vec::with_capacity(candidates.len());
    let mut counts = Vec::with_capacity(candidates.len());
    for (&(id, part), &i) in &candidates {
        ids.push(id);
        parts.push(part_number(part));
        proxies.push(batches[i].proxy_id.as_str());
        counts.push(i64::try_from(batches[i].len()).unwrap_or(i64::MAX));
    }
    let sql = format!(
        "INSERT INTO ingested_batches (batch_id, part, proxy_id, events, ingested_at) \
         SELECT i, k, p, n, $5 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[]) \
         AS j(i, k, p, n) WHERE {NOT_STORED_WHOLE} \
         ON CONFLICT (batch_id, part) DO NOTHING RETURNING batch_id, part"
    );
    let stored_ids: Vec<(String, i64)> = sqlx::query_as(&sql)
        .bind(&ids)
        .bind(&parts)
        .bind(&proxies)
        .bind(&counts)
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
    let fresh = accept(&candidates, &stored_ids, &mut out);
    lap.mark("batch_ids");
    if fresh.is_empty() {
        return Ok(out);
    }

    let link_ids: Vec<&str> = link_ids(batches, &fresh).into_iter().collect();
    let mut teams: HashMap<String, String> = HashMap::with_capacity(link_ids.len());
    for row in sqlx::query("SELECT id, team_id FROM links WHERE id = ANY($1::text[])")
        .bind(&link_ids)
        .fetch_all(&mut *tx)
        .await?
    {
        teams.insert(row.try_get(0)?, row.try_get(1)?);
    }
    let pages = page_ids(link_ids.iter().copied());
    if !pages.is_empty() {
        for row in sqlx::query("SELECT id, team_id FROM galleries WHERE id = ANY($1::text[])")
            .bind(&pages)
            .fetch_all(&mut *tx)
            .await?
        {
            teams.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    lap.mark("links");

    let agg = aggregate(batches, &fresh, &teams, &mut out);
    lap.mark("aggregate");
    let mut feed_seq = None;
    let mut webhooks_queued = 0;
    if !agg.events.is_empty() {
        copy_events(&mut tx, &agg.events).await?;
        lap.mark("events");
        webhooks_queued = queue_click_webhooks(&mut tx, &agg.events, now_ms).await?;
        lap.mark("webhooks");
        upsert_rollups(&mut tx, &agg).await?;
        lap.mark("rollups");
        if !agg.humans.is_empty() {
            feed_seq = count_clicks(&mut tx, &agg, now_ms).await?;
            lap.mark("counters");
        }
    }
    tx.commit().await?;
    lap.mark("commit");
    agg.committed(batches.len(), &fresh, &lap, feed_seq, &mut out);
    if let Some(&first) = fresh.first() {
        out[first].webhooks_queued = webhooks_queued;
    }
    Ok(out)
}

/// [`super::clicks`]' click webhook deliveries, bound as arrays in one statement.
async fn queue_click_webhooks(
    conn: &mut PgConnection,
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
    if deliveries.is_empty() {
        return Ok(0);
    }
    let col = |f: fn(&super::webhooks::NewDelivery) -> &str| -> Vec<&str> {
        deliveries.iter().map(f).collect()
    };
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, team_id, event_id, event_type, payload, \
         state, attempts, next_attempt_at, lease_until, created_at) \
         SELECT i, w, t, e, y, p, 'pending', 0, $7, 0, $7 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
         AS j(i, w, t, e, y, p)",
    )
    .bind(col(|d| &d.id))
    .bind(col(|d| &d.webhook_id))
    .bind(col(|d| &d.team_id))
    .bind(col(|d| &d.event_id))
    .bind(col(|d| d.event_type))
    .bind(col(|d| &d.payload))
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(deliveries.len())
}

/// Writes the events with one binary COPY.
async fn copy_events(conn: &mut PgConnection, events: &[EventRow<'_>]) -> sqlx::Result<()> {
    let mut rows = CopyBinary::new(events.len() * 160);
    for e in events {
        rows.row(11);
        rows.text(e.link);
        rows.text(e.team);
        rows.int(e.at_ms);
        rows.text(e.country);
        rows.text(e.device);
        rows.text(e.browser);
        rows.text(e.os);
        rows.int(i64::from(e.bot));
        rows.text(e.referrer);
        rows.text(e.visitor);
        rows.int(i64::from(e.qr));
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY click_events (link_id, team_id, at_ms, country, device, browser, os, bot, \
             referrer_host, visitor, qr) FROM STDIN WITH (FORMAT binary)",
        )
        .await?;
    if let Err(e) = copy.send(rows.finish()).await {
        // Best effort: the transaction is rolled back either way.
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// Adds the group's rollups, one upsert for all of them, in key order.
async fn upsert_rollups(conn: &mut PgConnection, agg: &Aggregate<'_>) -> sqlx::Result<()> {
    let n = agg.rollups.len();
    let (mut l, mut t, mut k, mut d, mut v, mut c, mut x) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for &((link, bucket, dim, value), Sums { team, clicks, bots }) in &agg.rollups {
        l.push(link);
        t.push(team);
        k.push(bucket);
        d.push(dim);
        v.push(value);
        c.push(clicks);
        x.push(bots);
    }
    sqlx::query(
        "INSERT INTO click_rollups (link_id, team_id, bucket_ms, dim, dim_value, clicks, bots) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::bigint[], $7::bigint[]) \
         ON CONFLICT (link_id, bucket_ms, dim, dim_value) DO UPDATE SET \
         clicks = click_rollups.clicks + excluded.clicks, \
         bots = click_rollups.bots + excluded.bots",
    )
    .bind(&l)
    .bind(&t)
    .bind(&k)
    .bind(&d)
    .bind(&v)
    .bind(&c)
    .bind(&x)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Adds the group's human clicks to `links.clicks`, then publishes every link whose click limit
/// the group crossed (see [`links::publish_exhausted`]); returns that change's feed sequence.
async fn count_clicks(
    conn: &mut PgConnection,
    agg: &Aggregate<'_>,
    now_ms: i64,
) -> sqlx::Result<Option<u64>> {
    let (ids, counts): (Vec<&str>, Vec<i64>) = agg.humans.iter().copied().unzip();
    sqlx::query(
        "UPDATE links SET clicks = links.clicks + j.n \
         FROM UNNEST($1::text[], $2::bigint[]) AS j(l, n) WHERE links.id = j.l",
    )
    .bind(&ids)
    .bind(&counts)
    .execute(&mut *conn)
    .await?;
    let views = page_views(&agg.humans);
    if !views.is_empty() {
        let (g, n): (Vec<&str>, Vec<i64>) = views.into_iter().unzip();
        sqlx::query(
            "UPDATE galleries SET views = galleries.views + j.n \
             FROM UNNEST($1::text[], $2::bigint[]) AS j(l, n) WHERE galleries.id = j.l",
        )
        .bind(&g)
        .bind(&n)
        .execute(&mut *conn)
        .await?;
    }
    let sql = format!(
        "{} JOIN UNNEST($1::text[], $2::bigint[]) AS j(l, n) ON l.id = j.l WHERE {}",
        links::SELECT,
        links::LIMIT_CROSSED
    );
    let rows = sqlx::query(&sql)
        .bind(&ids)
        .bind(&counts)
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let ops = rows
        .iter()
        .map(|r| links::from_row(r).map(|row| row.upsert_op()))
        .collect::<sqlx::Result<Vec<_>>>()?;
    changes::append_pg(conn, &ops, now_ms).await.map(Some)
}

/// A `COPY … (FORMAT binary)` stream: the signature and header, then per row a field count and
/// per field a length and the value in Postgres's binary form.
struct CopyBinary {
    buf: Vec<u8>,
}

impl CopyBinary {
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 19);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Self { buf }
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    /// A `text` value. Ingest bodies are capped far below 2 GiB, so the length fits.
    fn text(&mut self, s: &str) {
        let len = i32::try_from(s.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A `bigint` value.
    fn int(&mut self, n: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::CopyBinary;

    #[test]
    fn a_binary_copy_stream_has_postgres_framing() {
        let mut c = CopyBinary::new(0);
        c.row(2);
        c.text("é");
        c.int(-2);
        let b = c.finish();
        assert_eq!(&b[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&b[11..19], &[0u8; 8]);
        assert_eq!(&b[19..21], &2i16.to_be_bytes());
        assert_eq!(&b[21..25], &2i32.to_be_bytes());
        assert_eq!(&b[25..27], "é".as_bytes());
        assert_eq!(&b[27..31], &8i32.to_be_bytes());
        assert_eq!(&b[31..39], &(-2i64).to_be_bytes());
        assert_eq!(&b[39..], &(-1i16).to_be_bytes());
    }
}
