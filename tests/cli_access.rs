//! Identity through the real `pulumi` CLI: browser login (the test plays the browser at a
//! real OpenID provider), `pulumi login --oidc-token` for organization, team and personal
//! tokens, a refresh on an expired access token, `whoami -v`, and the `org member` and
//! `org role` commands.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cli::*;
use common::oidc::{Browser, Provider, user};
use common::ops::pb_ok;
use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// A directory with an `xdg-open` that records the URL the CLI wants a browser to open.
fn fake_browser(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let script = bin.join("xdg-open");
    let record = dir.join("opened.txt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
            record.display()
        ),
    )
    .expect("xdg-open");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// Plays the terminal `script` gives the CLI: answers its queries (background colour,
/// cursor position) as a terminal would, and presses Enter (a carriage return, in raw mode)
/// at "Press <ENTER> to log in with your browser". Returns everything the CLI printed.
async fn play_terminal(
    mut stdin: tokio::process::ChildStdin,
    mut stdout: tokio::process::ChildStdout,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let (mut colours, mut foregrounds, mut cursors, mut prompts) = (0, 0, 0, 0);
    loop {
        let n = match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        let count = |needle: &str| text.matches(needle).count();
        while colours < count("\x1b]11;?") {
            colours += 1;
            let _ = stdin.write_all(b"\x1b]11;rgb:0000/0000/0000\x1b\\").await;
        }
        while foregrounds < count("\x1b]10;?") {
            foregrounds += 1;
            let _ = stdin.write_all(b"\x1b]10;rgb:ffff/ffff/ffff\x1b\\").await;
        }
        while cursors < count("\x1b[6n") {
            cursors += 1;
            let _ = stdin.write_all(b"\x1b[1;1R").await;
        }
        // "paste an access token" (3.250 on), "hit <ENTER> to log in using your browser" (before).
        while prompts < count("access token") + count("<ENTER>") {
            prompts += 1;
            let _ = stdin.write_all(b"\r").await;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

async fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Some(line) = s.lines().next()
        {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "the CLI never opened a browser");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn script_available() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn browser_login_then_whoami_and_a_stack() {
    let tc = require_cli!();
    let install = require_oidc!();
    if !script_available() {
        eprintln!("SKIPPED: no `script` (util-linux) to give the CLI a terminal");
        return;
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let idp = Provider::start(
        install,
        &format!("{url}/api/auth/callback"),
        json!({"alice": user(&["devs"])}),
        &[],
    )
    .await;
    let srv = ServerProcess::start_at(
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
            "devs=org:acme:member",
        ],
    )
    .await;
    pb_ok(&srv.db(), false, &["orgs", "create", "acme"]).await;
    // A stack alice will see once her group makes her a member of acme (a user with none is
    // offered a first project, a prompt this test has no business answering).
    srv.api()
        .post("/api/stacks/acme/proj", json!({"stackName": "existing"}))
        .await
        .ok();

    let mut p = Project::bare(&tc, &url, "proj");
    let bin = fake_browser(p.home.path());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    p.set_env("PATH", &path);
    // The console is pbackend itself: `/cli-login` on the API's host.
    p.set_env("PULUMI_CONSOLE_DOMAIN", &format!("127.0.0.1:{port}"));
    p.set_env("TERM", "xterm");
    // The CLI logs in with a browser only on a terminal: `script` gives it one.
    let line = format!("{} login {url}", tc.pulumi.display());
    let mut login = p
        .command_via(Path::new("script"), &["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("script runs");
    let stdin = login.stdin.take().expect("stdin");
    let stdout = login.stdout.take().expect("stdout");
    let terminal = tokio::spawn(play_terminal(stdin, stdout));
    let record = p.home.path().join("opened.txt");
    let opened = wait_for_file(&record).await;
    assert!(opened.starts_with(&format!("{url}/cli-login?")), "{opened}");
    let landed = Browser::new()
        .sign_in(&opened, "alice", &[&idp.issuer])
        .await;
    // The browser arrives at the CLI's own port, which sends it on to the welcome page.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&landed)
        .send()
        .await
        .expect("the CLI's callback");
    assert_eq!(r.status().as_u16(), 307, "{landed}");
    let finished = tokio::time::timeout(Duration::from_secs(60), login.wait()).await;
    if finished.is_err() {
        let _ = login.kill().await;
    }
    let text = terminal.await.expect("terminal");
    let status = finished
        .unwrap_or_else(|_| panic!("pulumi login did not finish:\n{text}"))
        .expect("login status");
    assert!(status.success(), "pulumi login failed:\n{text}");
    assert!(text.contains("Logged in to"), "{text}");

    let who = p.ok(&["whoami", "-v"]).await.stdout;
    assert!(who.contains("User: alice"), "{who}");
    assert!(who.contains("acme"), "{who}");
    assert!(who.contains("Token type: personal"), "{who}");
    // A member of acme (default: write) makes a stack there.
    p.ok(&["stack", "init", "acme/dev"]).await;
    let ls = p.ok(&["stack", "ls", "--all"]).await.stdout;
    assert!(ls.contains("dev"), "{ls}");
}

#[tokio::test]
async fn oidc_token_logins_for_organization_team_and_personal_tokens() {
    let tc = require_cli!();
    let install = require_oidc!();
    if !version_at_least(&tc.version, 3, 210) {
        eprintln!("SKIPPED: pulumi {} has no --oidc-token", tc.version);
        return;
    }
    let idp = Provider::start(
        install,
        "http://127.0.0.1:9/unused",
        json!({"alice": user(&[]), "bob": user(&[])}),
        &[],
    )
    .await;
    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    pb_ok(&db, false, &["orgs", "create", "acme"]).await;
    pb_ok(&db, false, &["teams", "create", "acme/ci"]).await;
    pb_ok(&db, false, &["orgs", "set-member", "acme", "alice"]).await;
    for args in [
        vec!["--token-kind", "organization"],
        vec!["--token-kind", "team", "--team", "ci"],
        vec![
            "--token-kind",
            "personal",
            "--user",
            "alice",
            "--rule",
            "sub=alice",
        ],
    ] {
        let mut full = vec![
            "oidc",
            "add",
            "--org",
            "acme",
            "--issuer",
            &idp.issuer,
            "--audience",
            "ci",
        ];
        full.extend(args);
        pb_ok(&db, false, &full).await;
    }
    let alice = idp.ci_id_token("alice").await;
    for (flags, want) in [
        (vec!["--oidc-org", "acme"], "Token type: organization: acme"),
        (
            vec!["--oidc-org", "acme", "--oidc-team", "ci"],
            "Token type: team: ci",
        ),
        // The CLI records an expiry for every exchanged token, so it cannot tell a personal
        // one from an unknown kind ("unknown" against any service); the user is what counts.
        (
            vec!["--oidc-org", "acme", "--oidc-user", "alice"],
            "User: alice",
        ),
    ] {
        let p = Project::bare(&tc, &srv.url, "proj");
        let mut args = vec!["login", srv.url.as_str(), "--oidc-token", alice.as_str()];
        args.extend(flags.iter().copied());
        args.extend(["--oidc-expiration", "1h"]);
        p.ok(&args).await;
        let who = p.ok(&["whoami", "-v"]).await.stdout;
        assert!(who.contains(want), "{flags:?}: {who}");
        p.ok(&["stack", "ls", "--all"]).await;
    }
    // Bob's token does not satisfy alice's policy: the CLI shows the server's reason.
    let bob = idp.ci_id_token("bob").await;
    let p = Project::bare(&tc, &srv.url, "proj");
    let out = p
        .fails(&[
            "login",
            &srv.url,
            "--oidc-token",
            &bob,
            "--oidc-org",
            "acme",
            "--oidc-user",
            "alice",
        ])
        .await;
    assert!(
        out.stderr.contains("OIDC token exchange failed"),
        "{}",
        out.all()
    );
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_by_the_cli() {
    let tc = require_cli!();
    if !version_at_least(&tc.version, 3, 250) {
        eprintln!("SKIPPED: pulumi {} does not refresh tokens", tc.version);
        return;
    }
    let srv = ServerProcess::start(&[]).await;
    let out = pb_ok(
        &srv.db(),
        false,
        &[
            "tokens",
            "create",
            "--user",
            "alice",
            "--refresh",
            "--expires",
            "2s",
            "--output",
            "json",
        ],
    )
    .await;
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let (access, refresh) = (
        v["accessToken"].as_str().unwrap().to_owned(),
        v["refreshToken"].as_str().unwrap().to_owned(),
    );
    let p = Project::bare(&tc, &srv.url, "proj");
    let now = time_now_rfc3339();
    let creds = json!({
        "current": srv.url,
        "accessTokens": {srv.url.clone(): access},
        "accounts": {srv.url.clone(): {
            "accessToken": access, "refreshToken": refresh, "username": "alice",
            "organizations": [], "lastValidatedAt": now}}
    });
    let file = p.home.path().join("credentials.json");
    std::fs::write(&file, creds.to_string()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    Api::new(&srv.url, &access)
        .get("/api/user")
        .await
        .error(401);

    // The first call gets 401; the CLI refreshes at /api/oauth/token and retries.
    p.ok(&["stack", "ls", "--all"]).await;
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let stored = after["accounts"][&srv.url]["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!stored.is_empty() && stored != access, "{after}");
    Api::new(&srv.url, &stored).get("/api/user").await.ok();
}

fn time_now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format the time")
}

#[tokio::test]
async fn org_member_and_org_role_commands() {
    let tc = require_cli!();
    if !version_at_least(&tc.version, 3, 250) {
        eprintln!(
            "SKIPPED: pulumi {} has no org member/role commands",
            tc.version
        );
        return;
    }
    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    pb_ok(&db, false, &["orgs", "create", "acme"]).await;
    pb_ok(
        &db,
        false,
        &["orgs", "set-member", "acme", "carol", "--role", "admin"],
    )
    .await;
    pb_ok(&db, false, &["orgs", "set-member", "acme", "alice"]).await;
    pb_ok(&db, false, &["teams", "create", "acme/ci"]).await;
    let carol = pb_ok(&db, false, &["tokens", "create", "--user", "carol"])
        .await
        .stdout
        .trim()
        .to_owned();
    let p = Project::logged_in_as(&tc, &srv.url, "proj", &carol, "acme").await;

    let list = p
        .ok(&["org", "member", "list", "--org", "acme"])
        .await
        .stdout;
    assert!(list.contains("alice") && list.contains("carol"), "{list}");
    let json_list = p
        .ok(&["org", "member", "list", "--org", "acme", "--output", "json"])
        .await
        .stdout;
    let v: Value = serde_json::from_str(&json_list).expect("member JSON");
    assert_eq!(v["count"], 2, "{v}");

    p.ok(&[
        "org", "member", "edit", "alice", "--role", "admin", "--org", "acme",
    ])
    .await;
    let members = pb_ok(&db, false, &["orgs", "members", "acme", "--output", "json"])
        .await
        .stdout;
    let v: Value = serde_json::from_str(&members).unwrap();
    let alice = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["login"] == "alice")
        .expect("alice")
        .clone();
    assert_eq!(alice["role"], "admin", "{alice}");

    let details = p.path().join("reader.json");
    std::fs::write(
        &details,
        json!({"__type": "PermissionDescriptorAllow", "permissions": ["stack:read"]}).to_string(),
    )
    .unwrap();
    let created = p
        .ok(&[
            "org",
            "role",
            "new",
            "auditor",
            details.to_str().unwrap(),
            "--org",
            "acme",
            "--description",
            "reads stacks",
            "--output",
            "json",
        ])
        .await
        .stdout;
    let role: Value = serde_json::from_str(&created).expect("role JSON");
    let id = role["role"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no role id in {created}"))
        .to_owned();
    let list = p.ok(&["org", "role", "list", "--org", "acme"]).await.stdout;
    assert!(list.contains("auditor"), "{list}");
    p.ok(&[
        "org",
        "role",
        "edit",
        &id,
        "--description",
        "reads every stack",
        "--org",
        "acme",
    ])
    .await;
    let out = p
        .ok(&["org", "role", "assign", &id, "ci", "--org", "acme"])
        .await;
    assert!(out.stdout.contains("Assigned role"), "{}", out.all());
    let out = p
        .ok(&[
            "org", "role", "remove", &id, "--org", "acme", "--yes", "--force",
        ])
        .await;
    assert!(out.stdout.contains("Removed role"), "{}", out.all());

    let out = p
        .ok(&["org", "member", "remove", "alice", "--org", "acme", "--yes"])
        .await;
    assert!(
        out.stdout
            .contains("Removed member alice from organization acme."),
        "{}",
        out.all()
    );
    // A member who is no admin is refused, with the server's reason.
    pb_ok(&db, false, &["orgs", "set-member", "acme", "dan"]).await;
    let dan = pb_ok(&db, false, &["tokens", "create", "--user", "dan"])
        .await
        .stdout
        .trim()
        .to_owned();
    let q = Project::logged_in_as(&tc, &srv.url, "proj", &dan, "acme").await;
    let out = q
        .fails(&[
            "org", "member", "edit", "carol", "--role", "member", "--org", "acme",
        ])
        .await;
    assert!(out.all().contains("org_member:update"), "{}", out.all());
}

#[tokio::test]
async fn two_tenants_with_the_real_cli() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    pb_ok(&db, false, &["orgs", "create", "acme"]).await;
    pb_ok(
        &db,
        false,
        &["orgs", "set-default-permission", "acme", "none"],
    )
    .await;
    let mut people = Vec::new();
    for (user, team) in [("alice", "red"), ("bob", "blue")] {
        pb_ok(&db, false, &["orgs", "set-member", "acme", user]).await;
        let t = format!("acme/{team}");
        pb_ok(&db, false, &["teams", "create", &t]).await;
        pb_ok(&db, false, &["teams", "add-member", &t, user]).await;
        let token = pb_ok(&db, false, &["tokens", "create", "--user", user])
            .await
            .stdout
            .trim()
            .to_owned();
        people.push(Project::logged_in_as(&tc, &srv.url, "proj", &token, "acme").await);
    }
    let (alice, bob) = (&people[0], &people[1]);
    alice.ok(&["stack", "init", "acme/proj/a"]).await;
    alice
        .ok(&[
            "config",
            "set",
            "--secret",
            "token",
            "hunter2",
            "--stack",
            "acme/proj/a",
        ])
        .await;
    alice.ok(&["up", "--yes", "--stack", "acme/proj/a"]).await;
    bob.ok(&["stack", "init", "acme/proj/b"]).await;

    let names = |ls: &str| -> Vec<String> {
        ls.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            // Older CLIs print the default organization's stacks without it.
            .map(|n| {
                let n = n.trim_end_matches('*');
                n.strip_prefix("acme/").unwrap_or(n).to_owned()
            })
            .collect()
    };
    let ls = alice.ok(&["stack", "ls", "--all"]).await.stdout;
    assert_eq!(names(&ls), ["a"], "{ls}");
    let ls = bob.ok(&["stack", "ls", "--all"]).await.stdout;
    assert_eq!(names(&ls), ["b"], "{ls}");

    // Bob can neither read nor change Alice's stack; the CLI shows why.
    for args in [
        vec!["stack", "export", "--stack", "acme/proj/a"],
        vec![
            "stack",
            "output",
            "--show-secrets",
            "--stack",
            "acme/proj/a",
        ],
        vec!["config", "get", "token", "--stack", "acme/proj/a"],
        vec!["cancel", "--yes", "--stack", "acme/proj/a"],
        vec!["stack", "rm", "--yes", "--force", "--stack", "acme/proj/a"],
    ] {
        let out = bob.fails(&args).await;
        let all = out.all();
        assert!(
            all.contains("403") || all.contains("permission") || all.contains("Forbidden"),
            "{args:?}: {all}"
        );
    }
    // Alice still has everything.
    alice
        .ok(&["stack", "export", "--stack", "acme/proj/a"])
        .await;
    let secret = alice
        .ok(&["config", "get", "token", "--stack", "acme/proj/a"])
        .await
        .stdout;
    assert_eq!(secret.trim(), "hunter2");
}
