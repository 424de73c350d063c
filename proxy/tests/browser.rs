//! A real browser against a real proxy: Debian's `chromium` driven through `chromedriver` over the
//! W3C WebDriver protocol (plain JSON over HTTP, spoken with the reqwest client the workspace
//! already has — the handful of commands used here did not justify a WebDriver crate). It opens a
//! password-protected short link, sees the form, types a wrong then the right password and lands
//! on a destination served by a tiny local server; it saves screenshots of the password, 404 and
//! 410 pages under `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Without chromium and chromedriver the test is skipped with a message, and fails when `CI=true`
//! (CI installs `chromium chromium-driver`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sling_proxy::{Config, Listeners};
use sling_shared::link::LinkRecord;
use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// `chromedriver` on a free port, killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(binary: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{}/status", driver.base)).send().await
            && r.status().is_success()
        {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One WebDriver session.
struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    async fn new(driver: &Driver, chromium: &Path, profile: &Path) -> Session {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=420,760",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let r: Value = http
            .post(format!("{}/session", driver.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Session {
            http,
            url: format!("{}/session/{id}", driver.base),
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            r["value"].get("error").is_none(),
            "webdriver {path}: {}",
            r["value"]
        );
        r["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn current_url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn title(&self) -> String {
        self.cmd(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .or_else(|| v["ELEMENT"].as_str())
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn screenshot(&self, to: &Path) {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::write(to, png).unwrap();
        eprintln!("screenshot: {}", to.display());
    }

    /// Waits until the title is `want` (navigation after a form POST is asynchronous).
    async fn wait_title(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.title().await;
            if t == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "title stayed {t:?}, wanted {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn close(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

/// The destination site: any path answers a small page titled "Destination".
async fn destination() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    let mut r = Response::new(Full::new(Bytes::from_static(
                        b"<!doctype html><html lang=\"en\"><title>Destination</title><h1>You made it</h1></html>",
                    )));
                    r.headers_mut()
                        .insert("content-type", "text/html".parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_flow_in_a_real_browser() {
    let chromium = find_binary(&["chromium", "chromium-browser"]);
    let chromedriver = find_binary(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "chromium and chromedriver are required when CI=true (apt-get install chromium chromium-driver)"
            );
        }
        eprintln!(
            "SKIPPING the browser test: chromium or chromedriver not found (apt-get install chromium chromium-driver)"
        );
        return;
    };

    let dest = destination().await;
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"browser-test-salt").unwrap();
        argon2::Argon2::default()
            .hash_password(b"open sesame", &salt)
            .unwrap()
            .to_string()
    };
    let mut body = SnapshotBody::new("localhost");
    let mut pw = LinkRecord::plain("lnk_pw", format!("http://{dest}/landed"));
    pw.password_hash = Some(hash);
    body.insert_link("localhost", "secret", pw);
    let mut off = LinkRecord::plain("lnk_off", format!("http://{dest}/off"));
    off.active = false;
    body.insert_link("localhost", "gone", off);
    write_atomic(dir.path(), 1, &encode(&body, 1, 0).unwrap()).unwrap();
    let mut config = Config::new(dir.path());
    config.clicks.enabled = false;
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

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let driver = start_driver(&chromedriver).await;
    let s = Session::new(&driver, &chromium, profile.path()).await;

    // The form.
    s.go(&format!("http://{proxy}/secret?ref=browser")).await;
    assert_eq!(s.title().await, "Password required");
    s.screenshot(&shots.join("password.png")).await;

    // A wrong password: the form again, with the error.
    s.type_into("#password", "not it").await;
    s.click("button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.source().await.contains("role=\"alert\"") {
        assert!(
            Instant::now() < deadline,
            "no error shown after a wrong password"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.screenshot(&shots.join("password-wrong.png")).await;

    // The right one: 303 to the same URL, which now redirects to the destination.
    s.type_into("#password", "open sesame").await;
    s.click("button[type=submit]").await;
    s.wait_title("Destination").await;
    let landed = s.current_url().await;
    assert_eq!(landed, format!("http://{dest}/landed?ref=browser"));

    // The cookie keeps the link open.
    s.go(&format!("http://{proxy}/secret")).await;
    s.wait_title("Destination").await;

    s.go(&format!("http://{proxy}/no-such-link")).await;
    assert_eq!(s.title().await, "Link not found");
    s.screenshot(&shots.join("404.png")).await;
    s.go(&format!("http://{proxy}/gone")).await;
    assert_eq!(s.title().await, "Link unavailable");
    s.screenshot(&shots.join("410.png")).await;

    s.close().await;
    drop(driver);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
