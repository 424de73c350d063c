//! The public REST API under `/api/v1`, plus `/api/openapi.json` and `/docs`.
//!
//! Every route lives in one table, [`ROUTES`]: the router is built from it, the OpenAPI
//! document is built from it, and the [`Caller`](crate::auth::Caller) extractor reads the scope
//! a route requires from it, so the three cannot drift apart.
//!
//! Cross-cutting behaviour, in one place: [`request_id::middleware`] (an `X-Request-Id` on every
//! response, errors rewritten into the envelope), the extractors in [`extract`] (JSON, query and
//! path errors in the envelope), and a catch-all that answers unknown `/api/…` paths with a 404
//! envelope.

pub mod account;
pub mod api_logs;
pub mod certificates;
pub mod docs;
pub mod domains;
pub mod extract;
pub mod galleries;
pub mod keys;
pub mod link_body;
pub mod links;
pub mod openapi;
pub mod paging;
pub mod qr;
pub mod request_id;
pub mod stats;
pub mod usage;
pub mod webhooks;

use axum::Router;
use axum::routing::{MethodFilter, MethodRouter, any, on};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
            Method::Put => MethodFilter::PUT,
            Method::Patch => MethodFilter::PATCH,
            Method::Delete => MethodFilter::DELETE,
        }
    }

    pub fn matches(self, m: &axum::http::Method) -> bool {
        m.as_str().eq_ignore_ascii_case(self.as_str())
    }
}

/// What a route does; each maps to exactly one handler ([`Op::handler`]) and one OpenAPI
/// operation (`openapi::operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    OpenApi,
    Docs,
    CreateLink,
    ListLinks,
    BulkCreateLinks,
    GetLink,
    GetLinkByExternalId,
    UpdateLink,
    ReplaceLink,
    DeleteLink,
    EnableLink,
    DisableLink,
    ArchiveLink,
    UnarchiveLink,
    LinkStats,
    TeamStats,
    GetAccount,
    UpdateAccount,
    ListApiKeys,
    CreateApiKey,
    RevokeApiKey,
    GetUsage,
    ListApiLogs,
    ListDomains,
    CreateDomain,
    GetDomain,
    UpdateDomain,
    DeleteDomain,
    VerifyDomain,
    GetCertificate,
    RenewCertificate,
    GenerateQr,
    CreateQr,
    ListQr,
    GetQr,
    UpdateQr,
    DeleteQr,
    DownloadQr,
    CreateWebhook,
    ListWebhooks,
    GetWebhook,
    UpdateWebhook,
    DeleteWebhook,
    TestWebhook,
    ListWebhookDeliveries,
    CreateGallery,
    ListGalleries,
    GetGallery,
    UpdateGallery,
    DeleteGallery,
    PublishGallery,
    UnpublishGallery,
    ListGalleryItems,
    CreateGalleryItem,
    GetGalleryItem,
    UpdateGalleryItem,
    DeleteGalleryItem,
    OrderGalleryItems,
    GalleryStats,
}

impl Op {
    fn handler(self) -> MethodRouter<AppState> {
        let m = |method: Method| method.filter();
        match self {
            Op::OpenApi => on(m(Method::Get), openapi::serve),
            Op::Docs => on(m(Method::Get), docs::serve),
            Op::CreateLink => on(m(Method::Post), links::create),
            Op::ListLinks => on(m(Method::Get), links::list),
            Op::BulkCreateLinks => on(m(Method::Post), links::bulk),
            Op::GetLink => on(m(Method::Get), links::get),
            Op::GetLinkByExternalId => on(m(Method::Get), links::get_by_external_id),
            Op::UpdateLink => on(m(Method::Patch), links::update),
            Op::ReplaceLink => on(m(Method::Put), links::update),
            Op::DeleteLink => on(m(Method::Delete), links::delete),
            Op::EnableLink => on(m(Method::Post), links::enable),
            Op::DisableLink => on(m(Method::Post), links::disable),
            Op::ArchiveLink => on(m(Method::Post), links::archive),
            Op::UnarchiveLink => on(m(Method::Post), links::unarchive),
            Op::LinkStats => on(m(Method::Get), stats::link),
            Op::TeamStats => on(m(Method::Get), stats::team),
            Op::GetAccount => on(m(Method::Get), account::get),
            Op::UpdateAccount => on(m(Method::Patch), account::update),
            Op::ListApiKeys => on(m(Method::Get), keys::list),
            Op::CreateApiKey => on(m(Method::Post), keys::create),
            Op::RevokeApiKey => on(m(Method::Delete), keys::revoke),
            Op::GetUsage => on(m(Method::Get), usage::get),
            Op::ListApiLogs => on(m(Method::Get), api_logs::list),
            Op::ListDomains => on(m(Method::Get), domains::list),
            Op::GetDomain => on(m(Method::Get), domains::get),
            Op::UpdateDomain => on(m(Method::Patch), domains::update),
            Op::CreateDomain => on(m(Method::Post), domains::create),
            Op::DeleteDomain => on(m(Method::Delete), domains::delete),
            Op::VerifyDomain => on(m(Method::Post), domains::verify),
            Op::GetCertificate => on(m(Method::Get), certificates::get),
            Op::RenewCertificate => on(m(Method::Post), certificates::renew),
            Op::GenerateQr => on(m(Method::Post), qr::generate),
            Op::CreateQr => on(m(Method::Post), qr::create),
            Op::ListQr => on(m(Method::Get), qr::list),
            Op::GetQr => on(m(Method::Get), qr::get),
            Op::UpdateQr => on(m(Method::Patch), qr::update),
            Op::DeleteQr => on(m(Method::Delete), qr::delete),
            Op::DownloadQr => on(m(Method::Get), qr::download),
            Op::CreateWebhook => on(m(Method::Post), webhooks::create),
            Op::ListWebhooks => on(m(Method::Get), webhooks::list),
            Op::GetWebhook => on(m(Method::Get), webhooks::get),
            Op::UpdateWebhook => on(m(Method::Patch), webhooks::update),
            Op::DeleteWebhook => on(m(Method::Delete), webhooks::delete),
            Op::TestWebhook => on(m(Method::Post), webhooks::test),
            Op::ListWebhookDeliveries => on(m(Method::Get), webhooks::deliveries),
            Op::CreateGallery => on(m(Method::Post), galleries::create),
            Op::ListGalleries => on(m(Method::Get), galleries::list),
            Op::GetGallery => on(m(Method::Get), galleries::get),
            Op::UpdateGallery => on(m(Method::Patch), galleries::update),
            Op::DeleteGallery => on(m(Method::Delete), galleries::delete),
            Op::PublishGallery => on(m(Method::Post), galleries::publish),
            Op::UnpublishGallery => on(m(Method::Post), galleries::unpublish),
            Op::ListGalleryItems => on(m(Method::Get), galleries::list_items),
            Op::CreateGalleryItem => on(m(Method::Post), galleries::create_item),
            Op::GetGalleryItem => on(m(Method::Get), galleries::get_item),
            Op::UpdateGalleryItem => on(m(Method::Patch), galleries::update_item),
            Op::DeleteGalleryItem => on(m(Method::Delete), galleries::delete_item),
            Op::OrderGalleryItems => on(m(Method::Put), galleries::order_items),
            Op::GalleryStats => on(m(Method::Get), stats::gallery),
        }
    }
}

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// axum path syntax, which is also OpenAPI's (`{id}`).
    pub path: &'static str,
    pub op: Op,
    /// The scope an API key needs; `None` for public routes.
    pub scope: Option<&'static str>,
    pub summary: &'static str,
}

const fn route(
    method: Method,
    path: &'static str,
    op: Op,
    scope: Option<&'static str>,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        op,
        scope,
        summary,
    }
}

const LINK: &str = "/api/v1/links/{id}";
const QR: &str = "/api/v1/qr/{id}";
const WEBHOOK: &str = "/api/v1/webhooks/{id}";
const GALLERY: &str = "/api/v1/galleries/{id}";
const GALLERY_ITEMS: &str = "/api/v1/galleries/{id}/items";
const GALLERY_ITEM: &str = "/api/v1/galleries/{id}/items/{itemId}";

/// Every public route.
pub const ROUTES: &[Route] = &[
    route(
        Method::Get,
        "/api/openapi.json",
        Op::OpenApi,
        None,
        "This OpenAPI document",
    ),
    route(
        Method::Get,
        "/docs",
        Op::Docs,
        None,
        "Human-readable API documentation (HTML)",
    ),
    route(
        Method::Post,
        "/api/v1/links",
        Op::CreateLink,
        Some("links:write"),
        "Create a link",
    ),
    route(
        Method::Get,
        "/api/v1/links",
        Op::ListLinks,
        Some("links:read"),
        "List links",
    ),
    route(
        Method::Post,
        "/api/v1/links/bulk",
        Op::BulkCreateLinks,
        Some("links:write"),
        "Create up to 1000 links; per-item results",
    ),
    route(
        Method::Get,
        LINK,
        Op::GetLink,
        Some("links:read"),
        "Get a link",
    ),
    route(
        Method::Get,
        "/api/v1/links/external/{externalId}",
        Op::GetLinkByExternalId,
        Some("links:read"),
        "Get a link by its external id",
    ),
    route(
        Method::Patch,
        LINK,
        Op::UpdateLink,
        Some("links:write"),
        "Update a link (partial)",
    ),
    route(
        Method::Put,
        LINK,
        Op::ReplaceLink,
        Some("links:write"),
        "Update a link (same partial semantics as PATCH)",
    ),
    route(
        Method::Delete,
        LINK,
        Op::DeleteLink,
        Some("links:delete"),
        "Delete a link",
    ),
    route(
        Method::Post,
        "/api/v1/links/{id}/enable",
        Op::EnableLink,
        Some("links:write"),
        "Enable a link",
    ),
    route(
        Method::Post,
        "/api/v1/links/{id}/disable",
        Op::DisableLink,
        Some("links:write"),
        "Disable a link (the proxy answers 410)",
    ),
    route(
        Method::Post,
        "/api/v1/links/{id}/archive",
        Op::ArchiveLink,
        Some("links:write"),
        "Archive a link (the proxy answers 410)",
    ),
    route(
        Method::Post,
        "/api/v1/links/{id}/unarchive",
        Op::UnarchiveLink,
        Some("links:write"),
        "Unarchive a link",
    ),
    route(
        Method::Get,
        "/api/v1/links/{id}/stats",
        Op::LinkStats,
        Some("stats:read"),
        "Click statistics of a link (JSON, or CSV with Accept: text/csv or format=csv)",
    ),
    route(
        Method::Get,
        "/api/v1/stats",
        Op::TeamStats,
        Some("stats:read"),
        "Click statistics of the whole team, with top links (JSON or CSV)",
    ),
    // Account (issue 7). Reads need `account:read`, changes `account:write`; `account:*` both.
    route(
        Method::Get,
        "/api/v1/account",
        Op::GetAccount,
        Some("account:read"),
        "The caller's team: name, plan, creation time",
    ),
    route(
        Method::Patch,
        "/api/v1/account",
        Op::UpdateAccount,
        Some("account:write"),
        "Rename the caller's team",
    ),
    route(
        Method::Get,
        "/api/v1/api-keys",
        Op::ListApiKeys,
        Some("account:read"),
        "List the team's API keys (never the secrets)",
    ),
    route(
        Method::Post,
        "/api/v1/api-keys",
        Op::CreateApiKey,
        Some("account:write"),
        "Create an API key; the secret is returned once",
    ),
    route(
        Method::Delete,
        "/api/v1/api-keys/{id}",
        Op::RevokeApiKey,
        Some("account:write"),
        "Revoke an API key (effective immediately)",
    ),
    route(
        Method::Get,
        "/api/v1/usage",
        Op::GetUsage,
        Some("account:read"),
        "Plan limits and what is left: link quotas, rate limits, domains, API logs",
    ),
    route(
        Method::Get,
        "/api/v1/api-logs",
        Op::ListApiLogs,
        Some("account:read"),
        "The team's API call log (plans that keep logs)",
    ),
    // Per-domain behaviour at the edge (issue 6).
    route(
        Method::Get,
        "/api/v1/domains",
        Op::ListDomains,
        Some("domains:read"),
        "The default domain and the team's own, with their root and not-found redirects",
    ),
    route(
        Method::Get,
        "/api/v1/domains/{id}",
        Op::GetDomain,
        Some("domains:read"),
        "Get a domain",
    ),
    route(
        Method::Patch,
        "/api/v1/domains/{id}",
        Op::UpdateDomain,
        Some("domains:write"),
        "Set a domain's root and not-found redirects and HTTPS redirect (a shared domain needs a `*` key of the operator's team)",
    ),
    // Custom domains (issue 8).
    route(
        Method::Post,
        "/api/v1/domains",
        Op::CreateDomain,
        Some("domains:write"),
        "Add a custom domain (pending) and get the records that prove ownership",
    ),
    route(
        Method::Delete,
        "/api/v1/domains/{id}",
        Op::DeleteDomain,
        Some("domains:write"),
        "Delete a custom domain with its links and certificate",
    ),
    route(
        Method::Post,
        "/api/v1/domains/{id}/verify",
        Op::VerifyDomain,
        Some("domains:write"),
        "Check ownership now (TXT record, then HTTP token); 200 with the outcome",
    ),
    // Certificates of custom domains (issue 8).
    route(
        Method::Get,
        "/api/v1/domains/{id}/certificate",
        Op::GetCertificate,
        Some("domains:read"),
        "A domain's certificate (issuer, serial, validity; never the key) and its ACME order",
    ),
    route(
        Method::Post,
        "/api/v1/domains/{id}/certificate/renew",
        Op::RenewCertificate,
        Some("domains:write"),
        "Order a new certificate now (joins an order already running)",
    ),
    // QR codes.
    route(
        Method::Post,
        "/api/v1/qr/generate",
        Op::GenerateQr,
        None,
        "Draw a QR code for a URL or text (SVG or PNG); no key, nothing stored",
    ),
    route(
        Method::Post,
        "/api/v1/qr",
        Op::CreateQr,
        Some("qr:write"),
        "Save a QR code for a link (scans counted), a URL, text, e-mail, phone, SMS or Wi-Fi",
    ),
    route(
        Method::Get,
        "/api/v1/qr",
        Op::ListQr,
        Some("qr:read"),
        "List the team's QR codes",
    ),
    route(Method::Get, QR, Op::GetQr, Some("qr:read"), "Get a QR code"),
    route(
        Method::Patch,
        QR,
        Op::UpdateQr,
        Some("qr:write"),
        "Change a QR code's title, style or default format",
    ),
    route(
        Method::Delete,
        QR,
        Op::DeleteQr,
        Some("qr:delete"),
        "Delete a QR code",
    ),
    route(
        Method::Get,
        "/api/v1/qr/{id}/download",
        Op::DownloadQr,
        Some("qr:read"),
        "Download a QR code's image (format and size may be overridden)",
    ),
    // Webhooks.
    route(
        Method::Post,
        "/api/v1/webhooks",
        Op::CreateWebhook,
        Some("webhooks:write"),
        "Create a webhook; its signing secret is shown once",
    ),
    route(
        Method::Get,
        "/api/v1/webhooks",
        Op::ListWebhooks,
        Some("webhooks:read"),
        "List the team's webhooks",
    ),
    route(
        Method::Get,
        WEBHOOK,
        Op::GetWebhook,
        Some("webhooks:read"),
        "Get a webhook",
    ),
    route(
        Method::Patch,
        WEBHOOK,
        Op::UpdateWebhook,
        Some("webhooks:write"),
        "Change a webhook's URL, events, description or active flag, or rotate its secret",
    ),
    route(
        Method::Delete,
        WEBHOOK,
        Op::DeleteWebhook,
        Some("webhooks:delete"),
        "Delete a webhook and its deliveries",
    ),
    route(
        Method::Post,
        "/api/v1/webhooks/{id}/test",
        Op::TestWebhook,
        Some("webhooks:write"),
        "Send a webhook.test event now",
    ),
    route(
        Method::Get,
        "/api/v1/webhooks/{id}/deliveries",
        Op::ListWebhookDeliveries,
        Some("webhooks:read"),
        "What was sent to a webhook, with each delivery's attempts and outcome",
    ),
    // Galleries (link-in-bio).
    route(
        Method::Post,
        "/api/v1/galleries",
        Op::CreateGallery,
        Some("galleries:write"),
        "Create a link-in-bio gallery (optionally with items, optionally published at once)",
    ),
    route(
        Method::Get,
        "/api/v1/galleries",
        Op::ListGalleries,
        Some("galleries:read"),
        "List the team's galleries",
    ),
    route(
        Method::Get,
        GALLERY,
        Op::GetGallery,
        Some("galleries:read"),
        "Get a gallery with its items",
    ),
    route(
        Method::Patch,
        GALLERY,
        Op::UpdateGallery,
        Some("galleries:write"),
        "Change a gallery's handle, domain, title, bio, avatar, theme or CSS",
    ),
    route(
        Method::Delete,
        GALLERY,
        Op::DeleteGallery,
        Some("galleries:delete"),
        "Delete a gallery and take its page down",
    ),
    route(
        Method::Post,
        "/api/v1/galleries/{id}/publish",
        Op::PublishGallery,
        Some("galleries:write"),
        "Publish the gallery's draft at /@<handle>",
    ),
    route(
        Method::Post,
        "/api/v1/galleries/{id}/unpublish",
        Op::UnpublishGallery,
        Some("galleries:write"),
        "Take the gallery's page down (the draft stays)",
    ),
    route(
        Method::Get,
        GALLERY_ITEMS,
        Op::ListGalleryItems,
        Some("galleries:read"),
        "List a gallery's items in display order",
    ),
    route(
        Method::Post,
        GALLERY_ITEMS,
        Op::CreateGalleryItem,
        Some("galleries:write"),
        "Add an item (link, header, divider, embed or image)",
    ),
    route(
        Method::Get,
        GALLERY_ITEM,
        Op::GetGalleryItem,
        Some("galleries:read"),
        "Get a gallery item",
    ),
    route(
        Method::Patch,
        GALLERY_ITEM,
        Op::UpdateGalleryItem,
        Some("galleries:write"),
        "Change or move a gallery item",
    ),
    route(
        Method::Delete,
        GALLERY_ITEM,
        Op::DeleteGalleryItem,
        Some("galleries:write"),
        "Remove a gallery item",
    ),
    route(
        Method::Put,
        "/api/v1/galleries/{id}/items/order",
        Op::OrderGalleryItems,
        Some("galleries:write"),
        "Reorder all of a gallery's items",
    ),
    route(
        Method::Get,
        "/api/v1/galleries/{id}/stats",
        Op::GalleryStats,
        Some("galleries:read"),
        "Views of a gallery's page: totals, uniques, breakdowns and over time (bots left out by default)",
    ),
];

/// The route a request matched, by its matched path and method.
pub fn find_route(matched_path: &str, method: &axum::http::Method) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.path == matched_path && r.method.matches(method))
}

/// Every public route (`/api/v1/…`, `/api/openapi.json`, `/docs`), rate limited
/// ([`crate::ratelimit::middleware`], inside the request-id layer so a 429 gets the envelope;
/// it reads the [`AppState`] that `crate::app` puts in the request extensions).
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, r.op.handler());
    }
    router
        .route("/api/{*rest}", any(not_found))
        .route("/api", any(not_found))
        .layer(axum::middleware::from_fn(crate::ratelimit::middleware))
        .layer(axum::middleware::from_fn(request_id::middleware))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// The success envelope: `{"success": true, "data": …}`.
pub fn ok<T: Serialize>(data: T) -> axum::Json<serde_json::Value> {
    match serde_json::to_value(data) {
        Ok(data) => axum::Json(serde_json::json!({ "success": true, "data": data })),
        Err(e) => {
            tracing::error!(error = %e, "serialising a response");
            axum::Json(serde_json::json!({ "success": true, "data": null }))
        }
    }
}
