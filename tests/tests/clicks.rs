//! Clicks end to end: real load (wrk, with a Lua script) through the real `sling-proxy` into the
//! real `sling serve`, then the stats API must count every click exactly once and every distinct
//! visitor once, also when the control plane is SIGKILLed for 10 seconds in the middle of the
//! load, when the proxy is restarted with SIGTERM in the middle of it (both on SQLite and
//! Postgres), and when Postgres itself is stopped for 10 seconds in the middle of it (on a private
//! Postgres server, so the shared one is never stopped).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use sling_e2e::{Api, Backend, ControlOptions, TestEnv, http_client, on_both_backends, wait_until};

/// Distinct visitors: one user agent each (all requests come from 127.0.0.1).
const VISITORS: usize = 40;

fn user_agent(visitor: usize) -> String {
    format!(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.{visitor}.0 Safari/537.36"
    )
}

/// Runs wrk for about `total` requests to `/{slug}` (split over two threads; each thread then only
/// asks for a missing slug, which is not a click, until wrk's duration ends) and returns how many
/// were answered 302, which is what the stats must count. (wrk calls `request()` once per
/// thread without sending it, so the Lua counters cannot be trusted for the exact number.)
/// `pace_ms`: pause before each request on a connection.
async fn wrk(proxy_url: &str, slug: &str, total: usize, pace_ms: u64, dir: &Path) -> i64 {
    let threads = 2;
    let script = dir.join(format!("clicks-{slug}.lua"));
    std::fs::write(
        &script,
        format!(
            r#"
local quota = {quota}
sent, redirected = 0, 0
local threads = {{}}
setup = function(thread) table.insert(threads, thread) end
local agents = {{}}
for i = 0, {visitors} - 1 do
  agents[i] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0." .. i .. ".0 Safari/537.36"
end
request = function()
  if sent < quota then
    local ua = agents[sent % {visitors}]
    sent = sent + 1
    return wrk.format("GET", "/{slug}", {{ ["Host"] = "localhost", ["User-Agent"] = ua }})
  end
  return wrk.format("GET", "/no-such-link-xyz", {{ ["Host"] = "localhost" }})
end
delay = function() return {pace_ms} end
response = function(status, headers, body)
  if status == 302 then redirected = redirected + 1 end
end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("redirected") end
  io.write("redirected=" .. total .. "\n")
end
"#,
            quota = total / threads,
            visitors = VISITORS,
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "-c4", "-d6s", "-s"])
        .arg(&script)
        .arg(format!("{proxy_url}/"))
        .output()
        .await
        .expect("wrk (apt-get install wrk)");
    assert!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let redirected: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("redirected="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no redirected= line from wrk:\n{stdout}"));
    assert!(
        redirected >= total as i64 - 4 && redirected <= total as i64,
        "wrk got {redirected} redirects for {total} requests"
    );
    redirected
}

/// Polls the link's stats until `totalClicks` reaches `total` (and checks it does not pass it).
async fn assert_stats(api: &Api, link_id: &str, total: i64, unique: i64) {
    let path = format!("/links/{link_id}/stats");
    let last = std::sync::Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let reached = wait_until(Duration::from_secs(90), || {
        let (api, path, last) = (api.clone(), path.clone(), last.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let resp = api.call(reqwest::Method::GET, &path, None).await;
            *last.lock().unwrap() = resp.body.clone();
            resp.status == 200 && resp.body["data"]["totalClicks"].as_i64() >= Some(total)
        }
    })
    .await;
    let last = last.lock().unwrap().clone();
    assert!(reached, "totalClicks never reached {total}: {last}");
    // Late duplicates would show up after a short while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let data = api.call(reqwest::Method::GET, &path, None).await.body["data"].clone();
    assert_eq!(data["totalClicks"].as_i64(), Some(total), "{data}");
    assert_eq!(data["uniqueClicks"].as_i64(), Some(unique), "{data}");
}

on_both_backends!(every_click_is_counted_exactly_once_through_outages);

async fn every_click_is_counted_exactly_once_through_outages(backend: Backend) {
    if !wrk_installed() {
        return;
    }
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let mut control = env.start_control(ControlOptions::default()).await;
    let api = control.api();
    let mut proxy = env.start_proxy(Some(&control)).await;

    // 1. Plain load.
    let link = api
        .create_link("https://example.com/clicks/plain", None)
        .await;
    wait_head(&proxy.url, &link.slug).await;
    let redirected = wrk(&proxy.url, &link.slug, 2000, 0, env.root()).await;
    assert_stats(&api, &link.id, redirected, VISITORS as i64).await;

    // 2. The control plane is SIGKILLed for 10 s in the middle of the load (and restarted on the
    //    same port, so the proxy's --control-url stays valid).
    let link = api
        .create_link("https://example.com/clicks/kill", None)
        .await;
    wait_head(&proxy.url, &link.slug).await;
    let load = {
        let (url, slug, root) = (proxy.url.clone(), link.slug.clone(), env.root().to_owned());
        tokio::spawn(async move { wrk(&url, &slug, 2000, 4, &root).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    control.process.kill().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    control.restart(&env).await;
    let redirected = load.await.unwrap();
    assert_stats(&api, &link.id, redirected, VISITORS as i64).await;

    // 3. The proxy is restarted with SIGTERM in the middle of the load (reqwest, since the new
    //    proxy listens on a new port; only answered redirects are expected to count).
    let link = api
        .create_link("https://example.com/clicks/restart", None)
        .await;
    wait_head(&proxy.url, &link.slug).await;
    let client = http_client();
    let mut answered = 0i64;
    for round in 0..2 {
        for i in 0..500 {
            let resp = client
                .get(format!("{}/{}", proxy.url, link.slug))
                .header("host", "localhost")
                .header("user-agent", user_agent(i % VISITORS))
                .send()
                .await
                .unwrap();
            if resp.status() == 302 {
                answered += 1;
            }
        }
        if round == 0 {
            proxy = proxy.restart(Some(&control.url)).await;
            wait_head(&proxy.url, &link.slug).await;
        }
    }
    assert_eq!(answered, 1000);
    assert_stats(&api, &link.id, 1000, VISITORS as i64).await;
}

/// Postgres is stopped (`pg_ctl stop -m fast`, open connections cut) for 10 s in the middle of
/// the load and started again: the control plane answers 503 meanwhile, the proxy spools and
/// retries, and the total is still exact (a batch whose commit landed just before the stop but
/// whose answer was lost is deduplicated by its id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_click_is_counted_exactly_once_when_postgres_stops() {
    if !wrk_installed() {
        return;
    }
    let Some(env) = TestEnv::with_private_postgres().await else {
        return;
    };
    let control = env.start_control(ControlOptions::default()).await;
    let api = control.api();
    let proxy = env.start_proxy(Some(&control)).await;

    // Some clicks before, so the outage cuts into a working pipeline.
    let link = api
        .create_link("https://example.com/clicks/postgres-stop", None)
        .await;
    wait_head(&proxy.url, &link.slug).await;
    let load = {
        let (url, slug, root) = (proxy.url.clone(), link.slug.clone(), env.root().to_owned());
        tokio::spawn(async move { wrk(&url, &slug, 2000, 4, &root).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let postgres = env.private_postgres();
    postgres
        .stop()
        .await
        .expect("stopping the private Postgres");
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    postgres
        .resume()
        .await
        .expect("starting the private Postgres again");
    eprintln!("Postgres was down for {:?}", stopped.elapsed());
    let redirected = load.await.unwrap();
    let started = Instant::now();
    assert_stats(&api, &link.id, redirected, VISITORS as i64).await;
    eprintln!(
        "{redirected} clicks counted exactly once, {:?} after Postgres came back",
        started.elapsed()
    );
    let noticed = control.process.stderr().contains("click batch not stored");
    eprintln!("the control plane logged refused batches during the outage: {noticed}");
}

/// Waits until the proxy redirects `/{slug}`, asking with HEAD (which is not a click).
async fn wait_head(proxy_url: &str, slug: &str) {
    let client = http_client();
    let url = format!("{proxy_url}/{slug}");
    let ok = wait_until(Duration::from_secs(30), || {
        let req = client.head(&url).header("host", "localhost").send();
        async move { req.await.is_ok_and(|r| r.status() == 302) }
    })
    .await;
    assert!(ok, "{url} never redirected");
}

/// Whether wrk is installed; without it the scenarios are skipped, except in CI.
fn wrk_installed() -> bool {
    let ok = std::process::Command::new("wrk").arg("-v").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "wrk is required in CI"
        );
        eprintln!("SKIP: wrk is not installed (apt-get install wrk)");
    }
    ok
}
