//! Domain ownership through the real binaries: a custom domain added to `sling serve` is proven
//! by its HTTP token, which the control plane fetches from a real `sling-proxy` (the proxy got
//! the answer in its TLS state after `TlsChanged`), with names resolved by a real DNS server
//! (Debian's `pebble-challtestsrv`, which answers every A query with 127.0.0.1 unless told
//! otherwise). Then links on the verified domain redirect through the proxy, a wrong TXT value and
//! a refused connection are reported as such, and deleting the domain takes its links off the
//! edge. On SQLite and Postgres.
//!
//! Skipped with a message when pebble-challtestsrv is not installed, unless `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sling_e2e::{
    Api, Backend, ControlOptions, ControlPlane, FLEET_TOKEN, Process, TestEnv, free_port,
};

const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

/// pebble-challtestsrv as a DNS server only, programmed over its management API.
struct Dns {
    _child: tokio::process::Child,
    addr: SocketAddr,
    mgmt: String,
    http: reqwest::Client,
}

impl Dns {
    async fn start() -> Option<Dns> {
        if !std::path::Path::new(CHALLTESTSRV).exists() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{CHALLTESTSRV} is missing and CI=true (apt-get install pebble)");
            }
            eprintln!("SKIPPING: {CHALLTESTSRV} is missing (apt-get install pebble)");
            return None;
        }
        let (dns_port, mgmt_port) = (free_port(), free_port());
        let child = tokio::process::Command::new(CHALLTESTSRV)
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{mgmt_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble-challtestsrv");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", mgmt_port))
                .await
                .is_ok()
            {
                return Some(Dns {
                    _child: child,
                    addr: SocketAddr::from(([127, 0, 0, 1], dns_port)),
                    mgmt: format!("http://127.0.0.1:{mgmt_port}"),
                    http: reqwest::Client::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pebble-challtestsrv did not start");
    }

    async fn post(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.mgmt))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
}

/// A `sling-proxy` on a port chosen in advance: the control plane's `--verify-http-port` must
/// name it before the proxy exists.
async fn start_proxy(env: &TestEnv, control: &ControlPlane, port: u16) -> Process {
    let dir = env.dir(&format!("proxy-{port}"));
    let args: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--admin-listen",
        "127.0.0.1:0",
        "--snapshot-dir",
        &dir.display().to_string(),
        "--fleet-token",
        FLEET_TOKEN,
        "--default-domain",
        "localhost",
        "--control-url",
        &control.url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (process, _) = Process::spawn(
        "sling-proxy",
        &sling_e2e::binary("sling-proxy"),
        &args,
        env.root(),
        &["proxy", "admin"],
    )
    .await;
    process
}

/// `GET http://127.0.0.1:port{path}` with `Host: host`: (status, location, body).
async fn get(port: u16, host: &str, path: &str) -> (u16, Option<String>, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let r = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location, r.text().await.unwrap_or_default())
}

/// Polls `get` until `pred` holds (the feed reaches the proxy within a long poll).
async fn wait_get(
    port: u16,
    host: &str,
    path: &str,
    what: &str,
    pred: impl Fn(&(u16, Option<String>, String)) -> bool,
) -> (u16, Option<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(port, host, path).await;
        if pred(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn http_token_verification_through_the_real_proxy() {
    let Some(dns) = Dns::start().await else {
        return;
    };
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(env) = TestEnv::new(backend).await else {
            continue;
        };
        scenario(&env, &dns).await;
    }
}

async fn scenario(env: &TestEnv, dns: &Dns) {
    let port = free_port();
    let control = env
        .start_control(ControlOptions {
            extra_args: [
                "--dns-resolver",
                &dns.addr.to_string(),
                "--verify-http-port",
                &port.to_string(),
                // Everything here is on loopback.
                "--allow-private-verify",
                "--verify-timeout-ms",
                "2000",
                // The test drives every check itself.
                "--verify-interval-ms",
                "3600000",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ..ControlOptions::default()
        })
        .await;
    let _proxy = start_proxy(env, &control, port).await;
    let api: Api = control.api();

    // Add the domain: pending, with a token the proxies serve.
    let r = api
        .call(
            Method::POST,
            "/domains",
            Some(json!({"host": "Shop.E2E.test"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let d = r.data().clone();
    assert_eq!(d["host"], "shop.e2e.test");
    assert_eq!(d["status"], "pending");
    let id = d["id"].as_str().unwrap().to_owned();
    let token = d["records"][1]["body"].as_str().unwrap().to_owned();
    let path = format!("/.well-known/sling-verify/{token}");
    assert_eq!(
        d["records"][1]["url"],
        format!("http://shop.e2e.test{path}").as_str()
    );
    let (_, _, body) = wait_get(port, "shop.e2e.test", &path, "token served", |r| r.0 == 200).await;
    assert_eq!(body.trim(), token);

    // Verify: no TXT record, so the HTTP token through the proxy proves it.
    let r = api
        .call(Method::POST, &format!("/domains/{id}/verify"), None)
        .await;
    let v = r.data();
    assert_eq!(v["status"], "verified", "{v}");
    assert_eq!(v["verifyMethod"], "http");
    assert_eq!(v["verified"], true);

    // The token is withdrawn from the edge; links on the domain redirect through the proxy.
    wait_get(port, "shop.e2e.test", &path, "token withdrawn", |r| {
        r.0 != 200
    })
    .await;
    let r = api
        .call(
            Method::POST,
            "/links",
            Some(
                json!({"destinationUrl": "https://example.com/e2e-shop", "domain": "shop.e2e.test",
                        "slug": "spring"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_get(port, "shop.e2e.test", "/spring", "link redirects", |r| {
        r.0 == 302 && r.1.as_deref() == Some("https://example.com/e2e-shop")
    })
    .await;

    // A second domain: a wrong TXT value, and its host resolves where nothing listens.
    dns.post(
        "/set-txt",
        json!({"host": "_sling-challenge.away.e2e.test.", "value": "wrong"}),
    )
    .await;
    dns.post(
        "/add-a",
        json!({"host": "away.e2e.test.", "addresses": ["127.0.0.2"]}),
    )
    .await;
    let r = api
        .call(
            Method::POST,
            "/domains",
            Some(json!({"host": "away.e2e.test"})),
        )
        .await;
    let away = r.data()["id"].as_str().unwrap().to_owned();
    let r = api
        .call(Method::POST, &format!("/domains/{away}/verify"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.data();
    assert_eq!(v["status"], "pending");
    let reason = v["failureReason"].as_str().unwrap();
    assert!(
        reason.contains(
            "TXT record found at _sling-challenge.away.e2e.test but its value does not match"
        ),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "HTTP token: connection refused by 127.0.0.2:{port}"
        )),
        "{reason}"
    );
    // Links are refused there.
    let r = api
        .call(
            Method::POST,
            "/links",
            Some(json!({"destinationUrl": "https://example.com/", "domain": "away.e2e.test"})),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), Some("DOMAIN_NOT_VERIFIED"));

    // Deleting the verified domain takes its links off the edge.
    let r = api
        .call(Method::DELETE, &format!("/domains/{id}"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    wait_get(port, "shop.e2e.test", "/spring", "link gone", |r| {
        r.0 == 404
    })
    .await;
}
