//! Every error the links API can return, in the envelope with a matching request id, and
//! nothing stored changes because of a bad request. Also authentication, scopes and tenant
//! isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{Harness, each_backend};
use serde_json::{Value, json};

/// A snapshot of everything a bad request must not change.
async fn stored(h: &Harness) -> (Value, u64) {
    let r = h
        .admin("GET", "/api/v1/links?perPage=100&sort=slug&order=asc", None)
        .await;
    (r.json["data"].clone(), h.feed_head().await)
}

fn raw(
    method: &str,
    uri: &str,
    key: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).unwrap()
}

#[tokio::test]
async fn bad_bodies() {
    each_backend(|h| async move {
        let l = h.create(json!({"destinationUrl": "https://example.com/", "slug": "keep", "title": "kept"})).await;
        let id = l["id"].as_str().unwrap().to_owned();
        let key = h.key.clone();

        // Malformed JSON, trailing garbage, invalid UTF-8.
        for body in [&b"{"[..], b"{\"destinationUrl\": }", b"{} {}", b"[1,", b"", b"{\"destinationUrl\": \"https://e.com/\xff\"}"] {
            let r = h.send(raw("POST", "/api/v1/links", &key, Some("application/json"), body.to_vec())).await;
            r.assert_error(400, "INVALID_REQUEST");
        }
        // Wrong types point at the field.
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": 5}))).await;
        r.assert_error(400, "INVALID_REQUEST");
        assert_eq!(r.json["error"]["details"][0]["path"], json!(["destinationUrl"]));
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "tags": [1]}))).await;
        r.assert_error(400, "INVALID_REQUEST");
        assert_eq!(r.json["error"]["details"][0]["path"], json!(["tags", 0]));
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "clickLimit": 1e30}))).await;
        r.assert_error(400, "INVALID_REQUEST");
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "redirectType": 70000}))).await;
        r.assert_error(400, "INVALID_REQUEST");
        // Unknown field.
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "sneaky": true}))).await;
        r.assert_error(400, "INVALID_REQUEST");
        assert_eq!(r.json["error"]["details"][0]["path"], json!(["sneaky"]));
        h.admin("PATCH", &format!("/api/v1/links/{id}"), Some(json!({"clicks": 99}))).await.assert_error(400, "INVALID_REQUEST");
        // Not an object; missing destination.
        h.admin("POST", "/api/v1/links", Some(json!([1]))).await.assert_error(400, "INVALID_REQUEST");
        let r = h.admin("POST", "/api/v1/links", Some(json!({"slug": "nodest"}))).await;
        r.assert_error(400, "INVALID_REQUEST");
        assert_eq!(r.json["error"]["details"][0]["path"], json!(["destinationUrl"]));

        // Field rules.
        for (body, path) in [
            (json!({"tags": vec!["t"; 21]}), json!(["tags"])),
            (json!({"tags": ["x".repeat(51)]}), json!(["tags", 0])),
            (json!({"title": "x".repeat(201)}), json!(["title"])),
            (json!({"description": "x".repeat(1001)}), json!(["description"])),
            (json!({"externalId": "a\nb"}), json!(["externalId"])),
            (json!({"externalId": "x".repeat(201)}), json!(["externalId"])),
            (json!({"geoTargets": {"USA": "https://e.com"}}), json!(["geoTargets", "USA"])),
            (json!({"deviceTargets": {"watch": "https://e.com"}}), json!(["deviceTargets", "watch"])),
            (json!({"redirectType": 303}), json!(["redirectType"])),
            (json!({"clickLimit": 0}), json!(["clickLimit"])),
            (json!({"expiresAt": "2001-01-01T00:00:00Z"}), json!(["expiresAt"])),
            (json!({"expiresAt": "next tuesday"}), json!(["expiresAt"])),
            (json!({"password": ""}), json!(["password"])),
            (json!({"password": "x".repeat(129)}), json!(["password"])),
            (json!({"domain": "not a host"}), json!(["domain"])),
            (json!({"domain": "unknown.example"}), json!(["domain"])),
        ] {
            let mut b = body.clone();
            b["destinationUrl"] = json!("https://example.com/");
            let r = h.admin("POST", "/api/v1/links", Some(b)).await;
            r.assert_error(400, "INVALID_REQUEST");
            assert_eq!(r.json["error"]["details"][0]["path"], path, "{body}");
            // The same rules apply to updates.
            let r = h.admin("PATCH", &format!("/api/v1/links/{id}"), Some(body.clone())).await;
            r.assert_error(400, "INVALID_REQUEST");
        }

        // URLs.
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "ftp://example.com/",
            "/relative/path",
            "example.com",
            "https://example.com/\r\nSet-Cookie: x=1",
            "https://example.com/a\u{7}b",
            "https://example.com/\u{0}",
            "https://exa mple.com/",
            " https://example.com/",
            "https://user:pass@example.com/",
            "http://localhost:8080/keep",
            "https://LOCALHOST/x",
            &format!("https://example.com/{}", "a".repeat(2048)),
        ] {
            let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": bad}))).await;
            r.assert_error(400, "INVALID_URL");
            assert_eq!(r.json["error"]["details"][0]["path"], json!(["destinationUrl"]), "{bad:?}");
            h.admin("PATCH", &format!("/api/v1/links/{id}"), Some(json!({"destinationUrl": bad}))).await.assert_error(400, "INVALID_URL");
        }
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "geoTargets": {"US": "javascript:x"}}))).await;
        r.assert_error(400, "INVALID_URL");
        assert_eq!(r.json["error"]["details"][0]["path"], json!(["geoTargets", "US"]));
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "iosUrl": "http://localhost/x"}))).await;
        r.assert_error(400, "INVALID_URL");
        let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "expiredUrl": "data:,x"}))).await;
        r.assert_error(400, "INVALID_URL");

        // Slugs.
        for (slug, code) in [("a", "SLUG_INVALID"), ("has space", "SLUG_INVALID"), ("sl/ash", "SLUG_INVALID"), ("ünï", "SLUG_INVALID"), (&"x".repeat(101)[..], "SLUG_INVALID"), ("api", "SLUG_RESERVED"), ("Admin", "SLUG_RESERVED"), ("healthz", "SLUG_RESERVED")] {
            let r = h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "slug": slug}))).await;
            r.assert_error(400, code);
            assert_eq!(r.json["error"]["details"][0]["path"], json!(["slug"]));
            h.admin("PATCH", &format!("/api/v1/links/{id}"), Some(json!({"slug": slug}))).await.assert_error(400, code);
        }
        // Taken slug and external id.
        h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "slug": "keep"}))).await.assert_error(409, "SLUG_EXISTS");
        h.admin("PATCH", &format!("/api/v1/links/{id}"), Some(json!({"externalId": "ext-1"}))).await;
        let before = stored(&h).await;
        h.admin("POST", "/api/v1/links", Some(json!({"destinationUrl": "https://e.com", "externalId": "ext-1"}))).await.assert_error(409, "EXTERNAL_ID_EXISTS");

        // 415: missing or wrong content type.
        let r = h.send(raw("POST", "/api/v1/links", &key, None, r#"{"destinationUrl":"https://e.com"}"#)).await;
        r.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
        let r = h.send(raw("POST", "/api/v1/links", &key, Some("text/plain"), r#"{"destinationUrl":"https://e.com"}"#)).await;
        r.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
        let r = h.send(raw("PATCH", &format!("/api/v1/links/{id}"), &key, Some("application/x-www-form-urlencoded"), "title=x")).await;
        r.assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
        // `application/json; charset=utf-8` is fine.
        let r = h.send(raw("POST", "/api/v1/links", &key, Some("application/json; charset=utf-8"), "{}")).await;
        r.assert_error(400, "INVALID_REQUEST");

        // 413: larger than max_body_bytes (2 MiB in tests), with and without Content-Length.
        let big = format!(r#"{{"destinationUrl":"https://e.com","title":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
        let r = h.send(raw("POST", "/api/v1/links", &key, Some("application/json"), big.clone())).await;
        r.assert_error(413, "PAYLOAD_TOO_LARGE");
        let stream = Body::from_stream(futures_util::stream::iter(
            (0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 100 * 1024]))),
        ));
        let r = h.send(raw("POST", "/api/v1/links/bulk", &key, Some("application/json"), stream)).await;
        r.assert_error(413, "PAYLOAD_TOO_LARGE");

        assert_eq!(stored(&h).await, before);
        h
    })
    .await;
}

#[tokio::test]
async fn bad_queries_routes_and_methods() {
    each_backend(|h| async move {
        h.create(json!({"destinationUrl": "https://example.com/", "slug": "keep"}))
            .await;
        let before = stored(&h).await;
        let huge = "9".repeat(5000);
        for q in [
            "perPage=101".to_owned(),
            "perPage=0".into(),
            "page=0".into(),
            "page=-1".into(),
            "page=abc".into(),
            format!("page={huge}"),
            "page=99999999999999999999".into(),
            "active=maybe".into(),
            "sort=destination".into(),
            "order=sideways".into(),
            format!("search={huge}"),
            format!("tag={huge}"),
            "domain=bad%20host".into(),
        ] {
            let r = h.admin("GET", &format!("/api/v1/links?{q}"), None).await;
            r.assert_error(400, "INVALID_REQUEST");
        }
        // Unknown routes under /api and wrong methods, in the envelope.
        h.admin("GET", "/api/v1/nope", None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.admin("GET", "/api/v2/links", None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.admin("GET", "/api/v1/links/x/y/z", None)
            .await
            .assert_error(404, "NOT_FOUND");
        let r = h.admin("DELETE", "/api/v1/links", None).await;
        r.assert_error(405, "METHOD_NOT_ALLOWED");
        h.admin("GET", "/api/v1/links/abc/enable", None)
            .await
            .assert_error(405, "METHOD_NOT_ALLOWED");
        h.admin("POST", "/api/openapi.json", None)
            .await
            .assert_error(405, "METHOD_NOT_ALLOWED");
        // Unknown ids.
        for (m, p) in [
            ("GET", "/api/v1/links/lnk_nope"),
            ("DELETE", "/api/v1/links/lnk_nope"),
            ("POST", "/api/v1/links/lnk_nope/archive"),
        ] {
            h.admin(m, p, None).await.assert_error(404, "NOT_FOUND");
        }
        h.admin(
            "PATCH",
            "/api/v1/links/lnk_nope",
            Some(json!({"title": "x"})),
        )
        .await
        .assert_error(404, "NOT_FOUND");
        assert_eq!(stored(&h).await, before);
        h
    })
    .await;
}

#[tokio::test]
async fn request_ids_on_every_response() {
    each_backend(|h| async move {
        let a = h.admin("GET", "/api/v1/links", None).await;
        let b = h.admin("GET", "/api/v1/links", None).await;
        assert_eq!(a.status, 200);
        assert!(a.request_id().starts_with("req_") && a.request_id().len() > 10);
        assert_ne!(a.request_id(), b.request_id());
        let e = h.call("GET", "/api/v1/links", None, None).await;
        e.assert_error(401, "UNAUTHORIZED");
        h
    })
    .await;
}

#[tokio::test]
async fn authentication() {
    each_backend(|h| async move {
        let l = h
            .create(json!({"destinationUrl": "https://example.com/"}))
            .await;
        let uri = format!("/api/v1/links/{}", l["id"].as_str().unwrap());
        let key = h.key.clone();

        // Three ways to present a key.
        assert_eq!(h.call("GET", &uri, Some(&key), None).await.status, 200);
        let r = h
            .send(
                Request::get(&uri)
                    .header("x-api-key", &key)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, 200);
        let r = h
            .send(
                Request::get(format!("{uri}?key={key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, 200);
        let r = h
            .send(
                Request::get(format!("/api/v1/links?page=1&key={key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);

        // Missing, malformed, unknown, wrong secret.
        h.call("GET", &uri, None, None)
            .await
            .assert_error(401, "UNAUTHORIZED");
        h.call("GET", &uri, Some("nope"), None)
            .await
            .assert_error(401, "UNAUTHORIZED");
        let wrong = format!("{}{}", &key[..12], "A".repeat(31));
        h.call("GET", &uri, Some(&wrong), None)
            .await
            .assert_error(401, "UNAUTHORIZED");
        let unknown = format!("sk_{}", "B".repeat(40));
        h.call("GET", &uri, Some(&unknown), None)
            .await
            .assert_error(401, "UNAUTHORIZED");
        let r = h
            .send(
                Request::get(&uri)
                    .header("authorization", format!("Basic {key}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        r.assert_error(401, "UNAUTHORIZED");
        let r = h
            .send(
                Request::get(&uri)
                    .header("x-api-key", "sk_bad")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        r.assert_error(401, "UNAUTHORIZED");
        // 401 comes before body checks.
        h.call("POST", "/api/v1/links", None, Some(json!({"x": 1})))
            .await
            .assert_error(401, "UNAUTHORIZED");

        // Revoked and expired keys.
        let k2 = h.key_with(&["*"]).await;
        assert_eq!(h.call("GET", &uri, Some(&k2), None).await.status, 200);
        let kid = sling_control::db::keys::find_by_prefix(&h.db, &k2[..12])
            .await
            .unwrap()
            .unwrap()
            .id;
        assert!(
            sling_control::db::keys::revoke(&h.db, &h.team_id, &kid)
                .await
                .unwrap()
        );
        h.call("GET", &uri, Some(&k2), None)
            .await
            .assert_error(401, "UNAUTHORIZED");
        let (_, k3) = sling_control::db::keys::create_key(
            &h.db,
            &h.team_id,
            "old",
            &["*".to_owned()],
            Some(1),
        )
        .await
        .unwrap();
        h.call("GET", &uri, Some(&k3), None)
            .await
            .assert_error(401, "UNAUTHORIZED");

        // last_used_at is recorded (off the request path: poll briefly).
        let mut used = false;
        for _ in 0..50 {
            let k = sling_control::db::keys::find_by_prefix(&h.db, &key[..12])
                .await
                .unwrap()
                .unwrap();
            if k.last_used_at.is_some() {
                used = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(used);
        h
    })
    .await;
}

#[tokio::test]
async fn scopes() {
    each_backend(|h| async move {
        let l = h
            .create(json!({"destinationUrl": "https://example.com/"}))
            .await;
        let uri = format!("/api/v1/links/{}", l["id"].as_str().unwrap());
        let before = stored(&h).await;
        let read = h.key_with(&["links:read"]).await;
        assert_eq!(h.call("GET", &uri, Some(&read), None).await.status, 200);
        assert_eq!(
            h.call("GET", "/api/v1/links", Some(&read), None)
                .await
                .status,
            200
        );
        let r = h
            .call(
                "POST",
                "/api/v1/links",
                Some(&read),
                Some(json!({"destinationUrl": "https://e.com"})),
            )
            .await;
        r.assert_error(403, "FORBIDDEN");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("links:write")
        );
        // The scope check comes before the body is read.
        h.call(
            "POST",
            "/api/v1/links",
            Some(&read),
            Some(json!({"bogus": 1})),
        )
        .await
        .assert_error(403, "FORBIDDEN");
        h.call("PATCH", &uri, Some(&read), Some(json!({"title": "x"})))
            .await
            .assert_error(403, "FORBIDDEN");
        h.call("POST", &format!("{uri}/disable"), Some(&read), None)
            .await
            .assert_error(403, "FORBIDDEN");
        h.call("POST", "/api/v1/links/bulk", Some(&read), Some(json!([])))
            .await
            .assert_error(403, "FORBIDDEN");
        let r = h.call("DELETE", &uri, Some(&read), None).await;
        r.assert_error(403, "FORBIDDEN");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("links:delete")
        );

        let write = h.key_with(&["links:write"]).await;
        h.call("GET", &uri, Some(&write), None)
            .await
            .assert_error(403, "FORBIDDEN");
        h.call("DELETE", &uri, Some(&write), None)
            .await
            .assert_error(403, "FORBIDDEN");
        let other = h.key_with(&["qr:*", "stats:read"]).await;
        h.call("GET", &uri, Some(&other), None)
            .await
            .assert_error(403, "FORBIDDEN");
        assert_eq!(stored(&h).await, before);

        let all = h.key_with(&["links:*"]).await;
        assert_eq!(
            h.call("PATCH", &uri, Some(&all), Some(json!({"title": "x"})))
                .await
                .status,
            200
        );
        assert_eq!(h.call("DELETE", &uri, Some(&all), None).await.status, 204);
        h
    })
    .await;
}

#[tokio::test]
async fn tenant_isolation() {
    each_backend(|h| async move {
        let l = h.create(json!({"destinationUrl": "https://example.com/", "slug": "team-a", "externalId": "shared-ext"})).await;
        let id = l["id"].as_str().unwrap().to_owned();
        let uri = format!("/api/v1/links/{id}");
        let before = stored(&h).await;
        let (_, b) = h.team_key("team-b", &["*"]).await;
        let b = Some(b.as_str());

        h.call("GET", &uri, b, None).await.assert_error(404, "NOT_FOUND");
        h.call("GET", "/api/v1/links/external/shared-ext", b, None).await.assert_error(404, "NOT_FOUND");
        h.call("PATCH", &uri, b, Some(json!({"title": "pwned"}))).await.assert_error(404, "NOT_FOUND");
        h.call("PUT", &uri, b, Some(json!({"destinationUrl": "https://evil.example/"}))).await.assert_error(404, "NOT_FOUND");
        h.call("DELETE", &uri, b, None).await.assert_error(404, "NOT_FOUND");
        for action in ["enable", "disable", "archive", "unarchive"] {
            h.call("POST", &format!("{uri}/{action}"), b, None).await.assert_error(404, "NOT_FOUND");
        }
        let list = h.call("GET", "/api/v1/links?search=team-a", b, None).await;
        assert_eq!(list.status, 200);
        assert_eq!(list.data()["pagination"]["total"], 0);
        assert_eq!(h.call("GET", "/api/v1/links", b, None).await.data()["items"], json!([]));
        assert_eq!(stored(&h).await, before);

        // Team B may use the same external id; slugs stay unique per domain across teams.
        let r = h.call("POST", "/api/v1/links", b, Some(json!({"destinationUrl": "https://b.example/", "externalId": "shared-ext"}))).await;
        assert_eq!(r.status, 201, "{}", r.json);
        let r = h.call("POST", "/api/v1/links", b, Some(json!({"destinationUrl": "https://b.example/", "slug": "team-a"}))).await;
        r.assert_error(409, "SLUG_EXISTS");
        let a_ext = h.admin("GET", "/api/v1/links/external/shared-ext", None).await;
        assert_eq!(a_ext.data()["id"], id.as_str());
        h
    })
    .await;
}
