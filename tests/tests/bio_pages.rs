//! Link-in-bio pages from the outside: a gallery made and published through the REST API of the
//! real `sling serve` reaches the real `sling-proxy` through the change feed, is served at
//! `/@handle`, renders in a real browser (chromium through chromedriver: the theme's styles
//! apply under the page's script-free CSP, items appear in order, escaped text shows as text, a
//! link item navigates), changes only when published again, keeps serving from the proxy's
//! snapshot with the control plane stopped, and is gone once unpublished.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sling_e2e::webdriver::Browser;
use sling_e2e::{Backend, ControlOptions, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A site on 127.0.0.1 where every path answers a page titled "Destination".
async fn destination() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = "<!doctype html><html lang=\"en\"><title>Destination</title><h1>Here</h1></html>";
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// `GET {proxy}/@{handle}` with `Host: localhost`: status, body and the CSP header.
async fn fetch(proxy: &str, handle: &str) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .get(format!("{proxy}/@{handle}"))
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    let csp = r
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), csp, r.text().await.unwrap())
}

async fn wait_for(proxy: &str, handle: &str, what: &str, pred: impl Fn(u16, &str) -> bool) {
    let deadline = Instant::now() + sling_e2e::PROPAGATION_TIMEOUT;
    loop {
        let (status, _, body) = fetch(proxy, handle).await;
        if pred(status, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/@{handle} never became {what}; last {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_gallery_renders_in_a_real_browser() {
    let Some(browser) = Browser::start("the bio-page browser test").await else {
        return;
    };
    let Some(env) = TestEnv::new(Backend::Sqlite).await else {
        return;
    };
    let dest = destination().await;
    let control = env
        .start_control(ControlOptions {
            snapshot_interval_ms: 200,
            snapshot_after_changes: 1,
            ..ControlOptions::default()
        })
        .await;
    let proxy = env.start_proxy(Some(&control)).await;
    let api = control.api();

    let created = api
        .call(
            reqwest::Method::POST,
            "/galleries",
            Some(json!({
                "handle": "jane",
                "title": "Jane <Doe> & Co",
                "bio": "Links I like",
                "theme": "dark",
                "publish": true,
                "items": [
                    {"type": "header", "title": "Work"},
                    {"type": "link", "title": "Portfolio", "url": format!("{dest}/portfolio")},
                    {"type": "divider"},
                    {"type": "link", "title": "Blog <script>", "url": format!("{dest}/blog")},
                    {"type": "link", "title": "Hidden", "url": format!("{dest}/hidden"), "active": false}
                ]
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.data()["id"].as_str().unwrap().to_owned();

    wait_for(&proxy.url, "jane", "published", |s, _| s == 200).await;
    let (_, csp, html) = fetch(&proxy.url, "jane").await;
    assert_eq!(csp, sling_shared::link::BIO_PAGE_CSP);
    assert!(html.contains("Blog &lt;script&gt;"), "{html}");

    // The browser: title and text as the visitor reads them, the theme applied.
    let page = format!("{}/@jane", proxy.url);
    browser.go(&page).await;
    assert_eq!(browser.title().await, "Jane <Doe> & Co");
    let h1 = browser.find("h1").await;
    assert_eq!(browser.text(&h1).await, "Jane <Doe> & Co");
    let body = browser.find("body").await;
    assert_eq!(
        browser.css(&body, "background-color").await,
        "rgba(15, 17, 21, 1)"
    );
    let links = browser.find_all("a.link").await;
    let mut labels = Vec::new();
    for l in &links {
        labels.push(browser.text(l).await);
    }
    assert_eq!(
        labels,
        ["Portfolio", "Blog <script>"],
        "inactive items are not shown"
    );
    assert_eq!(
        browser.property(&links[0], "href").await,
        format!("{dest}/portfolio")
    );
    let button = browser.rect(&links[0]).await;
    assert!(
        button["width"].as_f64().unwrap() > 300.0,
        "link buttons span the column: {button}"
    );
    assert_eq!(browser.find_all("h2").await.len(), 1);
    assert_eq!(browser.find_all("hr").await.len(), 1);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    browser.screenshot(&shots.join("bio-page.png")).await;

    // A click on a link item lands on its URL.
    browser.click(&links[0]).await;
    browser.wait_title("Destination").await;
    assert_eq!(browser.current_url().await, format!("{dest}/portfolio"));

    // Draft edits stay off the page until published again.
    let r = api
        .call(
            reqwest::Method::PATCH,
            &format!("/galleries/{id}"),
            Some(json!({"title": "Jane, edited", "theme": "minimal"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, html) = fetch(&proxy.url, "jane").await;
    assert!(
        html.contains("Jane &lt;Doe&gt; &amp; Co"),
        "still the published page"
    );
    let r = api
        .call(
            reqwest::Method::POST,
            &format!("/galleries/{id}/publish"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(&proxy.url, "jane", "the new title", |_, b| {
        b.contains("Jane, edited")
    })
    .await;
    browser.go(&page).await;
    assert_eq!(browser.title().await, "Jane, edited");
    let body = browser.find("body").await;
    assert_eq!(
        browser.css(&body, "background-color").await,
        "rgba(255, 255, 255, 1)"
    );
    browser.close().await;

    // Every GET was a view, shipped by the proxy's click pipeline (headless chromium and a bare
    // HTTP client count as bots, hence includeBots).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api
            .call(
                reqwest::Method::GET,
                &format!("/galleries/{id}/stats?includeBots=true"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.data()["totalClicks"].as_i64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page views never reached the gallery's stats: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The page lives in the proxy's snapshot too: with the control plane gone, a restarted
    // proxy still serves it.
    sling_e2e::snapshot_reaches_proxy(&control, &proxy, "a snapshot with the page", |b| {
        b.domains
            .get("localhost")
            .and_then(|d| d.bio_pages.get("jane"))
            .is_some_and(|p| p.html.contains("Jane, edited"))
    })
    .await;
    let mut control = control;
    control.process.kill().await;
    let proxy = proxy.restart(None).await;
    let (status, _, html) = fetch(&proxy.url, "jane").await;
    assert_eq!(status, 200);
    assert!(html.contains("Jane, edited"));

    // Unpublished: 404, over the feed.
    control.restart(&env).await;
    let proxy = proxy.restart(Some(&control.url)).await;
    let r = control
        .api()
        .call(
            reqwest::Method::POST,
            &format!("/galleries/{id}/unpublish"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for(&proxy.url, "jane", "404", |s, _| s == 404).await;
}
