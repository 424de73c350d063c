//! Turns a [`Decision`] into an HTTP response: redirects with their headers, and the few pages the
//! proxy serves itself. Pages are small, self-contained HTML (no external assets, no scripts) built
//! at compile time, so answering one never allocates for the body. This is also the one place hot
//! path errors become responses ([`ProxyError`]).
//!
//! Every page exists in English and Chinese; [`negotiate`] picks one from `Accept-Language`
//! (q-values honoured, English when neither is acceptable or the header is absent). Pages carry
//! `lang`, a viewport meta, labelled form controls and colours above WCAG AA contrast.

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION,
    REFERRER_POLICY, RETRY_AFTER, SET_COOKIE, X_CONTENT_TYPE_OPTIONS,
};
use http::{Response, StatusCode};
use http_body_util::Full;

use sling_shared::link::{BIO_PAGE_CSP, PageText};

use crate::router::{BioPageRef, Decision, GoneReason};

pub type Body = Full<Bytes>;

/// The pages' shared inline style (a macro so compile-time pages can `concat!` it).
macro_rules! page_style {
    () => {
        concat!(
            "body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;",
            "font-family:system-ui,-apple-system,\"Segoe UI\",Roboto,\"PingFang SC\",\"Noto Sans CJK SC\",sans-serif;",
            "background:#f6f7f9;color:#1f2328;line-height:1.5}\n",
            "main{max-width:32rem;margin:1.5rem;padding:2rem;background:#fff;border-radius:12px;",
            "box-shadow:0 1px 3px rgba(0,0,0,.12)}\n",
            "h1{font-size:1.5rem;margin:0 0 .5rem}p{margin:0 0 1rem;color:#57606a}\n",
            "label{display:block;font-weight:600;margin:0 0 .25rem}\n",
            "input{box-sizing:border-box;width:100%;font-size:1rem;padding:.6rem;border:1px solid #6e7781;",
            "border-radius:6px;margin:0 0 1rem;background:inherit;color:inherit}\n",
            "button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#0b5cad;color:#fff}\n",
            "input:focus,button:focus{outline:3px solid #0b5cad;outline-offset:2px}\n",
            ".err{color:#b3261e;font-weight:600}\n",
            "@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}",
            "main{background:#161b22;box-shadow:none}p{color:#9da7b3}.err{color:#ff8a80}}\n",
        )
    };
}

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
/// A republished or unpublished bio page must show at once (the owner checks it right after
/// publishing), so browsers revalidate every time; the page is small and served from memory.
const BIO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
/// Checked at compile time, so it cannot fail on a request.
const BIO_CSP: HeaderValue = HeaderValue::from_static(BIO_PAGE_CSP);
/// The password page posts to its own URL. Browsers apply `form-action` to every redirect that
/// follows a submission too (303 back to the link, then the link's 3xx to its destination), so
/// http(s) destinations must be allowed; the page has no script that could abuse it.
const FORM_CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self' http: https:; frame-ancestors 'none'",
);

/// The language a page is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

/// Picks English or Chinese from an `Accept-Language` value: the acceptable (q > 0) range with the
/// highest q among `en*`, `zh*` and `*` (`*` means English); ties go to the earlier range.
pub fn negotiate(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else {
        return Lang::En;
    };
    let mut best: Option<(u16, Lang)> = None;
    for item in header.split(',').take(32) {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or("").trim();
        let mut q = 1000u16;
        for p in parts {
            if let Some(v) = p
                .trim()
                .strip_prefix("q=")
                .or_else(|| p.trim().strip_prefix("Q="))
            {
                q = parse_q(v.trim()).unwrap_or(0);
            }
        }
        let primary = range.split('-').next().unwrap_or("");
        let lang = if primary.eq_ignore_ascii_case("zh") {
            Lang::Zh
        } else if primary.eq_ignore_ascii_case("en") || range == "*" {
            Lang::En
        } else {
            continue;
        };
        if q > 0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map_or(Lang::En, |(_, lang)| lang)
}

/// `0.8` → 800; `1`, `1.0` → 1000; anything malformed → `None`.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut milli = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        milli += u16::from(b - b'0') * [100, 10, 1][i];
    }
    if whole == 1000 && milli > 0 {
        return None;
    }
    Some(whole + milli)
}

/// Errors on the request path. Each maps to one response, here, and none of them is a panic.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// A stored destination cannot be sent as a header (control characters): a data bug upstream,
    /// answered as a gateway error rather than a broken redirect.
    #[error("stored redirect target is not a valid Location header")]
    InvalidLocation,
}

/// Builds the response for `decision`, pages in English.
pub fn respond(decision: Decision<'_>) -> Response<Body> {
    respond_in(decision, Lang::En)
}

/// Builds the response for `decision`, pages in `lang`.
pub fn respond_in(decision: Decision<'_>, lang: Lang) -> Response<Body> {
    let pages = pages(lang);
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
        Decision::Landing(Some(text)) => custom_page(StatusCode::OK, lang, &text, LANDING_CACHE),
        Decision::NotFound(Some(text)) => custom_page(StatusCode::NOT_FOUND, lang, &text, NO_STORE),
        Decision::Gone(_, Some(text)) => custom_page(StatusCode::GONE, lang, &text, NO_STORE),
        Decision::Landing(None) => page(StatusCode::OK, pages.landing, LANDING_CACHE),
        Decision::NotFound(None) => page(StatusCode::NOT_FOUND, pages.not_found, NO_STORE),
        Decision::Gone(GoneReason::Expired, None) => {
            page(StatusCode::GONE, pages.expired, NO_STORE)
        }
        Decision::Gone(GoneReason::ClickLimit, None) => {
            page(StatusCode::GONE, pages.limit, NO_STORE)
        }
        Decision::Gone(GoneReason::Disabled | GoneReason::Archived, None) => {
            page(StatusCode::GONE, pages.gone, NO_STORE)
        }
        Decision::MethodNotAllowed => {
            let mut resp = page(StatusCode::METHOD_NOT_ALLOWED, pages.not_allowed, NO_STORE);
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            resp
        }
        Decision::UriTooLong => page(StatusCode::URI_TOO_LONG, pages.too_long, NO_STORE),
        // The handler answers `Unlock` itself; reaching here means it was not verified: show the form.
        Decision::Locked(_) | Decision::Unlock(_) => password_form(lang, false),
        // The owner wrote it in one language; `lang` has no say.
        Decision::BioPage(page) => bio_page(page),
    }
}

/// A published bio page (200): the control plane's HTML as it is, under its own CSP. HEAD gets
/// the same headers; the handler drops the body, as for every page.
fn bio_page(page: BioPageRef<'_>) -> Response<Body> {
    let body = match page {
        // The mapping may be unmapped before the body is written: copy it.
        BioPageRef::Archived(p) => Bytes::copy_from_slice(p.html.as_bytes()),
        BioPageRef::Overlay(p) => Bytes::from_owner(SharedHtml(p)),
    };
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HTML);
    h.insert(CACHE_CONTROL, BIO_CACHE);
    h.insert(CONTENT_SECURITY_POLICY, BIO_CSP);
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    resp
}

/// An overlay page's HTML as a body without copying it.
struct SharedHtml(std::sync::Arc<sling_shared::link::BioPage>);

impl AsRef<[u8]> for SharedHtml {
    fn as_ref(&self) -> &[u8] {
        self.0.html.as_bytes()
    }
}

/// The password form (401), with an error line after a wrong password.
pub fn password_form(lang: Lang, wrong: bool) -> Response<Body> {
    let p = pages(lang);
    let mut resp = page(
        StatusCode::UNAUTHORIZED,
        if wrong { p.password_wrong } else { p.password },
        NO_STORE,
    );
    resp.headers_mut().insert(CONTENT_SECURITY_POLICY, FORM_CSP);
    resp
}

/// Too many wrong passwords from this client for this link (429, `Retry-After` in seconds).
pub fn too_many_attempts(lang: Lang, retry_after_s: u64) -> Response<Body> {
    let mut resp = page(
        StatusCode::TOO_MANY_REQUESTS,
        pages(lang).throttled,
        NO_STORE,
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
    resp
}

/// The click limit was reached between the router's check and this proxy's reservation.
pub fn click_limit_reached(lang: Lang) -> Response<Body> {
    page(StatusCode::GONE, pages(lang).limit, NO_STORE)
}

/// The correct password was posted: back to the same URL (GET), which now redirects, with the
/// access cookie. 303 so the browser does not repost the form.
pub fn unlocked(location: &str, cookie: &str) -> Response<Body> {
    let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(location),
        HeaderValue::from_str(cookie),
    ) else {
        return error(ProxyError::InvalidLocation);
    };
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    let h = resp.headers_mut();
    h.insert(LOCATION, location);
    h.insert(SET_COOKIE, cookie);
    h.insert(CACHE_CONTROL, NO_STORE);
    resp
}

/// A request body that is not a form this proxy accepts (too large, not a form).
pub fn bad_form(lang: Lang) -> Response<Body> {
    let mut resp = password_form(lang, true);
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp
}

/// The response for a request-path error.
pub fn error(err: ProxyError) -> Response<Body> {
    match err {
        ProxyError::InvalidLocation => page(StatusCode::BAD_GATEWAY, BROKEN, NO_STORE),
    }
}

/// A page with a domain's own wording (plain text, escaped), in the built-in template. `lang` is
/// the visitor's, for the `lang` attribute only: the owner wrote the text in one language.
fn custom_page(
    status: StatusCode,
    lang: Lang,
    text: &PageText,
    cache: HeaderValue,
) -> Response<Body> {
    let (title, message) = (
        html_escape::encode_quoted_attribute(&text.title),
        html_escape::encode_quoted_attribute(&text.message),
    );
    let lang = match lang {
        Lang::En => "en",
        Lang::Zh => "zh-CN",
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title}</title>\n<style>\n{}\
         </style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n<p>{message}</p>\n</main>\n\
         </body>\n</html>\n",
        page_style!()
    );
    page_body(status, Bytes::from(html), cache)
}

/// `s` safe as HTML text and attribute content.
fn page(status: StatusCode, html: &'static str, cache: HeaderValue) -> Response<Body> {
    page_body(status, Bytes::from_static(html.as_bytes()), cache)
}

fn page_body(status: StatusCode, html: Bytes, cache: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(Body::new(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HTML);
    h.insert(CACHE_CONTROL, cache);
    h.insert(CONTENT_SECURITY_POLICY, PAGE_CSP);
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// The pages of one language.
struct Pages {
    landing: &'static str,
    not_found: &'static str,
    gone: &'static str,
    expired: &'static str,
    limit: &'static str,
    not_allowed: &'static str,
    too_long: &'static str,
    password: &'static str,
    password_wrong: &'static str,
    throttled: &'static str,
}

fn pages(lang: Lang) -> &'static Pages {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

/// One page template, filled at compile time. `$body` is trusted HTML after the heading.
macro_rules! page_html {
    ($lang:literal, $title:literal, $heading:literal, $body:expr) => {
        concat!(
            "<!doctype html>\n<html lang=\"",
            $lang,
            "\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<meta name=\"robots\" content=\"noindex\">\n",
            "<title>",
            $title,
            "</title>\n<style>\n",
            page_style!(),
            "</style>\n</head>\n<body>\n<main>\n<h1>",
            $heading,
            "</h1>\n",
            $body,
            "</main>\n</body>\n</html>\n"
        )
    };
}

macro_rules! text_page {
    ($lang:literal, $title:literal, $heading:literal, $text:literal) => {
        page_html!($lang, $title, $heading, concat!("<p>", $text, "</p>\n"))
    };
}

/// The password form: no `action`, so it posts to the page's own URL (query included).
macro_rules! password_page {
    ($lang:literal, $title:literal, $text:literal, $error:literal, $label:literal, $button:literal) => {
        page_html!(
            $lang,
            $title,
            $title,
            concat!(
                "<p>",
                $text,
                "</p>\n",
                $error,
                "<form method=\"post\">\n<label for=\"password\">",
                $label,
                "</label>\n<input id=\"password\" name=\"password\" type=\"password\" ",
                "autocomplete=\"current-password\" required autofocus>\n<button type=\"submit\">",
                $button,
                "</button>\n</form>\n"
            )
        )
    };
}

static EN: Pages = Pages {
    landing: text_page!(
        "en",
        "Short links",
        "Short links live here",
        "This domain serves short links. Open a full short link to be taken to its destination."
    ),
    not_found: text_page!(
        "en",
        "Link not found",
        "Link not found",
        "There is no short link at this address. Check it for typos, or ask whoever shared it for a new one."
    ),
    gone: text_page!(
        "en",
        "Link unavailable",
        "This link is no longer available",
        "The owner of this short link has disabled or archived it."
    ),
    expired: text_page!(
        "en",
        "Link expired",
        "This link has expired",
        "The short link you followed had an expiry date, and it has passed."
    ),
    limit: text_page!(
        "en",
        "Link unavailable",
        "This link is no longer available",
        "This short link could be followed a limited number of times, and that limit has been reached."
    ),
    not_allowed: text_page!(
        "en",
        "Method not allowed",
        "Method not allowed",
        "Short links answer GET and HEAD requests only."
    ),
    too_long: text_page!(
        "en",
        "Address too long",
        "Address too long",
        "This address is longer than any short link can be."
    ),
    password: password_page!(
        "en",
        "Password required",
        "This short link is protected. Enter its password to continue.",
        "",
        "Password",
        "Continue"
    ),
    password_wrong: password_page!(
        "en",
        "Password required",
        "This short link is protected. Enter its password to continue.",
        "<p class=\"err\" role=\"alert\">That password is not correct. Try again.</p>\n",
        "Password",
        "Continue"
    ),
    throttled: text_page!(
        "en",
        "Too many attempts",
        "Too many attempts",
        "Too many wrong passwords were entered for this link. Wait a little, then try again."
    ),
};

static ZH: Pages = Pages {
    landing: text_page!(
        "zh-CN",
        "短链接",
        "这里是短链接服务",
        "此域名提供短链接服务。请打开完整的短链接以前往目标地址。"
    ),
    not_found: text_page!(
        "zh-CN",
        "链接不存在",
        "链接不存在",
        "此地址没有对应的短链接。请检查是否有拼写错误，或向分享者索取新的链接。"
    ),
    gone: text_page!(
        "zh-CN",
        "链接不可用",
        "此链接已不可用",
        "此短链接的所有者已将其停用或归档。"
    ),
    expired: text_page!(
        "zh-CN",
        "链接已过期",
        "此链接已过期",
        "您打开的短链接设有有效期，现已过期。"
    ),
    limit: text_page!(
        "zh-CN",
        "链接不可用",
        "此链接已不可用",
        "此短链接的访问次数有限，现已达到上限。"
    ),
    not_allowed: text_page!(
        "zh-CN",
        "不支持的请求方法",
        "不支持的请求方法",
        "短链接只响应 GET 和 HEAD 请求。"
    ),
    too_long: text_page!(
        "zh-CN",
        "地址过长",
        "地址过长",
        "此地址超出了短链接可能的最大长度。"
    ),
    password: password_page!(
        "zh-CN",
        "需要密码",
        "此短链接受密码保护。请输入密码以继续。",
        "",
        "密码",
        "继续"
    ),
    password_wrong: password_page!(
        "zh-CN",
        "需要密码",
        "此短链接受密码保护。请输入密码以继续。",
        "<p class=\"err\" role=\"alert\">密码不正确，请重试。</p>\n",
        "密码",
        "继续"
    ),
    throttled: text_page!(
        "zh-CN",
        "尝试次数过多",
        "尝试次数过多",
        "此链接的错误密码尝试次数过多。请稍候再试。"
    ),
};

const BROKEN: &str = text_page!(
    "en",
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
            click_limit: None,
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
            click_limit: None,
        }));
        assert_eq!(resp.status(), 502);
    }

    #[test]
    fn pages_are_complete_html() {
        for (decision, status) in [
            (Decision::Landing(None), 200),
            (Decision::NotFound(None), 404),
            (Decision::Gone(GoneReason::Archived, None), 410),
            (Decision::Gone(GoneReason::Expired, None), 410),
            (Decision::MethodNotAllowed, 405),
            (Decision::UriTooLong, 414),
        ] {
            let resp = respond(decision);
            assert_eq!(resp.status(), status);
            assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        }
        for (p, lang) in [(&EN, "en"), (&ZH, "zh-CN")] {
            for html in [
                p.landing,
                p.not_found,
                p.gone,
                p.expired,
                p.limit,
                p.not_allowed,
                p.too_long,
                p.password,
                p.password_wrong,
                p.throttled,
            ] {
                assert!(html.starts_with(&format!("<!doctype html>\n<html lang=\"{lang}\">")));
                assert!(html.contains("<meta name=\"viewport\""));
                assert!(html.ends_with("</html>\n"));
                assert!(!html.contains("http"), "no external assets");
            }
        }
    }

    #[test]
    fn a_domains_own_page_is_escaped_into_the_template() {
        let text = PageText {
            title: "Acme <b>links</b>".into(),
            message: "Ask \"support\" & co <script>alert(1)</script>".into(),
        };
        let resp = respond_in(
            Decision::Gone(GoneReason::Disabled, Some(Box::new(text))),
            Lang::Zh,
        );
        assert_eq!(resp.status(), 410);
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        assert!(
            resp.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'")
        );
        let body = resp.into_body();
        let html = futures_body(body);
        assert!(
            html.starts_with("<!doctype html>\n<html lang=\"zh-CN\">"),
            "{html}"
        );
        assert!(
            html.contains("<title>Acme &lt;b&gt;links&lt;/b&gt;</title>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<p>Ask &quot;support&quot; &amp; co &lt;script&gt;alert(1)&lt;/script&gt;</p>"
            ),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn a_bio_page_is_served_as_published_under_its_own_policy() {
        let html = "<!doctype html><title>Jane</title><p>Links <b>here</b></p>";
        let page = std::sync::Arc::new(sling_shared::link::BioPage {
            id: "gal_1".into(),
            html: html.into(),
        });
        // The visitor's language changes nothing.
        let resp = respond_in(Decision::BioPage(BioPageRef::Overlay(page)), Lang::Zh);
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[CONTENT_SECURITY_POLICY], BIO_PAGE_CSP);
        assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[REFERRER_POLICY], "strict-origin-when-cross-origin");
        assert_eq!(h[CACHE_CONTROL], "no-cache");
        assert!(h.get(LOCATION).is_none());
        assert_eq!(futures_body(resp.into_body()), html);
    }

    /// The whole body of a page (they are single `Full` frames).
    fn futures_body(body: Body) -> String {
        use http_body_util::BodyExt;
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn accept_language_picks_english_or_chinese() {
        for (header, lang) in [
            (None, Lang::En),
            (Some(""), Lang::En),
            (Some("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh),
            (Some("en-US,en;q=0.9,zh;q=0.8"), Lang::En),
            (Some("fr-FR, zh-TW;q=0.5"), Lang::Zh),
            (Some("fr-FR, de;q=0.5"), Lang::En),
            (Some("en;q=0.2, zh;q=0.7"), Lang::Zh),
            (Some("zh;q=0, en;q=0.1"), Lang::En),
            (Some("zh;q=0"), Lang::En),
            (Some("ZH-hant;Q=1.0"), Lang::Zh),
            (Some("zh;q=abc, en;q=0.5"), Lang::En),
            (Some("*;q=0.5, zh;q=0.4"), Lang::En),
        ] {
            assert_eq!(negotiate(header), lang, "{header:?}");
        }
    }

    #[test]
    fn password_pages_post_to_themselves() {
        let resp = password_form(Lang::Zh, true);
        assert_eq!(resp.status(), 401);
        assert!(
            resp.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("form-action 'self'")
        );
        assert!(ZH.password_wrong.contains("role=\"alert\""));
        assert!(EN.password.contains("<label for=\"password\">"));
        let resp = too_many_attempts(Lang::En, 12);
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[RETRY_AFTER], "12");
    }
}
