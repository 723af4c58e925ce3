//! The web console in a real browser (headless Chromium over WebDriver), after real
//! `pulumi` runs: sign in with a token, open the permalink `pulumi up` printed, read the
//! resource tree and outputs, compare two versions, roll back (checked with `pulumi stack
//! export`), and make and revoke a token (checked with the CLI). Screenshots are kept with
//! the test's artifacts (`target/tmp/console-screenshots/`).

mod common;

use common::browser::Browser;
use common::cli::*;
use common::ops::{pb_ok, user_token};
use fantoccini::Locator;
use serde_json::Value;

/// The text of the element `css` names, waiting for it to appear (a page still loading).
async fn text(b: &Browser, css: &str) -> String {
    b.client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn click(b: &Browser, css: &str) {
    b.client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(b: &Browser, css: &str, value: &str) {
    b.client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(value)
        .await
        .expect("send keys");
}

/// Waits for the browser to arrive at `url` (a click returns before the page it leads to
/// has loaded).
async fn arrives(b: &Browser, url: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let now = b.client.current_url().await.expect("url");
        if now.as_str() == url {
            return;
        }
        if std::time::Instant::now() > deadline {
            b.screenshot("stuck").await;
            panic!(
                "the browser is at {now}, not {url}:\n{}",
                b.client.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn program(p: &Project, value: &str) {
    p.write_program(
        &format!(
            "  parent:\n    type: pbtest:index:Item\n    properties:\n      value: {value}\n  \
             child:\n    type: pbtest:index:Item\n    properties:\n      value: nested-{value}\n    \
             options:\n      parent: ${{parent}}\n"
        ),
        "  plain: ${parent.value}\n  pw:\n    fn::secret: browser-secret-plaintext\n",
    );
}

#[tokio::test]
async fn a_person_reads_compares_rolls_back_and_manages_tokens_in_a_browser() {
    let tc = require_cli!();
    let Some(b) = Browser::start().await else {
        return;
    };
    let server = ServerProcess::start(&["--webhooks-allow-loopback"]).await;
    let db = server.db();
    pb_ok(
        &db,
        false,
        &[
            "orgs",
            "set-member",
            "organization",
            "alice",
            "--role",
            "admin",
        ],
    )
    .await;
    let alice = user_token(&db, "alice").await;

    let mut p = Project::logged_in_as(&tc, &server.url, "web", &alice, "organization").await;
    p.set_env(
        "PULUMI_CONSOLE_DOMAIN",
        &format!("127.0.0.1:{}", server.port),
    );
    p.ok(&["stack", "init", "organization/web/dev"]).await;
    program(&p, "first");
    let up = p.ok(&["up", "--yes", "--skip-preview"]).await.all();
    let permalink = up
        .lines()
        .find_map(|l| {
            l.split_once("View Live: ")
                .map(|(_, u)| u.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no permalink in:\n{up}"));
    program(&p, "second");
    p.ok(&["up", "--yes", "--skip-preview"]).await;

    // The permalink asks for a session first, then opens.
    b.client.goto(&permalink).await.expect("goto permalink");
    assert!(
        b.client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/login")
    );
    b.screenshot("login").await;
    type_into(&b, "#token", &alice).await;
    click(&b, "input[type=submit]").await;
    arrives(&b, &permalink).await;
    assert_eq!(text(&b, "#result").await, "succeeded");
    let log = text(&b, "#log").await;
    assert!(log.contains("create pbtest:index:Item child done"), "{log}");
    b.screenshot("update").await;

    // The stack: the tree by parent, outputs with the secret masked.
    b.client
        .goto(&format!("{}/organization/web/dev", server.url))
        .await
        .unwrap();
    let tree = text(&b, "#resources").await;
    assert!(tree.contains("parent") && tree.contains("child"), "{tree}");
    // The child's row comes right after its parent's, one level deeper.
    let depth = |suffix: &'static str| {
        let b = &b;
        async move {
            b.client
                .find(Locator::Css(&format!("tr[data-urn$='{suffix}']")))
                .await
                .expect("a resource row")
                .attr("data-depth")
                .await
                .unwrap()
                .unwrap_or_default()
                .parse::<u32>()
                .unwrap()
        }
    };
    assert_eq!(depth("::child").await, depth("::parent").await + 1);
    click(&b, "tr[data-urn$='::child'] a").await;
    let inputs = text(&b, "main").await;
    assert!(
        inputs.contains("nested-second") && inputs.contains("Parent"),
        "{inputs}"
    );
    b.client.back().await.unwrap();
    let outputs = text(&b, "#outputs").await;
    assert!(
        outputs.contains("second") && outputs.contains("[secret]"),
        "{outputs}"
    );
    assert!(
        !b.client
            .source()
            .await
            .unwrap()
            .contains("browser-secret-plaintext")
    );
    b.screenshot("stack").await;

    // What changed from version 1 to 2, property by property.
    b.client
        .goto(&format!(
            "{}/organization/web/dev/changes?from=1&to=2",
            server.url
        ))
        .await
        .unwrap();
    let changes = text(&b, "#changes").await;
    assert!(
        changes.contains("inputs.value") && changes.contains("first") && changes.contains("second"),
        "{changes}"
    );
    b.screenshot("changes").await;

    // Roll back to version 1 (asked, then done), and the CLI sees version 1's state.
    b.client
        .goto(&format!("{}/organization/web/dev", server.url))
        .await
        .unwrap();
    click(&b, "button[aria-label='Roll back to version 1']").await;
    // The confirmation page (its form alone carries `confirm`).
    b.client
        .wait()
        .for_element(Locator::Css("input[name=confirm]"))
        .await
        .expect("the confirmation page");
    click(&b, "form:has(input[name=confirm]) button.danger").await;
    arrives(&b, &format!("{}/organization/web/dev", server.url)).await;
    let exported: Value = serde_json::from_str(&p.ok(&["stack", "export"]).await.stdout).unwrap();
    let values: Vec<&str> = exported["deployment"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["inputs"]["value"].as_str())
        .collect();
    assert_eq!(values, vec!["first", "nested-first"], "{exported}");

    // The audit log has the rollback, by alice.
    b.client
        .goto(&format!("{}/organization", server.url))
        .await
        .unwrap();
    click(&b, "a[href='/console/orgs/organization/audit']").await;
    type_into(&b, "input[name=event]", "stack-rolled-back").await;
    click(&b, "form[role=search] input[type=submit]").await;
    arrives(
        &b,
        &format!(
            "{}/console/orgs/organization/audit?event=stack-rolled-back&user=",
            server.url
        ),
    )
    .await;
    let audit = text(&b, "#audit").await;
    assert!(
        audit.contains("rolled back to version 1") && audit.contains("alice"),
        "{audit}"
    );
    b.screenshot("audit").await;

    // A webhook made here, pinged here: the delivery's request and response are shown.
    let receiver = common::receiver::Receiver::start().await;
    b.client
        .goto(&format!(
            "{}/console/orgs/organization/webhooks",
            server.url
        ))
        .await
        .unwrap();
    type_into(&b, "#display_name", "chat").await;
    type_into(&b, "#payload_url", &receiver.url).await;
    type_into(&b, "#secret", "s3cret").await;
    click(&b, "form.card input[type=submit]").await;
    click(&b, "form[action$='/ping'] button").await;
    let delivery = text(&b, "details.delivery summary").await;
    assert!(
        delivery.contains("200") && delivery.contains("ping"),
        "{delivery}"
    );
    let got = receiver
        .wait_for("a ping", |r| r.iter().any(|x| x.kind() == "ping"))
        .await;
    assert!(common::receiver::signature_ok(&got[0], "s3cret"));
    assert!(
        !b.client.source().await.unwrap().contains("s3cret"),
        "the secret is never shown"
    );
    b.screenshot("webhook").await;

    // A token made here works for the CLI until it is revoked here.
    b.client
        .goto(&format!("{}/user/settings/tokens", server.url))
        .await
        .unwrap();
    type_into(&b, "#description", "made in the browser").await;
    click(&b, "form.card input[type=submit]").await;
    let token = text(&b, "#new-token").await.trim().to_owned();
    assert!(token.starts_with("pul-"), "{token}");
    let mut q = Project::bare(&tc, &server.url, "other");
    q.set_env("PULUMI_ACCESS_TOKEN", &token);
    q.unset.clear();
    q.ok(&["login", &server.url]).await;
    let who = q.ok(&["whoami"]).await;
    assert!(who.stdout.contains("alice"), "{}", who.all());
    let revoke = "button[aria-label='Revoke made in the browser']";
    click(&b, revoke).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while b.client.find(Locator::Css(revoke)).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the token is still offered for revoking"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    b.screenshot("tokens").await;
    let refused = q.fails(&["stack", "ls", "--all"]).await;
    assert!(
        refused.all().contains("requires logging in"),
        "{}",
        refused.all()
    );
    b.close().await;
}

#[tokio::test]
async fn a_person_signs_in_through_the_identity_provider() {
    let install = require_oidc!();
    let Some(b) = Browser::start().await else {
        return;
    };
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let idp = common::oidc::Provider::start(
        install,
        &format!("{url}/api/auth/callback"),
        serde_json::json!({"alice": common::oidc::user(&["devs"])}),
        &[],
    )
    .await;
    let server = ServerProcess::start_at(
        port,
        &[
            "--auth-mode",
            "oidc",
            "--public-url",
            &url,
            "--oidc-issuer",
            &idp.issuer,
            "--oidc-client-id",
            "pbackend",
            "--oidc-client-secret",
            "pbackend-secret",
            "--oidc-scopes",
            "profile email groups offline_access",
            "--group-map",
            "devs=org:acme:admin",
        ],
    )
    .await;
    pb_ok(&server.db(), false, &["orgs", "create", "acme"]).await;
    server
        .api()
        .post(
            "/api/stacks/acme/proj",
            serde_json::json!({"stackName": "dev"}),
        )
        .await
        .ok();

    // A link into the console, then the provider's login and consent screens, then back.
    let target = format!("{url}/acme/proj/dev");
    b.client.goto(&target).await.unwrap();
    click(&b, "a.sso").await;
    type_into(&b, "input[name=login]", "alice").await;
    type_into(&b, "input[name=password]", "any").await;
    click(&b, "button[type=submit]").await;
    // The consent screen (a form with prompt=consent), when the provider shows one.
    if b.client
        .wait()
        .at_most(std::time::Duration::from_secs(5))
        .for_element(Locator::Css("input[name=prompt][value=consent]"))
        .await
        .is_ok()
    {
        click(&b, "button[type=submit]").await;
    }
    arrives(&b, &target).await;
    let who = text(&b, "header .who").await;
    assert!(who.contains("alice"), "{who}");
    assert!(text(&b, "h1").await.contains("proj/dev"));
    b.screenshot("signed-in-by-provider").await;

    // Signing out ends it: the page asks to sign in again.
    click(&b, "header form button").await;
    b.client.goto(&target).await.unwrap();
    assert!(
        b.client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/login")
    );
    b.close().await;
}
