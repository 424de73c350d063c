//! The redirect rules of PRODUCT.md ("What the proxy does with `GET /{slug}`"), in order, as two
//! tables: the pure decision for every combination of request facts (cookie, this proxy's click
//! count, device, country, method), and the same rules over a real socket, each answer checked for
//! status, `Location`, cookie and page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Method;
use sling_proxy::overlay::Overlay;
use sling_proxy::router::{Decision, Device, Facts, FormFactor, Platform, View, route_with};
use sling_proxy::snapshot::LoadedSnapshot;
use sling_proxy::{Config, Listeners};
use sling_shared::link::{DomainPages, DomainRecord, LinkRecord, PageText, Param, Target};
use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const NOW: i64 = 1_700_000_000_000;

fn link(id: &str, dest: &str, edit: impl FnOnce(&mut LinkRecord)) -> LinkRecord {
    let mut l = LinkRecord::plain(id, dest);
    edit(&mut l);
    l
}

fn targets(pairs: &[(&str, &str)]) -> Vec<Target> {
    pairs
        .iter()
        .map(|(k, u)| Target {
            key: (*k).into(),
            url: (*u).into(),
        })
        .collect()
}

/// Every rule the list can produce, one link per combination.
fn body(password_hash: &str) -> SnapshotBody {
    let mut body = SnapshotBody::new("sho.rt");
    let hash = || Some(password_hash.to_owned());
    let mut add = |slug: &str, l: LinkRecord| body.insert_link("sho.rt", slug, l);
    add("plain", link("plain", "https://d.example/plain", |_| {}));
    add(
        "off",
        link("off", "https://d.example/off", |l| l.active = false),
    );
    add(
        "arch",
        link("arch", "https://d.example/arch", |l| l.archived = true),
    );
    add(
        "exp",
        link("exp", "https://d.example/exp", |l| {
            l.expires_at_ms = Some(NOW - 1)
        }),
    );
    add(
        "expurl",
        link("expurl", "https://d.example/expurl", |l| {
            l.expires_at_ms = Some(NOW - 1);
            l.expired_url = Some("https://d.example/was".into());
            l.password_hash = hash();
            l.click_limit = Some(1);
            l.click_limit_reached = true;
        }),
    );
    add(
        "lim",
        link("lim", "https://d.example/lim", |l| l.click_limit = Some(3)),
    );
    add(
        "limpub",
        link("limpub", "https://d.example/limpub", |l| {
            l.click_limit = Some(1000);
            l.click_limit_reached = true;
        }),
    );
    add(
        "pw",
        link("pw", "https://d.example/pw", |l| l.password_hash = hash()),
    );
    add(
        "pwoff",
        link("pwoff", "https://d.example/pwoff", |l| {
            l.password_hash = hash();
            l.active = false;
        }),
    );
    add(
        "pwlim",
        link("pwlim", "https://d.example/pwlim", |l| {
            l.password_hash = hash();
            l.click_limit = Some(3);
        }),
    );
    add(
        "pwdev",
        link("pwdev", "https://d.example/pwdev", |l| {
            l.password_hash = hash();
            l.ios_url = Some("https://apps.example/pwdev".into());
        }),
    );
    add(
        "dev",
        link("dev", "https://d.example/dev", |l| {
            l.ios_url = Some("https://apps.example/ios".into());
            l.android_url = Some("https://play.example/android".into());
            l.device_targets = targets(&[
                ("ios", "https://t.example/ios"),
                ("android", "https://t.example/android"),
                ("mobile", "https://t.example/mobile"),
                ("tablet", "https://t.example/tablet"),
                ("desktop", "https://t.example/desktop"),
            ]);
            l.geo_targets = targets(&[("DE", "https://t.example/de")]);
        }),
    );
    add(
        "keys",
        link("keys", "https://d.example/keys", |l| {
            l.device_targets = targets(&[
                ("ios", "https://t.example/k-ios"),
                ("mobile", "https://t.example/k-mobile"),
            ]);
        }),
    );
    add(
        "geo",
        link("geo", "https://d.example/geo", |l| {
            l.geo_targets = targets(&[
                ("DE", "https://t.example/de"),
                ("CN", "https://t.example/cn?utm_source=mine&k=v"),
            ]);
            l.utm = vec![Param {
                name: "utm_source".into(),
                value: "sling".into(),
            }];
        }),
    );
    add(
        "noq",
        link("noq", "https://d.example/noq", |l| {
            l.forward_query = false;
            l.device_targets = targets(&[("desktop", "https://t.example/noq-desk")]);
        }),
    );
    body.domains.insert(
        "go.example".into(),
        DomainRecord {
            id: "d-go".into(),
            host: "go.example".into(),
            root_redirect: Some("https://d.example/home".into()),
            not_found_redirect: Some("https://d.example/nf".into()),
            pages: DomainPages::default(),
            links: [("go".to_string(), link("go", "https://d.example/go", |_| {}))].into(),
            bio_pages: Default::default(),
        },
    );
    // A domain with its own wording for the landing, 404 and 410 pages.
    body.domains.insert(
        "pages.example".into(),
        DomainRecord {
            id: "d-pages".into(),
            host: "pages.example".into(),
            root_redirect: None,
            not_found_redirect: None,
            pages: own_pages(),
            bio_pages: Default::default(),
            links: [
                ("p".to_string(), link("p", "https://d.example/p", |_| {})),
                (
                    "poff".to_string(),
                    link("poff", "https://d.example/poff", |l| l.active = false),
                ),
                (
                    "pexp".to_string(),
                    link("pexp", "https://d.example/pexp", |l| {
                        l.expires_at_ms = Some(NOW - 1)
                    }),
                ),
            ]
            .into(),
        },
    );
    body
}

fn own_pages() -> DomainPages {
    let text = |t: &str| {
        Some(PageText {
            title: t.into(),
            message: format!("{t} message"),
        })
    };
    DomainPages {
        landing: text("Welcome"),
        not_found: text("Nothing here"),
        gone: text("Gone for good"),
    }
}

/// The facts one row asserts: `cookie` (valid access cookie for every link), `clicks` (this
/// proxy's count), `device` (`ios-mobile`, `ios-tablet`, `android-mobile`, `android-tablet`,
/// `desktop`, `bot`), `country`.
struct Row {
    method: &'static str,
    host: &'static str,
    target: &'static str,
    cookie: bool,
    clicks: u64,
    device: &'static str,
    country: &'static str,
    want: &'static str,
}

fn device(spec: &str) -> Device {
    let (platform, form) = match spec {
        "ios-mobile" => (Platform::Ios, FormFactor::Mobile),
        "ios-tablet" => (Platform::Ios, FormFactor::Tablet),
        "android-mobile" => (Platform::Android, FormFactor::Mobile),
        "android-tablet" => (Platform::Android, FormFactor::Tablet),
        "other-mobile" => (Platform::Other, FormFactor::Mobile),
        "desktop" => (Platform::Other, FormFactor::Desktop),
        _ => (Platform::Other, FormFactor::Unknown),
    };
    Device {
        platform,
        form,
        bot: false,
    }
}

fn show(d: &Decision<'_>) -> String {
    match d {
        Decision::Redirect(r) => format!(
            "{} {}{}",
            r.status.as_u16(),
            r.location,
            if r.count_click { "" } else { " (no click)" }
        ),
        Decision::Landing(None) => "landing".into(),
        Decision::Landing(Some(p)) => format!("landing '{}'", p.title),
        Decision::NotFound(None) => "404".into(),
        Decision::NotFound(Some(p)) => format!("404 '{}'", p.title),
        Decision::Gone(reason, None) => format!("410 {reason:?}"),
        Decision::Gone(reason, Some(p)) => format!("410 {reason:?} '{}'", p.title),
        Decision::MethodNotAllowed => "405".into(),
        Decision::UriTooLong => "414".into(),
        Decision::Locked(l) => format!("401 form {}", l.link_id),
        Decision::Unlock(l) => format!("verify {}", l.link_id),
        Decision::BioPage(p) => format!("bio {}", p.id()),
    }
}

const fn row(
    method: &'static str,
    target: &'static str,
    cookie: bool,
    clicks: u64,
    device: &'static str,
    country: &'static str,
    want: &'static str,
) -> Row {
    Row {
        method,
        host: "sho.rt",
        target,
        cookie,
        clicks,
        device,
        country,
        want,
    }
}

#[test]
fn rule_order_over_every_combination() {
    let bytes = encode(&body("H"), 7, NOW).unwrap();
    let snap = LoadedSnapshot::from_bytes(&bytes).unwrap();
    let overlay = Overlay::new();
    let view = View::new(Some(&snap), &overlay, "sho.rt");
    let d = "desktop";
    let rows = [
        // 2. host → domain; `/` → root redirect or landing.
        row("GET", "/", false, 0, d, "", "landing"),
        Row {
            host: "go.example",
            ..row(
                "GET",
                "/",
                false,
                0,
                d,
                "",
                "302 https://d.example/home (no click)",
            )
        },
        Row {
            host: "pages.example",
            ..row("GET", "/", false, 0, d, "", "landing 'Welcome'")
        },
        // 3. not found → not-found redirect or 404 (the domain's own page if it has one).
        row("GET", "/missing", false, 0, d, "", "404"),
        Row {
            host: "pages.example",
            ..row("GET", "/missing", false, 0, d, "", "404 'Nothing here'")
        },
        Row {
            host: "pages.example",
            ..row("GET", "/p", false, 0, d, "", "302 https://d.example/p")
        },
        Row {
            host: "pages.example",
            ..row(
                "GET",
                "/poff",
                false,
                0,
                d,
                "",
                "410 Disabled 'Gone for good'",
            )
        },
        Row {
            host: "pages.example",
            ..row(
                "GET",
                "/pexp",
                false,
                0,
                d,
                "",
                "410 Expired 'Gone for good'",
            )
        },
        Row {
            host: "go.example",
            ..row(
                "GET",
                "/missing",
                false,
                0,
                d,
                "",
                "302 https://d.example/nf (no click)",
            )
        },
        // 4. disabled / archived / expired / click limit, before the password.
        row("GET", "/off", true, 0, d, "", "410 Disabled"),
        row("GET", "/arch", false, 0, d, "", "410 Archived"),
        row("GET", "/exp", false, 0, d, "", "410 Expired"),
        // Expiry (with its URL) comes before the click limit and the password.
        row(
            "GET",
            "/expurl",
            false,
            0,
            d,
            "",
            "302 https://d.example/was (no click)",
        ),
        row(
            "POST",
            "/expurl",
            false,
            0,
            d,
            "",
            "302 https://d.example/was (no click)",
        ),
        row("GET", "/lim", false, 0, d, "", "302 https://d.example/lim"),
        row("GET", "/lim", false, 2, d, "", "302 https://d.example/lim"),
        row("GET", "/lim", false, 3, d, "", "410 ClickLimit"),
        row("HEAD", "/lim", false, 3, d, "", "410 ClickLimit"),
        row("GET", "/limpub", false, 0, d, "", "410 ClickLimit"),
        row("GET", "/pwoff", true, 0, d, "", "410 Disabled"),
        row("POST", "/pwoff", false, 0, d, "", "410 Disabled"),
        row("GET", "/pwlim", true, 3, d, "", "410 ClickLimit"),
        row("POST", "/pwlim", false, 3, d, "", "410 ClickLimit"),
        // 5. password: the form without a valid cookie, the redirect with one; POST verifies.
        row("GET", "/pw", false, 0, d, "", "401 form pw"),
        row("HEAD", "/pw", false, 0, d, "", "401 form pw"),
        row(
            "GET",
            "/pw?x=1",
            true,
            0,
            d,
            "",
            "302 https://d.example/pw?x=1",
        ),
        row(
            "HEAD",
            "/pw",
            true,
            0,
            d,
            "",
            "302 https://d.example/pw (no click)",
        ),
        row("POST", "/pw", false, 0, d, "", "verify pw"),
        row("POST", "/pw", true, 0, d, "", "verify pw"),
        row(
            "GET",
            "/pwlim",
            true,
            2,
            d,
            "",
            "302 https://d.example/pwlim",
        ),
        row(
            "GET",
            "/pwdev",
            false,
            0,
            "ios-mobile",
            "",
            "401 form pwdev",
        ),
        row(
            "GET",
            "/pwdev",
            true,
            0,
            "ios-mobile",
            "",
            "302 https://apps.example/pwdev",
        ),
        // POST anywhere else is refused.
        row("POST", "/plain", false, 0, d, "", "405"),
        row("POST", "/missing", false, 0, d, "", "405"),
        row("POST", "/", false, 0, d, "", "405"),
        row("PUT", "/pw", false, 0, d, "", "405"),
        // 6. targets: platform URL, then device key (platform before form factor), then geo.
        row(
            "GET",
            "/dev",
            false,
            0,
            "ios-mobile",
            "DE",
            "302 https://apps.example/ios",
        ),
        row(
            "GET",
            "/dev",
            false,
            0,
            "ios-tablet",
            "",
            "302 https://apps.example/ios",
        ),
        row(
            "GET",
            "/dev",
            false,
            0,
            "android-tablet",
            "",
            "302 https://play.example/android",
        ),
        row(
            "GET",
            "/dev",
            false,
            0,
            "other-mobile",
            "DE",
            "302 https://t.example/mobile",
        ),
        row(
            "GET",
            "/dev",
            false,
            0,
            d,
            "DE",
            "302 https://t.example/desktop",
        ),
        row(
            "GET",
            "/dev",
            false,
            0,
            "bot",
            "DE",
            "302 https://t.example/de",
        ),
        row(
            "GET",
            "/dev",
            false,
            0,
            "bot",
            "FR",
            "302 https://d.example/dev",
        ),
        row(
            "GET",
            "/keys",
            false,
            0,
            "ios-tablet",
            "",
            "302 https://t.example/k-ios",
        ),
        row(
            "GET",
            "/keys",
            false,
            0,
            "android-mobile",
            "",
            "302 https://t.example/k-mobile",
        ),
        row(
            "GET",
            "/keys",
            false,
            0,
            "android-tablet",
            "",
            "302 https://d.example/keys",
        ),
        row(
            "GET",
            "/keys",
            false,
            0,
            d,
            "",
            "302 https://d.example/keys",
        ),
        row(
            "GET",
            "/geo",
            false,
            0,
            "ios-mobile",
            "DE",
            "302 https://t.example/de?utm_source=sling",
        ),
        row(
            "GET",
            "/geo",
            false,
            0,
            d,
            "",
            "302 https://d.example/geo?utm_source=sling",
        ),
        // The target's own conflicting UTM parameter is replaced, others kept; query forwarded.
        row(
            "GET",
            "/geo?q=1",
            false,
            0,
            d,
            "CN",
            "302 https://t.example/cn?k=v&utm_source=sling&q=1",
        ),
        row(
            "GET",
            "/noq?q=1",
            false,
            0,
            d,
            "",
            "302 https://t.example/noq-desk",
        ),
        row(
            "GET",
            "/plain?q=1",
            false,
            0,
            d,
            "",
            "302 https://d.example/plain?q=1",
        ),
    ];
    let mut failures = Vec::new();
    for r in &rows {
        let (path, query) = match r.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (r.target, None),
        };
        let cookie = r.cookie;
        let clicks = r.clicks;
        let dev = device(r.device);
        let country: Option<[u8; 2]> = r.country.as_bytes().try_into().ok();
        let unlocked = move |_: &str, hash: &str| cookie && hash == "H";
        let local = move |_: &str| clicks;
        let device = move || dev;
        let country = move || country;
        let facts = Facts {
            now_ms: NOW,
            unlocked: &unlocked,
            local_clicks: &local,
            device: &device,
            country: &country,
        };
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let got = show(&route_with(r.host, path, query, &method, &view, &facts));
        if got != r.want {
            failures.push(format!(
                "{} {}{} cookie={} clicks={} device={} country={}\n   want {}\n    got {got}",
                r.method, r.host, r.target, r.cookie, r.clicks, r.device, r.country, r.want
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Device and country are learned only for links that target them.
#[test]
fn plain_links_never_ask_for_device_or_country() {
    let bytes = encode(&body("H"), 7, NOW).unwrap();
    let snap = LoadedSnapshot::from_bytes(&bytes).unwrap();
    let overlay = Overlay::new();
    let view = View::new(Some(&snap), &overlay, "sho.rt");
    let device = || -> Device { panic!("device asked") };
    let country = || -> Option<[u8; 2]> { panic!("country asked") };
    let facts = Facts {
        device: &device,
        country: &country,
        ..Facts::none(NOW)
    };
    for path in ["/plain", "/lim", "/pw", "/missing", "/"] {
        route_with("sho.rt", path, None, &Method::GET, &view, &facts);
    }
}

// ---- Over a real socket -------------------------------------------------------------------

struct Running {
    proxy: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(dir: &Path, password: &str) -> Running {
    let hash = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    };
    // Real time: the table's links must not be expired relative to the wall clock except `exp`.
    let mut body = body(&hash);
    for domain in body.domains.values_mut() {
        for l in domain.links.values_mut() {
            if let Some(at) = l.expires_at_ms.as_mut() {
                *at = 1;
            }
        }
    }
    write_atomic(dir, 7, &encode(&body, 7, NOW).unwrap()).unwrap();
    let mut config = Config::new(dir);
    config.clicks.enabled = false;
    config.cookie_secret = Some("test secret".into());
    let listeners = Listeners {
        proxy: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let proxy = listeners.proxy.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sling_proxy::run_with_listeners(
        config,
        listeners,
        async move {
            let _ = stopped.await;
        },
    ));
    Running { proxy, stop, task }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `status location-or-page cookie?`: the page is named by its `<title>`.
async fn answer(resp: reqwest::Response) -> String {
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.text().await.unwrap();
    let mut out = format!("{status}");
    if let Some(l) = location {
        out.push_str(&format!(" -> {l}"));
    }
    if let Some(t) = body
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
    {
        out.push_str(&format!(" [{t}]"));
    }
    if body.contains("role=\"alert\"") {
        out.push_str(" alert");
    }
    if let Some(c) = cookie {
        let name = c.split('=').next().unwrap_or("");
        out.push_str(&format!(" cookie {name}"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
    }
    if retry.is_some() {
        out.push_str(" retry-after");
    }
    out
}

#[tokio::test]
async fn rules_over_http_status_location_cookie_page() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), "hunter2").await;
    let c = client();
    let base = format!("http://{}", running.proxy);
    let get = |path: &str, lang: &str| {
        c.get(format!("{base}{path}"))
            .header("host", "sho.rt")
            .header("accept-language", lang)
    };
    let post = |path: &str, form: &str| {
        c.post(format!("{base}{path}"))
            .header("host", "sho.rt")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
    };
    let mut got = Vec::new();
    let mut push = |what: &str, s: String| got.push(format!("{what}: {s}"));
    push(
        "landing",
        answer(get("/", "en").send().await.unwrap()).await,
    );
    push(
        "landing zh",
        answer(get("/", "zh-CN,zh;q=0.9").send().await.unwrap()).await,
    );
    push(
        "404",
        answer(get("/missing", "en").send().await.unwrap()).await,
    );
    push(
        "404 zh",
        answer(get("/missing", "fr, zh;q=0.5").send().await.unwrap()).await,
    );
    push(
        "410 off",
        answer(get("/off", "").send().await.unwrap()).await,
    );
    push(
        "410 exp",
        answer(get("/exp", "").send().await.unwrap()).await,
    );
    push(
        "expired url",
        answer(get("/expurl", "").send().await.unwrap()).await,
    );
    push(
        "410 limit published",
        answer(get("/limpub", "").send().await.unwrap()).await,
    );
    // This proxy's own count: HEAD is free, three GETs pass, the fourth is refused.
    push(
        "lim head",
        answer(
            c.head(format!("{base}/lim"))
                .header("host", "sho.rt")
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    // A crawler is served and spends none of it: the limit counts human clicks.
    push(
        "lim bot",
        answer(
            get("/lim", "")
                .header(
                    "user-agent",
                    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                )
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    for i in 1..=4 {
        push(
            &format!("lim {i}"),
            answer(get("/lim", "").send().await.unwrap()).await,
        );
    }
    push(
        "form",
        answer(get("/pw?x=1", "").send().await.unwrap()).await,
    );
    push(
        "form zh",
        answer(get("/pw", "zh").send().await.unwrap()).await,
    );
    push(
        "wrong",
        answer(post("/pw?x=1", "password=nope").send().await.unwrap()).await,
    );
    push(
        "no field",
        answer(post("/pw?x=1", "pass=1").send().await.unwrap()).await,
    );
    let right = post("/pw?x=1", "password=hunter2").send().await.unwrap();
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("Path=/pw;") && !cookie.contains("Secure"),
        "{cookie}"
    );
    push("right", answer(right).await);
    let pair = cookie.split(';').next().unwrap().to_owned();
    push(
        "with cookie",
        answer(
            get("/pw?x=1", "")
                .header("cookie", pair.clone())
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    push(
        "cookie of another link",
        answer(
            get("/pwdev", "")
                .header("cookie", pair.replace("sling_pw_pw=", "sling_pw_pwdev="))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    // Five attempts per client and link, then 429 (the right password is not even checked).
    push(
        "wrong 3",
        answer(post("/pw", "password=a").send().await.unwrap()).await,
    );
    push(
        "wrong 4",
        answer(post("/pw", "password=b").send().await.unwrap()).await,
    );
    push(
        "throttled",
        answer(post("/pw", "password=hunter2").send().await.unwrap()).await,
    );
    push(
        "other link unthrottled",
        answer(post("/pwdev", "password=c").send().await.unwrap()).await,
    );
    push(
        "post plain",
        answer(post("/plain", "password=x").send().await.unwrap()).await,
    );
    let big = format!("password={}", "a".repeat(10_000));
    push(
        "oversized form",
        answer(post("/pwdev", &big).send().await.unwrap()).await,
    );

    let want = [
        "landing: 200 [Short links]",
        "landing zh: 200 [短链接]",
        "404: 404 [Link not found]",
        "404 zh: 404 [链接不存在]",
        "410 off: 410 [Link unavailable]",
        "410 exp: 410 [Link expired]",
        "expired url: 302 -> https://d.example/was",
        "410 limit published: 410 [Link unavailable]",
        "lim head: 302 -> https://d.example/lim",
        "lim bot: 302 -> https://d.example/lim",
        "lim 1: 302 -> https://d.example/lim",
        "lim 2: 302 -> https://d.example/lim",
        "lim 3: 302 -> https://d.example/lim",
        "lim 4: 410 [Link unavailable]",
        "form: 401 [Password required]",
        "form zh: 401 [需要密码]",
        "wrong: 401 [Password required] alert",
        "no field: 400 [Password required] alert",
        "right: 303 -> /pw?x=1 cookie sling_pw_pw",
        "with cookie: 302 -> https://d.example/pw?x=1",
        "cookie of another link: 401 [Password required]",
        "wrong 3: 401 [Password required] alert",
        "wrong 4: 401 [Password required] alert",
        "throttled: 429 [Too many attempts] retry-after",
        "other link unthrottled: 401 [Password required] alert",
        "post plain: 405 [Method not allowed]",
        "oversized form: 400 [Password required] alert",
    ];
    assert_eq!(got.join("\n"), want.join("\n"));
    running.stop.send(()).unwrap();
    running.task.await.unwrap().unwrap();
}
