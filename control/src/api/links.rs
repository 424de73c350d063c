//! `/api/v1/links`: create, list, get, update, delete, enable/disable/archive/unarchive, bulk.
//!
//! Every write runs in one transaction that also appends the matching change-feed entries
//! (last, just before commit), then wakes the feed. Every read and write is scoped by the
//! caller's team: another team's link is indistinguishable from a missing one (404).

use argon2::password_hash::{PasswordHasher, SaltString};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use sling_shared::feed::ChangeOp;
use sqlx::{Acquire, AnyConnection};

use super::extract::{Json, Path, Query, from_value};
use super::link_body::{LinkChanges, LinkInput, LinkView};
use super::ok;
use super::paging::Paging;
use crate::auth::Caller;
use crate::db::domains::{self, DomainRow};
use crate::db::links::{self, LinkRow, ListFilter, Sort};
use crate::db::{self, changes, usage};
use crate::error::{ApiError, ApiResult, Detail};
use crate::plans::DomainKind;
use crate::state::AppState;

pub const MAX_BULK: usize = 1000;
const MAX_SEARCH_LEN: usize = 200;
/// Generated-slug attempts before giving up (each collides with probability ~n/1.9e12).
const SLUG_ATTEMPTS: usize = 8;

/// A validated input with everything resolved that needs I/O or CPU outside the transaction.
struct Prepared {
    changes: LinkChanges,
    domain: Option<DomainRow>,
    password_hash: Option<Option<String>>,
}

/// Validates `input`, resolves its domain, refuses URLs that would loop back through sling, and
/// hashes a new password. Runs before the write transaction so the slow parts (argon2) never
/// hold the write lock.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    input: LinkInput,
    creating: bool,
    now: i64,
) -> ApiResult<Prepared> {
    let mut changes = input.validate(creating, now)?;

    let domain = match changes.domain.take() {
        Some(Some(host)) => Some(team_domain(state, caller, &host).await?),
        Some(None) => Some(default_domain_for(state, caller).await?),
        None if creating => Some(default_domain_for(state, caller).await?),
        None => None,
    };

    for (path, u) in changes.urls() {
        let host = url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        if is_own_host(state, &host).await? {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            return Err(ApiError::invalid_url(
                &path,
                format!("would loop: {host} is served by this shortener"),
            ));
        }
    }

    let password_hash = match changes.password.take() {
        Some(Some(pw)) => Some(Some(hash_password(pw).await?)),
        Some(None) => Some(None),
        None => None,
    };
    Ok(Prepared {
        changes,
        domain,
        password_hash,
    })
}

async fn default_domain(state: &AppState) -> ApiResult<DomainRow> {
    domains::default_domain(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no default domain: run bootstrap")))
}

/// The default domain, if the caller's plan may use it.
pub(crate) async fn default_domain_for(state: &AppState, caller: &Caller) -> ApiResult<DomainRow> {
    let d = default_domain(state).await?;
    let plan = state.config.plans.resolve(&caller.plan);
    if plan.allows_domain(DomainKind::Default) {
        Ok(d)
    } else {
        Err(ApiError::DomainNotAllowed(format!(
            "the {} plan cannot use the default domain {}; pass a custom domain",
            plan.name, d.host
        )))
    }
}

/// A domain the caller may put links on: the default one or one of the team's own, verified.
/// Another team's domain looks exactly like an unknown one.
pub(crate) async fn team_domain(
    state: &AppState,
    caller: &Caller,
    host: &str,
) -> ApiResult<DomainRow> {
    let d = domains::by_host(&state.db.pool, host).await?;
    let plan = state.config.plans.resolve(&caller.plan);
    let allowed = |d: DomainRow, kind: DomainKind| {
        if plan.allows_domain(kind) {
            Ok(d)
        } else {
            Err(ApiError::DomainNotAllowed(format!(
                "the {} plan cannot use {} domains such as {}",
                plan.name,
                match kind {
                    DomainKind::Default => "default",
                    DomainKind::Premium => "premium",
                    DomainKind::Custom => "custom",
                },
                d.host
            )))
        }
    };
    match d {
        Some(d) if d.is_default => allowed(d, DomainKind::Default),
        // A shared domain that is not the default: premium (like.do's kfc.sh, uv.do).
        Some(d) if d.team_id.is_none() && d.verified => allowed(d, DomainKind::Premium),
        Some(d) if d.team_id.as_deref() == Some(caller.team_id.as_str()) => {
            if d.verified {
                allowed(d, DomainKind::Custom)
            } else {
                Err(ApiError::DomainNotVerified(d.host))
            }
        }
        _ => Err(ApiError::invalid_field(
            &["domain"],
            format!("unknown domain {host:?}; add it with POST /api/v1/domains first"),
        )),
    }
}

/// Does `host` belong to sling itself (so a redirect there could loop)?
pub(crate) async fn is_own_host(state: &AppState, host: &str) -> ApiResult<bool> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == state.config.default_domain {
        return Ok(true);
    }
    let base_host = url::Url::parse(&state.config.short_url_base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if base_host.as_deref() == Some(host.as_str()) {
        return Ok(true);
    }
    Ok(domains::is_served_host(&state.db, &host).await?)
}

/// argon2id (PHC string) on the blocking pool: it is deliberately slow.
async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// A fresh row with the defaults of PRODUCT.md, before the input is applied.
fn new_row(caller: &Caller, domain: &DomainRow, channel: &str, now: i64) -> LinkRow {
    LinkRow {
        id: crate::ids::new_id("lnk"),
        team_id: caller.team_id.clone(),
        domain_id: domain.id.clone(),
        host: domain.host.clone(),
        domain_is_default: domain.is_default,
        slug: String::new(),
        destination_url: String::new(),
        title: None,
        description: None,
        tags: Vec::new(),
        password_hash: None,
        expires_at: None,
        expired_url: None,
        click_limit: None,
        geo_targets: Default::default(),
        device_targets: Default::default(),
        ios_url: None,
        android_url: None,
        utm_source: None,
        utm_medium: None,
        utm_campaign: None,
        utm_term: None,
        utm_content: None,
        external_id: None,
        redirect_type: 302,
        forward_query: true,
        active: true,
        archived: false,
        visible: true,
        clicks: 0,
        channel: channel.to_owned(),
        created_at: now,
        updated_at: now,
    }
}

/// Builds the row for a prepared create.
fn build_row(caller: &Caller, p: Prepared, channel: &str, now: i64) -> ApiResult<(LinkRow, bool)> {
    let Prepared {
        changes,
        domain,
        password_hash,
    } = p;
    let domain =
        domain.ok_or_else(|| ApiError::internal(anyhow::anyhow!("create without domain")))?;
    let generated = changes.slug.is_none();
    let mut row = new_row(caller, &domain, channel, now);
    changes.apply(&mut row, Some(&domain), password_hash);
    if generated {
        row.slug = sling_shared::slug::generate();
    }
    Ok((row, generated))
}

/// Inserts a new link, retrying generated slugs that collide and refusing taken custom ones.
async fn insert_new(conn: &mut AnyConnection, row: &mut LinkRow, generated: bool) -> ApiResult<()> {
    if generated {
        let mut attempts = 0;
        while links::slug_taken(conn, &row.domain_id, &row.slug).await? {
            attempts += 1;
            if attempts >= SLUG_ATTEMPTS {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "could not generate a free slug in {SLUG_ATTEMPTS} attempts"
                )));
            }
            // Longer slugs after a few collisions: the space grows 56× per character.
            let len = sling_shared::slug::GENERATED_LEN + attempts / 2;
            row.slug = sling_shared::slug::generate_len(len);
        }
    } else if links::slug_taken(conn, &row.domain_id, &row.slug).await? {
        return Err(ApiError::SlugExists);
    }
    if let Some(ext) = &row.external_id
        && links::external_id_taken(conn, &row.team_id, ext, &row.id).await?
    {
        return Err(ApiError::ExternalIdExists);
    }
    links::insert(conn, row).await?;
    Ok(())
}

/// Appends `ops` (if any), commits, and wakes the feed.
pub(crate) async fn commit(
    state: &AppState,
    mut w: db::WriteTx,
    ops: &[ChangeOp],
    now: i64,
) -> ApiResult<()> {
    if ops.is_empty() {
        w.commit().await?;
        return Ok(());
    }
    let seq = changes::append(&mut w, ops, now).await?;
    w.commit().await?;
    state.changes_committed(seq);
    Ok(())
}

fn view(state: &AppState, row: LinkRow) -> LinkView {
    LinkView::new(row, &state.config.short_url_base)
}

/// Queues `event_type` webhook deliveries, one event per payload, in the caller's transaction;
/// the payloads are built only when a webhook of the team wants the event. Returns how many
/// deliveries were queued (the caller wakes the worker after committing).
async fn link_events(
    conn: &mut AnyConnection,
    team_id: &str,
    event_type: &str,
    payloads: impl FnOnce() -> Vec<serde_json::Value>,
    now: i64,
) -> ApiResult<u64> {
    let hooks = db::webhooks::subscribers(conn, team_id, event_type).await?;
    if hooks.is_empty() {
        return Ok(0);
    }
    let payloads = payloads();
    let ids: Vec<String> = payloads.iter().map(|_| crate::ids::new_id("evt")).collect();
    let events: Vec<db::webhooks::Event<'_>> = ids
        .iter()
        .zip(&payloads)
        .map(|(id, payload)| db::webhooks::Event {
            id,
            event_type,
            payload,
        })
        .collect();
    Ok(db::webhooks::enqueue(conn, &hooks, &events, now).await?)
}

fn link_payload(state: &AppState, row: &LinkRow) -> serde_json::Value {
    serde_json::json!({ "link": view(state, row.clone()) })
}

fn wake_webhooks(state: &AppState, queued: u64) {
    if queued > 0 {
        state.webhook_wake.notify_one();
    }
}

/// `POST /api/v1/links`
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<LinkInput>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let prepared = prepare(&state, &caller, input, true, now).await?;
    let (mut row, generated) = build_row(&caller, prepared, "api", now)?;
    let plan = state.config.plans.resolve(&caller.plan);
    let mut w = state.db.begin_write().await?;
    insert_new(&mut w.tx, &mut row, generated).await?;
    // Counted in the same transaction: a refused create rolls back with its counter.
    usage::consume(&mut w.tx, &caller.team_id, plan, 1, state.clock.now_ms()).await?;
    let payload = || vec![link_payload(&state, &row)];
    let queued = link_events(&mut w.tx, &caller.team_id, "link.created", payload, now).await?;
    commit(&state, w, &[row.upsert_op()], now).await?;
    wake_webhooks(&state, queued);
    Ok((StatusCode::CREATED, ok(view(&state, row))).into_response())
}

/// Query parameters of `GET /api/v1/links` (the seeds' `limit`, `sortBy`, `sortOrder`
/// spellings are accepted too). Unknown parameters (such as `key`) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub page: Option<u32>,
    #[serde(alias = "limit", alias = "per_page")]
    pub per_page: Option<u32>,
    pub search: Option<String>,
    pub domain: Option<String>,
    pub tag: Option<String>,
    pub active: Option<bool>,
    pub archived: Option<bool>,
    pub visible: Option<bool>,
    #[serde(alias = "sortBy")]
    pub sort: Option<String>,
    #[serde(alias = "sortOrder")]
    pub order: Option<String>,
}

/// `GET /api/v1/links`
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    let paging = Paging::new(p.page, p.per_page)?;
    let sort = match p.sort.as_deref() {
        None | Some("createdAt" | "created_at") => Sort::CreatedAt,
        Some("updatedAt" | "updated_at") => Sort::UpdatedAt,
        Some("clicks") => Sort::Clicks,
        Some("slug") => Sort::Slug,
        Some(_) => {
            return Err(ApiError::invalid_field(
                &["sort"],
                "must be createdAt, updatedAt, clicks or slug",
            ));
        }
    };
    let descending = match p.order.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::invalid_field(&["order"], "must be asc or desc")),
    };
    let search = match p.search {
        Some(s) if s.chars().count() > MAX_SEARCH_LEN => {
            return Err(ApiError::invalid_field(
                &["search"],
                format!("must be at most {MAX_SEARCH_LEN} characters"),
            ));
        }
        Some(s) if s.trim().is_empty() => None,
        s => s.map(|s| s.trim().to_owned()),
    };
    let domain_host = match p.domain.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(h) => Some(
            sling_shared::host::normalize_host(h)
                .map_err(|e| ApiError::invalid_field(&["domain"], e.to_string()))?,
        ),
    };
    let tag = match p.tag.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) if t.chars().count() > crate::validate::MAX_TAG_LEN => {
            return Err(ApiError::invalid_field(&["tag"], "is too long"));
        }
        Some(t) => Some(t.to_owned()),
    };
    let filter = ListFilter {
        search,
        domain_host,
        tag,
        active: p.active,
        archived: p.archived,
        visible: p.visible,
        sort,
        descending,
        limit: paging.per_page,
        offset: paging.offset(),
    };
    let (rows, total) = links::list(&state.db, &caller.team_id, &filter).await?;
    let items: Vec<LinkView> = rows.into_iter().map(|r| view(&state, r)).collect();
    Ok(ok(paging.envelope(items, total)).into_response())
}

/// `GET /api/v1/links/{id}`
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = links::get(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("link"))?;
    Ok(ok(view(&state, row)).into_response())
}

/// `GET /api/v1/links/external/{externalId}`
pub async fn get_by_external_id(
    State(state): State<AppState>,
    caller: Caller,
    Path(external_id): Path<String>,
) -> ApiResult<Response> {
    let row = links::get_by_external_id(&state.db, &caller.team_id, &external_id)
        .await?
        .ok_or(ApiError::NotFound("link"))?;
    Ok(ok(view(&state, row)).into_response())
}

/// `PATCH` and `PUT /api/v1/links/{id}`: fields present are set, `null` clears, absent fields
/// are left alone.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<LinkInput>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let Prepared {
        changes,
        domain,
        password_hash,
    } = prepare(&state, &caller, input, false, now).await?;
    let mut w = state.db.begin_write().await?;
    let mut row = links::get(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("link"))?;
    let old = row.clone();
    changes.apply(&mut row, domain.as_ref(), password_hash);
    row.updated_at = now;

    let moved = row.domain_id != old.domain_id || row.slug != old.slug;
    if moved && links::slug_taken(&mut w.tx, &row.domain_id, &row.slug).await? {
        return Err(ApiError::SlugExists);
    }
    let ext_changed = row.external_id != old.external_id;
    if let Some(ext) = row.external_id.as_deref().filter(|_| ext_changed)
        && links::external_id_taken(&mut w.tx, &row.team_id, ext, &row.id).await?
    {
        return Err(ApiError::ExternalIdExists);
    }
    if !links::update(&mut w.tx, &row).await? {
        return Err(ApiError::NotFound("link"));
    }
    let ops = if moved {
        vec![old.delete_op(), row.upsert_op()]
    } else {
        vec![row.upsert_op()]
    };
    if moved {
        // Its QR codes follow it to its new short URL.
        let content = crate::api::qr::link_content(&view(&state, row.clone()).short_url);
        db::qr_codes::retarget_link(&mut w.tx, &caller.team_id, &row.id, &content, now).await?;
    }
    let payload = || vec![link_payload(&state, &row)];
    let queued = link_events(&mut w.tx, &caller.team_id, "link.updated", payload, now).await?;
    commit(&state, w, &ops, now).await?;
    wake_webhooks(&state, queued);
    Ok(ok(view(&state, row)).into_response())
}

/// `DELETE /api/v1/links/{id}` → 204 with an empty body.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let row = links::get(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("link"))?;
    if !links::delete(&mut w.tx, &caller.team_id, &id).await? {
        return Err(ApiError::NotFound("link"));
    }
    db::qr_codes::delete_for_link(&mut w.tx, &caller.team_id, &id).await?;
    let payload = || {
        vec![serde_json::json!({
            "link": {"id": row.id, "domain": row.host, "slug": row.slug},
            "deletedAt": crate::validate::rfc3339(now),
        })]
    };
    let queued = link_events(&mut w.tx, &caller.team_id, "link.deleted", payload, now).await?;
    commit(&state, w, &[row.delete_op()], now).await?;
    wake_webhooks(&state, queued);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Sets one flag and publishes the link.
async fn set_flag(
    state: AppState,
    caller: Caller,
    id: String,
    set: fn(&mut LinkRow),
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let mut row = links::get(&mut *w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("link"))?;
    set(&mut row);
    row.updated_at = now;
    if !links::update(&mut w.tx, &row).await? {
        return Err(ApiError::NotFound("link"));
    }
    let payload = || vec![link_payload(&state, &row)];
    let queued = link_events(&mut w.tx, &caller.team_id, "link.updated", payload, now).await?;
    commit(&state, w, &[row.upsert_op()], now).await?;
    wake_webhooks(&state, queued);
    Ok(ok(view(&state, row)).into_response())
}

/// `POST /api/v1/links/{id}/enable`
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_flag(state, caller, id, |r| r.active = true).await
}

/// `POST /api/v1/links/{id}/disable`
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_flag(state, caller, id, |r| r.active = false).await
}

/// `POST /api/v1/links/{id}/archive`
pub async fn archive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_flag(state, caller, id, |r| r.archived = true).await
}

/// `POST /api/v1/links/{id}/unarchive`
pub async fn unarchive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_flag(state, caller, id, |r| r.archived = false).await
}

/// `POST /api/v1/links/bulk`: a JSON array of create bodies, or `{"links": [...], "channel":
/// "api" | "import"}`. Each item succeeds or fails on its own (`{index, success, data | error}`);
/// the successful ones are committed together with their feed changes.
pub async fn bulk(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Response> {
    let (items, channel) = bulk_items(body)?;
    let now = db::now_ms();

    let mut results: Vec<Option<serde_json::Value>> = vec![None; items.len()];
    let mut ready: Vec<(usize, LinkRow, bool)> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let prepared = match from_value::<LinkInput>(item) {
            Ok(input) => prepare(&state, &caller, input, true, now).await,
            Err(e) => Err(e),
        };
        match prepared.and_then(|p| build_row(&caller, p, &channel, now)) {
            Ok((row, generated)) => ready.push((i, row, generated)),
            Err(e) if is_server_error(&e) => return Err(e),
            Err(e) => results[i] = Some(item_error(i, &e)),
        }
    }

    let plan = state.config.plans.resolve(&caller.plan);
    let quota_now = state.clock.now_ms();
    let mut w = state.db.begin_write().await?;
    // Each created item counts against the quotas; the counter rows stay locked until commit.
    let (allowance, counts) = if ready.is_empty() {
        (None, Vec::new())
    } else {
        usage::available(&mut w.tx, &caller.team_id, plan, quota_now).await?
    };
    let mut ops = Vec::with_capacity(ready.len());
    for (i, mut row, generated) in ready {
        let created = ops.len() as u64;
        if allowance.is_some_and(|left| created >= left) {
            let e = usage::exhausted(plan, &counts, created, quota_now);
            results[i] = Some(item_error(i, &e));
            continue;
        }
        // A savepoint per item: a failed insert must not poison the others.
        let mut sp = w.tx.begin().await?;
        match insert_new(&mut sp, &mut row, generated).await {
            Ok(()) => {
                sp.commit().await?;
                ops.push(row.upsert_op());
                results[i] = Some(serde_json::json!({
                    "index": i,
                    "success": true,
                    "data": view(&state, row),
                }));
            }
            Err(e) => {
                sp.rollback().await?;
                if is_server_error(&e) {
                    return Err(e);
                }
                results[i] = Some(item_error(i, &e));
            }
        }
    }
    if !ops.is_empty() {
        usage::consume(
            &mut w.tx,
            &caller.team_id,
            plan,
            ops.len() as u64,
            quota_now,
        )
        .await?;
    }
    // The created links' views are already in the results.
    let created = || {
        results
            .iter()
            .flatten()
            .filter(|r| r["success"] == true)
            .map(|r| serde_json::json!({ "link": r["data"] }))
            .collect()
    };
    let queued = link_events(&mut w.tx, &caller.team_id, "link.created", created, now).await?;
    commit(&state, w, &ops, now).await?;
    wake_webhooks(&state, queued);

    let results: Vec<serde_json::Value> = results.into_iter().flatten().collect();
    let succeeded = ops.len();
    Ok(ok(serde_json::json!({
        "results": results,
        "succeeded": succeeded,
        "failed": results.len() - succeeded,
    }))
    .into_response())
}

fn is_server_error(e: &ApiError) -> bool {
    e.status().is_server_error()
}

fn item_error(index: usize, e: &ApiError) -> serde_json::Value {
    let body = e.body();
    let mut error =
        serde_json::json!({ "code": body.code, "message": body.message, "details": body.details });
    if let Some(q) = body.quota {
        error["quota"] = q;
    }
    serde_json::json!({ "index": index, "success": false, "error": error })
}

/// The items of a bulk body and the channel to record on them.
fn bulk_items(body: serde_json::Value) -> ApiResult<(Vec<serde_json::Value>, String)> {
    let (items, channel) = match body {
        serde_json::Value::Array(items) => (items, None),
        serde_json::Value::Object(mut obj) => {
            let channel = match obj.remove("channel") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(c)) => Some(c),
                Some(_) => {
                    return Err(ApiError::invalid_field(&["channel"], "must be a string"));
                }
            };
            let items = match obj.remove("links") {
                Some(serde_json::Value::Array(items)) => items,
                _ => {
                    return Err(ApiError::invalid_field(
                        &["links"],
                        "must be an array of link objects",
                    ));
                }
            };
            if let Some(k) = obj.keys().next() {
                return Err(ApiError::InvalidRequest {
                    message: format!("unknown field {k:?}"),
                    details: vec![Detail::at(&[k.as_str()], "unknown field")],
                });
            }
            (items, channel)
        }
        _ => {
            return Err(ApiError::invalid(
                "expected an array of links or {\"links\": [...]}",
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid_field(&["links"], "must not be empty"));
    }
    if items.len() > MAX_BULK {
        return Err(ApiError::invalid_field(
            &["links"],
            format!("at most {MAX_BULK} links per request"),
        ));
    }
    let channel = match channel.as_deref() {
        None | Some("api") => "api".to_owned(),
        Some("import") => "import".to_owned(),
        Some(_) => {
            return Err(ApiError::invalid_field(
                &["channel"],
                "must be api or import",
            ));
        }
    };
    Ok((items, channel))
}
