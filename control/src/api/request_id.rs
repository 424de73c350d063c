//! Per-request ids and the last word on error bodies.
//!
//! [`middleware`] gives every request an id (`req_` + 20 random alphanumerics), stores it in the
//! request extensions, and puts it in the `X-Request-Id` header of every response, success or
//! not. Error responses built by [`ApiError`] get the same id in the envelope's `requestId`.
//! Responses axum makes on its own (unknown route, wrong method, …) are rewritten into the
//! envelope here, so a client never sees a bare status.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::error::{ApiError, ErrorBody};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request (in the request extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn generate() -> Self {
        let rand: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        Self(format!("req_{rand}"))
    }
}

/// Axum middleware (`axum::middleware::from_fn(request_id::middleware)`).
pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = RequestId::generate();
    req.extensions_mut().insert(id.clone());
    let mut res = next.run(req).await;

    let body = match res.extensions().get::<ErrorBody>() {
        Some(b) => Some(b.clone()),
        None if is_bare_error(&res) => Some(bare_error(res.status()).body()),
        None => None,
    };
    if let Some(body) = body {
        let bytes = serde_json::to_vec(&body.envelope(Some(&id.0))).unwrap_or_default();
        let headers = res.headers_mut();
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        *res.body_mut() = Body::from(bytes);
    }
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        res.headers_mut().insert(HEADER, v);
    }
    res
}

/// An error status whose body was not made by [`ApiError`] (axum's own 404/405, a layer's 413).
fn is_bare_error(res: &Response) -> bool {
    let status = res.status();
    (status.is_client_error() || status.is_server_error())
        && res.extensions().get::<ErrorBody>().is_none()
}

fn bare_error(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("route"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("expected Content-Type: application/json")
        }
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized("authentication required"),
        StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited {
            retry_after_secs: 1,
        },
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(sqlx::Error::PoolTimedOut),
        s if s.is_client_error() => ApiError::invalid(
            s.canonical_reason()
                .unwrap_or("bad request")
                .to_ascii_lowercase(),
        ),
        _ => ApiError::Internal(anyhow::anyhow!("unexpected {status} from a handler")),
    }
}
