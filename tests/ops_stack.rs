//! `pbackend stack …` on a real database, some while `pbackend serve` runs on it.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::cli::ServerProcess;
use common::ops::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn ls_show_rm_and_unlock_while_the_server_runs() {
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let db = srv.db();
    api.create_stack("proj", "dev").await.ok();
    api.post_gz(
        &format!("{}/import", stack_path("proj", "dev")),
        deployment(3, "a"),
    )
    .await
    .ok();
    api.create_stack("proj", "empty").await.ok();
    api.create_stack("other", "stuck").await.ok();
    let stuck = stack_path("other", "stuck");
    let (id, tok, _) = api.begin(&stuck, "update", false).await;
    api.lease(&tok)
        .patch_gz(
            &format!("{stuck}/update/{id}/checkpoint"),
            json!({"isInvalid": false, "version": 3, "deployment": deployment(2, "s")["deployment"]}),
        )
        .await
        .ok();

    let ls: Value = serde_json::from_str(
        &pb_ok(&db, false, &["stack", "ls", "--output", "json"])
            .await
            .stdout,
    )
    .unwrap();
    let ls = ls.as_array().unwrap();
    assert_eq!(ls.len(), 3);
    let dev = ls.iter().find(|s| s["stack"] == "dev").unwrap();
    assert_eq!(dev["resources"], 4);
    assert_eq!(dev["version"], 1);
    assert!(dev["stateBytes"].as_i64().unwrap() > 100);
    let st = ls.iter().find(|s| s["stack"] == "stuck").unwrap();
    assert_eq!(st["lock"]["update"], json!(id));
    assert_eq!(st["lock"]["expired"], false);
    // Filters, the table form and the alias.
    let only: Value = serde_json::from_str(
        &pb_ok(
            &db,
            false,
            &["stacks", "ls", "--project", "other", "--output", "json"],
        )
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(only.as_array().unwrap().len(), 1);
    let table = pb_ok(&db, false, &["stack", "ls"]).await.stdout;
    assert!(
        table.contains("organization/proj/dev") && table.contains("LOCKED BY"),
        "{table}"
    );

    let show: Value = serde_json::from_str(
        &pb_ok(
            &db,
            true,
            &["stack", "show", "organization/proj/dev", "--output", "json"],
        )
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(show["versions"][0]["version"], 1);
    assert_eq!(show["history"][0]["kind"], "import");
    assert_eq!(show["tags"]["pulumi:project"], "proj");
    assert_eq!(show["secretsKey"], "ok");

    // rm: the same rule as the API.
    let out = pb(&db, false, &["stack", "rm", "organization/proj/dev"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("still has resources"), "{}", out.all());
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    api.get(&stack_path("proj", "dev")).await.ok();
    pb_ok(&db, false, &["stack", "rm", "organization/proj/empty"]).await;
    pb_ok(
        &db,
        false,
        &["stack", "rm", "organization/proj/dev", "--force"],
    )
    .await;
    api.get(&stack_path("proj", "dev")).await.error(404);
    let out = pb(&db, false, &["stack", "rm", "organization/proj/nope"]).await;
    assert_eq!(out.code, 1);

    // unlock: the running server sees the stack free, with the state the update reached.
    let out = pb_ok(&db, false, &["stack", "unlock", "organization/other/stuck"]).await;
    assert!(out.stderr.contains(&id), "{}", out.all());
    let s = api.get(&stuck).await.json();
    assert!(s.get("currentOperation").is_none(), "{s}");
    let e = api.get(&format!("{stuck}/export")).await.json();
    assert_eq!(e, deployment(2, "s"));
    api.lease(&tok)
        .patch_gz(
            &format!("{stuck}/update/{id}/checkpoint"),
            json!({"isInvalid": false, "version": 3, "deployment": {}}),
        )
        .await
        .error(409);
    let out = pb_ok(&db, false, &["stack", "unlock", "organization/other/stuck"]).await;
    assert!(out.stderr.contains("No update holds"));
    api.begin(&stuck, "update", false).await;

    // Usage errors exit 2; a bad name exits 1 with one line.
    assert_eq!(pb(&db, false, &["stack", "frobnicate"]).await.code, 2);
    let out = pb(&db, false, &["stack", "show", "not-qualified"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("ORG/PROJECT/STACK"), "{}", out.all());
}

#[tokio::test]
async fn export_and_import_with_secrets() {
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let db = srv.db();
    let a = stack_path("proj", "a");
    api.create_stack("proj", "a").await.ok();
    let ct = api
        .post(
            &format!("{a}/encrypt"),
            json!({"plaintext": B64.encode("\"hush\"")}),
        )
        .await
        .json()["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = json!({"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": ct});
    let mut d = deployment(2, "x");
    d["deployment"]["secrets_providers"]["state"]["stack"] = json!("a");
    d["deployment"]["resources"][1]["outputs"]["secret"] = secret;
    api.post_gz(&format!("{a}/import"), d.clone()).await.ok();
    api.post_gz(&format!("{a}/import"), deployment(1, "v2"))
        .await
        .ok();

    // Plain export: the stored deployment; --version; -o FILE.
    let out = pb_ok(
        &db,
        false,
        &["stack", "export", "organization/proj/a", "--version", "1"],
    )
    .await;
    assert!(
        out.stdout.starts_with("{\n    \"version\": 3,"),
        "{}",
        out.stdout
    );
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap(), d);
    let file = srv.dir.path().join("a.json");
    pb_ok(
        &db,
        false,
        &[
            "stack",
            "export",
            "organization/proj/a",
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&std::fs::read(&file).unwrap()).unwrap(),
        deployment(1, "v2")
    );
    assert_eq!(
        pb(
            &db,
            false,
            &["stack", "export", "organization/proj/a", "--version", "9"]
        )
        .await
        .code,
        1
    );

    // --show-secrets needs the key and reveals the value.
    let out = pb(
        &db,
        false,
        &[
            "stack",
            "export",
            "organization/proj/a",
            "--version",
            "1",
            "--show-secrets",
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("master key"), "{}", out.all());
    let shown = pb_ok(
        &db,
        true,
        &[
            "stack",
            "export",
            "organization/proj/a",
            "--version",
            "1",
            "--show-secrets",
        ],
    )
    .await
    .stdout;
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        v["deployment"]["resources"][1]["outputs"]["secret"]["plaintext"],
        "\"hush\""
    );
    let shown_file = srv.dir.path().join("shown.json");
    std::fs::write(&shown_file, &shown).unwrap();

    // Importing that into a new stack encrypts with the new stack's key.
    pb_ok(
        &db,
        true,
        &[
            "stack",
            "import",
            "organization/proj/b",
            shown_file.to_str().unwrap(),
            "--create",
        ],
    )
    .await;
    let b = stack_path("proj", "b");
    let e = api.get(&format!("{b}/export")).await.json();
    let new_ct = e["deployment"]["resources"][1]["outputs"]["secret"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api
        .post(&format!("{b}/decrypt"), json!({"ciphertext": new_ct}))
        .await
        .json();
    assert_eq!(r["plaintext"], json!(B64.encode("\"hush\"")));
    // A ciphertext export of stack a into stack c is re-encrypted for c.
    let enc_file = srv.dir.path().join("enc.json");
    pb_ok(
        &db,
        false,
        &[
            "stack",
            "export",
            "organization/proj/a",
            "--version",
            "1",
            "-o",
            enc_file.to_str().unwrap(),
        ],
    )
    .await;
    let out = pb_ok(
        &db,
        true,
        &[
            "stack",
            "import",
            "organization/proj/c",
            enc_file.to_str().unwrap(),
            "--create",
        ],
    )
    .await;
    assert!(out.stderr.contains("1 re-encrypted"), "{}", out.all());
    let e = api
        .get(&format!("{}/export", stack_path("proj", "c")))
        .await
        .json();
    assert_eq!(e["deployment"]["secrets_providers"]["state"]["stack"], "c");

    // Without --create, a missing stack is refused.
    let out = pb(
        &db,
        true,
        &[
            "stack",
            "import",
            "organization/proj/zzz",
            enc_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--create"), "{}", out.all());
    // Secrets of a stack that is not in this database are refused, and nothing is stored.
    let mut foreign: Value = serde_json::from_slice(&std::fs::read(&enc_file).unwrap()).unwrap();
    foreign["deployment"]["secrets_providers"]["state"]["stack"] = json!("elsewhere");
    std::fs::write(&enc_file, foreign.to_string()).unwrap();
    let before = api.get(&format!("{b}/export")).await.json();
    let out = pb(
        &db,
        true,
        &[
            "stack",
            "import",
            "organization/proj/b",
            enc_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not in this database"), "{}", out.all());
    assert_eq!(api.get(&format!("{b}/export")).await.json(), before);
    // Ciphertexts that do not open with the stack's own key are refused too.
    foreign["deployment"]["secrets_providers"]["state"]["stack"] = json!("b");
    std::fs::write(&enc_file, foreign.to_string()).unwrap();
    let out = pb(
        &db,
        true,
        &[
            "stack",
            "import",
            "organization/proj/b",
            enc_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(api.get(&format!("{b}/export")).await.json(), before);
}

#[tokio::test]
async fn rollback_makes_a_kept_version_the_newest_and_keeps_the_history() {
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let db = srv.db();
    api.create_stack("proj", "dev").await.ok();
    let path = stack_path("proj", "dev");
    for prefix in ["a", "b"] {
        api.post_gz(&format!("{path}/import"), deployment(2, prefix))
            .await
            .ok();
    }
    let v1 = api.get(&format!("{path}/export/1")).await.ok().json();

    // A version that is not kept, or a stack that does not exist: refused, nothing stored.
    let out = pb(
        &db,
        false,
        &[
            "stack",
            "rollback",
            "organization/proj/dev",
            "--to-version",
            "9",
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("version 9"), "{}", out.all());
    let out = pb(
        &db,
        false,
        &[
            "stack",
            "rollback",
            "organization/proj/nope",
            "--to-version",
            "1",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.all());

    let out = pb_ok(
        &db,
        false,
        &[
            "stack",
            "rollback",
            "organization/proj/dev",
            "--to-version",
            "1",
        ],
    )
    .await;
    assert!(
        out.stderr
            .contains("Rolled organization/proj/dev back to version 1"),
        "{}",
        out.all()
    );
    let now = api.get(&format!("{path}/export")).await.ok().json();
    assert_eq!(
        now["deployment"]["resources"],
        v1["deployment"]["resources"]
    );
    let history = api.get(&format!("{path}/updates")).await.ok().json();
    let updates = history["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 3, "{history}");
    assert_eq!(updates[0]["version"], 3);
    assert_eq!(updates[0]["message"], "rollback to version 1");
    let audit = db_audit(&db).await;
    assert!(
        audit.iter().any(|e| e["event"] == "stack-rolled-back"),
        "{audit:?}"
    );
}
