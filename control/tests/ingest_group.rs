//! Grouped click ingestion (one writer, many batches per transaction) on SQLite and Postgres:
//! exactly-once under concurrency with resent batch ids, exact counters, rollups and raw events,
//! and click limits crossed inside a group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use common::{Harness, each_backend};
use serde_json::json;
use sling_control::db::clicks::{
    BatchRef, Ingested, PARTS, Prepared, ingest, ingest_group, part_of,
};
use sling_shared::clicks::{CLICKS_PATH, ClickBatch, ClickEvent};
use sling_shared::feed::ChangeOp;
use sqlx::Row;

const FLEET: &str = "test-fleet-token";
const T0: i64 = 1_780_000_000_000; // 2026-05-28T20:26:40Z

fn event(link: &str, n: usize) -> ClickEvent {
    ClickEvent {
        link_id: link.to_owned(),
        // Spread over three 15-minute buckets.
        at_ms: T0 + (n as i64 % 3) * 900_000 + n as i64,
        country: Some(["US", "DE", "NP"][n % 3].into()),
        device: ["desktop", "mobile"][n % 2].into(),
        browser: ["Firefox", "Chrome", "Safari", "Edge"][n % 4].into(),
        os: "Linux".into(),
        bot: n.is_multiple_of(7),
        referrer_host: n.is_multiple_of(5).then(|| "news.example.com".into()),
        visitor: format!("v{}", n % 97),
        qr: n.is_multiple_of(11),
    }
}

async fn post(h: &Harness, b: &ClickBatch) -> serde_json::Value {
    let req = Request::builder()
        .method("POST")
        .uri(CLICKS_PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {FLEET}"))
        .body(Body::from(serde_json::to_vec(b).unwrap()))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.json
}

async fn scalar(h: &Harness, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(&h.db.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// 8 concurrent senders deliver 48 distinct batches; every batch is also resent, some by another
/// sender at the same time, some after it was stored. Each id is accepted exactly once, and raw
/// events, every rollup dimension, `links.clicks` and the stats API count each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_and_resends_count_exactly_once() {
    each_backend(|h| async move {
        // One link in each part (ids are random), then more up to 6.
        let mut links = links_in_each_part(&h).await;
        while links.len() < 6 {
            let l = h
                .create(json!({"destinationUrl": format!("https://example.com/{}", links.len())}))
                .await;
            links.push(l["id"].as_str().unwrap().to_owned());
        }
        let batches: Vec<ClickBatch> = (0..48)
            .map(|b| ClickBatch {
                batch_id: format!("g-{b}"),
                proxy_id: format!("proxy-{}", b % 3),
                events: (0..150 + b * 7)
                    .map(|i| event(&links[(b + i) % links.len()], b * 1000 + i))
                    .collect(),
            })
            .collect();
        let batches = Arc::new(batches);
        let h = Arc::new(h);
        let mut tasks = Vec::new();
        for s in 0..8usize {
            let (h, batches) = (h.clone(), batches.clone());
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                // Own batches, plus a neighbour's at the same time, plus own again (stored).
                for b in (s..48).step_by(8) {
                    answers.push(post(&h, &batches[b]).await);
                    let other = (b + 1) % 48;
                    answers.push(post(&h, &batches[other]).await);
                }
                for b in (s..48).step_by(8) {
                    answers.push(post(&h, &batches[b]).await);
                }
                answers
            }));
        }
        let mut accepted: HashMap<String, usize> = HashMap::new();
        let mut answers = 0;
        for t in tasks {
            for a in t.await.unwrap() {
                answers += 1;
                let id = a["batchId"].as_str().unwrap().to_owned();
                let n = accepted.entry(id.clone()).or_default();
                if a["accepted"] == true {
                    *n += 1;
                }
                let b: usize = id.trim_start_matches("g-").parse().unwrap();
                assert_eq!(a["events"], batches[b].events.len());
            }
        }
        assert_eq!(answers, 48 * 3);
        assert_eq!(accepted.len(), 48);
        assert!(
            accepted.values().all(|&n| n == 1),
            "each batch accepted exactly once: {accepted:?}"
        );

        // Expected figures.
        let all: Vec<&ClickEvent> = batches.iter().flat_map(|b| &b.events).collect();
        let total = all.len() as i64;
        let bots = all.iter().filter(|e| e.bot).count() as i64;
        let mut humans_per_link: BTreeMap<&str, i64> = BTreeMap::new();
        for e in &all {
            if !e.bot {
                *humans_per_link.entry(&e.link_id).or_default() += 1;
            }
        }
        let h = Arc::into_inner(h).unwrap();
        assert_eq!(
            scalar(&h, "SELECT CAST(COUNT(*) AS BIGINT) FROM click_events").await,
            total
        );
        // One row per (batch, part its events fall in); the test's links cover every part.
        let parts_of = |b: &ClickBatch| {
            b.events
                .iter()
                .map(|e| part_of(&e.link_id))
                .collect::<BTreeSet<_>>()
                .len()
        };
        let parts: usize = batches.iter().map(parts_of).sum();
        let covered: BTreeSet<usize> = links.iter().map(|l| part_of(l)).collect();
        assert_eq!(covered.len(), PARTS, "links {links:?} all fall in one part");
        assert_eq!(
            scalar(&h, "SELECT CAST(COUNT(*) AS BIGINT) FROM ingested_batches").await,
            parts as i64
        );
        assert_eq!(
            scalar(
                &h,
                "SELECT CAST(COUNT(DISTINCT batch_id) AS BIGINT) FROM ingested_batches"
            )
            .await,
            48
        );
        for dim in ["total", "country", "device", "browser", "os", "referrer"] {
            let sql = format!(
                "SELECT CAST(SUM(clicks) AS BIGINT), CAST(SUM(bots) AS BIGINT) FROM click_rollups \
                 WHERE dim = '{dim}'"
            );
            let row = sqlx::query(&sql).fetch_one(&h.db.pool).await.unwrap();
            let (c, b): (i64, i64) = (row.try_get(0).unwrap(), row.try_get(1).unwrap());
            assert_eq!((c, b), (total - bots, bots), "dimension {dim}");
        }
        let qr = all.iter().filter(|e| e.qr).count() as i64;
        assert_eq!(
            scalar(
                &h,
                "SELECT CAST(SUM(clicks + bots) AS BIGINT) FROM click_rollups WHERE dim = 'qr'"
            )
            .await,
            qr
        );
        for (id, n) in &humans_per_link {
            let r = h.admin("GET", &format!("/api/v1/links/{id}"), None).await;
            assert_eq!(r.data()["clicks"], *n, "links.clicks of {id}");
        }
        let s = h
            .admin(
                "GET",
                "/api/v1/stats?start=2026-01-01&end=2026-12-31&includeBots=true",
                None,
            )
            .await;
        assert_eq!(s.data()["totalClicks"], total, "{}", s.json);

        let m = h.state.metrics.render();
        assert!(
            m.contains("sling_control_click_batches_ingested_total 48\n"),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "sling_control_click_events_ingested_total {total}\n"
            )),
            "{m}"
        );
        assert!(
            m.contains("sling_control_click_batches_duplicate_total 96\n"),
            "{m}"
        );
        // Some transaction really held several batches (or this test proves nothing new).
        let groups: f64 = metric(&m, "sling_control_click_ingest_group_batches_count");
        let grouped: f64 = metric(&m, "sling_control_click_ingest_group_batches_sum");
        assert_eq!(
            grouped,
            3.0 * parts as f64,
            "every delivered part, once: {m}"
        );
        assert!(groups < grouped, "no group held two parts: {m}");
        h
    })
    .await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

/// The one part of a batch whose events are all for one link.
fn prepared(b: &ClickBatch) -> Prepared {
    let mut parts = Prepared::split(&BatchRef::from(b));
    assert_eq!(parts.len(), 1, "a one-link batch is one part");
    parts.pop().unwrap()
}

fn humans(id: &str, link: &str, n: usize) -> ClickBatch {
    ClickBatch {
        batch_id: id.to_owned(),
        proxy_id: "proxy-test".into(),
        events: (0..n)
            .map(|i| {
                let mut e = event(link, i);
                e.bot = false;
                e
            })
            .collect(),
    }
}

/// One group: two fresh batches that together push a link past its click limit, one repeating
/// an id earlier in the group, one stored before, one for an unknown link. The limit crossing is
/// published once, in the group's transaction, and each batch gets its own outcome.
#[tokio::test]
async fn a_click_limit_crossed_inside_a_group_is_published() {
    each_backend(|h| async move {
        let id = h
            .create(json!({"destinationUrl": "https://example.com", "clickLimit": 5}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = prepared(&humans("before", &id, 3));
        let done = ingest_group(&h.db, &[&before], T0).await.unwrap();
        assert!(done[0].accepted && done[0].feed_seq.is_none());
        let seq = h.feed_head().await;

        let a = prepared(&humans("a", &id, 1));
        let b = prepared(&humans("b", &id, 2));
        let a_again = prepared(&humans("a", &id, 1));
        let unknown = prepared(&humans("u", "no-such-link", 4));
        let done = ingest_group(&h.db, &[&a, &before, &b, &a_again, &unknown], T0)
            .await
            .unwrap();
        let accepted: Vec<bool> = done.iter().map(|d| d.accepted).collect();
        assert_eq!(accepted, [true, false, true, false, true]);
        assert_eq!(
            done.iter().map(|d| d.stored).collect::<Vec<_>>(),
            [1, 0, 2, 0, 0]
        );
        assert_eq!(done[4].unknown_link, 4);
        let published: Vec<bool> = h
            .changes_after(seq)
            .await
            .into_iter()
            .filter_map(|op| match op {
                ChangeOp::UpsertLink { link, .. } => Some(link.click_limit_reached),
                _ => None,
            })
            .collect();
        assert_eq!(published, [true], "the crossing is published once");
        let head = h.feed_head().await;
        assert_eq!(done[0].feed_seq, Some(head));
        assert_eq!(done[2].feed_seq, Some(head));
        let r = h.admin("GET", &format!("/api/v1/links/{id}"), None).await;
        assert_eq!(r.data()["clicks"], 6);

        // The same group again: all duplicates, nothing written, nothing published.
        let done = ingest_group(&h.db, &[&a, &b, &unknown], T0).await.unwrap();
        assert!(done.iter().all(|d| !d.accepted && d.stored == 0));
        assert_eq!(h.feed_head().await, head);
        let r = h.admin("GET", &format!("/api/v1/links/{id}"), None).await;
        assert_eq!(r.data()["clicks"], 6);
        h
    })
    .await;
}

/// Two links in different parts (found by trying ids until both parts are covered).
async fn links_in_each_part(h: &Harness) -> Vec<String> {
    let mut by_part: BTreeMap<usize, String> = BTreeMap::new();
    for i in 0..64 {
        let l = h
            .create(json!({"destinationUrl": format!("https://example.com/p{i}")}))
            .await;
        let id = l["id"].as_str().unwrap().to_owned();
        by_part.entry(part_of(&id)).or_insert(id);
        if by_part.len() == PARTS {
            break;
        }
    }
    assert_eq!(by_part.len(), PARTS, "64 links never covered every part");
    by_part.into_values().collect()
}

/// Links in each part, a batch `id` of `n` events over them, and its parts (one per part).
async fn split_in_each_part(
    h: &Harness,
    id: &str,
    n: usize,
) -> (Vec<String>, ClickBatch, Vec<Prepared>) {
    let links = links_in_each_part(h).await;
    let batch = mixed(id, &links, n);
    let parts = Prepared::split(&BatchRef::from(&batch));
    assert_eq!(parts.len(), PARTS);
    (links, batch, parts)
}

fn mixed(id: &str, links: &[String], n: usize) -> ClickBatch {
    ClickBatch {
        batch_id: id.to_owned(),
        proxy_id: "proxy-test".into(),
        events: (0..n)
            .map(|i| {
                let mut e = event(&links[i % links.len()], i);
                e.bot = false;
                e
            })
            .collect(),
    }
}

/// A batch whose first delivery stored only some of its parts (the others' transactions
/// failed) is completed by the retry: the stored parts are recognised, the rest stored, every
/// event counted once.
#[tokio::test]
async fn a_retry_completes_a_partly_stored_batch_without_duplicates() {
    each_backend(|h| async move {
        let (links, batch, parts) = split_in_each_part(&h, "partly", 40).await;
        let first = ingest_group(&h.db, &[&parts[0]], T0).await.unwrap();
        assert!(first[0].accepted);
        let stored_first = first[0].stored;
        assert!(stored_first > 0 && stored_first < 40);

        let retry = ingest(&h.db, &BatchRef::from(&batch), T0).await.unwrap();
        assert!(retry.accepted, "the missing parts are new");
        assert_eq!(retry.stored, 40 - stored_first);
        let again = ingest(&h.db, &BatchRef::from(&batch), T0).await.unwrap();
        assert!(!again.accepted && again.stored == 0);

        assert_eq!(
            scalar(&h, "SELECT CAST(COUNT(*) AS BIGINT) FROM click_events").await,
            40
        );
        let mut clicks = 0;
        for id in &links {
            let r = h.admin("GET", &format!("/api/v1/links/{id}"), None).await;
            clicks += r.data()["clicks"].as_i64().unwrap();
        }
        assert_eq!(clicks, 40);
        h
    })
    .await;
}

/// Two deliveries of one batch that race on the Postgres writers (one per part) can each store
/// a different part first. Exactly one of them is the accepted one, so the batch counters count
/// it once; every event is stored once either way.
#[tokio::test]
async fn deliveries_racing_on_different_parts_accept_the_batch_once() {
    each_backend(|h| async move {
        let (_, _, parts) = split_in_each_part(&h, "racing", 40).await;
        // Delivery A stores part 0, then B stores part 1, then each finds its other part stored.
        let a0 = ingest_group(&h.db, &[&parts[0]], T0).await.unwrap();
        let b1 = ingest_group(&h.db, &[&parts[1]], T0).await.unwrap();
        let a1 = ingest_group(&h.db, &[&parts[1]], T0).await.unwrap();
        let b0 = ingest_group(&h.db, &[&parts[0]], T0).await.unwrap();
        let a = Ingested::merge([a0[0], a1[0]]);
        let b = Ingested::merge([b0[0], b1[0]]);
        assert_eq!(
            [a.accepted, b.accepted].iter().filter(|x| **x).count(),
            1,
            "{a:?} {b:?}"
        );
        assert_eq!(a.stored + b.stored, 40);
        assert_eq!(
            scalar(&h, "SELECT CAST(COUNT(*) AS BIGINT) FROM click_events").await,
            40
        );
        h
    })
    .await;
}

/// A batch recorded before batches had parts (one row, part -1) is a duplicate as a whole:
/// none of its parts is stored again when a proxy redelivers it after the upgrade.
#[tokio::test]
async fn a_batch_recorded_whole_before_parts_is_not_stored_again() {
    each_backend(|h| async move {
        let links = links_in_each_part(&h).await;
        sqlx::query(
            "INSERT INTO ingested_batches (batch_id, part, proxy_id, events, ingested_at) \
             VALUES ('legacy', -1, 'proxy-test', 10, $1)",
        )
        .bind(T0)
        .execute(&h.db.pool)
        .await
        .unwrap();
        let batch = mixed("legacy", &links, 10);
        let done = ingest(&h.db, &BatchRef::from(&batch), T0).await.unwrap();
        assert!(!done.accepted && done.stored == 0, "{done:?}");
        assert_eq!(
            scalar(&h, "SELECT CAST(COUNT(*) AS BIGINT) FROM click_events").await,
            0
        );
        // Another id with the same events is stored.
        let fresh = mixed("fresh", &links, 10);
        let done = ingest(&h.db, &BatchRef::from(&fresh), T0).await.unwrap();
        assert!(done.accepted && done.stored == 10, "{done:?}");
        h
    })
    .await;
}
