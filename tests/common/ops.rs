//! Running `pbackend` maintenance subcommands (the built binary) in tests.

use std::path::Path;

use serde_json::{Value, json};

use super::cli::{MASTER_KEY, Out};
use super::{Api, stack_path};

/// Runs `pbackend ARGS --db DB --master-key MASTER_KEY` (key omitted when `key` is false).
pub async fn pb(db: &Path, key: bool, args: &[&str]) -> Out {
    pb_env(db, key, args, &[]).await
}

/// [`pb`] with extra environment variables.
pub async fn pb_env(db: &Path, key: bool, args: &[&str], env: &[(String, String)]) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pbackend"));
    cmd.args(args).arg("--db").arg(db);
    if key {
        cmd.arg("--master-key").arg(MASTER_KEY);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("PULUMI_BACKEND_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().cloned());
    let out = cmd.output().await.expect("pbackend runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs and asserts exit status 0.
pub async fn pb_ok(db: &Path, key: bool, args: &[&str]) -> Out {
    let out = pb(db, key, args).await;
    assert_eq!(
        out.code,
        0,
        "pbackend {} failed:\n{}",
        args.join(" "),
        out.all()
    );
    out
}

/// A personal token for `user` (created, with the user, by `pbackend tokens create`).
pub async fn user_token(db: &Path, user: &str) -> String {
    pb_ok(db, false, &["tokens", "create", "--user", user])
        .await
        .stdout
        .trim()
        .to_owned()
}

pub fn resource(name: &str, extra: Value) -> Value {
    let mut r = json!({"urn": format!("urn:pulumi:dev::proj::pbtest:index:Item::{name}"),
        "custom": true, "id": format!("{name}-id"), "type": "pbtest:index:Item",
        "outputs": {"value": name}});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            r[k] = v;
        }
    }
    r
}

/// Runs one journaled update creating `names` on `project/stack` through the API.
pub async fn journal_update(api: &Api, project: &str, stack: &str, names: &[&str]) -> String {
    let path = stack_path(project, stack);
    let (id, token, _) = api.begin(&path, "update", false).await;
    let mut entries = vec![json!({"version":1,"kind":6,"sequenceID":1,"operationID":0,
        "removeOld":null,"removeNew":null,
        "secretsProvider":{"type":"service","state":{"url":"u","owner":"organization","project":project,"stack":stack}}})];
    let mut seq = 1;
    for (i, n) in names.iter().enumerate() {
        let op = i as i64 + 1;
        seq += 1;
        entries.push(json!({"version":1,"kind":0,"sequenceID":seq,"operationID":op,"removeOld":null,"removeNew":null,
            "operation":{"resource":resource(n, json!({})),"type":"creating"}}));
        seq += 1;
        entries.push(json!({"version":1,"kind":1,"sequenceID":seq,"operationID":op,"removeOld":null,"removeNew":null,
            "state":resource(n, json!({}))}));
    }
    let lease = api.lease(&token);
    for chunk in entries.chunks(3) {
        lease
            .patch_gz(
                &format!("{path}/update/{id}/journalentries"),
                json!({"entries": chunk}),
            )
            .await
            .ok();
    }
    lease
        .post(
            &format!("{path}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    id
}

/// Runs `pbackend ARGS` (with `envs`, and no other `PULUMI_BACKEND_*` variable) in `dir` until
/// it logs that it serves — then kills it: `(None, output)` — or exits: `(Some(code), output)`.
pub fn serve_until_up(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    use std::time::{Duration, Instant};
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let (out, err) = (
        dir.join(format!("run-{n}.out")),
        dir.join(format!("run-{n}.err")),
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pbackend"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PULUMI_BACKEND_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .envs(envs.iter().copied())
        .stdout(std::fs::File::create(&out).expect("log"))
        .stderr(std::fs::File::create(&err).expect("log"))
        .spawn()
        .expect("spawn");
    let read = || {
        std::fs::read_to_string(&out).unwrap_or_default()
            + &std::fs::read_to_string(&err).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return (status.code(), read());
        }
        if read().contains("pbackend is serving") || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, read());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
