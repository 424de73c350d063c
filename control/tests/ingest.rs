//! Click ingestion (`POST /internal/v1/clicks`) on SQLite and Postgres: idempotency by batch id,
//! exact link counters, events for deleted links, the fleet token, bad bodies, and a throughput
//! measurement (printed, never asserted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use common::{Harness, Kind, Resp, each_backend};
use serde_json::{Value, json};
use sling_shared::clicks::{CLICKS_PATH, ClickBatch, ClickEvent, MAX_BATCH_EVENTS};

const FLEET: &str = "test-fleet-token";

fn event(link: &str, at_ms: i64, visitor: &str, bot: bool) -> ClickEvent {
    ClickEvent {
        link_id: link.to_owned(),
        at_ms,
        country: Some("US".into()),
        device: "desktop".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        bot,
        referrer_host: None,
        visitor: visitor.to_owned(),
        qr: false,
    }
}

fn batch(id: &str, events: Vec<ClickEvent>) -> ClickBatch {
    ClickBatch {
        batch_id: id.to_owned(),
        proxy_id: "proxy-test".into(),
        events,
    }
}

async fn post_raw(h: &Harness, token: Option<&str>, body: Vec<u8>) -> Resp {
    let mut req = Request::builder()
        .method("POST")
        .uri(CLICKS_PATH)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    h.send(req.body(Body::from(body)).unwrap()).await
}

async fn post(h: &Harness, b: &ClickBatch) -> Resp {
    post_raw(h, Some(FLEET), serde_json::to_vec(b).unwrap()).await
}

async fn link_clicks(h: &Harness, id: &str) -> i64 {
    let r = h.admin("GET", &format!("/api/v1/links/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.json);
    r.data()["clicks"].as_i64().unwrap()
}

async fn total(h: &Harness, id: &str, extra: &str) -> Value {
    let r = h
        .admin(
            "GET",
            &format!("/api/v1/links/{id}/stats?start=2026-01-01&end=2026-12-31{extra}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    r.data().clone()
}

/// The same figures as [`total`], as the CSV export.
async fn total_csv(h: &Harness, id: &str) -> String {
    let r = h
        .admin(
            "GET",
            &format!("/api/v1/links/{id}/stats?start=2026-01-01&end=2026-12-31&format=csv"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body.to_vec()).unwrap()
}

const T0: i64 = 1_780_000_000_000; // 2026-05-28T20:26:40Z

#[tokio::test]
async fn a_batch_is_counted_once() {
    each_backend(|h| async move {
        let id = h
            .create(json!({"destinationUrl": "https://example.com"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = batch(
            "batch-1",
            vec![
                event(&id, T0, "v1", false),
                event(&id, T0 + 1, "v2", false),
                event(&id, T0 + 2, "v1", false),
                event(&id, T0 + 3, "bot", true),
                event(&id, T0 + 4, "bot", true),
            ],
        );
        let r = post(&h, &b).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(
            r.json,
            json!({"batchId": "batch-1", "accepted": true, "events": 5})
        );
        // The same batch again (a retry after a lost answer): acknowledged, nothing written.
        let r = post(&h, &b).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json,
            json!({"batchId": "batch-1", "accepted": false, "events": 5})
        );

        // `clicks` counts human clicks exactly; stats agree.
        assert_eq!(link_clicks(&h, &id).await, 3);
        let s = total(&h, &id, "").await;
        assert_eq!(s["totalClicks"], 3);
        assert_eq!(s["uniqueClicks"], 2);
        let s = total(&h, &id, "&includeBots=true").await;
        assert_eq!(s["totalClicks"], 5);
        assert_eq!(s["uniqueClicks"], 3);

        // A second batch adds exactly its own events.
        let r = post(&h, &batch("batch-2", vec![event(&id, T0, "v9", false)])).await;
        assert_eq!(r.json["accepted"], true);
        assert_eq!(link_clicks(&h, &id).await, 4);

        // An empty batch is fine too.
        let r = post(&h, &batch("batch-3", vec![])).await;
        assert_eq!(r.json["accepted"], true);

        let m = h.state.metrics.render();
        assert!(
            m.contains("sling_control_click_batches_duplicate_total 1"),
            "{m}"
        );
        assert!(
            m.contains("sling_control_click_events_ingested_total 6"),
            "{m}"
        );
        h
    })
    .await;
}

#[tokio::test]
async fn events_for_a_deleted_link_are_acknowledged() {
    each_backend(|h| async move {
        let live = h
            .create(json!({"destinationUrl": "https://example.com"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let gone = h
            .create(json!({"destinationUrl": "https://example.org"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = h
            .admin("DELETE", &format!("/api/v1/links/{gone}"), None)
            .await;
        assert_eq!(r.status, 204);

        let b = batch(
            "mixed",
            vec![
                event(&gone, T0, "a", false),
                event("lnk_never_existed", T0, "b", false),
                event(&live, T0, "c", false),
            ],
        );
        let r = post(&h, &b).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.json["accepted"], true);
        assert_eq!(r.json["events"], 3);
        assert_eq!(link_clicks(&h, &live).await, 1);
        let m = h.state.metrics.render();
        assert!(
            m.contains("sling_control_click_events_unknown_link_total 2"),
            "{m}"
        );
        assert!(
            m.contains("sling_control_click_events_ingested_total 1"),
            "{m}"
        );
        h
    })
    .await;
}

#[tokio::test]
async fn only_the_fleet_token_may_ingest() {
    each_backend(|h| async move {
        let body = serde_json::to_vec(&batch("b", vec![])).unwrap();
        assert_eq!(post_raw(&h, None, body.clone()).await.status, 401);
        assert_eq!(post_raw(&h, Some("wrong"), body.clone()).await.status, 401);
        // A customer API key, even the admin's, is refused.
        let key = h.key.clone();
        assert_eq!(post_raw(&h, Some(&key), body.clone()).await.status, 401);
        let req = Request::builder()
            .method("POST")
            .uri(CLICKS_PATH)
            .header("x-api-key", &key)
            .body(Body::from(body))
            .unwrap();
        assert_eq!(h.send(req).await.status, 401);
        h
    })
    .await;
}

#[tokio::test]
async fn bad_batches_are_refused_without_writing() {
    each_backend(|h| async move {
        let r = post_raw(&h, Some(FLEET), b"{not json".to_vec()).await;
        assert_eq!(r.status, 400);
        let r = post_raw(
            &h,
            Some(FLEET),
            br#"{"batchId":"","proxyId":"p","events":[]}"#.to_vec(),
        )
        .await;
        assert_eq!(r.status, 400);
        let too_many = batch(
            "big",
            (0..=MAX_BATCH_EVENTS)
                .map(|i| event("lnk_x", T0 + i as i64, "v", false))
                .collect(),
        );
        let r = post(&h, &too_many).await;
        assert_eq!(r.status, 413);
        // Odd values from a misbehaving proxy are normalised, not refused.
        let id = h
            .create(json!({"destinationUrl": "https://example.com"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut e = event(&id, T0, "v", false);
        e.country = Some("not-a-country".into());
        e.browser = "x".repeat(10_000);
        e.device = String::new();
        e.referrer_host = Some("News.Example.COM".into());
        let r = post(&h, &batch("odd", vec![e])).await;
        assert_eq!(r.json["accepted"], true, "{:?}", r.body);
        let s = total(&h, &id, "").await;
        assert_eq!(s["byCountry"], json!([{"country": null, "clicks": 1}]));
        assert_eq!(s["byDevice"], json!([{"device": "unknown", "clicks": 1}]));
        assert_eq!(
            s["byReferrer"],
            json!([{"referrer": "news.example.com", "clicks": 1}])
        );
        assert_eq!(s["byBrowser"][0]["browser"].as_str().unwrap().len(), 64);
        h
    })
    .await;
}

#[tokio::test]
async fn concurrent_duplicates_count_once() {
    each_backend(|h| async move {
        let id = h
            .create(json!({"destinationUrl": "https://example.com"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = batch(
            "dup",
            (0..100).map(|i| event(&id, T0 + i, "v", false)).collect(),
        );
        let (a, c) = tokio::join!(post(&h, &b), post(&h, &b));
        assert_eq!((a.status.as_u16(), c.status.as_u16()), (200, 200));
        let accepted = [&a, &c]
            .iter()
            .filter(|r| r.json["accepted"] == true)
            .count();
        assert_eq!(accepted, 1);
        assert_eq!(link_clicks(&h, &id).await, 100);
        h
    })
    .await;
}

/// Ingest throughput through the real handler (JSON parsing included), with 2 concurrent
/// senders. Printed only: timing depends on the machine and the build profile. For the figure
/// in the report run `cargo test --release -p sling-control --test ingest -- --nocapture
/// throughput`. Batches hold 5,000 events, the proxy's default `--click-batch-size` (what a
/// loaded proxy sends); `SLING_INGEST_BATCH_EVENTS=1000` measures smaller ones.
#[tokio::test]
async fn throughput() {
    let per: usize = std::env::var("SLING_INGEST_BATCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    each_backend(|h| async move {
        let total = match h.kind {
            Kind::Postgres => 200_000usize,
            Kind::Sqlite => 50_000,
        };
        let batches = total.div_ceil(per);
        let mut ids = Vec::new();
        for _ in 0..20 {
            let l = h.create(json!({"destinationUrl": "https://example.com"})).await;
            ids.push(l["id"].as_str().unwrap().to_owned());
        }
        let countries = ["US", "DE", "FR", "IN", "NP", "BR", "JP", "GB"];
        let bodies: Vec<Vec<u8>> = (0..batches)
            .map(|b| {
                let events = (0..per)
                    .map(|i| {
                        let n = b * per + i;
                        ClickEvent {
                            link_id: ids[n % ids.len()].clone(),
                            at_ms: T0 + (n as i64) * 50,
                            country: Some(countries[n % countries.len()].into()),
                            device: ["desktop", "mobile", "tablet"][n % 3].into(),
                            browser: ["Chrome", "Firefox", "Safari", "Edge"][n % 4].into(),
                            os: ["Windows", "macOS", "iOS", "Android", "Linux"][n % 5].into(),
                            bot: n.is_multiple_of(50),
                            referrer_host: n.is_multiple_of(3).then(|| "news.example.com".into()),
                            visitor: format!("{:064x}", n % 5000),
                            qr: n.is_multiple_of(10),
                        }
                    })
                    .collect();
                serde_json::to_vec(&batch(&format!("tp-{b}"), events)).unwrap()
            })
            .collect();
        let started = Instant::now();
        let h = std::sync::Arc::new(h);
        let mut tasks = Vec::new();
        for lane in 0..2 {
            let h = h.clone();
            let mine: Vec<Vec<u8>> = bodies.iter().skip(lane).step_by(2).cloned().collect();
            tasks.push(tokio::spawn(async move {
                for body in mine {
                    let r = post_raw(&h, Some(FLEET), body).await;
                    assert_eq!(r.status, 200, "{:?}", r.body);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        let events = batches * per;
        println!(
            "ingest throughput ({:?}): {events} events in {batches} batches of {per} in {secs:.2}s = {:.0} events/s",
            h.kind,
            events as f64 / secs
        );
        let h = std::sync::Arc::into_inner(h).unwrap();
        let s = h.admin("GET", "/api/v1/stats?start=2026-01-01&end=2026-12-31&includeBots=true", None).await;
        assert_eq!(s.data()["totalClicks"], events as i64, "{}", s.json);
        h
    })
    .await;
}

#[tokio::test]
async fn awkward_values_round_trip() {
    each_backend(|h| async move {
        let id = h
            .create(json!({"destinationUrl": "https://example.com"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut e = event(&id, T0, "v", false);
        e.browser = r#"Fire"fox\ {a,b} NULL ünï"#.into();
        e.os = "NULL".into();
        e.referrer_host = Some("a,b\"c".into());
        let r = post(&h, &batch("awkward", vec![e])).await;
        assert_eq!(r.json["accepted"], true, "{:?}", r.body);
        let s = total(&h, &id, "").await;
        assert_eq!(
            s["byBrowser"],
            json!([{"browser": r#"Fire"fox\ {a,b} NULL ünï"#, "clicks": 1}])
        );
        assert_eq!(s["byOs"], json!([{"os": "NULL", "clicks": 1}]));
        assert_eq!(
            s["byReferrer"],
            json!([{"referrer": "a,b\"c", "clicks": 1}])
        );
        let text = total_csv(&h, &id).await;
        assert!(text.contains("referrer,\"a,b\"\"c\",1,"), "{text}");

        // Postgres text cannot hold NUL: such a batch is stored with the NULs dropped, not
        // refused (a refused batch would be retried forever).
        let mut e = event(&id, T0, "v\0w", false);
        e.os = "Li\0nux".into();
        let r = post(&h, &batch("with-nul", vec![e])).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.json["accepted"], true, "{:?}", r.body);
        let s = total(&h, &id, "").await;
        assert_eq!(s["totalClicks"], 2, "{s}");
        assert!(
            s["byOs"]
                .as_array()
                .unwrap()
                .contains(&json!({"os": "Linux", "clicks": 1})),
            "{s}"
        );

        // A referrer host that a spreadsheet would run as a formula is exported as text.
        let mut e = event(&id, T0, "formula", false);
        e.referrer_host = Some("=1+1".into());
        let r = post(&h, &batch("formula", vec![e])).await;
        assert_eq!(r.json["accepted"], true, "{:?}", r.body);
        let text = total_csv(&h, &id).await;
        assert!(text.contains("referrer,'=1+1,1,"), "{text}");
        assert!(!text.contains(",=1+1"), "{text}");

        h
    })
    .await;
}

#[tokio::test]
async fn retention_prunes_raw_events_and_keeps_rollups() {
    each_backend(|h| async move {
        let id = h
            .create(json!({"destinationUrl": "https://example.com"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let day = 86_400_000;
        let old: Vec<ClickEvent> = (0..3)
            .map(|i| event(&id, T0 + i, &format!("old-{i}"), false))
            .collect();
        let recent: Vec<ClickEvent> = (0..2)
            .map(|i| event(&id, T0 + 10 * day + i, &format!("new-{i}"), false))
            .collect();
        assert_eq!(post(&h, &batch("old", old)).await.status, 200);
        assert_eq!(post(&h, &batch("recent", recent)).await.status, 200);
        let before = total(&h, &id, "").await;
        assert_eq!(before["totalClicks"], 5, "{before}");
        assert_eq!(before["uniqueClicks"], 5, "{before}");

        // Batch ids are remembered with the ingest time (now), so only events are old enough.
        let cutoff = T0 + 5 * day;
        let deleted = sling_control::db::clicks::prune(&h.db, cutoff)
            .await
            .unwrap();
        assert_eq!(deleted, 3);
        let after = total(&h, &id, "").await;
        // Rollups are kept forever; unique visitors come from raw events, now only the recent.
        assert_eq!(after["totalClicks"], 5, "{after}");
        assert_eq!(after["uniqueClicks"], 2, "{after}");
        assert_eq!(link_clicks(&h, &id).await, 5);
        // Nothing more is old enough.
        let again = sling_control::db::clicks::prune(&h.db, cutoff)
            .await
            .unwrap();
        assert_eq!(again, 0);
        h
    })
    .await;
}
