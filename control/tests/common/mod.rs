//! Test harness: a fresh database per test (SQLite in a temp dir, and a freshly created Postgres
//! database), migrated and bootstrapped, and the whole app driven with `oneshot`.
//!
//! Postgres comes from `SLING_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! When it is unreachable the Postgres half is skipped with a message, unless `CI=true`, where
//! that is a failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use rand::Rng;
use serde_json::Value;
use sling_control::db::{self, Db};
use sling_control::{AppState, Config};
use sling_shared::feed::{Change, ChangeOp};
use sqlx::Connection;
use tower::ServiceExt;

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub struct Harness {
    pub kind: Kind,
    pub app: Router,
    pub state: AppState,
    pub db: Db,
    /// The bootstrap admin key (scope `*`).
    pub key: String,
    pub team_id: String,
    /// The database's URL, for a second, independent connection.
    pub url: String,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub json: Value,
}

impl Resp {
    /// `error.code` of an error envelope.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    pub fn data(&self) -> &Value {
        &self.json["data"]
    }
    pub fn request_id(&self) -> &str {
        self.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// Asserts an error envelope with this status and code, whose requestId matches the header.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.json);
        assert_eq!(self.code(), code, "body: {}", self.json);
        assert_eq!(self.json["success"], false);
        assert!(self.request_id().starts_with("req_"), "{:?}", self.headers);
        assert_eq!(self.json["error"]["requestId"], self.request_id());
        assert!(self.json["error"]["details"].is_array());
    }
}

fn rand_name() -> String {
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

fn pg_admin_url() -> String {
    std::env::var("SLING_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.to_owned())
}

async fn create_pg_database() -> Option<(String, String)> {
    sqlx::any::install_default_drivers();
    let admin = pg_admin_url();
    let conn =
        tokio::time::timeout(Duration::from_secs(5), sqlx::AnyConnection::connect(&admin)).await;
    let mut conn = match conn {
        Ok(Ok(c)) => c,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".into(),
            };
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("Postgres at {admin} is unreachable ({why}) and CI=true");
            }
            eprintln!("SKIPPING the Postgres half: {admin} is unreachable ({why})");
            return None;
        }
    };
    let name = format!("sling_t_{}", rand_name());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).expect("postgres url");
    url.set_path(&format!("/{name}"));
    Some((url.to_string(), name))
}

impl Harness {
    pub async fn new(kind: Kind) -> Option<Harness> {
        Self::new_with(kind, |_| {}).await
    }

    /// [`Harness::new`] with the test's changes to the configuration (plans, Redis, …).
    pub async fn new_with(kind: Kind, tweak: impl FnOnce(&mut Config)) -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = match kind {
            Kind::Sqlite => (db::sqlite_url(dir.path()), None),
            Kind::Postgres => {
                let (url, name) = create_pg_database().await?;
                (url, Some((pg_admin_url(), name)))
            }
        };
        let mut config = Config::for_tests(dir.path().to_path_buf(), Some(url.clone()));
        tweak(&mut config);
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        let key = db::teams::bootstrap(&db, &config.default_domain)
            .await
            .unwrap()
            .expect("fresh database gets an admin key");
        let team_id = db::teams::find_by_name(&db, "admin")
            .await
            .unwrap()
            .unwrap()
            .id;
        let state = AppState::new(db.clone(), config);
        let app = sling_control::app(state.clone());
        Some(Harness {
            kind,
            app,
            state,
            db,
            key,
            team_id,
            url,
            _dir: dir,
            pg,
        })
    }

    pub async fn cleanup(self) {
        self.db.close().await;
        if let Some((admin, name)) = self.pg
            && let Ok(mut c) = sqlx::AnyConnection::connect(&admin).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await;
            let _ = c.close().await;
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            json,
        }
    }

    /// A JSON request authenticated with `key` (Bearer), if any.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// A request as the admin.
    pub async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> Resp {
        self.call(method, uri, Some(&self.key.clone()), body).await
    }

    /// Creates a link as the admin and returns its JSON.
    pub async fn create(&self, body: Value) -> Value {
        let r = self.admin("POST", "/api/v1/links", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        r.json["data"].clone()
    }

    /// A new team with a key holding `scopes`; returns (team_id, key).
    pub async fn team_key(&self, name: &str, scopes: &[&str]) -> (String, String) {
        let team = db::teams::create_team(&self.db, name).await.unwrap();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let (_, key) = db::keys::create_key(&self.db, &team.id, "test", &scopes, None)
            .await
            .unwrap();
        (team.id, key)
    }

    /// A key for the admin team with `scopes`.
    pub async fn key_with(&self, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        db::keys::create_key(&self.db, &self.team_id, "test", &scopes, None)
            .await
            .unwrap()
            .1
    }

    pub async fn feed_head(&self) -> u64 {
        db::changes::head(&self.db).await.unwrap()
    }

    /// Changes written after `seq`.
    pub async fn changes_after(&self, seq: u64) -> Vec<ChangeOp> {
        db::changes::after(&self.db, seq, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|c: Change| c.op)
            .collect()
    }

    /// Number of links stored (all teams).
    pub async fn link_count(&self) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM links")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }
}

/// Runs `f` against SQLite, then Postgres (when reachable).
pub async fn each_backend<F, Fut>(f: F)
where
    F: Fn(Harness) -> Fut,
    Fut: Future<Output = Harness>,
{
    for kind in [Kind::Sqlite, Kind::Postgres] {
        let Some(h) = Harness::new(kind).await else {
            continue;
        };
        let h = f(h).await;
        h.cleanup().await;
    }
}
