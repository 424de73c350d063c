//! The sling control plane: the REST API, the database, snapshot publishing and the change feed
//! that proxies follow. [`app`] builds the whole HTTP surface from an [`AppState`]; [`serve`] runs
//! it with the background publisher until shutdown.

pub mod acme;
pub mod api;
pub mod api_logs;
pub mod auth;
pub mod bio;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod ids;
pub mod ingest;
pub mod internal;
pub mod key_cache;
pub mod metrics;
pub mod ops;
pub mod plans;
pub mod publish;
pub mod qr;
pub mod ratelimit;
pub mod seal;
pub mod secrets;
pub mod state;
pub mod validate;
pub mod verify;
pub mod webhooks;

pub use config::Config;
pub use state::AppState;

use axum::Router;

/// The complete router: public API, internal fleet endpoints, and operations endpoints.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .merge(internal::router())
        .merge(ops::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::track,
        ))
        // The rate-limit middleware inside `api::router` finds the state here.
        .layer(axum::Extension(state.clone()))
        .with_state(state)
}

/// [`prepare_database`] until it succeeds; `None` when `shutdown` came first. An unreachable
/// database delays the start (so `sling up` keeps its proxy serving from its snapshot
/// meanwhile), retried with backoff; any other error is a configuration error and returned.
/// While it waits, the stand-in answers on the API socket (from one second on: one attempt can
/// take seconds, the pool's connect timeout); the caller stops it.
async fn wait_for_database(
    config: &Config,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    listener: &mut Option<tokio::net::TcpListener>,
    starting: &mut Option<StartingServer>,
) -> anyhow::Result<Option<db::Db>> {
    let mut delay = std::time::Duration::from_millis(250);
    loop {
        let attempt = prepare_database(config);
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                r = &mut attempt => break r,
                _ = &mut *shutdown => return Ok(None),
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if starting.is_none() => {
                    StartingServer::ensure(config, listener, starting)?;
                }
            }
        };
        match result {
            Ok(db) => return Ok(Some(db)),
            Err(error) if database_unreachable(&error) => {
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms = delay.as_millis() as u64,
                    "the database is unreachable; retrying");
                StartingServer::ensure(config, listener, starting)?;
                tokio::select! {
                    _ = &mut *shutdown => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Connects and migrates the database: what [`wait_for_database`] retries while it is
/// unreachable.
async fn prepare_database(config: &Config) -> anyhow::Result<db::Db> {
    let db = db::Db::connect(&config.database_url).await?;
    db.migrate().await?;
    Ok(db)
}

/// Bootstraps the default domain and (on an empty database) the admin key, and creates the
/// premium domains. Runs after the start-up stand-in has stopped: a client that takes the
/// written key as the sign that the API is up must reach the real API, never the stand-in.
async fn bootstrap(config: &Config, db: &db::Db) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(key) = db::teams::bootstrap(db, &config.default_domain).await? {
        let path = config.data_dir.join("admin-key");
        secrets::write_private(&path, &key)?;
        println!(
            "admin key (shown once, also written to {}): {key}",
            path.display()
        );
    }
    db::domains::ensure_premium(db, &config.domains.premium)
        .await
        .context("creating the premium domains")?;
    Ok(())
}

/// What the API answers while the database is unreachable at start: `/healthz` 200, `/readyz`
/// 503, and every other path 503 UNAVAILABLE in the error envelope, so clients get an answer
/// instead of a connection that hangs. Its answers carry `X-RateLimit-*` of the client IP's
/// anonymous budget (an in-memory limiter of its own), so a client retrying in a loop is slowed
/// with 429 as it would be later. It serves a clone of the API socket and stops (finishing what it
/// has in flight) when the real API takes over.
struct StartingServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl StartingServer {
    /// Starts the stand-in on a clone of `listener`; returns the listener for the real API.
    fn start(
        listener: tokio::net::TcpListener,
        anonymous_per_minute: u32,
    ) -> anyhow::Result<(tokio::net::TcpListener, StartingServer)> {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        use axum::routing::get;
        let limiter = std::sync::Arc::new(ratelimit::Limiter::local());
        let std_listener = listener.into_std()?;
        let clone = tokio::net::TcpListener::from_std(std_listener.try_clone()?)?;
        let main = tokio::net::TcpListener::from_std(std_listener)?;
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n") }),
            )
            .fallback(move |req: axum::extract::Request| {
                let limiter = limiter.clone();
                async move {
                    ratelimit::anonymous_answer(
                        &limiter,
                        &ratelimit::client_ip_of(req.extensions()),
                        anonymous_per_minute,
                        error::ApiError::Unavailable(sqlx::Error::PoolTimedOut).into_response(),
                    )
                    .await
                }
            })
            .layer(axum::middleware::from_fn(api::request_id::middleware));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let served = axum::serve(clone, service)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the stand-in API server failed");
            }
        });
        Ok((main, StartingServer { stop, task }))
    }

    /// Starts the stand-in unless it runs already.
    fn ensure(
        config: &Config,
        listener: &mut Option<tokio::net::TcpListener>,
        starting: &mut Option<StartingServer>,
    ) -> anyhow::Result<()> {
        if starting.is_none()
            && let Some(l) = listener.take()
        {
            let (main, stand_in) = StartingServer::start(l, config.anonymous_per_minute)?;
            *listener = Some(main);
            *starting = Some(stand_in);
        }
        Ok(())
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Whether `error` comes from not reaching the database (worth waiting for), rather than from
/// what it answered.
fn database_unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))
        ) || cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        })
    })
}

/// Runs the control plane on `listener` until `shutdown` resolves: prepares the database
/// ([`prepare_database`], waiting with backoff while it is unreachable), starts the snapshot
/// publisher and the other workers, and serves the API. In-flight requests are drained on
/// shutdown.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;

    // Box::pin: the same shutdown ends the wait for the database and, later, the server.
    let mut shutdown = Box::pin(shutdown);
    let mut listener = Some(listener);
    let mut starting: Option<StartingServer> = None;
    let waited = wait_for_database(&config, &mut shutdown, &mut listener, &mut starting).await;
    if let Some(s) = starting {
        s.stop().await;
        if matches!(waited, Ok(Some(_))) {
            tracing::info!("the database answers; serving the API");
        }
    }
    let Some(db) = waited? else {
        return Ok(());
    };
    // Connections that arrive meanwhile wait in the listener's backlog for the real API. A
    // database lost again just now is waited for, as at start.
    loop {
        match bootstrap(&config, &db).await {
            Ok(()) => break,
            Err(error) if database_unreachable(&error) => {
                tracing::warn!(error = %format!("{error:#}"), "the database went away during bootstrap; retrying");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
    let listener = listener.context("the API listener")?;
    let state = AppState::new(db, config);
    let head = db::changes::head(&state.db)
        .await
        .context("reading feed head")?;
    state.changes_committed(head);

    let publisher = tokio::spawn(publish::run(state.clone(), state.shutdown.subscribe()));
    let pruner = tokio::spawn(ingest::prune_loop(
        state.clone(),
        state.shutdown.subscribe(),
    ));
    let upkeep = tokio::spawn(api_logs::maintain(
        state.clone(),
        state.shutdown.subscribe(),
    ));
    // Returns at once without --acme-directory.
    let acme_worker = tokio::spawn(acme::run(state.clone(), state.shutdown.subscribe()));
    let verifier = tokio::spawn(api::domains::recheck_loop(
        state.clone(),
        state.shutdown.subscribe(),
    ));
    let webhook_worker = tokio::spawn(webhooks::run(state.clone(), state.shutdown.subscribe()));
    let stop = state.shutdown.clone();
    // ConnectInfo gives unauthenticated callers their per-IP rate-limit budget.
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.send_replace(true);
        })
        .await
        .context("serving the API")?;
    publisher.await.context("publisher task")?;
    pruner.await.context("click pruning task")?;
    upkeep.await.context("API log upkeep task")?;
    verifier.await.context("domain verification task")?;
    acme_worker.await.context("ACME worker task")?;
    webhook_worker.await.context("webhook worker task")?;
    Ok(())
}
