//! Click limits across a fleet, end to end: the real `sling serve` and two real `sling-proxy`
//! processes, a link with `clickLimit: 100`, and concurrent load on both proxies. Each proxy
//! refuses the link once its own count reaches the limit, and every proxy refuses it once the
//! control plane has counted the limit and published that through the feed; the total served over
//! the fleet stays within the bound ARCHITECTURE.md documents (limit ≤ served ≤ proxies × limit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use sling_e2e::{Backend, ControlOptions, TestEnv, http_client, on_both_backends, wait_until};

const LIMIT: i64 = 100;
const PROXIES: i64 = 2;

on_both_backends!(click_limit_overshoot_stays_within_the_bound);

async fn click_limit_overshoot_stays_within_the_bound(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let control = env.start_control(ControlOptions::default()).await;
    let api = control.api();
    let a = env.start_proxy(Some(&control)).await;
    let b = env.start_proxy(Some(&control)).await;

    let created = api
        .call(
            reqwest::Method::POST,
            "/links",
            Some(json!({"destinationUrl": "https://example.com/limited", "clickLimit": LIMIT})),
        )
        .await;
    let id = created.data()["id"].as_str().unwrap().to_owned();
    let slug = created.data()["slug"].as_str().unwrap().to_owned();
    let client = http_client();
    // HEAD is never a click, so waiting costs nothing.
    for p in [&a, &b] {
        let ok = wait_until(Duration::from_secs(20), || {
            let url = format!("{}/{slug}", p.url);
            let client = client.clone();
            async move {
                client
                    .head(url)
                    .header("host", "localhost")
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 302)
            }
        })
        .await;
        assert!(ok, "the link never reached {}", p.url);
    }

    // Burst: 16 workers, alternating proxies, until 1500 requests or both proxies refuse.
    let (served, on_a, on_b) = load(&client, [&a.url, &b.url], &slug, 16, 0).await;
    println!(
        "burst: click limit {LIMIT}, {PROXIES} proxies: served {served} (a {on_a}, b {on_b}), bound {}",
        PROXIES * LIMIT
    );
    assert!(
        on_a <= LIMIT && on_b <= LIMIT,
        "a proxy went past its own count"
    );
    assert!(
        (LIMIT..=PROXIES * LIMIT).contains(&served),
        "served {served}, outside [{LIMIT}, {}]",
        PROXIES * LIMIT
    );

    // The control plane counts exactly what was served, and a proxy started now — with a fresh
    // local count — refuses the link straight away: the exhaustion came through the feed.
    let counted = wait_until(Duration::from_secs(30), || {
        let api = api.clone();
        let id = id.clone();
        async move {
            let r = api
                .call(reqwest::Method::GET, &format!("/links/{id}"), None)
                .await;
            r.data()["clicks"].as_i64() == Some(served)
        }
    })
    .await;
    assert!(counted, "the control plane never counted {served} clicks");
    let c = env.start_proxy(Some(&control)).await;
    c.wait_for_status(&slug, 410).await;
    let answer = c.get(&slug).await;
    assert_eq!(answer.status, 410);

    // Paced (about 100 requests a second over the fleet): the overshoot is what the fleet serves
    // while the exhaustion travels (click batch interval, ingest, one feed long poll).
    let created = api
        .call(
            reqwest::Method::POST,
            "/links",
            Some(json!({"destinationUrl": "https://example.com/paced", "clickLimit": LIMIT})),
        )
        .await;
    let slug = created.data()["slug"].as_str().unwrap().to_owned();
    for p in [&a, &b] {
        p.wait_for_status(&slug, 302).await;
    }
    // (The two waits above served a click each.)
    let (served, on_a, on_b) = load(&client, [&a.url, &b.url], &slug, 4, 40).await;
    let served = served + 2;
    println!(
        "paced: click limit {LIMIT}, {PROXIES} proxies: served {served} (a {on_a}+1, b {on_b}+1), bound {}",
        PROXIES * LIMIT
    );
    assert!(
        (LIMIT..=PROXIES * LIMIT).contains(&served),
        "served {served}, outside [{LIMIT}, {}]",
        PROXIES * LIMIT
    );
}

/// `workers` tasks alternate GETs between the two proxies (pausing `pace_ms` before each) until
/// 1500 requests are sent or a worker saw 40 refusals in a row; returns (served, on a, on b).
async fn load(
    client: &reqwest::Client,
    proxies: [&str; 2],
    slug: &str,
    workers: usize,
    pace_ms: u64,
) -> (i64, i64, i64) {
    let served = Arc::new(AtomicI64::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let per_proxy = [Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0))];
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, served, sent) = (client.clone(), served.clone(), sent.clone());
        let urls = [
            format!("{}/{slug}", proxies[0]),
            format!("{}/{slug}", proxies[1]),
        ];
        let per_proxy = per_proxy.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused_in_a_row = 0;
            let mut i = w;
            while sent.fetch_add(1, Ordering::Relaxed) < 1500 && refused_in_a_row < 40 {
                if pace_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(pace_ms)).await;
                }
                let which = i % 2;
                i += 1;
                let resp = client
                    .get(&urls[which])
                    .header("host", "localhost")
                    .send()
                    .await
                    .unwrap();
                match resp.status().as_u16() {
                    302 => {
                        served.fetch_add(1, Ordering::Relaxed);
                        per_proxy[which].fetch_add(1, Ordering::Relaxed);
                        refused_in_a_row = 0;
                    }
                    410 => refused_in_a_row += 1,
                    s => panic!("unexpected status {s}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (
        served.load(Ordering::Relaxed),
        per_proxy[0].load(Ordering::Relaxed),
        per_proxy[1].load(Ordering::Relaxed),
    )
}
