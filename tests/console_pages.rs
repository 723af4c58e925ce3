//! The web console over plain HTTP, after real `pulumi` runs: every link the CLI prints
//! (`pulumi up` and `preview` permalinks, `stack ls` URLs) opens its page; a reader sees no
//! action and is refused one; forms without the session's CSRF token are refused; secrets
//! never reach a page; a rollback makes an old state the newest, as `pulumi stack export`
//! then shows. (A real browser drives the same pages in `console_browser.rs`.)

mod common;

use common::cli::*;
use common::console::Console;
use common::ops::{pb_ok, user_token};
use serde_json::Value;

const SECRET: &str = "hunter2-very-secret-plaintext";

/// The URLs after `View Live: ` in a CLI's output.
fn permalinks(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            l.split_once("View Live: ")
                .map(|(_, u)| u.trim().to_owned())
        })
        .collect()
}

async fn project(tc: &Toolchain, server: &ServerProcess) -> Project {
    let mut p = Project::new(tc, server, "web").await;
    p.set_env(
        "PULUMI_CONSOLE_DOMAIN",
        &format!("127.0.0.1:{}", server.port),
    );
    p.ok(&["stack", "init", "organization/web/dev"]).await;
    p
}

fn program(p: &Project, value: &str) {
    p.write_program(
        &format!(
            "  parent:\n    type: pbtest:index:Item\n    properties:\n      value: {value}\n  \
             child:\n    type: pbtest:index:Item\n    properties:\n      value: nested-{value}\n    \
             options:\n      parent: ${{parent}}\n"
        ),
        &format!("  plain: ${{parent.value}}\n  pw:\n    fn::secret: {SECRET}\n"),
    );
}

#[tokio::test]
async fn every_link_the_cli_prints_opens_its_page() {
    let tc = require_cli!();
    let server = ServerProcess::start(&[]).await;
    let p = project(&tc, &server).await;
    program(&p, "first");
    let up = p.ok(&["up", "--yes", "--skip-preview"]).await;
    let links = permalinks(&up.all());
    let expected = format!("{}/organization/web/dev/updates/1", server.url);
    assert_eq!(links, vec![expected.clone()], "{}", up.all());

    program(&p, "second");
    let preview = p.ok(&["preview"]).await;
    let preview_links = permalinks(&preview.all());
    assert_eq!(preview_links.len(), 1, "{}", preview.all());
    assert!(
        preview_links[0].starts_with(&format!("{}/organization/web/dev/previews/", server.url)),
        "{preview_links:?}"
    );

    let ls = p.ok(&["stack", "ls", "--json"]).await;
    let stacks: Value = serde_json::from_str(&ls.stdout).expect("stack ls --json");
    let stack_url = stacks[0]["url"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        stack_url,
        format!("{}/organization/web/dev", server.url),
        "{}",
        ls.stdout
    );

    let info = p.ok(&["stack"]).await;
    assert!(
        info.stdout
            .contains(&format!("More information at: {stack_url}")),
        "{}",
        info.all()
    );

    // Without a session every page sends the browser to sign in, and back afterwards.
    let visitor = Console::new(&server.url, None);
    let r = visitor.get(&expected).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location.as_deref(),
        Some("/login?next=%2Forganization%2Fweb%2Fdev%2Fupdates%2F1")
    );

    let admin = Console::new(&server.url, Some(CLI_TOKEN));
    let update = admin.get(&expected).await;
    assert_eq!(update.status, 200, "{}", update.body);
    assert!(update.body.contains("succeeded"), "{}", update.body);
    assert!(
        update.body.contains("create pbtest:index:Item parent done"),
        "{}",
        update.body
    );

    let pv = admin.get(&preview_links[0]).await;
    assert_eq!(pv.status, 200, "{}", pv.body);
    assert!(pv.body.contains("(preview)"), "{}", pv.body);
    assert!(
        pv.body.contains("update pbtest:index:Item parent"),
        "{}",
        pv.body
    );

    let stack = admin.get(&stack_url).await;
    assert_eq!(stack.status, 200, "{}", stack.body);
    // The child is drawn inside its parent's node.
    let parent_at = stack
        .body
        .find("<strong>parent</strong>")
        .expect("parent node");
    let child_at = stack
        .body
        .find("<strong>child</strong>")
        .expect("child node");
    assert!(parent_at < child_at);
    assert!(
        stack.body.contains("nested-first"),
        "inputs and outputs inline"
    );
    assert!(stack.body.contains("[secret]"));

    // The links `pulumi whoami` (the org) and `pulumi login` (tokens) print.
    assert_eq!(
        admin
            .get(&format!("{}/organization", server.url))
            .await
            .status,
        200
    );
    let tokens = admin.get("/user/settings/tokens").await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert!(tokens.body.contains("Create token"), "{}", tokens.body);

    // A stack that reads this one's outputs links to it.
    let consumer = p.sibling("consumer");
    consumer.write_program(
        "  ref:\n    type: pulumi:pulumi:StackReference\n    properties:\n      name: organization/web/dev\n",
        "  fromDev: ${ref.outputs[\"plain\"]}\n",
    );
    let mut consumer = consumer;
    consumer.set_env(
        "PULUMI_CONSOLE_DOMAIN",
        &format!("127.0.0.1:{}", server.port),
    );
    consumer
        .ok(&["stack", "init", "organization/consumer/dev"])
        .await;
    consumer.ok(&["up", "--yes", "--skip-preview"]).await;
    let page = admin.get("/organization/consumer/dev").await;
    assert!(
        page.body
            .contains("<a href=\"/organization/web/dev\">organization/web/dev</a>"),
        "{}",
        page.body
    );
    let page = admin.get("/organization/web/dev/referenced-by").await;
    assert!(
        page.body
            .contains("<a href=\"/organization/consumer/dev\">organization/consumer/dev</a>"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn secrets_reach_a_page_only_when_asked_for() {
    let tc = require_cli!();
    let server = ServerProcess::start(&[]).await;
    let p = project(&tc, &server).await;
    program(&p, "one");
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let export = p.ok(&["stack", "export"]).await;
    let ciphertext = {
        let v: Value = serde_json::from_str(&export.stdout).unwrap();
        let res = v["deployment"]["resources"].as_array().unwrap().clone();
        res.iter()
            .find_map(|r| r["outputs"]["pw"]["ciphertext"].as_str().map(str::to_owned))
            .expect("the secret output is stored encrypted")
    };
    let admin = Console::new(&server.url, Some(CLI_TOKEN));
    for path in [
        "/organization/web/dev",
        "/organization/web/dev/updates/1",
        "/organization/web/dev/changes?from=1&to=1",
    ] {
        let page = admin.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(!page.body.contains(SECRET), "{path} shows the secret");
        assert!(
            !page.body.contains(&ciphertext),
            "{path} shows the ciphertext"
        );
    }
    // Unless the viewer asks: then the value is shown, and the audit log records it.
    let shown = admin.get("/organization/web/dev?show-secrets=1").await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains(SECRET), "{}", shown.body);
    assert!(!shown.body.contains(&ciphertext));
    let audit = common::db_audit(&server.db()).await;
    assert!(
        audit.iter().any(|e| e["event"] == "secrets-decrypted"
            && e["description"]
                .as_str()
                .unwrap_or("")
                .contains("web console")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_reader_cannot_act_and_forms_need_the_csrf_token() {
    let tc = require_cli!();
    let server = ServerProcess::start(&[]).await;
    let db = server.db();
    let p = project(&tc, &server).await;
    program(&p, "v1");
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let v1 = p.ok(&["stack", "export"]).await.stdout;
    program(&p, "v2");
    p.ok(&["up", "--yes", "--skip-preview"]).await;

    // A member of the organization whose default permission is read.
    pb_ok(
        &db,
        false,
        &["orgs", "set-default-permission", "organization", "read"],
    )
    .await;
    pb_ok(&db, false, &["orgs", "set-member", "organization", "rita"]).await;
    let rita_token = user_token(&db, "rita").await;
    let rita = Console::new(&server.url, Some(&rita_token));
    let page = rita.get("/organization/web/dev").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("v2"), "a reader reads the stack");
    for action in ["Roll back", "Delete stack", "Unlock"] {
        assert!(!page.body.contains(action), "a reader is offered {action}");
    }
    let csrf = page.csrf(); // the sign-out form's
    for action in ["rollback", "delete", "unlock"] {
        let r = rita
            .post(
                &format!("/organization/web/dev/{action}"),
                &[("csrf", &csrf), ("version", "1"), ("confirm", "yes")],
            )
            .await;
        assert_eq!(r.status, 403, "{action}: {}", r.body);
    }

    // Nor does a reader see the organization's admin pages (members may list members, as
    // with the API).
    assert_eq!(
        rita.get("/console/orgs/organization/members").await.status,
        200
    );
    for admin_page in ["audit", "audit.csv", "webhooks"] {
        let r = rita
            .get(&format!("/console/orgs/organization/{admin_page}"))
            .await;
        assert_eq!(r.status, 403, "{admin_page}: {}", r.body);
    }
    let r = rita
        .post(
            "/console/orgs/organization/webhooks",
            &[
                ("csrf", &csrf),
                ("display_name", "x"),
                ("payload_url", "https://example.com/"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // The admin, without the CSRF token or with another session's: refused, nothing done.
    let admin = Console::new(&server.url, Some(CLI_TOKEN));
    for bad in ["", csrf.as_str()] {
        let r = admin
            .post(
                "/organization/web/dev/rollback",
                &[("csrf", bad), ("version", "1"), ("confirm", "yes")],
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
    }
    assert_eq!(
        p.ok(&["stack", "history", "--json"])
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // With it, the rollback asks first, then makes version 1's state the newest.
    let page = admin.get("/organization/web/dev").await;
    assert!(page.body.contains("Roll back to this"), "{}", page.body);
    let csrf = page.csrf();
    let ask = admin
        .post(
            "/organization/web/dev/rollback",
            &[("csrf", &csrf), ("version", "1")],
        )
        .await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("Roll back to version 1"), "{}", ask.body);
    let done = admin
        .post(
            "/organization/web/dev/rollback",
            &[("csrf", &csrf), ("version", "1"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let history = p.ok(&["stack", "history", "--json"]).await.json();
    assert_eq!(history.as_array().unwrap().len(), 3, "{history}");
    assert_eq!(history[0]["message"], "rollback to version 1", "{history}");
    let now: Value = serde_json::from_str(&p.ok(&["stack", "export"]).await.stdout).unwrap();
    let then: Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(
        now["deployment"]["resources"],
        then["deployment"]["resources"]
    );
    // The CLI carries on from the rolled-back state.
    p.ok(&["up", "--yes", "--skip-preview"]).await;

    // The audit log has it, and its CSV export too.
    let csv = admin
        .get("/console/orgs/organization/audit.csv?event=stack-rolled-back")
        .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    let mut lines = csv.body.lines();
    assert!(
        lines
            .next()
            .unwrap_or_default()
            .starts_with("Timestamp,Event,Description")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{}", csv.body);
    assert!(rows[0].contains("stack-rolled-back"), "{}", csv.body);
}

#[tokio::test]
async fn unlock_and_delete_from_the_console() {
    let server = ServerProcess::start(&[]).await;
    let api = server.api();
    api.create_stack("proj", "busy").await.ok();
    api.create_stack("proj", "empty").await.ok();
    api.create_stack("proj", "full").await.ok();
    let full = common::stack_path("proj", "full");
    api.post_gz(&format!("{full}/import"), common::deployment(2, "a"))
        .await
        .ok();
    let busy = common::stack_path("proj", "busy");
    let (id, _lease, _) = api.begin(&busy, "update", false).await;

    let admin = Console::new(&server.url, Some(CLI_TOKEN));
    let list = admin.get("/organization").await;
    assert!(
        list.body.contains(" (update)</span>"),
        "the list names the lock: {}",
        list.body
    );
    let page = admin.get("/organization/proj/busy").await;
    assert!(page.body.contains("Locked: update"), "{}", page.body);
    let csrf = page.csrf();
    let ask = admin
        .post("/organization/proj/busy/unlock", &[("csrf", &csrf)])
        .await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("Cancel the update"), "{}", ask.body);
    let done = admin
        .post(
            "/organization/proj/busy/unlock",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let status = api.get(&format!("{busy}/update/{id}")).await.ok().json();
    // The API reports a cancelled update as failed, as the service does.
    assert_eq!(status["status"], "failed", "{status}");
    assert!(
        !admin
            .get("/organization/proj/busy")
            .await
            .body
            .contains("Locked:")
    );

    // Deleting: refused while the stack has resources (as `pulumi stack rm` without
    // --force), done for an empty one.
    let refused = admin
        .post(
            "/organization/proj/full/delete",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("Stack still contains resources"),
        "{}",
        refused.body
    );
    api.get(&full).await.ok();
    let done = admin
        .post(
            "/organization/proj/empty/delete",
            &[("csrf", &csrf), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/organization"));
    api.get(&common::stack_path("proj", "empty"))
        .await
        .error(404);
}

#[tokio::test]
async fn members_and_machine_tokens_from_the_console() {
    let server = ServerProcess::start(&[]).await;
    let db = server.db();
    pb_ok(&db, false, &["teams", "create", "organization/ops"]).await;
    pb_ok(&db, false, &["orgs", "set-member", "organization", "rita"]).await;
    let rita_token = user_token(&db, "rita").await;
    let admin = Console::new(&server.url, Some(CLI_TOKEN));
    let base = "/console/orgs/organization";

    // Members: add, change the role, remove.
    let page = admin.get(&format!("{base}/members")).await;
    let csrf = page.csrf();
    let r = admin
        .post(
            &format!("{base}/members"),
            &[("csrf", &csrf), ("login", "bob"), ("role", "member")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = admin
        .post(
            &format!("{base}/members/bob/role"),
            &[("csrf", &csrf), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.get(&format!("{base}/members")).await;
    assert!(
        page.body
            .contains("<option value=\"admin\" selected>admin</option>"),
        "{}",
        page.body
    );
    let r = admin
        .post(&format!("{base}/members/bob/remove"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        !admin
            .get(&format!("{base}/members"))
            .await
            .body
            .contains("data-login=\"bob\"")
    );

    // An organization token and a team token, each shown once and working until revoked.
    let api_user = |token: String| {
        let url = server.url.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{url}/api/user"))
                .header("authorization", format!("token {token}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for (action, expected_user) in [
        (format!("{base}/tokens"), "organization"),
        (format!("{base}/teams/ops/tokens"), "team-account:ops"),
    ] {
        let r = admin
            .post(
                &action,
                &[
                    ("csrf", &csrf),
                    ("name", "ci"),
                    ("description", "from the console"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let at = r.body.find("id=\"new-token\">").expect("the new token") + 15;
        let token = r.body[at..at + r.body[at..].find('<').unwrap()].to_owned();
        assert!(token.starts_with("pul-"), "{token}");
        assert_eq!(api_user(token.clone()).await, 200);
        let user = reqwest::Client::new()
            .get(format!("{}/api/user", server.url))
            .header("authorization", format!("token {token}"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(user["githubLogin"], expected_user, "{user}");
        // Revoke it from the form on the tokens page.
        let page = admin.get(&format!("{base}/tokens")).await;
        let marker = format!("{action}/");
        let at = page.body.find(&marker).expect("a revoke form") + marker.len();
        let id = &page.body[at..at + page.body[at..].find('/').unwrap()];
        let r = admin
            .post(&format!("{action}/{id}/revoke"), &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(api_user(token).await, 401);
    }

    // A member (rita) reads the members but is offered, and allowed, none of the changes.
    let rita = Console::new(&server.url, Some(&rita_token));
    let page = rita.get(&format!("{base}/members")).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("Add member") && !page.body.contains("Remove"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    for (path, fields) in [
        (
            format!("{base}/members"),
            vec![("login", "eve"), ("role", "admin")],
        ),
        (format!("{base}/members/rita/role"), vec![("role", "admin")]),
        (format!("{base}/tokens"), vec![("name", "x")]),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend(fields);
        let r = rita.post(&path, &f).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    assert_eq!(rita.get(&format!("{base}/tokens")).await.status, 403);
}

#[tokio::test]
async fn stack_webhooks_and_the_organizations_from_the_console() {
    let server = ServerProcess::start(&["--webhooks-allow-loopback"]).await;
    let api = server.api();
    api.create_stack("proj", "dev").await.ok();
    let admin = Console::new(&server.url, Some(CLI_TOKEN));
    let home = admin.get("/").await;
    assert!(
        home.body
            .contains("<a href=\"/organization\">organization</a>"),
        "{}",
        home.body
    );

    let receiver = common::receiver::Receiver::start().await;
    let base = "/organization/proj/dev/webhooks";
    let page = admin.get("/organization/proj/dev").await;
    assert!(
        page.body.contains(&format!("href=\"{base}\"")),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let made = admin
        .post(
            base,
            &[
                ("csrf", &csrf),
                ("display_name", "deploys"),
                ("payload_url", &receiver.url),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let hook = made.location.expect("the new hook's page");
    let r = admin
        .post(&format!("{hook}/ping"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    receiver
        .wait_for("a ping", |r| r.iter().any(|x| x.kind() == "ping"))
        .await;
    let shown = admin.get(&hook).await;
    assert!(shown.body.contains("ping"), "{}", shown.body);
    // The API sees the stack's hook the console made.
    let hooks = api
        .get("/api/stacks/organization/proj/dev/hooks")
        .await
        .ok()
        .json();
    assert_eq!(hooks[0]["displayName"], "deploys", "{hooks}");
    let r = admin
        .post(&format!("{hook}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303);
    let hooks = api
        .get("/api/stacks/organization/proj/dev/hooks")
        .await
        .ok()
        .json();
    assert_eq!(hooks.as_array().map(Vec::len), Some(0), "{hooks}");
}
