//! The real `pulumi` CLI: updates, previews, refresh, outputs, config secrets, history,
//! destroy.

mod common;

use common::cli::*;
use common::*;

fn resources_of(e: &serde_json::Value) -> Vec<serde_json::Value> {
    e["deployment"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn custom_items(e: &serde_json::Value) -> usize {
    resources_of(e)
        .iter()
        .filter(|r| r["type"] == "pbtest:index:Item")
        .count()
}

#[tokio::test]
async fn up_preview_change_refresh_outputs_history_destroy() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    let outputs =
        "  first: ${r0.result}\n  firstSecret: ${r0.secret}\n  plain:\n    fn::secret: shh\n";
    p.write_program(&items(50, "a", 100), outputs);
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["config", "set", "--secret", "dbPassword", "hunter2"])
        .await;
    assert_eq!(
        p.ok(&["config", "get", "dbPassword"]).await.stdout.trim(),
        "hunter2"
    );
    let yaml = std::fs::read_to_string(p.path().join("Pulumi.dev.yaml")).unwrap();
    assert!(
        yaml.contains("secure:") && !yaml.contains("hunter2"),
        "{yaml}"
    );

    let out = p.ok(&["up", "--yes"]).await;
    assert!(out.stdout.contains("51 created"), "{}", out.all());

    // Server side: 50 items plus the stack and the provider; secret outputs are ciphertexts.
    let e = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(custom_items(&e), 50);
    let r0 = resources_of(&e)
        .into_iter()
        .find(|r| r["urn"].as_str().unwrap_or("").ends_with("::r0"))
        .unwrap();
    let secret = &r0["outputs"]["secret"];
    assert_eq!(
        secret["4dabf18193072939515e22adb298388d"],
        "1b47061264138c4ac30d75fd1eb44270"
    );
    assert!(secret.get("ciphertext").is_some(), "{secret}");
    assert!(
        !e.to_string().contains("secret-a-0"),
        "a secret is stored in clear"
    );
    assert_eq!(e["deployment"]["secrets_providers"]["type"], "service");

    // Nothing to do right after.
    let out = p.ok(&["preview", "--expect-no-changes"]).await;
    assert!(out.stdout.contains("51 unchanged"), "{}", out.all());

    // Outputs, with and without secrets.
    let o = p.ok(&["stack", "output", "--json"]).await.json();
    assert_eq!(o["first"], "ok-a-0");
    assert_eq!(o["firstSecret"], "[secret]");
    let o = p
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["firstSecret"], "secret-a-0");
    assert_eq!(o["plain"], "shh");

    // Change two (one in place, one replaced) and add two.
    let mut prog = items(52, "a", 100);
    prog = prog.replace("value: a-3\n", "value: changed-3\n");
    prog = prog.replace("value: a-4\n", "value: a-4\n      key: new-key\n");
    p.write_program(&prog, outputs);
    let out = p.ok(&["up", "--yes"]).await;
    assert!(out.stdout.contains("2 created"), "{}", out.all());
    assert!(out.stdout.contains("1 updated"), "{}", out.all());
    assert!(out.stdout.contains("1 replaced"), "{}", out.all());
    let e = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(custom_items(&e), 52);

    // Refresh finds nothing to change.
    let out = p.ok(&["refresh", "--yes"]).await;
    assert!(!out.stdout.contains("updated"), "{}", out.all());

    // History, with the CLI's paging.
    let h = p.ok(&["stack", "history", "--json"]).await.json();
    let kinds: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["refresh", "update", "update"], "{h}");
    let page = p
        .ok(&[
            "stack",
            "history",
            "--json",
            "--page-size",
            "1",
            "--page",
            "2",
        ])
        .await
        .json();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["version"], 2);
    assert_eq!(page[0]["resourceChanges"]["create"], 2);
    let server = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(server["updates"][0]["version"], 3);
    assert_eq!(server["updates"][0]["result"], "succeeded");

    // Destroy, then the stack can go without --force.
    let out = p.ok(&["destroy", "--yes"]).await;
    assert!(out.stdout.contains("deleted"), "{}", out.all());
    let e = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(resources_of(&e).len(), 0, "{e}");
    p.ok(&["stack", "rm", "--yes"]).await;
    api.get(&stack).await.error(404);
}

#[tokio::test]
async fn failed_update_keeps_partial_state_and_stack_usable() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    let mut prog = items(3, "a", 0);
    prog.push_str(
        "  bad:\n    type: pbtest:index:Item\n    properties:\n      value: x\n      fail: true\n",
    );
    p.write_program(&prog, "");
    let out = p.fails(&["up", "--yes", "--skip-preview"]).await;
    assert!(out.all().contains("fail=true"), "{}", out.all());
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"][0]["result"], "failed");
    let e = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(
        custom_items(&e),
        3,
        "the resources that were created are in the state"
    );
    // Fix the program: the next update proceeds.
    p.write_program(&items(3, "a", 0), "");
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"][0]["result"], "succeeded");
}
