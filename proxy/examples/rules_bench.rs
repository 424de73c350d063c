//! Bench helper for the redirect rules (issue 6): writes a snapshot with a plain, a geo-targeted
//! and a device-targeted link on `localhost` into the directory given as the first argument, then
//! prints the latency of one password verification with the parameters the control plane uses
//! (argon2id defaults). Measured with wrk against a release `sling-proxy` on that directory; see
//! ARCHITECTURE.md, "Rules at the edge". Printed only, never asserted.

use std::time::Instant;

use argon2::password_hash::{PasswordHasher, SaltString};
use sling_shared::link::{LinkRecord, Target};
use sling_shared::snapshot::{SnapshotBody, encode, write_atomic};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: rules_bench <snapshot dir>"))?;
    let target = |key: &str, url: &str| Target {
        key: key.into(),
        url: url.into(),
    };
    let mut body = SnapshotBody::new("localhost");
    body.insert_link(
        "localhost",
        "plain",
        LinkRecord::plain("l-plain", "https://example.com/plain"),
    );
    let mut geo = LinkRecord::plain("l-geo", "https://example.com/geo");
    geo.geo_targets = ["DE", "FR", "US", "CN", "JP", "GB", "BR", "IN"]
        .iter()
        .map(|c| target(c, &format!("https://example.com/geo/{c}")))
        .collect();
    body.insert_link("localhost", "geo", geo);
    let mut dev = LinkRecord::plain("l-dev", "https://example.com/dev");
    dev.ios_url = Some("https://apps.example.com/ios".into());
    dev.device_targets = vec![
        target("android", "https://example.com/dev/android"),
        target("mobile", "https://example.com/dev/mobile"),
        target("desktop", "https://example.com/dev/desktop"),
    ];
    body.insert_link("localhost", "dev", dev);
    std::fs::create_dir_all(&dir)?;
    let path = write_atomic(std::path::Path::new(&dir), 1, &encode(&body, 1, 0)?)?;
    println!("snapshot: {}", path.display());

    let salt = SaltString::encode_b64(b"rules-bench-salt").map_err(|e| anyhow::anyhow!("{e}"))?;
    let phc = argon2::Argon2::default()
        .hash_password(b"correct horse", &salt)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string();
    let runs: u32 = 20;
    let started = Instant::now();
    for i in 0..runs {
        let ok =
            sling_proxy::password::verify(if i % 2 == 0 { "correct horse" } else { "nope" }, &phc);
        assert_eq!(ok, i % 2 == 0);
    }
    let each = started.elapsed() / runs;
    println!(
        "argon2 verify ({phc_params}): {:.1} ms per verification",
        each.as_secs_f64() * 1e3,
        phc_params = phc.split('$').nth(3).unwrap_or("?")
    );
    Ok(())
}
