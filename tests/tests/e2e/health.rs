//! Operations basics: health, readiness and metrics on both programs, and a prompt, clean
//! exit on SIGTERM.

use std::time::Duration;

use sling_e2e::{
    Backend, ControlOptions, TestEnv, get_text, http_client, unique_destination, wait_until,
};

sling_e2e::on_both_backends!(
    both_programs_report_health_and_metrics,
    sigterm_stops_both_programs_promptly,
);

/// The longest a graceful shutdown may take with nothing to drain.
const PROMPT: Duration = Duration::from_secs(5);

/// `/healthz`, `/readyz` and `/metrics` answer 200 on the control plane's API listener and on
/// the proxy's admin listener; the metrics are Prometheus text covering requests, the snapshot
/// (sequence, age), the overlay and the feed.
async fn both_programs_report_health_and_metrics(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let control = env.start_control(ControlOptions::default()).await;
    let proxy = env.start_proxy(Some(&control)).await;
    let link = control
        .api()
        .create_link(&unique_destination("health"), None)
        .await;
    proxy
        .wait_for_redirect(&link.slug, &link.destination_url)
        .await;

    let client = http_client();
    for path in ["/healthz", "/readyz"] {
        let (status, body) = get_text(&client, &format!("{}{path}", control.url)).await;
        assert_eq!(status, 200, "control plane {path}: {body}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            proxy.admin_get("/readyz").await.0 == 200
        })
        .await,
        "the proxy never became ready while following a live control plane"
    );
    let (status, body) = proxy.admin_get("/healthz").await;
    assert_eq!(status, 200, "proxy /healthz: {body}");

    let (status, metrics) = get_text(&client, &format!("{}/metrics", control.url)).await;
    assert_eq!(status, 200, "control plane /metrics");
    assert_prometheus(
        &metrics,
        "control plane",
        &[
            "sling_control_http_requests_total",
            "sling_control_snapshot_seq",
            "sling_control_snapshot_age_seconds",
            "sling_control_feed_head_seq",
        ],
    );
    assert!(metric_sum(&metrics, "sling_control_http_requests_total") >= 1.0);
    assert!(metric_sum(&metrics, "sling_control_feed_head_seq") >= 1.0);

    let (status, metrics) = proxy.admin_get("/metrics").await;
    assert_eq!(status, 200, "proxy /metrics");
    assert_prometheus(
        &metrics,
        "proxy",
        &[
            "sling_proxy_requests_total",
            "sling_proxy_request_duration_seconds_bucket",
            "sling_proxy_snapshot_seq",
            "sling_proxy_snapshot_age_seconds",
            "sling_proxy_overlay_entries",
            "sling_proxy_feed_lag",
        ],
    );
    // The redirect above was counted, and the feed brought the proxy to the link's change.
    assert!(metric_sum(&metrics, "sling_proxy_requests_total") >= 1.0);
    assert!(metric_sum(&metrics, "sling_proxy_feed_applied_seq") >= 1.0);
}

/// With a proxy long-polling the control plane's feed, SIGTERM stops each program with exit
/// status 0 within [`PROMPT`]: first the control plane (its open long-polls must not hold up
/// the shutdown), then the proxy.
async fn sigterm_stops_both_programs_promptly(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let mut control = env.start_control(ControlOptions::default()).await;
    let mut proxy = env.start_proxy(Some(&control)).await;
    let link = control
        .api()
        .create_link(&unique_destination("sigterm"), None)
        .await;
    proxy
        .wait_for_redirect(&link.slug, &link.destination_url)
        .await;

    let (status, took) = control.process.sigterm().await;
    assert!(status.success(), "control plane exited with {status}");
    assert!(took < PROMPT, "control plane took {took:?} to stop");

    let (status, took) = proxy.process.sigterm().await;
    assert!(status.success(), "proxy exited with {status}");
    assert!(took < PROMPT, "proxy took {took:?} to stop");
}

/// `text` is Prometheus exposition format with a sample of each named metric.
fn assert_prometheus(text: &str, program: &str, names: &[&str]) {
    assert!(
        text.lines().any(|l| l.starts_with("# TYPE ")),
        "{program} /metrics is not Prometheus text:\n{text}"
    );
    for name in names {
        assert!(
            samples(text, name).next().is_some(),
            "{program} /metrics has no {name}:\n{text}"
        );
    }
}

/// The sum of every sample of `name` (over all label sets).
fn metric_sum(text: &str, name: &str) -> f64 {
    samples(text, name).sum()
}

fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(move |l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.split_whitespace().next()?.parse().ok()
        })
}
