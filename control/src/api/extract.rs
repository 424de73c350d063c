//! Extractors that fail in the API's envelope instead of axum's plain-text rejections.
//!
//! - [`Json`]: requires `Content-Type: application/json` (415 otherwise), enforces
//!   `config.max_body_bytes` (413), and reports syntax and type errors as 400 INVALID_REQUEST
//!   with the path of the offending field (via `serde_path_to_error`).
//! - [`Query`] and [`Path`]: their rejections become 400 INVALID_REQUEST.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Detail};
use crate::state::AppState;

/// A JSON request body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_json_body(req, state.config.max_body_bytes).await?;
        from_slice(&bytes).map(Json)
    }
}

/// Checks the content type and reads the whole body, refusing more than `limit` bytes.
pub async fn read_json_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    if !is_json(req.headers().get(header::CONTENT_TYPE)) {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: application/json",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::PayloadTooLarge),
        Err(e) => Err(ApiError::invalid(format!(
            "could not read the request body: {e}"
        ))),
    }
}

fn is_json(v: Option<&axum::http::HeaderValue>) -> bool {
    let Some(v) = v.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses JSON bytes into `T`, with the failing field's path in the details.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(&e))?;
    de.end().map_err(|e| ApiError::InvalidRequest {
        message: format!("malformed JSON: {e}"),
        details: vec![Detail::with_path(Vec::new(), e.to_string())],
    })?;
    Ok(value)
}

/// Converts an already-parsed JSON value into `T` (bulk items), prefixing error paths.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| json_error(&e))
}

fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_path_to_error::Segment;
    let inner = e.inner();
    let path: Vec<serde_json::Value> = e
        .path()
        .iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(serde_json::Value::from(*index)),
            Segment::Map { key } => Some(serde_json::Value::from(key.as_str())),
            Segment::Enum { variant } => Some(serde_json::Value::from(variant.as_str())),
            Segment::Unknown => None,
        })
        .collect();
    let text = inner.to_string();
    let message = match inner.classify() {
        serde_json::error::Category::Data => format!("invalid request body: {text}"),
        _ => format!("malformed JSON: {text}"),
    };
    ApiError::InvalidRequest {
        message,
        details: vec![Detail::with_path(path, text)],
    }
}

/// A query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_owned();
                // `field: message` when serde knows the field.
                let path = match detail.split_once(": ") {
                    Some((field, _)) if !field.contains(' ') => {
                        vec![serde_json::Value::from(field)]
                    }
                    _ => Vec::new(),
                };
                Err(ApiError::InvalidRequest {
                    message: format!("invalid query string: {detail}"),
                    details: vec![Detail::with_path(path, detail)],
                })
            }
        }
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(ApiError::invalid(format!(
                "invalid path: {}",
                rejection.body_text()
            ))),
        }
    }
}
