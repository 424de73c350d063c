//! Renders a gallery into the self-contained link-in-bio page the proxies serve at `/@handle`.
//!
//! The whole page is built here, at publish time, so the proxy only serves bytes. Every piece of
//! user text is HTML-escaped (attributes with the attribute escaper); URLs were validated as
//! http(s) when stored; custom CSS cannot contain `<`, so it cannot close its `<style>`; and the
//! proxy serves the page under [`sling_shared::link::BIO_PAGE_CSP`], which runs no script at
//! all. Embeds become iframes only of the two players that policy allows.

use std::fmt::Write;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::db::galleries::{GalleryRow, ItemRow};

/// The themes a gallery can have; `custom` is `default` plus the gallery's own CSS.
pub const THEMES: &[&str] = &["default", "minimal", "gradient", "dark", "neon", "custom"];
/// The kinds of item.
pub const ITEM_KINDS: &[&str] = &["link", "header", "divider", "embed", "image"];

const BASE_CSS: &str = "*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;\
background:var(--bg);color:var(--fg);min-height:100vh}\
main{max-width:640px;margin:0 auto;padding:48px 20px;text-align:center}\
.avatar{width:96px;height:96px;border-radius:50%;object-fit:cover}\
h1{font-size:1.5rem;margin:12px 0 4px}.bio{margin:0 0 24px;opacity:.85;white-space:pre-line}\
ul{list-style:none;margin:0;padding:0}li{margin:12px 0}\
a.link{display:block;padding:14px 18px;border-radius:var(--radius);background:var(--card);\
color:var(--card-fg);text-decoration:none;font-weight:600;border:var(--border)}\
a.link:hover{filter:brightness(1.08)}\
h2{font-size:1.1rem;margin:28px 0 4px}hr{border:0;border-top:1px solid currentColor;opacity:.3}\
.embed{position:relative;padding-top:56.25%}\
.embed iframe{position:absolute;inset:0;width:100%;height:100%;border:0;border-radius:var(--radius)}\
.image img{max-width:100%;border-radius:var(--radius);display:block;margin:0 auto}\
footer{margin-top:40px;font-size:.8rem;opacity:.6}";

fn theme_css(theme: &str) -> &'static str {
    match theme {
        "minimal" => {
            ":root{--bg:#fff;--fg:#111;--card:#fff;--card-fg:#111;--radius:4px;\
             --border:1px solid #111}"
        }
        "gradient" => {
            ":root{--bg:linear-gradient(160deg,#6a11cb 0%,#d6246e 100%);--fg:#fff;\
             --card:rgba(255,255,255,.18);--card-fg:#fff;--radius:14px;--border:0}\
             body{background-attachment:fixed}"
        }
        "dark" => {
            ":root{--bg:#0f1115;--fg:#e8e8ea;--card:#1d2027;--card-fg:#e8e8ea;\
             --radius:12px;--border:1px solid #2c303a}"
        }
        "neon" => {
            ":root{--bg:#05010f;--fg:#f5f5ff;--card:#05010f;--card-fg:#39ff14;\
             --radius:10px;--border:2px solid #39ff14}\
             a.link{box-shadow:0 0 12px #39ff14}h1{text-shadow:0 0 10px #ff00e6}"
        }
        // default and custom
        _ => {
            ":root{--bg:#f4f5f7;--fg:#1b1d21;--card:#1b1d21;--card-fg:#fff;\
             --radius:12px;--border:0}"
        }
    }
}

/// The player URL an embed item shows, for a YouTube or Vimeo page URL; `None` for anything
/// else (the API refuses those).
pub fn embed_src(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches("www.")
        .trim_start_matches("m.");
    let segments: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let youtube_id = match host {
        "youtube.com" | "youtube-nocookie.com" => match segments.as_slice() {
            ["watch"] => url
                .query_pairs()
                .find(|(k, _)| k == "v")
                .map(|(_, v)| v.into_owned()),
            ["embed" | "shorts" | "live", id] => Some((*id).to_owned()),
            _ => None,
        },
        "youtu.be" => segments.first().map(|s| (*s).to_owned()),
        "vimeo.com" | "player.vimeo.com" => {
            let id = segments
                .iter()
                .rev()
                .find(|s| s.bytes().all(|b| b.is_ascii_digit()))?;
            return (id.len() <= 12).then(|| format!("https://player.vimeo.com/video/{id}"));
        }
        _ => None,
    }?;
    let valid = youtube_id.len() == 11
        && youtube_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| format!("https://www.youtube-nocookie.com/embed/{youtube_id}"))
}

/// The page for `gallery` with its active `items` (in order).
pub fn render(gallery: &GalleryRow, items: &[ItemRow]) -> String {
    let mut css = String::from(BASE_CSS);
    css.push_str(theme_css(&gallery.theme));
    if gallery.theme == "custom"
        && let Some(custom) = &gallery.custom_css
    {
        css.push_str(custom);
    }
    let title = text(&gallery.title);
    let mut html = String::with_capacity(4096);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         <title>{title}</title>\n<meta property=\"og:title\" content=\"{}\">\n",
        attr(&gallery.title)
    );
    if let Some(bio) = &gallery.bio {
        let _ = writeln!(
            html,
            "<meta name=\"description\" content=\"{0}\">\n\
             <meta property=\"og:description\" content=\"{0}\">",
            attr(bio)
        );
    }
    let _ = write!(
        html,
        "<style>{css}</style>\n</head>\n<body class=\"theme-{}\">\n<main>\n<header>\n",
        attr(&gallery.theme)
    );
    if let Some(avatar) = &gallery.avatar_url {
        let _ = writeln!(
            html,
            "<img class=\"avatar\" src=\"{}\" alt=\"\">",
            attr(avatar)
        );
    }
    let _ = writeln!(html, "<h1>{title}</h1>");
    if let Some(bio) = &gallery.bio {
        let _ = writeln!(html, "<p class=\"bio\">{}</p>", text(bio));
    }
    html.push_str("</header>\n<ul>\n");
    for item in items.iter().filter(|i| i.active) {
        render_item(&mut html, item);
    }
    html.push_str("</ul>\n<footer>sling</footer>\n</main>\n</body>\n</html>\n");
    html
}

fn render_item(html: &mut String, item: &ItemRow) {
    let title = item.title.as_deref().unwrap_or("");
    let url = item.url.as_deref().unwrap_or("");
    let _ = match item.kind.as_str() {
        "link" => writeln!(
            html,
            "<li><a class=\"link\" href=\"{}\" rel=\"noopener\">{}</a></li>",
            attr(url),
            text(title)
        ),
        "header" => writeln!(html, "<li class=\"header\"><h2>{}</h2></li>", text(title)),
        "divider" => writeln!(html, "<li class=\"divider\"><hr></li>"),
        "embed" => match embed_src(url) {
            Some(src) => writeln!(
                html,
                "<li class=\"embed\"><iframe src=\"{}\" title=\"{}\" loading=\"lazy\" \
                 allow=\"encrypted-media; picture-in-picture; fullscreen\" allowfullscreen \
                 referrerpolicy=\"strict-origin-when-cross-origin\"></iframe></li>",
                attr(&src),
                attr(if title.is_empty() { "Video" } else { title })
            ),
            None => Ok(()),
        },
        "image" => {
            let img = format!(
                "<img src=\"{}\" alt=\"{}\" loading=\"lazy\">",
                attr(item.image_url.as_deref().unwrap_or("")),
                attr(title)
            );
            if url.is_empty() {
                writeln!(html, "<li class=\"image\">{img}</li>")
            } else {
                writeln!(
                    html,
                    "<li class=\"image\"><a href=\"{}\" rel=\"noopener\">{img}</a></li>",
                    attr(url)
                )
            }
        }
        _ => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_only_known_players() {
        let yt = Some("https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ".to_owned());
        assert_eq!(
            embed_src("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=3"),
            yt
        );
        assert_eq!(embed_src("https://youtu.be/dQw4w9WgXcQ"), yt);
        assert_eq!(embed_src("https://m.youtube.com/shorts/dQw4w9WgXcQ"), yt);
        assert_eq!(
            embed_src("https://vimeo.com/76979871"),
            Some("https://player.vimeo.com/video/76979871".to_owned())
        );
        assert_eq!(embed_src("https://youtu.be/short"), None);
        assert_eq!(
            embed_src("https://www.youtube.com/watch?v=\"><script>x"),
            None
        );
        assert_eq!(embed_src("https://evil.example/watch?v=dQw4w9WgXcQ"), None);
        assert_eq!(embed_src("https://vimeo.com/about"), None);
    }
}
