//! Start-up while the database cannot be reached: the API answers (503 UNAVAILABLE in the
//! envelope, `/healthz` 200, `/readyz` 503) instead of leaving connections hanging, and a
//! shutdown during the wait ends the process cleanly. (That it then serves once the database
//! answers is the e2e test `a_control_plane_started_before_its_database_waits_for_it`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sling_control::Config;

#[tokio::test]
async fn before_the_database_answers_the_api_says_unavailable_and_shutdown_ends_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres@127.0.0.1:{closed}/nowhere");
    let config = Config::for_tests(dir.path().to_path_buf(), Some(url));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(sling_control::run(config, listener, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        healthy,
        "/healthz never answered while the database was down"
    );
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);

    let r = client
        .get(format!("{base}/api/v1/links"))
        .bearer_auth("sk_whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // The client IP's anonymous budget, as on any answer given before the key is known.
    let limit = |r: &reqwest::Response, h: &str| -> i64 {
        r.headers()[h].to_str().unwrap().parse().unwrap()
    };
    assert_eq!(limit(&r, "x-ratelimit-limit"), 120);
    let remaining = limit(&r, "x-ratelimit-remaining");
    assert!(remaining < 120, "{remaining}");
    assert!(limit(&r, "x-ratelimit-reset") > 1_700_000_000);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "UNAVAILABLE");
    assert_eq!(body["error"]["requestId"], id.as_str());
    assert!(id.starts_with("req_"), "{id}");

    // A client that keeps retrying spends the budget and is told to wait.
    let mut last = None;
    for _ in 0..130 {
        let r = client
            .get(format!("{base}/api/v1/links"))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            last = Some(r);
            break;
        }
        assert_eq!(r.status(), 503);
    }
    let r = last.expect("a 429 once the anonymous budget is spent");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(limit(&r, "x-ratelimit-remaining"), 0);

    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run ends soon after shutdown")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
}
