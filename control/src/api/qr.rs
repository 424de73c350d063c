//! `/api/v1/qr`: QR codes, drawn by [`crate::qr`].
//!
//! - `POST /qr/generate` needs no key: it draws a code for a `url` or a `text` and answers the
//!   image itself (SVG by default, PNG with `"format": "png"`). Nothing is stored; like every
//!   call without a key it spends the client IP's anonymous budget.
//! - The team's saved codes (`POST/GET /qr`, `GET/PATCH/DELETE /qr/{id}`,
//!   `GET /qr/{id}/download`) keep what a code encodes and how it is drawn. A code of `type`
//!   `link` encodes one of the team's links as its short URL with `?qr=1`: the proxy records those
//!   clicks as QR clicks (`qrClicks` in the link's stats), and the code's `scans` is that count.
//!   The other types encode a URL, free text, an e-mail (`mailto:`), a phone number (`tel:`), an
//!   SMS (`SMSTO:`) or Wi-Fi credentials (`WIFI:`), in the forms phone cameras understand.
//!
//! What a saved code encodes never changes (it may already be printed); `PATCH` changes its
//! title and how it is drawn. Style fields sit at the top level of each body, as in go2.gg's API:
//! `size` (64–2048 px), `margin` (quiet zone, 0–16 modules), `foregroundColor` and
//! `backgroundColor` (`#rrggbb`, with a contrast of at least 3:1), `cornerRadius` (0–50, module
//! rounding in percent), `errorCorrection` (L, M, Q, H).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::extract::{self, Json, Path, Query};
use super::link_body::LinkView;
use super::ok;
use super::paging::Paging;
use crate::auth::Caller;
use crate::db::{self, links, qr_codes, qr_codes::QrRow};
use crate::error::{ApiError, ApiResult};
use crate::qr::{self, Correction, Format, QrError, Rgb, Style};
use crate::state::AppState;
use crate::validate::{self, rfc3339};

/// The body keys that describe how a code is drawn.
const STYLE_KEYS: &[&str] = &[
    "size",
    "margin",
    "foregroundColor",
    "backgroundColor",
    "cornerRadius",
    "errorCorrection",
];
const MAX_SSID_LEN: usize = 32;
const MAX_EMAIL_LEN: usize = 254;
const MAX_SMS_LEN: usize = 1000;

/// Style fields as sent; absent ones keep the base style's.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StyleFields {
    size: Option<u32>,
    margin: Option<u32>,
    foreground_color: Option<Rgb>,
    background_color: Option<Rgb>,
    corner_radius: Option<u32>,
    error_correction: Option<Correction>,
}

impl StyleFields {
    fn apply(self, base: Style) -> Style {
        Style {
            size: self.size.unwrap_or(base.size),
            margin: self.margin.unwrap_or(base.margin),
            foreground_color: self.foreground_color.unwrap_or(base.foreground_color),
            background_color: self.background_color.unwrap_or(base.background_color),
            corner_radius: self.corner_radius.unwrap_or(base.corner_radius),
            error_correction: self.error_correction.unwrap_or(base.error_correction),
        }
    }
}

/// Splits a JSON object body into its own fields (`T`, unknown keys refused) and the style.
fn split_body<T: DeserializeOwned>(body: Value) -> ApiResult<(T, StyleFields)> {
    let Value::Object(mut own) = body else {
        return Err(ApiError::InvalidRequest {
            message: "invalid request body: expected a JSON object".into(),
            details: Vec::new(),
        });
    };
    let mut style = Map::new();
    for key in STYLE_KEYS {
        if let Some(v) = own.remove(*key) {
            style.insert((*key).to_owned(), v);
        }
    }
    Ok((
        extract::from_value(Value::Object(own))?,
        extract::from_value(Value::Object(style))?,
    ))
}

fn qr_error(e: QrError) -> ApiError {
    ApiError::invalid_field(&[e.field()], e.to_string())
}

/// Draws on a blocking thread: a 2048-pixel PNG is milliseconds of work.
async fn draw(content: String, style: Style, format: Format) -> ApiResult<Vec<u8>> {
    let drawn = tokio::task::spawn_blocking(move || match format {
        Format::Svg => qr::svg(&content, &style).map(String::into_bytes),
        Format::Png => qr::png(&content, &style),
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("QR drawing task failed: {e}")))?;
    drawn.map_err(qr_error)
}

fn image(bytes: Vec<u8>, format: Format, filename: Option<&str>) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response();
    if let Some(name) = filename
        && let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"{name}.{}\"",
            format.extension()
        ))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `POST /api/v1/qr/generate`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenerateBody {
    url: Option<String>,
    text: Option<String>,
    #[serde(default)]
    format: Format,
}

pub async fn generate(Json(body): Json<Value>) -> ApiResult<Response> {
    let (body, style) = split_body::<GenerateBody>(body)?;
    let content = match (body.url, body.text) {
        (Some(url), None) => validate::url(&["url"], &url)?.to_string(),
        (None, Some(text)) => plain_text(&text)?,
        _ => return Err(ApiError::invalid_field(&["url"], "give either url or text")),
    };
    let style = style.apply(Style::default());
    let bytes = draw(content, style, body.format).await?;
    Ok(image(bytes, body.format, None))
}

fn plain_text(raw: &str) -> ApiResult<String> {
    validate::text(&["text"], raw, Correction::L.capacity(), true)?
        .ok_or_else(|| ApiError::invalid_field(&["text"], "must not be empty"))
}

/// What a saved code encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Link,
    Url,
    Text,
    Email,
    Phone,
    Sms,
    Wifi,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Link => "link",
            Kind::Url => "url",
            Kind::Text => "text",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Sms => "sms",
            Kind::Wifi => "wifi",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EmailIn {
    to: String,
    subject: Option<String>,
    body: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
enum WifiSecurity {
    #[default]
    #[serde(rename = "WPA", alias = "wpa", alias = "WPA2", alias = "wpa2")]
    Wpa,
    #[serde(rename = "WEP", alias = "wep")]
    Wep,
    #[serde(rename = "nopass", alias = "none")]
    Open,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WifiIn {
    ssid: String,
    password: Option<String>,
    #[serde(default)]
    encryption: WifiSecurity,
    #[serde(default)]
    hidden: bool,
}

/// `POST /api/v1/qr`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    #[serde(rename = "type")]
    kind: Option<Kind>,
    title: Option<String>,
    link_id: Option<String>,
    url: Option<String>,
    text: Option<String>,
    email: Option<EmailIn>,
    phone: Option<String>,
    /// The SMS text (type `sms`).
    message: Option<String>,
    wifi: Option<WifiIn>,
    #[serde(default)]
    format: Format,
}

impl CreateBody {
    /// The type asked for, or the one the single content field given implies.
    fn kind(&self) -> ApiResult<Kind> {
        let given = self.content_kinds();
        if let Some(k) = self.kind {
            // A field of another type would be silently dropped: refuse it instead.
            let phone_for_sms = k == Kind::Sms;
            if let Some(other) = given
                .iter()
                .find(|g| **g != k && !(phone_for_sms && **g == Kind::Phone))
            {
                return Err(ApiError::invalid_field(
                    &["type"],
                    format!("a {} code takes no {} field", k.as_str(), other.as_str()),
                ));
            }
            return Ok(k);
        }
        match given[..] {
            [k] => Ok(k),
            _ => Err(ApiError::invalid_field(
                &["type"],
                "give a type (link, url, text, email, phone, sms, wifi) or exactly one of linkId, url, text, email, phone, wifi",
            )),
        }
    }

    /// The types whose content fields the body carries.
    fn content_kinds(&self) -> Vec<Kind> {
        [
            (self.link_id.is_some(), Kind::Link),
            (self.url.is_some(), Kind::Url),
            (self.text.is_some(), Kind::Text),
            (self.email.is_some(), Kind::Email),
            (self.phone.is_some() && self.message.is_none(), Kind::Phone),
            (self.message.is_some(), Kind::Sms),
            (self.wifi.is_some(), Kind::Wifi),
        ]
        .into_iter()
        .filter_map(|(present, k)| present.then_some(k))
        .collect()
    }
}

fn required<T>(field: &'static str, v: Option<T>) -> ApiResult<T> {
    v.ok_or_else(|| ApiError::invalid_field(&[field], "is required for this type"))
}

/// Everything but RFC 3986's unreserved characters is percent-encoded in `mailto:` parts.
const MAILTO_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, MAILTO_ESCAPED).to_string()
}

/// `+` and digits of a phone number written with spaces, dots, dashes or brackets.
fn phone_number(raw: &str) -> ApiResult<String> {
    let bad = || {
        ApiError::invalid_field(
            &["phone"],
            "must be a phone number: digits, an optional leading +, spaces, dots, dashes or brackets",
        )
    };
    let trimmed = raw.trim();
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", trimmed),
    };
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')'))
    {
        return Err(bad());
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    if !(3..=20).contains(&digits.len()) {
        return Err(bad());
    }
    Ok(format!("{plus}{digits}"))
}

/// Escapes the characters the `WIFI:` format gives a meaning.
fn wifi_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ';' | ',' | ':' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn no_controls(path: &'static [&'static str], raw: &str) -> ApiResult<()> {
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            path,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn wifi_content(w: WifiIn) -> ApiResult<String> {
    if w.ssid.is_empty() || w.ssid.len() > MAX_SSID_LEN {
        return Err(ApiError::invalid_field(
            &["wifi", "ssid"],
            format!("must be 1 to {MAX_SSID_LEN} bytes"),
        ));
    }
    no_controls(&["wifi", "ssid"], &w.ssid)?;
    let password = match (w.encryption, w.password) {
        (WifiSecurity::Open, None) => None,
        (WifiSecurity::Open, Some(_)) => {
            return Err(ApiError::invalid_field(
                &["wifi", "password"],
                "an open network (encryption nopass) has no password",
            ));
        }
        (_, None) => {
            return Err(ApiError::invalid_field(
                &["wifi", "password"],
                "is required unless encryption is nopass",
            ));
        }
        (WifiSecurity::Wpa, Some(p)) if !(8..=63).contains(&p.len()) => {
            return Err(ApiError::invalid_field(
                &["wifi", "password"],
                "a WPA passphrase is 8 to 63 characters",
            ));
        }
        (WifiSecurity::Wep, Some(p)) if ![5, 10, 13, 26].contains(&p.len()) => {
            return Err(ApiError::invalid_field(
                &["wifi", "password"],
                "a WEP key is 5 or 13 characters, or 10 or 26 hex digits",
            ));
        }
        (_, Some(p)) => Some(p),
    };
    let kind = match w.encryption {
        WifiSecurity::Wpa => "WPA",
        WifiSecurity::Wep => "WEP",
        WifiSecurity::Open => "nopass",
    };
    let mut out = format!("WIFI:T:{kind};S:{};", wifi_escape(&w.ssid));
    if let Some(p) = password {
        no_controls(&["wifi", "password"], &p)?;
        out.push_str(&format!("P:{};", wifi_escape(&p)));
    }
    if w.hidden {
        out.push_str("H:true;");
    }
    out.push(';');
    Ok(out)
}

fn email_content(e: EmailIn) -> ApiResult<String> {
    let to = e.to.trim();
    let well_formed = to.len() <= MAX_EMAIL_LEN
        && to.split('@').count() == 2
        && to.split('@').all(|part| {
            !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c.is_control())
        })
        && to.split('@').nth(1).is_some_and(|d| d.contains('.'));
    if !well_formed {
        return Err(ApiError::invalid_field(
            &["email", "to"],
            "must be an e-mail address such as name@example.com",
        ));
    }
    let mut query = Vec::new();
    if let Some(subject) = e.subject.filter(|s| !s.is_empty()) {
        no_controls(&["email", "subject"], &subject)?;
        query.push(format!("subject={}", percent_encode(&subject)));
    }
    if let Some(body) = e.body.filter(|s| !s.is_empty()) {
        query.push(format!("body={}", percent_encode(&body)));
    }
    let mut out = format!("mailto:{}", percent_encode(to).replace("%40", "@"));
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query.join("&"));
    }
    Ok(out)
}

/// What a link's code encodes: its short URL with sling's QR marker.
pub fn link_content(short_url: &str) -> String {
    format!("{short_url}?{}", sling_shared::clicks::QR_MARKER)
}

/// What the code of `body` encodes, and the link it counts scans for.
async fn content(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    body: CreateBody,
) -> ApiResult<(String, Option<String>, Option<String>)> {
    Ok(match kind {
        Kind::Link => {
            let id = required("linkId", body.link_id)?;
            let row = links::get(&state.db.pool, &caller.team_id, &id)
                .await?
                .ok_or(ApiError::NotFound("link"))?;
            let title = row.title.clone().or_else(|| Some(row.slug.clone()));
            let view = LinkView::new(row, &state.config.short_url_base);
            (link_content(&view.short_url), Some(id), title)
        }
        Kind::Url => {
            let url = required("url", body.url)?;
            (validate::url(&["url"], &url)?.to_string(), None, None)
        }
        Kind::Text => (plain_text(&required("text", body.text)?)?, None, None),
        Kind::Email => (email_content(required("email", body.email)?)?, None, None),
        Kind::Phone => (
            format!("tel:{}", phone_number(&required("phone", body.phone)?)?),
            None,
            None,
        ),
        Kind::Sms => {
            let number = phone_number(&required("phone", body.phone)?)?;
            let message = body.message.unwrap_or_default();
            if message.chars().count() > MAX_SMS_LEN {
                return Err(ApiError::invalid_field(
                    &["message"],
                    format!("must be at most {MAX_SMS_LEN} characters"),
                ));
            }
            (format!("SMSTO:{number}:{message}"), None, None)
        }
        Kind::Wifi => {
            let wifi = required("wifi", body.wifi)?;
            let title = Some(wifi.ssid.clone());
            (wifi_content(wifi)?, None, title)
        }
    })
}

/// A saved code as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct QrView {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
    /// Exactly what the code encodes.
    content: String,
    link_id: Option<String>,
    #[serde(flatten)]
    style: Style,
    format: Format,
    /// QR clicks of the link (type `link` only; every code of that link adds to it).
    scans: Option<i64>,
    download_url: String,
    created_at: String,
    updated_at: String,
}

fn style_json(style: &Style) -> ApiResult<String> {
    serde_json::to_string(style)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serialising a QR style: {e}")))
}

fn stored_style(row: &QrRow) -> ApiResult<Style> {
    serde_json::from_str(&row.style)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored QR style of {}: {e}", row.id)))
}

fn stored_format(row: &QrRow) -> Format {
    if row.format == "png" {
        Format::Png
    } else {
        Format::Svg
    }
}

fn view(row: QrRow, scans: &std::collections::HashMap<String, i64>) -> ApiResult<QrView> {
    let style = stored_style(&row)?;
    let format = stored_format(&row);
    Ok(QrView {
        download_url: format!("/api/v1/qr/{}/download", row.id),
        scans: row
            .link_id
            .as_ref()
            .map(|l| scans.get(l).copied().unwrap_or(0)),
        title: (!row.title.is_empty()).then_some(row.title),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        id: row.id,
        kind: row.kind,
        content: row.content,
        link_id: row.link_id,
        style,
        format,
    })
}

async fn view_one(state: &AppState, row: QrRow) -> ApiResult<QrView> {
    let links: Vec<&str> = row.link_id.as_deref().into_iter().collect();
    let scans = qr_codes::scans(&state.db, &row.team_id, &links).await?;
    view(row, &scans)
}

fn title(raw: Option<String>) -> ApiResult<Option<String>> {
    match raw {
        None => Ok(None),
        Some(t) => validate::text(&["title"], &t, validate::MAX_TITLE_LEN, false),
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    let (body, style) = split_body::<CreateBody>(body)?;
    let kind = body.kind()?;
    let format = body.format;
    let asked_title = title(body.title.clone())?;
    let style = style.apply(Style::default());
    style.check().map_err(qr_error)?;
    let (content, link_id, default_title) = content(&state, &caller, kind, body).await?;
    // Refuses content too long for a code, or a size too small for it, before storing.
    qr::check(&content, &style).map_err(qr_error)?;
    let now = db::now_ms();
    let row = QrRow {
        id: crate::ids::new_id("qr"),
        team_id: caller.team_id.clone(),
        kind: kind.as_str().to_owned(),
        link_id,
        title: asked_title.or(default_title).unwrap_or_default(),
        content,
        style: style_json(&style)?,
        format: format.extension().to_owned(),
        created_at: now,
        updated_at: now,
    };
    qr_codes::insert(&state.db, &row).await?;
    tracing::info!(qr_id = %row.id, kind = kind.as_str(), "QR code saved");
    Ok((StatusCode::CREATED, ok(view_one(&state, row).await?)).into_response())
}

/// Query parameters of `GET /api/v1/qr` (unknown ones, such as `key`, are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    page: Option<u32>,
    #[serde(alias = "limit", alias = "per_page")]
    per_page: Option<u32>,
    link_id: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    let paging = Paging::new(p.page, p.per_page)?;
    let (rows, total) = qr_codes::list(
        &state.db,
        &caller.team_id,
        p.link_id.as_deref(),
        paging.per_page,
        paging.offset(),
    )
    .await?;
    let links: Vec<&str> = rows.iter().filter_map(|r| r.link_id.as_deref()).collect();
    let scans = qr_codes::scans(&state.db, &caller.team_id, &links).await?;
    let items = rows
        .into_iter()
        .map(|r| view(r, &scans))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ok(paging.envelope(items, total)).into_response())
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<QrRow> {
    qr_codes::get(&state.db, &caller.team_id, id)
        .await?
        .ok_or(ApiError::NotFound("QR code"))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = find(&state, &caller, &id).await?;
    Ok(ok(view_one(&state, row).await?).into_response())
}

/// `PATCH /api/v1/qr/{id}`: the title, the style and the default download format.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatchBody {
    #[serde(default, deserialize_with = "super::link_body::present")]
    title: Option<Option<String>>,
    format: Option<Format>,
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    let (patch, style) = split_body::<PatchBody>(body)?;
    let mut row = find(&state, &caller, &id).await?;
    let style = style.apply(stored_style(&row)?);
    qr::check(&row.content, &style).map_err(qr_error)?;
    match patch.title {
        Some(Some(t)) => row.title = title(Some(t))?.unwrap_or_default(),
        Some(None) => row.title.clear(),
        None => {}
    }
    if let Some(f) = patch.format {
        row.format = f.extension().to_owned();
    }
    row.style = style_json(&style)?;
    row.updated_at = db::now_ms();
    if !qr_codes::update(&state.db, &row).await? {
        return Err(ApiError::NotFound("QR code"));
    }
    Ok(ok(view_one(&state, row).await?).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if !qr_codes::delete(&state.db, &caller.team_id, &id).await? {
        return Err(ApiError::NotFound("QR code"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Query parameters of `GET /api/v1/qr/{id}/download`: the saved style, but another format
/// or size for this download.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadParams {
    format: Option<Format>,
    size: Option<u32>,
}

pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(p): Query<DownloadParams>,
) -> ApiResult<Response> {
    let row = find(&state, &caller, &id).await?;
    let mut style = stored_style(&row)?;
    if let Some(size) = p.size {
        style.size = size;
    }
    let format = p.format.unwrap_or_else(|| stored_format(&row));
    let bytes = draw(row.content, style, format).await?;
    Ok(image(bytes, format, Some(&row.id)))
}

/// The OpenAPI operations of this module.
pub fn openapi_operation(op: super::Op) -> Value {
    use super::Op;
    use super::openapi::{error_ref as err, ok_json};
    let images = json!({"image/svg+xml": {"schema": {"type": "string"}}, "image/png": {"schema": {"type": "string", "format": "binary"}}});
    let style = json!({
        "size": {"type": "integer", "minimum": qr::MIN_SIZE, "maximum": qr::MAX_SIZE, "default": qr::DEFAULT_SIZE},
        "margin": {"type": "integer", "minimum": 0, "maximum": qr::MAX_MARGIN, "default": qr::DEFAULT_MARGIN, "description": "Quiet zone in modules"},
        "foregroundColor": {"type": "string", "pattern": "^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", "default": "#000000"},
        "backgroundColor": {"type": "string", "pattern": "^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", "default": "#ffffff", "description": "Contrast with foregroundColor must be at least 3:1"},
        "cornerRadius": {"type": "integer", "minimum": 0, "maximum": qr::MAX_CORNER_RADIUS, "default": 0, "description": "Module rounding in percent (50: round dots)"},
        "errorCorrection": {"enum": ["L", "M", "Q", "H"], "default": "M"},
        "format": {"enum": ["svg", "png"], "default": "svg"},
    });
    let with = |extra: Value| {
        let mut props = style.clone();
        if let (Some(p), Value::Object(e)) = (props.as_object_mut(), extra) {
            p.extend(e);
        }
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": props}}}})
    };
    let s = json!({"type": "string"});
    let qr_object = {
        let mut props = style.clone();
        if let Some(p) = props.as_object_mut() {
            p.extend(
                json!({
                    "id": s, "type": {"enum": ["link", "url", "text", "email", "phone", "sms", "wifi"]},
                    "title": {"type": ["string", "null"]}, "content": s,
                    "linkId": {"type": ["string", "null"]},
                    "scans": {"type": ["integer", "null"], "description": "QR clicks of the link (type link)"},
                    "downloadUrl": s, "createdAt": s, "updatedAt": s,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            );
        }
        json!({"type": "object", "properties": props})
    };
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let mut list_parameters = super::paging::openapi_parameters();
    if let Some(list) = list_parameters.as_array_mut() {
        list.push(json!({"name": "linkId", "in": "query", "required": false, "schema": s, "description": "Only this link's codes"}));
    }
    let bad = err(
        "INVALID_REQUEST: a bad field (content too long for a code, size too small for it, low contrast, …) or INVALID_URL",
    );
    match op {
        Op::GenerateQr => json!({
            "tags": ["qr"],
            "description": "Draws a QR code for a URL or a text; nothing is stored. No key needed.",
            "requestBody": with(json!({"url": {"type": "string", "format": "uri"}, "text": s})),
            "responses": {"200": {"description": "The image", "content": images}, "400": bad},
        }),
        Op::CreateQr => json!({
            "tags": ["qr"],
            "description": "Saves a QR code. type link encodes the link's short URL with ?qr=1 (scans are its QR clicks); the type may be left out when exactly one content field is given.",
            "requestBody": with(json!({
                "type": {"enum": ["link", "url", "text", "email", "phone", "sms", "wifi"]},
                "title": s, "linkId": s, "url": s, "text": s,
                "email": {"type": "object", "properties": {"to": s, "subject": s, "body": s}, "required": ["to"]},
                "phone": s, "message": s,
                "wifi": {"type": "object", "properties": {"ssid": s, "password": s, "encryption": {"enum": ["WPA", "WEP", "nopass"]}, "hidden": {"type": "boolean"}}, "required": ["ssid"]},
            })),
            "responses": {"201": ok_json("The saved code", qr_object), "400": bad, "404": err("NOT_FOUND: no such link in this team")},
        }),
        Op::ListQr => json!({
            "tags": ["qr"],
            "parameters": list_parameters,
            "responses": {"200": ok_json("A page of codes, newest first", json!({"type": "object", "properties": {
                "items": {"type": "array", "items": qr_object}, "pagination": {"$ref": "#/components/schemas/Pagination"}}}))},
        }),
        Op::UpdateQr => json!({
            "tags": ["qr"],
            "description": "Changes the title (null clears), the style or the default format; what the code encodes never changes.",
            "parameters": id,
            "requestBody": with(json!({"title": {"type": ["string", "null"]}})),
            "responses": {"200": ok_json("The updated code", qr_object), "400": bad, "404": err("NOT_FOUND")},
        }),
        Op::DeleteQr => json!({
            "tags": ["qr"], "parameters": id,
            "responses": {"204": {"description": "Deleted; empty body"}, "404": err("NOT_FOUND")},
        }),
        Op::DownloadQr => json!({
            "tags": ["qr"],
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": s},
                {"name": "format", "in": "query", "schema": {"enum": ["svg", "png"]}, "description": "Default: the saved format"},
                {"name": "size", "in": "query", "schema": {"type": "integer", "minimum": qr::MIN_SIZE, "maximum": qr::MAX_SIZE}, "description": "Default: the saved size"},
            ],
            "responses": {"200": {"description": "The image, as an attachment", "content": images}, "400": bad, "404": err("NOT_FOUND")},
        }),
        _ => json!({
            "tags": ["qr"], "parameters": id,
            "responses": {"200": ok_json("The code", qr_object), "404": err("NOT_FOUND")},
        }),
    }
}
