//! The verified-key cache: a revocation through the API is effective on the very next request
//! even while the key is cached, and a revocation the cache cannot see (another replica, the CLI)
//! takes effect once the entry's TTL has passed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, Kind};
use serde_json::json;
use sling_control::db;

async fn with_cache(kind: Kind, ttl: Duration) -> Option<Harness> {
    Harness::new_with(kind, |c| c.key_cache_ttl = ttl).await
}

async fn scenario(kind: Kind) {
    let Some(h) = with_cache(kind, Duration::from_secs(60)).await else {
        return;
    };
    // A key made through the API, used once so it is cached, then revoked through the API.
    let made = h
        .admin(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "ci", "scopes": ["links:read"]})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.json);
    let (id, secret) = (
        made.data()["id"].as_str().unwrap().to_owned(),
        made.data()["secret"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        h.call("GET", "/api/v1/links", Some(&secret), None)
            .await
            .status,
        200
    );
    let revoked = h
        .admin("DELETE", &format!("/api/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(revoked.status, 204);
    h.call("GET", "/api/v1/links", Some(&secret), None)
        .await
        .assert_error(401, "UNAUTHORIZED");
    h.cleanup().await;

    // Revoked behind the cache's back: served from the cache until the TTL, refused after it.
    let ttl = Duration::from_millis(400);
    let h = with_cache(kind, ttl).await.unwrap();
    let key = h.key_with(&["links:read"]).await;
    assert_eq!(
        h.call("GET", "/api/v1/links", Some(&key), None)
            .await
            .status,
        200
    );
    assert!(db::keys::revoke_any(&h.db, &key[..12]).await.unwrap());
    assert_eq!(
        h.call("GET", "/api/v1/links", Some(&key), None)
            .await
            .status,
        200,
        "a cached key is trusted for up to the TTL"
    );
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    h.call("GET", "/api/v1/links", Some(&key), None)
        .await
        .assert_error(401, "UNAUTHORIZED");
    h.cleanup().await;
}

#[tokio::test]
async fn cached_keys_honour_revocation_sqlite() {
    scenario(Kind::Sqlite).await;
}

#[tokio::test]
async fn cached_keys_honour_revocation_postgres() {
    scenario(Kind::Postgres).await;
}
