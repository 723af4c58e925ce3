//! The real `pulumi` CLI: export/import, versions, moving state between stacks and projects,
//! stack references.

mod common;

use common::cli::*;
use common::*;
use serde_json::Value;

fn resources(e: &Value) -> Vec<Value> {
    e["deployment"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn urns(e: &Value) -> Vec<String> {
    resources(e)
        .iter()
        .map(|r| r["urn"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn export_import_round_trip_and_versions() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.write_program(&items(3, "one", 0), "  s: ${r0.secret}\n");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let v1 = p.ok(&["stack", "export"]).await.json();
    p.write_program(&items(5, "two", 0), "  s: ${r0.secret}\n");
    p.ok(&["up", "--yes", "--skip-preview"]).await;

    // --version N gives that version's state; the server's export of it agrees.
    let got = p.ok(&["stack", "export", "--version", "1"]).await.json();
    assert_eq!(urns(&got), urns(&v1));
    assert_eq!(api.get(&format!("{stack}/export/1")).await.json(), got);
    let out = p.fails(&["stack", "export", "--version", "99"]).await;
    assert!(out.all().contains("404"), "{}", out.all());

    // Importing version 1 makes it current again (as a new version).
    let file = p.path().join("v1.json");
    std::fs::write(&file, serde_json::to_vec(&v1).unwrap()).unwrap();
    p.ok(&["stack", "import", "--file", file.to_str().unwrap()])
        .await;
    let now = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(urns(&now), urns(&v1));
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"][0]["kind"], "import");
    assert_eq!(h["updates"][0]["version"], 3);
    // Secrets in the imported state still decrypt.
    let o = p
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["s"], "secret-one-0");
    // And the program converges from there.
    p.write_program(&items(3, "one", 0), "  s: ${r0.secret}\n");
    p.ok(&["preview", "--expect-no-changes"]).await;
}

#[tokio::test]
async fn move_state_into_another_stack_and_project() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let p = Project::new(&tc, &srv, "proj").await;
    let outputs = "  s: ${r0.secret}\n";
    p.write_program(&items(4, "m", 0), outputs);
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let exported = p.ok(&["stack", "export"]).await.stdout;

    // What a migration does: rename the URNs to the target stack and project.
    let moved = exported
        .replace("urn:pulumi:dev::proj::", "urn:pulumi:prod::otherproj::")
        .replace("proj-dev", "otherproj-prod");
    let q = p.sibling("otherproj");
    q.write_program(&items(4, "m", 0), outputs);
    q.ok(&["stack", "init", "prod"]).await;
    let file = q.path().join("state.json");
    std::fs::write(&file, moved).unwrap();
    q.ok(&["stack", "import", "--file", file.to_str().unwrap()])
        .await;
    let e = api
        .get(&format!("{}/export", stack_path("otherproj", "prod")))
        .await
        .json();
    assert_eq!(resources(&e).len(), 6);
    assert!(
        urns(&e)
            .iter()
            .all(|u| u.starts_with("urn:pulumi:prod::otherproj::"))
    );
    // The server re-encrypted the imported secrets for the new stack.
    assert_eq!(
        e["deployment"]["secrets_providers"]["state"]["project"],
        "otherproj"
    );
    assert_eq!(
        e["deployment"]["secrets_providers"]["state"]["stack"],
        "prod"
    );
    q.ok(&["preview", "--expect-no-changes"]).await;
    // The source stack can go: nothing in the moved state depends on its key.
    p.ok(&["stack", "rm", "dev", "--yes", "--force"]).await;
    let o = q
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["s"], "secret-m-0");
    // An update there keeps them readable.
    q.ok(&["up", "--yes", "--skip-preview", "--refresh"]).await;
    let e = api
        .get(&format!("{}/export", stack_path("otherproj", "prod")))
        .await
        .json();
    assert_eq!(
        e["deployment"]["secrets_providers"]["state"]["project"],
        "otherproj"
    );
    let o = q
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["s"], "secret-m-0");
}

#[tokio::test]
async fn stack_reference_reads_another_stacks_outputs() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "producer").await;
    p.write_program(
        &items(1, "p", 0),
        "  plain: ${r0.result}\n  hidden: ${r0.secret}\n",
    );
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;

    let c = p.sibling("consumer");
    c.write_program(
        "  ref:\n    type: pulumi:pulumi:StackReference\n    properties:\n      name: organization/producer/dev\n",
        "  got: ${ref.outputs[\"plain\"]}\n  gotSecret: ${ref.outputs[\"hidden\"]}\n",
    );
    c.ok(&["stack", "init", "dev"]).await;
    c.ok(&["up", "--yes", "--skip-preview"]).await;
    let o = c
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["got"], "ok-p-0");
    assert_eq!(o["gotSecret"], "secret-p-0");
    let o = c.ok(&["stack", "output", "--json"]).await.json();
    assert_eq!(o["gotSecret"], "[secret]");

    // A reference to a stack that does not exist fails clearly.
    c.write_program(
        "  ref:\n    type: pulumi:pulumi:StackReference\n    properties:\n      name: organization/producer/nope\n",
        "",
    );
    let out = c.fails(&["up", "--yes", "--skip-preview"]).await;
    assert!(
        out.all().contains("unknown stack") || out.all().contains("not found"),
        "{}",
        out.all()
    );
}
