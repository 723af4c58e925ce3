//! The command line itself: help texts, usage errors, checked-in completions.

mod common;

use common::ops::*;
use pbackend::cli::completions::{CompletionShell, generate};

#[test]
fn checked_in_completions_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    let update = std::env::var("PBACKEND_UPDATE_COMPLETIONS").is_ok_and(|v| v == "1");
    for shell in CompletionShell::ALL {
        let path = dir.join(shell.file_name());
        let fresh = generate(shell);
        if update {
            std::fs::write(&path, &fresh).unwrap();
            continue;
        }
        let stored = std::fs::read(&path).unwrap_or_default();
        assert!(
            stored == fresh,
            "{} is stale: regenerate with `PBACKEND_UPDATE_COMPLETIONS=1 cargo test --test ops_cli_basics`",
            path.display()
        );
    }
}

#[tokio::test]
async fn every_subcommand_has_help_and_usage_errors_exit_2() {
    let db = std::path::Path::new("/nonexistent/pbackend.db");
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["stack", "--help"],
        vec!["stack", "ls", "--help"],
        vec!["stack", "show", "--help"],
        vec!["stack", "rm", "--help"],
        vec!["stack", "unlock", "--help"],
        vec!["stack", "export", "--help"],
        vec!["stack", "import", "--help"],
        vec!["export", "--help"],
        vec!["import", "--help"],
        vec!["tokens", "create", "--help"],
        vec!["tokens", "ls", "--help"],
        vec!["tokens", "revoke", "--help"],
        vec!["rotate-keys", "--help"],
        vec!["prune-versions", "--help"],
        vec!["verify", "--help"],
        vec!["replay-journal", "--help"],
        vec!["completions", "--help"],
    ] {
        let out = pb(db, false, &args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
        assert!(out.stdout.contains("Usage:"), "{args:?}: {}", out.stdout);
        assert!(
            out.stdout.contains("PULUMI_BACKEND_") || args.len() > 1,
            "{args:?}"
        );
    }
    let out = pb(db, false, &["--version"]).await;
    assert!(out.stdout.starts_with("pbackend "));
    assert_eq!(pb(db, false, &["nonsense"]).await.code, 2);
    assert_eq!(pb(db, false, &["export", "-o", "x"]).await.code, 2);
    // A missing database is named, not created.
    let out = pb(db, false, &["stack", "ls"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no database at"), "{}", out.all());
    assert!(!db.exists());
}
