//! `sling-proxy`: the data plane of sling. It answers `GET /{slug}` on any of sling's domains with a
//! redirect, from a memory-mapped snapshot of every link ([`snapshot`]) plus an overlay of changes
//! since ([`overlay`]), both kept current by a background follower of the control plane's change
//! feed. It never touches a database and keeps serving its last good snapshot when the control
//! plane is down.
//!
//! A request goes listener → [`router::route`] (pure: host, path, query, method and a [`router::View`]
//! in, [`router::Decision`] out) → [`respond::respond`] (decision → response). A followed link is
//! handed to [`clicks`] (a non-blocking channel push) on the way out. A second, admin listener
//! serves `/healthz`, `/readyz` and `/metrics`. An optional HTTPS listener ([`tls`]) serves the
//! same redirects with certificates from the control plane and from files; [`well_known`] answers
//! ACME and verification tokens (and sends hosts that ask for it to HTTPS) before any routing.
//!
//! The binary is a thin wrapper around [`run`]; the control plane's `sling up` and the tests call
//! [`run`] or [`run_with_listeners`] directly (tests bind port 0 and read the `listening …` lines).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http::header::{
    ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT,
};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

pub mod clicks;
pub mod config;
mod feed;
mod idle;
pub mod metrics;
pub mod overlay;
pub mod password;
pub mod respond;
pub mod router;
pub mod snapshot;
mod snapshot_files;
pub mod tls;
pub mod well_known;

pub use config::{Args, ClicksConfig, Config, ControlPlane, LogFormat, TlsConfig, init_tracing};

use metrics::Metrics;
use overlay::Overlay;
use respond::Body;
use snapshot::{LoadedSnapshot, SnapshotStore};

/// How long a client may take to send request headers (slow-loris protection).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest a shutdown waits for the click shipper to deliver or spool what it holds. Delivery
/// attempts stop after [`clicks::SHUTDOWN_DELIVERY_BUDGET`]; the rest is only disk writes.
const CLICK_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The two bound sockets the proxy serves.
#[derive(Debug)]
pub struct Listeners {
    /// Redirects (HTTP/1.1 and cleartext HTTP/2 with prior knowledge).
    pub proxy: TcpListener,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds `config.listen` and `config.admin_listen`.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let proxy = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the proxy listener on {}", config.listen))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("binding the admin listener on {}", config.admin_listen))?;
        Ok(Self { proxy, admin })
    }
}

/// Binds the configured addresses and serves until `shutdown` completes, then drains.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    run_with_listeners(config, listeners, shutdown).await
}

/// Serves on already-bound listeners (port 0 in tests; sockets the embedding program bound) until
/// `shutdown` completes, then stops accepting, drains open connections for at most
/// `config.drain_timeout`, and flushes recorded clicks (delivered or spooled) before returning.
/// The HTTPS listener, if `config.tls.listen` is set, is bound here.
///
/// Once the newest good snapshot in `config.snapshot_dir` is loaded, prints exactly one line per
/// listener to stdout: `listening proxy=http://ADDR`, `listening admin=http://ADDR` and, with
/// HTTPS, `listening tls=https://ADDR`.
pub async fn run_with_listeners(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = match config.tls.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the TLS listener on {addr}"))?,
        ),
        None => None,
    };
    run_with_tls_listener(config, listeners, tls, shutdown).await
}

/// [`run_with_listeners`] with the HTTPS listener bound by the caller (`config.tls.listen` is
/// then ignored; `None` serves no HTTPS).
pub async fn run_with_tls_listener(
    config: Config,
    listeners: Listeners,
    tls_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let proxy_addr = listeners.proxy.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let tls_addr = tls_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let tls_edge = tls::TlsEdge::new(&config.tls, &config.default_domain)?;

    let dir = config.snapshot_dir.clone();
    let initial = tokio::task::spawn_blocking(move || snapshot::load_newest(&dir))
        .await
        .context("snapshot loading task")?;
    let initial = match initial {
        Ok(initial) => initial,
        Err(error) => {
            tracing::warn!(%error, dir = %config.snapshot_dir.display(), "cannot read the snapshot directory; starting without a snapshot");
            None
        }
    };
    let metrics = Metrics::new();
    let (clicks, shipper) = if config.clicks.enabled {
        let (sink, shipper) = clicks::start(
            &config.clicks,
            config.control.as_ref(),
            metrics.clicks.clone(),
        )?;
        (Some(sink), Some(shipper))
    } else {
        tracing::info!("click tracking is off");
        (None, None)
    };
    let state = Arc::new(State::new(&config, initial, metrics, clicks, tls_edge));

    // The last TLS state this proxy saw, so HTTPS works before (or without) the control plane.
    let dir = config.snapshot_dir.clone();
    let cached_tls = tokio::task::spawn_blocking(move || tls::follower::load_cache(&dir))
        .await
        .context("TLS cache loading task")?;
    match &cached_tls {
        Some(cached) => tls::follower::install(&state, cached.clone()).await,
        None => state
            .tls
            .install(state.tls.build(&Default::default()), &state.metrics),
    }
    let acceptor = match tls_addr {
        Some(_) => Some(tokio_rustls::TlsAcceptor::from(state.tls.server_config()?)),
        None => None,
    };

    print_listening("proxy", "http", proxy_addr);
    print_listening("admin", "http", admin_addr);
    if let Some(addr) = tls_addr {
        print_listening("tls", "https", addr);
    }
    tracing::info!(%proxy_addr, %admin_addr, ?tls_addr, snapshot_seq = state.snapshots.seq(), "sling-proxy serving");

    let (feed, tls_follower) = match config.control.clone() {
        Some(control) => {
            let client = feed::control_client().context("building the control-plane client")?;
            let tls_follower = tokio::spawn(tls::follower::follow(
                client.clone(),
                control.clone(),
                state.clone(),
                cached_tls,
            ));
            let downloads =
                feed::download_client().context("building the snapshot download client")?;
            let feed = tokio::spawn(feed::follow(
                client,
                downloads,
                control,
                config.feed_wait,
                state.clone(),
            ));
            (Some(feed), Some(tls_follower))
        }
        None => {
            tracing::info!("no control plane configured: serving the local snapshot only");
            (None, None)
        }
    };

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    // HTTPS connections are served from their own task once the handshake is done.
    let shared_builder = Arc::new(builder.clone());
    let graceful = GracefulShutdown::new();

    // Every input of the server loop in one place: the listeners and the shutdown signal.
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listeners.proxy.accept() => {
                let state = state.clone();
                // TLS listeners (certificate issue) pass `true`: access cookies are then `Secure`.
                serve(&builder, &graceful, accepted, move |req, peer| {
                    let state = state.clone();
                    async move { handle_proxy(req, peer, &state, false).await }
                });
            }
            accepted = accept_tls(tls_listener.as_ref()) => {
                if let Some(acceptor) = &acceptor {
                    serve_tls(&shared_builder, &graceful, accepted, acceptor.clone(), state.clone());
                }
            }
            accepted = listeners.admin.accept() => {
                let state = state.clone();
                serve(&builder, &graceful, accepted, move |req, _| {
                    let is_head = req.method() == Method::HEAD;
                    std::future::ready(head_response(handle_admin(&req, &state), is_head))
                });
            }
        }
    }

    // Stop accepting first, then let in-flight requests finish.
    drop(listeners);
    drop(tls_listener);
    for task in [feed, tls_follower].into_iter().flatten() {
        task.abort();
    }
    let open = graceful.count();
    tracing::info!(open_connections = open, "draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(timeout_ms = config.drain_timeout.as_millis() as u64, "drain timed out; closing remaining connections");
        }
    }
    if let Some(shipper) = shipper {
        // Joining blocks, so off the executor; `run` returns only once clicks are safe.
        let flushed = tokio::task::spawn_blocking(move || shipper.shutdown(CLICK_FLUSH_WAIT))
            .await
            .unwrap_or(false);
        if flushed {
            tracing::info!("clicks flushed");
        }
    }
    Ok(())
}

/// Completes on ctrl-c or SIGTERM: the shutdown future `sling-proxy` passes to [`run`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

/// What request handlers and the feed follower share.
pub(crate) struct State {
    pub(crate) snapshots: SnapshotStore,
    pub(crate) overlay: Overlay,
    pub(crate) metrics: Metrics,
    pub(crate) snapshot_dir: PathBuf,
    /// `None` when click tracking is off.
    clicks: Option<clicks::ClickSink>,
    /// Default domain until a snapshot names one.
    default_host: String,
    /// Access cookies and the password-attempt throttle.
    access: password::Access,
    /// Clicks this process has served per click-limited link (see ARCHITECTURE.md, "Click limits
    /// at the edge"). Only links with a limit get an entry.
    local_clicks: dashmap::DashMap<Box<str>, AtomicU64>,
    /// User-agent parser and country source for targeting when click tracking is off (with it
    /// on, the click pipeline's enricher is used).
    targeting: Option<Arc<clicks::enrich::Enricher>>,
    /// Parsed user agents for device targeting (agents repeat heavily; parsing one costs
    /// microseconds). Cleared when it reaches [`clicks::enrich::UA_CACHE_MAX`] entries.
    devices: dashmap::DashMap<Box<str>, router::Device>,
    /// Certificates, HTTPS redirects and well-known answers.
    pub(crate) tls: tls::TlsEdge,
    /// Set once a snapshot is loaded or the feed has synced; never cleared (a proxy that was ready
    /// keeps serving what it has).
    ready: AtomicBool,
}

impl State {
    fn new(
        config: &Config,
        initial: Option<LoadedSnapshot>,
        metrics: Metrics,
        clicks: Option<clicks::ClickSink>,
        tls: tls::TlsEdge,
    ) -> Self {
        let ready = initial.is_some();
        if let Some(s) = &initial {
            metrics.snapshot_loaded(s);
            tracing::info!(seq = s.seq(), links = s.header().link_count, path = ?s.path(), "loaded snapshot");
        }
        let secret = config
            .cookie_secret
            .as_deref()
            .or(config.control.as_ref().map(|c| c.fleet_token.as_str()));
        let targeting = clicks.is_none().then(|| {
            Arc::new(clicks::enrich::Enricher::new(
                clicks::geo::Geo::None,
                clicks::client_ip::TrustedProxies::new(config.clicks.trusted_proxies.clone()),
                false,
                None,
            ))
        });
        Self {
            access: password::Access::new(secret),
            local_clicks: dashmap::DashMap::new(),
            devices: dashmap::DashMap::new(),
            targeting,
            snapshots: SnapshotStore::new(initial),
            overlay: Overlay::new(),
            metrics,
            snapshot_dir: config.snapshot_dir.clone(),
            clicks,
            default_host: config.default_domain.clone(),
            tls,
            ready: AtomicBool::new(ready),
        }
    }

    /// Serves `loaded` from now on. Swap first, trim second: readers ignore overlay entries the
    /// snapshot supersedes, so neither order loses data, but this one never shows a request an
    /// older state than it could already see.
    pub(crate) fn install_snapshot(&self, loaded: LoadedSnapshot) {
        let seq = loaded.seq();
        self.metrics.snapshot_loaded(&loaded);
        self.snapshots.swap(Arc::new(loaded));
        self.overlay.trim(seq);
        self.mark_ready();
    }

    pub(crate) fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

fn print_listening(name: &str, scheme: &str, addr: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // Tests and supervisors parse this line; stdout carries nothing else.
    let _ = writeln!(out, "listening {name}={scheme}://{addr}");
    let _ = out.flush();
}

/// The HTTPS listener's next connection; never completes without one.
async fn accept_tls(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Spawns one HTTPS connection: the handshake (bounded by [`tls::handshake::HANDSHAKE_TIMEOUT`])
/// runs in the connection's own task, so a slow client never holds up the accept loop.
fn serve_tls(
    builder: &Arc<Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
) {
    let (stream, peer) = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            tracing::warn!(%error, "TLS accept failed");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let builder = builder.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let Some(stream) = tls::handshake::accept(&acceptor, stream, peer, &state.metrics).await
        else {
            return;
        };
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle_proxy(req, peer, &state, true).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = watcher.watch(conn).await {
            tracing::debug!(%error, "TLS connection ended with an error");
        }
    });
}

/// Spawns one connection. Accept errors (e.g. out of file descriptors) are logged and the
/// listener keeps going.
fn serve<F, Fut>(
    builder: &Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
    handler: F,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let (stream, peer) = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            tracing::warn!(%error, "accept failed");
            return;
        }
    };
    // Redirects are tiny single-write responses: do not let Nagle delay them.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req, peer).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, "connection ended with an error");
        }
    });
}

/// The redirect listener. Everything but a password POST is answered synchronously by
/// [`decide_proxy`] (nothing awaits, so no guard is held across an await point); a password POST
/// reads its small form body and verifies on the blocking pool ([`unlock`]).
async fn handle_proxy(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: &State,
    tls: bool,
) -> Response<Body> {
    let started = Instant::now();
    let is_head = req.method() == Method::HEAD;
    let host = request_host(&req);
    let early = well_known::Early {
        host,
        path: req.uri().path(),
        path_and_query: req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
        method: req.method(),
        tls,
    };
    if let Some(resp) = well_known::answer(&state.tls, early) {
        state
            .metrics
            .record_request(resp.status(), started.elapsed());
        return head_response(resp, is_head);
    }
    let lang = respond::negotiate(
        req.headers()
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let resp = match decide_proxy(&req, host, peer, state, lang) {
        Ok(resp) => resp,
        Err(locked) => unlock(req, peer, state, locked, lang, tls).await,
    };
    state
        .metrics
        .record_request(resp.status(), started.elapsed());
    head_response(resp, is_head)
}

/// The answer to a HEAD: the same status and headers, `Content-Length` of the body included, and
/// no body. hyper drops it on HTTP/1.1 but sends it on HTTP/2, where clients reset the stream.
fn head_response(resp: Response<Body>, is_head: bool) -> Response<Body> {
    use hyper::body::Body as _;
    // Redirects have no body: nothing to do, so they stay as they are.
    if !is_head || resp.body().is_end_stream() {
        return resp;
    }
    let len = resp.body().size_hint().exact();
    let (mut parts, _) = resp.into_parts();
    if let Some(len) = len {
        parts
            .headers
            .entry(CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(len));
    }
    Response::from_parts(parts, Body::default())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// HTTP/2 carries the host in `:authority` (the URI); HTTP/1.1 in `Host`.
fn request_host(req: &Request<Incoming>) -> &str {
    req.uri()
        .host()
        .or_else(|| req.headers().get(HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("")
}

/// Routes and answers, or hands back the link a password was posted to.
fn decide_proxy(
    req: &Request<Incoming>,
    host: &str,
    peer: SocketAddr,
    state: &State,
    lang: respond::Lang,
) -> Result<Response<Body>, router::Locked<'static>> {
    let now_ms = now_ms();
    let headers = req.headers();
    let unlocked = |id: &str, hash: &str| state.access.is_unlocked(headers, id, hash, now_ms);
    let local_clicks = |id: &str| {
        state
            .local_clicks
            .get(id)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    };
    let device = || state.device_of(headers);
    let country = || state.country_of(peer.ip(), headers);
    let facts = router::Facts {
        now_ms,
        unlocked: &unlocked,
        local_clicks: &local_clicks,
        device: &device,
        country: &country,
    };
    let snapshot = state.snapshots.load();
    let view = router::View::new(snapshot.as_deref(), &state.overlay, &state.default_host);
    let decision = router::route_with(
        host,
        req.uri().path(),
        req.uri().query(),
        req.method(),
        &view,
        &facts,
    );
    if let router::Decision::Redirect(redirect) = &decision
        && redirect.count_click
        && let Some(link_id) = &redirect.link_id
    {
        // A bot is served but spends none of the limit, which counts human clicks (as the
        // control plane's count does).
        if let Some(limit) = redirect.click_limit
            && !device().bot
            && !state.reserve_click(link_id, limit)
        {
            return Ok(respond::click_limit_reached(lang));
        }
        if let Some(sink) = &state.clicks {
            sink.record(link_id, now_ms, peer.ip(), headers, req.uri().query());
        }
    }
    // A GET of a bio page is a view, recorded like a click under the gallery's id (the control
    // plane counts it for the gallery, never for a link); HEAD is not a view.
    if let router::Decision::BioPage(page) = &decision
        && req.method() == Method::GET
        && let Some(sink) = &state.clicks
    {
        sink.record(page.id(), now_ms, peer.ip(), headers, req.uri().query());
    }
    match decision {
        router::Decision::Unlock(locked) => Err(locked.into_owned()),
        decision => Ok(respond::respond_in(decision, lang)),
    }
}

/// A password POST: throttle, read the form, verify off the executor, then the form again (401)
/// or a 303 back to the same URL with the access cookie.
async fn unlock(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: &State,
    locked: router::Locked<'static>,
    lang: respond::Lang,
    tls: bool,
) -> Response<Body> {
    use http_body_util::{BodyExt, Limited};

    let client = state.client_ip(peer.ip(), req.headers());
    if let Err(retry_after_s) = state.access.attempt(client, &locked.link_id) {
        tracing::info!(link_id = %locked.link_id, %client, retry_after_s, "password attempts throttled");
        return respond::too_many_attempts(lang, retry_after_s);
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let path = req.uri().path().to_owned();
    // Bounded in size and time: a form trickled in byte by byte must not hold the task.
    let body = Limited::new(req.into_body(), password::MAX_FORM_BYTES).collect();
    let body = match tokio::time::timeout(password::FORM_READ_TIMEOUT, body).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) | Err(_) => return respond::bad_form(lang),
    };
    let Some(submitted) = password::form_password(&body) else {
        return respond::bad_form(lang);
    };
    let hash = locked.password_hash.clone().into_owned();
    let ok = tokio::task::spawn_blocking(move || password::verify(&submitted, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        return respond::password_form(lang, true);
    }
    let cookie = state
        .access
        .issue(&locked.link_id, &locked.password_hash, &path, now_ms(), tls);
    respond::unlocked(&path_and_query, &cookie)
}

impl State {
    /// Takes one click of `limit` for `link_id` in this proxy's counter; `false` when none is
    /// left (the counter is not advanced past the limit).
    fn reserve_click(&self, link_id: &str, limit: u64) -> bool {
        let take = |n: &AtomicU64| {
            n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < limit).then_some(c + 1)
            })
            .is_ok()
        };
        if let Some(n) = self.local_clicks.get(link_id) {
            return take(&n);
        }
        take(&self.local_clicks.entry(link_id.into()).or_default())
    }

    fn enricher(&self) -> Option<&Arc<clicks::enrich::Enricher>> {
        match &self.clicks {
            Some(sink) => sink.enricher(),
            None => self.targeting.as_ref(),
        }
    }

    /// The visitor's device per the click pipeline's user-agent parser.
    fn device_of(&self, headers: &http::HeaderMap) -> router::Device {
        let Some(enricher) = self.enricher() else {
            return router::Device::default();
        };
        let ua = headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(device) = self.devices.get(ua) {
            return *device;
        }
        let agent = enricher.agent(ua);
        let platform = match agent.os.as_str() {
            "iOS" => router::Platform::Ios,
            "Android" => router::Platform::Android,
            _ => router::Platform::Other,
        };
        let form = match agent.device {
            "mobile" => router::FormFactor::Mobile,
            "tablet" => router::FormFactor::Tablet,
            "desktop" => router::FormFactor::Desktop,
            _ => router::FormFactor::Unknown,
        };
        let device = router::Device {
            platform,
            form,
            bot: agent.bot,
        };
        // Header values are the keys: a long one is answered but not kept.
        if ua.len() <= clicks::enrich::CACHE_KEY_MAX {
            if self.devices.len() >= clicks::enrich::UA_CACHE_MAX {
                self.devices.clear();
            }
            self.devices.insert(ua.into(), device);
        }
        device
    }

    /// The visitor's country per the click pipeline's source (trusted CDN header, then geo data).
    fn country_of(&self, peer: std::net::IpAddr, headers: &http::HeaderMap) -> Option<[u8; 2]> {
        let enricher = self.enricher()?;
        let raw = match &self.clicks {
            Some(sink) => sink.locate(peer, headers),
            None => clicks::RawClick::new("", 0, peer),
        };
        enricher.client_and_country(&raw).1.map(|c| c.bytes())
    }

    /// The client address the password throttle keys on (trusted forwarding headers applied).
    fn client_ip(&self, peer: std::net::IpAddr, headers: &http::HeaderMap) -> std::net::IpAddr {
        match (&self.clicks, self.enricher()) {
            (Some(sink), Some(enricher)) => {
                enricher.client_and_country(&sink.locate(peer, headers)).0
            }
            _ => peer,
        }
    }
}

fn handle_admin(req: &Request<Incoming>, state: &State) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no snapshot loaded and the change feed has not synced\n",
        ),
        "/metrics" => {
            let mut resp = Response::new(Body::new(Bytes::from(
                state.metrics.render(state.overlay.len()),
            )));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
