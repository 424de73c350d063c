//! Custom domains (issue 8, part 1): adding one (normalisation and every refusal), plan limits
//! and premium domains, tenant isolation, ownership checks against a real DNS server (Debian's
//! `pebble-challtestsrv`) and a real HTTP server, the background re-check, deletion, and the
//! link API's refusal of unverified domains. Every test runs on SQLite and Postgres.
//!
//! Without `pebble-challtestsrv` the DNS tests are skipped with a message, unless `CI=true`,
//! where that is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{Harness, Kind};
use serde_json::{Value, json};
use sling_control::Config;
use sling_control::db;
use sling_control::plans::{DomainKind, Plan, Plans};
use sling_control::verify::{DnsUpstream, VerifyConfig};
use sling_e2e::free_port;
use sling_shared::feed::ChangeOp;
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

// ---------------------------------------------------------------------------------------------
// A real DNS server: pebble-challtestsrv, programmed over its management API.

struct DnsServer {
    child: Child,
    dns: SocketAddr,
    mgmt: String,
    http: reqwest::Client,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DnsServer {
    /// Starts one, or `None` (skip) when the binary is missing outside CI.
    async fn start() -> Option<DnsServer> {
        if !std::path::Path::new(CHALLTESTSRV).exists() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{CHALLTESTSRV} is missing and CI=true (apt-get install pebble)");
            }
            eprintln!("SKIPPING: {CHALLTESTSRV} is missing (apt-get install pebble)");
            return None;
        }
        let dns_port = free_port();
        let mgmt_port = free_port();
        let child = Command::new(CHALLTESTSRV)
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
            .spawn()
            .expect("start pebble-challtestsrv");
        let server = DnsServer {
            child,
            dns: SocketAddr::from(([127, 0, 0, 1], dns_port)),
            mgmt: format!("http://127.0.0.1:{mgmt_port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", mgmt_port))
                .await
                .is_ok()
            {
                return Some(server);
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

    async fn set_txt(&self, name: &str, value: &str) {
        self.post(
            "/set-txt",
            json!({"host": format!("{name}."), "value": value}),
        )
        .await;
    }

    async fn clear_txt(&self, name: &str) {
        self.post("/clear-txt", json!({"host": format!("{name}.")}))
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// A real HTTP server answering fixed bodies by path (stands in for a proxy here; the end-to-end
// test in tests/ uses the real one).

struct TokenServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    async fn start(answers: Vec<(String, String)>) -> TokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers = Arc::new(answers);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let res = match answers.iter().find(|(p, _)| *p == path) {
                        Some((_, body)) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_owned(),
                    };
                    let _ = sock.write_all(res.as_bytes()).await;
                });
            }
        });
        TokenServer { port, task }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn plan(name: &str, kinds: &[DomainKind], custom_domains: Option<u64>) -> Plan {
    Plan {
        name: name.into(),
        read_per_minute: 10_000,
        write_per_minute: 10_000,
        requests_per_hour: None,
        links_per_month: None,
        links_per_day: None,
        domains: kinds.to_vec(),
        custom_domains,
        api_logs: false,
        api_log_retention_days: 30,
    }
}

/// The configuration every test here uses: a default domain with subdomains, a short-URL host,
/// a premium domain, a plan with two custom domains, and checks that fail fast.
fn configure(c: &mut Config, dns: Option<SocketAddr>, http_port: u16) {
    c.default_domain = "sho.rt".into();
    c.short_url_base = "https://s.sling.example".into();
    c.domains.premium = vec!["kfc.example".into()];
    c.domains.fleet_cname = Some("edge.sling.example".into());
    c.domains.fleet_ips = vec!["203.0.113.7".parse().unwrap()];
    c.plans = Arc::new(Plans::builtin().with(plan(
        "two",
        &[DomainKind::Default, DomainKind::Custom],
        Some(2),
    )));
    c.verify = VerifyConfig {
        dns: match dns {
            Some(a) => DnsUpstream::Server(a),
            // Nothing listens there: lookups fail fast, as "no answer".
            None => DnsUpstream::Server(SocketAddr::from(([127, 0, 0, 1], free_port()))),
        },
        http_port,
        allow_private: true,
        timeout: Duration::from_secs(2),
        interval: Duration::from_millis(100),
        window: Duration::from_secs(3600),
    };
}

/// Runs `f` on SQLite, then Postgres (when reachable), with `configure` applied.
async fn each<F, Fut>(dns: Option<SocketAddr>, http_port: u16, f: F)
where
    F: Fn(Harness) -> Fut,
    Fut: std::future::Future<Output = Harness>,
{
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let Some(h) = Harness::new_with(kind, |c| configure(c, dns, http_port)).await else {
            continue;
        };
        db::domains::ensure_premium(&h.db, &h.state.config.domains.premium)
            .await
            .unwrap();
        let h = f(h).await;
        h.cleanup().await;
    }
}

/// A new team on `plan` with a `*` key; returns (team id, key).
async fn team(h: &Harness, name: &str, plan: &str) -> (String, String) {
    let t = db::teams::create_team_with_plan(&h.db, name, plan)
        .await
        .unwrap();
    let key = db::keys::create_key(&h.db, &t.id, "t", &["*".to_owned()], None)
        .await
        .unwrap()
        .1;
    (t.id, key)
}

async fn add(h: &Harness, key: &str, host: &str) -> Value {
    let r = h
        .call(
            "POST",
            "/api/v1/domains",
            Some(key),
            Some(json!({"host": host})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    r.data().clone()
}

async fn count(h: &Harness, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(&h.db.pool)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

async fn domain_count(h: &Harness) -> i64 {
    count(h, "SELECT CAST(COUNT(*) AS BIGINT) FROM domains").await
}

async fn well_known_bodies(h: &Harness, host: &str) -> Vec<(String, String)> {
    db::well_known::list_live(&h.db.pool, db::now_ms())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.host == host)
        .map(|e| (e.path, e.body))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn add_normalises_the_host_and_publishes_the_token() {
    each(None, 1, |h| async move {
        let (_, key) = team(&h, "shop", "two").await;
        let head = h.feed_head().await;
        let d = add(&h, &key, " Bücher.Example. ").await;
        assert_eq!(d["host"], "xn--bcher-kva.example");
        assert_eq!(d["status"], "pending");
        assert_eq!(d["verified"], false);
        assert_eq!(d["httpsRedirect"], false);
        assert!(d["failureReason"].is_null());
        assert!(d["verifiedAt"].is_null());
        assert!(d["createdAt"].as_str().unwrap().ends_with('Z'));
        let records = d["records"].as_array().unwrap();
        let token = records[0]["value"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), 32);
        assert_eq!(
            records[0],
            json!({"type": "TXT", "name": "_sling-challenge.xn--bcher-kva.example", "value": token})
        );
        assert_eq!(
            records[1],
            json!({"type": "HTTP",
                   "url": format!("http://xn--bcher-kva.example/.well-known/sling-verify/{token}"),
                   "body": token})
        );
        assert_eq!(
            records[2],
            json!({"type": "CNAME", "name": "xn--bcher-kva.example", "value": "edge.sling.example"})
        );
        assert_eq!(
            records[3],
            json!({"type": "A", "name": "xn--bcher-kva.example", "value": "203.0.113.7"})
        );
        assert!(d["hint"].as_str().unwrap().contains("/verify"));

        // The token is served by every proxy: a well_known row and TlsChanged, plus the domain.
        assert_eq!(
            well_known_bodies(&h, "xn--bcher-kva.example").await,
            vec![(format!("/.well-known/sling-verify/{token}"), token.clone())]
        );
        let ops = h.changes_after(head).await;
        assert!(
            matches!(&ops[..], [ChangeOp::UpsertDomain { host, .. }, ChangeOp::TlsChanged]
                if host == "xn--bcher-kva.example"),
            "{ops:?}"
        );

        // A port is dropped; the options are stored.
        let r = h
            .call(
                "POST",
                "/api/v1/domains",
                Some(&key),
                Some(
                    json!({"host": "Links.Example.COM:8443", "httpsRedirect": true,
                            "rootRedirect": "https://example.com/home"}),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        assert_eq!(r.data()["host"], "links.example.com");
        assert_eq!(r.data()["httpsRedirect"], true);
        assert_eq!(r.data()["rootRedirect"], "https://example.com/home");

        // Listed and fetched with the same view.
        let id = d["id"].as_str().unwrap();
        let r = h
            .call("GET", &format!("/api/v1/domains/{id}"), Some(&key), None)
            .await;
        assert_eq!(r.data()["records"][0]["value"], token.as_str());
        let r = h.call("GET", "/api/v1/domains", Some(&key), None).await;
        let hosts: Vec<&str> = r.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["host"].as_str().unwrap())
            .collect();
        assert_eq!(
            hosts,
            ["sho.rt", "xn--bcher-kva.example", "links.example.com"]
        );
        h
    })
    .await;
}

#[tokio::test]
async fn bad_hosts_are_refused_and_nothing_is_stored() {
    each(None, 1, |h| async move {
        let (_, key) = team(&h, "shop", "two").await;
        let (_, other_key) = team(&h, "rival", "two").await;
        add(&h, &other_key, "taken.example").await;
        let before = (domain_count(&h).await, h.feed_head().await);
        for (host, why) in [
            ("1.2.3.4", "IP address"),
            ("[::1]", "IP address"),
            ("::1", "IP address"),
            ("[2001:db8::1]:443", "IP address"),
            ("1.2.3", "not a valid domain"),
            ("example", "single label"),
            ("", "empty"),
            ("bad_label.example", "not a valid domain"),
            ("-dash.example", "not a valid domain"),
            ("a..example", "not a valid domain"),
            ("https://shop.example/", "URL"),
            ("sho.rt", "own domain"),
            ("SHO.RT.", "own domain"),
            ("go.sho.rt", "under this service's own domain"),
            ("s.sling.example", "own domain"),
        ] {
            let r = h
                .call(
                    "POST",
                    "/api/v1/domains",
                    Some(&key),
                    Some(json!({"host": host})),
                )
                .await;
            r.assert_error(400, "INVALID_REQUEST");
            assert_eq!(
                r.json["error"]["details"][0]["path"],
                json!(["host"]),
                "{host}"
            );
            let msg = r.json["error"]["message"].as_str().unwrap();
            assert!(msg.contains(why), "{host}: {msg}");
        }
        // Wrong shapes.
        for body in [
            json!({}),
            json!({"host": 5}),
            json!({"host": "a.example", "nope": 1}),
        ] {
            h.call("POST", "/api/v1/domains", Some(&key), Some(body))
                .await
                .assert_error(400, "INVALID_REQUEST");
        }
        h.call(
            "POST",
            "/api/v1/domains",
            Some(&key),
            Some(json!({"host": "ok.example", "rootRedirect": "javascript:alert(1)"})),
        )
        .await
        .assert_error(400, "INVALID_URL");
        // Duplicates: another team's host, with or without case and dot differences.
        for host in ["taken.example", "TAKEN.example."] {
            let r = h
                .call(
                    "POST",
                    "/api/v1/domains",
                    Some(&key),
                    Some(json!({"host": host})),
                )
                .await;
            r.assert_error(409, "DOMAIN_EXISTS");
            assert!(
                !r.json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("dom_")
            );
        }
        assert_eq!((domain_count(&h).await, h.feed_head().await), before);
        // The team's own duplicate names its id.
        let d = add(&h, &key, "mine.example").await;
        let r = h
            .call(
                "POST",
                "/api/v1/domains",
                Some(&key),
                Some(json!({"host": "mine.example"})),
            )
            .await;
        r.assert_error(409, "DOMAIN_EXISTS");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains(d["id"].as_str().unwrap())
        );
        // A scope is needed.
        let read_only =
            db::keys::create_key(&h.db, &h.team_id, "ro", &["domains:read".to_owned()], None)
                .await
                .unwrap()
                .1;
        h.call(
            "POST",
            "/api/v1/domains",
            Some(&read_only),
            Some(json!({"host": "x.example"})),
        )
        .await
        .assert_error(403, "FORBIDDEN");
        h
    })
    .await;
}

#[tokio::test]
async fn plans_limit_custom_and_premium_domains() {
    each(None, 1, |h| async move {
        // Free: no custom domains at all, and not the premium one.
        let (_, free) = team(&h, "free-team", "free").await;
        h.call(
            "POST",
            "/api/v1/domains",
            Some(&free),
            Some(json!({"host": "a.example"})),
        )
        .await
        .assert_error(403, "DOMAIN_NOT_ALLOWED");
        let r = h
            .call(
                "POST",
                "/api/v1/domains",
                Some(&free),
                Some(json!({"host": "KFC.example"})),
            )
            .await;
        r.assert_error(403, "DOMAIN_NOT_ALLOWED");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("premium")
        );
        // Links on the premium domain: refused on free, fine on pro.
        h.call(
            "POST",
            "/api/v1/links",
            Some(&free),
            Some(json!({"destinationUrl": "https://example.com/", "domain": "kfc.example"})),
        )
        .await
        .assert_error(403, "DOMAIN_NOT_ALLOWED");
        let (_, pro) = team(&h, "pro-team", "pro").await;
        let r = h
            .call(
                "POST",
                "/api/v1/links",
                Some(&pro),
                Some(json!({"destinationUrl": "https://example.com/", "domain": "kfc.example"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        // A plan with premium cannot claim the shared host as its own.
        h.call(
            "POST",
            "/api/v1/domains",
            Some(&pro),
            Some(json!({"host": "kfc.example"})),
        )
        .await
        .assert_error(400, "INVALID_REQUEST");

        // "two" allows two custom domains; the third is refused with the quota.
        let (_, two) = team(&h, "two-team", "two").await;
        add(&h, &two, "one.example").await;
        add(&h, &two, "two.example").await;
        let before = domain_count(&h).await;
        let r = h
            .call(
                "POST",
                "/api/v1/domains",
                Some(&two),
                Some(json!({"host": "three.example"})),
            )
            .await;
        r.assert_error(403, "LIMIT_REACHED");
        let q = &r.json["error"]["quota"];
        assert_eq!(q["planType"], "two");
        assert_eq!(q["limit"], 2);
        assert_eq!(q["currentCount"], 2);
        assert_eq!(q["remaining"], 0);
        assert_eq!(domain_count(&h).await, before);
        // Deleting one frees a unit.
        let list = h.call("GET", "/api/v1/domains", Some(&two), None).await;
        let id = list.data()["items"][1]["id"].as_str().unwrap().to_owned();
        let r = h
            .call("DELETE", &format!("/api/v1/domains/{id}"), Some(&two), None)
            .await;
        assert_eq!(r.status, 204);
        add(&h, &two, "three.example").await;
        h
    })
    .await;
}

#[tokio::test]
async fn another_teams_domain_is_not_found() {
    each(None, 1, |h| async move {
        let (_, a) = team(&h, "a", "two").await;
        let (_, b) = team(&h, "b", "two").await;
        let d = add(&h, &a, "a.example").await;
        let id = d["id"].as_str().unwrap();
        let uri = format!("/api/v1/domains/{id}");
        h.call("GET", &uri, Some(&b), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.call(
            "PATCH",
            &uri,
            Some(&b),
            Some(json!({"httpsRedirect": true})),
        )
        .await
        .assert_error(404, "NOT_FOUND");
        h.call("DELETE", &uri, Some(&b), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.call("POST", &format!("{uri}/verify"), Some(&b), None)
            .await
            .assert_error(404, "NOT_FOUND");
        let r = h.call("GET", "/api/v1/domains", Some(&b), None).await;
        assert_eq!(
            r.data()["items"].as_array().unwrap().len(),
            1,
            "only the default"
        );
        // Links of team b cannot use it either (it looks unknown, not unverified).
        h.call(
            "POST",
            "/api/v1/links",
            Some(&b),
            Some(json!({"destinationUrl": "https://example.com/", "domain": "a.example"})),
        )
        .await
        .assert_error(400, "INVALID_REQUEST");
        // Untouched.
        let r = h.call("GET", &uri, Some(&a), None).await;
        assert_eq!(r.data()["httpsRedirect"], false);
        assert_eq!(r.data()["status"], "pending");
        h
    })
    .await;
}

#[tokio::test]
async fn dns_txt_verification_against_a_real_dns_server() {
    let Some(dns) = DnsServer::start().await else {
        return;
    };
    // Nothing listens on the HTTP port: the HTTP half says so.
    let closed = free_port();
    each(Some(dns.dns), closed, |h| {
        let dns = &dns;
        async move {
            let (team_id, key) = team(&h, "shop", "two").await;
            let d = add(&h, &key, "shop.example.test").await;
            let id = d["id"].as_str().unwrap().to_owned();
            let token = d["records"][0]["value"].as_str().unwrap().to_owned();
            let name = "_sling-challenge.shop.example.test";
            let verify = format!("/api/v1/domains/{id}/verify");

            // 1. No record.
            let head = h.feed_head().await;
            let r = h.call("POST", &verify, Some(&key), None).await;
            assert_eq!(r.status, 200, "{}", r.json);
            assert_eq!(r.data()["status"], "pending");
            assert_eq!(r.data()["verified"], false);
            let reason = r.data()["failureReason"].as_str().unwrap().to_owned();
            assert!(reason.contains(&format!("no TXT record at {name}")), "{reason}");
            assert!(reason.contains("HTTP token: connection refused"), "{reason}");
            assert_eq!(h.feed_head().await, head, "a failed check publishes nothing");

            // 2. A record with the wrong value.
            dns.set_txt(name, "not-the-token").await;
            let r = h.call("POST", &verify, Some(&key), None).await;
            assert_eq!(r.data()["status"], "pending");
            let reason = r.data()["failureReason"].as_str().unwrap();
            assert!(
                reason.contains(&format!("TXT record found at {name} but its value does not match")),
                "{reason}"
            );
            // Links still refused.
            h.call(
                "POST",
                "/api/v1/links",
                Some(&key),
                Some(json!({"destinationUrl": "https://example.com/", "domain": "shop.example.test"})),
            )
            .await
            .assert_error(403, "DOMAIN_NOT_VERIFIED");

            // 3. The right value (beside the wrong one, as DNS allows).
            dns.set_txt(name, &token).await;
            let r = h.call("POST", &verify, Some(&key), None).await;
            assert_eq!(r.status, 200, "{}", r.json);
            let v = r.data();
            assert_eq!(v["status"], "verified");
            assert_eq!(v["verified"], true);
            assert_eq!(v["verifyMethod"], "dns");
            assert!(v["failureReason"].is_null());
            assert!(v["verifiedAt"].as_str().unwrap().ends_with('Z'));

            // The event, the feed ops, the certificate order; the token is no longer served.
            let events = db::outbox::list_for_team(&h.db.pool, &team_id).await.unwrap();
            assert_eq!(events.len(), 1, "{events:?}");
            let e = &events[0];
            assert!(e.id.starts_with("evt_"));
            assert_eq!(e.event_type, "domain.verified");
            assert_eq!(e.payload["domainId"], id.as_str());
            assert_eq!(e.payload["host"], "shop.example.test");
            assert_eq!(e.payload["teamId"], team_id.as_str());
            assert_eq!(e.payload["method"], "dns");
            assert_eq!(e.payload["verifiedAt"], v["verifiedAt"]);
            let ops = h.changes_after(head).await;
            assert!(
                matches!(&ops[..], [ChangeOp::UpsertDomain { host, .. }, ChangeOp::TlsChanged]
                    if host == "shop.example.test"),
                "{ops:?}"
            );
            let orders = count(
                &h,
                &format!(
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM acme_orders WHERE domain_id = '{id}' \
                     AND state = 'due' AND kind = 'issue'"
                ),
            )
            .await;
            assert_eq!(orders, 1);
            assert!(well_known_bodies(&h, "shop.example.test").await.is_empty());

            // Links may use it now.
            let r = h
                .call(
                    "POST",
                    "/api/v1/links",
                    Some(&key),
                    Some(json!({"destinationUrl": "https://example.com/", "domain": "shop.example.test"})),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.json);

            // Verifying again is a no-op: no second event, nothing published.
            let head = h.feed_head().await;
            let r = h.call("POST", &verify, Some(&key), None).await;
            assert_eq!(r.data()["status"], "verified");
            assert_eq!(h.feed_head().await, head);
            assert_eq!(
                db::outbox::list_for_team(&h.db.pool, &team_id).await.unwrap().len(),
                1
            );
            dns.clear_txt(name).await;
            h
        }
    })
    .await;
}

#[tokio::test]
async fn http_token_verification_and_its_failures() {
    // The token server answers one known path with a wrong body; the real token is added once
    // the domain exists (a second server, as the token is random).
    let Some(dns) = DnsServer::start().await else {
        return;
    };
    // pebble-challtestsrv answers every A query with 127.0.0.1: the host "points at" the server.
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let wrong = TokenServer::start(vec![]).await;
        let Some(h) = Harness::new_with(kind, |c| configure(c, Some(dns.dns), wrong.port)).await
        else {
            continue;
        };
        let (_, key) = team(&h, "shop", "two").await;
        let d = add(&h, &key, "web.example.test").await;
        let id = d["id"].as_str().unwrap().to_owned();
        let token = d["records"][0]["value"].as_str().unwrap().to_owned();
        let path = format!("/.well-known/sling-verify/{token}");

        // 404 from the server.
        let r = h
            .call(
                "POST",
                &format!("/api/v1/domains/{id}/verify"),
                Some(&key),
                None,
            )
            .await;
        let reason = r.data()["failureReason"].as_str().unwrap();
        assert!(reason.contains("HTTP token: 404"), "{reason}");
        drop(wrong);

        // Wrong body, then the right one, each on its own server and harness port.
        for (body, expect) in [
            ("nope", Some("HTTP token: wrong body")),
            (token.as_str(), None),
        ] {
            let server = TokenServer::start(vec![(path.clone(), body.to_owned())]).await;
            let mut cfg = h.state.config.verify.clone();
            cfg.http_port = server.port;
            let row = db::domains::get_own(&h.db.pool, &d_team(&h, &id).await, &id)
                .await
                .unwrap()
                .unwrap();
            let state = with_verify(&h, cfg);
            let after = sling_control::api::domains::check_and_record(&state, row, false)
                .await
                .unwrap();
            match expect {
                Some(msg) => {
                    assert!(!after.verified);
                    let reason = after.failure_reason.unwrap();
                    assert!(reason.contains(msg), "{reason}");
                }
                None => {
                    assert!(after.verified);
                    assert_eq!(after.status, "verified");
                    assert_eq!(after.verify_method.as_deref(), Some("http"));
                }
            }
        }
        h.cleanup().await;
    }
}

/// The team owning domain `id`.
async fn d_team(h: &Harness, id: &str) -> String {
    sqlx::query("SELECT team_id FROM domains WHERE id = $1")
        .bind(id)
        .fetch_one(&h.db.pool)
        .await
        .unwrap()
        .try_get::<String, _>(0)
        .unwrap()
}

/// `h`'s state with another verification config (same database).
fn with_verify(h: &Harness, verify: VerifyConfig) -> sling_control::AppState {
    let mut config = (*h.state.config).clone();
    config.verify = verify;
    sling_control::AppState::new(h.db.clone(), config)
}

#[tokio::test]
async fn pending_domains_are_rechecked_then_failed_after_the_window() {
    let Some(dns) = DnsServer::start().await else {
        return;
    };
    let closed = free_port();
    each(Some(dns.dns), closed, |h| {
        let dns = &dns;
        async move {
            let (team_id, key) = team(&h, "shop", "two").await;
            let later = add(&h, &key, "later.example.test").await;
            let never = add(&h, &key, "never.example.test").await;
            // `never` was added long ago: its window (1 h here) is over.
            sqlx::query("UPDATE domains SET created_at = created_at - 7200000 WHERE id = $1")
                .bind(never["id"].as_str().unwrap())
                .execute(&h.db.pool)
                .await
                .unwrap();
            dns.set_txt(
                "_sling-challenge.later.example.test",
                later["records"][0]["value"].as_str().unwrap(),
            )
            .await;
            let (tx, rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(sling_control::api::domains::recheck_loop(
                h.state.clone(),
                rx,
            ));
            let get = |id: String| {
                let h = &h;
                let key = key.clone();
                async move {
                    h.call("GET", &format!("/api/v1/domains/{id}"), Some(&key), None)
                        .await
                        .data()
                        .clone()
                }
            };
            let mut done = false;
            for _ in 0..100 {
                let a = get(later["id"].as_str().unwrap().to_owned()).await;
                let b = get(never["id"].as_str().unwrap().to_owned()).await;
                if a["status"] == "verified" && b["status"] == "failed" {
                    let reason = b["failureReason"].as_str().unwrap();
                    assert!(reason.starts_with("not verified within 1 h"), "{reason}");
                    assert!(reason.contains("no TXT record"), "{reason}");
                    assert_eq!(b["verified"], false);
                    done = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tx.send_replace(true);
            task.await.unwrap();
            assert!(done, "the background check did not settle both domains");
            let events = db::outbox::list_for_team(&h.db.pool, &team_id)
                .await
                .unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].payload["host"], "later.example.test");
            // A failed domain stays out of the background loop but may be retried by hand.
            let pending = db::domains::pending(&h.db, 100).await.unwrap();
            assert!(pending.is_empty(), "{pending:?}");
            dns.clear_txt("_sling-challenge.later.example.test").await;
            h
        }
    })
    .await;
}

#[tokio::test]
async fn delete_removes_links_answers_order_and_certificate() {
    each(None, 1, |h| async move {
        let (team_id, key) = team(&h, "shop", "two").await;
        let d = add(&h, &key, "gone.example").await;
        let id = d["id"].as_str().unwrap().to_owned();
        // Verified by hand (the DNS tests cover the real path), with links, an order, a
        // certificate and an ACME answer.
        sqlx::query("UPDATE domains SET verified = 1, status = 'active' WHERE id = $1")
            .bind(&id)
            .execute(&h.db.pool)
            .await
            .unwrap();
        for slug in ["one", "two"] {
            let r = h
                .call(
                    "POST",
                    "/api/v1/links",
                    Some(&key),
                    Some(
                        json!({"destinationUrl": "https://example.com/", "domain": "gone.example",
                                "slug": slug, "tags": ["t"]}),
                    ),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.json);
        }
        let keep = h
            .call(
                "POST",
                "/api/v1/links",
                Some(&key),
                Some(json!({"destinationUrl": "https://example.com/", "slug": "keep"})),
            )
            .await;
        assert_eq!(keep.status, 201, "{}", keep.json);
        let mut conn = h.db.pool.acquire().await.unwrap();
        db::well_known::put(
            &mut conn,
            "gone.example",
            "/.well-known/acme-challenge/x",
            "x.y",
            i64::MAX,
        )
        .await
        .unwrap();
        db::domains::request_certificate(&mut conn, &id, 1)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO certificates (domain_id, host, chain_pem, key_sealed, not_before, \
             not_after, issued_at) VALUES ($1, 'gone.example', 'pem', 'sealed', 1, 2, 1)",
        )
        .bind(&id)
        .execute(&mut *conn)
        .await
        .unwrap();
        drop(conn);

        let head = h.feed_head().await;
        let r = h
            .call("DELETE", &format!("/api/v1/domains/{id}"), Some(&key), None)
            .await;
        assert_eq!(r.status, 204, "{}", r.json);
        let ops = h.changes_after(head).await;
        assert!(
            matches!(&ops[..], [ChangeOp::DeleteDomain { host }, ChangeOp::TlsChanged]
                if host == "gone.example"),
            "{ops:?}"
        );
        for (table, col) in [
            ("links", "domain_id"),
            ("acme_orders", "domain_id"),
            ("certificates", "domain_id"),
            ("domains", "id"),
        ] {
            let n = count(
                &h,
                &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table} WHERE {col} = '{id}'"),
            )
            .await;
            assert_eq!(n, 0, "{table}");
        }
        assert!(well_known_bodies(&h, "gone.example").await.is_empty());
        assert_eq!(h.link_count().await, 1, "the default domain's link stays");
        let tags = count(&h, "SELECT CAST(COUNT(*) AS BIGINT) FROM link_tags").await;
        assert_eq!(tags, 0);
        let events = db::outbox::list_for_team(&h.db.pool, &team_id)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "domain.deleted");
        assert_eq!(events[0].payload["linksDeleted"], 2);
        h.call("GET", &format!("/api/v1/domains/{id}"), Some(&key), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.call("DELETE", &format!("/api/v1/domains/{id}"), Some(&key), None)
            .await
            .assert_error(404, "NOT_FOUND");

        // The default domain cannot be deleted, even by the admin.
        let list = h.admin("GET", "/api/v1/domains", None).await;
        let default_id = list.data()["items"][0]["id"].as_str().unwrap().to_owned();
        let before = domain_count(&h).await;
        for key in [key.as_str(), h.key.as_str()] {
            h.call(
                "DELETE",
                &format!("/api/v1/domains/{default_id}"),
                Some(key),
                None,
            )
            .await
            .assert_error(403, "FORBIDDEN");
        }
        let premium = db::domains::by_host(&h.db.pool, "kfc.example")
            .await
            .unwrap()
            .unwrap();
        // A premium domain is not one of the team's domains at all.
        h.admin("DELETE", &format!("/api/v1/domains/{}", premium.id), None)
            .await
            .assert_error(404, "NOT_FOUND");
        assert_eq!(domain_count(&h).await, before);
        h
    })
    .await;
}

#[tokio::test]
async fn patch_https_redirect_publishes_tls_changes_only_when_it_changes() {
    each(None, 1, |h| async move {
        let (_, key) = team(&h, "shop", "two").await;
        let d = add(&h, &key, "tls.example").await;
        let uri = format!("/api/v1/domains/{}", d["id"].as_str().unwrap());
        let head = h.feed_head().await;
        let r = h
            .call(
                "PATCH",
                &uri,
                Some(&key),
                Some(json!({"httpsRedirect": true})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["httpsRedirect"], true);
        let ops = h.changes_after(head).await;
        assert!(
            matches!(
                &ops[..],
                [ChangeOp::UpsertDomain { .. }, ChangeOp::TlsChanged]
            ),
            "{ops:?}"
        );
        let head = h.feed_head().await;
        let r = h
            .call(
                "PATCH",
                &uri,
                Some(&key),
                Some(json!({"httpsRedirect": true})),
            )
            .await;
        assert_eq!(r.data()["httpsRedirect"], true);
        let ops = h.changes_after(head).await;
        assert!(
            matches!(&ops[..], [ChangeOp::UpsertDomain { .. }]),
            "{ops:?}"
        );
        // Stored; a wrong type changes nothing.
        h.call(
            "PATCH",
            &uri,
            Some(&key),
            Some(json!({"httpsRedirect": "yes"})),
        )
        .await
        .assert_error(400, "INVALID_REQUEST");
        let r = h.call("GET", &uri, Some(&key), None).await;
        assert_eq!(r.data()["httpsRedirect"], true);
        h
    })
    .await;
}

#[tokio::test]
async fn links_are_refused_on_unverified_domains_on_create_and_move() {
    each(None, 1, |h| async move {
        let (_, key) = team(&h, "shop", "two").await;
        add(&h, &key, "new.example").await;
        let links_before = h.link_count().await;
        let r = h
            .call(
                "POST",
                "/api/v1/links",
                Some(&key),
                Some(json!({"destinationUrl": "https://example.com/", "domain": "new.example"})),
            )
            .await;
        r.assert_error(403, "DOMAIN_NOT_VERIFIED");
        assert!(r.json["error"]["message"].as_str().unwrap().contains("new.example"));
        // Bulk create reports it per item.
        let r = h
            .call(
                "POST",
                "/api/v1/links/bulk",
                Some(&key),
                Some(json!({"links": [{"destinationUrl": "https://example.com/", "domain": "new.example"}]})),
            )
            .await;
        assert!(r.json.to_string().contains("DOMAIN_NOT_VERIFIED"), "{}", r.json);
        // Moving a link there is refused and leaves it where it was.
        let l = h
            .call(
                "POST",
                "/api/v1/links",
                Some(&key),
                Some(json!({"destinationUrl": "https://example.com/", "slug": "stay"})),
            )
            .await;
        assert_eq!(l.status, 201, "{}", l.json);
        let uri = format!("/api/v1/links/{}", l.data()["id"].as_str().unwrap());
        h.call("PATCH", &uri, Some(&key), Some(json!({"domain": "new.example"})))
            .await
            .assert_error(403, "DOMAIN_NOT_VERIFIED");
        let r = h.call("GET", &uri, Some(&key), None).await;
        assert_eq!(r.data()["domain"], "sho.rt");
        assert_eq!(h.link_count().await, links_before + 1);
        h
    })
    .await;
}

#[tokio::test]
async fn openapi_documents_the_domain_operations() {
    each(None, 1, |h| async move {
        let r = h.call("GET", "/api/openapi.json", None, None).await;
        let paths = &r.json["paths"];
        let create = &paths["/api/v1/domains"]["post"];
        for status in ["201", "400", "403", "409"] {
            assert!(create["responses"][status].is_object(), "{status}");
        }
        assert!(
            create["responses"]["409"]["description"]
                .as_str()
                .unwrap()
                .contains("DOMAIN_EXISTS")
        );
        assert!(paths["/api/v1/domains/{id}/verify"]["post"]["responses"]["200"].is_object());
        assert!(paths["/api/v1/domains/{id}"]["delete"]["responses"]["204"].is_object());
        h
    })
    .await;
}
