//! A real browser against a real proxy: Debian's `chromium` driven through `chromedriver`
//! (`sling_e2e::webdriver`). It opens a password-protected short link, sees the form, types a
//! wrong then the right password and lands on a destination served by a tiny local server; it
//! saves screenshots of the password, 404 and 410 pages under `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Without chromium and chromedriver the test is skipped with a message, and fails when `CI=true`
//! (CI installs `chromium chromium-driver`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sling_proxy::{Config, Listeners};
use sling_shared::link::LinkRecord;
use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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
    let Some(s) = sling_e2e::webdriver::Browser::start("the password browser test").await else {
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

    // The form.
    s.go(&format!("http://{proxy}/secret?ref=browser")).await;
    assert_eq!(s.title().await, "Password required");
    s.screenshot(&shots.join("password.png")).await;

    // A wrong password: the form again, with the error.
    s.type_into(&s.find("#password").await, "not it").await;
    s.click(&s.find("button[type=submit]").await).await;
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
    s.type_into(&s.find("#password").await, "open sesame").await;
    s.click(&s.find("button[type=submit]").await).await;
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
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
