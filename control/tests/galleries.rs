//! Galleries (link-in-bio pages) through the API on SQLite and Postgres: the draft and its
//! items, publishing to the change feed (and only then), moving and taking pages down, item
//! order, escaping of user text in the rendered page, bad input, scopes and another team's ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, Resp, each_backend};
use serde_json::{Value, json};
use sling_shared::feed::ChangeOp;

async fn ok(h: &Harness, method: &str, uri: &str, body: Option<Value>) -> Value {
    let r = h.admin(method, uri, body).await;
    assert!(
        r.status.is_success(),
        "{method} {uri}: {} {}",
        r.status,
        r.json
    );
    r.data().clone()
}

/// The bio-page ops written after `seq`.
async fn bio_ops(h: &Harness, seq: u64) -> Vec<ChangeOp> {
    h.changes_after(seq)
        .await
        .into_iter()
        .filter(|op| {
            matches!(
                op,
                ChangeOp::UpsertBioPage { .. } | ChangeOp::DeleteBioPage { .. }
            )
        })
        .collect()
}

fn published_html(op: &ChangeOp) -> &str {
    match op {
        ChangeOp::UpsertBioPage { page, .. } => &page.html,
        other => panic!("not an upsert: {other:?}"),
    }
}

fn sample() -> Value {
    json!({
        "handle": "jane",
        "title": "Jane <b>& Co</b>",
        "bio": "Designer.\nLikes \"quotes\".",
        "theme": "dark",
        "items": [
            {"type": "header", "title": "Work"},
            {"type": "link", "title": "Portfolio", "url": "https://example.com/portfolio"},
            {"type": "divider"},
            {"type": "embed", "url": "https://youtu.be/dQw4w9WgXcQ", "title": "Reel"},
            {"type": "image", "imageUrl": "https://example.com/a.png", "url": "https://example.com/shop", "title": "Shop"},
            {"type": "link", "title": "Hidden", "url": "https://example.com/hidden", "active": false}
        ]
    })
}

#[tokio::test]
async fn a_gallery_reaches_the_edge_only_when_published() {
    each_backend(|h| async move {
        let before = h.feed_head().await;
        let g = ok(&h, "POST", "/api/v1/galleries", Some(sample())).await;
        let id = g["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("gal_"), "{g}");
        assert_eq!(g["published"], false);
        assert_eq!(g["itemCount"], 6);
        assert_eq!(g["domain"], "localhost");
        assert!(g["url"].as_str().unwrap().ends_with("/@jane"), "{g}");
        assert_eq!(
            g["items"][3]["embedUrl"],
            "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
        );
        let kinds: Vec<&str> = g["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["header", "link", "divider", "embed", "image", "link"]);
        assert!(bio_ops(&h, before).await.is_empty(), "a draft is not published");

        let p = ok(&h, "POST", &format!("/api/v1/galleries/{id}/publish"), None).await;
        assert_eq!(p["published"], true);
        assert_eq!(p["hasUnpublishedChanges"], false);
        let ops = bio_ops(&h, before).await;
        assert_eq!(ops.len(), 1, "{ops:?}");
        let ChangeOp::UpsertBioPage { host, handle, page } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!((host.as_str(), handle.as_str()), ("localhost", "jane"));
        assert_eq!(page.id, id);
        let html = &page.html;
        // User text is escaped, never markup.
        assert!(html.contains("<title>Jane &lt;b&gt;&amp; Co&lt;/b&gt;</title>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("content=\"Designer.\nLikes &quot;quotes&quot;.\""), "{html}");
        assert!(html.contains("href=\"https://example.com/portfolio\""), "{html}");
        assert!(html.contains("<h2>Work</h2>"), "{html}");
        assert!(html.contains("<hr>"), "{html}");
        assert!(
            html.contains("src=\"https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ\""),
            "{html}"
        );
        assert!(html.contains("src=\"https://example.com/a.png\""), "{html}");
        assert!(!html.contains("hidden"), "an inactive item is not shown: {html}");
        assert!(html.contains("--bg:#0f1115"), "dark theme: {html}");
        assert!(!html.contains("<script"), "{html}");

        // Editing the draft does not touch the live page until the next publish.
        let head = h.feed_head().await;
        let items = ok(&h, "GET", &format!("/api/v1/galleries/{id}/items"), None).await;
        let portfolio = items["items"][1]["id"].as_str().unwrap().to_owned();
        ok(
            &h,
            "PATCH",
            &format!("/api/v1/galleries/{id}/items/{portfolio}"),
            Some(json!({"title": "Selected work"})),
        )
        .await;
        ok(
            &h,
            "POST",
            &format!("/api/v1/galleries/{id}/items"),
            Some(json!({"type": "link", "title": "Blog", "url": "https://example.com/blog", "position": 0})),
        )
        .await;
        let draft = ok(&h, "GET", &format!("/api/v1/galleries/{id}"), None).await;
        assert_eq!(draft["hasUnpublishedChanges"], true, "{draft}");
        assert_eq!(draft["items"][0]["title"], "Blog");
        assert_eq!(draft["items"][2]["title"], "Selected work");
        let positions: Vec<i64> = draft["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["position"].as_i64().unwrap())
            .collect();
        assert_eq!(positions, (0..7).collect::<Vec<i64>>());
        assert!(bio_ops(&h, head).await.is_empty());
        ok(&h, "POST", &format!("/api/v1/galleries/{id}/publish"), None).await;
        let ops = bio_ops(&h, head).await;
        assert_eq!(ops.len(), 1);
        let html = published_html(&ops[0]);
        let blog = html.find("Blog").unwrap();
        let work = html.find("Selected work").unwrap();
        assert!(blog < work, "the new first item comes first");

        // A theme change with custom CSS.
        ok(
            &h,
            "PATCH",
            &format!("/api/v1/galleries/{id}"),
            Some(json!({"theme": "custom", "customCss": "body { --bg: #abcdef; }"})),
        )
        .await;
        let head = h.feed_head().await;
        ok(&h, "POST", &format!("/api/v1/galleries/{id}/publish"), None).await;
        assert!(published_html(&bio_ops(&h, head).await[0]).contains("--bg: #abcdef;"));
        h
    })
    .await;
}

#[tokio::test]
async fn items_are_reordered_only_as_a_whole_permutation() {
    each_backend(|h| async move {
        let g = ok(&h, "POST", "/api/v1/galleries", Some(sample())).await;
        let id = g["id"].as_str().unwrap();
        let ids: Vec<String> = g["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        let uri = format!("/api/v1/galleries/{id}/items/order");
        let mut reversed = ids.clone();
        reversed.reverse();
        let r = ok(&h, "PUT", &uri, Some(json!({"itemIds": reversed}))).await;
        let got: Vec<&str> = r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, reversed);
        let listed = ok(&h, "GET", &format!("/api/v1/galleries/{id}/items"), None).await;
        assert_eq!(listed["items"][0]["id"], reversed[0].as_str());

        // Missing one, one twice, a stranger: refused, and the order is unchanged.
        for bad in [
            json!({"itemIds": &reversed[1..]}),
            json!({"itemIds": [&reversed[0], &reversed[0], &reversed[1], &reversed[2], &reversed[3], &reversed[4], &reversed[5]]}),
            json!({"itemIds": ([reversed[..5].to_vec(), vec!["gi_nope".to_owned()]].concat())}),
        ] {
            h.admin("PUT", &uri, Some(bad)).await.assert_error(400, "INVALID_REQUEST");
        }
        let listed = ok(&h, "GET", &format!("/api/v1/galleries/{id}/items"), None).await;
        assert_eq!(listed["items"][0]["id"], reversed[0].as_str());

        // Moving one item by PATCH, and deleting one, keep positions dense.
        let item = format!("/api/v1/galleries/{id}/items/{}", reversed[0]);
        ok(&h, "PATCH", &item, Some(json!({"position": 99}))).await;
        let listed = ok(&h, "GET", &format!("/api/v1/galleries/{id}/items"), None).await;
        assert_eq!(listed["items"][5]["id"], reversed[0].as_str());
        let r = h.admin("DELETE", &item, None).await;
        assert_eq!(r.status, 204);
        let listed = ok(&h, "GET", &format!("/api/v1/galleries/{id}/items"), None).await;
        let positions: Vec<i64> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["position"].as_i64().unwrap())
            .collect();
        assert_eq!(positions, [0, 1, 2, 3, 4]);
        h.admin("GET", &item, None).await.assert_error(404, "NOT_FOUND");
        h
    })
    .await;
}

#[tokio::test]
async fn moving_unpublishing_and_deleting_take_the_live_page_along() {
    each_backend(|h| async move {
        let mut body = sample();
        body["publish"] = json!(true);
        let before = h.feed_head().await;
        let g = ok(&h, "POST", "/api/v1/galleries", Some(body)).await;
        let id = g["id"].as_str().unwrap().to_owned();
        assert_eq!(g["published"], true);
        assert_eq!(bio_ops(&h, before).await.len(), 1);

        // A new handle moves the published page at once, with the page as published.
        let head = h.feed_head().await;
        ok(
            &h,
            "PATCH",
            &format!("/api/v1/galleries/{id}"),
            Some(json!({"handle": "jane-doe", "title": "Not yet live"})),
        )
        .await;
        let ops = bio_ops(&h, head).await;
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert_eq!(
            ops[0],
            ChangeOp::DeleteBioPage {
                host: "localhost".into(),
                handle: "jane".into()
            }
        );
        let ChangeOp::UpsertBioPage { handle, page, .. } = &ops[1] else {
            panic!("{ops:?}")
        };
        assert_eq!(handle, "jane-doe");
        assert!(
            !page.html.contains("Not yet live"),
            "the title change waits for publish"
        );

        // The old handle is free again; the new one is taken, by any team.
        let again = ok(
            &h,
            "POST",
            "/api/v1/galleries",
            Some(json!({"handle": "jane", "title": "Another"})),
        )
        .await;
        let (_, other_key) = h.team_key("other", &["*"]).await;
        h.call(
            "POST",
            "/api/v1/galleries",
            Some(&other_key),
            Some(json!({"handle": "jane-doe", "title": "Squatter"})),
        )
        .await
        .assert_error(409, "HANDLE_EXISTS");
        h.admin(
            "PATCH",
            &format!("/api/v1/galleries/{}", again["id"].as_str().unwrap()),
            Some(json!({"handle": "jane-doe"})),
        )
        .await
        .assert_error(409, "HANDLE_EXISTS");

        // Unpublish takes it down and keeps the draft; delete of an unpublished one sends nothing.
        let head = h.feed_head().await;
        let u = ok(
            &h,
            "POST",
            &format!("/api/v1/galleries/{id}/unpublish"),
            None,
        )
        .await;
        assert_eq!(u["published"], false);
        assert_eq!(u["itemCount"], 6);
        assert_eq!(
            bio_ops(&h, head).await,
            [ChangeOp::DeleteBioPage {
                host: "localhost".into(),
                handle: "jane-doe".into()
            }]
        );
        let head = h.feed_head().await;
        assert_eq!(
            h.admin("DELETE", &format!("/api/v1/galleries/{id}"), None)
                .await
                .status,
            204
        );
        assert!(bio_ops(&h, head).await.is_empty());
        h.admin("GET", &format!("/api/v1/galleries/{id}"), None)
            .await
            .assert_error(404, "NOT_FOUND");

        // Deleting a published one takes its page down.
        let gid = again["id"].as_str().unwrap();
        ok(
            &h,
            "POST",
            &format!("/api/v1/galleries/{gid}/publish"),
            None,
        )
        .await;
        let head = h.feed_head().await;
        assert_eq!(
            h.admin("DELETE", &format!("/api/v1/galleries/{gid}"), None)
                .await
                .status,
            204
        );
        assert_eq!(bio_ops(&h, head).await.len(), 1);
        let items: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM gallery_items")
            .fetch_one(&h.db.pool)
            .await
            .unwrap();
        assert_eq!(items, 0, "items go with their gallery");
        h
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    each_backend(|h| async move {
        let g = ok(&h, "POST", "/api/v1/galleries", Some(sample())).await;
        let id = g["id"].as_str().unwrap().to_owned();
        let cases: Vec<(Value, u16, &str)> = vec![
            (json!({"handle": "a", "title": "x"}), 400, "INVALID_REQUEST"),
            (json!({"handle": "has space", "title": "x"}), 400, "INVALID_REQUEST"),
            (json!({"handle": "okay", "title": ""}), 400, "INVALID_REQUEST"),
            (json!({"handle": "okay", "title": "x", "theme": "rainbow"}), 400, "INVALID_REQUEST"),
            (json!({"handle": "okay", "title": "x", "customCss": "</style><script>alert(1)</script>"}), 400, "INVALID_REQUEST"),
            (json!({"handle": "okay", "title": "x", "avatarUrl": "http://example.com/a.png"}), 400, "INVALID_URL"),
            (json!({"handle": "okay", "title": "x", "items": [{"type": "link", "title": "x", "url": "javascript:alert(1)"}]}), 400, "INVALID_URL"),
            (json!({"handle": "okay", "title": "x", "items": [{"type": "link", "title": "x"}]}), 400, "INVALID_URL"),
            (json!({"handle": "okay", "title": "x", "items": [{"type": "embed", "url": "https://evil.example/video"}]}), 400, "INVALID_URL"),
            (json!({"handle": "okay", "title": "x", "items": [{"type": "divider", "title": "no"}]}), 400, "INVALID_REQUEST"),
            (json!({"handle": "okay", "title": "x", "items": [{"type": "carousel"}]}), 400, "INVALID_REQUEST"),
            (json!({"handle": "okay", "title": "x", "colour": "red"}), 400, "INVALID_REQUEST"),
            (json!({"handle": "okay", "title": "x", "domain": "unknown.example"}), 400, "INVALID_REQUEST"),
            (json!({"handle": "jane", "title": "x"}), 409, "HANDLE_EXISTS"),
        ];
        for (body, status, code) in cases {
            let r: Resp = h.admin("POST", "/api/v1/galleries", Some(body.clone())).await;
            assert_eq!(r.status.as_u16(), status, "{body}: {}", r.json);
            r.assert_error(status, code);
        }
        let items = format!("/api/v1/galleries/{id}/items");
        h.admin("POST", &items, Some(json!({"type": "image", "imageUrl": "https://example.com/i.png\n"})))
            .await
            .assert_error(400, "INVALID_URL");
        let first = g["items"][1]["id"].as_str().unwrap();
        // Turning a link into a header keeps its url, which a header may not have.
        h.admin("PATCH", &format!("{items}/{first}"), Some(json!({"type": "header"})))
            .await
            .assert_error(400, "INVALID_REQUEST");
        let list = ok(&h, "GET", "/api/v1/galleries", None).await;
        assert_eq!(list["pagination"]["total"], 1, "{list}");
        assert_eq!(list["items"][0]["itemCount"], 6);
        let after = ok(&h, "GET", &format!("/api/v1/galleries/{id}"), None).await;
        assert_eq!(after["items"][1]["type"], "link");
        assert_eq!(after["items"], g["items"]);
        h
    })
    .await;
}

#[tokio::test]
async fn another_teams_gallery_is_not_found_and_scopes_are_enforced() {
    each_backend(|h| async move {
        let g = ok(&h, "POST", "/api/v1/galleries", Some(sample())).await;
        let id = g["id"].as_str().unwrap();
        let item = g["items"][0]["id"].as_str().unwrap();
        let (_, other) = h.team_key("other", &["*"]).await;
        let head = h.feed_head().await;
        for (method, uri, body) in [
            ("GET", format!("/api/v1/galleries/{id}"), None),
            (
                "PATCH",
                format!("/api/v1/galleries/{id}"),
                Some(json!({"title": "mine"})),
            ),
            ("POST", format!("/api/v1/galleries/{id}/publish"), None),
            ("POST", format!("/api/v1/galleries/{id}/unpublish"), None),
            ("DELETE", format!("/api/v1/galleries/{id}"), None),
            ("GET", format!("/api/v1/galleries/{id}/items"), None),
            (
                "POST",
                format!("/api/v1/galleries/{id}/items"),
                Some(json!({"type": "divider"})),
            ),
            ("GET", format!("/api/v1/galleries/{id}/items/{item}"), None),
            (
                "PATCH",
                format!("/api/v1/galleries/{id}/items/{item}"),
                Some(json!({"title": "x"})),
            ),
            (
                "DELETE",
                format!("/api/v1/galleries/{id}/items/{item}"),
                None,
            ),
            (
                "PUT",
                format!("/api/v1/galleries/{id}/items/order"),
                Some(json!({"itemIds": []})),
            ),
        ] {
            h.call(method, &uri, Some(&other), body)
                .await
                .assert_error(404, "NOT_FOUND");
        }
        let theirs = h.call("GET", "/api/v1/galleries", Some(&other), None).await;
        assert_eq!(theirs.data()["pagination"]["total"], 0);
        assert!(bio_ops(&h, head).await.is_empty());
        let after = ok(&h, "GET", &format!("/api/v1/galleries/{id}"), None).await;
        assert_eq!(after["items"], g["items"]);
        assert_eq!(after["title"], g["title"]);

        let read = h.key_with(&["galleries:read"]).await;
        h.call(
            "POST",
            "/api/v1/galleries",
            Some(&read),
            Some(json!({"handle": "rd", "title": "x"})),
        )
        .await
        .assert_error(403, "FORBIDDEN");
        h.call(
            "POST",
            &format!("/api/v1/galleries/{id}/publish"),
            Some(&read),
            None,
        )
        .await
        .assert_error(403, "FORBIDDEN");
        assert_eq!(
            h.call("GET", &format!("/api/v1/galleries/{id}"), Some(&read), None)
                .await
                .status,
            200
        );
        h
    })
    .await;
}

/// A click batch as a proxy sends it: `(id, bot)` per event.
fn views(batch_id: &str, events: &[(&str, bool)]) -> sling_shared::clicks::ClickBatch {
    let now = sling_control::db::now_ms();
    sling_shared::clicks::ClickBatch {
        batch_id: batch_id.to_owned(),
        proxy_id: "proxy-test".into(),
        events: events
            .iter()
            .enumerate()
            .map(|(i, &(id, bot))| sling_shared::clicks::ClickEvent {
                link_id: id.to_owned(),
                at_ms: now - 1000 + i as i64,
                country: Some("DE".into()),
                device: "mobile".into(),
                browser: "Firefox".into(),
                os: "Android".into(),
                bot,
                referrer_host: Some("social.example".into()),
                visitor: format!("visitor-{i}"),
                qr: false,
            })
            .collect(),
    }
}

#[tokio::test]
async fn page_views_count_for_the_gallery_and_never_as_link_clicks() {
    each_backend(|h| async move {
        let mut body = sample();
        body["publish"] = json!(true);
        let g = ok(&h, "POST", "/api/v1/galleries", Some(body)).await;
        let id = g["id"].as_str().unwrap().to_owned();
        assert_eq!(g["views"], 0);
        let link = h
            .create(json!({"destinationUrl": "https://example.com/real"}))
            .await;
        let link_id = link["id"].as_str().unwrap().to_owned();
        // A click webhook, to see that page views are not sent as clicks.
        let r = h
            .admin(
                "POST",
                "/api/v1/webhooks",
                Some(json!({"url": "https://hooks.example/c", "events": ["click"]})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);

        // Two human views, a bot's, and one click of the link.
        let batch = views(
            "b-views-1",
            &[(&id, false), (&id, false), (&id, true), (&link_id, false)],
        );
        assert!(
            sling_control::ingest::ingest(&h.state, &batch)
                .await
                .unwrap()
                .accepted
        );
        // Retried: counted once.
        assert!(
            !sling_control::ingest::ingest(&h.state, &batch)
                .await
                .unwrap()
                .accepted
        );

        let got = ok(&h, "GET", &format!("/api/v1/galleries/{id}"), None).await;
        assert_eq!(got["views"], 2, "{got}");
        let stats = ok(&h, "GET", &format!("/api/v1/galleries/{id}/stats"), None).await;
        assert_eq!(stats["totalClicks"], 2, "{stats}");
        assert_eq!(stats["uniqueClicks"], 2, "{stats}");
        assert_eq!(stats["byCountry"][0]["country"], "DE", "{stats}");
        let with_bots = ok(
            &h,
            "GET",
            &format!("/api/v1/galleries/{id}/stats?includeBots=true"),
            None,
        )
        .await;
        assert_eq!(with_bots["totalClicks"], 3);

        // The team's stats and the link are about links only.
        let team = ok(&h, "GET", "/api/v1/stats", None).await;
        assert_eq!(team["totalClicks"], 1, "{team}");
        assert_eq!(team["uniqueClicks"], 1, "{team}");
        let l = ok(&h, "GET", &format!("/api/v1/links/{link_id}"), None).await;
        assert_eq!(l["clicks"], 1);
        let queued: Vec<String> = sqlx::query_scalar("SELECT payload FROM webhook_deliveries")
            .fetch_all(&h.db.pool)
            .await
            .unwrap();
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert!(queued[0].contains(&link_id), "{queued:?}");

        // Another team cannot read the views.
        let (_, other) = h.team_key("other", &["*"]).await;
        h.call(
            "GET",
            &format!("/api/v1/galleries/{id}/stats"),
            Some(&other),
            None,
        )
        .await
        .assert_error(404, "NOT_FOUND");
        h
    })
    .await;
}
