//! The links API, happy paths: create, read, list, update, flags, delete, bulk — on SQLite and
//! Postgres, checking the change feed after every write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::each_backend;
use serde_json::{Value, json};
use sling_shared::feed::ChangeOp;

fn upserted(op: &ChangeOp) -> (&str, &str, &sling_shared::link::LinkRecord) {
    match op {
        ChangeOp::UpsertLink { host, slug, link } => (host, slug, link),
        other => panic!("expected UpsertLink, got {other:?}"),
    }
}

#[tokio::test]
async fn create_with_defaults_and_generated_slug() {
    each_backend(|h| async move {
        let seq = h.feed_head().await;
        let r = h
            .admin(
                "POST",
                "/api/v1/links",
                Some(json!({"destinationUrl": "https://example.com"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        assert_eq!(r.json["success"], true);
        assert!(r.request_id().starts_with("req_"));
        let l = r.data();
        assert!(l["id"].as_str().unwrap().starts_with("lnk_"));
        let slug = l["slug"].as_str().unwrap();
        assert_eq!(slug.len(), 7);
        assert_eq!(l["domain"], "localhost");
        assert_eq!(l["shortUrl"], format!("http://localhost:8080/{slug}"));
        assert_eq!(l["destinationUrl"], "https://example.com/");
        assert_eq!(l["redirectType"], 302);
        assert_eq!(l["forwardQuery"], true);
        assert_eq!(l["active"], true);
        assert_eq!(l["archived"], false);
        assert_eq!(l["visible"], true);
        assert_eq!(l["hasPassword"], false);
        assert_eq!(l["clicks"], 0);
        assert_eq!(l["channel"], "api");
        assert_eq!(l["tags"], json!([]));
        assert_eq!(l["geoTargets"], json!({}));
        assert!(l["title"].is_null() && l["expiresAt"].is_null() && l["externalId"].is_null());
        assert!(l["createdAt"].as_str().unwrap().ends_with('Z'));
        assert!(l.get("password").is_none() && l.get("passwordHash").is_none());

        let ops = h.changes_after(seq).await;
        assert_eq!(ops.len(), 1);
        let (host, s, rec) = upserted(&ops[0]);
        assert_eq!((host, s), ("localhost", slug));
        assert_eq!(rec.id, l["id"].as_str().unwrap());
        assert_eq!(rec.destination_url, "https://example.com/");
        assert_eq!(h.state.feed_head.borrow().to_owned(), h.feed_head().await);
        h
    })
    .await;
}

#[tokio::test]
async fn create_with_every_field() {
    each_backend(|h| async move {
        let seq = h.feed_head().await;
        let l = h
            .create(json!({
                "destinationUrl": "https://bücher.example/path?q=1",
                "slug": "Full-Link_1",
                "title": "A title",
                "description": "Line one\nline two",
                "tags": [" sale ", "spring", "sale"],
                "password": "hunter2",
                "expiresAt": "2999-01-01T00:00:00Z",
                "expiredUrl": "https://example.com/expired",
                "clickLimit": 100,
                "geoTargets": {"us": "https://us.example.com", "DE": "https://de.example.com"},
                "deviceTargets": {"ios": "https://apps.apple.com/x", "desktop": "https://example.com/d"},
                "iosUrl": "https://ios.example.com",
                "androidUrl": "https://android.example.com",
                "utmSource": "news", "utmMedium": "email", "utmCampaign": "spring",
                "utmTerm": "t", "utmContent": "c",
                "external_id": "order-1",
                "redirectType": 301,
                "forwardQuery": false,
                "visible": false,
            }))
            .await;
        assert_eq!(l["slug"], "Full-Link_1");
        assert_eq!(l["destinationUrl"], "https://xn--bcher-kva.example/path?q=1");
        assert_eq!(l["tags"], json!(["sale", "spring"]));
        assert_eq!(l["hasPassword"], true);
        assert_eq!(l["expiresAt"], "2999-01-01T00:00:00.000Z");
        assert_eq!(l["geoTargets"], json!({"DE": "https://de.example.com/", "US": "https://us.example.com/"}));
        assert_eq!(l["deviceTargets"]["ios"], "https://apps.apple.com/x");
        assert_eq!(l["externalId"], "order-1");
        assert_eq!(l["redirectType"], 301);
        assert_eq!(l["forwardQuery"], false);
        assert_eq!(l["visible"], false);
        assert_eq!(l["clickLimit"], 100);

        let ops = h.changes_after(seq).await;
        let (_, _, rec) = upserted(&ops[0]);
        assert!(rec.password_hash.as_deref().unwrap().starts_with("$argon2id$"));
        assert_eq!(rec.redirect_type, 301);
        assert_eq!(rec.click_limit, Some(100));
        assert_eq!(rec.expires_at_ms, Some(32_472_144_000_000));
        assert_eq!(rec.geo_targets.len(), 2);
        assert_eq!(rec.geo_targets[0].key, "DE");
        let utm: Vec<&str> = rec.utm.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(utm, ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"]);

        // Read back by id and by external id.
        let id = l["id"].as_str().unwrap();
        let got = h.admin("GET", &format!("/api/v1/links/{id}"), None).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.data(), &l);
        let ext = h.admin("GET", "/api/v1/links/external/order-1", None).await;
        assert_eq!(ext.status, 200);
        assert_eq!(ext.data()["id"], id);
        h.admin("GET", "/api/v1/links/external/nope", None).await.assert_error(404, "NOT_FOUND");
        h
    })
    .await;
}

#[tokio::test]
async fn patch_sets_clears_and_moves() {
    each_backend(|h| async move {
        let l = h
            .create(json!({
                "destinationUrl": "https://example.com/a",
                "slug": "before",
                "title": "T",
                "tags": ["x"],
                "password": "pw",
                "clickLimit": 5,
                "geoTargets": {"US": "https://us.example.com"},
            }))
            .await;
        let id = l["id"].as_str().unwrap().to_owned();
        let uri = format!("/api/v1/links/{id}");

        // Absent fields stay; null clears.
        let seq = h.feed_head().await;
        let r = h
            .admin("PATCH", &uri, Some(json!({"title": null, "tags": null, "password": null, "clickLimit": null, "description": "d"})))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let p = r.data();
        assert!(p["title"].is_null());
        assert_eq!(p["tags"], json!([]));
        assert_eq!(p["hasPassword"], false);
        assert!(p["clickLimit"].is_null());
        assert_eq!(p["description"], "d");
        assert_eq!(p["destinationUrl"], "https://example.com/a");
        assert_eq!(p["geoTargets"]["US"], "https://us.example.com/");
        assert_eq!(p["slug"], "before");
        let ops = h.changes_after(seq).await;
        assert_eq!(ops.len(), 1);
        let (_, slug, rec) = upserted(&ops[0]);
        assert_eq!(slug, "before");
        assert_eq!(rec.password_hash, None);
        assert_eq!(rec.click_limit, None);

        // The tag filter follows the tag table.
        let tagged = h.admin("GET", "/api/v1/links?tag=x", None).await;
        assert_eq!(tagged.data()["pagination"]["total"], 0);

        // A slug change is a delete of the old key and an upsert of the new one.
        let seq = h.feed_head().await;
        let r = h.admin("PATCH", &uri, Some(json!({"slug": "after", "destinationUrl": "https://example.com/b"}))).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["slug"], "after");
        let ops = h.changes_after(seq).await;
        assert_eq!(
            ops[0],
            ChangeOp::DeleteLink { host: "localhost".into(), slug: "before".into() }
        );
        let (_, slug, rec) = upserted(&ops[1]);
        assert_eq!(slug, "after");
        assert_eq!(rec.destination_url, "https://example.com/b");

        // PUT has the same partial semantics.
        let r = h.admin("PUT", &uri, Some(json!({"active": false, "redirectType": 308}))).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["active"], false);
        assert_eq!(r.data()["redirectType"], 308);
        assert_eq!(r.data()["slug"], "after");

        // Null resets defaulted fields.
        let r = h.admin("PATCH", &uri, Some(json!({"active": null, "redirectType": null, "geoTargets": null}))).await;
        assert_eq!(r.data()["active"], true);
        assert_eq!(r.data()["redirectType"], 302);
        assert_eq!(r.data()["geoTargets"], json!({}));

        // Null on a required field is refused and changes nothing.
        let before = h.admin("GET", &uri, None).await.json;
        h.admin("PATCH", &uri, Some(json!({"destinationUrl": null}))).await.assert_error(400, "INVALID_REQUEST");
        h.admin("PATCH", &uri, Some(json!({"slug": null}))).await.assert_error(400, "INVALID_REQUEST");
        assert_eq!(h.admin("GET", &uri, None).await.json, before);

        // Moving onto a taken slug is a conflict.
        h.create(json!({"destinationUrl": "https://example.com/c", "slug": "taken"})).await;
        h.admin("PATCH", &uri, Some(json!({"slug": "taken"}))).await.assert_error(409, "SLUG_EXISTS");
        h
    })
    .await;
}

#[tokio::test]
async fn enable_disable_archive_unarchive_delete() {
    each_backend(|h| async move {
        let l = h
            .create(json!({"destinationUrl": "https://example.com/"}))
            .await;
        let id = l["id"].as_str().unwrap().to_owned();
        for (action, field, value) in [
            ("disable", "active", false),
            ("enable", "active", true),
            ("archive", "archived", true),
            ("unarchive", "archived", false),
        ] {
            let seq = h.feed_head().await;
            let r = h
                .admin("POST", &format!("/api/v1/links/{id}/{action}"), None)
                .await;
            assert_eq!(r.status, 200, "{action}: {}", r.json);
            assert_eq!(r.data()[field], value, "{action}");
            let ops = h.changes_after(seq).await;
            assert_eq!(ops.len(), 1);
            let (_, _, rec) = upserted(&ops[0]);
            let got = if field == "active" {
                rec.active
            } else {
                rec.archived
            };
            assert_eq!(got, value, "{action}");
        }

        let seq = h.feed_head().await;
        let r = h
            .admin("DELETE", &format!("/api/v1/links/{id}"), None)
            .await;
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        assert!(r.request_id().starts_with("req_"));
        assert_eq!(
            h.changes_after(seq).await,
            vec![ChangeOp::DeleteLink {
                host: "localhost".into(),
                slug: l["slug"].as_str().unwrap().into()
            }]
        );
        h.admin("GET", &format!("/api/v1/links/{id}"), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.admin("DELETE", &format!("/api/v1/links/{id}"), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.admin("POST", &format!("/api/v1/links/{id}/enable"), None)
            .await
            .assert_error(404, "NOT_FOUND");
        // The slug is free again.
        h.create(json!({"destinationUrl": "https://example.com/", "slug": l["slug"]}))
            .await;
        h
    })
    .await;
}

async fn seed_list(h: &common::Harness) {
    for (slug, dest, title, tags, active) in [
        (
            "alpha",
            "https://one.example.com/",
            "First",
            vec!["red"],
            true,
        ),
        (
            "bravo",
            "https://two.example.com/",
            "Second 100%",
            vec!["red", "blue"],
            true,
        ),
        (
            "charlie",
            "https://three.example.com/",
            "Third",
            vec!["blue"],
            false,
        ),
        (
            "delta",
            "https://four.example.com/x_y",
            "Fourth",
            vec![],
            true,
        ),
        ("echo", "https://five.example.com/", "Fifth", vec![], true),
    ] {
        h.create(json!({"destinationUrl": dest, "slug": slug, "title": title, "tags": tags, "active": active}))
            .await;
    }
}

fn slugs(v: &Value) -> Vec<String> {
    v["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["slug"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_filters_sort_and_pagination() {
    each_backend(|h| async move {
        seed_list(&h).await;
        let get = |q: &'static str| {
            let h = &h;
            async move {
                let r = h.admin("GET", &format!("/api/v1/links{q}"), None).await;
                assert_eq!(r.status, 200, "{q}: {}", r.json);
                r.json
            }
        };
        // Default: newest first, 20 per page.
        let all = get("").await;
        assert_eq!(
            all["data"]["pagination"],
            json!({"page": 1, "perPage": 20, "total": 5, "totalPages": 1})
        );
        assert_eq!(
            slugs(&get("?sort=slug&order=asc").await),
            ["alpha", "bravo", "charlie", "delta", "echo"]
        );
        assert_eq!(
            slugs(&get("?sortBy=slug&sortOrder=desc").await),
            ["echo", "delta", "charlie", "bravo", "alpha"]
        );
        let p2 = get("?sort=slug&order=asc&perPage=2&page=2").await;
        assert_eq!(slugs(&p2), ["charlie", "delta"]);
        assert_eq!(
            p2["data"]["pagination"],
            json!({"page": 2, "perPage": 2, "total": 5, "totalPages": 3})
        );
        assert_eq!(
            slugs(&get("?sort=slug&order=asc&limit=2&page=3").await),
            ["echo"]
        );
        assert_eq!(slugs(&get("?page=9").await), Vec::<String>::new());
        // Filters.
        assert_eq!(
            slugs(&get("?tag=red&sort=slug&order=asc").await),
            ["alpha", "bravo"]
        );
        assert_eq!(slugs(&get("?active=false").await), ["charlie"]);
        assert_eq!(get("?active=true").await["data"]["pagination"]["total"], 4);
        assert_eq!(
            get("?archived=true").await["data"]["pagination"]["total"],
            0
        );
        assert_eq!(get("?visible=true").await["data"]["pagination"]["total"], 5);
        assert_eq!(
            get("?domain=localhost").await["data"]["pagination"]["total"],
            5
        );
        assert_eq!(
            get("?domain=other.example").await["data"]["pagination"]["total"],
            0
        );
        // Search: case-insensitive over slug, destination and title; % and _ are literal.
        assert_eq!(slugs(&get("?search=ALP").await), ["alpha"]);
        assert_eq!(slugs(&get("?search=three.example").await), ["charlie"]);
        assert_eq!(slugs(&get("?search=fourth").await), ["delta"]);
        assert_eq!(slugs(&get("?search=100%25").await), ["bravo"]);
        assert_eq!(slugs(&get("?search=x_y").await), ["delta"]);
        assert_eq!(slugs(&get("?search=%25").await), ["bravo"]);
        assert_eq!(slugs(&get("?search=_").await), ["delta"]);
        // Sorting by clicks ties on 0 and still pages stably (id tie-break).
        let a = slugs(&get("?sort=clicks&perPage=3&page=1").await);
        let b = slugs(&get("?sort=clicks&perPage=3&page=2").await);
        let mut both: Vec<String> = a.into_iter().chain(b).collect();
        both.sort();
        assert_eq!(both, ["alpha", "bravo", "charlie", "delta", "echo"]);
        h
    })
    .await;
}

#[tokio::test]
async fn bulk_mixed_items() {
    each_backend(|h| async move {
        h.create(json!({"destinationUrl": "https://example.com/", "slug": "exists"}))
            .await;
        let before = h.link_count().await;
        let seq = h.feed_head().await;
        let r = h
            .admin(
                "POST",
                "/api/v1/links/bulk",
                Some(json!([
                    {"destinationUrl": "https://a.example.com/", "slug": "bulk-a"},
                    {"destinationUrl": "javascript:alert(1)"},
                    {"destinationUrl": "https://b.example.com/", "slug": "exists"},
                    {"destinationUrl": "https://c.example.com/"},
                    {"destinationUrl": "https://d.example.com/", "bogus": 1},
                    {"destinationUrl": "https://e.example.com/", "slug": "bulk-a"},
                    "not an object",
                ])),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let res = r.data()["results"].as_array().unwrap();
        assert_eq!(res.len(), 7);
        let codes: Vec<Value> = res
            .iter()
            .map(|x| {
                if x["success"] == true {
                    json!("ok")
                } else {
                    x["error"]["code"].clone()
                }
            })
            .collect();
        assert_eq!(
            codes,
            [
                json!("ok"),
                json!("INVALID_URL"),
                json!("SLUG_EXISTS"),
                json!("ok"),
                json!("INVALID_REQUEST"),
                json!("SLUG_EXISTS"),
                json!("INVALID_REQUEST")
            ]
        );
        for (i, x) in res.iter().enumerate() {
            assert_eq!(x["index"], i);
        }
        assert_eq!(res[0]["data"]["channel"], "api");
        assert_eq!(r.data()["succeeded"], 2);
        assert_eq!(r.data()["failed"], 5);
        assert_eq!(h.link_count().await, before + 2);
        let ops = h.changes_after(seq).await;
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|o| matches!(o, ChangeOp::UpsertLink { .. })));

        // Object form with the import channel.
        let r = h
            .admin(
                "POST",
                "/api/v1/links/bulk",
                Some(json!({"channel": "import", "links": [{"url": "https://f.example.com/"}]})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["results"][0]["data"]["channel"], "import");

        // Limits.
        let many: Vec<Value> = (0..1001)
            .map(|_| json!({"destinationUrl": "https://x.example.com/"}))
            .collect();
        h.admin("POST", "/api/v1/links/bulk", Some(Value::Array(many)))
            .await
            .assert_error(400, "INVALID_REQUEST");
        h.admin("POST", "/api/v1/links/bulk", Some(json!([])))
            .await
            .assert_error(400, "INVALID_REQUEST");
        h.admin(
            "POST",
            "/api/v1/links/bulk",
            Some(json!({"links": [], "x": 1})),
        )
        .await
        .assert_error(400, "INVALID_REQUEST");
        h.admin(
            "POST",
            "/api/v1/links/bulk",
            Some(json!({"channel": "fax", "links": [{"url": "https://f.example.com/"}]})),
        )
        .await
        .assert_error(400, "INVALID_REQUEST");
        assert_eq!(h.link_count().await, before + 3);
        h
    })
    .await;
}

#[tokio::test]
async fn bulk_of_a_thousand() {
    each_backend(|h| async move {
        let many: Vec<Value> = (0..1000)
            .map(|i| json!({"destinationUrl": format!("https://x.example.com/{i}")}))
            .collect();
        let r = h
            .admin("POST", "/api/v1/links/bulk", Some(Value::Array(many)))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["succeeded"], 1000);
        assert_eq!(h.link_count().await, 1000);
        h
    })
    .await;
}

#[tokio::test]
async fn openapi_and_docs_are_public() {
    each_backend(|h| async move {
        let r = h.call("GET", "/api/openapi.json", None, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json["openapi"], "3.1.0");
        assert!(r.json["paths"]["/api/v1/links/{id}"]["patch"].is_object());
        assert!(r.request_id().starts_with("req_"));
        // Every operation with a JSON body documents the body errors every body can get.
        for (path, item) in r.json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(
                            op["responses"][status].is_object(),
                            "{method} {path}: {status}"
                        );
                    }
                }
            }
        }
        // An operation's own 403 is kept (the certificate renewal names the operator's team).
        let renew = &r.json["paths"]["/api/v1/domains/{id}/certificate/renew"]["post"];
        assert!(
            renew["responses"]["403"]["description"]
                .as_str()
                .unwrap()
                .contains("operator"),
            "{renew}"
        );
        let r = h.call("GET", "/docs", None, None).await;
        assert_eq!(r.status, 200);
        let html = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(html.contains("/api/openapi.json") && html.contains("<script>"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external assets"
        );
        h
    })
    .await;
}
