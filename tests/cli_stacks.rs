//! The real `pulumi` CLI against `pbackend serve`: login, stack management, tags, rename.

mod common;

use common::cli::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn login_and_whoami() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "proj").await;
    let out = p.ok(&["whoami", "-v"]).await;
    assert!(out.stdout.contains("User: admin"), "{}", out.all());
    assert!(
        out.stdout.contains("Organizations: organization"),
        "{}",
        out.all()
    );
    // A wrong token is refused with the CLI's own wording.
    let mut bad = p.sibling("proj");
    bad.set_env("PULUMI_ACCESS_TOKEN", "wrong");
    let out = bad.fails(&["login", &srv.url]).await;
    let text = out.all();
    assert!(
        text.contains("401")
            || text.contains("Unauthorized")
            || text.contains("invalid access token"),
        "{text}"
    );
}

#[tokio::test]
async fn stack_init_ls_select_rm() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["stack", "init", "prod"]).await;
    let out = p.fails(&["stack", "init", "dev"]).await;
    assert!(out.all().contains("already exists"), "{}", out.all());

    let ls = p.ok(&["stack", "ls", "--json"]).await.json();
    let mut names: Vec<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["dev", "prod"]);

    p.ok(&["stack", "select", "dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    // With resources, rm is refused with the CLI's message; --force removes it.
    let out = p.fails(&["stack", "rm", "dev", "--yes"]).await;
    assert!(out.all().contains("still has resources"), "{}", out.all());
    srv.api().get(&stack_path("proj", "dev")).await.ok();
    p.ok(&["stack", "rm", "dev", "--yes", "--force"]).await;
    srv.api().get(&stack_path("proj", "dev")).await.error(404);
    p.ok(&["stack", "rm", "prod", "--yes"]).await;
    let out = p.fails(&["stack", "select", "prod"]).await;
    assert!(out.all().contains("no stack named"), "{}", out.all());
    assert_eq!(p.ok(&["stack", "ls", "--json"]).await.json(), json!([]));
}

#[tokio::test]
async fn stack_tags_set_get_rm_ls() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["stack", "tag", "set", "team", "platform"]).await;
    p.ok(&["stack", "tag", "set", "cost-center", "42"]).await;
    assert_eq!(
        p.ok(&["stack", "tag", "get", "team"]).await.stdout.trim(),
        "platform"
    );
    let tags = p.ok(&["stack", "tag", "ls", "--json"]).await.json();
    assert_eq!(tags["team"], "platform");
    assert_eq!(tags["pulumi:project"], "proj");
    p.ok(&["stack", "tag", "rm", "team"]).await;
    let server = srv.api().get(&stack_path("proj", "dev")).await.json();
    assert_eq!(server["tags"]["cost-center"], "42");
    assert!(server["tags"].get("team").is_none(), "{server}");
    // Filter listing by tag.
    p.ok(&["stack", "init", "other"]).await;
    let ls = p
        .ok(&["stack", "ls", "--json", "--tag", "cost-center=42"])
        .await
        .json();
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
}

#[tokio::test]
async fn stack_rename_within_and_across_projects_keeps_history() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "proj").await;
    p.write_program(
        &items(2, "a", 0),
        "  sec:\n    fn::secret: hush\n  val: ${r0.result}\n",
    );
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["config", "set", "--secret", "pw", "s3cr3t"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;

    p.ok(&["stack", "rename", "staging"]).await;
    srv.api().get(&stack_path("proj", "dev")).await.error(404);
    // Secrets written under the old name still decrypt; history came along.
    assert_eq!(p.ok(&["config", "get", "pw"]).await.stdout.trim(), "s3cr3t");
    let out = p.ok(&["stack", "output", "sec", "--show-secrets"]).await;
    assert_eq!(out.stdout.trim(), "hush");
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let h = srv
        .api()
        .get(&format!("{}/updates", stack_path("proj", "staging")))
        .await
        .json();
    assert_eq!(h["updates"].as_array().unwrap().len(), 2);

    // Across projects: the CLI renames by fully qualified name.
    p.ok(&["stack", "rename", "organization/otherproj/prod"])
        .await;
    let h = srv
        .api()
        .get(&format!("{}/updates", stack_path("otherproj", "prod")))
        .await
        .json();
    assert_eq!(h["updates"].as_array().unwrap().len(), 2);
    let e = srv
        .api()
        .get(&format!("{}/export", stack_path("otherproj", "prod")))
        .await
        .json();
    assert_eq!(e["deployment"]["resources"].as_array().unwrap().len(), 4);
}
