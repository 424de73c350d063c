//! Table-driven tests of the routing rules: each row is a request and the decision it must get,
//! against an in-memory snapshot (read through the same mapped-snapshot type the server uses) and
//! an overlay fed with change-feed records.
#![allow(clippy::unwrap_used)]

use http::Method;
use sling_proxy::overlay::Overlay;
use sling_proxy::router::{BioPageRef, Decision, Facts, View, route, route_with};
use sling_proxy::snapshot::LoadedSnapshot;
use sling_shared::feed::{Change, ChangeOp};
use sling_shared::link::{BioPage, DomainPages, DomainRecord, LinkRecord, PageText, Param};
use sling_shared::snapshot::{SnapshotBody, encode};

const NOW: i64 = 1_700_000_000_000;
const SNAPSHOT_SEQ: u64 = 10;

fn link(dest: &str, edit: impl FnOnce(&mut LinkRecord)) -> LinkRecord {
    let mut l = LinkRecord::plain(format!("id-{dest}"), dest);
    edit(&mut l);
    l
}

fn snapshot() -> LoadedSnapshot {
    let mut body = SnapshotBody::new("sho.rt");
    let mut add = |host: &str, slug: &str, l: LinkRecord| body.insert_link(host, slug, l);
    add("sho.rt", "plain", link("https://example.com/a", |_| {}));
    add(
        "sho.rt",
        "perm",
        link("https://example.com/301", |l| l.redirect_type = 301),
    );
    add(
        "sho.rt",
        "t307",
        link("https://example.com/307", |l| l.redirect_type = 307),
    );
    add(
        "sho.rt",
        "p308",
        link("https://example.com/308", |l| l.redirect_type = 308),
    );
    add(
        "sho.rt",
        "odd",
        link("https://example.com/odd", |l| l.redirect_type = 399),
    );
    add(
        "sho.rt",
        "off",
        link("https://example.com/off", |l| l.active = false),
    );
    add(
        "sho.rt",
        "arch",
        link("https://example.com/arch", |l| l.archived = true),
    );
    add(
        "sho.rt",
        "exp",
        link("https://example.com/exp", |l| {
            l.expires_at_ms = Some(NOW - 1)
        }),
    );
    add(
        "sho.rt",
        "exactly",
        link("https://example.com/exactly", |l| {
            l.expires_at_ms = Some(NOW)
        }),
    );
    add(
        "sho.rt",
        "expurl",
        link("https://example.com/expurl", |l| {
            l.expires_at_ms = Some(NOW - 1);
            l.expired_url = Some("https://example.com/expired".into());
        }),
    );
    add(
        "sho.rt",
        "future",
        link("https://example.com/future", |l| {
            l.expires_at_ms = Some(NOW + 1)
        }),
    );
    add(
        "sho.rt",
        "utm",
        link("https://example.com/p?utm_source=old&x=1#frag", |l| {
            l.utm = vec![
                Param {
                    name: "utm_source".into(),
                    value: "sling".into(),
                },
                Param {
                    name: "utm_medium".into(),
                    value: "email me&you".into(),
                },
            ]
        }),
    );
    add(
        "sho.rt",
        "noq",
        link("https://example.com/n", |l| l.forward_query = false),
    );
    add("sho.rt", "withq", link("https://example.com/q?a=1", |_| {}));
    // Bio pages share no namespace with links: `jane` is both, `bob` only a link.
    add(
        "sho.rt",
        "jane",
        link("https://example.com/jane-link", |_| {}),
    );
    add(
        "sho.rt",
        "bob",
        link("https://example.com/bob-link", |_| {}),
    );
    let default = body.domains.get_mut("sho.rt").unwrap();
    default
        .bio_pages
        .insert("jane".into(), bio("jane", "snapshot"));
    default
        .bio_pages
        .insert("tomb".into(), bio("tomb", "snapshot"));
    default
        .bio_pages
        .insert("kept".into(), bio("kept", "snapshot"));
    body.domains.insert(
        "go.example".into(),
        DomainRecord {
            id: "d-go".into(),
            host: "go.example".into(),
            root_redirect: Some("https://example.com/home".into()),
            not_found_redirect: Some("https://example.com/nf".into()),
            pages: Default::default(),
            links: [("go".to_string(), link("https://example.com/go", |_| {}))].into(),
            bio_pages: [("acme".to_string(), bio("acme", "snapshot"))].into(),
        },
    );
    let bytes = encode(&body, SNAPSHOT_SEQ, NOW - 60_000).unwrap();
    LoadedSnapshot::from_bytes(&bytes).unwrap()
}

/// A page whose HTML names its handle and where it came from, so a row shows which copy answered.
fn bio(handle: &str, from: &str) -> BioPage {
    BioPage {
        id: format!("gal_{handle}"),
        html: format!("<p>@{handle} {from}</p>"),
    }
}

/// Renders a decision compactly: `302 https://…`, `landing`, `404`, `410 Expired`, `405`, `414`,
/// `bio <html>`.
fn show(d: &Decision<'_>) -> String {
    match d {
        Decision::Redirect(r) => format!("{} {}", r.status.as_u16(), r.location),
        Decision::Landing(_) => "landing".into(),
        Decision::NotFound(_) => "404".into(),
        Decision::Gone(reason, _) => format!("410 {reason:?}"),
        Decision::MethodNotAllowed => "405".into(),
        Decision::UriTooLong => "414".into(),
        Decision::Locked(l) => format!("401 {}", l.link_id),
        Decision::Unlock(l) => format!("unlock {}", l.link_id),
        Decision::BioPage(p) => format!("bio {}", p.html()),
    }
}

fn decide(view: &View<'_>, method: &str, host: &str, target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    show(&route(host, path, query, &method, view, NOW))
}

fn check(view: &View<'_>, cases: &[(&str, &str, &str, &str)]) {
    let mut failures = Vec::new();
    for &(method, host, target, want) in cases {
        let got = decide(view, method, host, target);
        if got != want {
            failures.push(format!(
                "{method} {host}{target}\n   want {want}\n    got {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn snapshot_rules() {
    let snap = snapshot();
    let overlay = Overlay::new();
    let view = View::new(Some(&snap), &overlay, "fallback.invalid");
    let long = format!("/{}", "a".repeat(9000));
    check(
        &view,
        &[
            // Hosts: case, port, trailing dot, unknown and missing hosts fall back to the default.
            ("GET", "sho.rt", "/plain", "302 https://example.com/a"),
            ("GET", "SHO.RT:8080", "/plain", "302 https://example.com/a"),
            ("GET", "sho.rt.", "/plain", "302 https://example.com/a"),
            (
                "GET",
                "unknown.example",
                "/plain",
                "302 https://example.com/a",
            ),
            (
                "GET",
                "127.0.0.1:8080",
                "/plain",
                "302 https://example.com/a",
            ),
            ("GET", "", "/plain", "302 https://example.com/a"),
            ("GET", "Go.Example:443", "/go", "302 https://example.com/go"),
            // Domains are separate namespaces.
            ("GET", "sho.rt", "/go", "404"),
            ("GET", "go.example", "/plain", "302 https://example.com/nf"),
            // Root: landing page, or the domain's root redirect.
            ("GET", "sho.rt", "/", "landing"),
            ("GET", "unknown.example", "/", "landing"),
            ("GET", "go.example", "/", "302 https://example.com/home"),
            // Not found: 404 page, or the domain's not-found redirect (without the query).
            ("GET", "sho.rt", "/nope", "404"),
            ("GET", "sho.rt", "/a/b", "404"),
            // An encoded unreserved character is the character (RFC 3986 §6.2.2.2), as nginx
            // decodes it too; an encoded slash or space is no slug.
            ("GET", "sho.rt", "/pl%61in", "302 https://example.com/a"),
            ("GET", "sho.rt", "/pl%2Fain", "404"),
            ("GET", "sho.rt", "/pl%20ain", "404"),
            ("GET", "sho.rt", "/Plain", "404"),
            (
                "GET",
                "go.example",
                "/nope?x=1",
                "302 https://example.com/nf",
            ),
            // Trailing slash and empty query are the same link.
            ("GET", "sho.rt", "/plain/", "302 https://example.com/a"),
            ("GET", "sho.rt", "/plain?", "302 https://example.com/a"),
            // Disabled, archived, expired.
            ("GET", "sho.rt", "/off", "410 Disabled"),
            ("GET", "sho.rt", "/arch", "410 Archived"),
            ("GET", "sho.rt", "/exp", "410 Expired"),
            ("GET", "sho.rt", "/exactly", "410 Expired"),
            (
                "GET",
                "sho.rt",
                "/expurl?x=1",
                "302 https://example.com/expired",
            ),
            ("GET", "sho.rt", "/future", "302 https://example.com/future"),
            // Redirect types; anything unexpected is the default 302.
            ("GET", "sho.rt", "/perm", "301 https://example.com/301"),
            ("GET", "sho.rt", "/t307", "307 https://example.com/307"),
            ("GET", "sho.rt", "/p308", "308 https://example.com/308"),
            ("GET", "sho.rt", "/odd", "302 https://example.com/odd"),
            // UTM parameters replace same-named destination parameters; fragment stays last.
            (
                "GET",
                "sho.rt",
                "/utm",
                "302 https://example.com/p?x=1&utm_source=sling&utm_medium=email+me%26you#frag",
            ),
            // The request's query is forwarded and wins over destination and UTM parameters.
            (
                "GET",
                "sho.rt",
                "/plain?x=1&y",
                "302 https://example.com/a?x=1&y",
            ),
            (
                "GET",
                "sho.rt",
                "/withq?b=2",
                "302 https://example.com/q?a=1&b=2",
            ),
            // sling's QR marker is not passed on; a destination's own qr=1 stays.
            ("GET", "sho.rt", "/plain?qr=1", "302 https://example.com/a"),
            (
                "GET",
                "sho.rt",
                "/plain?qr=1&x=2",
                "302 https://example.com/a?x=2",
            ),
            (
                "GET",
                "sho.rt",
                "/plain?qr=10",
                "302 https://example.com/a?qr=10",
            ),
            (
                "GET",
                "sho.rt",
                "/withq?qr=1",
                "302 https://example.com/q?a=1",
            ),
            (
                "GET",
                "sho.rt",
                "/withq?a=9&a=8",
                "302 https://example.com/q?a=9&a=8",
            ),
            (
                "GET",
                "sho.rt",
                "/withq?%61=9",
                "302 https://example.com/q?%61=9",
            ),
            (
                "GET",
                "sho.rt",
                "/utm?utm_source=news",
                "302 https://example.com/p?x=1&utm_medium=email+me%26you&utm_source=news#frag",
            ),
            ("GET", "sho.rt", "/noq?x=1", "302 https://example.com/n"),
            // HEAD is answered like GET; other methods are refused.
            ("HEAD", "sho.rt", "/plain", "302 https://example.com/a"),
            ("HEAD", "sho.rt", "/nope", "404"),
            ("POST", "sho.rt", "/plain", "405"),
            ("DELETE", "sho.rt", "/", "405"),
            ("OPTIONS", "sho.rt", "/plain", "405"),
            ("GET", "sho.rt", &long, "414"),
        ],
    );
}

#[test]
fn head_is_not_a_click_and_plain_links_borrow() {
    let snap = snapshot();
    let overlay = Overlay::new();
    let view = View::new(Some(&snap), &overlay, "sho.rt");
    let get = route("sho.rt", "/plain", None, &Method::GET, &view, NOW);
    let head = route("sho.rt", "/plain", None, &Method::HEAD, &view, NOW);
    match (get, head) {
        (Decision::Redirect(get), Decision::Redirect(head)) => {
            assert!(get.count_click && !head.count_click);
            assert_eq!(get.link_id.as_deref(), Some("id-https://example.com/a"));
            // The hot path hands out the mapped destination itself.
            assert!(matches!(get.location, std::borrow::Cow::Borrowed(_)));
        }
        other => panic!("{other:?}"),
    }
}

fn change(seq: u64, op: ChangeOp) -> Change {
    Change { seq, op }
}

fn upsert(seq: u64, host: &str, slug: &str, dest: &str) -> Change {
    change(
        seq,
        ChangeOp::UpsertLink {
            host: host.into(),
            slug: slug.into(),
            link: Box::new(LinkRecord::plain("o", dest)),
        },
    )
}

#[test]
fn overlay_shadows_the_snapshot() {
    let snap = snapshot();
    let overlay = Overlay::new();
    for c in [
        // Older than the snapshot: already included there, must be ignored.
        upsert(5, "sho.rt", "t307", "https://stale.example/"),
        upsert(11, "sho.rt", "plain", "https://example.com/edited"),
        change(
            12,
            ChangeOp::DeleteLink {
                host: "sho.rt".into(),
                slug: "perm".into(),
            },
        ),
        upsert(13, "SHO.RT", "fresh", "https://example.com/fresh"),
        change(
            14,
            ChangeOp::DeleteDomain {
                host: "go.example".into(),
            },
        ),
        change(
            15,
            ChangeOp::UpsertDomain {
                id: "d-new".into(),
                host: "new.example".into(),
                root_redirect: None,
                not_found_redirect: Some("https://example.com/new-nf".into()),
                pages: Default::default(),
            },
        ),
        upsert(16, "new.example", "n1", "https://example.com/n1"),
        upsert(17, "implied.example", "i1", "https://example.com/i1"),
    ] {
        overlay.apply(&c);
    }
    let view = View::new(Some(&snap), &overlay, "sho.rt");
    check(
        &view,
        &[
            ("GET", "sho.rt", "/plain", "302 https://example.com/edited"),
            ("GET", "sho.rt", "/perm", "404"),
            ("GET", "sho.rt", "/t307", "307 https://example.com/307"),
            ("GET", "sho.rt", "/fresh", "302 https://example.com/fresh"),
            ("GET", "sho.rt", "/p308", "308 https://example.com/308"),
            // A deleted domain is an unknown host again: the default domain answers.
            ("GET", "go.example", "/go", "404"),
            (
                "GET",
                "go.example",
                "/plain",
                "302 https://example.com/edited",
            ),
            ("GET", "go.example", "/", "landing"),
            ("GET", "new.example", "/n1", "302 https://example.com/n1"),
            (
                "GET",
                "new.example",
                "/n2",
                "302 https://example.com/new-nf",
            ),
            (
                "GET",
                "implied.example",
                "/i1",
                "302 https://example.com/i1",
            ),
            ("GET", "implied.example", "/plain", "404"),
        ],
    );

    // The domain comes back: its old links stay gone, new ones appear.
    overlay.apply(&change(
        18,
        ChangeOp::UpsertDomain {
            id: "d-go2".into(),
            host: "go.example".into(),
            root_redirect: None,
            not_found_redirect: None,
            pages: Default::default(),
        },
    ));
    overlay.apply(&upsert(
        19,
        "go.example",
        "again",
        "https://example.com/again",
    ));
    check(
        &view,
        &[
            ("GET", "go.example", "/go", "404"),
            (
                "GET",
                "go.example",
                "/again",
                "302 https://example.com/again",
            ),
            ("GET", "go.example", "/", "landing"),
        ],
    );

    // A newer snapshot supersedes every overlay entry at or below its sequence, even before trim.
    let newer = {
        let mut body = SnapshotBody::new("sho.rt");
        body.insert_link(
            "sho.rt",
            "plain",
            LinkRecord::plain("p", "https://example.com/v2"),
        );
        LoadedSnapshot::from_bytes(&encode(&body, 19, NOW).unwrap()).unwrap()
    };
    let view = View::new(Some(&newer), &overlay, "sho.rt");
    check(
        &view,
        &[
            ("GET", "sho.rt", "/plain", "302 https://example.com/v2"),
            ("GET", "sho.rt", "/fresh", "404"),
        ],
    );
    overlay.trim(19);
    assert!(overlay.is_empty());
}

#[test]
fn tombstone_hides_a_snapshot_link_and_no_snapshot_uses_the_fallback_host() {
    let overlay = Overlay::new();
    let view = View::new(None, &overlay, "localhost");
    check(
        &view,
        &[
            ("GET", "localhost", "/", "landing"),
            ("GET", "anything.example", "/x1", "404"),
        ],
    );
    overlay.apply(&upsert(1, "localhost", "x1", "https://example.com/x1"));
    overlay.apply(&upsert(2, "localhost", "x2", "https://example.com/x2"));
    overlay.apply(&change(
        3,
        ChangeOp::DeleteLink {
            host: "localhost".into(),
            slug: "x2".into(),
        },
    ));
    check(
        &view,
        &[
            (
                "GET",
                "anything.example:8080",
                "/x1",
                "302 https://example.com/x1",
            ),
            ("GET", "localhost", "/x2", "404"),
        ],
    );
}

#[test]
fn a_domain_change_brings_its_own_pages() {
    let snap = snapshot();
    let overlay = Overlay::new();
    let pages = DomainPages {
        landing: Some(PageText {
            title: "Acme links".into(),
            message: "Short links of Acme.".into(),
        }),
        not_found: Some(PageText {
            title: "No such Acme link".into(),
            message: "Check the address.".into(),
        }),
        gone: None,
    };
    // go.example had redirects for `/` and unknown slugs; the change drops them for pages.
    overlay.apply(&change(
        SNAPSHOT_SEQ + 1,
        ChangeOp::UpsertDomain {
            id: "d-go".into(),
            host: "go.example".into(),
            root_redirect: None,
            not_found_redirect: None,
            pages,
        },
    ));
    overlay.apply(&change(
        SNAPSHOT_SEQ + 2,
        ChangeOp::UpsertLink {
            host: "go.example".into(),
            slug: "old".into(),
            link: Box::new(link("https://example.com/old", |l| l.active = false)),
        },
    ));
    let view = View::new(Some(&snap), &overlay, "sho.rt");
    let page = |target: &str| match route("go.example", target, None, &Method::GET, &view, NOW) {
        Decision::Landing(p) | Decision::NotFound(p) | Decision::Gone(_, p) => p.map(|p| p.title),
        other => panic!("{target}: {other:?}"),
    };
    assert_eq!(page("/").as_deref(), Some("Acme links"));
    assert_eq!(page("/nope").as_deref(), Some("No such Acme link"));
    // No gone page of its own: the built-in one.
    assert_eq!(page("/old"), None);
    // Other domains keep the built-in pages.
    assert!(matches!(
        route("sho.rt", "/nope", None, &Method::GET, &view, NOW),
        Decision::NotFound(None)
    ));
}

#[test]
fn bio_pages_from_the_snapshot() {
    let snap = snapshot();
    let overlay = Overlay::new();
    let view = View::new(Some(&snap), &overlay, "sho.rt");
    const JANE: &str = "bio <p>@jane snapshot</p>";
    check(
        &view,
        &[
            ("GET", "sho.rt", "/@jane", JANE),
            ("GET", "sho.rt", "/@jane/", JANE),
            ("GET", "SHO.RT:8080", "/@jane", JANE),
            ("HEAD", "sho.rt", "/@jane", JANE),
            // The query string plays no part (not even sling's QR marker).
            ("GET", "sho.rt", "/@jane?x=1&y", JANE),
            ("GET", "sho.rt", "/@jane?qr=1", JANE),
            ("GET", "sho.rt", "/@jane/?", JANE),
            // Only GET and HEAD: a page takes no form.
            ("POST", "sho.rt", "/@jane", "405"),
            ("POST", "sho.rt", "/@nobody", "405"),
            ("DELETE", "sho.rt", "/@jane", "405"),
            // Unknown handles are unknown slugs: 404, or the domain's not-found redirect.
            ("GET", "sho.rt", "/@nobody", "404"),
            ("HEAD", "sho.rt", "/@nobody", "404"),
            ("GET", "sho.rt", "/@Jane", "404"),
            ("GET", "sho.rt", "/@jane/x", "404"),
            ("GET", "sho.rt", "/@jane//", "404"),
            ("GET", "sho.rt", "/@j", "404"),
            ("GET", "sho.rt", "/@", "404"),
            ("GET", "sho.rt", "/%40jane", "404"),
            (
                "GET",
                "go.example",
                "/@nobody?x=1",
                "302 https://example.com/nf",
            ),
            // Pages and links are apart: `/@x` never follows link `x`, `/x` never shows page `x`.
            (
                "GET",
                "sho.rt",
                "/jane",
                "302 https://example.com/jane-link",
            ),
            ("GET", "sho.rt", "/@bob", "404"),
            ("GET", "sho.rt", "/bob", "302 https://example.com/bob-link"),
            ("GET", "sho.rt", "/tomb", "404"),
            // A page belongs to its domain; unknown hosts get the default domain's, like links.
            ("GET", "go.example", "/@acme", "bio <p>@acme snapshot</p>"),
            (
                "GET",
                "Go.Example:443",
                "/@acme/",
                "bio <p>@acme snapshot</p>",
            ),
            ("GET", "sho.rt", "/@acme", "404"),
            ("GET", "go.example", "/@jane", "302 https://example.com/nf"),
            ("GET", "unknown.example", "/@jane", JANE),
            ("GET", "unknown.example", "/@acme", "404"),
        ],
    );
    // A page is never a click: no cookie, click count, device or country is asked for.
    let facts = Facts {
        now_ms: NOW,
        unlocked: &|_, _| panic!("cookie checked"),
        local_clicks: &|_| panic!("clicks counted"),
        device: &|| panic!("device parsed"),
        country: &|| panic!("country looked up"),
    };
    for method in [Method::GET, Method::HEAD] {
        let d = route_with("sho.rt", "/@jane", Some("qr=1"), &method, &view, &facts);
        assert!(matches!(d, Decision::BioPage(_)), "{d:?}");
    }
    // The HTML is handed out of the mapped snapshot, not copied.
    match route("sho.rt", "/@jane", None, &Method::GET, &view, NOW) {
        Decision::BioPage(page @ BioPageRef::Archived(_)) => {
            assert_eq!(page.id(), "gal_jane");
            // Detached from the snapshot, it is the same page.
            let owned = Decision::BioPage(page.clone()).into_owned();
            assert_eq!(owned, Decision::BioPage(page));
        }
        other => panic!("{other:?}"),
    }
}

fn upsert_bio(seq: u64, host: &str, handle: &str, from: &str) -> Change {
    change(
        seq,
        ChangeOp::UpsertBioPage {
            host: host.into(),
            handle: handle.into(),
            page: Box::new(bio(handle, from)),
        },
    )
}

fn delete_bio(seq: u64, host: &str, handle: &str) -> Change {
    change(
        seq,
        ChangeOp::DeleteBioPage {
            host: host.into(),
            handle: handle.into(),
        },
    )
}

#[test]
fn bio_pages_in_the_overlay_shadow_the_snapshot() {
    let snap = snapshot();
    let overlay = Overlay::new();
    for c in [
        // Older than the snapshot: already in it (or deleted since), must be ignored.
        upsert_bio(5, "sho.rt", "stale", "stale"),
        delete_bio(6, "sho.rt", "kept"),
        upsert_bio(11, "SHO.RT", "jane", "edited"),
        delete_bio(12, "sho.rt", "tomb"),
        upsert_bio(13, "go.example", "early", "overlay"),
        change(
            14,
            ChangeOp::DeleteDomain {
                host: "go.example".into(),
            },
        ),
        upsert_bio(15, "Bio.Example", "solo", "overlay"),
        // A link at `fresh` does not make a page `fresh`, nor the other way round.
        upsert(16, "sho.rt", "fresh", "https://example.com/fresh"),
        upsert_bio(17, "sho.rt", "newpage", "overlay"),
    ] {
        overlay.apply(&c);
    }
    let view = View::new(Some(&snap), &overlay, "sho.rt");
    check(
        &view,
        &[
            ("GET", "sho.rt", "/@jane", "bio <p>@jane edited</p>"),
            ("HEAD", "sho.rt", "/@jane/", "bio <p>@jane edited</p>"),
            ("POST", "sho.rt", "/@jane", "405"),
            // The link at the same name is untouched.
            (
                "GET",
                "sho.rt",
                "/jane",
                "302 https://example.com/jane-link",
            ),
            ("GET", "sho.rt", "/@stale", "404"),
            ("GET", "sho.rt", "/@kept", "bio <p>@kept snapshot</p>"),
            // A tombstone hides the snapshot's page.
            ("GET", "sho.rt", "/@tomb", "404"),
            ("POST", "sho.rt", "/@tomb", "405"),
            ("GET", "sho.rt", "/@newpage", "bio <p>@newpage overlay</p>"),
            ("GET", "sho.rt", "/newpage", "404"),
            ("GET", "sho.rt", "/@fresh", "404"),
            ("GET", "sho.rt", "/fresh", "302 https://example.com/fresh"),
            // A deleted domain takes its pages, snapshot and overlay, with it: the host falls
            // back to the default domain.
            ("GET", "go.example", "/@acme", "404"),
            ("GET", "go.example", "/@early", "404"),
            ("GET", "go.example", "/@jane", "bio <p>@jane edited</p>"),
            // A page makes its host known, like a link does.
            ("GET", "bio.example", "/@solo", "bio <p>@solo overlay</p>"),
            ("GET", "bio.example", "/@jane", "404"),
            ("GET", "bio.example", "/plain", "404"),
            ("GET", "sho.rt", "/@solo", "404"),
        ],
    );
    match route("sho.rt", "/@jane", None, &Method::GET, &view, NOW) {
        Decision::BioPage(BioPageRef::Overlay(p)) => assert_eq!(p.id, "gal_jane"),
        other => panic!("{other:?}"),
    }

    // The domain comes back: its old pages stay gone until published again.
    overlay.apply(&change(
        18,
        ChangeOp::UpsertDomain {
            id: "d-go2".into(),
            host: "go.example".into(),
            root_redirect: None,
            not_found_redirect: None,
            pages: Default::default(),
        },
    ));
    overlay.apply(&upsert_bio(19, "go.example", "acme", "republished"));
    check(
        &view,
        &[
            (
                "GET",
                "go.example",
                "/@acme",
                "bio <p>@acme republished</p>",
            ),
            ("GET", "go.example", "/@early", "404"),
            ("GET", "go.example", "/@jane", "404"),
            ("GET", "go.example", "/go", "404"),
        ],
    );

    // A newer snapshot supersedes every overlay entry at or below its sequence, even before trim.
    let newer = {
        let mut body = SnapshotBody::new("sho.rt");
        body.apply(&ChangeOp::UpsertBioPage {
            host: "sho.rt".into(),
            handle: "jane".into(),
            page: Box::new(bio("jane", "v2")),
        });
        LoadedSnapshot::from_bytes(&encode(&body, 19, NOW).unwrap()).unwrap()
    };
    let view = View::new(Some(&newer), &overlay, "sho.rt");
    check(
        &view,
        &[
            ("GET", "sho.rt", "/@jane", "bio <p>@jane v2</p>"),
            ("GET", "sho.rt", "/@newpage", "404"),
            ("GET", "go.example", "/@acme", "404"),
        ],
    );
    overlay.trim(19);
    assert!(overlay.is_empty());
}

#[test]
fn bio_pages_without_a_snapshot() {
    let overlay = Overlay::new();
    let view = View::new(None, &overlay, "localhost");
    check(&view, &[("GET", "localhost", "/@jane", "404")]);
    overlay.apply(&upsert_bio(1, "localhost", "jane", "overlay"));
    overlay.apply(&upsert_bio(2, "localhost", "gone", "overlay"));
    overlay.apply(&delete_bio(3, "localhost", "gone"));
    check(
        &view,
        &[
            (
                "GET",
                "localhost:8080",
                "/@jane",
                "bio <p>@jane overlay</p>",
            ),
            (
                "GET",
                "anything.example",
                "/@jane",
                "bio <p>@jane overlay</p>",
            ),
            ("GET", "localhost", "/@gone", "404"),
            ("GET", "localhost", "/jane", "404"),
        ],
    );
}
