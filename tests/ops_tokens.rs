//! `pbackend tokens …` against a running server.

mod common;

use std::time::Duration;

use common::cli::ServerProcess;
use common::ops::*;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn create_use_list_and_revoke_while_the_server_runs() {
    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let out = pb_ok(
        &db,
        false,
        &[
            "tokens",
            "create",
            "--user",
            "alice",
            "--description",
            "ci",
            "--output",
            "json",
        ],
    )
    .await;
    let created: Value = serde_json::from_str(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pul-"));
    let second = pb_ok(&db, false, &["tokens", "create", "--user", "alice"]).await;
    let second = second.stdout.trim().to_owned();
    let bob = pb_ok(&db, false, &["tokens", "create", "--user", "bob"])
        .await
        .stdout
        .trim()
        .to_owned();

    let alice = Api::new(&srv.url, &token);
    let me = alice.get("/api/user").await.json();
    assert_eq!(me["githubLogin"], "alice");
    // alice works with stacks like the admin does.
    alice.create_stack("proj", "alices").await.ok();

    // Listings never show the secret, and record use.
    let ls = pb_ok(&db, false, &["tokens", "ls", "--output", "json"])
        .await
        .stdout;
    assert!(!ls.contains(&token) && !ls.contains(&second));
    let rows: Value = serde_json::from_str(&ls).unwrap();
    let first = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == created["id"])
        .unwrap();
    assert_eq!(first["status"], "active");
    assert!(first["lastUsed"].is_i64());
    let only_bob: Value = serde_json::from_str(
        &pb_ok(
            &db,
            false,
            &["tokens", "ls", "--user", "bob", "--output", "json"],
        )
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(only_bob.as_array().unwrap().len(), 1);

    // `pbackend tokens revoke alice` revokes all of alice's tokens: refused at the next request.
    let out = pb_ok(&db, false, &["tokens", "revoke", "alice"]).await;
    assert!(out.stderr.contains("Revoked 2"), "{}", out.all());
    alice.get("/api/user").await.error(401);
    Api::new(&srv.url, &second)
        .get("/api/user")
        .await
        .error(401);
    Api::new(&srv.url, &bob).get("/api/user").await.ok();
    // By id.
    let bob_id = only_bob[0]["id"].as_str().unwrap().to_owned();
    pb_ok(&db, false, &["tokens", "revoke", &bob_id]).await;
    Api::new(&srv.url, &bob).get("/api/user").await.error(401);
    // Nothing left to revoke is an error, in one line.
    let out = pb(&db, false, &["tokens", "revoke", "--user", "alice"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no active tokens"));

    // Expiry.
    let short = pb_ok(
        &db,
        false,
        // Expiry has whole-second granularity and a debug-build subprocess can take a second
        // to start under CI load: 1 s could lapse before the first use.
        &["tokens", "create", "--user", "carol", "--expires", "3s"],
    )
    .await
    .stdout
    .trim()
    .to_owned();
    Api::new(&srv.url, &short).get("/api/user").await.ok();
    tokio::time::sleep(Duration::from_millis(4100)).await;
    Api::new(&srv.url, &short).get("/api/user").await.error(401);
    // The single-tenant token is unaffected.
    srv.api().get("/api/user").await.ok();
    assert_eq!(
        pb(&db, false, &["tokens", "create", "--user", "bad name"])
            .await
            .code,
        1
    );
    assert_eq!(pb(&db, false, &["tokens", "create"]).await.code, 2);
}
