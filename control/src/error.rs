//! The API's one error type and its wire form, the envelope of PRODUCT.md:
//!
//! ```json
//! {"success": false, "error": {"code": "SLUG_EXISTS", "message": "…",
//!  "details": [{"path": ["slug"], "message": "…"}], "requestId": "req_…"}}
//! ```
//!
//! Handlers return `Result<_, ApiError>`. [`ApiError::status`] and [`ApiError::code`] are
//! exhaustive matches, so a new variant cannot be added without deciding both. Internal errors
//! are logged once, here, and the body only ever says "internal error".
//!
//! The request id is not known where an error is created, so [`IntoResponse`] renders the body
//! without it and leaves an [`ErrorBody`] in the response extensions; the request-id middleware
//! (`api::request_id`) re-renders the body with the id it assigned.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem with one field: `path` names the field (`["geoTargets", "US"]`, `["links", 3]`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Detail {
    pub path: Vec<serde_json::Value>,
    pub message: String,
}

impl Detail {
    /// A detail for a path of plain field names.
    pub fn at(path: &[&str], message: impl Into<String>) -> Self {
        Self {
            path: path.iter().map(|p| serde_json::Value::from(*p)).collect(),
            message: message.into(),
        }
    }

    /// A detail whose path is already built (mixed names and indices).
    pub fn with_path(path: Vec<serde_json::Value>, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        details: Vec<Detail>,
    },
    #[error("{message}")]
    InvalidUrl {
        message: String,
        details: Vec<Detail>,
    },
    #[error("{message}")]
    SlugInvalid {
        message: String,
        details: Vec<Detail>,
    },
    #[error("{message}")]
    SlugReserved {
        message: String,
        details: Vec<Detail>,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this API key lacks the scope {scope}")]
    Forbidden { scope: String },
    /// FORBIDDEN for an action no key may take (deleting the default domain).
    #[error("{0}")]
    NotPermitted(String),
    #[error("{0}")]
    DomainNotAllowed(String),
    #[error(
        "domain {0} is not verified yet: publish its records (GET /api/v1/domains) and call \
         POST /api/v1/domains/{{id}}/verify"
    )]
    DomainNotVerified(String),
    #[error("{message}")]
    LimitReached {
        message: String,
        quota: serde_json::Value,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this slug is already taken on this domain")]
    SlugExists,
    /// A gallery handle is already used on the domain (by any team).
    #[error("this handle is already taken on this domain")]
    HandleExists,
    /// A unique `(team, externalId)` pair is already used; documented in the OpenAPI document.
    #[error("another link of this team already has this externalId")]
    ExternalIdExists,
    /// A host is already a domain (any team's, or sling's own); documented in OpenAPI.
    #[error("{0}")]
    DomainExists(String),
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// The database is unreachable (pool timeout, connection refused or closed).
    #[error("service temporarily unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// INVALID_REQUEST about one field.
    pub fn invalid_field(path: &[&str], message: impl Into<String>) -> Self {
        let message = message.into();
        Self::InvalidRequest {
            details: vec![Detail::at(path, message.clone())],
            message: format!("invalid {}: {message}", display_path(path)),
        }
    }

    /// INVALID_URL about one field.
    pub fn invalid_url(path: &[&str], message: impl Into<String>) -> Self {
        let message = message.into();
        Self::InvalidUrl {
            details: vec![Detail::at(path, message.clone())],
            message: format!("invalid {}: {message}", display_path(path)),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. }
            | Self::InvalidUrl { .. }
            | Self::SlugInvalid { .. }
            | Self::SlugReserved { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. }
            | Self::NotPermitted(_)
            | Self::DomainNotAllowed(_)
            | Self::DomainNotVerified(_)
            | Self::LimitReached { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::SlugExists
            | Self::HandleExists
            | Self::ExternalIdExists
            | Self::DomainExists(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "INVALID_REQUEST",
            Self::InvalidUrl { .. } => "INVALID_URL",
            Self::SlugInvalid { .. } => "SLUG_INVALID",
            Self::SlugReserved { .. } => "SLUG_RESERVED",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden { .. } | Self::NotPermitted(_) => "FORBIDDEN",
            Self::DomainNotAllowed(_) => "DOMAIN_NOT_ALLOWED",
            Self::DomainNotVerified(_) => "DOMAIN_NOT_VERIFIED",
            Self::LimitReached { .. } => "LIMIT_REACHED",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::SlugExists => "SLUG_EXISTS",
            Self::HandleExists => "HANDLE_EXISTS",
            Self::ExternalIdExists => "EXTERNAL_ID_EXISTS",
            Self::DomainExists(_) => "DOMAIN_EXISTS",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Internal(_) => "INTERNAL",
            Self::Unavailable(_) => "UNAVAILABLE",
        }
    }

    pub fn details(&self) -> &[Detail] {
        match self {
            Self::InvalidRequest { details, .. }
            | Self::InvalidUrl { details, .. }
            | Self::SlugInvalid { details, .. }
            | Self::SlugReserved { details, .. } => details,
            _ => &[],
        }
    }

    /// The wire form of this error, minus the request id.
    pub fn body(&self) -> ErrorBody {
        let mut details = self.details().to_vec();
        match self {
            Self::Forbidden { scope } => {
                details.push(Detail::at(&["scope"], format!("requires {scope}")));
            }
            Self::SlugExists => details.push(Detail::at(&["slug"], "already taken")),
            Self::ExternalIdExists => details.push(Detail::at(&["externalId"], "already used")),
            Self::DomainExists(_) => details.push(Detail::at(&["host"], "already a domain")),
            _ => {}
        }
        let quota = match self {
            Self::LimitReached { quota, .. } => Some(quota.clone()),
            _ => None,
        };
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            details,
            quota,
        }
    }
}

fn display_path(path: &[&str]) -> String {
    path.join(".")
}

/// What the envelope's `error` object holds, except `requestId` (added by the middleware).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<serde_json::Value>,
}

impl ErrorBody {
    /// The complete envelope.
    pub fn envelope(&self, request_id: Option<&str>) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.code,
            "message": self.message,
            "details": self.details,
        });
        if let Some(q) = &self.quota {
            error["quota"] = q.clone();
        }
        if let Some(id) = request_id {
            error["requestId"] = serde_json::Value::from(id);
        }
        serde_json::json!({ "success": false, "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            // Logged once, here; the body never carries the cause.
            Self::Internal(e) => tracing::error!(error = ?e, "internal error"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            _ => {}
        }
        let body = self.body();
        let mut res = (self.status(), Json(body.envelope(None))).into_response();
        if let Self::RateLimited { retry_after_secs } = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        res.extensions_mut().insert(body);
        res
    }
}

/// Database errors: unique violations become 409, an unreachable database 503, the rest 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let what = format!("{} {}", db.constraint().unwrap_or(""), db.message());
                if what.contains("external_id") {
                    Self::ExternalIdExists
                } else if what.contains("handle") {
                    Self::HandleExists
                } else if what.contains("slug") {
                    Self::SlugExists
                } else if what.contains("host") {
                    // Two teams adding the same host at once: the loser sees what a later
                    // attempt would.
                    Self::DomainExists("this host is already a domain".into())
                } else {
                    Self::Internal(e.into())
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            _ => Self::Internal(e.into()),
        }
    }
}

/// Anything else that goes wrong is internal.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<sqlx::Error>() {
            Ok(sql) => sql.into(),
            Err(e) => Self::Internal(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
