//! QR codes on SQLite and Postgres, read back by a real decoder: `zbarimg` (zbar-tools) decodes
//! every PNG, and every SVG after Debian's `chromium` has rendered it to a PNG. Without them the
//! decoding checks are skipped with a message, and fail when `CI=true` (CI installs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use common::{Harness, Resp, each_backend};
use serde_json::{Value, json};
use sling_e2e::webdriver::find_binary;
use sling_shared::clicks::{CLICKS_PATH, ClickBatch, ClickEvent};

/// `zbarimg`, or `None` (and a message) when it is missing outside CI.
fn zbarimg() -> Option<PathBuf> {
    let found = find_binary(&["zbarimg"]);
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "zbarimg is required when CI=true (apt-get install zbar-tools)"
        );
        eprintln!("SKIPPING QR decoding: zbarimg not found (apt-get install zbar-tools)");
    }
    found
}

fn chromium() -> Option<PathBuf> {
    let found = find_binary(&["chromium", "chromium-browser"]);
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is required when CI=true (apt-get install chromium)"
        );
        eprintln!("SKIPPING SVG decoding: chromium not found (apt-get install chromium)");
    }
    found
}

/// What zbar reads in the PNG at `png`, one line per code.
fn zbar_decode(zbar: &Path, png: &Path) -> String {
    let out = std::process::Command::new(zbar)
        .args(["--quiet", "--raw"])
        .arg(png)
        .output()
        .unwrap();
    if !out.status.success() {
        let kept = std::env::temp_dir().join("sling-qr-decode-failed.png");
        let _ = std::fs::copy(png, &kept);
        panic!(
            "zbarimg found no code (image kept as {}): {}",
            kept.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// Decodes a PNG; `None` when zbarimg is missing (outside CI).
fn decode_png(bytes: &[u8]) -> Option<String> {
    let zbar = zbarimg()?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("code.png");
    std::fs::write(&file, bytes).unwrap();
    Some(zbar_decode(&zbar, &file))
}

/// Renders an SVG of `size` pixels in chromium and decodes the screenshot.
fn decode_svg(svg: &[u8], size: u32) -> Option<String> {
    let zbar = zbarimg()?;
    let chromium = chromium()?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("code.svg");
    std::fs::write(&file, svg).unwrap();
    let shot = dir.path().join("shot.png");
    // A margin around the image, so the browser's own white frame only widens the quiet zone.
    let window = size + 40;
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", dir.path().join("profile").display()),
            &format!("--window-size={window},{window}"),
            &format!("--screenshot={}", shot.display()),
        ])
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(
        shot.is_file(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(zbar_decode(&zbar, &shot))
}

/// Width and height of a PNG.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
        .read_info()
        .unwrap();
    (reader.info().width, reader.info().height)
}

fn content_type(r: &Resp) -> &str {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn generate_draws_a_url_or_text_that_a_decoder_reads_back_without_a_key() {
    each_backend(|h| async move {
        let url = "https://example.com/spring?utm_source=poster&x=%C3%A9";
        let r = h
            .call(
                "POST",
                "/api/v1/qr/generate",
                None,
                Some(json!({"url": url, "format": "png", "size": 300,
                            "foregroundColor": "#1a237e", "backgroundColor": "#fffde7",
                            "errorCorrection": "H"})),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.json);
        assert_eq!(content_type(&r), "image/png");
        assert!(r.headers.contains_key("x-ratelimit-limit"));
        assert_eq!(png_size(&r.body), (300, 300));
        if let Some(text) = decode_png(&r.body) {
            assert_eq!(text, url);
        }

        // SVG is the default; round modules still read.
        let text = "Grüße aus Köln — line one\nline two";
        let r = h
            .call(
                "POST",
                "/api/v1/qr/generate",
                None,
                Some(json!({"text": text, "cornerRadius": 50, "size": 400})),
            )
            .await;
        let png = h
            .call(
                "POST",
                "/api/v1/qr/generate",
                None,
                Some(json!({"text": text, "cornerRadius": 50, "size": 400, "format": "png"})),
            )
            .await;
        if let Some(read) = decode_png(&png.body) {
            assert_eq!(read, text);
        }
        assert_eq!(r.status, 200, "{:?}", r.json);
        assert_eq!(content_type(&r), "image/svg+xml");
        assert!(r.body.starts_with(b"<svg "));
        if let Some(read) = decode_svg(&r.body, 400) {
            assert_eq!(read, text);
        }
        h
    })
    .await;
}

#[tokio::test]
async fn generate_refuses_bad_input_with_the_field_at_fault() {
    each_backend(|h| async move {
        let long = "x".repeat(3000);
        for (body, code, field) in [
            (json!({}), "INVALID_REQUEST", "url"),
            (
                json!({"url": "https://a.example/", "text": "both"}),
                "INVALID_REQUEST",
                "url",
            ),
            (json!({"url": "javascript:alert(1)"}), "INVALID_URL", "url"),
            (
                json!({"url": "https://a.example/\r\nX: y"}),
                "INVALID_URL",
                "url",
            ),
            (json!({"text": ""}), "INVALID_REQUEST", "text"),
            (json!({"text": long}), "INVALID_REQUEST", "text"),
            (
                json!({"text": "x".repeat(2000), "errorCorrection": "H"}),
                "INVALID_REQUEST",
                "content",
            ),
            (
                json!({"url": "https://a.example/", "size": 32}),
                "INVALID_REQUEST",
                "size",
            ),
            (
                json!({"url": "https://a.example/", "size": 4096}),
                "INVALID_REQUEST",
                "size",
            ),
            (
                json!({"url": "https://a.example/", "size": -1}),
                "INVALID_REQUEST",
                "size",
            ),
            (
                json!({"url": "https://a.example/", "margin": 40}),
                "INVALID_REQUEST",
                "margin",
            ),
            (
                json!({"url": "https://a.example/", "cornerRadius": 80}),
                "INVALID_REQUEST",
                "cornerRadius",
            ),
            (
                json!({"url": "https://a.example/", "foregroundColor": "#fff"}),
                "INVALID_REQUEST",
                "foregroundColor",
            ),
            (
                json!({"url": "https://a.example/", "foregroundColor": "red"}),
                "INVALID_REQUEST",
                "foregroundColor",
            ),
            (
                json!({"url": "https://a.example/", "foregroundColor": "#ffffff", "backgroundColor": "#000000"}),
                "INVALID_REQUEST",
                "foregroundColor",
            ),
            (
                json!({"url": "https://a.example/", "errorCorrection": "X"}),
                "INVALID_REQUEST",
                "errorCorrection",
            ),
            (
                json!({"url": "https://a.example/", "format": "gif"}),
                "INVALID_REQUEST",
                "format",
            ),
            (
                json!({"url": "https://a.example/", "colour": "#000"}),
                "INVALID_REQUEST",
                "",
            ),
            (json!(["https://a.example/"]), "INVALID_REQUEST", ""),
        ] {
            let r = h
                .call("POST", "/api/v1/qr/generate", None, Some(body.clone()))
                .await;
            r.assert_error(400, code);
            if !field.is_empty() {
                assert_eq!(
                    r.json["error"]["details"][0]["path"][0], field,
                    "{body}: {}",
                    r.json
                );
            }
        }
        // A 2,953-byte text fits at L but not in 64 pixels: the size it needs is named.
        let r = h
            .call(
                "POST",
                "/api/v1/qr/generate",
                None,
                Some(json!({"text": "y".repeat(2953), "errorCorrection": "L", "size": 100})),
            )
            .await;
        r.assert_error(400, "INVALID_REQUEST");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at least 185"),
            "{}",
            r.json
        );
        h
    })
    .await;
}

async fn ingest_qr_clicks(h: &Harness, link: &str, qr: &[bool]) {
    let now = sling_control::db::now_ms();
    let batch = ClickBatch {
        batch_id: format!("qr-{}-{}", link, rand::random::<u64>()),
        proxy_id: "p".into(),
        events: qr
            .iter()
            .map(|qr| ClickEvent {
                link_id: link.to_owned(),
                at_ms: now,
                country: Some("DE".into()),
                device: "mobile".into(),
                browser: "Safari".into(),
                os: "iOS".into(),
                bot: false,
                referrer_host: None,
                visitor: "v".into(),
                qr: *qr,
            })
            .collect(),
    };
    let req = Request::builder()
        .method("POST")
        .uri(CLICKS_PATH)
        .header("authorization", "Bearer test-fleet-token")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&batch).unwrap()))
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_saved_link_code_encodes_the_short_url_counts_scans_and_is_managed_by_its_team() {
    each_backend(|h| async move {
        let link = h
            .create(json!({"destinationUrl": "https://example.com/menu", "slug": "menu", "title": "Menu"}))
            .await;
        let link_id = link["id"].as_str().unwrap().to_owned();
        let short = link["shortUrl"].as_str().unwrap().to_owned();

        let r = h
            .admin(
                "POST",
                "/api/v1/qr",
                Some(json!({"linkId": link_id, "size": 320, "foregroundColor": "#004d40",
                            "format": "png", "cornerRadius": 20})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        let qr = r.data().clone();
        let id = qr["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("qr_"), "{id}");
        assert_eq!(qr["type"], "link");
        assert_eq!(qr["title"], "Menu");
        assert_eq!(qr["content"], format!("{short}?qr=1"));
        assert_eq!(qr["linkId"], link_id.as_str());
        assert_eq!(qr["size"], 320);
        assert_eq!(qr["foregroundColor"], "#004d40");
        assert_eq!(qr["backgroundColor"], "#ffffff");
        assert_eq!(qr["errorCorrection"], "M");
        assert_eq!(qr["format"], "png");
        assert_eq!(qr["scans"], 0);
        let uri = format!("/api/v1/qr/{id}");
        assert_eq!(qr["downloadUrl"], format!("{uri}/download"));

        // The download is the saved PNG, an attachment, and reads as the short URL.
        let r = h.admin("GET", &format!("{uri}/download"), None).await;
        assert_eq!(r.status, 200);
        assert_eq!(content_type(&r), "image/png");
        let disposition = r.headers["content-disposition"].to_str().unwrap();
        assert_eq!(disposition, format!("attachment; filename=\"{id}.png\""));
        assert_eq!(png_size(&r.body), (320, 320));
        if let Some(text) = decode_png(&r.body) {
            assert_eq!(text, format!("{short}?qr=1"));
        }
        // Another format and size for one download; the SVG reads the same.
        let r = h
            .admin("GET", &format!("{uri}/download?format=svg&size=500"), None)
            .await;
        assert_eq!(content_type(&r), "image/svg+xml");
        if let Some(text) = decode_svg(&r.body, 500) {
            assert_eq!(text, format!("{short}?qr=1"));
        }
        let r = h
            .admin("GET", &format!("{uri}/download?size=10"), None)
            .await;
        r.assert_error(400, "INVALID_REQUEST");

        // Clicks through a QR code are its scans; other clicks are not.
        ingest_qr_clicks(&h, &link_id, &[true, true, false]).await;
        let r = h.admin("GET", &uri, None).await;
        assert_eq!(r.data()["scans"], 2, "{}", r.json);
        let stats = h
            .admin("GET", &format!("/api/v1/links/{link_id}/stats"), None)
            .await;
        assert_eq!(stats.data()["qrClicks"], 2);

        // PATCH: style and title change, content never does.
        let r = h
            .admin(
                "PATCH",
                &uri,
                Some(json!({"title": null, "size": 128, "backgroundColor": "#e0f2f1", "format": "svg"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["title"], Value::Null);
        assert_eq!(r.data()["size"], 128);
        assert_eq!(r.data()["foregroundColor"], "#004d40");
        assert_eq!(r.data()["format"], "svg");
        assert_eq!(r.data()["content"], format!("{short}?qr=1"));
        for body in [
            json!({"content": "https://evil.example/"}),
            json!({"url": "https://evil.example/"}),
            json!({"foregroundColor": "#f0f0f0"}),
            json!({"size": 5000}),
        ] {
            let r = h.admin("PATCH", &uri, Some(body.clone())).await;
            r.assert_error(400, "INVALID_REQUEST");
        }
        let r = h.admin("GET", &format!("{uri}/download"), None).await;
        assert_eq!(content_type(&r), "image/svg+xml");
        assert!(std::str::from_utf8(&r.body).unwrap().contains("width=\"128\""));

        // Another team sees none of it, by id or in its list.
        let (_, other) = h.team_key("other", &["*"]).await;
        for (method, path, body) in [
            ("GET", uri.clone(), None),
            ("PATCH", uri.clone(), Some(json!({"size": 256}))),
            ("DELETE", uri.clone(), None),
            ("GET", format!("{uri}/download"), None),
        ] {
            let r = h.call(method, &path, Some(&other), body).await;
            r.assert_error(404, "NOT_FOUND");
        }
        let r = h
            .call("POST", "/api/v1/qr", Some(&other), Some(json!({"linkId": link_id})))
            .await;
        r.assert_error(404, "NOT_FOUND");
        let r = h.call("GET", "/api/v1/qr", Some(&other), None).await;
        assert_eq!(r.data()["pagination"]["total"], 0);

        // Scopes: qr:read reads, only qr:write writes, only qr:delete deletes.
        let read = h.key_with(&["qr:read"]).await;
        assert_eq!(h.call("GET", &uri, Some(&read), None).await.status, 200);
        h.call("PATCH", &uri, Some(&read), Some(json!({"size": 256})))
            .await
            .assert_error(403, "FORBIDDEN");
        h.call("DELETE", &uri, Some(&read), None)
            .await
            .assert_error(403, "FORBIDDEN");
        let links_only = h.key_with(&["links:*"]).await;
        h.call("GET", "/api/v1/qr", Some(&links_only), None)
            .await
            .assert_error(403, "FORBIDDEN");
        h.call("POST", "/api/v1/qr", None, Some(json!({"url": "https://a.example/"})))
            .await
            .assert_error(401, "UNAUTHORIZED");

        // The link moves to a new slug: its code follows (a new code for it too).
        let r = h.admin("POST", "/api/v1/qr", Some(json!({"linkId": link_id}))).await;
        let second = r.data()["id"].as_str().unwrap().to_owned();
        let r = h
            .admin("PATCH", &format!("/api/v1/links/{link_id}"), Some(json!({"slug": "menu-2"})))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let moved = r.data()["shortUrl"].as_str().unwrap().to_owned();
        let r = h.admin("GET", &format!("/api/v1/qr/{second}"), None).await;
        assert_eq!(r.data()["content"], format!("{moved}?qr=1"));
        let png = h
            .admin("GET", &format!("/api/v1/qr/{second}/download?format=png&size=300"), None)
            .await;
        if let Some(text) = decode_png(&png.body) {
            assert_eq!(text, format!("{moved}?qr=1"));
        }

        // Deleted: gone, and the link stays.
        let r = h.admin("DELETE", &uri, None).await;
        assert_eq!(r.status, 204);
        h.admin("GET", &uri, None)
            .await
            .assert_error(404, "NOT_FOUND");
        h.admin("DELETE", &uri, None)
            .await
            .assert_error(404, "NOT_FOUND");
        assert_eq!(
            h.admin("GET", &format!("/api/v1/links/{link_id}"), None)
                .await
                .status,
            200
        );
        // Deleting the link deletes its codes: none is left to send scanners to whoever takes
        // the freed slug.
        assert_eq!(
            h.admin("DELETE", &format!("/api/v1/links/{link_id}"), None)
                .await
                .status,
            204
        );
        h.admin("GET", &format!("/api/v1/qr/{second}"), None)
            .await
            .assert_error(404, "NOT_FOUND");
        h
    })
    .await;
}

#[tokio::test]
async fn every_content_type_encodes_what_phone_cameras_expect() {
    each_backend(|h| async move {
        for (body, kind, content) in [
            (json!({"url": "https://Example.com/a b"}), "url", None),
            (json!({"url": "https://example.com/x"}), "url", Some("https://example.com/x")),
            (json!({"type": "text", "text": "hello; world"}), "text", Some("hello; world")),
            (
                json!({"email": {"to": "sales@example.com", "subject": "Hi there", "body": "a&b=c"}}),
                "email",
                Some("mailto:sales@example.com?subject=Hi%20there&body=a%26b%3Dc"),
            ),
            (json!({"phone": "+49 (30) 123-4567"}), "phone", Some("tel:+49301234567")),
            (
                json!({"type": "sms", "phone": "555 0100", "message": "STOP"}),
                "sms",
                Some("SMSTO:5550100:STOP"),
            ),
            (
                json!({"wifi": {"ssid": "Café;Guest", "password": "pa:ss\\word", "hidden": true}}),
                "wifi",
                Some("WIFI:T:WPA;S:Café\\;Guest;P:pa\\:ss\\\\word;H:true;;"),
            ),
            (
                json!({"wifi": {"ssid": "Open", "encryption": "nopass"}}),
                "wifi",
                Some("WIFI:T:nopass;S:Open;;"),
            ),
        ] {
            let r = h.admin("POST", "/api/v1/qr", Some(body.clone())).await;
            if content.is_none() {
                r.assert_error(400, "INVALID_URL");
                continue;
            }
            assert_eq!(r.status, 201, "{body}: {}", r.json);
            assert_eq!(r.data()["type"], kind, "{body}");
            assert_eq!(r.data()["content"], content.unwrap(), "{body}");
            assert_eq!(r.data()["scans"], Value::Null);
            let id = r.data()["id"].as_str().unwrap().to_owned();
            let png = h
                .admin("GET", &format!("/api/v1/qr/{id}/download?format=png&size=400"), None)
                .await;
            if let Some(read) = decode_png(&png.body) {
                assert_eq!(read, content.unwrap(), "{body}");
            }
        }
        for (body, field) in [
            (json!({"url": "https://a.example/", "text": "two"}), "type"),
            (json!({"type": "link"}), "linkId"),
            (json!({"type": "wifi", "wifi": {"ssid": "x", "password": "short"}}), "wifi"),
            (json!({"wifi": {"ssid": "x", "encryption": "nopass", "password": "p"}}), "wifi"),
            (json!({"wifi": {"ssid": "", "password": "longenough"}}), "wifi"),
            (json!({"email": {"to": "not-an-address"}}), "email"),
            (json!({"phone": "call me"}), "phone"),
            (json!({"phone": "12"}), "phone"),
            (json!({"url": "https://a.example/", "title": "x".repeat(201)}), "title"),
            (json!({"url": "https://a.example/", "title": "a\u{7}"}), "title"),
            (json!({"type": "vcard", "text": "x"}), "type"),
            (json!({"type": "url", "url": "https://a.example/", "text": "dropped?"}), "type"),
            (json!({"type": "phone", "phone": "5550100", "message": "hi"}), "type"),
        ] {
            let r = h.admin("POST", "/api/v1/qr", Some(body.clone())).await;
            r.assert_error(400, "INVALID_REQUEST");
            assert_eq!(
                r.json["error"]["details"][0]["path"][0], field,
                "{body}: {}",
                r.json
            );
        }
        h.admin("POST", "/api/v1/qr", Some(json!({"linkId": "lnk_nope"})))
            .await
            .assert_error(404, "NOT_FOUND");

        // The list pages newest first, and filters by link.
        let r = h.admin("GET", "/api/v1/qr?perPage=3&page=2", None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let p = &r.data()["pagination"];
        assert_eq!((p["total"].as_i64(), p["totalPages"].as_i64()), (Some(7), Some(3)));
        assert_eq!(r.data()["items"].as_array().unwrap().len(), 3);
        let all = h.admin("GET", "/api/v1/qr?perPage=100", None).await;
        let items = all.data()["items"].as_array().unwrap();
        let mut kinds: Vec<&str> = items.iter().map(|q| q["type"].as_str().unwrap()).collect();
        let created: Vec<jiff::Timestamp> = items
            .iter()
            .map(|q| q["createdAt"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
        kinds.sort_unstable();
        assert_eq!(kinds, ["email", "phone", "sms", "text", "url", "wifi", "wifi"]);
        let r = h.admin("GET", "/api/v1/qr?linkId=lnk_nope", None).await;
        assert_eq!(r.data()["pagination"]["total"], 0);
        h.admin("GET", "/api/v1/qr?perPage=101", None)
            .await
            .assert_error(400, "INVALID_REQUEST");
        h
    })
    .await;
}
