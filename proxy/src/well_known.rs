//! Answers given before any routing rule (PRODUCT.md's rule 1): the well-known tokens of ACME
//! HTTP-01 challenges and domain verification, on both listeners and never sent to HTTPS (the CA
//! and the verifier fetch them over plain HTTP); then, on the plain listener only, the 308 to
//! `https://` for hosts whose certificate entry asks for it.
//!
//! Both are off the hot path's cost: a path not under `/.well-known/` never looks up a table,
//! and the HTTPS check is one atomic load while no host wants it.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Method, Response, StatusCode};
use sling_shared::host::normalize_request_host;

use crate::respond::Body;
use crate::tls::{TlsEdge, WELL_KNOWN_PREFIX};

/// The request as far as these rules look at it.
#[derive(Debug, Clone, Copy)]
pub struct Early<'a> {
    /// `Host` or `:authority`, as sent (port and case allowed).
    pub host: &'a str,
    pub path: &'a str,
    /// Path and query, as sent.
    pub path_and_query: &'a str,
    pub method: &'a Method,
    /// Came over the HTTPS listener.
    pub tls: bool,
}

/// The response for a well-known answer or an HTTPS redirect; `None` to route as usual.
pub fn answer(edge: &TlsEdge, req: Early<'_>) -> Option<Response<Body>> {
    let read = *req.method == Method::GET || *req.method == Method::HEAD;
    if read && req.path.starts_with(WELL_KNOWN_PREFIX) {
        let host = normalize_request_host(req.host);
        if let Some(body) = edge.tables().well_known(&host, req.path) {
            return Some(plain_text(body.clone()));
        }
    }
    if !req.tls && edge.any_https_redirect() {
        let host = normalize_request_host(req.host);
        if edge.tables().redirects_to_https(&host) {
            return https_redirect(&host, edge.https_public_port(), req.path_and_query);
        }
    }
    None
}

fn plain_text(body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    // A challenge token is answered once and then removed: no cache may keep it.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 308 keeps the method and body, so a form post survives the move to HTTPS. `None` if the
/// target does not make a valid header (the request then routes as usual).
fn https_redirect(host: &str, port: Option<u16>, path_and_query: &str) -> Option<Response<Body>> {
    let location = match port {
        Some(port) => format!("https://{host}:{port}{path_and_query}"),
        None => format!("https://{host}{path_and_query}"),
    };
    let location = HeaderValue::try_from(location).ok()?;
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, location);
    Some(resp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn redirect_location_keeps_path_and_query_and_the_public_port() {
        let r = https_redirect("go.example.com", None, "/abc?x=1").unwrap();
        assert_eq!(r.status(), 308);
        assert_eq!(r.headers()[LOCATION], "https://go.example.com/abc?x=1");
        let r = https_redirect("go.example.com", Some(8443), "/").unwrap();
        assert_eq!(r.headers()[LOCATION], "https://go.example.com:8443/");
    }
}
