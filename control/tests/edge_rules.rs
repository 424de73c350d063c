//! What the control plane does for the proxy's rules: click limits published through the feed
//! once ingest counts them, passwords that never come back out of the API, and per-domain
//! behaviour (`/api/v1/domains`). SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::each_backend;
use serde_json::json;
use sling_shared::clicks::{CLICKS_PATH, ClickBatch, ClickEvent};
use sling_shared::feed::ChangeOp;

const FLEET: &str = "test-fleet-token";

fn batch(id: &str, link: &str, n: usize) -> ClickBatch {
    ClickBatch {
        batch_id: id.to_owned(),
        proxy_id: "proxy-test".into(),
        events: (0..n)
            .map(|i| ClickEvent {
                link_id: link.to_owned(),
                at_ms: 1_700_000_000_000 + i as i64,
                country: None,
                device: "desktop".into(),
                browser: "Firefox".into(),
                os: "Linux".into(),
                bot: false,
                referrer_host: None,
                visitor: format!("v{i}"),
                qr: false,
            })
            .collect(),
    }
}

async fn post(h: &common::Harness, b: &ClickBatch) {
    let req = Request::builder()
        .method("POST")
        .uri(CLICKS_PATH)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {FLEET}"))
        .body(Body::from(serde_json::to_vec(b).unwrap()))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The `click_limit_reached` flags of the link upserts after `seq`.
async fn published(h: &common::Harness, seq: u64) -> Vec<bool> {
    h.changes_after(seq)
        .await
        .into_iter()
        .filter_map(|op| match op {
            ChangeOp::UpsertLink { link, .. } => Some(link.click_limit_reached),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn reaching_the_click_limit_is_published_once() {
    each_backend(|h| async move {
        let link = h
            .create(json!({"destinationUrl": "https://example.com", "clickLimit": 5}))
            .await;
        let id = link["id"].as_str().unwrap().to_owned();
        let other = h
            .create(json!({"destinationUrl": "https://example.com/o"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let seq = h.feed_head().await;
        post(&h, &batch("b1", &id, 4)).await;
        post(&h, &batch("b2", &other, 50)).await;
        assert_eq!(
            published(&h, seq).await,
            Vec::<bool>::new(),
            "under the limit"
        );
        post(&h, &batch("b3", &id, 3)).await;
        assert_eq!(published(&h, seq).await, vec![true], "crossing publishes");
        post(&h, &batch("b4", &id, 3)).await;
        assert_eq!(published(&h, seq).await, vec![true], "only once");
        // Raising the limit reopens the link at the edge.
        let seq = h.feed_head().await;
        let r = h
            .admin(
                "PATCH",
                &format!("/api/v1/links/{id}"),
                Some(json!({"clickLimit": 100})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(published(&h, seq).await, vec![false]);
        h
    })
    .await;
}

#[tokio::test]
async fn the_api_never_returns_a_password_or_its_hash() {
    each_backend(|h| async move {
        let link = h
            .create(json!({"destinationUrl": "https://example.com", "password": "s3cret-pw"}))
            .await;
        let id = link["id"].as_str().unwrap().to_owned();
        for r in [
            h.admin("GET", &format!("/api/v1/links/{id}"), None).await,
            h.admin("GET", "/api/v1/links", None).await,
            h.admin(
                "PATCH",
                &format!("/api/v1/links/{id}"),
                Some(json!({"title": "t"})),
            )
            .await,
        ] {
            assert_eq!(r.status, 200, "{}", r.json);
            let text = r.json.to_string();
            assert!(
                !text.contains("s3cret-pw") && !text.contains("argon2"),
                "{text}"
            );
        }
        let text = link.to_string();
        assert!(
            !text.contains("s3cret-pw") && !text.contains("argon2"),
            "{text}"
        );
        h
    })
    .await;
}

#[tokio::test]
async fn the_default_domain_redirects_are_set_by_an_admin_key_and_published() {
    each_backend(|h| async move {
        let r = h.admin("GET", "/api/v1/domains", None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let items = r.data()["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0]["isDefault"], true);
        assert_eq!(items[0]["rootRedirect"], serde_json::Value::Null);
        let id = items[0]["id"].as_str().unwrap().to_owned();
        let uri = format!("/api/v1/domains/{id}");
        assert_eq!(h.admin("GET", &uri, None).await.data()["id"], id.as_str());

        // The admin key (`*`) sets both redirects; the feed carries the change.
        let seq = h.feed_head().await;
        let r = h
            .admin(
                "PATCH",
                &uri,
                Some(json!({"rootRedirect": "https://example.com/home",
                            "notFoundRedirect": "https://example.com/nf"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["rootRedirect"], "https://example.com/home");
        let ops = h.changes_after(seq).await;
        assert!(
            matches!(&ops[..], [ChangeOp::UpsertDomain { root_redirect: Some(r), not_found_redirect: Some(n), .. }]
                if r == "https://example.com/home" && n == "https://example.com/nf"),
            "{ops:?}"
        );
        // Absent fields are kept, null clears.
        let r = h
            .admin("PATCH", &uri, Some(json!({"rootRedirect": null})))
            .await;
        assert_eq!(r.data()["rootRedirect"], serde_json::Value::Null);
        assert_eq!(r.data()["notFoundRedirect"], "https://example.com/nf");

        // Bad targets: not http(s), a loop back to sling, unknown fields.
        for body in [
            json!({"rootRedirect": "javascript:alert(1)"}),
            json!({"notFoundRedirect": "ftp://example.com/"}),
            json!({"rootRedirect": "https://localhost/x"}),
        ] {
            let r = h.admin("PATCH", &uri, Some(body.clone())).await;
            assert_eq!(r.status, 400, "{body} → {}", r.json);
        }
        let r = h.admin("PATCH", &uri, Some(json!({"landing": "x"}))).await;
        assert_eq!(r.status, 400, "{}", r.json);

        // The default domain is shared: `domains:write` alone may read it but not change it.
        let (_, key) = h.team_key("other", &["domains:*"]).await;
        let r = h.call("GET", &uri, Some(&key), None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let r = h
            .call("PATCH", &uri, Some(&key), Some(json!({"rootRedirect": "https://e.example/"})))
            .await;
        r.assert_error(403, "FORBIDDEN");
        // Nor may another team's `*` key: every team may hold one for its own resources, and
        // the default domain's redirects and pages answer for every tenant. Nothing changes.
        let (_, other_star) = h.team_key("admin", &["*"]).await;
        let before = h.admin("GET", &uri, None).await.data().clone();
        let seq = h.feed_head().await;
        for body in [
            json!({"rootRedirect": "https://evil.example/"}),
            json!({"notFoundRedirect": "https://evil.example/"}),
            json!({"pages": {"notFound": {"title": "pwned", "message": "pwned"}}}),
            json!({"httpsRedirect": true}),
        ] {
            let r = h.call("PATCH", &uri, Some(&other_star), Some(body.clone())).await;
            r.assert_error(403, "FORBIDDEN");
        }
        assert_eq!(h.admin("GET", &uri, None).await.data(), &before);
        assert_eq!(h.feed_head().await, seq, "{:?}", h.changes_after(seq).await);
        // The operator's own key still can.
        let r = h
            .admin("PATCH", &uri, Some(json!({"rootRedirect": "https://example.com/again"})))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let (_, links_only) = h.team_key("third", &["links:*"]).await;
        let r = h.call("GET", "/api/v1/domains", Some(&links_only), None).await;
        r.assert_error(403, "FORBIDDEN");
        let r = h.admin("GET", "/api/v1/domains/dom_nope", None).await;
        r.assert_error(404, "NOT_FOUND");
        h
    })
    .await;
}

#[tokio::test]
async fn a_domains_own_pages_are_checked_stored_published_and_snapshotted() {
    each_backend(|h| async move {
        let id = h.admin("GET", "/api/v1/domains", None).await.data()["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let uri = format!("/api/v1/domains/{id}");
        let r = h.admin("GET", &uri, None).await;
        assert_eq!(
            r.data()["pages"],
            json!({"landing": null, "notFound": null, "gone": null})
        );

        let seq = h.feed_head().await;
        let r = h
            .admin(
                "PATCH",
                &uri,
                Some(json!({"pages": {
                    "landing": {"title": "  Acme <links>  ", "message": "Short links of Acme.\nSee acme.example."},
                    "gone": {"title": "Gone", "message": ""}}})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        // Plain text, trimmed; markup is kept as text (the proxy escapes it).
        assert_eq!(r.data()["pages"]["landing"]["title"], "Acme <links>");
        assert_eq!(r.data()["pages"]["notFound"], serde_json::Value::Null);
        assert_eq!(r.data()["pages"]["gone"]["title"], "Gone");
        let ops = h.changes_after(seq).await;
        match &ops[..] {
            [ChangeOp::UpsertDomain { pages, .. }] => {
                assert_eq!(pages.landing.as_ref().unwrap().title, "Acme <links>");
                assert!(pages.not_found.is_none());
                assert_eq!(pages.gone.as_ref().unwrap().title, "Gone");
            }
            other => panic!("{other:?}"),
        }
        // A snapshot carries them too (a proxy that starts from it shows the same pages).
        let body = sling_control::db::snapshot::load_body(&h.db, "localhost")
            .await
            .unwrap();
        let d = &body.domains["localhost"];
        assert_eq!(
            d.pages.landing.as_ref().unwrap().message,
            "Short links of Acme.\nSee acme.example."
        );

        // Bad pages: every one refused with its path, and nothing changes.
        let before = h.admin("GET", &uri, None).await.json.clone();
        for (body, path) in [
            (json!({"pages": {"landing": {"title": "   ", "message": "x"}}}), "pages.landing.title"),
            (json!({"pages": {"notFound": {"title": "x".repeat(121), "message": ""}}}), "pages.notFound.title"),
            (json!({"pages": {"gone": {"title": "a\tb", "message": ""}}}), "pages.gone.title"),
            (json!({"pages": {"gone": {"title": "t", "message": "x".repeat(2001)}}}), "pages.gone.message"),
            (json!({"pages": {"gone": {"title": "t", "message": "bell\u{7}"}}}), "pages.gone.message"),
        ] {
            let r = h.admin("PATCH", &uri, Some(body.clone())).await;
            r.assert_error(400, "INVALID_REQUEST");
            let got = r.json["error"]["details"][0]["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(".");
            assert_eq!(got, path, "{body}");
        }
        for body in [
            json!({"pages": {"landing": {"title": "t"}}}),
            json!({"pages": {"landing": {"title": "t", "message": "m", "html": "<b>"}}}),
            json!({"pages": {"home": null}}),
            json!({"pages": "x"}),
        ] {
            let r = h.admin("PATCH", &uri, Some(body.clone())).await;
            assert_eq!(r.status, 400, "{body} → {}", r.json);
        }
        let after = h.admin("GET", &uri, None).await.json.clone();
        assert_eq!(before["data"], after["data"]);

        // null restores the built-in page; absent pages are kept.
        let r = h
            .admin("PATCH", &uri, Some(json!({"pages": {"landing": null}})))
            .await;
        assert_eq!(r.data()["pages"]["landing"], serde_json::Value::Null);
        assert_eq!(r.data()["pages"]["gone"]["title"], "Gone");
        h
    })
    .await;
}
