//! The proxy's promise to keep serving: from its local snapshot when the control plane is down,
//! and from the last good snapshot when a newer file is corrupt or truncated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sling_e2e::{
    Backend, ControlOptions, ControlPlane, Link, Proxy, TestEnv, snapshot_contains,
    snapshot_reaches_proxy, unique_destination, verified_snapshots, wait_until,
};

sling_e2e::on_both_backends!(
    proxy_restarted_while_control_is_down_serves_every_link,
    corrupt_snapshots_are_refused_and_the_last_good_one_serves,
    damaged_files_never_cost_the_proxy_its_good_snapshots,
);

/// Snapshots after a handful of changes, so the stories below get one quickly.
const EAGER_SNAPSHOTS: ControlOptions = ControlOptions {
    snapshot_interval_ms: 200,
    snapshot_after_changes: 10,
    extra_args: Vec::new(),
};

/// 50 links, a snapshot holding them fetched by the proxy; then the control plane dies
/// (SIGKILL) and the proxy is restarted on the same snapshot dir: every link still redirects.
async fn proxy_restarted_while_control_is_down_serves_every_link(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let mut control = env.start_control(EAGER_SNAPSHOTS).await;
    let proxy = env.start_proxy(Some(&control)).await;
    let links = create_links(&control, 50).await;
    wait_for_snapshot_with(&control, &proxy, &links).await;

    control.process.kill().await;
    let proxy = proxy.restart(Some(&control.url)).await;

    assert_all_redirect(&proxy, &links).await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            proxy.admin_get("/readyz").await.0 == 200
        })
        .await,
        "a proxy serving from its local snapshot should be ready without a control plane"
    );
}

/// With a good snapshot on disk, newer files that are damaged (a flipped body byte, a
/// truncated copy, a header that disagrees with its body, garbage) are refused when a proxy
/// starts without a control plane: it serves every link from the good one, and its log names
/// each file it refused.
async fn corrupt_snapshots_are_refused_and_the_last_good_one_serves(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let mut control = env.start_control(EAGER_SNAPSHOTS).await;
    let mut proxy = env.start_proxy(Some(&control)).await;
    let links = create_links(&control, 20).await;
    let good = wait_for_snapshot_with(&control, &proxy, &links).await;
    control.process.kill().await;
    proxy.stop().await;

    let corrupt = write_damaged_copies(&good);

    // Started again with no control plane at all: only the local directory to go on.
    let proxy = proxy.start_again(None).await;
    assert_all_redirect(&proxy, &links).await;
    let logs = proxy.process.stderr();
    for path in &corrupt {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            logs.contains(name),
            "the proxy log does not mention the refused {name}:\n{logs}"
        );
    }
}

/// Damaged files with higher sequence numbers land in the directory of a running proxy; the
/// proxy then downloads a newer good snapshot as usual. Restarted without a control plane, it
/// still serves every link: housekeeping never deletes good snapshots in favour of files that
/// do not verify.
async fn damaged_files_never_cost_the_proxy_its_good_snapshots(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let mut control = env.start_control(EAGER_SNAPSHOTS).await;
    let proxy = env.start_proxy(Some(&control)).await;
    let mut links = create_links(&control, 10).await;
    let good = wait_for_snapshot_with(&control, &proxy, &links).await;

    write_damaged_copies(&good);
    links.extend(create_links(&control, 10).await);
    wait_for_snapshot_with(&control, &proxy, &links).await;

    control.process.kill().await;
    let proxy = proxy.restart(None).await;
    assert_all_redirect(&proxy, &links).await;
}

/// Writes damaged copies of the good snapshot `good` under higher sequence numbers, each
/// checked to fail verification, and returns their paths.
fn write_damaged_copies(good: &Path) -> Vec<PathBuf> {
    let dir = good.parent().unwrap();
    let bytes = std::fs::read(good).unwrap();
    let good_seq = sling_shared::snapshot::list_files(dir)
        .unwrap()
        .into_iter()
        .find(|(_, p)| p == good)
        .unwrap()
        .0;
    let write = |offset: u64, contents: &[u8]| -> PathBuf {
        let path = dir.join(sling_shared::snapshot::file_name(good_seq + offset));
        std::fs::write(&path, contents).unwrap();
        path
    };
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    // A header whose link count disagrees with the (intact, checksummed) body.
    let mut wrong_count = bytes.clone();
    wrong_count[24] = wrong_count[24].wrapping_add(1);
    let damaged = vec![
        write(1_000, &flipped),
        write(2_000, &bytes[..bytes.len() / 2]),
        write(3_000, &wrong_count),
        write(4_000, b"not a snapshot at all"),
    ];
    for path in &damaged {
        assert!(
            sling_shared::snapshot::verify(&std::fs::read(path).unwrap()).is_err(),
            "{} should be damaged",
            path.display()
        );
    }
    damaged
}

async fn create_links(control: &ControlPlane, n: usize) -> Vec<Link> {
    let api = control.api();
    let mut links = Vec::with_capacity(n);
    for i in 0..n {
        links.push(
            api.create_link(&unique_destination(&format!("offline{i}")), None)
                .await,
        );
    }
    links
}

/// Waits until the proxy has stored a snapshot containing every link, and returns its path.
async fn wait_for_snapshot_with(control: &ControlPlane, proxy: &Proxy, links: &[Link]) -> PathBuf {
    let slugs: Vec<String> = links.iter().map(|l| l.slug.clone()).collect();
    let what = format!("holding all {} links", links.len());
    snapshot_reaches_proxy(control, proxy, &what, |body| {
        snapshot_contains(body, &slugs)
    })
    .await;
    verified_snapshots(&proxy.snapshot_dir)
        .into_iter()
        .find(|(_, _, body)| snapshot_contains(body, &slugs))
        .map(|(path, _, _)| path)
        .unwrap()
}

/// Every link redirects to its destination right now (after the first one answers: the
/// proxy may print its listeners a moment before its snapshot is swapped in).
async fn assert_all_redirect(proxy: &Proxy, links: &[Link]) {
    proxy
        .wait_for_redirect(&links[0].slug, &links[0].destination_url)
        .await;
    for link in links {
        let answer = proxy.get(&link.slug).await;
        assert!(
            answer.is_redirect_to(&link.destination_url),
            "/{} answered {answer:?}, expected a redirect to {}",
            link.slug,
            link.destination_url
        );
    }
}
