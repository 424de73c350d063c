//! Turns a [`Decision`] into an HTTP response: redirects with their headers, and the few pages the
//! proxy serves itself. Pages are small, self-contained HTML (no external assets, no scripts) built
//! at compile time, so answering one never allocates for the body. This is also the one place hot
//! path errors become responses ([`ProxyError`]).

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::router::{Decision, GoneReason};

pub type Body = Full<Bytes>;

/// What PRODUCT.md asks of every redirect: browsers may reuse it briefly, shared caches may not
/// (a link can be edited or disabled at any time).
const REDIRECT_CACHE: HeaderValue = HeaderValue::from_static("private, max-age=90");
/// Pages for a missing or gone link must not stick: the link may be created or re-enabled.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const LANDING_CACHE: HeaderValue = HeaderValue::from_static("public, max-age=300");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
/// The pages need nothing but their own inline style.
const PAGE_CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
);

/// Errors on the request path. Each maps to one response, here, and none of them is a panic.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// A stored destination cannot be sent as a header (control characters): a data bug upstream,
    /// answered as a gateway error rather than a broken redirect.
    #[error("stored redirect target is not a valid Location header")]
    InvalidLocation,
}

/// Builds the response for `decision`.
pub fn respond(decision: Decision<'_>) -> Response<Body> {
    match decision {
        Decision::Redirect(redirect) => match HeaderValue::from_str(&redirect.location) {
            Ok(location) => {
                let mut resp = Response::new(Body::default());
                *resp.status_mut() = redirect.status;
                let h = resp.headers_mut();
                h.insert(LOCATION, location);
                h.insert(CACHE_CONTROL, REDIRECT_CACHE);
                resp
            }
            Err(_) => {
                tracing::warn!(
                    link_id = redirect.link_id.as_deref().unwrap_or(""),
                    "{}",
                    ProxyError::InvalidLocation
                );
                error(ProxyError::InvalidLocation)
            }
        },
        Decision::Landing => page(StatusCode::OK, LANDING, LANDING_CACHE),
        Decision::NotFound => page(StatusCode::NOT_FOUND, NOT_FOUND, NO_STORE),
        Decision::Gone(GoneReason::Expired) => page(StatusCode::GONE, EXPIRED, NO_STORE),
        Decision::Gone(GoneReason::Disabled | GoneReason::Archived) => {
            page(StatusCode::GONE, GONE, NO_STORE)
        }
        Decision::MethodNotAllowed => {
            let mut resp = page(StatusCode::METHOD_NOT_ALLOWED, NOT_ALLOWED, NO_STORE);
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            resp
        }
        Decision::UriTooLong => page(StatusCode::URI_TOO_LONG, TOO_LONG, NO_STORE),
    }
}

/// The response for a request-path error.
pub fn error(err: ProxyError) -> Response<Body> {
    match err {
        ProxyError::InvalidLocation => page(StatusCode::BAD_GATEWAY, BROKEN, NO_STORE),
    }
}

fn page(status: StatusCode, html: &'static str, cache: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from_static(html.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HTML);
    h.insert(CACHE_CONTROL, cache);
    h.insert(CONTENT_SECURITY_POLICY, PAGE_CSP);
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// One page template, filled at compile time.
macro_rules! page_html {
    ($title:literal, $heading:literal, $text:literal) => {
        concat!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<meta name=\"robots\" content=\"noindex\">\n",
            "<title>",
            $title,
            "</title>\n<style>\n",
            "body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;",
            "font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;",
            "background:#f6f7f9;color:#1f2328;line-height:1.5}\n",
            "main{max-width:32rem;margin:1.5rem;padding:2rem;background:#fff;border-radius:12px;",
            "box-shadow:0 1px 3px rgba(0,0,0,.12)}\n",
            "h1{font-size:1.5rem;margin:0 0 .5rem}p{margin:0;color:#57606a}\n",
            "@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}",
            "main{background:#161b22;box-shadow:none}p{color:#9da7b3}}\n",
            "</style>\n</head>\n<body>\n<main>\n<h1>",
            $heading,
            "</h1>\n<p>",
            $text,
            "</p>\n</main>\n</body>\n</html>\n"
        )
    };
}

const LANDING: &str = page_html!(
    "Short links",
    "Short links live here",
    "This domain serves short links. Open a full short link to be taken to its destination."
);
const NOT_FOUND: &str = page_html!(
    "Link not found",
    "Link not found",
    "There is no short link at this address. Check it for typos, or ask whoever shared it for a new one."
);
const GONE: &str = page_html!(
    "Link unavailable",
    "This link is no longer available",
    "The owner of this short link has disabled or archived it."
);
const EXPIRED: &str = page_html!(
    "Link expired",
    "This link has expired",
    "The short link you followed had an expiry date, and it has passed."
);
const NOT_ALLOWED: &str = page_html!(
    "Method not allowed",
    "Method not allowed",
    "Short links answer GET and HEAD requests only."
);
const TOO_LONG: &str = page_html!(
    "Address too long",
    "Address too long",
    "This address is longer than any short link can be."
);
const BROKEN: &str = page_html!(
    "Link misconfigured",
    "This link cannot be followed",
    "The destination stored for this short link is not a valid address."
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::borrow::Cow;

    use super::*;
    use crate::router::Redirect;

    #[test]
    fn redirect_headers() {
        let resp = respond(Decision::Redirect(Redirect {
            status: StatusCode::PERMANENT_REDIRECT,
            location: Cow::Borrowed("https://example.com/?a=1"),
            link_id: None,
            count_click: true,
        }));
        assert_eq!(resp.status(), 308);
        assert_eq!(resp.headers()[LOCATION], "https://example.com/?a=1");
        assert_eq!(resp.headers()[CACHE_CONTROL], "private, max-age=90");
        assert!(resp.headers().get(CONTENT_TYPE).is_none());
    }

    #[test]
    fn bad_location_is_a_gateway_error_not_a_panic() {
        let resp = respond(Decision::Redirect(Redirect {
            status: StatusCode::FOUND,
            location: Cow::Borrowed("https://example.com/\r\nSet-Cookie: x"),
            link_id: None,
            count_click: true,
        }));
        assert_eq!(resp.status(), 502);
    }

    #[test]
    fn pages_are_complete_html() {
        for (decision, status) in [
            (Decision::Landing, 200),
            (Decision::NotFound, 404),
            (Decision::Gone(GoneReason::Archived), 410),
            (Decision::Gone(GoneReason::Expired), 410),
            (Decision::MethodNotAllowed, 405),
            (Decision::UriTooLong, 414),
        ] {
            let resp = respond(decision);
            assert_eq!(resp.status(), status);
            assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        }
        for html in [
            LANDING,
            NOT_FOUND,
            GONE,
            EXPIRED,
            NOT_ALLOWED,
            TOO_LONG,
            BROKEN,
        ] {
            assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
            assert!(html.contains("<meta name=\"viewport\""));
            assert!(html.ends_with("</html>\n"));
        }
    }
}
