//! `/api/v1/galleries`: link-in-bio pages.
//!
//! A gallery is a draft — a handle on one of the team's domains, a title, a bio, an avatar, a
//! theme (`crate::bio::THEMES`) and ordered items (links, headers, dividers, YouTube/Vimeo
//! embeds, images) — that visitors see at `https://<domain>/@<handle>` once it is published.
//! `POST …/publish` renders the draft (`crate::bio::render`) and sends the page to the edge
//! through the change feed, in the transaction that stores it; later edits stay in the draft
//! (`hasUnpublishedChanges`) until the next publish. `POST …/unpublish` and `DELETE` take the
//! page down; moving a published gallery to another handle or domain moves its live page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sling_shared::feed::ChangeOp;
use sqlx::AnyConnection;

use super::extract::{Json, Path, Query};
use super::link_body::present;
use super::links::commit;
use super::ok;
use super::paging::PageParams;
use crate::auth::Caller;
use crate::bio;
use crate::db;
use crate::db::domains::DomainRow;
use crate::db::galleries::{self, GalleryRow, ItemRow};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate::{self, rfc3339};

/// Galleries a team may have, and items a gallery may have.
pub const MAX_GALLERIES: u64 = 100;
pub const MAX_ITEMS: usize = 100;
const MAX_TITLE_LEN: usize = 100;
const MAX_BIO_LEN: usize = 500;
const MAX_ITEM_TITLE_LEN: usize = 200;
const MAX_CSS_LEN: usize = 20_000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GalleryView {
    id: String,
    domain: String,
    handle: String,
    /// Where visitors see the published page.
    url: String,
    title: String,
    bio: Option<String>,
    avatar_url: Option<String>,
    theme: String,
    custom_css: Option<String>,
    published: bool,
    published_at: Option<String>,
    /// The draft changed since it was last published.
    has_unpublished_changes: bool,
    /// Human views of the published page (`GET …/stats` has the details).
    views: i64,
    item_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<ItemView>>,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemView {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
    url: Option<String>,
    image_url: Option<String>,
    /// For embeds: the player the page shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    embed_url: Option<String>,
    active: bool,
    position: i64,
    created_at: String,
    updated_at: String,
}

fn page_url(state: &AppState, g: &GalleryRow) -> String {
    if g.domain_is_default {
        format!(
            "{}/@{}",
            state.config.short_url_base.trim_end_matches('/'),
            g.handle
        )
    } else {
        format!("https://{}/@{}", g.host, g.handle)
    }
}

fn view(
    state: &AppState,
    g: GalleryRow,
    item_count: u64,
    items: Option<Vec<ItemRow>>,
) -> GalleryView {
    GalleryView {
        url: page_url(state, &g),
        published: g.published_html.is_some(),
        published_at: g.published_at.map(rfc3339),
        has_unpublished_changes: g.published_at.is_some_and(|p| g.updated_at > p),
        views: g.views,
        item_count,
        items: items.map(|items| items.into_iter().map(item_view).collect()),
        created_at: rfc3339(g.created_at),
        updated_at: rfc3339(g.updated_at),
        id: g.id,
        domain: g.host,
        handle: g.handle,
        title: g.title,
        bio: g.bio,
        avatar_url: g.avatar_url,
        theme: g.theme,
        custom_css: g.custom_css,
    }
}

fn item_view(i: ItemRow) -> ItemView {
    ItemView {
        embed_url: (i.kind == "embed")
            .then(|| i.url.as_deref().and_then(bio::embed_src))
            .flatten(),
        created_at: rfc3339(i.created_at),
        updated_at: rfc3339(i.updated_at),
        id: i.id,
        kind: i.kind,
        title: i.title,
        url: i.url,
        image_url: i.image_url,
        active: i.active,
        position: i.position,
    }
}

// ---- validation ----

fn handle(raw: &str) -> ApiResult<String> {
    sling_shared::slug::validate_handle(raw).map_err(|e| {
        ApiError::invalid_field(
            &["handle"],
            format!(
                "{e}: a handle is {}–{} of A-Z a-z 0-9 - _",
                sling_shared::slug::HANDLE_MIN_LEN,
                sling_shared::slug::HANDLE_MAX_LEN
            ),
        )
    })?;
    Ok(raw.to_owned())
}

fn title(raw: &str) -> ApiResult<String> {
    validate::text(&["title"], raw, MAX_TITLE_LEN, false)?
        .ok_or_else(|| ApiError::invalid_field(&["title"], "must not be empty"))
}

fn theme(raw: &str) -> ApiResult<String> {
    if bio::THEMES.contains(&raw) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid_field(
            &["theme"],
            format!("unknown theme {raw:?} (known: {})", bio::THEMES.join(", ")),
        ))
    }
}

/// `bio`: free text with newlines; `None` (or blank) is none.
fn bio(raw: Option<&str>) -> ApiResult<Option<String>> {
    match raw {
        Some(b) => validate::text(&["bio"], b, MAX_BIO_LEN, true),
        None => Ok(None),
    }
}

/// `avatarUrl`: an https URL, or none.
fn avatar(raw: Option<&str>) -> ApiResult<Option<String>> {
    raw.map(|u| image_url(&["avatarUrl"], u)).transpose()
}

/// Applied only with the `custom` theme. No `<` (it could close the page's `<style>`), no
/// control characters other than newlines and tabs.
fn custom_css(raw: Option<&str>) -> ApiResult<Option<String>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.len() > MAX_CSS_LEN {
        return Err(ApiError::invalid_field(
            &["customCss"],
            format!("must be at most {MAX_CSS_LEN} bytes"),
        ));
    }
    if raw.contains('<') {
        return Err(ApiError::invalid_field(
            &["customCss"],
            "must not contain \"<\"",
        ));
    }
    validate::text(&["customCss"], raw, MAX_CSS_LEN, true)
}

/// An https URL (the page's CSP loads images over https only).
fn image_url(path: &[&str], raw: &str) -> ApiResult<String> {
    let url = validate::url(path, raw)?;
    if url.scheme() != "https" {
        return Err(ApiError::invalid_url(path, "images must be https URLs"));
    }
    Ok(url.to_string())
}

fn field_path<'a>(prefix: &[&'a str], field: &'a str) -> Vec<&'a str> {
    let mut p = prefix.to_vec();
    p.push(field);
    p
}

/// Checks an item's fields together, for its kind; `prefix` locates it in the request body.
fn check_item(item: &mut ItemRow, prefix: &[&str]) -> ApiResult<()> {
    let path = |f| field_path(prefix, f);
    if !bio::ITEM_KINDS.contains(&item.kind.as_str()) {
        return Err(ApiError::invalid_field(
            &path("type"),
            format!(
                "unknown item type {:?} (known: {})",
                item.kind,
                bio::ITEM_KINDS.join(", ")
            ),
        ));
    }
    if let Some(t) = item.title.take() {
        item.title = validate::text(&path("title"), &t, MAX_ITEM_TITLE_LEN, false)?;
    }
    if let Some(u) = item.url.take() {
        item.url = Some(validate::url(&path("url"), &u)?.to_string());
    }
    if let Some(u) = item.image_url.take() {
        item.image_url = Some(image_url(&path("imageUrl"), &u)?);
    }
    let refuse = |field: &'static str, what: &str| {
        Err(ApiError::invalid_field(
            &path(field),
            format!("a {} item {what}", item.kind),
        ))
    };
    match item.kind.as_str() {
        "link" => {
            if item.title.is_none() {
                return refuse("title", "needs a title");
            }
            if item.url.is_none() {
                return Err(ApiError::invalid_url(
                    &path("url"),
                    "a link item needs a url",
                ));
            }
        }
        "header" => {
            if item.title.is_none() {
                return refuse("title", "needs a title");
            }
            if item.url.is_some() {
                return refuse("url", "has no url");
            }
        }
        "divider" => {
            if item.title.is_some() {
                return refuse("title", "has no title");
            }
            if item.url.is_some() {
                return refuse("url", "has no url");
            }
        }
        "embed" => match item.url.as_deref() {
            None => {
                return Err(ApiError::invalid_url(
                    &path("url"),
                    "an embed item needs a url",
                ));
            }
            Some(u) if bio::embed_src(u).is_none() => {
                return Err(ApiError::invalid_url(
                    &path("url"),
                    "embeds support YouTube and Vimeo video URLs",
                ));
            }
            Some(_) => {}
        },
        "image" if item.image_url.is_none() => {
            return Err(ApiError::invalid_url(
                &path("imageUrl"),
                "an image item needs an imageUrl",
            ));
        }
        _ => {}
    }
    if item.kind != "image" && item.image_url.is_some() {
        return refuse("imageUrl", "has no imageUrl");
    }
    Ok(())
}

/// An item as a create body gives it (also inside `POST /galleries`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemBody {
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
    url: Option<String>,
    image_url: Option<String>,
    active: Option<bool>,
    /// Where to insert it (0 = first); the end when absent.
    position: Option<usize>,
}

fn new_item(
    caller: &Caller,
    gallery_id: &str,
    body: ItemBody,
    prefix: &[&str],
    now: i64,
) -> ApiResult<(ItemRow, Option<usize>)> {
    let mut item = ItemRow {
        id: crate::ids::new_id("gi"),
        gallery_id: gallery_id.to_owned(),
        team_id: caller.team_id.clone(),
        kind: body.kind.trim().to_owned(),
        title: body.title,
        url: body.url,
        image_url: body.image_url,
        active: body.active.unwrap_or(true),
        position: 0,
        created_at: now,
        updated_at: now,
    };
    check_item(&mut item, prefix)?;
    Ok((item, body.position))
}

// ---- storage helpers ----

async fn find(conn: &mut AnyConnection, caller: &Caller, id: &str) -> ApiResult<GalleryRow> {
    galleries::get(conn, &caller.team_id, id)
        .await?
        .ok_or(ApiError::NotFound("gallery"))
}

async fn domain(state: &AppState, caller: &Caller, host: Option<&str>) -> ApiResult<DomainRow> {
    match host {
        Some(h) => super::links::team_domain(state, caller, &h.trim().to_ascii_lowercase()).await,
        None => super::links::default_domain_for(state, caller).await,
    }
}

/// Stores the items' order as positions 0, 1, …, writing only those that moved.
async fn renumber(conn: &mut AnyConnection, items: &mut [ItemRow], now: i64) -> ApiResult<()> {
    for (i, item) in items.iter_mut().enumerate() {
        let position = i as i64;
        if item.position != position {
            item.position = position;
            item.updated_at = now;
            galleries::update_item(conn, item).await?;
        }
    }
    Ok(())
}

async fn full_view(state: &AppState, caller: &Caller, g: GalleryRow) -> ApiResult<GalleryView> {
    let items = galleries::items(&state.db.pool, &caller.team_id, &g.id).await?;
    Ok(view(state, g, items.len() as u64, Some(items)))
}

// ---- galleries ----

/// `POST /api/v1/galleries`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    handle: String,
    /// A domain host; the default domain when absent.
    domain: Option<String>,
    title: String,
    bio: Option<String>,
    avatar_url: Option<String>,
    theme: Option<String>,
    custom_css: Option<String>,
    #[serde(default)]
    items: Vec<ItemBody>,
    /// Publish at once.
    #[serde(default)]
    publish: bool,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateBody>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let handle = handle(&body.handle)?;
    let title = title(&body.title)?;
    let bio = bio(body.bio.as_deref())?;
    let avatar_url = avatar(body.avatar_url.as_deref())?;
    let theme = theme(body.theme.as_deref().unwrap_or("default"))?;
    let custom_css = custom_css(body.custom_css.as_deref())?;
    if body.items.len() > MAX_ITEMS {
        return Err(ApiError::invalid_field(
            &["items"],
            format!("a gallery has at most {MAX_ITEMS} items"),
        ));
    }
    // The prefix tells ingest that a click event under this id is a view of the page.
    let id = crate::ids::new_id(sling_shared::link::BIO_PAGE_ID_PREFIX.trim_end_matches('_'));
    let mut items = Vec::with_capacity(body.items.len());
    for (i, b) in body.items.into_iter().enumerate() {
        let index = i.to_string();
        let (mut item, _) = new_item(&caller, &id, b, &["items", &index], now)?;
        item.position = i as i64;
        items.push(item);
    }
    let domain = domain(&state, &caller, body.domain.as_deref()).await?;

    let mut w = state.db.begin_write().await?;
    if galleries::count(&mut *w.tx, &caller.team_id).await? >= MAX_GALLERIES {
        return Err(ApiError::invalid_field(
            &["handle"],
            format!("a team may have at most {MAX_GALLERIES} galleries"),
        ));
    }
    if galleries::handle_taken(&mut w.tx, &domain.id, &handle, "").await? {
        return Err(ApiError::HandleExists);
    }
    let mut row = GalleryRow {
        id,
        team_id: caller.team_id.clone(),
        domain_id: domain.id,
        host: domain.host,
        domain_is_default: domain.is_default,
        handle,
        title,
        bio,
        avatar_url,
        theme,
        custom_css,
        published_html: None,
        published_at: None,
        views: 0,
        created_at: now,
        updated_at: now,
    };
    if body.publish {
        row.published_html = Some(bio::render(&row, &items));
        row.published_at = Some(now);
    }
    galleries::insert(&mut w.tx, &row).await?;
    for item in &items {
        galleries::insert_item(&mut w.tx, item).await?;
    }
    let ops: Vec<ChangeOp> = body.publish.then(|| row.edge_op()).into_iter().collect();
    commit(&state, w, &ops, now).await?;
    tracing::info!(gallery_id = %row.id, handle = %row.handle, "gallery created");
    let count = items.len() as u64;
    Ok((
        StatusCode::CREATED,
        ok(view(&state, row, count, Some(items))),
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PageParams>,
) -> ApiResult<Response> {
    let paging = p.paging()?;
    let (rows, total) = galleries::list(
        &state.db,
        &caller.team_id,
        u64::from(paging.per_page),
        paging.offset(),
    )
    .await?;
    let counts = galleries::item_counts(&state.db.pool, &caller.team_id).await?;
    let out: Vec<GalleryView> = rows
        .into_iter()
        .map(|g| {
            let n = counts.get(&g.id).copied().unwrap_or(0);
            view(&state, g, n, None)
        })
        .collect();
    Ok(ok(paging.envelope(out, total)).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let g = galleries::get(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("gallery"))?;
    Ok(ok(full_view(&state, &caller, g).await?).into_response())
}

/// `PATCH /api/v1/galleries/{id}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchBody {
    handle: Option<String>,
    /// `null` moves the gallery to the default domain.
    #[serde(default, deserialize_with = "present")]
    domain: Option<Option<String>>,
    title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    bio: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    avatar_url: Option<Option<String>>,
    theme: Option<String>,
    #[serde(default, deserialize_with = "present")]
    custom_css: Option<Option<String>>,
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<PatchBody>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let new_handle = body.handle.as_deref().map(handle).transpose()?;
    let new_title = body.title.as_deref().map(title).transpose()?;
    // Each `Some(None)` (JSON null) clears the field.
    let new_bio = body.bio.as_ref().map(|b| bio(b.as_deref())).transpose()?;
    let new_avatar = body
        .avatar_url
        .as_ref()
        .map(|a| avatar(a.as_deref()))
        .transpose()?;
    let new_theme = body.theme.as_deref().map(theme).transpose()?;
    let new_css = body
        .custom_css
        .as_ref()
        .map(|c| custom_css(c.as_deref()))
        .transpose()?;
    let new_domain = match &body.domain {
        Some(host) => Some(domain(&state, &caller, host.as_deref()).await?),
        None => None,
    };

    let mut w = state.db.begin_write().await?;
    let mut row = find(&mut w.tx, &caller, &id).await?;
    let before = row.clone();
    if let Some(h) = new_handle {
        row.handle = h;
    }
    if let Some(d) = new_domain {
        row.domain_id = d.id;
        row.host = d.host;
        row.domain_is_default = d.is_default;
    }
    let moved = row.handle != before.handle || row.domain_id != before.domain_id;
    if moved && galleries::handle_taken(&mut w.tx, &row.domain_id, &row.handle, &row.id).await? {
        return Err(ApiError::HandleExists);
    }
    if let Some(t) = new_title {
        row.title = t;
    }
    if let Some(b) = new_bio {
        row.bio = b;
    }
    if let Some(a) = new_avatar {
        row.avatar_url = a;
    }
    if let Some(t) = new_theme {
        row.theme = t;
    }
    if let Some(c) = new_css {
        row.custom_css = c;
    }
    row.updated_at = now;
    if !galleries::update(&mut w.tx, &row).await? {
        return Err(ApiError::NotFound("gallery"));
    }
    // Only a move touches the live page; other edits wait for the next publish.
    let ops = if moved && row.published_html.is_some() {
        vec![before.delete_op(), row.edge_op()]
    } else {
        Vec::new()
    };
    commit(&state, w, &ops, now).await?;
    Ok(ok(full_view(&state, &caller, row).await?).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let row = galleries::delete(&mut w.tx, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("gallery"))?;
    let ops: Vec<ChangeOp> = row
        .published_html
        .is_some()
        .then(|| row.delete_op())
        .into_iter()
        .collect();
    commit(&state, w, &ops, now).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/galleries/{id}/publish`: renders the draft and sends it to the edge.
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let mut row = find(&mut w.tx, &caller, &id).await?;
    let items = galleries::items(&mut *w.tx, &caller.team_id, &row.id).await?;
    row.published_html = Some(bio::render(&row, &items));
    // Published as of now: the draft is exactly the page.
    row.published_at = Some(now.max(row.updated_at));
    if !galleries::update(&mut w.tx, &row).await? {
        return Err(ApiError::NotFound("gallery"));
    }
    commit(&state, w, &[row.edge_op()], now).await?;
    tracing::info!(gallery_id = %row.id, handle = %row.handle, "gallery published");
    let count = items.len() as u64;
    Ok(ok(view(&state, row, count, Some(items))).into_response())
}

/// `POST /api/v1/galleries/{id}/unpublish`: takes the page down; the draft stays.
pub async fn unpublish(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let mut row = find(&mut w.tx, &caller, &id).await?;
    let was_published = row.published_html.is_some();
    row.published_html = None;
    row.published_at = None;
    if !galleries::update(&mut w.tx, &row).await? {
        return Err(ApiError::NotFound("gallery"));
    }
    let ops: Vec<ChangeOp> = was_published.then(|| row.delete_op()).into_iter().collect();
    commit(&state, w, &ops, now).await?;
    Ok(ok(full_view(&state, &caller, row).await?).into_response())
}

// ---- items ----

pub async fn list_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
) -> ApiResult<Response> {
    let paging = p.paging()?;
    let g = galleries::get(&state.db.pool, &caller.team_id, &id)
        .await?
        .ok_or(ApiError::NotFound("gallery"))?;
    let items = galleries::items(&state.db.pool, &caller.team_id, &g.id).await?;
    let total = items.len() as u64;
    let page: Vec<ItemView> = paging.slice(items).into_iter().map(item_view).collect();
    Ok(ok(paging.envelope(page, total)).into_response())
}

pub async fn create_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ItemBody>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let (mut item, position) = new_item(&caller, &id, body, &[], now)?;
    let mut w = state.db.begin_write().await?;
    let g = find(&mut w.tx, &caller, &id).await?;
    let mut items = galleries::items(&mut *w.tx, &caller.team_id, &g.id).await?;
    if items.len() >= MAX_ITEMS {
        return Err(ApiError::invalid_field(
            &["type"],
            format!("a gallery has at most {MAX_ITEMS} items"),
        ));
    }
    let at = position.unwrap_or(items.len()).min(items.len());
    item.position = at as i64;
    galleries::insert_item(&mut w.tx, &item).await?;
    items.insert(at, item.clone());
    renumber(&mut w.tx, &mut items, now).await?;
    galleries::touch(&mut w.tx, &caller.team_id, &g.id, now).await?;
    commit(&state, w, &[], now).await?;
    let item = items.swap_remove(at);
    Ok((StatusCode::CREATED, ok(item_view(item))).into_response())
}

async fn find_item(
    conn: &mut AnyConnection,
    caller: &Caller,
    gallery_id: &str,
    item_id: &str,
) -> ApiResult<(Vec<ItemRow>, usize)> {
    let items = galleries::items(conn, &caller.team_id, gallery_id).await?;
    let at = items
        .iter()
        .position(|i| i.id == item_id)
        .ok_or(ApiError::NotFound("gallery item"))?;
    Ok((items, at))
}

pub async fn get_item(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut conn = state.db.pool.acquire().await?;
    let (mut items, at) = find_item(&mut conn, &caller, &id, &item_id).await?;
    Ok(ok(item_view(items.swap_remove(at))).into_response())
}

/// `PATCH /api/v1/galleries/{id}/items/{itemId}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemPatch {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "present")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    image_url: Option<Option<String>>,
    active: Option<bool>,
    /// Moves the item to this index (0 = first).
    position: Option<usize>,
}

pub async fn update_item(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
    Json(body): Json<ItemPatch>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let (mut items, at) = find_item(&mut w.tx, &caller, &id, &item_id).await?;
    let mut item = items.remove(at);
    if let Some(k) = body.kind {
        item.kind = k.trim().to_owned();
    }
    if let Some(t) = body.title {
        item.title = t;
    }
    if let Some(u) = body.url {
        item.url = u;
    }
    if let Some(u) = body.image_url {
        item.image_url = u;
    }
    if let Some(a) = body.active {
        item.active = a;
    }
    check_item(&mut item, &[])?;
    item.updated_at = now;
    if !galleries::update_item(&mut w.tx, &item).await? {
        return Err(ApiError::NotFound("gallery item"));
    }
    let to = body.position.unwrap_or(at).min(items.len());
    items.insert(to, item);
    renumber(&mut w.tx, &mut items, now).await?;
    galleries::touch(&mut w.tx, &caller.team_id, &id, now).await?;
    commit(&state, w, &[], now).await?;
    Ok(ok(item_view(items.swap_remove(to))).into_response())
}

pub async fn delete_item(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, item_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let (mut items, at) = find_item(&mut w.tx, &caller, &id, &item_id).await?;
    if !galleries::delete_item(&mut w.tx, &caller.team_id, &id, &item_id).await? {
        return Err(ApiError::NotFound("gallery item"));
    }
    items.remove(at);
    renumber(&mut w.tx, &mut items, now).await?;
    galleries::touch(&mut w.tx, &caller.team_id, &id, now).await?;
    commit(&state, w, &[], now).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /api/v1/galleries/{id}/items/order`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderBody {
    /// Every item id of the gallery, each once, in the new order.
    item_ids: Vec<String>,
}

pub async fn order_items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<OrderBody>,
) -> ApiResult<Response> {
    let now = db::now_ms();
    let mut w = state.db.begin_write().await?;
    let g = find(&mut w.tx, &caller, &id).await?;
    let mut current = galleries::items(&mut *w.tx, &caller.team_id, &g.id).await?;
    let mut seen = std::collections::HashSet::new();
    let mut ordered = Vec::with_capacity(current.len());
    for item_id in &body.item_ids {
        if !seen.insert(item_id.as_str()) {
            return Err(ApiError::invalid_field(
                &["itemIds"],
                format!("{item_id:?} is listed twice"),
            ));
        }
        let Some(at) = current.iter().position(|i| &i.id == item_id) else {
            return Err(ApiError::invalid_field(
                &["itemIds"],
                format!("{item_id:?} is not an item of this gallery"),
            ));
        };
        ordered.push(current.swap_remove(at));
    }
    if !current.is_empty() {
        return Err(ApiError::invalid_field(
            &["itemIds"],
            format!(
                "list every item of the gallery; missing: {}",
                current
                    .iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    renumber(&mut w.tx, &mut ordered, now).await?;
    galleries::touch(&mut w.tx, &caller.team_id, &g.id, now).await?;
    commit(&state, w, &[], now).await?;
    let items: Vec<ItemView> = ordered.into_iter().map(item_view).collect();
    Ok(ok(json!({ "items": items })).into_response())
}

/// The OpenAPI operations of this module.
pub fn openapi_operation(op: super::Op) -> Value {
    use super::Op;
    use super::openapi::{error_ref as err, ok_json};
    let s = json!({"type": "string"});
    let ns = json!({"type": ["string", "null"]});
    let item = json!({"type": "object", "properties": {
        "id": s, "type": {"enum": bio::ITEM_KINDS}, "title": ns, "url": ns, "imageUrl": ns,
        "embedUrl": {"type": "string", "description": "Embeds only: the player shown"},
        "active": {"type": "boolean"}, "position": {"type": "integer"},
        "createdAt": s, "updatedAt": s}});
    let gallery = json!({"type": "object", "properties": {
        "id": s, "domain": s, "handle": s, "url": {"type": "string", "description": "https://<domain>/@<handle>"},
        "title": s, "bio": ns, "avatarUrl": ns, "theme": {"enum": bio::THEMES}, "customCss": ns,
        "published": {"type": "boolean"}, "publishedAt": ns, "hasUnpublishedChanges": {"type": "boolean"},
        "views": {"type": "integer", "description": "Human views of the published page"},
        "itemCount": {"type": "integer"}, "items": {"type": "array", "items": item},
        "createdAt": s, "updatedAt": s}});
    let item_input = |required: Value| {
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": {
            "type": {"enum": bio::ITEM_KINDS}, "title": ns, "url": {"type": ["string", "null"], "format": "uri"},
            "imageUrl": {"type": ["string", "null"], "format": "uri", "description": "https only"},
            "active": {"type": "boolean"},
            "position": {"type": "integer", "minimum": 0, "description": "Index to insert or move it to"}}})
    };
    let gallery_input = |required: Value| {
        json!({"type": "object", "additionalProperties": false, "required": required, "properties": {
            "handle": {"type": "string", "pattern": "^[A-Za-z0-9_-]{2,50}$"},
            "domain": {"type": ["string", "null"], "description": "A host of the team's; the default domain when absent"},
            "title": s, "bio": ns, "avatarUrl": {"type": ["string", "null"], "format": "uri"},
            "theme": {"enum": bio::THEMES}, "customCss": {"type": ["string", "null"], "description": "Used by the custom theme; no \"<\""},
            "items": {"type": "array", "items": item_input(json!(["type"])), "description": "POST only"},
            "publish": {"type": "boolean", "description": "POST only: publish at once"}}})
    };
    let body = |schema: Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": s});
    let item_id = json!({"name": "itemId", "in": "path", "required": true, "schema": s});
    let list = |items: Value| {
        json!({"type": "object", "properties": {
        "items": {"type": "array", "items": items}, "pagination": {"$ref": "#/components/schemas/Pagination"}}})
    };
    let paged = |first: Option<Value>| {
        let mut params = super::paging::openapi_parameters();
        if let (Some(p), Some(first)) = (params.as_array_mut(), first) {
            p.insert(0, first);
        }
        params
    };
    let bad = err("INVALID_REQUEST or INVALID_URL");
    let missing = err("NOT_FOUND");
    let tags = json!(["galleries"]);
    match op {
        Op::CreateGallery => json!({"tags": tags,
            "description": "Published pages are served by the proxies at /@<handle> on the gallery's domain, under a Content-Security-Policy that runs no script.",
            "requestBody": body(gallery_input(json!(["handle", "title"]))),
            "responses": {"201": ok_json("The gallery with its items", gallery), "400": bad,
                "403": err("DOMAIN_NOT_VERIFIED or DOMAIN_NOT_ALLOWED"), "409": err("HANDLE_EXISTS")}}),
        Op::ListGalleries => json!({"tags": tags, "parameters": paged(None),
            "responses": {"200": ok_json("The team's galleries (without items)", list(gallery))}}),
        Op::GetGallery => json!({"tags": tags, "parameters": [id],
            "responses": {"200": ok_json("The gallery with its items", gallery), "404": missing}}),
        Op::UpdateGallery => json!({"tags": tags, "parameters": [id],
            "description": "Changes the draft; the live page changes at the next publish, except that a new handle or domain moves a published page at once.",
            "requestBody": body(gallery_input(json!([]))),
            "responses": {"200": ok_json("The gallery", gallery), "400": bad, "404": missing,
                "403": err("DOMAIN_NOT_VERIFIED or DOMAIN_NOT_ALLOWED"), "409": err("HANDLE_EXISTS")}}),
        Op::DeleteGallery => json!({"tags": tags, "parameters": [id],
            "responses": {"204": {"description": "Deleted with its items; its page is taken down"}, "404": missing}}),
        Op::PublishGallery => json!({"tags": tags, "parameters": [id],
            "responses": {"200": ok_json("The gallery, published", gallery), "404": missing}}),
        Op::UnpublishGallery => json!({"tags": tags, "parameters": [id],
            "responses": {"200": ok_json("The gallery, unpublished (the draft is kept)", gallery), "404": missing}}),
        Op::ListGalleryItems => json!({"tags": tags, "parameters": paged(Some(id)),
            "responses": {"200": ok_json("Items in display order", list(item)), "404": missing}}),
        Op::CreateGalleryItem => json!({"tags": tags, "parameters": [id],
            "requestBody": body(item_input(json!(["type"]))),
            "responses": {"201": ok_json("The item", item), "400": bad, "404": missing}}),
        Op::GetGalleryItem => json!({"tags": tags, "parameters": [id, item_id],
            "responses": {"200": ok_json("The item", item), "404": missing}}),
        Op::UpdateGalleryItem => json!({"tags": tags, "parameters": [id, item_id],
            "requestBody": body(item_input(json!([]))),
            "responses": {"200": ok_json("The item", item), "400": bad, "404": missing}}),
        Op::DeleteGalleryItem => json!({"tags": tags, "parameters": [id, item_id],
            "responses": {"204": {"description": "Deleted"}, "404": missing}}),
        Op::OrderGalleryItems => json!({"tags": tags, "parameters": [id],
            "requestBody": body(json!({"type": "object", "additionalProperties": false, "required": ["itemIds"],
                "properties": {"itemIds": {"type": "array", "items": s, "description": "Every item id, each once"}}})),
            "responses": {"200": ok_json("The items in their new order", json!({"type": "object",
                "properties": {"items": {"type": "array", "items": item}}})), "400": bad, "404": missing}}),
        _ => json!({"tags": tags, "responses": {}}),
    }
}
