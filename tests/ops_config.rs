//! `--config FILE`: the same settings as the flags, under the environment and the flags in
//! precedence; `pbackend config show` says where each value came from and never shows a
//! secret; a bad file stops the command with a message naming the file and the setting.

mod common;

use std::path::Path;

use common::cli::{MASTER_KEY, free_port};
use common::ops::serve_until_up;
use serde_json::Value;

const TOKEN: &str = "pul-config-test-token-0000000000";

fn write_config(dir: &Path, port: u16) -> String {
    let key = dir.join("master.key");
    std::fs::write(&key, MASTER_KEY).expect("key");
    let text = format!(
        "# every key is a long flag name\n\
         addr = \"127.0.0.1:{port}\"\n\
         db = \"{db}\"\n\
         master_key_file = \"{key}\"\n\
         single-tenant-token = \"{TOKEN}\"\n\
         org = \"fileorg\"\n\
         rate-limit = \"off\"\n\
         max-state-versions = 7\n\
         webhooks-allow-loopback = true\n\
         group-map = [\"devs=org:fileorg:member\", \"ops=org:fileorg:admin\"]\n",
        db = dir.join("cfg.db").display(),
        key = key.display(),
    );
    let file = dir.join("pbackend.toml");
    std::fs::write(&file, text).expect("config");
    file.display().to_string()
}

fn show(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["config", "show", "--output", "json"]);
    let (code, out) = serve_until_up(dir, &all, envs);
    assert_eq!(code, Some(0), "{out}");
    let json = &out[out.find('[').expect("JSON")..];
    serde_json::from_str(json).expect("config show JSON")
}

fn setting<'a>(rows: &'a [Value], key: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no {key}: {rows:#?}"))
}

#[test]
fn the_file_sits_under_the_environment_and_the_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = write_config(dir.path(), port);

    // The file alone: the server comes up where and as the file says.
    let (code, out) = serve_until_up(dir.path(), &["--config", &file, "serve"], &[]);
    assert_eq!(code, None, "it should serve: {out}");
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    assert!(out.contains("fileorg"), "{out}");

    // The environment wins over the file, a flag over both; the file may also be named by
    // the environment.
    let (code, out) = serve_until_up(
        dir.path(),
        &["serve", "--org", "flagorg"],
        &[
            ("PULUMI_BACKEND_CONFIG", &file),
            ("PULUMI_BACKEND_ORG", "envorg"),
        ],
    );
    assert_eq!(code, None, "it should serve: {out}");
    assert!(out.contains("flagorg"), "{out}");
    let (_, out) = serve_until_up(
        dir.path(),
        &["--config", &file, "serve"],
        &[("PULUMI_BACKEND_ORG", "envorg")],
    );
    assert!(out.contains("envorg") && !out.contains("fileorg"), "{out}");

    // Maintenance commands read the same file: the database is the file's.
    let (code, out) = serve_until_up(
        dir.path(),
        &["--config", &file, "tokens", "ls", "--output", "json"],
        &[],
    );
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn config_show_names_sources_and_hides_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_config(dir.path(), free_port());
    let rows = show(
        dir.path(),
        &["--config", &file],
        &[
            ("PULUMI_BACKEND_ORG", "envorg"),
            ("PULUMI_BACKEND_OIDC_CLIENT_SECRET", "very-secret-value"),
        ],
    );
    let org = setting(&rows, "org");
    assert_eq!(org["value"], "envorg");
    assert_eq!(org["source"], "env PULUMI_BACKEND_ORG");
    let versions = setting(&rows, "max-state-versions");
    assert_eq!(versions["value"], "7");
    assert!(versions["source"].as_str().unwrap().starts_with("file "));
    assert_eq!(setting(&rows, "lease-duration")["source"], "default");
    assert_eq!(setting(&rows, "tls-cert")["source"], "unset");
    assert_eq!(
        setting(&rows, "group-map")["value"],
        "devs=org:fileorg:member,ops=org:fileorg:admin"
    );
    assert_eq!(setting(&rows, "config")["value"], file.as_str());
    assert_eq!(setting(&rows, "single-tenant-token")["value"], "<redacted>");
    assert_eq!(setting(&rows, "oidc-client-secret")["value"], "<redacted>");
    let text = serde_json::to_string(&rows).unwrap();
    assert!(
        !text.contains(TOKEN) && !text.contains("very-secret-value"),
        "{text}"
    );

    // A PostgreSQL URL keeps its user and host and loses its password.
    let rows = show(
        dir.path(),
        &[],
        &[(
            "PULUMI_BACKEND_DB",
            "postgres://pb:hunter2@db.internal:5432/pbackend",
        )],
    );
    assert_eq!(
        setting(&rows, "db")["value"],
        "postgres://pb:<redacted>@db.internal:5432/pbackend"
    );

    // The table form too.
    let (code, out) = serve_until_up(dir.path(), &["--config", &file, "config", "show"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SOURCE") && out.contains("<redacted>") && !out.contains(TOKEN));
}

#[test]
fn a_bad_file_stops_the_command_and_says_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("adress = \"127.0.0.1:1\"\n", "unknown setting `adress`"),
        (
            "addr = [\"a\", \"b\"]\n",
            "`addr` takes one value, not a list",
        ),
        ("[server]\naddr = \"x\"\n", "`[server]` is a section"),
        ("addr = \"unterminated\n", "line 1"),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).expect("write");
        let f = file.display().to_string();
        let (code, out) = serve_until_up(dir.path(), &["--config", &f, "serve"], &[]);
        assert_eq!(code, Some(1), "{text}: {out}");
        assert!(out.contains(expect) && out.contains(&f), "{text}: {out}");
    }
    let (code, out) = serve_until_up(dir.path(), &["--config", "/nonexistent.toml", "serve"], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot read /nonexistent.toml"), "{out}");
    // A value of the wrong kind for its flag is clap's usage error, naming the variable.
    let file = dir.path().join("kind.toml");
    std::fs::write(&file, "max-state-versions = \"many\"\n").expect("write");
    let f = file.display().to_string();
    let (code, out) = serve_until_up(dir.path(), &["--config", &f, "serve"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("many"), "{out}");
}

#[test]
fn the_example_configuration_in_reference_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/reference/deploy/pbackend.toml"
    );
    let rows = show(dir.path(), &["--config", example], &[]);
    assert!(
        setting(&rows, "tls-cert")["source"]
            .as_str()
            .unwrap()
            .starts_with("file ")
    );
}
