//! The stats API on SQLite and Postgres: events ingested at chosen instants, then exact totals,
//! unique visitors, breakdowns, bots, local-time buckets (Asia/Kolkata +05:30, Asia/Kathmandu
//! +05:45, America/New_York across both 2026 DST changes), week and month buckets, team-wide
//! stats with top links, CSV, team isolation, scopes and validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{Harness, Resp, each_backend};
use serde_json::{Value, json};
use sling_shared::clicks::{CLICKS_PATH, ClickBatch, ClickEvent};

/// Unix ms of an RFC 3339 time.
fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

struct Ev {
    at: &'static str,
    visitor: &'static str,
    bot: bool,
    country: Option<&'static str>,
    device: &'static str,
    referrer: Option<&'static str>,
    qr: bool,
}

fn at(at: &'static str) -> Ev {
    Ev {
        at,
        visitor: "v",
        bot: false,
        country: Some("US"),
        device: "desktop",
        referrer: None,
        qr: false,
    }
}

async fn ingest(h: &Harness, link: &str, events: Vec<Ev>) {
    let batch = ClickBatch {
        batch_id: format!("b-{}", rand_id()),
        proxy_id: "p".into(),
        events: events
            .into_iter()
            .map(|e| ClickEvent {
                link_id: link.to_owned(),
                at_ms: ms(e.at),
                country: e.country.map(str::to_owned),
                device: e.device.into(),
                browser: if e.bot { "Googlebot" } else { "Firefox" }.into(),
                os: "Linux".into(),
                bot: e.bot,
                referrer_host: e.referrer.map(str::to_owned),
                visitor: e.visitor.into(),
                qr: e.qr,
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
    assert_eq!(r.json["accepted"], true);
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000
}

async fn new_link(h: &Harness) -> String {
    h.create(json!({"destinationUrl": "https://example.com"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn stats(h: &Harness, link: &str, query: &str) -> Value {
    let r = h
        .admin("GET", &format!("/api/v1/links/{link}/stats?{query}"), None)
        .await;
    assert_eq!(r.status, 200, "{query}: {}", r.json);
    assert_eq!(r.json["success"], true);
    r.data().clone()
}

/// overTime as (start, clicks, uniqueClicks), dropping empty buckets.
fn buckets(s: &Value) -> Vec<(String, i64, i64)> {
    s["overTime"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["clicks"] != 0)
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_owned(),
                b["clicks"].as_i64().unwrap(),
                b["uniqueClicks"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn starts(s: &Value) -> Vec<String> {
    s["overTime"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["start"].as_str().unwrap().to_owned())
        .collect()
}

fn b(start: &str, clicks: i64, uniques: i64) -> (String, i64, i64) {
    (start.to_owned(), clicks, uniques)
}

#[tokio::test]
async fn totals_uniques_breakdowns_and_bots() {
    each_backend(|h| async move {
        let id = new_link(&h).await;
        ingest(
            &h,
            &id,
            vec![
                Ev { visitor: "alice", country: Some("NP"), device: "mobile", referrer: Some("news.example.com"), ..at("2026-05-01T10:00:00Z") },
                Ev { visitor: "alice", country: Some("NP"), device: "mobile", referrer: Some("news.example.com"), ..at("2026-05-01T10:05:00Z") },
                Ev { visitor: "bob", country: Some("IN"), qr: true, ..at("2026-05-01T11:00:00Z") },
                Ev { visitor: "carol", country: None, referrer: Some("t.co"), ..at("2026-05-02T09:00:00Z") },
                Ev { visitor: "crawler", bot: true, country: Some("US"), device: "bot", ..at("2026-05-02T09:30:00Z") },
                Ev { visitor: "crawler", bot: true, country: Some("US"), device: "bot", ..at("2026-05-02T09:31:00Z") },
            ],
        )
        .await;
        let s = stats(&h, &id, "start=2026-05-01&end=2026-05-02").await;
        assert_eq!(s["linkId"], id.as_str());
        assert_eq!(s["tz"], "UTC");
        assert_eq!(s["interval"], "day");
        assert_eq!(s["includeBots"], false);
        assert_eq!(s["totalClicks"], 4);
        assert_eq!(s["uniqueClicks"], 3);
        assert_eq!(s["qrClicks"], 1);
        assert_eq!(
            s["byCountry"],
            json!([{"country": "NP", "clicks": 2}, {"country": null, "clicks": 1}, {"country": "IN", "clicks": 1}])
        );
        assert_eq!(
            s["byDevice"],
            json!([{"device": "desktop", "clicks": 2}, {"device": "mobile", "clicks": 2}])
        );
        assert_eq!(s["byBrowser"], json!([{"browser": "Firefox", "clicks": 4}]));
        assert_eq!(s["byOs"], json!([{"os": "Linux", "clicks": 4}]));
        assert_eq!(
            s["byReferrer"],
            json!([{"referrer": "news.example.com", "clicks": 2}, {"referrer": null, "clicks": 1}, {"referrer": "t.co", "clicks": 1}])
        );
        assert_eq!(
            s["overTime"],
            json!([
                {"start": "2026-05-01T00:00:00+00:00", "clicks": 3, "uniqueClicks": 2},
                {"start": "2026-05-02T00:00:00+00:00", "clicks": 1, "uniqueClicks": 1},
            ])
        );
        assert_eq!(s["start"], "2026-05-01T00:00:00+00:00");
        assert_eq!(s["end"], "2026-05-03T00:00:00+00:00");

        // Bots only with includeBots=true.
        let s = stats(&h, &id, "start=2026-05-01&end=2026-05-02&includeBots=true").await;
        assert_eq!(s["totalClicks"], 6);
        assert_eq!(s["uniqueClicks"], 4);
        assert_eq!(s["byDevice"][0], json!({"device": "bot", "clicks": 2}));
        assert_eq!(
            buckets(&s),
            vec![b("2026-05-01T00:00:00+00:00", 3, 2), b("2026-05-02T00:00:00+00:00", 3, 2)]
        );

        // An RFC 3339 range that cuts the data: [10:00, 11:00) holds alice's two clicks.
        let s = stats(&h, &id, "start=2026-05-01T10:00:00Z&end=2026-05-01T11:00:00Z&interval=hour").await;
        assert_eq!((s["totalClicks"].as_i64(), s["uniqueClicks"].as_i64()), (Some(2), Some(1)));
        assert_eq!(buckets(&s), vec![b("2026-05-01T10:00:00+00:00", 2, 1)]);
        h
    })
    .await;
}

#[tokio::test]
async fn day_boundaries_at_half_and_three_quarter_hour_offsets() {
    each_backend(|h| async move {
        // Kolkata is +05:30: 18:29Z is 23:59 on May 1, 18:31Z is 00:01 on May 2.
        let id = new_link(&h).await;
        ingest(&h, &id, vec![at("2026-05-01T18:29:00Z"), at("2026-05-01T18:31:00Z"), at("2026-05-01T18:44:59Z")]).await;
        let s = stats(&h, &id, "start=2026-05-01&end=2026-05-02&tz=Asia/Kolkata").await;
        assert_eq!(
            buckets(&s),
            vec![b("2026-05-01T00:00:00+05:30", 1, 1), b("2026-05-02T00:00:00+05:30", 2, 1)]
        );
        assert_eq!(s["start"], "2026-05-01T00:00:00+05:30");
        assert_eq!(s["end"], "2026-05-03T00:00:00+05:30");
        // The same events in UTC are all on May 1.
        let s = stats(&h, &id, "start=2026-05-01&end=2026-05-02").await;
        assert_eq!(buckets(&s), vec![b("2026-05-01T00:00:00+00:00", 3, 1)]);

        // Kathmandu is +05:45: 18:14Z is 23:59 on May 1, 18:16Z is 00:01 on May 2.
        let id = new_link(&h).await;
        ingest(&h, &id, vec![at("2026-05-01T18:14:00Z"), at("2026-05-01T18:16:00Z")]).await;
        let s = stats(&h, &id, "start=2026-05-01&end=2026-05-02&tz=Asia/Kathmandu").await;
        assert_eq!(
            buckets(&s),
            vec![b("2026-05-01T00:00:00+05:45", 1, 1), b("2026-05-02T00:00:00+05:45", 1, 1)]
        );

        // Hour buckets in Kathmandu start at :15 UTC: 05:14Z is 10:59 local, 05:15Z is 11:00.
        let id = new_link(&h).await;
        ingest(
            &h,
            &id,
            vec![at("2026-05-01T05:14:59Z"), at("2026-05-01T05:15:00Z"), at("2026-05-01T06:45:00Z")],
        )
        .await;
        let s = stats(
            &h,
            &id,
            "start=2026-05-01T10:00:00%2B05:45&end=2026-05-01T13:00:00%2B05:45&tz=Asia/Kathmandu&interval=hour",
        )
        .await;
        assert_eq!(
            starts(&s),
            ["2026-05-01T10:00:00+05:45", "2026-05-01T11:00:00+05:45", "2026-05-01T12:00:00+05:45"]
        );
        assert_eq!(
            buckets(&s),
            vec![
                b("2026-05-01T10:00:00+05:45", 1, 1),
                b("2026-05-01T11:00:00+05:45", 1, 1),
                b("2026-05-01T12:00:00+05:45", 1, 1),
            ]
        );
        h
    })
    .await;
}

#[tokio::test]
async fn new_york_across_the_2026_dst_changes() {
    each_backend(|h| async move {
        // DST ends Sun 2026-11-01 at 02:00 EDT: that local day runs 04:00Z → 05:00Z next day
        // (25 hours).
        let id = new_link(&h).await;
        ingest(
            &h,
            &id,
            vec![
                at("2026-11-01T03:59:00Z"), // Oct 31 23:59 EDT
                at("2026-11-01T04:01:00Z"), // Nov 1 00:01 EDT
                at("2026-11-01T05:30:00Z"), // Nov 1 01:30 EDT
                at("2026-11-01T06:30:00Z"), // Nov 1 01:30 EST (the repeated hour)
                at("2026-11-02T04:30:00Z"), // Nov 1 23:30 EST: the 25th hour
                at("2026-11-02T05:01:00Z"), // Nov 2 00:01 EST
            ],
        )
        .await;
        let s = stats(
            &h,
            &id,
            "start=2026-10-31&end=2026-11-02&tz=America/New_York",
        )
        .await;
        assert_eq!(
            starts(&s),
            [
                "2026-10-31T00:00:00-04:00",
                "2026-11-01T00:00:00-04:00",
                "2026-11-02T00:00:00-05:00"
            ]
        );
        assert_eq!(
            buckets(&s),
            vec![
                b("2026-10-31T00:00:00-04:00", 1, 1),
                b("2026-11-01T00:00:00-04:00", 4, 1),
                b("2026-11-02T00:00:00-05:00", 1, 1),
            ]
        );
        // Hourly: Nov 1 has 25 local hours, and 01:00 appears twice with different offsets.
        let s = stats(
            &h,
            &id,
            "start=2026-11-01&end=2026-11-01&tz=America/New_York&interval=hour",
        )
        .await;
        let st = starts(&s);
        assert_eq!(st.len(), 25, "{st:?}");
        assert_eq!(
            &st[..4],
            [
                "2026-11-01T00:00:00-04:00",
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T02:00:00-05:00"
            ]
        );
        assert_eq!(st[24], "2026-11-01T23:00:00-05:00");
        assert_eq!(
            buckets(&s),
            vec![
                b("2026-11-01T00:00:00-04:00", 1, 1),
                b("2026-11-01T01:00:00-04:00", 1, 1),
                b("2026-11-01T01:00:00-05:00", 1, 1),
                b("2026-11-01T23:00:00-05:00", 1, 1),
            ]
        );

        // DST starts Sun 2026-03-08 at 02:00 EST: that day runs 05:00Z → 04:00Z (23 hours).
        let id = new_link(&h).await;
        ingest(
            &h,
            &id,
            vec![
                at("2026-03-08T04:59:00Z"), // Mar 7 23:59 EST
                at("2026-03-08T05:00:00Z"), // Mar 8 00:00 EST
                at("2026-03-09T03:30:00Z"), // Mar 8 23:30 EDT: would be Mar 9 with 24-hour days
                at("2026-03-09T04:30:00Z"), // Mar 9 00:30 EDT
            ],
        )
        .await;
        let s = stats(
            &h,
            &id,
            "start=2026-03-07&end=2026-03-09&tz=America/New_York",
        )
        .await;
        assert_eq!(
            buckets(&s),
            vec![
                b("2026-03-07T00:00:00-05:00", 1, 1),
                b("2026-03-08T00:00:00-05:00", 2, 1),
                b("2026-03-09T00:00:00-04:00", 1, 1),
            ]
        );
        let s = stats(
            &h,
            &id,
            "start=2026-03-08&end=2026-03-08&tz=America/New_York&interval=hour",
        )
        .await;
        let st = starts(&s);
        assert_eq!(st.len(), 23, "{st:?}");
        assert_eq!(
            &st[1..3],
            ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"]
        );
        h
    })
    .await;
}

#[tokio::test]
async fn week_and_month_buckets() {
    each_backend(|h| async move {
        let id = new_link(&h).await;
        ingest(
            &h,
            &id,
            vec![
                at("2026-05-03T23:59:00Z"), // Sunday: week of Mon Apr 27
                at("2026-05-04T00:00:00Z"), // Monday
                at("2026-05-10T12:00:00Z"), // Sunday of the same week
                at("2026-06-01T00:00:00Z"),
            ],
        )
        .await;
        let s = stats(&h, &id, "start=2026-05-01&end=2026-05-31&interval=week").await;
        assert_eq!(
            starts(&s),
            [
                "2026-04-27T00:00:00+00:00",
                "2026-05-04T00:00:00+00:00",
                "2026-05-11T00:00:00+00:00",
                "2026-05-18T00:00:00+00:00",
                "2026-05-25T00:00:00+00:00",
            ]
        );
        assert_eq!(
            buckets(&s),
            vec![
                b("2026-04-27T00:00:00+00:00", 1, 1),
                b("2026-05-04T00:00:00+00:00", 2, 1)
            ]
        );
        assert_eq!(s["totalClicks"], 3);

        let s = stats(
            &h,
            &id,
            "start=2026-04-15&end=2026-06-30&interval=month&tz=America/New_York",
        )
        .await;
        assert_eq!(
            starts(&s),
            [
                "2026-04-01T00:00:00-04:00",
                "2026-05-01T00:00:00-04:00",
                "2026-06-01T00:00:00-04:00"
            ]
        );
        // 2026-06-01T00:00Z is May 31 20:00 in New York.
        assert_eq!(buckets(&s), vec![b("2026-05-01T00:00:00-04:00", 4, 1)]);
        h
    })
    .await;
}

#[tokio::test]
async fn team_wide_stats_and_top_links() {
    each_backend(|h| async move {
        let a = new_link(&h).await;
        let b2 = new_link(&h).await;
        ingest(
            &h,
            &a,
            vec![
                at("2026-05-01T10:00:00Z"),
                Ev {
                    visitor: "w",
                    ..at("2026-05-01T10:01:00Z")
                },
            ],
        )
        .await;
        ingest(
            &h,
            &b2,
            vec![
                at("2026-05-01T12:00:00Z"),
                at("2026-05-01T12:01:00Z"),
                Ev {
                    visitor: "x",
                    ..at("2026-05-02T12:00:00Z")
                },
            ],
        )
        .await;
        // Another team's clicks never show up.
        let (_, other_key) = h.team_key("other", &["*"]).await;
        let r = h
            .call(
                "POST",
                "/api/v1/links",
                Some(&other_key),
                Some(json!({"destinationUrl": "https://example.net"})),
            )
            .await;
        let theirs = r.data()["id"].as_str().unwrap().to_owned();
        ingest(&h, &theirs, vec![at("2026-05-01T10:00:00Z")]).await;

        let r = h
            .admin("GET", "/api/v1/stats?start=2026-05-01&end=2026-05-02", None)
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let s = r.data();
        assert!(s.get("linkId").is_none());
        assert_eq!(s["totalClicks"], 5);
        assert_eq!(s["uniqueClicks"], 3);
        assert_eq!(s["byCountry"], json!([{"country": "US", "clicks": 5}]));
        let top = s["topLinks"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        assert_eq!(top[0]["id"], b2.as_str());
        assert_eq!(top[0]["clicks"], 3);
        assert_eq!(top[0]["domain"], "localhost");
        assert!(top[0]["slug"].is_string());
        assert_eq!(top[1]["id"], a.as_str());
        assert_eq!(
            buckets(s),
            vec![
                b("2026-05-01T00:00:00+00:00", 4, 2),
                b("2026-05-02T00:00:00+00:00", 1, 1)
            ]
        );
        let r = h
            .admin(
                "GET",
                "/api/v1/stats?start=2026-05-01&end=2026-05-02&top=1",
                None,
            )
            .await;
        assert_eq!(r.data()["topLinks"].as_array().unwrap().len(), 1);

        let r = h
            .call(
                "GET",
                "/api/v1/stats?start=2026-05-01&end=2026-05-02",
                Some(&other_key),
                None,
            )
            .await;
        assert_eq!(r.data()["totalClicks"], 1);
        assert_eq!(r.data()["topLinks"][0]["id"], theirs.as_str());
        h
    })
    .await;
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            // No test value contains a comma or quote; a quoted field would be handled here.
            l.split(',').map(str::to_owned).collect()
        })
        .collect()
}

#[tokio::test]
async fn csv_matches_json() {
    each_backend(|h| async move {
        let id = new_link(&h).await;
        ingest(
            &h,
            &id,
            vec![
                Ev {
                    country: Some("DE"),
                    referrer: Some("example.org"),
                    ..at("2026-05-01T10:00:00Z")
                },
                Ev {
                    visitor: "w",
                    country: None,
                    ..at("2026-05-02T10:00:00Z")
                },
            ],
        )
        .await;
        let q = "start=2026-05-01&end=2026-05-03&tz=Europe/Berlin";
        let json = stats(&h, &id, q).await;
        let by_format = h
            .admin(
                "GET",
                &format!("/api/v1/links/{id}/stats?{q}&format=csv"),
                None,
            )
            .await;
        let req = Request::builder()
            .uri(format!("/api/v1/links/{id}/stats?{q}"))
            .header("authorization", format!("Bearer {}", h.key))
            .header("accept", "text/csv")
            .body(Body::empty())
            .unwrap();
        let by_accept: Resp = h.send(req).await;
        for r in [&by_format, &by_accept] {
            assert_eq!(r.status, 200);
            assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
            assert!(r.request_id().starts_with("req_"));
        }
        assert_eq!(by_format.body, by_accept.body);
        let rows = parse_csv(std::str::from_utf8(&by_format.body).unwrap());
        assert_eq!(rows[0], ["dimension", "value", "clicks", "uniqueClicks"]);
        let find = |dim: &str, value: &str| -> Vec<String> {
            rows.iter()
                .find(|r| r[0] == dim && r[1] == value)
                .cloned()
                .unwrap_or_else(|| panic!("no {dim},{value} row in {rows:?}"))
        };
        assert_eq!(find("total", "")[2], json["totalClicks"].to_string());
        assert_eq!(find("total", "")[3], json["uniqueClicks"].to_string());
        for (dim, key, list) in [
            ("country", "country", "byCountry"),
            ("referrer", "referrer", "byReferrer"),
            ("device", "device", "byDevice"),
        ] {
            let in_json = json[list].as_array().unwrap();
            let in_csv: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == dim).collect();
            assert_eq!(in_json.len(), in_csv.len());
            for (j, c) in in_json.iter().zip(in_csv) {
                assert_eq!(c[1], j[key].as_str().unwrap_or(""));
                assert_eq!(c[2], j["clicks"].to_string());
            }
        }
        let over: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == "overTime").collect();
        let in_json = json["overTime"].as_array().unwrap();
        assert_eq!(over.len(), in_json.len());
        for (j, c) in in_json.iter().zip(over) {
            assert_eq!(c[1], j["start"].as_str().unwrap());
            assert_eq!(c[2], j["clicks"].to_string());
            assert_eq!(c[3], j["uniqueClicks"].to_string());
        }
        // format=json wins over Accept.
        let req = Request::builder()
            .uri(format!("/api/v1/links/{id}/stats?{q}&format=json"))
            .header("authorization", format!("Bearer {}", h.key))
            .header("accept", "text/csv")
            .body(Body::empty())
            .unwrap();
        assert_eq!(h.send(req).await.json["data"]["totalClicks"], 2);
        // Team-wide CSV carries topLink rows.
        let r = h
            .admin(
                "GET",
                "/api/v1/stats?start=2026-05-01&end=2026-05-03&format=csv",
                None,
            )
            .await;
        let text = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(text.contains(&format!("topLink,{id},2,")), "{text}");
        h
    })
    .await;
}

#[tokio::test]
async fn isolation_scopes_and_validation() {
    each_backend(|h| async move {
        let id = new_link(&h).await;
        // Another team's link is a 404, exactly like a missing one.
        let (_, other) = h.team_key("other", &["stats:read"]).await;
        let r = h
            .call(
                "GET",
                &format!("/api/v1/links/{id}/stats"),
                Some(&other),
                None,
            )
            .await;
        r.assert_error(404, "NOT_FOUND");
        let r = h.admin("GET", "/api/v1/links/lnk_nope/stats", None).await;
        r.assert_error(404, "NOT_FOUND");
        // stats:read is required (links:read is not enough); stats:* and * work.
        let links_only = h.key_with(&["links:read"]).await;
        let r = h
            .call(
                "GET",
                &format!("/api/v1/links/{id}/stats"),
                Some(&links_only),
                None,
            )
            .await;
        r.assert_error(403, "FORBIDDEN");
        let r = h
            .call("GET", "/api/v1/stats", Some(&links_only), None)
            .await;
        r.assert_error(403, "FORBIDDEN");
        let r = h.call("GET", "/api/v1/stats", None, None).await;
        r.assert_error(401, "UNAUTHORIZED");
        let stats_key = h.key_with(&["stats:*"]).await;
        let r = h
            .call(
                "GET",
                &format!("/api/v1/links/{id}/stats"),
                Some(&stats_key),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        // Defaults: the last 30 local days, daily, UTC.
        assert_eq!(r.data()["overTime"].as_array().unwrap().len(), 30);
        assert_eq!(r.data()["totalClicks"], 0);

        for (query, field) in [
            ("tz=Mars/Olympus", "tz"),
            ("tz=America%2FNew_York%2Fx", "tz"),
            ("interval=fortnight", "interval"),
            ("start=yesterday", "start"),
            ("end=2026-13-01", "end"),
            ("start=2026-05-02&end=2026-05-01T00:00:00Z", "end"),
            ("start=2026-05-01T00:00:00Z&end=2026-05-01T00:00:00Z", "end"),
            ("start=2000-01-01&end=2026-01-01&interval=hour", "interval"),
            ("includeBots=maybe", "includeBots"),
            ("format=xml", "format"),
        ] {
            let r = h
                .admin("GET", &format!("/api/v1/links/{id}/stats?{query}"), None)
                .await;
            r.assert_error(400, "INVALID_REQUEST");
            assert_eq!(
                r.json["error"]["details"][0]["path"],
                json!([field]),
                "{query}: {}",
                r.json
            );
        }
        let r = h.admin("GET", "/api/v1/stats?top=0", None).await;
        r.assert_error(400, "INVALID_REQUEST");
        // A long but legal range: 27 years of months.
        let r = h
            .admin(
                "GET",
                &format!("/api/v1/links/{id}/stats?start=2000-01-01&end=2026-12-31&interval=month"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["overTime"].as_array().unwrap().len(), 27 * 12);
        h
    })
    .await;
}

#[tokio::test]
async fn documented_in_openapi() {
    each_backend(|h| async move {
        let r = h.call("GET", "/api/openapi.json", None, None).await;
        let doc = &r.json;
        assert_eq!(
            doc["paths"]["/api/v1/links/{id}/stats"]["get"]["x-required-scope"],
            "stats:read"
        );
        assert_eq!(
            doc["paths"]["/api/v1/stats"]["get"]["x-required-scope"],
            "stats:read"
        );
        assert!(doc["components"]["schemas"]["Stats"]["properties"]["uniqueClicks"].is_object());
        h
    })
    .await;
}
