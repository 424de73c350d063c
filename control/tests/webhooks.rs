//! Webhooks on SQLite and Postgres, delivered by the real worker over real sockets to a receiver
//! this test runs on 127.0.0.1: signatures checked with an independent HMAC, retries against a
//! failing receiver, the give-up after the last retry, the SSRF guard at creation and at
//! delivery, another team's ids, scopes and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{Harness, each_backend};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A receiver answering each request with the next status of `statuses` (the last repeats).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>) -> Receiver {
        Self::start_slow(statuses, Duration::ZERO).await
    }

    /// A receiver that takes `delay` to answer each request.
    async fn start_slow(statuses: Vec<u16>, delay: Duration) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                let statuses = statuses.clone();
                async move {
                    let status = {
                        let mut all = seen.lock().unwrap();
                        let status = statuses[all.len().min(statuses.len() - 1)];
                        all.push(Received { headers, body });
                        status
                    };
                    tokio::time::sleep(delay).await;
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got, task }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (or fails after 10 s).
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..500 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the receiver got {} requests, not {n}",
            self.received().len()
        );
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the delivery worker of `h` (the harness drives the router alone).
fn start_worker(h: &Harness) {
    tokio::spawn(sling_control::webhooks::run(
        h.state.clone(),
        h.state.shutdown.subscribe(),
    ));
}

/// Checks `X-Webhook-Signature` with an HMAC computed here.
fn assert_signed(r: &Received, secret: &str) {
    let ts = r.header("x-webhook-timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((ts.parse::<i64>().unwrap() - now).abs() < 60, "{ts}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", r.body).as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r.header("x-webhook-signature"), format!("sha256={hex}"));
}

async fn deliveries(h: &Harness, hook: &str) -> Vec<Value> {
    let r = h
        .admin("GET", &format!("/api/v1/webhooks/{hook}/deliveries"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    r.data()["items"].as_array().unwrap().clone()
}

/// Waits until the newest delivery of `hook` is in `state`.
async fn wait_state(h: &Harness, hook: &str, state: &str) -> Value {
    for _ in 0..500 {
        let all = deliveries(h, hook).await;
        if let Some(d) = all.first()
            && d["state"] == state
        {
            return d.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no delivery of {hook} reached {state}: {:?}",
        deliveries(h, hook).await
    );
}

#[tokio::test]
async fn link_events_arrive_signed_and_a_failing_receiver_gets_them_on_a_retry() {
    each_backend(|h| async move {
        start_worker(&h);
        let receiver = Receiver::start(vec![500, 502, 200]).await;
        let r = h
            .admin(
                "POST",
                "/api/v1/webhooks",
                Some(
                    json!({"url": receiver.url, "events": ["link.created", "link.deleted"],
                            "description": "CRM sync"}),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        let hook = r.data()["id"].as_str().unwrap().to_owned();
        let secret = r.data()["secret"].as_str().unwrap().to_owned();
        assert!(
            secret.starts_with("whsec_") && secret.len() == 38,
            "{secret}"
        );
        assert_eq!(r.data()["active"], true);
        // The secret is shown once.
        let got = h
            .admin("GET", &format!("/api/v1/webhooks/{hook}"), None)
            .await;
        assert!(got.data().get("secret").is_none(), "{}", got.json);
        assert!(!got.json.to_string().contains(&secret));

        let link = h
            .create(json!({"destinationUrl": "https://example.com/a", "slug": "hooked"}))
            .await;
        let link_id = link["id"].as_str().unwrap().to_owned();
        // Two failures, then the same delivery succeeds.
        let got = receiver.wait_for(3).await;
        let first = &got[0];
        for r in &got {
            assert_eq!(r.header("x-webhook-id"), first.header("x-webhook-id"));
            assert_eq!(r.header("x-webhook-event"), "link.created");
            assert_eq!(r.header("content-type"), "application/json");
            assert_signed(r, &secret);
            let body = r.json();
            assert_eq!(body["type"], "link.created");
            assert_eq!(body["teamId"], h.team_id.as_str());
            assert_eq!(body["data"]["link"]["id"], link_id.as_str());
            assert_eq!(body["data"]["link"]["slug"], "hooked");
            assert!(body["id"].as_str().unwrap().starts_with("evt_"));
        }
        let d = wait_state(&h, &hook, "delivered").await;
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["lastStatus"], 200);
        assert_eq!(d["event"], "link.created");

        // Not subscribed: no delivery for an update. Subscribed: the delete arrives.
        h.admin(
            "PATCH",
            &format!("/api/v1/links/{link_id}"),
            Some(json!({"title": "x"})),
        )
        .await;
        h.admin("DELETE", &format!("/api/v1/links/{link_id}"), None)
            .await;
        let got = receiver.wait_for(4).await;
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[3].json()["type"], "link.deleted");
        assert_eq!(got[3].json()["data"]["link"]["id"], link_id.as_str());
        assert_signed(&got[3], &secret);

        // A test event goes to it whatever it subscribed to; an inactive hook gets no events.
        let r = h
            .admin("POST", &format!("/api/v1/webhooks/{hook}/test"), None)
            .await;
        assert_eq!(r.status, 202, "{}", r.json);
        assert_eq!(r.data()["event"], "webhook.test");
        let got = receiver.wait_for(5).await;
        assert_eq!(got[4].header("x-webhook-event"), "webhook.test");
        let r = h
            .admin(
                "PATCH",
                &format!("/api/v1/webhooks/{hook}"),
                Some(json!({"active": false, "rotateSecret": true})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let rotated = r.data()["secret"].as_str().unwrap().to_owned();
        assert_ne!(rotated, secret);
        h.create(json!({"destinationUrl": "https://example.com/b"}))
            .await;
        h.admin("POST", &format!("/api/v1/webhooks/{hook}/test"), None)
            .await;
        let got = receiver.wait_for(6).await;
        assert_eq!(got[5].header("x-webhook-event"), "webhook.test");
        assert_signed(&got[5], &rotated);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.received().len(), 6, "nothing for an inactive hook");
        h
    })
    .await;
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_gets_every_retry_then_the_delivery_fails() {
    each_backend(|h| async move {
        start_worker(&h);
        let receiver = Receiver::start(vec![503]).await;
        let r = h
            .admin(
                "POST",
                "/api/v1/webhooks",
                Some(json!({"url": receiver.url, "events": ["*"]})),
            )
            .await;
        let hook = r.data()["id"].as_str().unwrap().to_owned();
        h.create(json!({"destinationUrl": "https://example.com/c"}))
            .await;
        // The test configuration retries twice (100 ms, 200 ms): three attempts in all.
        let d = wait_state(&h, &hook, "failed").await;
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["lastStatus"], 503);
        assert_eq!(d["lastError"], "HTTP status 503");
        assert_eq!(d["nextAttemptAt"], Value::Null);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(receiver.received().len(), 3);

        // A receiver that is not listening: the error says so, and it is retried too.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        h.admin(
            "PATCH",
            &format!("/api/v1/webhooks/{hook}"),
            Some(json!({"url": format!("http://{closed}/gone")})),
        )
        .await;
        h.admin("POST", &format!("/api/v1/webhooks/{hook}/test"), None)
            .await;
        let d = wait_state(&h, &hook, "failed").await;
        assert_eq!(d["attempts"], 3, "{d}");
        assert!(d["lastError"].as_str().unwrap().contains("refused"), "{d}");
        h
    })
    .await;
}

#[tokio::test]
async fn webhook_targets_are_guarded_against_ssrf_at_creation_and_at_delivery() {
    for kind in [common::Kind::Sqlite, common::Kind::Postgres] {
        let Some(h) = Harness::new_with(kind, |c| c.webhooks.allow_private = false).await else {
            continue;
        };
        for url in [
            "http://127.0.0.1:9/x",
            "http://10.1.2.3/x",
            "http://192.168.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/x",
            "http://[fd00::1]/x",
            "http://localhost:9/x",
            "http://localhost.:9/x",
            "http://[::127.0.0.1]/x",
            "http://[2002:7f00:1::]/x",
            "http://[2002:a00:1::]/x",
            "http://0.0.0.0/x",
            "ftp://example.com/x",
            "javascript:alert(1)",
            "https://user:pw@example.com/x",
        ] {
            let r = h
                .admin(
                    "POST",
                    "/api/v1/webhooks",
                    Some(json!({"url": url, "events": ["*"]})),
                )
                .await;
            r.assert_error(400, "INVALID_URL");
        }
        let r = h
            .admin(
                "POST",
                "/api/v1/webhooks",
                Some(json!({"url": "https://hooks.example.com/in", "events": ["*"]})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        let hook = r.data()["id"].as_str().unwrap().to_owned();

        // A target that reaches a private address by the time it is delivered to (here written
        // straight into the database, as a DNS answer that changed would) is refused then.
        let receiver = Receiver::start(vec![200]).await;
        let mut row = sling_control::db::webhooks::get(&h.db.pool, &h.team_id, &hook)
            .await
            .unwrap()
            .unwrap();
        row.url = receiver.url.clone();
        assert!(
            sling_control::db::webhooks::update(&h.db, &row)
                .await
                .unwrap()
        );
        start_worker(&h);
        h.admin("POST", &format!("/api/v1/webhooks/{hook}/test"), None)
            .await;
        let d = wait_state(&h, &hook, "failed").await;
        assert!(d["lastError"].as_str().unwrap().contains("private"), "{d}");
        assert!(receiver.received().is_empty());
        h.cleanup().await;
    }
}

#[tokio::test]
async fn webhooks_are_the_teams_own_and_their_fields_are_checked() {
    each_backend(|h| async move {
        let r = h
            .admin(
                "POST",
                "/api/v1/webhooks",
                Some(json!({"url": "https://hooks.example.com/a", "events": ["link.created"]})),
            )
            .await;
        let hook = r.data()["id"].as_str().unwrap().to_owned();
        let uri = format!("/api/v1/webhooks/{hook}");

        let (_, other) = h.team_key("other", &["*"]).await;
        for (method, path, body) in [
            ("GET", uri.clone(), None),
            ("PATCH", uri.clone(), Some(json!({"active": false}))),
            ("DELETE", uri.clone(), None),
            ("POST", format!("{uri}/test"), None),
            ("GET", format!("{uri}/deliveries"), None),
        ] {
            h.call(method, &path, Some(&other), body)
                .await
                .assert_error(404, "NOT_FOUND");
        }
        let r = h.call("GET", "/api/v1/webhooks", Some(&other), None).await;
        assert_eq!(r.data()["pagination"]["total"], 0);
        assert_eq!(h.admin("GET", &uri, None).await.data()["active"], true);

        let read = h.key_with(&["webhooks:read"]).await;
        assert_eq!(h.call("GET", &uri, Some(&read), None).await.status, 200);
        h.call(
            "POST",
            "/api/v1/webhooks",
            Some(&read),
            Some(json!({"url": "https://a.example/", "events": ["*"]})),
        )
        .await
        .assert_error(403, "FORBIDDEN");
        h.call("DELETE", &uri, Some(&read), None)
            .await
            .assert_error(403, "FORBIDDEN");

        for (body, path) in [
            (json!({"url": "https://a.example/", "events": []}), "events"),
            (json!({"url": "https://a.example/", "events": ["link.clicked"]}), "events"),
            (json!({"url": "https://a.example/"}), ""),
            (json!({"url": "https://a.example/", "events": ["*"], "secret": "mine"}), ""),
            (json!({"url": "https://a.example/", "events": ["*"], "description": "x".repeat(201)}), "description"),
        ] {
            let r = h.admin("POST", "/api/v1/webhooks", Some(body.clone())).await;
            r.assert_error(400, "INVALID_REQUEST");
            if !path.is_empty() {
                assert_eq!(r.json["error"]["details"][0]["path"][0], path, "{body}");
            }
        }
        let r = h
            .admin("PATCH", &uri, Some(json!({"events": ["domain.verified", "domain.verified"],
                                             "description": "ops"})))
            .await;
        assert_eq!(r.data()["events"], json!(["domain.verified"]));
        assert_eq!(r.data()["description"], "ops");
        let r = h.admin("PATCH", &uri, Some(json!({"description": null}))).await;
        assert_eq!(r.data()["description"], Value::Null, "{}", r.json);

        assert_eq!(h.admin("DELETE", &uri, None).await.status, 204);
        h.admin("GET", &uri, None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.admin("GET", &format!("{uri}/deliveries"), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h
    })
    .await;
}

#[tokio::test]
async fn a_slow_receiver_holds_up_only_its_own_deliveries() {
    each_backend(|h| async move {
        start_worker(&h);
        let slow = Receiver::start_slow(vec![200], Duration::from_secs(3)).await;
        let fast = Receiver::start(vec![200]).await;
        let mut hooks = Vec::new();
        for url in [&slow.url, &fast.url] {
            let r = h
                .admin(
                    "POST",
                    "/api/v1/webhooks",
                    Some(json!({"url": url, "events": ["*"]})),
                )
                .await;
            hooks.push(r.data()["id"].as_str().unwrap().to_owned());
        }
        for _ in 0..20 {
            h.admin("POST", &format!("/api/v1/webhooks/{}/test", hooks[0]), None)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = std::time::Instant::now();
        h.admin("POST", &format!("/api/v1/webhooks/{}/test", hooks[1]), None)
            .await;
        fast.wait_for(1).await;
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "the fast receiver waited {:?} behind the slow one",
            sent.elapsed()
        );
        // The slow one has at most two requests open at a time.
        assert!(slow.received().len() <= 2, "{}", slow.received().len());
        h
    })
    .await;
}

#[tokio::test]
async fn an_inactive_webhook_pauses_its_retries_until_it_is_active_again() {
    each_backend(|h| async move {
        start_worker(&h);
        let receiver = Receiver::start(vec![500, 200]).await;
        let r = h
            .admin(
                "POST",
                "/api/v1/webhooks",
                Some(json!({"url": receiver.url, "events": ["link.created"]})),
            )
            .await;
        let hook = r.data()["id"].as_str().unwrap().to_owned();
        let uri = format!("/api/v1/webhooks/{hook}");
        h.create(json!({"destinationUrl": "https://example.com/p"}))
            .await;
        receiver.wait_for(1).await;
        h.admin("PATCH", &uri, Some(json!({"active": false}))).await;
        // Retries come after 100 and 200 ms in tests: none while inactive.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(receiver.received().len(), 1);
        let d = deliveries(&h, &hook).await;
        assert_eq!(d[0]["state"], "pending", "{d:?}");
        h.admin("PATCH", &uri, Some(json!({"active": true}))).await;
        let d = wait_state(&h, &hook, "delivered").await;
        assert_eq!(d["attempts"], 2, "{d}");
        assert_eq!(receiver.received().len(), 2);
        h
    })
    .await;
}

/// A click batch as a proxy sends it.
fn click_batch(id: &str, link: &str, clicks: &[(bool, bool)]) -> sling_shared::clicks::ClickBatch {
    let now = sling_control::db::now_ms();
    sling_shared::clicks::ClickBatch {
        batch_id: id.to_owned(),
        proxy_id: "proxy-test".into(),
        events: clicks
            .iter()
            .enumerate()
            .map(|(i, &(bot, qr))| sling_shared::clicks::ClickEvent {
                link_id: link.to_owned(),
                at_ms: now + i as i64,
                country: Some("FR".into()),
                device: "mobile".into(),
                browser: "Safari".into(),
                os: "iOS".into(),
                bot,
                referrer_host: Some("news.example".into()),
                visitor: format!("v{i}"),
                qr,
            })
            .collect(),
    }
}

#[tokio::test]
async fn each_ingested_human_click_is_a_click_event_and_a_qr_scan_also_a_qr_scanned_event() {
    each_backend(|h| async move {
        start_worker(&h);
        let receiver = Receiver::start(vec![200]).await;
        let hook = |events: Value| json!({"url": receiver.url, "events": events});
        let clicks = h
            .admin("POST", "/api/v1/webhooks", Some(hook(json!(["click"]))))
            .await;
        assert_eq!(clicks.status, 201, "{}", clicks.json);
        let clicks_id = clicks.data()["id"].as_str().unwrap().to_owned();
        let secret = clicks.data()["secret"].as_str().unwrap().to_owned();
        let scans = h
            .admin(
                "POST",
                "/api/v1/webhooks",
                Some(hook(json!(["qr.scanned"]))),
            )
            .await;
        let scans_id = scans.data()["id"].as_str().unwrap().to_owned();
        // Another team's catch-all hears nothing of this team's clicks.
        let (_, other) = h.team_key("other", &["*"]).await;
        let theirs = h
            .call(
                "POST",
                "/api/v1/webhooks",
                Some(&other),
                Some(hook(json!(["*"]))),
            )
            .await;
        assert_eq!(theirs.status, 201, "{}", theirs.json);
        let link = h
            .create(json!({"destinationUrl": "https://example.com/clicked"}))
            .await;
        let link_id = link["id"].as_str().unwrap();

        // A human click, a bot, a human QR scan.
        let batch = click_batch(
            "b-hooks-1",
            link_id,
            &[(false, false), (true, false), (false, true)],
        );
        let receipt = sling_control::ingest::ingest(&h.state, &batch)
            .await
            .unwrap();
        assert!(receipt.accepted);
        let got = receiver.wait_for(3).await;
        let mut seen: Vec<(String, bool)> = got
            .iter()
            .map(|r| {
                let body = r.json();
                assert_eq!(body["type"], r.header("x-webhook-event"));
                assert_eq!(body["data"]["linkId"], link_id);
                assert_eq!(body["data"]["country"], "FR");
                assert_eq!(body["data"]["referrer"], "news.example");
                if r.header("x-webhook-event") == "click" {
                    assert_signed(r, &secret);
                }
                (
                    r.header("x-webhook-event").to_owned(),
                    body["data"]["qr"].as_bool().unwrap(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("click".to_owned(), false),
                ("click".to_owned(), true),
                ("qr.scanned".to_owned(), true)
            ]
        );
        wait_state(&h, &scans_id, "delivered").await;
        let events = |all: Vec<Value>| -> Vec<String> {
            all.iter()
                .map(|d| d["event"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(events(deliveries(&h, &clicks_id).await), ["click", "click"]);
        assert_eq!(events(deliveries(&h, &scans_id).await), ["qr.scanned"]);

        // The proxy retries the same batch: recognised, nothing is sent again.
        let again = sling_control::ingest::ingest(&h.state, &batch)
            .await
            .unwrap();
        assert!(!again.accepted);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(receiver.received().len(), 3, "{:?}", receiver.received());
        assert_eq!(deliveries(&h, &clicks_id).await.len(), 2);
        assert_eq!(deliveries(&h, &scans_id).await.len(), 1);
        h
    })
    .await;
}
