//! `pbackend migrate-store`: a whole instance moves from SQLite to PostgreSQL and back,
//! verified, and the server serves the same stacks from the copy.

mod common;

use common::ops::{pb, pb_ok};
use common::*;
use serde_json::json;

#[tokio::test]
async fn an_instance_moves_to_postgres_and_back() {
    let Some(pg) = common::pg::server() else {
        return;
    };
    if on_postgres() {
        return; // the source of this test is a SQLite file
    }
    let mut srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    api.post_gz(&format!("{stack}/import"), deployment(5, "a"))
        .await
        .ok();
    let (id, lease, _) = api.begin(&stack, "update", false).await;
    api.lease(&lease)
        .patch_gz(
            &format!("{stack}/update/{id}/checkpoint"),
            json!({"version": 3, "deployment": deployment(7, "b")["deployment"]}),
        )
        .await
        .ok();
    api.lease(&lease)
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    let before = api.get(&format!("{stack}/export")).await.json();
    let history = api.get(&format!("{stack}/updates")).await.json();
    srv.stop().await;

    let sqlite = srv.db_path();
    let url = pg.fresh_database();
    let out = pb_ok(
        &sqlite,
        false,
        &[
            "migrate-store",
            "--from",
            sqlite.to_str().unwrap(),
            "--to",
            &url,
            "--quiet",
        ],
    )
    .await;
    assert!(out.stderr.contains("verified"), "{}", out.all());
    // A non-empty target is refused.
    let again = pb(
        &sqlite,
        false,
        &[
            "migrate-store",
            "--from",
            sqlite.to_str().unwrap(),
            "--to",
            &url,
            "--quiet",
        ],
    )
    .await;
    assert_ne!(again.code, 0);

    // The server on the copy serves the same stack, history and secrets.
    let mut on_pg = srv.replica_on(std::path::PathBuf::from(&url)).await;
    let api = on_pg.api();
    assert_eq!(api.get(&format!("{stack}/export")).await.json(), before);
    assert_eq!(api.get(&format!("{stack}/updates")).await.json(), history);
    on_pg.stop().await;

    // And back to a new SQLite file.
    let back = srv.dir.path().join("back.db");
    pb_ok(
        &sqlite,
        false,
        &[
            "migrate-store",
            "--from",
            &url,
            "--to",
            back.to_str().unwrap(),
            "--quiet",
        ],
    )
    .await;
    let on_back = srv.replica_on(back).await;
    assert_eq!(
        on_back.api().get(&format!("{stack}/export")).await.json(),
        before
    );
}
