//! The account API: the team (GET/PATCH /account), its keys (list without secrets, create with
//! the secret shown once), /usage, and the API call log of plans that keep one (written in the
//! background, never with the key, filterable).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Harness, each_backend};
use serde_json::json;
use sling_control::db;

async fn team_on(h: &Harness, name: &str, plan: &str) -> (String, String) {
    let team = db::teams::create_team_with_plan(&h.db, name, plan)
        .await
        .unwrap();
    let key = db::keys::create_key(&h.db, &team.id, "t", &["*".to_owned()], None)
        .await
        .unwrap()
        .1;
    (team.id, key)
}

#[tokio::test]
async fn account_get_and_rename() {
    each_backend(|h| async move {
        let r = h.admin("GET", "/api/v1/account", None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["id"], h.team_id.as_str());
        assert_eq!(r.data()["name"], "admin");
        // The bootstrap team runs the instance: unlimited.
        assert_eq!(r.data()["plan"], "unlimited");
        assert!(r.data()["createdAt"].as_str().unwrap().ends_with('Z'));

        let r = h
            .admin("PATCH", "/api/v1/account", Some(json!({"name": " Ops "})))
            .await;
        assert_eq!(r.data()["name"], "Ops");
        for bad in [json!({"name": ""}), json!({"name": "x".repeat(101)})] {
            h.admin("PATCH", "/api/v1/account", Some(bad))
                .await
                .assert_error(400, "INVALID_REQUEST");
        }
        h.admin("PATCH", "/api/v1/account", Some(json!({"plan": "pro"})))
            .await
            .assert_error(400, "INVALID_REQUEST");
        // Another team sees its own account only.
        let (other, key) = team_on(&h, "other", "pro").await;
        let r = h.call("GET", "/api/v1/account", Some(&key), None).await;
        assert_eq!(r.data()["id"], other.as_str());
        assert_eq!(r.data()["plan"], "pro");
        h
    })
    .await;
}

#[tokio::test]
async fn keys_are_listed_without_secrets() {
    each_backend(|h| async move {
        let r = h
            .admin(
                "POST",
                "/api/v1/api-keys",
                Some(json!({"name": "deploy", "scopes": ["links:read", "links:write"], "expiresInDays": 30})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        let secret = r.data()["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("sk_") && secret.len() == 43);
        assert_eq!(r.data()["prefix"], &secret[..12]);
        assert_eq!(r.data()["scopes"], json!(["links:read", "links:write"]));
        assert!(r.data()["expiresAt"].as_str().is_some());
        let id = r.data()["id"].as_str().unwrap().to_owned();

        // Used once, so lastUsedAt gets set (off the request path).
        assert_eq!(
            h.call("GET", "/api/v1/links", Some(&secret), None).await.status,
            200
        );
        let mut listed = serde_json::Value::Null;
        for _ in 0..50 {
            let r = h.admin("GET", "/api/v1/api-keys", None).await;
            assert_eq!(r.status, 200);
            listed = r.data()["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["id"] == id.as_str())
                .cloned()
                .unwrap();
            if !listed["lastUsedAt"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(listed["lastUsedAt"].is_string(), "{listed}");
        let text = listed.to_string();
        assert!(!text.contains(&secret) && listed.get("secret").is_none());
        assert!(listed.get("secretHash").is_none());
        assert_eq!(listed["name"], "deploy");

        // Revoked keys leave the list; another team's key cannot be revoked (404).
        let (_, other) = team_on(&h, "other", "free").await;
        h.call("DELETE", &format!("/api/v1/api-keys/{id}"), Some(&other), None)
            .await
            .assert_error(404, "NOT_FOUND");
        assert_eq!(
            h.admin("DELETE", &format!("/api/v1/api-keys/{id}"), None)
                .await
                .status,
            204
        );
        let r = h.admin("GET", "/api/v1/api-keys", None).await;
        assert!(
            !r.data()["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["id"] == id.as_str())
        );
        h
    })
    .await;
}

#[tokio::test]
async fn plans_gate_domains() {
    each_backend(|h| async move {
        // A premium domain: shared (no team), verified, not the default.
        sqlx::query(
            "INSERT INTO domains (id, team_id, host, is_default, verified, created_at, updated_at) \
             VALUES ('dom_premium', NULL, 'kfc.example', 0, 1, 0, 0)",
        )
        .execute(&h.db.pool)
        .await
        .unwrap();
        let body = json!({"destinationUrl": "https://example.com", "domain": "kfc.example"});
        let (_, free) = team_on(&h, "f", "free").await;
        let r = h
            .call("POST", "/api/v1/links", Some(&free), Some(body.clone()))
            .await;
        r.assert_error(403, "DOMAIN_NOT_ALLOWED");
        let (_, pro) = team_on(&h, "p", "pro").await;
        let r = h
            .call("POST", "/api/v1/links", Some(&pro), Some(body))
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        h
    })
    .await;
}

async fn logs(h: &Harness, key: &str, query: &str, want: usize) -> serde_json::Value {
    for _ in 0..100 {
        let r = h
            .call("GET", &format!("/api/v1/api-logs{query}"), Some(key), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        if r.data()["pagination"]["total"].as_u64().unwrap() as usize >= want {
            return r.data().clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("API logs never reached {want} entries for {query}");
}

#[tokio::test]
async fn api_calls_are_logged_for_plans_that_keep_them() {
    each_backend(|h| async move {
        let (_, key) = team_on(&h, "logged", "pro").await;
        let prefix = &key[..12];
        // A call with the key in the query string, one failing, one write.
        let r = h
            .call(
                "GET",
                &format!("/api/v1/links?key={key}&page=1"),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        h.call("GET", "/api/v1/links/missing", Some(&key), None)
            .await
            .assert_error(404, "NOT_FOUND");
        let r = h
            .call(
                "POST",
                "/api/v1/links",
                Some(&key),
                Some(json!({"destinationUrl": "https://example.com", "password": "hunter2"})),
            )
            .await;
        assert_eq!(r.status, 201);

        let all = logs(&h, &key, "", 3).await;
        let items = all["items"].as_array().unwrap();
        let text = all.to_string();
        assert!(!text.contains(&key), "the key leaked into the logs");
        assert!(!text.contains("hunter2"), "a body leaked into the logs");
        let first = items
            .iter()
            .find(|e| e["path"] == "/api/v1/links?page=1")
            .unwrap();
        assert_eq!(first["method"], "GET");
        assert_eq!(first["status"], 200);
        assert_eq!(first["keyPrefix"], prefix);
        assert!(first["latencyMs"].as_f64().unwrap() >= 0.0);
        assert!(first["createdAt"].as_str().unwrap().ends_with('Z'));

        let only_404 = logs(&h, &key, "?status=404", 1).await;
        assert_eq!(only_404["pagination"]["total"], 1);
        assert_eq!(only_404["items"][0]["path"], "/api/v1/links/missing");
        let posts = logs(&h, &key, "?method=post", 1).await;
        assert_eq!(posts["items"][0]["status"], 201);
        let by_path = logs(&h, &key, "?path=/api/v1/links/m", 1).await;
        assert_eq!(by_path["pagination"]["total"], 1);
        let r = h
            .call(
                "GET",
                "/api/v1/api-logs?from=2999-01-01T00:00:00Z",
                Some(&key),
                None,
            )
            .await;
        assert_eq!(r.data()["pagination"]["total"], 0);
        let page = logs(&h, &key, "?perPage=1&page=2", 3).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert!(page["pagination"]["totalPages"].as_u64().unwrap() >= 3);
        h.call("GET", "/api/v1/api-logs?from=yesterday", Some(&key), None)
            .await
            .assert_error(400, "INVALID_REQUEST");

        // Free plans keep no logs.
        let (_, free) = team_on(&h, "unlogged", "free").await;
        h.call("GET", "/api/v1/links", Some(&free), None).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = h.call("GET", "/api/v1/api-logs", Some(&free), None).await;
        assert_eq!(r.data()["pagination"]["total"], 0);
        let u = h.call("GET", "/api/v1/usage", Some(&free), None).await;
        assert_eq!(u.data()["apiLogs"]["enabled"], false);

        // Retention: rows past the plan's 30 days are pruned, recent ones kept.
        sqlx::query("UPDATE api_logs SET created_at = 0 WHERE status = 404")
            .execute(&h.db.pool)
            .await
            .unwrap();
        let pruned = sling_control::api_logs::prune(&h.state).await.unwrap();
        assert_eq!(pruned, 1);
        let after = logs(&h, &key, "", 1).await;
        assert!(
            after["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["status"] != 404)
        );
        h
    })
    .await;
}

#[tokio::test]
async fn keys_and_domains_list_in_pages() {
    each_backend(|h| async move {
        // The bootstrap key and 24 more: two pages of 20, newest first, none twice.
        for _ in 0..24 {
            h.key_with(&["links:read"]).await;
        }
        let mut seen = std::collections::HashSet::new();
        for (page, len) in [(1, 20), (2, 5), (3, 0)] {
            let r = h
                .admin("GET", &format!("/api/v1/api-keys?page={page}"), None)
                .await;
            assert_eq!(r.status, 200, "{}", r.json);
            let p = &r.data()["pagination"];
            assert_eq!(p["total"], 25);
            assert_eq!(p["totalPages"], 2);
            assert_eq!(p["perPage"], 20);
            let items = r.data()["items"].as_array().unwrap();
            assert_eq!(items.len(), len, "page {page}");
            for k in items {
                assert!(seen.insert(k["id"].as_str().unwrap().to_owned()));
            }
        }
        let r = h.admin("GET", "/api/v1/api-keys?perPage=100", None).await;
        assert_eq!(r.data()["items"].as_array().unwrap().len(), 25);
        for bad in ["page=0", "perPage=0", "perPage=101", "page=x"] {
            h.admin("GET", &format!("/api/v1/api-keys?{bad}"), None)
                .await
                .assert_error(400, "INVALID_REQUEST");
            h.admin("GET", &format!("/api/v1/domains?{bad}"), None)
                .await
                .assert_error(400, "INVALID_REQUEST");
        }

        // Domains: the default one alone, on one page.
        let r = h.admin("GET", "/api/v1/domains?perPage=1", None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["pagination"]["total"], 1);
        assert_eq!(r.data()["items"][0]["isDefault"], true);
        let r = h
            .admin("GET", "/api/v1/domains?page=2&perPage=1", None)
            .await;
        assert_eq!(r.data()["items"].as_array().unwrap().len(), 0);
        h
    })
    .await;
}
