//! `sling up`: the one command of the README, control plane and proxy in one process.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use sling_e2e::{
    AllInOne, Api, Backend, PROPAGATION_TIMEOUT, TestEnv, get_short, http_client, read_admin_key,
    unique_destination, wait_for_admin_key, wait_until,
};

sling_e2e::on_both_backends!(sling_up_serves_links_with_the_key_it_wrote);

/// First start: the admin key is printed once and written to `<data-dir>/admin-key` with mode
/// 0600; a link created with it redirects through the built-in proxy. SIGTERM exits 0. A second
/// start on the same data keeps the key, does not print it again, and still serves the link.
async fn sling_up_serves_links_with_the_key_it_wrote(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let mut up = AllInOne::start(&env).await;
    let key = wait_for_admin_key(&up.data_dir).await;

    let key_path = up.data_dir.join("admin-key");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", key_path.display());
    assert!(
        wait_until(Duration::from_secs(5), || async {
            up.process.stdout_lines().iter().any(|l| l.contains(&key))
        })
        .await,
        "the admin key was not printed on first start: {:?}",
        up.process.stdout_lines()
    );

    let api = Api::new(&up.api_url, &key);
    let dest = unique_destination("quickstart");
    let link = api.create_link(&dest, None).await;
    let client = http_client();
    assert!(
        wait_until(PROPAGATION_TIMEOUT, || async {
            get_short(&client, &up.proxy_url, &link.slug)
                .await
                .is_redirect_to(&dest)
        })
        .await,
        "/{} never redirected to {dest} through `sling up`'s proxy",
        link.slug
    );

    let (status, _) = up.process.sigterm().await;
    assert!(
        status.success(),
        "`sling up` exited with {status} on SIGTERM"
    );

    let up = AllInOne::start(&env).await;
    assert_eq!(read_admin_key(&up.data_dir), key, "the admin key changed");
    assert!(
        wait_until(PROPAGATION_TIMEOUT, || async {
            get_short(&client, &up.proxy_url, &link.slug)
                .await
                .is_redirect_to(&dest)
        })
        .await,
        "/{} does not redirect after `sling up` restarted",
        link.slug
    );
    // Checked last, when start-up output is long over.
    assert!(
        !up.process.stdout_lines().iter().any(|l| l.contains(&key)),
        "the admin key was printed again on the second start"
    );
}
