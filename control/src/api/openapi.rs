//! The OpenAPI 3.1 document at `GET /api/openapi.json`, built from the route table
//! ([`super::ROUTES`]) plus a hand-written description of each operation ([`operation`]) and
//! of the link schema and error envelope.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Op, ROUTES, links};

/// `GET /api/openapi.json`
pub async fn serve() -> Response {
    axum::Json(document()).into_response()
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let mut op = operation(r.op);
        op["summary"] = Value::from(r.summary);
        op["operationId"] = Value::from(format!("{:?}", r.op));
        match r.scope {
            Some(scope) => {
                op["security"] = json!([{"bearer": []}, {"apiKeyHeader": []}, {"apiKeyQuery": []}]);
                op["x-required-scope"] = Value::from(scope);
                let responses = &mut op["responses"];
                responses["401"] =
                    error_ref("UNAUTHORIZED: missing, invalid, revoked or expired key");
                // An operation's own 403 (DOMAIN_NOT_VERIFIED, the operator's team) says more.
                if responses.get("403").is_none() {
                    responses["403"] = error_ref("FORBIDDEN: the key lacks the required scope");
                }
            }
            None => op["security"] = json!([]),
        }
        op["responses"]["429"] = error_ref(
            "RATE_LIMITED: the team's (or, without a key, the client IP's) budget is spent; see Retry-After. Every response carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (unix seconds when the bucket is full again)",
        );
        // Every JSON body goes through the same extractor and body limit.
        if op.get("requestBody").is_some() {
            for (status, what) in [
                (
                    "400",
                    "INVALID_REQUEST: malformed JSON, a wrong type or an unknown field",
                ),
                ("413", "PAYLOAD_TOO_LARGE"),
                (
                    "415",
                    "UNSUPPORTED_MEDIA_TYPE: Content-Type must be application/json",
                ),
            ] {
                if op["responses"].get(status).is_none() {
                    op["responses"][status] = error_ref(what);
                }
            }
        }
        op["responses"]["500"] = error_ref("INTERNAL");
        op["responses"]["503"] = error_ref("UNAVAILABLE: the database is unreachable");
        let entry = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
        entry[r.method.as_str()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sling API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted URL shortener. JSON, camelCase fields, RFC 3339 UTC times, \
                opaque string ids. Every response carries X-Request-Id; errors use one envelope \
                whose requestId matches it.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer sk_…"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            },
            "schemas": schemas(),
        },
    })
}

/// An error response of the envelope, for the modules' own operation descriptions.
pub(super) fn error_ref(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    })
}

fn data_of(schema: Value) -> Value {
    json!({
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"const": true}, "data": schema},
    })
}

/// A success response whose `data` is `schema`.
pub(super) fn ok_json(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": data_of(schema)}}})
}

fn link_ref() -> Value {
    json!({"$ref": "#/components/schemas/Link"})
}

fn id_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn link_body() -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LinkInput"}}},
    })
}

fn body_errors() -> Value {
    json!({
        "400": error_ref("INVALID_REQUEST (malformed JSON, wrong type, unknown field), INVALID_URL, SLUG_INVALID or SLUG_RESERVED"),
        "403": error_ref("FORBIDDEN or DOMAIN_NOT_VERIFIED"),
        "409": error_ref("SLUG_EXISTS, or EXTERNAL_ID_EXISTS when the team already uses the externalId"),
        "413": error_ref("PAYLOAD_TOO_LARGE"),
        "415": error_ref("UNSUPPORTED_MEDIA_TYPE: Content-Type must be application/json"),
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The hand-written part of each operation.
pub fn operation(op: Op) -> Value {
    let not_found = || error_ref("NOT_FOUND: no such link in this team");
    let single = |verb: &str| {
        json!({
            "tags": ["links"],
            "parameters": [id_param("id")],
            "responses": {"200": ok_json(&format!("The {verb} link"), link_ref()), "404": not_found()},
        })
    };
    match op {
        Op::OpenApi => json!({
            "tags": ["meta"],
            "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}},
        }),
        Op::Docs => json!({
            "tags": ["meta"],
            "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
        }),
        Op::CreateLink => json!({
            "tags": ["links"],
            "description": "Creates a link. The slug is generated when absent. `domain` is a host: the default domain or one of the team's verified domains.",
            "requestBody": link_body(),
            "responses": merge(json!({"201": ok_json("The created link", link_ref())}), body_errors()),
        }),
        Op::ListLinks => {
            let q = |name: &str, schema: Value, description: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description});
            let boolean = json!({"type": "boolean"});
            json!({
                "tags": ["links"],
                "parameters": [
                    q("page", json!({"type": "integer", "minimum": 1, "default": 1}), "Page number"),
                    q("perPage", json!({"type": "integer", "minimum": 1, "maximum": super::paging::MAX_PER_PAGE, "default": super::paging::DEFAULT_PER_PAGE}), "Page size (alias: limit); more than 100 is refused"),
                    q("search", json!({"type": "string", "maxLength": 200}), "Case-insensitive substring of slug, destination or title"),
                    q("domain", json!({"type": "string"}), "Only links on this host"),
                    q("tag", json!({"type": "string"}), "Only links with this tag"),
                    q("active", boolean.clone(), "Filter on active"),
                    q("archived", boolean.clone(), "Filter on archived"),
                    q("visible", boolean, "Filter on visible"),
                    q("sort", json!({"enum": ["createdAt", "updatedAt", "clicks", "slug"], "default": "createdAt"}), "Sort key (alias: sortBy)"),
                    q("order", json!({"enum": ["asc", "desc"], "default": "desc"}), "Sort order (alias: sortOrder)"),
                ],
                "responses": {
                    "200": ok_json("A page of links", json!({
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": link_ref()},
                            "pagination": {"$ref": "#/components/schemas/Pagination"},
                        },
                    })),
                    "400": error_ref("INVALID_REQUEST: a bad query parameter"),
                },
            })
        }
        Op::BulkCreateLinks => json!({
            "tags": ["links"],
            "description": "Up to 1000 create bodies, as an array or as {\"links\": [...], \"channel\": \"api\" | \"import\"}. Each item succeeds or fails on its own.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "oneOf": [
                    {"type": "array", "maxItems": links::MAX_BULK, "items": {"$ref": "#/components/schemas/LinkInput"}},
                    {"type": "object", "required": ["links"], "properties": {
                        "links": {"type": "array", "maxItems": links::MAX_BULK, "items": {"$ref": "#/components/schemas/LinkInput"}},
                        "channel": {"enum": ["api", "import"]},
                    }},
                ],
            }}}},
            "responses": merge(json!({"200": ok_json("Per-item results", json!({
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"},
                        "success": {"type": "boolean"},
                        "data": link_ref(),
                        "error": {"$ref": "#/components/schemas/ErrorObject"},
                    }}},
                    "succeeded": {"type": "integer"},
                    "failed": {"type": "integer"},
                },
            }))}), body_errors()),
        }),
        Op::GetLink => single("requested"),
        Op::GetLinkByExternalId => json!({
            "tags": ["links"],
            "parameters": [id_param("externalId")],
            "responses": {"200": ok_json("The link with this external id", link_ref()), "404": not_found()},
        }),
        Op::UpdateLink | Op::ReplaceLink => json!({
            "tags": ["links"],
            "description": "Partial update: fields present are set, `null` clears a field (or resets it to its default), absent fields are unchanged. Changing slug or domain moves the link.",
            "parameters": [id_param("id")],
            "requestBody": link_body(),
            "responses": merge(json!({"200": ok_json("The updated link", link_ref()), "404": not_found()}), body_errors()),
        }),
        Op::DeleteLink => json!({
            "tags": ["links"],
            "parameters": [id_param("id")],
            "responses": {"204": {"description": "Deleted; empty body"}, "404": not_found()},
        }),
        Op::EnableLink => single("enabled"),
        Op::DisableLink => single("disabled"),
        Op::ArchiveLink => single("archived"),
        Op::UnarchiveLink => single("unarchived"),
        Op::LinkStats | Op::GalleryStats => stats_operation(true),
        Op::TeamStats => stats_operation(false),
        Op::GetAccount
        | Op::UpdateAccount
        | Op::ListApiKeys
        | Op::CreateApiKey
        | Op::RevokeApiKey
        | Op::GetUsage
        | Op::ListApiLogs => super::account::openapi_operation(op),
        Op::ListDomains
        | Op::GetDomain
        | Op::UpdateDomain
        | Op::CreateDomain
        | Op::DeleteDomain
        | Op::VerifyDomain => super::domains::openapi_operation(op),
        Op::GetCertificate | Op::RenewCertificate => super::certificates::openapi_operation(op),
        Op::GenerateQr
        | Op::CreateQr
        | Op::ListQr
        | Op::GetQr
        | Op::UpdateQr
        | Op::DeleteQr
        | Op::DownloadQr => super::qr::openapi_operation(op),
        Op::CreateWebhook
        | Op::ListWebhooks
        | Op::GetWebhook
        | Op::UpdateWebhook
        | Op::DeleteWebhook
        | Op::TestWebhook
        | Op::ListWebhookDeliveries => super::webhooks::openapi_operation(op),
        Op::CreateGallery
        | Op::ListGalleries
        | Op::GetGallery
        | Op::UpdateGallery
        | Op::DeleteGallery
        | Op::PublishGallery
        | Op::UnpublishGallery
        | Op::ListGalleryItems
        | Op::CreateGalleryItem
        | Op::GetGalleryItem
        | Op::UpdateGalleryItem
        | Op::DeleteGalleryItem
        | Op::OrderGalleryItems => super::galleries::openapi_operation(op),
    }
}

/// The two stats operations (issue 5); parameters as in `api::stats`.
fn stats_operation(link: bool) -> Value {
    let q = |name: &str, schema: Value, description: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description});
    let mut params = Vec::new();
    if link {
        params.push(id_param("id"));
    }
    params.extend([
        q("start", json!({"type": "string"}), "RFC 3339 time, or YYYY-MM-DD (local midnight in tz). Default: start of the local day 29 days before end"),
        q("end", json!({"type": "string"}), "RFC 3339 time (exclusive), or YYYY-MM-DD (inclusive: to the end of that local day). Default: now"),
        q("tz", json!({"type": "string", "default": "UTC"}), "IANA time zone for bucket boundaries and the offsets of returned times"),
        q("interval", json!({"enum": ["hour", "day", "week", "month"], "default": "day"}), "overTime bucket size (local boundaries; weeks start on Monday); at most 10000 buckets"),
        q("includeBots", json!({"type": "boolean", "default": false}), "Count clicks flagged as bots"),
        q("format", json!({"enum": ["json", "csv"]}), "csv: a flat dimension,value,clicks,uniqueClicks table (also with Accept: text/csv)"),
    ]);
    if !link {
        params.push(q("top", json!({"type": "integer", "minimum": 1, "maximum": super::stats::MAX_TOP, "default": super::stats::DEFAULT_TOP}), "How many top links"));
    }
    let mut responses = json!({
        "200": {
            "description": "The statistics",
            "content": {
                "application/json": {"schema": data_of(json!({"$ref": "#/components/schemas/Stats"}))},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        "400": error_ref("INVALID_REQUEST: bad start, end, tz, interval, includeBots, format or top; end before start; too many buckets"),
    });
    if link {
        responses["404"] = error_ref("NOT_FOUND: no such link (or gallery) in this team");
    }
    json!({
        "tags": ["stats"],
        "description": "Clicks from 15-minute rollups (kept forever), unique visitors from raw events (kept --click-retention-days). Bots are left out unless includeBots=true. Breakdowns are sorted by clicks, descending; overTime is zero-filled.",
        "parameters": params,
        "responses": responses,
    })
}

fn schemas() -> Value {
    let s = json!({"type": "string"});
    let ns = json!({"type": ["string", "null"]});
    let url = json!({"type": "string", "format": "uri", "maxLength": 2048});
    let nurl = json!({"type": ["string", "null"], "format": "uri", "maxLength": 2048});
    let time = json!({"type": ["string", "null"], "format": "date-time"});
    let device_map = json!({
        "type": "object",
        "propertyNames": {"enum": ["ios", "android", "mobile", "tablet", "desktop"]},
        "additionalProperties": url.clone(),
    });
    let geo_map = json!({
        "type": "object",
        "propertyNames": {"pattern": "^[A-Za-z]{2}$"},
        "additionalProperties": url.clone(),
        "description": "ISO 3166-1 alpha-2 country code → URL (codes are stored upper-case)",
    });
    json!({
        "Link": {
            "type": "object",
            "properties": {
                "id": s, "domain": s, "slug": s,
                "shortUrl": url, "destinationUrl": url,
                "title": ns, "description": ns,
                "tags": {"type": "array", "items": s},
                "hasPassword": {"type": "boolean"},
                "expiresAt": time, "expiredUrl": nurl,
                "clickLimit": {"type": ["integer", "null"], "minimum": 1},
                "geoTargets": geo_map, "deviceTargets": device_map,
                "iosUrl": nurl, "androidUrl": nurl,
                "utmSource": ns, "utmMedium": ns, "utmCampaign": ns, "utmTerm": ns, "utmContent": ns,
                "externalId": ns,
                "redirectType": {"enum": [301, 302, 307, 308]},
                "forwardQuery": {"type": "boolean"},
                "active": {"type": "boolean"}, "archived": {"type": "boolean"}, "visible": {"type": "boolean"},
                "clicks": {"type": "integer"},
                "channel": {"type": "string", "examples": ["api", "import"]},
                "createdAt": {"type": "string", "format": "date-time"},
                "updatedAt": {"type": "string", "format": "date-time"},
            },
        },
        "LinkInput": {
            "type": "object",
            "additionalProperties": false,
            "description": "Unknown fields are refused. snake_case aliases of the fields are accepted (destination_url, url, external_id, …).",
            "properties": {
                "destinationUrl": {"type": "string", "format": "uri", "maxLength": 2048, "description": "Required on create. Absolute http/https, no whitespace, control characters or credentials; not on one of sling's own hosts."},
                "slug": {"type": "string", "pattern": "^[A-Za-z0-9_-]{2,100}$", "description": "Generated when absent; reserved words are refused"},
                "domain": {"type": ["string", "null"], "description": "Host of the domain; default domain when absent or null"},
                "title": {"type": ["string", "null"], "maxLength": 200},
                "description": {"type": ["string", "null"], "maxLength": 1000},
                "tags": {"type": ["array", "null"], "maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 50}},
                "password": {"type": ["string", "null"], "minLength": 1, "maxLength": 128, "writeOnly": true},
                "expiresAt": {"type": ["string", "null"], "format": "date-time", "description": "Must be in the future"},
                "expiredUrl": nurl, "clickLimit": {"type": ["integer", "null"], "minimum": 1},
                "geoTargets": geo_map, "deviceTargets": device_map,
                "iosUrl": nurl, "androidUrl": nurl,
                "utmSource": ns, "utmMedium": ns, "utmCampaign": ns, "utmTerm": ns, "utmContent": ns,
                "externalId": {"type": ["string", "null"], "maxLength": 200, "description": "Unique per team"},
                "redirectType": {"enum": [301, 302, 307, 308, null]},
                "forwardQuery": {"type": ["boolean", "null"]},
                "active": {"type": ["boolean", "null"]}, "archived": {"type": ["boolean", "null"]}, "visible": {"type": ["boolean", "null"]},
            },
        },
        "Stats": {
            "type": "object",
            "required": ["start", "end", "tz", "interval", "includeBots", "totalClicks", "uniqueClicks", "qrClicks", "byCountry", "byDevice", "byBrowser", "byOs", "byReferrer", "overTime"],
            "properties": {
                "linkId": {"type": "string", "description": "Per-link stats only"},
                "start": {"type": "string", "format": "date-time", "description": "Start of the range actually counted (widened to a 15-minute edge), with the offset of tz"},
                "end": {"type": "string", "format": "date-time", "description": "End of the range (exclusive)"},
                "tz": s, "interval": {"enum": ["hour", "day", "week", "month"]},
                "includeBots": {"type": "boolean"},
                "totalClicks": {"type": "integer"},
                "uniqueClicks": {"type": "integer", "description": "Distinct visitors (the proxy's visitor key rotates daily)"},
                "qrClicks": {"type": "integer", "description": "Clicks that came through a QR code"},
                "byCountry": {"type": "array", "items": {"type": "object", "properties": {"country": {"type": ["string", "null"], "description": "ISO 3166-1 alpha-2; null when unknown"}, "clicks": {"type": "integer"}}}},
                "byDevice": {"type": "array", "items": {"type": "object", "properties": {"device": s, "clicks": {"type": "integer"}}}},
                "byBrowser": {"type": "array", "items": {"type": "object", "properties": {"browser": s, "clicks": {"type": "integer"}}}},
                "byOs": {"type": "array", "items": {"type": "object", "properties": {"os": s, "clicks": {"type": "integer"}}}},
                "byReferrer": {"type": "array", "items": {"type": "object", "properties": {"referrer": {"type": ["string", "null"], "description": "Referrer host; null for direct visits"}, "clicks": {"type": "integer"}}}},
                "overTime": {"type": "array", "items": {"type": "object", "properties": {
                    "start": {"type": "string", "format": "date-time", "description": "Local start of the bucket, with the offset in force then"},
                    "clicks": {"type": "integer"}, "uniqueClicks": {"type": "integer"},
                }}},
                "topLinks": {"type": "array", "description": "Team-wide stats only", "items": {"type": "object", "properties": {
                    "id": s, "slug": s, "domain": s, "clicks": {"type": "integer"},
                }}},
            },
        },
        "Pagination": {
            "type": "object",
            "properties": {
                "page": {"type": "integer"}, "perPage": {"type": "integer"},
                "total": {"type": "integer"}, "totalPages": {"type": "integer"},
            },
        },
        "ErrorObject": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"enum": [
                    "INVALID_REQUEST", "INVALID_URL", "SLUG_INVALID", "SLUG_RESERVED", "UNAUTHORIZED",
                    "FORBIDDEN", "DOMAIN_NOT_ALLOWED", "DOMAIN_NOT_VERIFIED", "LIMIT_REACHED",
                    "NOT_FOUND", "METHOD_NOT_ALLOWED", "SLUG_EXISTS", "EXTERNAL_ID_EXISTS",
                    "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "RATE_LIMITED", "INTERNAL", "UNAVAILABLE",
                ]},
                "message": s,
                "details": {"type": "array", "items": {"type": "object", "properties": {
                    "path": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "message": s,
                }}},
                "requestId": {"type": "string", "description": "Same as the X-Request-Id header"},
                "quota": {"type": "object", "description": "With LIMIT_REACHED"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["success", "error"],
            "properties": {"success": {"const": false}, "error": {"$ref": "#/components/schemas/ErrorObject"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.as_str()];
            assert!(
                op.is_object(),
                "{} {} missing from the OpenAPI document",
                r.method.as_str(),
                r.path
            );
            assert!(
                op["responses"].as_object().is_some_and(|m| !m.is_empty()),
                "{:?}",
                r.op
            );
            assert_eq!(op["summary"], r.summary);
            if let Some(scope) = r.scope {
                assert_eq!(op["x-required-scope"], scope);
            }
        }
        // And nothing documented that is not routed.
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, ROUTES.len());
    }

    #[test]
    fn router_builds_from_the_table() {
        // Panics on overlapping routes or duplicate methods.
        let _ = crate::api::router();
    }
}
