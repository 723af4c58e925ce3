//! Access control over HTTP: the route × role matrix (every route, every kind of caller,
//! generated from the server's own route table and written to `reference/`), and two
//! tenants who must not reach each other's stacks, secrets or ciphertexts.
//!
//! Users, organizations, teams and tokens are made the way an operator makes them: with
//! `pbackend users|orgs|teams|tokens` on the database of the running server.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::ops::{pb, pb_ok};
use common::raw::head_only_within;
use common::*;
use pbackend::engine::Permission;
use pbackend::server::routes::{Access, table};
use pbackend::types::StackPermission;
use serde_json::{Value, json};

const ACME: &str = "acme";

/// A caller of the matrix and what it should be allowed, written out here rather than
/// derived from the engine's rules, so the test checks them.
struct Role {
    name: &'static str,
    auth: Option<String>,
    /// None: the credential is refused outright (401).
    stack: Option<StackPermission>,
    org_admin: bool,
    /// A team token acts for its team: no stacks of its own.
    team_token: bool,
    /// Organization and team tokens: no personal tokens to manage.
    machine: bool,
}

struct Fixture {
    srv: TestServer,
    roles: Vec<Role>,
    update: String,
    role_id: String,
    org_token_id: String,
    team_token_id: String,
}

async fn token(db: &Path, args: &[&str]) -> Value {
    let mut full = vec!["tokens", "create"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--output", "json"]);
    let out = pb_ok(db, false, &full).await;
    serde_json::from_str(&out.stdout).expect("token JSON")
}

fn secret(v: &Value) -> String {
    v["token"].as_str().expect("token").to_owned()
}

/// Organization `acme` whose members get nothing by default; a stack `acme/proj/dev` with
/// one finished update, readable by team `readers`, writable by team `writers`, administered
/// by the collaborator `stackadmin`.
async fn fixture() -> Fixture {
    let srv = TestServer::start().await;
    let db = srv.db_path();
    pb_ok(&db, false, &["orgs", "create", ACME]).await;
    pb_ok(
        &db,
        false,
        &["orgs", "set-default-permission", ACME, "none"],
    )
    .await;
    for m in ["nobody", "reader", "writer", "stackadmin", "gone"] {
        pb_ok(&db, false, &["orgs", "set-member", ACME, m]).await;
    }
    pb_ok(
        &db,
        false,
        &["orgs", "set-member", ACME, "orgadmin", "--role", "admin"],
    )
    .await;
    for (team, member) in [("readers", "reader"), ("writers", "writer")] {
        let t = format!("{ACME}/{team}");
        pb_ok(&db, false, &["teams", "create", &t]).await;
        pb_ok(&db, false, &["teams", "add-member", &t, member]).await;
    }
    let mut users = BTreeMap::new();
    for u in ["nobody", "reader", "writer", "stackadmin", "orgadmin"] {
        users.insert(u, secret(&token(&db, &["--user", u]).await));
    }
    let org_token = token(&db, &["--org", ACME, "--name", "ci"]).await;
    let team_token = token(&db, &["--team", "acme/writers", "--name", "deploy"]).await;
    let gone = secret(&token(&db, &["--user", "gone"]).await);
    pb_ok(&db, false, &["tokens", "revoke", "gone"]).await;
    let expired = secret(&token(&db, &["--user", "reader", "--expires", "1s"]).await);

    let admin = Api::new(&srv.url, &users["orgadmin"]);
    admin
        .post(
            &format!("/api/stacks/{ACME}/proj"),
            json!({"stackName": "dev"}),
        )
        .await
        .ok();
    let dev = format!("/api/stacks/{ACME}/proj/dev");
    pb_ok(
        &db,
        false,
        &["teams", "grant", "acme/readers", "acme/proj/dev", "read"],
    )
    .await;
    pb_ok(
        &db,
        false,
        &["teams", "grant", "acme/writers", "acme/proj/dev", "write"],
    )
    .await;
    admin
        .patch(
            &format!("{dev}/collaborators/stackadmin"),
            json!({"permission": 103}),
        )
        .await
        .ok();
    let (update, lease, _) = admin.begin(&dev, "update", false).await;
    admin
        .lease(&lease)
        .post(
            &format!("{dev}/update/{update}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    let role_id = pb_ok(
        &db,
        false,
        &["roles", "create", ACME, "auditor", "--scopes", "stack:read"],
    )
    .await
    .stdout
    .trim()
    .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let auth = |t: &str| Some(format!("token {t}"));
    use StackPermission as P;
    let role = |name, auth, stack, org_admin, team_token| Role {
        name,
        auth,
        stack,
        org_admin,
        team_token,
        machine: name == "org token" || name == "team token",
    };
    let roles = vec![
        role("anonymous", None, None, false, false),
        role("revoked", auth(&gone), None, false, false),
        role("expired", auth(&expired), None, false, false),
        role(
            "no-access member",
            auth(&users["nobody"]),
            Some(P::None),
            false,
            false,
        ),
        role(
            "reader",
            auth(&users["reader"]),
            Some(P::Read),
            false,
            false,
        ),
        role(
            "writer",
            auth(&users["writer"]),
            Some(P::Write),
            false,
            false,
        ),
        role(
            "stack admin",
            auth(&users["stackadmin"]),
            Some(P::Admin),
            false,
            false,
        ),
        role(
            "org admin",
            auth(&users["orgadmin"]),
            Some(P::Admin),
            true,
            false,
        ),
        // An organization token is a member: the organization's default (none here).
        role(
            "org token",
            auth(&secret(&org_token)),
            Some(P::None),
            false,
            false,
        ),
        // A team token has its team's grants (writers: write).
        role(
            "team token",
            auth(&secret(&team_token)),
            Some(P::Write),
            false,
            true,
        ),
    ];
    Fixture {
        srv,
        roles,
        update,
        role_id,
        org_token_id: org_token["id"].as_str().unwrap_or_default().to_owned(),
        team_token_id: team_token["id"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Scopes members have without a custom role (the service's member role).
const MEMBER_SCOPES: &[&str] = &[
    "stack:create",
    "org_member:read",
    "team:list",
    "team:read",
    "role:read",
];

/// What the test expects: Some(true) allowed, Some(false) refused with 403, None 401.
fn expected(access: Access, role: &Role) -> Option<bool> {
    let Some(stack) = role.stack else {
        return match access {
            Access::Public => Some(true),
            _ => None,
        };
    };
    Some(match access {
        Access::Public => true,
        Access::Token(Permission::Authenticated) => true,
        Access::Token(Permission::Person) => !role.machine,
        Access::Token(Permission::Stack(need)) => stack >= need,
        Access::Token(Permission::Org(scope)) => {
            role.org_admin
                || (MEMBER_SCOPES.contains(&scope) && !(role.team_token && scope == "stack:create"))
        }
        Access::Lease | Access::LeaseOrFinished => {
            unreachable!("lease routes are not in the matrix")
        }
    })
}

fn fill(path: &str, f: &Fixture) -> String {
    path.replace("{org}", ACME)
        .replace("{project}", "proj")
        .replace("{stack}", "dev")
        .replace("{kind}", "update")
        .replace("{update}", &f.update)
        .replace("{version}", "1")
        .replace("{user}", "nobody")
        .replace("{team}", "writers")
        .replace("{role}", &f.role_id)
        .replace(
            "{token}",
            if path.contains("/teams/") {
                &f.team_token_id
            } else {
                &f.org_token_id
            },
        )
}

/// The database without the tokens' last-used times (recorded on use, at most once a minute,
/// whatever the outcome of the request).
async fn snapshot(f: &Fixture) -> String {
    db_snapshot(&f.srv.db_path())
        .await
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).expect("record");
            if let Some(fields) = v.as_object_mut() {
                fields.remove("last_used_at");
            }
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One request as the route's caller would send it. Bodies are declared and never sent: a
/// refused request is answered at once; an allowed one with a body waits for it (`None`),
/// so nothing it would write is written. Requests without a body run.
async fn probe(f: &Fixture, method: &str, path: &str, auth: Option<&str>) -> Option<u16> {
    if matches!(method, "POST" | "PATCH") {
        head_only_within(&f.srv.url, method, path, auth, Duration::from_millis(400))
            .await
            .map(|r| r.status)
    } else {
        let api = f.srv.api().with_auth(auth.map(str::to_owned));
        Some(api.send(method, path, None, false, &[]).await.status)
    }
}

#[tokio::test]
async fn route_by_role_matrix() {
    let mut f = fixture().await;
    let routes: Vec<_> = table()
        .into_iter()
        .filter(|r| !matches!(r.access, Access::Lease | Access::LeaseOrFinished))
        .collect();
    let names: Vec<&str> = f.roles.iter().map(|r| r.name).collect();
    let mut rows = Vec::new();
    for route in &routes {
        let method = route.method.as_str();
        let path = fill(&route.path, &f);
        let before = snapshot(&f).await;
        let mut cells = Vec::new();
        // Refusals first, each checked to have stored nothing; then the allowed callers.
        let mut order: Vec<usize> = (0..f.roles.len()).collect();
        order.sort_by_key(|&i| expected(route.access, &f.roles[i]) == Some(true));
        let mut got = vec![String::new(); f.roles.len()];
        for i in order {
            let role = &f.roles[i];
            let want = expected(route.access, role);
            let status = probe(&f, method, &path, role.auth.as_deref()).await;
            let row = format!("{method} {} as {}", route.path, role.name);
            match want {
                None => assert_eq!(status, Some(401), "{row}"),
                Some(false) => {
                    assert_eq!(status, Some(403), "{row}");
                    let after = snapshot(&f).await;
                    if before != after {
                        let old: Vec<&str> = before.lines().collect();
                        let changed: Vec<&str> =
                            after.lines().filter(|l| !old.contains(l)).collect();
                        panic!("{row}: a refusal wrote: {changed:?}");
                    }
                }
                Some(true) => assert!(
                    !matches!(status, Some(401) | Some(403)),
                    "{row}: refused with {status:?}"
                ),
            }
            got[i] = match status {
                None => "ok (awaits body)".to_owned(),
                Some(s) if want == Some(true) => format!("ok ({s})"),
                Some(s) => s.to_string(),
            };
        }
        cells.extend(got);
        rows.push((format!("`{method} {}`", route.path), route.access, cells));
        // An allowed request without a body may have deleted what later routes need.
        if before != snapshot(&f).await {
            f = fixture().await;
        }
    }
    let mut md = String::from(
        "# Route × role matrix\n\nGenerated by `tests/api_access.rs` \
         (`PBACKEND_WRITE_REFERENCE=1 cargo test --test api_access route_by_role_matrix`) from \
         the server's own route table. The organization `acme` gives members no stack access \
         by default; the stack `acme/proj/dev` is readable by team `readers`, writable by team \
         `writers` (whose team token is a column), and administered by the collaborator \
         `stackadmin`. `ok (N)`: allowed, then answered N (413: the probe declares a 50 MB \
         body, over that route's limit, which is checked after the credential; 404, 409 and \
         400: the handler's answer to the probe's target, an update that already finished or \
         a missing query; 204 on a DELETE: the probe ran, and the fixture is rebuilt after \
         it); `ok (awaits body)`: allowed, and the server waited for the declared body, \
         which the test never sent. Every 401 and \
         403 was checked to leave the database unchanged. Routes authorized by an update's \
         lease are in `route-credential-matrix.md`.\n\n| route | needs |",
    );
    for n in &names {
        md.push_str(&format!(" {n} |"));
    }
    md.push_str("\n|---|---|");
    for _ in &names {
        md.push_str("---|");
    }
    md.push('\n');
    for (route, access, cells) in rows {
        let need = match access {
            Access::Public => "public".to_owned(),
            Access::Token(Permission::Authenticated) => "any token".to_owned(),
            Access::Token(Permission::Person) => "a person's token".to_owned(),
            Access::Token(Permission::Stack(p)) => format!("stack {}", p.as_str()),
            Access::Token(Permission::Org(s)) => format!("org `{s}`"),
            _ => unreachable!(),
        };
        md.push_str(&format!("| {route} | {need} | {} |\n", cells.join(" | ")));
    }
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/reference/route-role-matrix.md"
    );
    if std::env::var_os("PBACKEND_WRITE_REFERENCE").is_some() {
        std::fs::write(file, &md).expect("write reference");
    } else if !on_postgres() {
        let committed = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            committed == md,
            "reference/route-role-matrix.md is stale: rerun with PBACKEND_WRITE_REFERENCE=1"
        );
    }
}

/// Alice's team and Bob's team in one organization whose members see nothing by default.
struct Tenants {
    srv: TestServer,
    alice: Api,
    bob: Api,
}

async fn tenants() -> Tenants {
    let srv = TestServer::start().await;
    let db = srv.db_path();
    pb_ok(&db, false, &["orgs", "create", ACME]).await;
    pb_ok(
        &db,
        false,
        &["orgs", "set-default-permission", ACME, "none"],
    )
    .await;
    for (user, team) in [("alice", "red"), ("bob", "blue")] {
        pb_ok(&db, false, &["orgs", "set-member", ACME, user]).await;
        let t = format!("{ACME}/{team}");
        pb_ok(&db, false, &["teams", "create", &t]).await;
        pb_ok(&db, false, &["teams", "add-member", &t, user]).await;
    }
    let alice = Api::new(&srv.url, &secret(&token(&db, &["--user", "alice"]).await));
    let bob = Api::new(&srv.url, &secret(&token(&db, &["--user", "bob"]).await));
    for (api, stack, team) in [(&alice, "a", "red"), (&bob, "b", "blue")] {
        api.post(
            &format!("/api/stacks/{ACME}/proj"),
            json!({"stackName": stack}),
        )
        .await
        .ok();
        // Their teams get the stacks; they made them, so they administer them already.
        let who = api.get("/api/user").await.json()["githubLogin"].clone();
        let owner = if who == "alice" { &alice } else { &bob };
        owner
            .patch(
                &format!("/api/console/stacks/{ACME}/proj/{stack}/teams/{team}"),
                json!({"permissions": 102}),
            )
            .await
            .ok();
    }
    Tenants { srv, alice, bob }
}

fn stack_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["orgName"].as_str().unwrap_or(""),
                s["stackName"].as_str().unwrap_or("")
            )
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn two_tenants_reach_only_their_own_stacks() {
    let t = tenants().await;
    let a = format!("/api/stacks/{ACME}/proj/a");
    let b = format!("/api/stacks/{ACME}/proj/b");

    // Alice writes a secret into her stack's state.
    let ct = t
        .alice
        .post(&format!("{a}/encrypt"), json!({"plaintext": "c2VjcmV0"}))
        .await;
    ct.ok();
    let alice_ct = ct.json()["ciphertext"].clone();

    assert_eq!(
        stack_names(&t.alice.get("/api/user/stacks").await.json()),
        ["acme/a"]
    );
    assert_eq!(
        stack_names(&t.bob.get("/api/user/stacks").await.json()),
        ["acme/b"]
    );

    let before = db_snapshot(&t.srv.db_path()).await;
    // Bob cannot read, decrypt, import into, update, cancel, rename or delete Alice's stack.
    let refusals = [
        t.bob.get(&a).await,
        t.bob.get(&format!("{a}/export")).await,
        t.bob.get(&format!("{a}/updates")).await,
        t.bob
            .post(&format!("{a}/decrypt"), json!({"ciphertext": alice_ct}))
            .await,
        t.bob
            .post(&format!("{a}/import"), deployment(1, "bob was here"))
            .await,
        t.bob.post(&format!("{a}/update"), json!({})).await,
        t.bob
            .post(&format!("{a}/rename"), json!({"newName": "mine"}))
            .await,
        t.bob.delete(&a).await,
    ];
    for r in &refusals {
        let msg = r.error(403);
        assert!(
            msg.contains("permission"),
            "names the missing permission: {msg}"
        );
    }
    // Smuggling: Bob imports into his own stack a state whose secrets provider names
    // Alice's stack, hoping the server re-encrypts her ciphertext for him.
    let mut smuggled = deployment(1, "smuggled");
    smuggled["deployment"]["secrets_providers"] = json!({"type": "service", "state": {
        "url": t.srv.url, "owner": ACME, "project": "proj", "stack": "a"}});
    smuggled["deployment"]["resources"][1]["outputs"]["secret"] = json!({
        "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
        "ciphertext": alice_ct});
    let r = t.bob.post(&format!("{b}/import"), smuggled).await;
    let msg = r.error(403);
    assert!(msg.contains("acme/proj/a"), "{msg}");
    assert_eq!(
        before,
        db_snapshot(&t.srv.db_path()).await,
        "a refused request changed the database"
    );

    // Alice herself may, and her export still holds her secret.
    t.alice
        .post(&format!("{a}/decrypt"), json!({"ciphertext": alice_ct}))
        .await
        .ok();
    t.alice.get(&format!("{a}/export")).await.ok();
}

#[tokio::test]
async fn an_organization_token_and_a_team_token_say_what_they_are() {
    let t = tenants().await;
    let db = t.srv.db_path();
    let org = Api::new(
        &t.srv.url,
        &secret(&token(&db, &["--org", ACME, "--name", "ci"]).await),
    );
    let team = Api::new(
        &t.srv.url,
        &secret(&token(&db, &["--team", "acme/red", "--name", "deploy"]).await),
    );
    let me = org.get("/api/user").await.json();
    assert_eq!(me["githubLogin"], ACME);
    assert_eq!(me["tokenInfo"]["organization"], ACME);
    assert!(me["tokenInfo"].get("team").is_none());
    let me = team.get("/api/user").await.json();
    assert_eq!(me["tokenInfo"]["team"], "red");
    // The team token sees its team's stack only.
    assert_eq!(
        stack_names(&team.get("/api/user/stacks").await.json()),
        ["acme/a"]
    );
    // A personal token has no tokenInfo.
    let me = t.alice.get("/api/user").await.json();
    assert!(me.get("tokenInfo").is_none(), "{me}");

    // Revocation of a team's tokens takes effect on the next request.
    pb_ok(&db, false, &["tokens", "revoke", "--team", "acme/red"]).await;
    team.get("/api/user").await.error(401);
    // A disabled user's tokens stop too, and enabling brings them back.
    pb_ok(&db, false, &["users", "disable", "alice"]).await;
    t.alice.get("/api/user").await.error(401);
    pb_ok(&db, false, &["users", "enable", "alice"]).await;
    t.alice.get("/api/user").await.ok();
    // Bad operator input is refused with a clear message, and nothing changes.
    let out = pb(&db, false, &["orgs", "set-member", ACME, "bad name"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("bad name"), "{}", out.stderr);
}

#[tokio::test]
async fn personal_organization_and_team_tokens_over_http() {
    let t = tenants().await;
    let db = t.srv.db_path();
    // Alice's own tokens: the value once, never in a listing; deleting one stops it at once.
    let made = t
        .alice
        .post(
            "/api/user/tokens",
            json!({"description": "laptop", "expires": 0}),
        )
        .await;
    made.ok();
    let made = made.json();
    let value = made["tokenValue"].as_str().expect("tokenValue").to_owned();
    assert!(value.starts_with("pul-"), "{made}");
    let laptop = Api::new(&t.srv.url, &value);
    laptop.get("/api/user").await.ok();
    let listed = t.alice.get("/api/user/tokens").await;
    listed.ok();
    let text = String::from_utf8_lossy(&listed.body).into_owned();
    assert!(text.contains("laptop") && !text.contains(&value), "{text}");
    // Bob cannot delete Alice's token.
    let id = made["id"].as_str().unwrap();
    t.bob
        .delete(&format!("/api/user/tokens/{id}"))
        .await
        .error(404);
    laptop.get("/api/user").await.ok();
    t.alice.delete(&format!("/api/user/tokens/{id}")).await.ok();
    laptop.get("/api/user").await.error(401);

    // An admin makes organization and team tokens; members may not.
    pb_ok(
        &db,
        false,
        &["orgs", "set-member", ACME, "carol", "--role", "admin"],
    )
    .await;
    let carol = Api::new(&t.srv.url, &secret(&token(&db, &["--user", "carol"]).await));
    let msg = t
        .alice
        .post(&format!("/api/orgs/{ACME}/tokens"), json!({"name": "ci"}))
        .await
        .error(403);
    assert!(msg.contains("org_token:create"), "{msg}");
    let org = carol
        .post(
            &format!("/api/orgs/{ACME}/tokens"),
            json!({"name": "ci", "description": "pipelines"}),
        )
        .await;
    org.ok();
    let org = org.json();
    let org_api = Api::new(&t.srv.url, org["tokenValue"].as_str().unwrap());
    assert_eq!(
        org_api.get("/api/user").await.json()["tokenInfo"]["organization"],
        ACME
    );
    let team = carol
        .post(
            &format!("/api/orgs/{ACME}/teams/red/tokens"),
            json!({"name": "deploy"}),
        )
        .await;
    team.ok();
    let team = team.json();
    let team_api = Api::new(&t.srv.url, team["tokenValue"].as_str().unwrap());
    assert_eq!(
        team_api.get("/api/user").await.json()["tokenInfo"]["team"],
        "red"
    );
    let listed = carol
        .get(&format!("/api/orgs/{ACME}/teams/red/tokens"))
        .await;
    listed.ok();
    assert!(String::from_utf8_lossy(&listed.body).contains("deploy"));
    // Bad input: a token with no name is refused in the Pulumi error shape.
    carol
        .post(&format!("/api/orgs/{ACME}/tokens"), json!({"name": ""}))
        .await
        .error(400);
    carol
        .delete(&format!(
            "/api/orgs/{ACME}/tokens/{}",
            org["id"].as_str().unwrap()
        ))
        .await
        .ok();
    org_api.get("/api/user").await.error(401);
    carol
        .delete(&format!(
            "/api/orgs/{ACME}/teams/red/tokens/{}",
            team["id"].as_str().unwrap()
        ))
        .await
        .ok();
    team_api.get("/api/user").await.error(401);
}
