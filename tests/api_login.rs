//! Logins against a real OpenID provider (npm `oidc-provider`, see `tests/common/oidc.rs`):
//! the browser flow with PKCE and the group mapping, refresh with re-validation upstream,
//! key rotation, token exchange against trust policies, and bearer JWTs (HMAC, RSA, ECDSA,
//! JWKS). Every forged, expired, wrong-audience and wrong-issuer token is refused and
//! changes nothing.

mod common;

use std::time::Duration;

use common::cli::{ServerProcess, free_port};
use common::oidc::{Browser, Provider, query, user};
use common::ops::{pb, pb_ok};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

async fn oauth(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/api/oauth/token"))
        .form(form)
        .send()
        .await
        .expect("oauth request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn refresh(url: &str, rt: &str) -> (u16, Value) {
    oauth(
        url,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await
}

async fn exchange(url: &str, id_token: &str, org: &str, kind: &str, scope: &str) -> (u16, Value) {
    let audience = format!("urn:pulumi:org:{org}");
    let requested = format!("urn:pulumi:token-type:access_token:{kind}");
    oauth(
        url,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", id_token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
            ("audience", &audience),
            ("requested_token_type", &requested),
            ("scope", scope),
            ("expiration", "3600"),
        ],
    )
    .await
}

fn login_flags<'a>(url: &'a str, issuer: &'a str) -> Vec<&'a str> {
    vec![
        "--auth-mode",
        "oidc",
        "--public-url",
        url,
        "--oidc-issuer",
        issuer,
        "--oidc-client-id",
        "pbackend",
        "--oidc-client-secret",
        "pbackend-secret",
        "--oidc-scopes",
        "profile email groups offline_access",
        "--group-map",
        "devs=org:acme:member,ops=team:acme/ops",
    ]
}

/// Plays the browser from `pulumi login`'s `/cli-login` URL to the CLI's local port.
async fn browser_login(url: &str, issuer: &str, login: &str) -> String {
    let start = format!(
        "{url}/cli-login?cliSessionPort=5&cliSessionNonce=n0nce&cliSessionDescription=test"
    );
    let landed = Browser::new().sign_in(&start, login, &[issuer]).await;
    assert!(landed.starts_with("http://127.0.0.1:5/"), "{landed}");
    assert_eq!(query(&landed, "nonce").as_deref(), Some("n0nce"));
    landed
}

async fn team_members(db: &std::path::Path, team: &str) -> String {
    pb_ok(db, false, &["teams", "show", team, "--output", "json"])
        .await
        .stdout
}

#[tokio::test]
async fn browser_login_groups_refresh_and_key_rotation() {
    let install = require_oidc!();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut idp = Provider::start(
        install,
        &format!("{url}/api/auth/callback"),
        json!({"alice": user(&["devs", "ops"]), "bob": user(&["devs"])}),
        &[],
    )
    .await;
    let issuer = idp.issuer.clone();
    let srv = ServerProcess::start_at(port, &login_flags(&url, &issuer)).await;
    let db = srv.db();
    // Groups map to places that exist (a mapped team that does not is logged, not made).
    pb_ok(&db, false, &["orgs", "create", "acme"]).await;
    pb_ok(&db, false, &["teams", "create", "acme/ops"]).await;

    let landed = browser_login(&url, &issuer, "alice").await;
    let access = query(&landed, "accessToken").expect("accessToken");
    let rt = query(&landed, "refreshToken").expect("refreshToken");
    let alice = Api::new(&url, &access);
    let me = alice.get("/api/user").await.json();
    assert_eq!(me["githubLogin"], "alice");
    let orgs: Vec<&str> = me["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["githubLogin"].as_str())
        .collect();
    assert!(orgs.contains(&"acme"), "{me}");
    assert!(team_members(&db, "acme/ops").await.contains("alice"));
    // A refresh token is no bearer credential.
    Api::new(&url, &rt).get("/api/user").await.error(401);

    // Refresh: a new access token, and the groups as the provider says today.
    idp.set_users(json!({"alice": user(&["devs"]), "bob": user(&["devs"])}));
    let (status, grant) = refresh(&url, &rt).await;
    assert_eq!(status, 200, "{grant}");
    let fresh = grant["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    Api::new(&url, &fresh).get("/api/user").await.ok();
    assert!(
        !team_members(&db, "acme/ops").await.contains("alice"),
        "left ops at refresh"
    );
    let rt = grant["refresh_token"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or(rt);

    // Disabled at the provider: the refresh is refused.
    idp.set_users(json!({"alice": {"groups": ["devs"], "disabled": true}, "bob": user(&["devs"])}));
    let (status, body) = refresh(&url, &rt).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    // The provider rotates its signing key: the next login still works.
    idp.rotate_key().await;
    let landed = browser_login(&url, &issuer, "bob").await;
    let bob = Api::new(&url, &query(&landed, "accessToken").unwrap());
    assert_eq!(bob.get("/api/user").await.json()["githubLogin"], "bob");

    // A login session is used once: replaying the provider's callback is refused.
    let r = reqwest::get(format!("{url}/api/auth/callback?code=x&state=nope"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let log = srv.log(1);
    for secret in [access.as_str(), fresh.as_str(), "pbackend-secret"] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn token_exchange_follows_trust_policies() {
    let install = require_oidc!();
    let idp = Provider::start(
        install.clone(),
        "http://127.0.0.1:9/unused",
        json!({"alice": user(&[]), "bob": user(&[])}),
        &[],
    )
    .await;
    let short = Provider::start(
        install.clone(),
        "http://127.0.0.1:9/unused",
        json!({"alice": user(&[])}),
        &[("ID_TOKEN_TTL", "1")],
    )
    .await;
    let stranger = Provider::start(
        install,
        "http://127.0.0.1:9/unused",
        json!({"alice": user(&[])}),
        &[],
    )
    .await;
    let srv = ServerProcess::start(&[]).await;
    let (url, db) = (srv.url.clone(), srv.db());
    pb_ok(&db, false, &["orgs", "create", "acme"]).await;
    pb_ok(&db, false, &["orgs", "create", "beta"]).await;
    pb_ok(&db, false, &["teams", "create", "acme/ci"]).await;
    // Personal tokens are issued for users who exist.
    pb_ok(&db, false, &["orgs", "set-member", "acme", "alice"]).await;
    let iss = idp.issuer.as_str();
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
            iss,
            "--audience",
            "ci",
        ];
        full.extend(args);
        pb_ok(&db, false, &full).await;
    }
    let mut beta = vec!["oidc", "add", "--org", "beta", "--issuer", iss];
    beta.extend(["--audience", "someone-else", "--token-kind", "organization"]);
    pb_ok(&db, false, &beta).await;
    let short_iss = short.issuer.as_str();
    pb_ok(
        &db,
        false,
        &[
            "oidc",
            "add",
            "--org",
            "acme",
            "--issuer",
            short_iss,
            "--audience",
            "ci",
            "--token-kind",
            "organization",
        ],
    )
    .await;
    let expiring = short.ci_id_token("alice").await;

    let alice = idp.ci_id_token("alice").await;
    let (s, org) = exchange(&url, &alice, "acme", "organization", "").await;
    assert_eq!(s, 200, "{org}");
    assert_eq!(
        org["issued_token_type"],
        "urn:pulumi:token-type:access_token:organization"
    );
    let me = Api::new(&url, org["access_token"].as_str().unwrap())
        .get("/api/user")
        .await
        .json();
    assert_eq!(me["tokenInfo"]["organization"], "acme");
    let (s, team) = exchange(&url, &alice, "acme", "team", "team:ci").await;
    assert_eq!(s, 200, "{team}");
    let me = Api::new(&url, team["access_token"].as_str().unwrap())
        .get("/api/user")
        .await
        .json();
    assert_eq!(me["tokenInfo"]["team"], "ci");
    let (s, personal) = exchange(&url, &alice, "acme", "personal", "user:alice").await;
    assert_eq!(s, 200, "{personal}");
    let me = Api::new(&url, personal["access_token"].as_str().unwrap())
        .get("/api/user")
        .await
        .json();
    assert_eq!(me["githubLogin"], "alice");

    let before = db_snapshot(&db).await;
    // The claims must satisfy the policy: bob is no alice.
    let bob = idp.ci_id_token("bob").await;
    let refused = |(s, v): (u16, Value)| {
        assert!(s == 400 || s == 401, "{s} {v}");
        assert_eq!(v["error"], "invalid_grant", "{v}");
        v["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    refused(exchange(&url, &bob, "acme", "personal", "user:alice").await);
    refused(exchange(&url, &bob, "acme", "personal", "user:bob").await);
    // A team the policy does not name.
    refused(exchange(&url, &alice, "acme", "team", "team:other").await);
    // Wrong audience: beta trusts the issuer only for tokens meant for someone else.
    refused(exchange(&url, &alice, "beta", "organization", "").await);
    // Wrong issuer: a provider nobody trusts.
    let foreign = stranger.ci_id_token("alice").await;
    refused(exchange(&url, &foreign, "acme", "organization", "").await);
    // Forged: alice's claims signed with a key the provider never had, under its key id.
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&alice).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = claims.header.kid.clone();
    let other = std::fs::read(format!("{KEYS}/other-rsa.key")).unwrap();
    let forged = encode(
        &header,
        &claims.claims,
        &EncodingKey::from_rsa_pem(&other).unwrap(),
    )
    .unwrap();
    refused(exchange(&url, &forged, "acme", "organization", "").await);
    // Tampered: bob's signature over alice's claims.
    let parts: Vec<&str> = bob.split('.').collect();
    let alice_payload = alice.split('.').nth(1).unwrap();
    let tampered = format!("{}.{}.{}", parts[0], alice_payload, parts[2]);
    refused(exchange(&url, &tampered, "acme", "organization", "").await);
    // Expired: a one-second ID token, past the 30 s leeway.
    tokio::time::sleep(Duration::from_secs(32)).await;
    let why = refused(exchange(&url, &expiring, "acme", "organization", "").await);
    assert!(why.to_lowercase().contains("expired"), "{why}");
    assert_eq!(
        before,
        db_snapshot(&db).await,
        "a refused exchange changed the database"
    );
}

fn jwt(key: &EncodingKey, alg: Algorithm, claims: Value) -> String {
    encode(&Header::new(alg), &claims, key).expect("sign")
}

fn claims(sub: &str, iss: &str, aud: &str, exp_in: i64) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"sub": sub, "iss": iss, "aud": aud, "iat": now, "exp": now + exp_in, "groups": ["devs"]})
}

#[tokio::test]
async fn bearer_jwts_with_hmac_rsa_and_ecdsa_keys() {
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "a-shared-secret-of-enough-length-000").unwrap();
    let hmac_path = secret_file.path().display().to_string();
    let rsa_pub = format!("{KEYS}/rsa.pub");
    let ec_pub = format!("{KEYS}/ec.pub");
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{KEYS}/rsa.key")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(format!("{KEYS}/ec.key")).unwrap()).unwrap();
    let other = EncodingKey::from_rsa_pem(&std::fs::read(format!("{KEYS}/other-rsa.key")).unwrap())
        .unwrap();
    let hmac = EncodingKey::from_secret(b"a-shared-secret-of-enough-length-000").unwrap();
    let cases: Vec<(&str, String, EncodingKey, Algorithm)> = vec![
        ("--jwt-hmac-secret-file", hmac_path, hmac, Algorithm::HS256),
        (
            "--jwt-public-key-file",
            rsa_pub.clone(),
            rsa,
            Algorithm::RS256,
        ),
        ("--jwt-public-key-file", ec_pub, ec, Algorithm::ES256),
    ];
    for (flag, value, key, alg) in cases {
        let srv = ServerProcess::start(&[
            "--auth-mode",
            "jwt",
            flag,
            &value,
            "--jwt-issuer",
            "https://idp.test",
            "--jwt-audience",
            "pbackend",
            "--group-map",
            "devs=org:acme:member",
        ])
        .await;
        let call = |token: String| {
            let api = Api::new(&srv.url, &token);
            async move { api.get("/api/user").await }
        };
        let good = call(jwt(
            &key,
            alg,
            claims("carol", "https://idp.test", "pbackend", 300),
        ))
        .await;
        let me = good.json();
        assert_eq!(me["githubLogin"], "carol", "{alg:?}: {me}");
        assert!(me["organizations"].to_string().contains("acme"), "{me}");
        let before = db_snapshot(&srv.db()).await;
        for (what, token) in [
            (
                "expired",
                jwt(
                    &key,
                    alg,
                    claims("carol", "https://idp.test", "pbackend", -120),
                ),
            ),
            (
                "wrong audience",
                jwt(&key, alg, claims("carol", "https://idp.test", "other", 300)),
            ),
            (
                "wrong issuer",
                jwt(
                    &key,
                    alg,
                    claims("carol", "https://evil.test", "pbackend", 300),
                ),
            ),
            (
                "another key",
                jwt(
                    &other,
                    Algorithm::RS256,
                    claims("carol", "https://idp.test", "pbackend", 300),
                ),
            ),
            (
                "the public key as an HMAC secret",
                jwt(
                    &EncodingKey::from_secret(&std::fs::read(&rsa_pub).unwrap()).unwrap(),
                    Algorithm::HS256,
                    claims("carol", "https://idp.test", "pbackend", 300),
                ),
            ),
        ] {
            let msg = call(token).await.error(401);
            assert!(!msg.is_empty(), "{alg:?} {what}");
        }
        assert_eq!(
            before,
            db_snapshot(&srv.db()).await,
            "{alg:?}: a refused JWT wrote"
        );
    }
}

#[tokio::test]
async fn bearer_jwts_from_a_jwks_url_follow_key_rotation() {
    let install = require_oidc!();
    let mut idp = Provider::start(
        install,
        "http://127.0.0.1:9/unused",
        json!({"dave": user(&["devs"])}),
        &[],
    )
    .await;
    let jwks = format!("{}/jwks", idp.issuer);
    let srv = ServerProcess::start(&[
        "--auth-mode",
        "jwt",
        "--jwt-jwks-url",
        &jwks,
        "--jwt-issuer",
        &idp.issuer,
        "--jwt-audience",
        "ci",
        "--jwt-login-claim",
        "preferred_username",
    ])
    .await;
    let token = idp.ci_id_token("dave").await;
    assert_eq!(
        Api::new(&srv.url, &token).get("/api/user").await.json()["githubLogin"],
        "dave"
    );
    idp.rotate_key().await;
    // The JWKS is fetched again at most every ten seconds.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let token = idp.ci_id_token("dave").await;
    assert_eq!(
        Api::new(&srv.url, &token).get("/api/user").await.json()["githubLogin"],
        "dave"
    );
    // Operators see who logged in.
    let users = pb(&srv.db(), false, &["users", "ls", "--output", "json"]).await;
    assert!(users.stdout.contains("\"dave\""), "{}", users.all());
}
