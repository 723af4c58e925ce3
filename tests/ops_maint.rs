//! rotate-keys, prune-versions, verify and replay-journal on real databases.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::cli::{MASTER_KEY, ServerProcess};
use common::ops::*;
use common::*;
use serde_json::{Value, json};

const NEW_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

#[tokio::test]
async fn rotate_keys_refuses_while_serving_then_rewraps_everything() {
    let mut srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let mut cts = Vec::new();
    for s in ["a", "b", "c"] {
        srv.api().create_stack("proj", s).await.ok();
        let ct = srv
            .api()
            .post(
                &format!("{}/encrypt", stack_path("proj", s)),
                json!({"plaintext": B64.encode(s)}),
            )
            .await
            .json()["ciphertext"]
            .as_str()
            .unwrap()
            .to_owned();
        cts.push((s, ct));
    }
    let out = pb(&db, true, &["rotate-keys", "--new-master-key", NEW_KEY]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("in use by a running `pbackend serve`"),
        "{}",
        out.all()
    );
    // A dry run is fine while serving.
    let out = pb_ok(
        &db,
        true,
        &["rotate-keys", "--new-master-key", NEW_KEY, "--dry-run"],
    )
    .await;
    assert!(out.stderr.contains("all 3 stack keys"), "{}", out.all());

    srv.stop().await;
    pb_ok(
        &db,
        true,
        &["rotate-keys", "--new-master-key", NEW_KEY, "-q"],
    )
    .await;
    // The old key no longer starts the server; the new one does, and decrypts old secrets.
    assert!(!srv.try_start().await, "the old master key must be refused");
    assert!(
        srv.log(srv_starts(&srv))
            .contains("master key does not match")
    );
    srv.key = NEW_KEY.into();
    assert!(srv.try_start().await);
    for (s, ct) in &cts {
        let r = srv
            .api()
            .post(
                &format!("{}/decrypt", stack_path("proj", s)),
                json!({"ciphertext": ct}),
            )
            .await
            .json();
        assert_eq!(r["plaintext"], json!(B64.encode(s)));
    }
    srv.stop().await;
    // Rotating with a wrong current key changes nothing.
    let out = pb(&db, true, &["rotate-keys", "--new-master-key", MASTER_KEY]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("does not match"), "{}", out.all());
}

fn srv_starts(srv: &ServerProcess) -> usize {
    (1..100)
        .take_while(|n| srv.log_path(*n).exists())
        .last()
        .unwrap_or(1)
}

#[tokio::test]
async fn prune_versions_dry_run_keep_and_vacuum() {
    let mut srv = ServerProcess::start(&["--max-state-versions", "100"]).await;
    let db = srv.db();
    let api = srv.api();
    let s = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    api.create_stack("proj", "other").await.ok();
    for i in 0..8 {
        api.post_gz(&format!("{s}/import"), deployment(i, "p"))
            .await
            .ok();
    }
    api.post_gz(
        &format!("{}/import", stack_path("proj", "other")),
        deployment(1, "o"),
    )
    .await
    .ok();
    let out = pb_ok(
        &db,
        false,
        &[
            "prune-versions",
            "--keep",
            "3",
            "--dry-run",
            "--output",
            "json",
        ],
    )
    .await;
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["versions"], 5);
    assert!(r["bytes"].as_i64().unwrap() > 0);
    api.get(&format!("{s}/export/1")).await.ok();
    // While serving, pruning is fine but vacuuming is not.
    let out = pb(&db, false, &["prune-versions", "--keep", "3", "--vacuum"]).await;
    assert_eq!(out.code, 1);
    pb_ok(
        &db,
        false,
        &[
            "prune-versions",
            "--keep",
            "3",
            "--stack",
            "organization/proj/dev",
        ],
    )
    .await;
    api.get(&format!("{s}/export/5")).await.error(404);
    api.get(&format!("{s}/export/6")).await.ok();
    assert_eq!(
        api.get(&format!("{s}/export")).await.json(),
        deployment(7, "p")
    );
    srv.stop().await;
    let out = pb_ok(&db, false, &["prune-versions", "--keep", "1", "--vacuum"]).await;
    assert!(
        out.stderr.contains("Deleted 2 versions") && out.stderr.contains("vacuumed"),
        "{}",
        out.all()
    );
    assert!(srv.try_start().await);
    assert_eq!(
        srv.api().get(&format!("{s}/export")).await.json(),
        deployment(7, "p")
    );
}

#[tokio::test]
async fn verify_names_each_kind_of_damage() {
    if on_postgres() {
        // The damage is done with SQLite's SQL on the file; the checks are the engine's,
        // the same on both stores.
        eprintln!("SKIPPED on PostgreSQL: damages a SQLite file directly");
        return;
    }
    let mut srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let api = srv.api();
    for s in ["v", "cur", "jrn", "key", "ok"] {
        api.create_stack("proj", s).await.ok();
    }
    api.post_gz(
        &format!("{}/import", stack_path("proj", "v")),
        deployment(2, "v"),
    )
    .await
    .ok();
    api.post_gz(
        &format!("{}/import", stack_path("proj", "cur")),
        deployment(1, "c"),
    )
    .await
    .ok();
    api.post_gz(
        &format!("{}/import", stack_path("proj", "cur")),
        deployment(2, "c"),
    )
    .await
    .ok();
    api.post_gz(
        &format!("{}/import", stack_path("proj", "jrn")),
        deployment(1, "j"),
    )
    .await
    .ok();
    journal_update(&api, "proj", "jrn", &["x", "y", "z"]).await;
    journal_update(&api, "proj", "ok", &["x"]).await;
    // Clean, while the server runs.
    let out = pb_ok(&db, true, &["verify"]).await;
    assert!(out.stderr.contains("No problems found"), "{}", out.all());
    srv.stop().await;

    let conn = rusqlite::Connection::open(&db).unwrap();
    let id = |name: &str| -> i64 {
        conn.query_row("SELECT id FROM stacks WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap()
    };
    // A version that no longer decompresses.
    conn.execute(
        "UPDATE stack_versions SET state = x'1f8b0800deadbeef' WHERE stack_id = ?1",
        [id("v")],
    )
    .unwrap();
    // A current-version pointer left behind.
    conn.execute(
        "UPDATE stacks SET current_version = 1 WHERE id = ?1",
        [id("cur")],
    )
    .unwrap();
    // A journal that no longer replays to the stored state.
    conn.execute(
        "DELETE FROM journal_batches WHERE ordinal = 2 AND update_id IN (SELECT id FROM updates WHERE stack_id = ?1)",
        [id("jrn")],
    )
    .unwrap();
    // A stack key that does not unwrap.
    conn.execute(
        "UPDATE stacks SET wrapped_key = x'0102030405' WHERE id = ?1",
        [id("key")],
    )
    .unwrap();
    // An orphan row.
    conn.execute_batch(
        "PRAGMA foreign_keys = OFF; INSERT INTO update_events (update_id, first_seq, last_seq, count, events) VALUES ('ghost', 0, 0, 1, x'00');",
    )
    .unwrap();
    drop(conn);

    let out = pb(&db, true, &["verify", "--output", "json"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let findings: Value = serde_json::from_str(&out.stdout).unwrap();
    let has = |stack: Option<&str>, check: &str, text: &str| {
        findings.as_array().unwrap().iter().any(|f| {
            f["check"] == check
                && f["problem"].as_str().unwrap().contains(text)
                && stack.is_none_or(|s| f["stack"] == json!(format!("organization/proj/{s}")))
        })
    };
    assert!(
        has(Some("v"), "version", "does not decompress"),
        "{findings}"
    );
    assert!(
        has(Some("cur"), "current", "version 2 is newer"),
        "{findings}"
    );
    assert!(has(Some("jrn"), "journal", "does not replay"), "{findings}");
    assert!(has(Some("key"), "key", "does not unwrap"), "{findings}");
    assert!(has(None, "database", "orphan row"), "{findings}");
    assert!(!findings.to_string().contains("proj/ok"), "{findings}");
    // A wrong hash in an otherwise readable version, checked stack by stack.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE stack_versions SET sha256 = 'abc' WHERE stack_id = (SELECT id FROM stacks WHERE name = 'ok')", []).unwrap();
    drop(conn);
    let out = pb(&db, true, &["verify", "--stack", "organization/proj/ok"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("SHA-256"), "{}", out.all());
    assert!(out.stderr.contains("problem"), "{}", out.all());
}

#[tokio::test]
async fn replay_journal_shows_and_repairs_a_damaged_state() {
    if on_postgres() {
        // The damage is done with SQLite's SQL on the file; the checks are the engine's,
        // the same on both stores.
        eprintln!("SKIPPED on PostgreSQL: damages a SQLite file directly");
        return;
    }
    let mut srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let api = srv.api();
    let s = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    api.post_gz(&format!("{s}/import"), deployment(2, "base"))
        .await
        .ok();
    let update = journal_update(&api, "proj", "dev", &["a", "b"]).await;
    let good = api.get(&format!("{s}/export")).await.json();
    assert_eq!(good["deployment"]["resources"].as_array().unwrap().len(), 5);

    // Matching state: nothing to do (also while serving).
    let out = pb_ok(
        &db,
        false,
        &["replay-journal", "organization/proj/dev", "--dry-run"],
    )
    .await;
    assert!(
        out.stderr.contains("matches the stored state"),
        "{}",
        out.all()
    );
    srv.stop().await;

    // Damage the stored state consistently (valid gzip and hash, one resource dropped).
    let mut bad = good.clone();
    bad["deployment"]["resources"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let text = serde_json::to_vec(&bad).unwrap();
    let gz = gzip(&text);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE stack_versions SET state = ?1, sha256 = ?2, size = ?3, resource_count = 4 WHERE version = 2",
        rusqlite::params![gz, pbackend::engine::crypto::sha256_hex(&text), text.len() as i64],
    )
    .unwrap();
    drop(conn);

    let out = pb_ok(
        &db,
        false,
        &["replay-journal", "organization/proj/dev", "--dry-run"],
    )
    .await;
    assert!(
        out.stdout
            .contains("+ urn:pulumi:dev::proj::pbtest:index:Item::b"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains("Dry run"), "{}", out.all());
    let out = pb_ok(
        &db,
        false,
        &[
            "replay-journal",
            "organization/proj/dev",
            "--update",
            &update,
            "--output",
            "json",
        ],
    )
    .await;
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["written"], true);
    assert_eq!(r["entries"], 5);
    pb_ok(&db, true, &["verify"]).await;
    assert!(srv.try_start().await);
    let now = srv.api().get(&format!("{s}/export")).await.json();
    assert_eq!(
        now["deployment"]["resources"],
        good["deployment"]["resources"]
    );
    // A stack without a journal.
    srv.api().create_stack("proj", "plain").await.ok();
    let out = pb(&db, false, &["replay-journal", "organization/proj/plain"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no journaled update"), "{}", out.all());
}
