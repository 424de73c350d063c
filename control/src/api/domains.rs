//! `/api/v1/domains`: the default domain (shared by every team) and a team's custom domains.
//!
//! A custom domain is added `pending` with a random token, which the team proves it controls
//! by publishing it as a TXT record at `_sling-challenge.<host>` or by pointing the host at
//! the fleet, whose proxies then answer `/.well-known/sling-verify/<token>` with it (a
//! `well_known` row, delivered with `TlsChanged`). `POST …/verify` checks both (see
//! `crate::verify`); success makes it `verified`, writes a `domain.verified` outbox event and
//! queues its certificate order, all in one transaction. A failed check answers **200** with
//! the domain still `pending` and a `failureReason` saying what was found: the request itself
//! succeeded, and the user fixes the record and retries. A background task keeps checking
//! pending domains and marks them `failed` after `--verify-window-hours`.
//!
//! Every write appends its feed ops in the same transaction: `UpsertDomain` so proxies know
//! the host, `DeleteDomain` (which drops its links at the edge too), `TlsChanged` when a
//! well-known answer or the HTTPS redirect changes. Changing the default domain (or a shared
//! premium one) needs a key holding `*` that belongs to the operator's team (the one
//! bootstrap made; see `db::teams::is_operator`): every team may hold a `*` key for its own
//! resources. `domains:write` suffices for a team's own domains.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sling_shared::feed::ChangeOp;

use super::extract::{Json, Query};
use super::link_body::present;
use super::ok;
use super::paging::PageParams;
use crate::auth::Caller;
use crate::config::DomainPolicy;
use crate::db::{self, Backend, changes, domains, domains::DomainRow, outbox, well_known};
use crate::error::{ApiError, ApiResult};
use crate::plans::DomainKind;
use crate::state::AppState;
use crate::validate::{self, rfc3339};
use crate::verify::{self, HTTP_PREFIX, TXT_LABEL};
use sling_shared::link::{DomainPages, PageText};

/// A domain as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainView {
    pub id: String,
    pub host: String,
    pub is_default: bool,
    /// Ownership proven (links may use it).
    pub verified: bool,
    /// `pending`, `verified`, `issuing`, `active` or `failed`.
    pub status: String,
    pub failure_reason: Option<String>,
    /// `dns` or `http` once verified.
    pub verify_method: Option<String>,
    pub https_redirect: bool,
    pub root_redirect: Option<String>,
    pub not_found_redirect: Option<String>,
    /// The domain's own wording for its landing, 404 and 410 pages (`null`: built-in page).
    pub pages: DomainPages,
    pub created_at: String,
    pub verified_at: Option<String>,
    /// What to publish: the proofs of ownership and where to point the host. Custom domains
    /// only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The view of `d`; custom domains carry their records.
pub fn view(d: DomainRow, policy: &DomainPolicy) -> DomainView {
    let custom = d.team_id.is_some() && !d.is_default;
    let (records, hint) = match (&d.verify_token, custom) {
        (Some(token), true) => (
            Some(records(&d.host, token, policy)),
            Some(hint(&d, policy)),
        ),
        _ => (None, None),
    };
    DomainView {
        records,
        hint,
        is_default: d.is_default,
        verified: d.verified,
        failure_reason: d.failure_reason,
        verify_method: d.verify_method,
        https_redirect: d.https_redirect,
        created_at: rfc3339(d.created_at),
        verified_at: d.verified_at.map(rfc3339),
        status: d.status,
        root_redirect: d.root_redirect,
        not_found_redirect: d.not_found_redirect,
        pages: d.pages,
        id: d.id,
        host: d.host,
    }
}

/// The two proofs (either one suffices) and, when configured, where the fleet is.
fn records(host: &str, token: &str, policy: &DomainPolicy) -> Vec<serde_json::Value> {
    let mut out = vec![
        json!({"type": "TXT", "name": format!("{TXT_LABEL}.{host}"), "value": token}),
        json!({"type": "HTTP", "url": format!("http://{host}{HTTP_PREFIX}{token}"), "body": token}),
    ];
    if let Some(cname) = &policy.fleet_cname {
        out.push(json!({"type": "CNAME", "name": host, "value": cname}));
    }
    for ip in &policy.fleet_ips {
        let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
        out.push(json!({"type": kind, "name": host, "value": ip.to_string()}));
    }
    out
}

fn hint(d: &DomainRow, policy: &DomainPolicy) -> String {
    let point = match (&policy.fleet_cname, policy.fleet_ips.is_empty()) {
        (Some(c), _) => format!("a CNAME record to {c}"),
        (None, false) => "A/AAAA records to the fleet's addresses above".to_owned(),
        (None, true) => "a CNAME or A/AAAA records to the short-link servers".to_owned(),
    };
    format!(
        "Prove ownership with the TXT record, or with the HTTP token once {host} points at the \
         fleet; then call POST /api/v1/domains/{id}/verify. Links and certificates need {host} \
         to point at the fleet: {point}.",
        host = d.host,
        id = d.id,
    )
}

/// `POST /api/v1/domains`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainCreate {
    pub host: String,
    #[serde(default)]
    pub https_redirect: Option<bool>,
    #[serde(default)]
    pub root_redirect: Option<String>,
    #[serde(default)]
    pub not_found_redirect: Option<String>,
}

/// `PATCH /api/v1/domains/{id}`: an absent field is unchanged, `null` clears a redirect.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainPatch {
    #[serde(default, deserialize_with = "present")]
    pub root_redirect: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub not_found_redirect: Option<Option<String>>,
    #[serde(default)]
    pub https_redirect: Option<bool>,
    #[serde(default)]
    pub pages: Option<PagesPatch>,
}

/// `pages` of a PATCH: an absent page is unchanged, `null` restores the built-in one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagesPatch {
    #[serde(default, deserialize_with = "present")]
    pub landing: Option<Option<PageTextIn>>,
    #[serde(default, deserialize_with = "present")]
    pub not_found: Option<Option<PageTextIn>>,
    #[serde(default, deserialize_with = "present")]
    pub gone: Option<Option<PageTextIn>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageTextIn {
    pub title: String,
    pub message: String,
}

/// Longest page title and message, in characters: a heading and a paragraph, not a document.
const MAX_PAGE_TITLE: usize = 120;
const MAX_PAGE_MESSAGE: usize = 2000;

impl PagesPatch {
    /// Applies the patch to `pages` after checking every given page.
    fn apply(self, pages: &mut DomainPages) -> ApiResult<()> {
        for (name, patch, slot) in [
            ("landing", self.landing, &mut pages.landing),
            ("notFound", self.not_found, &mut pages.not_found),
            ("gone", self.gone, &mut pages.gone),
        ] {
            match patch {
                None => {}
                Some(None) => *slot = None,
                Some(Some(text)) => *slot = Some(page_text(name, text)?),
            }
        }
        Ok(())
    }
}

/// A page's text: plain text (the proxy escapes it), a non-empty one-line title, a message
/// whose only control characters are line breaks.
fn page_text(name: &'static str, text: PageTextIn) -> ApiResult<PageText> {
    let title = text.title.trim();
    let message = text.message.trim();
    let bad = |field: &'static str, m: &str| {
        ApiError::invalid_field(&["pages", name, field], m.to_owned())
    };
    if title.is_empty() {
        return Err(bad("title", "must not be empty"));
    }
    if title.chars().count() > MAX_PAGE_TITLE {
        return Err(bad("title", "is longer than 120 characters"));
    }
    if title.chars().any(char::is_control) {
        return Err(bad("title", "must be one line without control characters"));
    }
    if message.chars().count() > MAX_PAGE_MESSAGE {
        return Err(bad("message", "is longer than 2000 characters"));
    }
    if message.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad(
            "message",
            "must not contain control characters other than line breaks",
        ));
    }
    Ok(PageText {
        title: title.to_owned(),
        message: message.to_owned(),
    })
}

/// `GET /api/v1/domains`
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<Response> {
    let paging = p.paging()?;
    // A team has few domains (its plan caps them): read them all, show one page.
    let rows = domains::list_visible(&state.db, &caller.team_id).await?;
    let total = rows.len() as u64;
    let policy = &state.config.domains;
    let items: Vec<DomainView> = paging
        .slice(rows)
        .into_iter()
        .map(|d| view(d, policy))
        .collect();
    Ok(ok(paging.envelope(items, total)).into_response())
}

/// `GET /api/v1/domains/{id}`
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = domains::get_visible(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    Ok(ok(view(row, &state.config.domains)).into_response())
}

/// `POST /api/v1/domains`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<DomainCreate>,
) -> ApiResult<Response> {
    let host = custom_host(&state, &body.host)?;
    let plan = state.config.plans.resolve(&caller.plan);
    if state.config.domains.premium.contains(&host) {
        return Err(if plan.allows_domain(DomainKind::Premium) {
            ApiError::invalid_field(
                &["host"],
                format!("{host} is a shared premium domain: create links on it directly"),
            )
        } else {
            ApiError::DomainNotAllowed(format!(
                "the {} plan cannot use premium domains such as {host}",
                plan.name
            ))
        });
    }
    if !plan.allows_domain(DomainKind::Custom) {
        return Err(ApiError::DomainNotAllowed(format!(
            "the {} plan cannot add custom domains",
            plan.name
        )));
    }
    let root = redirect(&state, "rootRedirect", Some(body.root_redirect)).await?;
    let not_found = redirect(&state, "notFoundRedirect", Some(body.not_found_redirect)).await?;

    let now = db::now_ms();
    let token = new_token();
    let row = DomainRow {
        id: crate::ids::new_id("dom"),
        team_id: Some(caller.team_id.clone()),
        host: host.clone(),
        is_default: false,
        verified: false,
        root_redirect: root.flatten(),
        not_found_redirect: not_found.flatten(),
        status: domains::status::PENDING.into(),
        verify_method: None,
        verify_token: Some(token.clone()),
        failure_reason: None,
        verified_at: None,
        https_redirect: body.https_redirect.unwrap_or(false),
        pages: Default::default(),
        created_at: now,
    };

    let mut w = state.db.begin_write().await?;
    if w.backend == Backend::Postgres {
        // Serialises this team's domain additions, so two concurrent ones cannot both take
        // the last unit of the plan's limit (SQLite writers are serialised already).
        sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE")
            .bind(&caller.team_id)
            .execute(&mut *w.tx)
            .await?;
    }
    if let Some(existing) = domains::by_host(&mut *w.tx, &host).await? {
        return Err(ApiError::DomainExists(
            if existing.team_id.as_deref() == Some(caller.team_id.as_str()) {
                format!("this team already added {host} (id {})", existing.id)
            } else {
                format!("{host} is already a domain on this service")
            },
        ));
    }
    let count = domains::count_own(&mut w.tx, &caller.team_id).await?;
    if let Some(limit) = plan.custom_domains
        && count >= limit
    {
        return Err(ApiError::LimitReached {
            message: format!(
                "the {} plan allows {limit} custom domains; delete one to add another",
                plan.name
            ),
            quota: json!({
                "planType": plan.name, "resource": "customDomains",
                "currentCount": count, "limit": limit, "remaining": 0,
            }),
        });
    }
    domains::insert(&mut w.tx, &row, now).await?;
    well_known::put(
        &mut w.tx,
        &host,
        &format!("{HTTP_PREFIX}{token}"),
        &token,
        token_expiry(&state, now),
    )
    .await?;
    let seq = changes::append(&mut w, &[row.upsert_op(), ChangeOp::TlsChanged], now).await?;
    w.commit().await?;
    state.changes_committed(seq);
    tracing::info!(domain_id = %row.id, host = %host, team_id = %caller.team_id, "custom domain added");
    Ok((StatusCode::CREATED, ok(view(row, &state.config.domains))).into_response())
}

/// `POST /api/v1/domains/{id}/verify`: checks now. 200 either way; see the module docs.
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = domains::get_visible(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    // The default and premium domains are sling's own and verified already; so is a domain
    // verified earlier: answer with it as it is.
    let row = if row.verified || row.team_id.is_none() {
        row
    } else {
        check_and_record(&state, row, false).await?
    };
    Ok(ok(view(row, &state.config.domains)).into_response())
}

/// Checks an unverified custom domain once and stores the outcome: verified (with its event,
/// certificate order and feed ops), or the reason it is not, as `pending` — or `failed` when
/// `expire` and its window is over. Returns the domain as stored afterwards (as given when it
/// vanished meanwhile).
pub async fn check_and_record(
    state: &AppState,
    row: DomainRow,
    expire: bool,
) -> ApiResult<DomainRow> {
    let (Some(team_id), Some(token)) = (row.team_id.clone(), row.verify_token.clone()) else {
        return Ok(row);
    };
    // Network I/O outside the write transaction: it can take seconds.
    let outcome = verify::check_ownership(&state.config.verify, &row.host, &token).await;
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let mut ops = Vec::new();
    let mut order_requested = false;
    match outcome {
        Ok(method) => {
            if domains::mark_verified(&mut w.tx, &team_id, &row.id, method.as_str(), now).await? {
                // The token has done its job; the proxies stop answering it.
                well_known::delete(&mut w.tx, &row.host, &format!("{HTTP_PREFIX}{token}")).await?;
                outbox::append(
                    &mut w.tx,
                    Some(&team_id),
                    "domain.verified",
                    &json!({
                        "domainId": row.id, "host": row.host, "teamId": team_id,
                        "method": method.as_str(), "verifiedAt": rfc3339(now),
                    }),
                    now,
                )
                .await?;
                domains::request_certificate(&mut w.tx, &row.id, now).await?;
                order_requested = true;
                ops.push(ChangeOp::TlsChanged);
                tracing::info!(domain_id = %row.id, host = %row.host, method = method.as_str(),
                    "custom domain verified");
            }
        }
        Err(reason) => {
            let window_ms =
                i64::try_from(state.config.verify.window.as_millis()).unwrap_or(i64::MAX);
            let expired = expire && now.saturating_sub(row.created_at) >= window_ms;
            let (status, reason) = if expired {
                let hours = state.config.verify.window.as_secs() / 3600;
                (
                    domains::status::FAILED,
                    format!("not verified within {hours} h; last check: {reason}"),
                )
            } else if row.status == domains::status::FAILED {
                // A manual retry of a failed domain that fails again stays failed.
                (domains::status::FAILED, reason)
            } else {
                (domains::status::PENDING, reason)
            };
            domains::record_check_failure(&mut w.tx, &team_id, &row.id, status, &reason, now)
                .await?;
        }
    }
    let stored = domains::get_own(&mut *w.tx, &team_id, &row.id).await?;
    if let Some(d) = &stored
        && !ops.is_empty()
    {
        ops.insert(0, d.upsert_op());
    }
    if ops.is_empty() {
        w.commit().await?;
    } else {
        let seq = changes::append(&mut w, &ops, now).await?;
        w.commit().await?;
        state.changes_committed(seq);
    }
    if order_requested {
        // Order the certificate now rather than at the worker's next poll.
        state.acme_wake.notify_one();
    }
    Ok(stored.unwrap_or(row))
}

/// `DELETE /api/v1/domains/{id}`: the domain, its links, answers, order and certificate.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let row = domains::get_visible(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    if row.team_id.is_none() {
        return Err(ApiError::NotPermitted(format!(
            "{} is {} domain and cannot be deleted",
            row.host,
            if row.is_default {
                "the default"
            } else {
                "a shared premium"
            }
        )));
    }
    // The domain's links go with it, and so do their QR codes.
    db::qr_codes::delete_for_domain(&mut w.tx, &caller.team_id, &id).await?;
    let links = domains::delete_own(&mut w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    outbox::append(
        &mut w.tx,
        Some(&caller.team_id),
        "domain.deleted",
        &json!({
            "domainId": row.id, "host": row.host, "teamId": caller.team_id,
            "linksDeleted": links, "deletedAt": rfc3339(now),
        }),
        now,
    )
    .await?;
    let ops = [
        ChangeOp::DeleteDomain {
            host: row.host.clone(),
        },
        ChangeOp::TlsChanged,
    ];
    let seq = changes::append(&mut w, &ops, now).await?;
    w.commit().await?;
    state.changes_committed(seq);
    tracing::info!(domain_id = %row.id, host = %row.host, links_deleted = links, "custom domain deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// For a domain every team shares (the default, a shared premium one): only the operator's
/// all-powerful key may act on it. Any team may mint itself a `*` key for its own resources,
/// so the scope alone is not enough; the key must also be the operator team's.
pub(super) async fn require_operator(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    host: &str,
) -> ApiResult<()> {
    caller.require("*")?;
    if !db::teams::is_operator(conn, &caller.team_id).await? {
        return Err(ApiError::NotPermitted(format!(
            "{host} is shared by every team: only the operator's team may change it"
        )));
    }
    Ok(())
}

/// `PATCH /api/v1/domains/{id}`
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(patch): Json<DomainPatch>,
) -> ApiResult<Response> {
    let root = redirect(&state, "rootRedirect", patch.root_redirect).await?;
    let not_found = redirect(&state, "notFoundRedirect", patch.not_found_redirect).await?;
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let mut row = domains::get_visible(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("domain"))?;
    if row.team_id.is_none() {
        require_operator(&mut w.tx, &caller, &row.host).await?;
    }
    if let Some(v) = root {
        row.root_redirect = v;
    }
    if let Some(v) = not_found {
        row.not_found_redirect = v;
    }
    if let Some(pages) = patch.pages {
        pages.apply(&mut row.pages)?;
    }
    if !domains::update_behaviour(&mut w.tx, &row, now).await? {
        return Err(ApiError::NotFound("domain"));
    }
    let mut ops = vec![row.upsert_op()];
    if let Some(on) = patch.https_redirect
        && on != row.https_redirect
    {
        domains::set_https_redirect(&mut w.tx, &row.id, on, now).await?;
        row.https_redirect = on;
        // The redirect policy travels with the TLS state, not the domain record.
        ops.push(ChangeOp::TlsChanged);
    }
    let seq = changes::append(&mut w, &ops, now).await?;
    w.commit().await?;
    state.changes_committed(seq);
    Ok(ok(view(row, &state.config.domains)).into_response())
}

/// A host a team may add: normalised (lower case, no trailing dot, IDNA → punycode, port
/// dropped) and not an IP literal, a single label, or one of sling's own domains.
fn custom_host(state: &AppState, raw: &str) -> ApiResult<String> {
    let bad = |m: String| ApiError::invalid_field(&["host"], m);
    let trimmed = raw.trim();
    if trimmed.contains("://") || trimmed.contains('/') {
        return Err(bad(format!(
            "{trimmed:?} is a URL: give the host name alone"
        )));
    }
    let bare = trimmed
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or("");
    if bare.parse::<std::net::IpAddr>().is_ok() || trimmed.parse::<std::net::IpAddr>().is_ok() {
        return Err(bad(format!(
            "{trimmed} is an IP address: custom domains are host names"
        )));
    }
    let host = sling_shared::host::normalize_host(trimmed)
        .map_err(|e| bad(format!("{trimmed:?}: {e}")))?;
    let Some((_, tld)) = host.rsplit_once('.') else {
        return Err(bad(format!(
            "{host} is a single label: give a fully qualified name such as links.example.com"
        )));
    };
    // An all-numeric last label is an IPv4 address in another spelling (1.2.3 or 0x7f.1).
    if tld.bytes().all(|b| b.is_ascii_digit()) || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(bad(format!("{host} is not a valid domain name")));
    }
    let cfg = &state.config;
    let short_base_host = url::Url::parse(&cfg.short_url_base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if host == cfg.default_domain || short_base_host.as_deref() == Some(host.as_str()) {
        return Err(bad(format!("{host} is this service's own domain")));
    }
    if !cfg.domains.allow_default_subdomains && host.ends_with(&format!(".{}", cfg.default_domain))
    {
        return Err(bad(format!(
            "{host} is under this service's own domain {}",
            cfg.default_domain
        )));
    }
    Ok(host)
}

/// A verification token: 32 alphanumerics (~190 bits), safe in a DNS TXT value and a URL path.
fn new_token() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The HTTP token is served through the verification window and a while after, so a manual
/// retry of a domain that failed on time can still succeed over HTTP.
fn token_expiry(state: &AppState, now: i64) -> i64 {
    let window_ms = i64::try_from(state.config.verify.window.as_millis()).unwrap_or(i64::MAX);
    now.saturating_add(window_ms)
        .saturating_add(30 * 86_400_000)
}

/// A validated redirect target: an http(s) URL that does not point back at sling (a loop).
async fn redirect(
    state: &AppState,
    field: &'static str,
    raw: Option<Option<String>>,
) -> ApiResult<Option<Option<String>>> {
    let Some(Some(raw)) = raw else {
        return Ok(raw);
    };
    let url = validate::url(&[field], &raw)?;
    if super::links::is_own_host(state, url.host_str().unwrap_or("")).await? {
        return Err(ApiError::invalid_url(
            &[field],
            "must not point at a domain sling serves (it would loop)",
        ));
    }
    Ok(Some(Some(url.to_string())))
}

/// Background re-checks of pending domains every `--verify-interval-ms`, until each is
/// verified or its window ends (then `failed`); also prunes expired well-known answers.
pub async fn recheck_loop(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.verify.interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match domains::pending(&state.db, 500).await {
            Ok(rows) => {
                for row in rows {
                    if *shutdown.borrow() {
                        return;
                    }
                    let id = row.id.clone();
                    if let Err(e) = check_and_record(&state, row, true).await {
                        tracing::warn!(domain_id = %id, error = %e, "re-checking a pending domain failed; will retry");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing pending domains failed; will retry"),
        }
        if let Err(e) = well_known::prune(&state.db, db::now_ms()).await {
            tracing::warn!(error = %e, "pruning well-known answers failed; will retry");
        }
    }
}

/// The hand-written OpenAPI part of the domain operations, for `openapi::operation`.
pub fn openapi_operation(op: super::Op) -> serde_json::Value {
    use super::Op;
    use super::openapi::{error_ref as err, ok_json};
    let s = json!({"type": "string"});
    let opt_s = json!({"type": ["string", "null"]});
    let time = json!({"type": "string", "format": "date-time"});
    let opt_time = json!({"type": ["string", "null"], "format": "date-time"});
    let url = json!({"type": ["string", "null"], "format": "uri"});
    let record = json!({"type": "object", "description":
        "TXT {name, value} or HTTP {url, body}: either proves ownership. CNAME/A/AAAA {name, value}: where to point the host (when the operator configured --fleet-cname / --fleet-ips).",
        "properties": {"type": {"enum": ["TXT", "HTTP", "CNAME", "A", "AAAA"]},
            "name": s, "value": s, "url": s, "body": s}});
    let page = json!({"type": ["object", "null"], "additionalProperties": false,
        "required": ["title", "message"], "description":
        "Plain text shown in the built-in page template (escaped; no markup). null: the built-in page in the visitor's language.",
        "properties": {"title": {"type": "string", "minLength": 1, "maxLength": MAX_PAGE_TITLE},
            "message": {"type": "string", "maxLength": MAX_PAGE_MESSAGE}}});
    let pages = json!({"type": "object", "additionalProperties": false, "properties": {
        "landing": page, "notFound": page, "gone": page}});
    let domain = json!({"type": "object", "properties": {
        "id": s, "host": s, "isDefault": {"type": "boolean"},
        "verified": {"type": "boolean", "description": "Ownership proven; links may use the domain"},
        "status": {"enum": ["pending", "verified", "issuing", "active", "failed"]},
        "failureReason": opt_s, "verifyMethod": {"enum": ["dns", "http", null]},
        "httpsRedirect": {"type": "boolean"},
        "rootRedirect": url, "notFoundRedirect": url, "pages": pages,
        "createdAt": time, "verifiedAt": opt_time,
        "records": {"type": "array", "items": record}, "hint": s}});
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    match op {
        Op::ListDomains => {
            json!({"tags": ["domains"], "parameters": super::paging::openapi_parameters(), "responses": {"200": ok_json(
            "The default domain and the team's own",
            json!({"type": "object", "properties": {"items": {"type": "array", "items": domain},
                "pagination": {"$ref": "#/components/schemas/Pagination"}}}))}})
        }
        Op::GetDomain => json!({"tags": ["domains"], "parameters": id, "responses": {
            "200": ok_json("The domain", domain), "404": err("NOT_FOUND")}}),
        Op::CreateDomain => json!({
            "tags": ["domains"],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "required": ["host"],
                "properties": {"host": {"type": "string", "description":
                    "Normalised: lower case, IDNA to punycode, trailing dot and port dropped"},
                    "httpsRedirect": {"type": "boolean"},
                    "rootRedirect": url, "notFoundRedirect": url}}}}},
            "responses": {
                "201": ok_json("The new domain, `pending`, with the records to publish", domain),
                "400": err("INVALID_REQUEST: not a host name, an IP address, a single label, or one of this service's own domains; INVALID_URL: a redirect"),
                "403": err("DOMAIN_NOT_ALLOWED: the plan has no custom domains, or the host is a premium domain the plan cannot use; LIMIT_REACHED (with `quota`): the plan's custom-domain limit"),
                "409": err("DOMAIN_EXISTS: the host is already a domain (this team's or another's)"),
            },
        }),
        Op::VerifyDomain => json!({
            "tags": ["domains"],
            "parameters": id,
            "description": "Checks the TXT record, then the HTTP token. Both outcomes answer 200: verified (`status` `verified`, then `issuing`/`active` as the certificate is ordered), or still `pending` with `failureReason` saying what was found for each proof, to fix and retry. Pending domains are also re-checked in the background until the verification window ends (then `failed`).",
            "responses": {
                "200": ok_json("The domain after the check", domain),
                "404": err("NOT_FOUND"),
            },
        }),
        Op::DeleteDomain => json!({
            "tags": ["domains"],
            "parameters": id,
            "description": "Deletes the domain with its links, certificate and pending order; proxies drop them at once.",
            "responses": {
                "204": {"description": "Deleted"},
                "403": err("FORBIDDEN: the default domain and shared premium domains cannot be deleted"),
                "404": err("NOT_FOUND"),
            },
        }),
        _ => json!({
            "tags": ["domains"],
            "parameters": id,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false,
                "properties": {"rootRedirect": url, "notFoundRedirect": url,
                    "pages": {"allOf": [pages], "description":
                        "The landing (`/`), 404 and 410 pages' wording; an absent page is unchanged, null restores the built-in page"},
                    "httpsRedirect": {"type": "boolean", "description":
                        "Plain-HTTP requests get a 308 to https:// once the domain has a certificate"}}}}}},
            "responses": {
                "200": ok_json("The updated domain", domain),
                "400": err("INVALID_URL: not http(s), or a sling domain (loop)"),
                "403": err("FORBIDDEN: a shared domain needs a `*` key of the operator's team"),
                "404": err("NOT_FOUND"),
            },
        }),
    }
}
