//! Scopes on every route: for each row of the route table itself (so routes added later are
//! covered automatically), a key holding exactly the required scope gets past authorisation and
//! a key with an unrelated scope gets 403 FORBIDDEN. Plus wildcards, revocation (effective on the
//! next request), expiry, and no escalation through `POST /api-keys`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::each_backend;
use serde_json::json;
use sling_control::api::{Method, ROUTES};
use sling_control::db;

/// A concrete URI for a route path: every `{param}` becomes a value that matches nothing.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').unwrap() + i;
        out.push_str("does-not-exist");
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

/// A scope that grants nothing on `required`'s resource.
fn unrelated(required: &str) -> &'static str {
    if required.starts_with("qr:") {
        "galleries:read"
    } else {
        "qr:read"
    }
}

fn body_for(m: Method) -> Option<serde_json::Value> {
    matches!(m, Method::Post | Method::Put | Method::Patch).then(|| json!({}))
}

#[tokio::test]
async fn every_route_enforces_its_scope() {
    each_backend(|h| async move {
        let mut checked = 0;
        for r in ROUTES {
            let uri = concrete(r.path);
            let method = r.method.as_str().to_ascii_uppercase();
            let Some(scope) = r.scope else {
                // Public: no key needed.
                let res = h.call(&method, &uri, None, body_for(r.method)).await;
                assert!(
                    res.status != 401 && res.status != 403,
                    "{method} {uri} is public but answered {}",
                    res.status
                );
                continue;
            };
            let exact = h.key_with(&[scope]).await;
            let res = h
                .call(&method, &uri, Some(&exact), body_for(r.method))
                .await;
            assert!(
                res.status != 403 && res.status != 401,
                "{method} {} with exactly {scope}: {} {}",
                r.path,
                res.status,
                res.json
            );
            let resource = scope.split(':').next().unwrap();
            let wildcard = h.key_with(&[&format!("{resource}:*")]).await;
            let res = h
                .call(&method, &uri, Some(&wildcard), body_for(r.method))
                .await;
            assert!(res.status != 403, "{method} {} with {resource}:*", r.path);

            let other = h.key_with(&[unrelated(scope)]).await;
            let res = h
                .call(&method, &uri, Some(&other), body_for(r.method))
                .await;
            res.assert_error(403, "FORBIDDEN");
            assert!(
                res.json["error"]["details"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains(scope),
                "{}",
                res.json
            );
            // Without a key at all: 401.
            let res = h.call(&method, &uri, None, body_for(r.method)).await;
            res.assert_error(401, "UNAUTHORIZED");
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} scoped routes");
        h
    })
    .await;
}

#[tokio::test]
async fn read_and_write_account_scopes_are_split() {
    each_backend(|h| async move {
        let read = h.key_with(&["account:read"]).await;
        h.call("GET", "/api/v1/account", Some(&read), None)
            .await
            .status
            .is_success()
            .then_some(())
            .unwrap();
        let r = h
            .call(
                "PATCH",
                "/api/v1/account",
                Some(&read),
                Some(json!({"name": "x"})),
            )
            .await;
        r.assert_error(403, "FORBIDDEN");
        let write = h.key_with(&["account:write"]).await;
        let r = h.call("GET", "/api/v1/api-keys", Some(&write), None).await;
        r.assert_error(403, "FORBIDDEN");
        h
    })
    .await;
}

#[tokio::test]
async fn revocation_is_immediate_and_expired_keys_are_refused() {
    each_backend(|h| async move {
        // Minted through the API, used, revoked, refused on the very next request.
        let r = h
            .admin(
                "POST",
                "/api/v1/api-keys",
                Some(json!({"name": "ci", "scopes": ["links:read"]})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        let secret = r.data()["secret"].as_str().unwrap().to_owned();
        let id = r.data()["id"].as_str().unwrap().to_owned();
        assert_eq!(
            h.call("GET", "/api/v1/links", Some(&secret), None)
                .await
                .status,
            200
        );
        let r = h
            .admin("DELETE", &format!("/api/v1/api-keys/{id}"), None)
            .await;
        assert_eq!(r.status, 204);
        let r = h.call("GET", "/api/v1/links", Some(&secret), None).await;
        r.assert_error(401, "UNAUTHORIZED");
        // Revoking again: 404.
        let r = h
            .admin("DELETE", &format!("/api/v1/api-keys/{id}"), None)
            .await;
        r.assert_error(404, "NOT_FOUND");

        // A key that expired a second ago: 401; one that expires in an hour: fine.
        let now = db::now_ms();
        let scopes = vec!["*".to_owned()];
        let (_, expired) =
            db::keys::create_key(&h.db, &h.team_id, "old", &scopes, Some(now - 1000))
                .await
                .unwrap();
        let r = h.call("GET", "/api/v1/links", Some(&expired), None).await;
        r.assert_error(401, "UNAUTHORIZED");
        let (_, fresh) =
            db::keys::create_key(&h.db, &h.team_id, "new", &scopes, Some(now + 3_600_000))
                .await
                .unwrap();
        assert_eq!(
            h.call("GET", "/api/v1/links", Some(&fresh), None)
                .await
                .status,
            200
        );
        // Expiry in the past is refused at creation.
        let r = h
            .admin(
                "POST",
                "/api/v1/api-keys",
                Some(json!({"scopes": ["links:read"], "expiresAt": "2001-01-01T00:00:00Z"})),
            )
            .await;
        r.assert_error(400, "INVALID_REQUEST");
        h
    })
    .await;
}

#[tokio::test]
async fn keys_cannot_grant_more_than_they_hold() {
    each_backend(|h| async move {
        let acct = h.key_with(&["account:*", "links:read"]).await;
        for scopes in [json!(["*"]), json!(["links:write"]), json!(["links:*"])] {
            let r = h
                .call(
                    "POST",
                    "/api/v1/api-keys",
                    Some(&acct),
                    Some(json!({"scopes": scopes})),
                )
                .await;
            r.assert_error(403, "FORBIDDEN");
        }
        let r = h
            .call(
                "POST",
                "/api/v1/api-keys",
                Some(&acct),
                Some(json!({"scopes": ["links:read", "account:read"]})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        let r = h
            .call(
                "POST",
                "/api/v1/api-keys",
                Some(&acct),
                Some(json!({"scopes": ["links:fly"]})),
            )
            .await;
        r.assert_error(400, "INVALID_REQUEST");
        h
    })
    .await;
}
