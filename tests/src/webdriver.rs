//! A real browser for tests: Debian's `chromium` driven through `chromedriver` over the W3C
//! WebDriver protocol (plain JSON over HTTP with reqwest; the handful of commands the tests use
//! did not justify a WebDriver crate). Only standard endpoints are used, never script execution,
//! so pages under a script-free Content-Security-Policy are inspected as a visitor sees them.
//!
//! [`Browser::start`] returns `None` (with a message) when chromium or chromedriver is missing,
//! and panics instead when `CI=true` (CI installs `chromium chromium-driver`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The first of `names` on `PATH`.
pub fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver (killed on drop) with one headless chromium session.
pub struct Browser {
    _driver: Child,
    _profile: tempfile::TempDir,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/<id>`
    session: String,
}

impl Browser {
    pub async fn start(what: &str) -> Option<Browser> {
        let chromium = find_binary(&["chromium", "chromium-browser"]);
        let chromedriver = find_binary(&["chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{what} needs chromium and chromedriver when CI=true (apt-get install chromium chromium-driver)"
                );
            }
            eprintln!(
                "SKIPPING {what}: chromium or chromedriver not found (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = crate::free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=420,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
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
        Some(Browser {
            _driver: driver,
            _profile: profile,
            http,
            session: format!("{base}/session/{id}"),
        })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
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

    fn text_of(v: Value) -> String {
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn current_url(&self) -> String {
        Self::text_of(self.cmd(reqwest::Method::GET, "/url", None).await)
    }

    pub async fn title(&self) -> String {
        Self::text_of(self.cmd(reqwest::Method::GET, "/title", None).await)
    }

    pub async fn source(&self) -> String {
        Self::text_of(self.cmd(reqwest::Method::GET, "/source", None).await)
    }

    /// Ids of the elements matching `css`, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    /// The rendered text of an element.
    pub async fn text(&self, element: &str) -> String {
        Self::text_of(
            self.cmd(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await,
        )
    }

    /// An element's property (`href` resolves to an absolute URL).
    pub async fn property(&self, element: &str, name: &str) -> String {
        Self::text_of(
            self.cmd(
                reqwest::Method::GET,
                &format!("/element/{element}/property/{name}"),
                None,
            )
            .await,
        )
    }

    /// The computed value of a CSS property, as the browser applied the page's styles.
    pub async fn css(&self, element: &str, property: &str) -> String {
        Self::text_of(
            self.cmd(
                reqwest::Method::GET,
                &format!("/element/{element}/css/{property}"),
                None,
            )
            .await,
        )
    }

    /// `{x, y, width, height}` of an element.
    pub async fn rect(&self, element: &str) -> Value {
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{element}/rect"),
            None,
        )
        .await
    }

    /// Types `text` into an element (an input).
    pub async fn type_into(&self, element: &str, text: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, element: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .unwrap();
        std::fs::write(to, png).unwrap();
        eprintln!("screenshot: {}", to.display());
    }

    /// Waits until the title is `want` (navigation is asynchronous).
    pub async fn wait_title(&self, want: &str) {
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

    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
