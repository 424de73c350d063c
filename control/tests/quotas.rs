//! Link-creation quotas at their period boundaries, with the clock pinned: a daily quota is
//! reached at 23:59:59 UTC and open again at 00:00:00; a monthly one likewise across a month's
//! end. The LIMIT_REACHED body carries the seeds' quota object. Bulk creation counts each item;
//! concurrent creates cannot overshoot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, Kind};
use serde_json::{Value, json};
use sling_control::db;
use sling_control::plans::{DomainKind, Plan, Plans};

fn ms(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn plan(name: &str, per_day: Option<u64>, per_month: Option<u64>) -> Plan {
    Plan {
        name: name.into(),
        read_per_minute: 10_000,
        write_per_minute: 10_000,
        requests_per_hour: None,
        links_per_month: per_month,
        links_per_day: per_day,
        domains: vec![DomainKind::Default],
        custom_domains: None,
        api_logs: false,
        api_log_retention_days: 30,
    }
}

async fn each(f: impl AsyncFn(Harness) -> Harness) {
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let Some(h) = Harness::new_with(kind, |c| {
            c.plans = std::sync::Arc::new(
                Plans::builtin()
                    .with(plan("daily2", Some(2), Some(3)))
                    .with(plan("monthly2", None, Some(2)))
                    .with(plan("bulk3", None, Some(3)))
                    .with(plan("race5", Some(5), None)),
            );
        })
        .await
        else {
            continue;
        };
        let h = f(h).await;
        h.cleanup().await;
    }
}

async fn team_on(h: &Harness, plan: &str) -> String {
    let team = db::teams::create_team_with_plan(&h.db, plan, plan)
        .await
        .unwrap();
    db::keys::create_key(&h.db, &team.id, "t", &["*".to_owned()], None)
        .await
        .unwrap()
        .1
}

async fn create(h: &Harness, key: &str) -> common::Resp {
    h.call(
        "POST",
        "/api/v1/links",
        Some(key),
        Some(json!({"destinationUrl": "https://example.com/q"})),
    )
    .await
}

#[tokio::test]
async fn daily_quota_resets_at_midnight_utc() {
    each(async |h| {
        let key = team_on(&h, "daily2").await;
        h.state.clock.set(ms("2025-03-10T23:59:58Z"));
        assert_eq!(create(&h, &key).await.status, 201);
        h.state.clock.set(ms("2025-03-10T23:59:59Z"));
        assert_eq!(create(&h, &key).await.status, 201);
        let r = create(&h, &key).await;
        r.assert_error(403, "LIMIT_REACHED");
        assert_eq!(
            r.json["error"]["quota"],
            json!({
                "planType": "daily2", "period": "day", "currentCount": 2, "limit": 2,
                "remaining": 0, "resetsAt": "2025-03-11T00:00:00.000Z",
            })
        );
        // The refused create left nothing behind.
        assert_eq!(h.link_count().await, 2);

        h.state.clock.set(ms("2025-03-11T00:00:00Z"));
        assert_eq!(create(&h, &key).await.status, 201);
        // The month (limit 3) is now full even though the new day is not.
        let r = create(&h, &key).await;
        r.assert_error(403, "LIMIT_REACHED");
        assert_eq!(r.json["error"]["quota"]["period"], "month");
        assert_eq!(r.json["error"]["quota"]["currentCount"], 3);
        assert_eq!(
            r.json["error"]["quota"]["resetsAt"],
            "2025-04-01T00:00:00.000Z"
        );

        let u = h.call("GET", "/api/v1/usage", Some(&key), None).await;
        assert_eq!(u.status, 200, "{}", u.json);
        let d = u.data();
        assert_eq!(d["plan"], "daily2");
        assert_eq!(d["links"]["day"]["currentCount"], 1);
        assert_eq!(d["links"]["day"]["remaining"], 1);
        assert_eq!(d["links"]["month"]["remaining"], 0);
        assert_eq!(d["links"]["month"]["limit"], 3);
        assert_eq!(d["rateLimits"]["readPerMinute"], 10_000);
        assert_eq!(d["domains"], json!(["default"]));
        h
    })
    .await;
}

#[tokio::test]
async fn monthly_quota_resets_on_the_first() {
    each(async |h| {
        let key = team_on(&h, "monthly2").await;
        h.state.clock.set(ms("2025-01-01T00:00:00Z"));
        assert_eq!(create(&h, &key).await.status, 201);
        h.state.clock.set(ms("2025-01-31T23:59:59Z"));
        assert_eq!(create(&h, &key).await.status, 201);
        let r = create(&h, &key).await;
        r.assert_error(403, "LIMIT_REACHED");
        let q = &r.json["error"]["quota"];
        assert_eq!(
            (
                &q["planType"],
                &q["currentCount"],
                &q["limit"],
                &q["remaining"]
            ),
            (&json!("monthly2"), &json!(2), &json!(2), &json!(0))
        );
        assert_eq!(q["resetsAt"], "2025-02-01T00:00:00.000Z");
        h.state.clock.set(ms("2025-02-01T00:00:00Z"));
        assert_eq!(create(&h, &key).await.status, 201);
        // The built-in free plan: 50 a month (like.do), reported by /usage.
        let free = team_on(&h, "free").await;
        let u = h.call("GET", "/api/v1/usage", Some(&free), None).await;
        assert_eq!(u.data()["links"]["month"]["limit"], 50);
        assert_eq!(
            u.data()["links"]["month"]["resetsAt"],
            "2025-03-01T00:00:00.000Z"
        );
        h
    })
    .await;
}

#[tokio::test]
async fn bulk_counts_each_item() {
    each(async |h| {
        let key = team_on(&h, "bulk3").await;
        let items: Vec<Value> = (0..5)
            .map(|i| json!({"destinationUrl": format!("https://example.com/{i}")}))
            .collect();
        let r = h
            .call("POST", "/api/v1/links/bulk", Some(&key), Some(json!(items)))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.data()["succeeded"], 3);
        assert_eq!(r.data()["failed"], 2);
        let refused = &r.data()["results"][4]["error"];
        assert_eq!(refused["code"], "LIMIT_REACHED");
        assert_eq!(refused["quota"]["currentCount"], 3);
        assert_eq!(refused["quota"]["remaining"], 0);
        // Nothing left: the whole request is refused.
        let r = h
            .call("POST", "/api/v1/links/bulk", Some(&key), Some(json!(items)))
            .await;
        r.assert_error(403, "LIMIT_REACHED");
        assert_eq!(h.link_count().await, 3);
        h
    })
    .await;
}

#[tokio::test]
async fn concurrent_creates_cannot_overshoot() {
    each(async |h| {
        let key = team_on(&h, "race5").await;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let app = h.app.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                use tower::ServiceExt;
                let req = axum::http::Request::post("/api/v1/links")
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        json!({"destinationUrl": format!("https://example.com/r{i}")}).to_string(),
                    ))
                    .unwrap();
                app.oneshot(req).await.unwrap().status().as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            5,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 403).count(),
            7,
            "{statuses:?}"
        );
        assert_eq!(h.link_count().await, 5);
        h
    })
    .await;
}
