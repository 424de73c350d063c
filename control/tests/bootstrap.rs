//! Bootstrap, keys and the snapshot loader, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::each_backend;
use serde_json::json;
use sling_control::db;
use sling_shared::feed::ChangeOp;

#[tokio::test]
async fn bootstrap_is_idempotent_and_follows_the_default_host() {
    each_backend(|h| async move {
        // Every migration was applied (0002 adds the list indexes).
        use sqlx::Row;
        let applied: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM _sqlx_migrations")
            .fetch_one(&h.db.pool)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert!(applied >= 2, "{applied}");

        // Second start: nothing new, no key.
        let seq = h.feed_head().await;
        assert_eq!(
            db::teams::bootstrap(&h.db, "localhost").await.unwrap(),
            None
        );
        assert_eq!(h.feed_head().await, seq);

        // The default host changed: the row is renamed and proxies are told.
        let l = h
            .create(json!({"destinationUrl": "https://example.com/", "slug": "moved"}))
            .await;
        let seq = h.feed_head().await;
        assert_eq!(db::teams::bootstrap(&h.db, "Sho.RT").await.unwrap(), None);
        let ops = h.changes_after(seq).await;
        assert_eq!(
            ops[0],
            ChangeOp::DeleteDomain {
                host: "localhost".into()
            }
        );
        assert!(matches!(&ops[1], ChangeOp::UpsertDomain { host, .. } if host == "sho.rt"));
        let got = h
            .admin(
                "GET",
                &format!("/api/v1/links/{}", l["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(got.data()["domain"], "sho.rt");

        // Keys: find_or_create_team by name or id, unknown scopes refused.
        let t = db::teams::find_or_create_team(&h.db, "ops").await.unwrap();
        assert_eq!(
            db::teams::find_or_create_team(&h.db, "ops").await.unwrap(),
            t
        );
        assert_eq!(db::teams::find_or_create_team(&h.db, &t).await.unwrap(), t);
        assert!(
            db::keys::create_key(&h.db, &t, "k", &["links:fly".into()], None)
                .await
                .is_err()
        );
        assert!(
            db::keys::create_key(&h.db, &t, "k", &[], None)
                .await
                .is_err()
        );
        assert!(
            db::keys::create_key(&h.db, "team_nope", "k", &["*".into()], None)
                .await
                .is_err()
        );
        let (kid, secret) = db::keys::create_key(&h.db, &t, "k", &["links:read".into()], None)
            .await
            .unwrap();
        assert!(secret.starts_with("sk_") && secret.len() == 43);
        let row = db::keys::find_by_prefix(&h.db, &secret[..12])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.id, kid);
        assert_ne!(row.secret_hash, secret);
        h
    })
    .await;
}

#[tokio::test]
async fn a_team_name_two_teams_share_is_refused_not_guessed_and_only_bootstraps_team_operates() {
    each_backend(|h| async move {
        let mut conn = h.db.pool.acquire().await.unwrap();
        assert!(db::teams::is_operator(&mut conn, &h.team_id).await.unwrap());
        drop(conn);
        // A second team renames itself `admin` (as `PATCH /account` lets it).
        let imposter = db::teams::create_team(&h.db, "someone").await.unwrap();
        assert!(
            db::teams::rename(&h.db, &imposter.id, "admin")
                .await
                .unwrap()
        );
        let mut conn = h.db.pool.acquire().await.unwrap();
        assert!(
            !db::teams::is_operator(&mut conn, &imposter.id)
                .await
                .unwrap()
        );
        assert!(
            !db::teams::is_operator(&mut conn, "team_nope")
                .await
                .unwrap()
        );
        drop(conn);

        // By name, the CLI's lookups refuse and name both ids; by id, each is found.
        for err in [
            db::teams::find(&h.db, "admin").await.unwrap_err(),
            db::teams::find_or_create_team(&h.db, "admin")
                .await
                .unwrap_err(),
        ] {
            let text = format!("{err:#}");
            assert!(
                text.contains(&h.team_id) && text.contains(&imposter.id),
                "{text}"
            );
        }
        assert_eq!(
            db::teams::find(&h.db, &imposter.id)
                .await
                .unwrap()
                .unwrap()
                .id,
            imposter.id
        );
        assert_eq!(
            db::teams::find_or_create_team(&h.db, &h.team_id)
                .await
                .unwrap(),
            h.team_id
        );
        // A unique name still resolves, and the teams are unchanged.
        assert_eq!(db::teams::find(&h.db, "nobody-else").await.unwrap(), None);
        assert_eq!(db::teams::list(&h.db).await.unwrap().len(), 2);
        h
    })
    .await;
}

#[tokio::test]
async fn snapshot_body_matches_the_feed() {
    each_backend(|h| async move {
        let a = h.create(json!({"destinationUrl": "https://a.example/", "slug": "a1", "password": "pw", "geoTargets": {"FR": "https://fr.example/"}})).await;
        h.create(json!({"destinationUrl": "https://b.example/", "slug": "b1", "active": false})).await;
        let body = db::snapshot::load_body(&h.db, "localhost").await.unwrap();
        assert_eq!(body.default_host, "localhost");
        assert_eq!(body.link_count(), 2);
        let d = &body.domains["localhost"];
        assert!(d.id.starts_with("dom_"));
        assert!(!d.links["b1"].active);
        // The snapshot's record is exactly what the feed carried for the same write.
        let feed = h.changes_after(0).await;
        let from_feed = feed
            .iter()
            .find_map(|op| match op {
                ChangeOp::UpsertLink { slug, link, .. } if slug == "a1" => Some(link.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(d.links["a1"], *from_feed);
        assert_eq!(from_feed.id, a["id"].as_str().unwrap());
        h
    })
    .await;
}

#[tokio::test]
async fn database_down_is_503() {
    each_backend(|h| async move {
        let key = h.key.clone();
        h.db.close().await;
        let r = h.call("GET", "/api/v1/links", Some(&key), None).await;
        r.assert_error(503, "UNAVAILABLE");
        // The key could not be looked up, so the anonymous budget is shown, as on every response.
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            assert!(r.headers.contains_key(name), "{name}: {:?}", r.headers);
        }
        assert!(
            !r.json.to_string().contains("pool"),
            "no internals leaked: {}",
            r.json
        );
        h
    })
    .await;
}
