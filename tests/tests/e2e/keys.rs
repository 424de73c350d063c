//! The administration commands: `sling keys create` mints a key that works against the running
//! API with exactly the scopes it was given; `sling migrate` prepares a database ahead of `serve`.

use sling_e2e::{
    Api, Backend, ControlOptions, TestEnv, binary, run_to_completion, unique_destination,
};

sling_e2e::on_both_backends!(
    keys_created_on_the_command_line_carry_their_scopes,
    migrate_prepares_the_database_and_can_run_again,
);

/// Keys minted for the admin team by name: a `links:read` key can list and read links but gets
/// 403 FORBIDDEN on create; a `links:read,links:write` key can create, and the admin key sees
/// that link (same team). A key for another team (created on the fly by name) cannot see it.
async fn keys_created_on_the_command_line_carry_their_scopes(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let control = env.start_control(ControlOptions::default()).await;
    let team = "admin"; // the team the first start created

    let reader = env.create_key(&control.data_dir, team, "links:read").await;
    let writer = env
        .create_key(&control.data_dir, team, "links:read,links:write")
        .await;
    assert_ne!(reader, writer);

    let reader = Api::new(&control.url, &reader);
    let listed = reader.call(reqwest::Method::GET, "/links", None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let refused = reader
        .call(
            reqwest::Method::POST,
            "/links",
            Some(serde_json::json!({ "destinationUrl": unique_destination("refused") })),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), Some("FORBIDDEN"), "{}", refused.body);

    let writer = Api::new(&control.url, &writer);
    let dest = unique_destination("writer");
    let link = writer.create_link(&dest, None).await;
    let fetched = reader
        .call(reqwest::Method::GET, &format!("/links/{}", link.id), None)
        .await;
    assert_eq!(fetched.data()["destinationUrl"], dest.as_str());
    let by_admin = control
        .api()
        .call(reqwest::Method::GET, &format!("/links/{}", link.id), None)
        .await;
    assert_eq!(by_admin.data()["slug"], link.slug.as_str());

    let outsider = env
        .create_key(&control.data_dir, "another-team", "links:read")
        .await;
    let hidden = Api::new(&control.url, &outsider)
        .call(reqwest::Method::GET, &format!("/links/{}", link.id), None)
        .await;
    assert_eq!(hidden.status, 404, "{}", hidden.body);
}

/// `sling migrate` on an empty database succeeds, succeeds again (migrations are idempotent),
/// and `sling serve` then starts on that database and serves the API.
async fn migrate_prepares_the_database_and_can_run_again(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let data_dir = env.dir("control");
    let mut args = vec!["migrate".to_owned(), "--data-dir".to_owned()];
    args.push(data_dir.display().to_string());
    if let Some(url) = &env.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    run_to_completion(&binary("sling"), &args).await;
    run_to_completion(&binary("sling"), &args).await;

    let control = env.start_control(ControlOptions::default()).await;
    let listed = control
        .api()
        .call(reqwest::Method::GET, "/links", None)
        .await;
    assert_eq!(listed.data()["items"], serde_json::json!([]));
}
