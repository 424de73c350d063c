//! The write path seen from the outside: what the API says, the proxy answers within
//! moments, through the change feed and over a snapshot alike.

use serde_json::json;
use sling_e2e::{
    Backend, ControlOptions, TestEnv, snapshot_contains, snapshot_reaches_proxy,
    unique_destination, unique_slug, verified_snapshots, wait_until,
};
use std::time::{Duration, Instant};

sling_e2e::on_both_backends!(
    link_lifecycle_reaches_the_proxy,
    changes_override_the_snapshot,
    an_idle_proxy_fetches_each_new_snapshot,
);

/// Create → 302 to the destination; update → the new destination; disable → 410; enable →
/// 302 again; delete → 404. The control plane publishes no snapshot during the story, so every
/// step travels over the change feed.
async fn link_lifecycle_reaches_the_proxy(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let control = env.start_control(ControlOptions::default()).await;
    let proxy = env.start_proxy(Some(&control)).await;
    let api = control.api();

    // A link with a generated slug redirects with 302 and the destination as Location.
    let first = unique_destination("first");
    let link = api.create_link(&first, None).await;
    assert_eq!(link.destination_url, first);
    assert!(
        link.short_url.ends_with(&format!("/{}", link.slug)),
        "shortUrl {} does not end with the slug {}",
        link.short_url,
        link.slug
    );
    proxy.wait_for_redirect(&link.slug, &first).await;
    let answer = proxy.get(&link.slug).await;
    assert_eq!(answer.status, 302, "default redirectType is 302");

    // So does one with a custom slug, and slugs are case-sensitive.
    let custom_slug = unique_slug("Custom");
    let custom_dest = unique_destination("custom");
    let custom = api.create_link(&custom_dest, Some(&custom_slug)).await;
    assert_eq!(custom.slug, custom_slug);
    proxy.wait_for_redirect(&custom_slug, &custom_dest).await;
    assert_eq!(proxy.get(&custom_slug.to_lowercase()).await.status, 404);

    // Updating the destination: the proxy follows the new one.
    let second = unique_destination("second");
    let updated = api
        .update_link(&link.id, json!({ "destinationUrl": second }))
        .await;
    assert_eq!(updated.destination_url, second);
    proxy.wait_for_redirect(&link.slug, &second).await;

    // Disabled: 410 Gone.
    let disabled = api.link_action(&link.id, "disable").await;
    assert_eq!(disabled.active, Some(false));
    proxy.wait_for_status(&link.slug, 410).await;

    // Enabled again: redirects to the current destination.
    let enabled = api.link_action(&link.id, "enable").await;
    assert_eq!(enabled.active, Some(true));
    proxy.wait_for_redirect(&link.slug, &second).await;

    // Deleted: 404, and the API forgets it too.
    api.delete_link(&link.id).await;
    proxy.wait_for_status(&link.slug, 404).await;
    let gone = api
        .call(reqwest::Method::GET, &format!("/links/{}", link.id), None)
        .await;
    assert_eq!(gone.status, 404, "{}", gone.body);

    // The other link was never disturbed, and a slug nobody created is a 404.
    assert!(proxy.get(&custom_slug).await.is_redirect_to(&custom_dest));
    assert_eq!(proxy.get(&unique_slug("never")).await.status, 404);
}

/// Once links are in a snapshot the proxy has fetched, later changes (update, disable,
/// delete) arriving over the feed win over what the snapshot says.
async fn changes_override_the_snapshot(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let control = env
        .start_control(ControlOptions {
            snapshot_interval_ms: 200,
            snapshot_after_changes: 3,
            extra_args: Vec::new(),
        })
        .await;
    let proxy = env.start_proxy(Some(&control)).await;
    let api = control.api();

    let mut links = Vec::new();
    for i in 0..3 {
        let dest = unique_destination(&format!("snap{i}"));
        links.push((api.create_link(&dest, None).await, dest));
    }
    let slugs: Vec<String> = links.iter().map(|(l, _)| l.slug.clone()).collect();
    snapshot_reaches_proxy(&control, &proxy, "holding the three links", |body| {
        snapshot_contains(body, &slugs)
    })
    .await;
    for (link, dest) in &links {
        proxy.wait_for_redirect(&link.slug, dest).await;
    }

    let (updated, disabled, deleted) = (&links[0].0, &links[1].0, &links[2].0);
    let new_dest = unique_destination("after-snapshot");
    api.update_link(&updated.id, json!({ "destinationUrl": new_dest }))
        .await;
    api.link_action(&disabled.id, "disable").await;
    api.delete_link(&deleted.id).await;

    proxy.wait_for_redirect(&updated.slug, &new_dest).await;
    proxy.wait_for_status(&disabled.slug, 410).await;
    proxy.wait_for_status(&deleted.slug, 404).await;

    // Once a newer snapshot holding those changes has been swapped in (and the overlay
    // trimmed), the answers stay the same.
    snapshot_reaches_proxy(&control, &proxy, "without the deleted link", |body| {
        !snapshot_contains(body, std::slice::from_ref(&deleted.slug))
    })
    .await;
    let after = proxy.get(&updated.slug).await;
    assert!(after.is_redirect_to(&new_dest), "{after:?}");
    assert_eq!(proxy.get(&disabled.slug).await.status, 410);
    assert_eq!(proxy.get(&deleted.slug).await.status, 404);
}

/// A snapshot the control plane publishes on its timer reaches a proxy that is idle on the
/// feed (no change follows it) within a few seconds, not at the end of the proxy's long poll.
async fn an_idle_proxy_fetches_each_new_snapshot(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let control = env
        .start_control(ControlOptions {
            snapshot_interval_ms: 500,
            snapshot_after_changes: 100_000,
            extra_args: Vec::new(),
        })
        .await;
    let proxy = env.start_proxy(Some(&control)).await;
    let dest = unique_destination("idle");
    let link = control.api().create_link(&dest, None).await;
    // Delivered over the feed at once; the proxy then waits on its next long poll.
    proxy.wait_for_redirect(&link.slug, &dest).await;

    let slugs = [link.slug.clone()];
    let has_link = |dir: &std::path::Path| {
        verified_snapshots(dir)
            .first()
            .is_some_and(|(_, _, body)| snapshot_contains(body, &slugs))
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            has_link(&control.snapshot_dir())
        })
        .await,
        "the control plane did not publish a snapshot with the link on its 500 ms timer"
    );
    let published = Instant::now();
    let fetched = wait_until(Duration::from_secs(5), || async {
        has_link(&proxy.snapshot_dir)
    })
    .await;
    assert!(
        fetched,
        "the proxy had not fetched the snapshot holding /{} {:?} after it was published",
        link.slug,
        published.elapsed()
    );
}

/// `sling serve` started while its Postgres cannot be reached waits for it (with backoff)
/// instead of exiting, and serves as soon as it can: here Postgres is reached through a port
/// that only starts forwarding three seconds after the control plane started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_started_before_its_database_waits_for_it() {
    let Some(mut env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let real_url = env.database_url.clone().expect("a Postgres env has a URL");
    let after_at = real_url.split_once('@').expect("user@host:port").1;
    let real_addr = after_at.split_once('/').expect("host:port/db").0.to_owned();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.database_url = Some(real_url.replace(&real_addr, &format!("127.0.0.1:{port}")));

    const DOWN_FOR: Duration = Duration::from_secs(3);
    let forwarder = tokio::spawn(async move {
        tokio::time::sleep(DOWN_FOR).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let real_addr = real_addr.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&real_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });

    let started = Instant::now();
    // Returns once the admin key is written, which happens after the database answered.
    let control = env.start_control(ControlOptions::default()).await;
    assert!(
        started.elapsed() >= DOWN_FOR,
        "the control plane was ready before its database could be reached"
    );
    // It serves: a link is created (create_link asserts the 201).
    let destination = unique_destination("late");
    let link = control.api().create_link(&destination, None).await;
    assert_eq!(link.destination_url, destination);
    forwarder.abort();
}
