//! The first measurement of the write path: the time from a successful create call to the
//! first 3xx the proxy answers for the new slug, over 1,000 links created one after another.
//!
//! Only correctness decides pass or fail (every link redirects within [`PER_LINK_LIMIT`]); the
//! figures are printed (`cargo test -p sling-e2e --test propagation -- --nocapture`) because
//! timings depend on the machine and the build profile. The target is p99 under 100 ms.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation should panic

use std::time::{Duration, Instant};

use sling_e2e::{
    Backend, ControlOptions, TestEnv, get_short, http_client, percentiles, unique_destination,
};

const LINKS: usize = 1_000;
const PER_LINK_LIMIT: Duration = Duration::from_secs(5);

/// Both variants measure; running them one at a time keeps them from skewing each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

sling_e2e::on_both_backends!(create_to_first_redirect);

async fn create_to_first_redirect(backend: Backend) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    // Default snapshot settings: the links reach the proxy through the feed and its overlay,
    // with whatever snapshots the control plane publishes along the way.
    let control = env
        .start_control(ControlOptions {
            snapshot_interval_ms: 1_000,
            snapshot_after_changes: 250,
            extra_args: Vec::new(),
        })
        .await;
    let proxy = env.start_proxy(Some(&control)).await;
    let api = control.api();
    let client = http_client();

    let started = Instant::now();
    let mut samples = Vec::with_capacity(LINKS);
    for i in 0..LINKS {
        let dest = unique_destination(&format!("p{i}"));
        let link = api.create_link(&dest, None).await;
        let created = Instant::now();
        loop {
            // No pause between polls: each is a full round trip to the proxy already.
            let answer = get_short(&client, &proxy.url, &link.slug).await;
            if (300..400).contains(&answer.status) {
                assert_eq!(answer.location.as_deref(), Some(dest.as_str()));
                samples.push(created.elapsed());
                break;
            }
            assert_eq!(answer.status, 404, "/{} answered {answer:?}", link.slug);
            assert!(
                created.elapsed() < PER_LINK_LIMIT,
                "/{} (link {i}) did not redirect within {PER_LINK_LIMIT:?} of its create",
                link.slug
            );
        }
    }
    let total = started.elapsed();
    let (median, p99, max) = percentiles(&mut samples);
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "propagation create→first 3xx ({backend:?}, {profile} build, {LINKS} links in \
         {total:.1?}): median {median:.2?}, p99 {p99:.2?}, max {max:.2?} (target p99 < 100ms)"
    );

    // Along the way the control plane published a snapshot every 250 changes, and the proxy
    // downloads each on its install thread in a runtime of its own: several in a row must land.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, metrics) = proxy.admin_get("/metrics").await;
        assert_eq!(status, 200);
        let served = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sling_proxy_snapshot_seq "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if served >= LINKS as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy still serves snapshot {served} after {LINKS} creates"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
