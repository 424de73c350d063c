//! Snapshot publishing: after the first full read, the publisher builds each snapshot from the
//! previous body (kept in memory) plus the change feed. Whatever the API did in between, that
//! snapshot must equal one read from the database in full. SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, each_backend};
use serde_json::{Value, json};
use sling_control::db;
use sling_control::publish::{Build, Published, publish_once};
use sling_shared::snapshot::SnapshotBody;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// The body of a published file, read back.
fn read_back(p: &Published) -> SnapshotBody {
    let bytes = std::fs::read(&p.path).unwrap();
    let (header, body) = sling_shared::snapshot::decode(&bytes).unwrap();
    assert_eq!(header.feed_seq, p.seq);
    body
}

async fn full_read(h: &Harness) -> SnapshotBody {
    db::snapshot::load_body(&h.db, &h.state.config.default_domain)
        .await
        .unwrap()
}

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

/// Every kind of link and domain write the API has, so each feed op is applied at least once.
async fn write_everything(h: &Harness, links: &[String], default_domain: &str) {
    let link = |i: usize| format!("/api/v1/links/{}", links[i]);
    ok(
        h,
        "PATCH",
        &link(0),
        Some(json!({"destinationUrl": "https://example.com/changed", "utmSource": "feed"})),
    )
    .await;
    ok(h, "PATCH", &link(1), Some(json!({"slug": "renamed"}))).await;
    ok(h, "DELETE", &link(2), None).await;
    ok(h, "POST", &format!("{}/archive", link(3)), None).await;
    ok(
        h,
        "PATCH",
        &link(4),
        Some(json!({"active": false, "clickLimit": 9, "expiresAt": "2030-01-01T00:00:00Z"})),
    )
    .await;
    ok(
        h,
        "PATCH",
        &link(5),
        Some(json!({"password": "pw-123456", "geoTargets": {"FR": "https://fr.example/"}})),
    )
    .await;
    // Deleted and created again under the same slug.
    let slug = ok(h, "GET", &link(6), None).await["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(h, "DELETE", &link(6), None).await;
    h.create(json!({"destinationUrl": "https://example.com/again", "slug": slug}))
        .await;
    ok(
        h,
        "POST",
        "/api/v1/links/bulk",
        Some(json!({"links": (0..25)
        .map(|i| json!({"destinationUrl": format!("https://example.com/bulk/{i}")}))
        .collect::<Vec<_>>()})),
    )
    .await;

    // Galleries: published, published then moved, published then taken down.
    let one = id(&ok(
        h,
        "POST",
        "/api/v1/galleries",
        Some(json!({"handle": "bio-one", "title": "One", "publish": true,
            "items": [{"type": "link", "title": "A", "url": "https://example.com/a"}]})),
    )
    .await);
    let two = id(&ok(
        h,
        "POST",
        "/api/v1/galleries",
        Some(json!({"handle": "bio-two", "title": "Two", "publish": true})),
    )
    .await);
    ok(
        h,
        "PATCH",
        &format!("/api/v1/galleries/{one}"),
        Some(json!({"handle": "bio-moved"})),
    )
    .await;
    ok(
        h,
        "POST",
        &format!("/api/v1/galleries/{two}/unpublish"),
        None,
    )
    .await;
    ok(
        h,
        "POST",
        "/api/v1/galleries",
        Some(json!({"handle": "bio-three", "title": "Three", "publish": true})),
    )
    .await;

    let domain = format!("/api/v1/domains/{default_domain}");
    ok(
        h,
        "PATCH",
        &domain,
        Some(json!({"rootRedirect": "https://example.com/home",
        "pages": {"gone": {"title": "Gone", "message": "No longer here."}}})),
    )
    .await;
    let kept = id(&ok(
        h,
        "POST",
        "/api/v1/domains",
        Some(json!({"host": "kept.example"})),
    )
    .await);
    ok(
        h,
        "PATCH",
        &format!("/api/v1/domains/{kept}"),
        Some(json!({"notFoundRedirect": "https://example.com/nf"})),
    )
    .await;
    let gone = id(&ok(
        h,
        "POST",
        "/api/v1/domains",
        Some(json!({"host": "gone.example"})),
    )
    .await);
    ok(h, "DELETE", &format!("/api/v1/domains/{gone}"), None).await;
}

#[tokio::test]
async fn an_incremental_snapshot_equals_a_full_read() {
    each_backend(|h| async move {
        let mut links = Vec::new();
        for i in 0..10 {
            links.push(id(&h
                .create(json!({"destinationUrl": format!("https://example.com/{i}")}))
                .await));
        }
        let first = publish_once(&h.state, None).await.unwrap();
        assert_eq!(first.build, Build::Full);
        assert_eq!(read_back(&first), full_read(&h).await);

        let default_domain = id(&ok(&h, "GET", "/api/v1/domains", None).await["items"][0]);
        write_everything(&h, &links, &default_domain).await;
        let written = h.changes_after(first.seq).await.len();
        let second = publish_once(&h.state, Some(first)).await.unwrap();
        assert_eq!(second.build, Build::Incremental { changes: written });
        assert_eq!(second.seq, h.feed_head().await);
        let (built, full) = (read_back(&second), full_read(&h).await);
        assert_eq!(built.link_count(), 10 - 2 + 1 + 25);
        let mut pages: Vec<&String> = built.domains["localhost"].bio_pages.keys().collect();
        pages.sort();
        assert_eq!(pages, ["bio-moved", "bio-three"]);
        assert_eq!(built, full);

        // The feed pruned past the previous file (another replica did it): a full read instead.
        h.create(json!({"destinationUrl": "https://example.com/late/1"}))
            .await;
        h.create(json!({"destinationUrl": "https://example.com/late/2"}))
            .await;
        sqlx::query("DELETE FROM changes WHERE seq <= $1")
            .bind((second.seq + 1) as i64)
            .execute(&h.db.pool)
            .await
            .unwrap();
        let third = publish_once(&h.state, Some(second)).await.unwrap();
        assert_eq!(third.build, Build::Full);
        assert_eq!(read_back(&third), full_read(&h).await);

        // The previous file is gone from disk: the build starts from the body in memory and
        // never needs the file.
        h.create(json!({"destinationUrl": "https://example.com/late/3"}))
            .await;
        std::fs::remove_file(&third.path).unwrap();
        let fourth = publish_once(&h.state, Some(third)).await.unwrap();
        assert_eq!(fourth.build, Build::Incremental { changes: 1 });
        assert_eq!(read_back(&fourth), full_read(&h).await);

        // No previous publication (the last one failed): a full read.
        h.create(json!({"destinationUrl": "https://example.com/late/4"}))
            .await;
        let fifth = publish_once(&h.state, None).await.unwrap();
        assert_eq!(fifth.build, Build::Full);
        assert_eq!(read_back(&fifth), full_read(&h).await);
        h
    })
    .await;
}

/// The snapshot endpoint streams the newest file in chunks: a file of several chunks arrives
/// byte for byte, with its length and sequence in the headers, only with the fleet token, and
/// `newer_than` at or past it answers 304.
#[tokio::test]
async fn the_snapshot_endpoint_serves_the_newest_file_whole() {
    each_backend(|h| async move {
        let mut body = SnapshotBody::new("localhost");
        for i in 0..3_000 {
            body.insert_link(
                "localhost",
                format!("s{i}"),
                sling_shared::link::LinkRecord::plain(
                    format!("lnk_{i}"),
                    format!("https://example.com/a/fairly/long/path/{i}"),
                ),
            );
        }
        let bytes = sling_shared::snapshot::encode(&body, 7, 0).unwrap();
        assert!(bytes.len() > 4 * 64 * 1024, "{} bytes", bytes.len());
        let dir = &h.state.config.snapshot_dir;
        sling_shared::snapshot::write_atomic(dir, 7, &bytes).unwrap();
        sling_shared::snapshot::write_atomic(dir, 3, b"older").unwrap();

        let path = sling_shared::feed::SNAPSHOT_PATH;
        assert_eq!(h.call("GET", path, None, None).await.status, 401);
        let r = h.call("GET", path, Some("test-fleet-token"), None).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers["content-length"].to_str().unwrap(),
            bytes.len().to_string()
        );
        assert_eq!(
            r.headers[sling_shared::feed::SNAPSHOT_SEQ_HEADER]
                .to_str()
                .unwrap(),
            "7"
        );
        assert!(r.body.as_ref() == bytes.as_slice(), "body differs");
        let uri = format!("{path}?newer_than=7");
        let r = h.call("GET", &uri, Some("test-fleet-token"), None).await;
        assert_eq!(r.status, 304);
        h
    })
    .await;
}

/// Snapshot files are written without an fsync, so after a power loss the newest may be cut
/// short. At start the publisher deletes it rather than taking it as published (which would serve
/// it to proxies and, its sequence being past the feed head, never publish again), and publishes
/// from the database.
#[tokio::test]
async fn at_start_a_damaged_newest_file_is_deleted_and_republished() {
    each_backend(|h| async move {
        for i in 0..3 {
            h.create(json!({"destinationUrl": format!("https://example.com/{i}")}))
                .await;
        }
        let head = db::changes::head(&h.db).await.unwrap();
        assert!(head >= 3, "head {head}");
        let dir = h.state.config.snapshot_dir.clone();
        let older = sling_shared::snapshot::encode(&SnapshotBody::new("localhost"), 1, 0).unwrap();
        sling_shared::snapshot::write_atomic(&dir, 1, &older).unwrap();
        // Far past the head: a whole file with this sequence would stop publishing altogether.
        let torn = sling_shared::snapshot::encode(&full_read(&h).await, 1_000_000, 0).unwrap();
        let torn_path = dir.join(sling_shared::snapshot::file_name(1_000_000));
        std::fs::write(&torn_path, &torn[..torn.len() - 100]).unwrap();

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let publisher = tokio::spawn(sling_control::publish::run(h.state.clone(), stopped));
        let mut seq = h.state.snapshot_seq.subscribe();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            seq.wait_for(|s| *s == head),
        )
        .await
        .expect("a snapshot at the feed head is published")
        .unwrap();
        stop.send(true).unwrap();
        publisher.await.unwrap();

        assert!(!torn_path.exists(), "the damaged file is deleted");
        let files = sling_shared::snapshot::list_files(&dir).unwrap();
        assert_eq!(files[0].0, head, "{files:?}");
        let bytes = std::fs::read(&files[0].1).unwrap();
        let (_, body) = sling_shared::snapshot::decode(&bytes).unwrap();
        assert_eq!(body.link_count(), 3);
        let r = h
            .call(
                "GET",
                sling_shared::feed::SNAPSHOT_PATH,
                Some("test-fleet-token"),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(r.body.as_ref() == bytes.as_slice(), "serves the new file");
        h
    })
    .await;
}
