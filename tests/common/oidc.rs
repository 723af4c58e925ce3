//! A real OpenID provider for the tests: npm `oidc-provider` (9.x) on the machine's Node,
//! run from `tests/oidc/provider.mjs` on a random loopback port, plus a scripted browser
//! that signs users in at it (its development login and consent screens).
//!
//! The module is installed by `scripts/test-deps.sh` into `$PBACKEND_OIDC_DIR` (default
//! `~/.cache/pbackend-oidc`). Without Node or the module the tests that need it skip, saying
//! so, unless `PBACKEND_REQUIRE_OIDC=1` (CI) makes that a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest;
use tempfile::TempDir;

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("PBACKEND_OIDC_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/pbackend-oidc")))
}

/// The directory holding `node_modules/oidc-provider`, or `None` (after saying so) when the
/// test should skip.
pub fn available() -> Option<PathBuf> {
    let dir = cache_dir()?;
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let module = dir
        .join("node_modules/oidc-provider/package.json")
        .is_file();
    if node && module {
        return Some(dir);
    }
    let why = if node {
        format!(
            "no oidc-provider in {} (scripts/test-deps.sh installs it)",
            dir.display()
        )
    } else {
        "no node on PATH".to_owned()
    };
    if std::env::var("PBACKEND_REQUIRE_OIDC").is_ok_and(|v| v == "1") {
        panic!("PBACKEND_REQUIRE_OIDC=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Returns the provider's install directory, or skips the calling test.
#[macro_export]
macro_rules! require_oidc {
    () => {
        match common::oidc::available() {
            Some(d) => d,
            None => return,
        }
    };
}

pub struct Provider {
    pub issuer: String,
    pub port: u16,
    dir: TempDir,
    install: PathBuf,
    script: PathBuf,
    users_file: PathBuf,
    env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
    keys: usize,
}

/// What the provider knows about one user.
pub fn user(groups: &[&str]) -> Value {
    serde_json::json!({"groups": groups})
}

impl Provider {
    /// Starts a provider whose client `pbackend` redirects to `redirect` (pbackend's
    /// `/api/auth/callback`), with these users (`{login: {groups, disabled}}`).
    pub async fn start(
        install: PathBuf,
        redirect: &str,
        users: Value,
        extra_env: &[(&str, &str)],
    ) -> Provider {
        let dir = tempfile::tempdir().expect("tempdir");
        // ES modules resolve packages from the script's own directory: the script runs from
        // the install directory, under a name of its own (tests run in parallel).
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.mjs");
        let script = install.join(format!("provider-{}.mjs", std::process::id()));
        let tmp = install.join(format!(
            "provider-{}-{}.tmp",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::copy(source, &tmp).expect("copy the provider script");
        std::fs::rename(&tmp, &script).expect("place the provider script");
        let users_file = dir.path().join("users.json");
        std::fs::write(&users_file, users.to_string()).expect("users file");
        let port = super::cli::free_port();
        let mut env: Vec<(String, String)> = vec![
            ("PORT".into(), port.to_string()),
            ("USERS_FILE".into(), users_file.display().to_string()),
            ("REDIRECT_URI".into(), redirect.to_owned()),
            (
                "CI_REDIRECT".into(),
                "http://127.0.0.1:9/ci-callback".into(),
            ),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut p = Provider {
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            install,
            script,
            users_file,
            env,
            child: None,
            keys: 0,
        };
        p.launch().await;
        p
    }

    async fn launch(&mut self) {
        self.keys += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("provider-{}.log", self.keys)))
                .expect("log");
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(&self.script)
            .current_dir(&self.install)
            .env("KEY_ID", format!("key-{}", self.keys))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the OpenID provider exited ({status}):\n{}", self.log());
            }
            if let Ok(r) = http
                .get(format!("{}/.well-known/openid-configuration", self.issuer))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the OpenID provider did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("provider-{}.log", self.keys)))
            .unwrap_or_default()
    }

    /// Replaces what the provider knows about its users (read on every lookup).
    pub fn set_users(&self, users: Value) {
        std::fs::write(&self.users_file, users.to_string()).expect("users file");
    }

    /// Restarts the provider with a new signing key (a new key id): a key rotation.
    pub async fn rotate_key(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
        self.launch().await;
    }

    /// An ID token for `login` from client `ci` (a CI system's workload identity), by the
    /// authorization code flow with PKCE, as a CI system would get one.
    pub async fn ci_id_token(&self, login: &str) -> String {
        let verifier = format!("v{}{}", rand_suffix(), "x".repeat(43));
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let start = format!(
            "{}/auth?client_id=ci&response_type=code&scope=openid%20profile%20groups\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fci-callback&state=s&nonce=n\
             &code_challenge={challenge}&code_challenge_method=S256",
            self.issuer
        );
        let landed = Browser::new().sign_in(&start, login, &[&self.issuer]).await;
        let code = query(&landed, "code").expect("an authorization code");
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("ci", Some("ci-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "http://127.0.0.1:9/ci-callback"),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("token JSON");
        assert!(status.is_success(), "token endpoint: {v}");
        v["id_token"].as_str().expect("id_token").to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

fn rand_suffix() -> String {
    hex::encode(pbackend::engine::crypto::random_bytes::<8>())
}

/// A query parameter of a URL.
pub fn query(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// A scripted browser: follows redirects itself, keeps cookies per host, and fills in the
/// provider's development login (any password) and consent forms.
pub struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
        }
    }

    fn host(url: &str) -> String {
        url.split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_default()
            .to_owned()
    }

    fn absolute(base: &str, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("http://{}{}", Self::host(base), location)
        }
    }

    async fn request(
        &mut self,
        method: reqwest::Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
    ) -> (u16, Option<String>, String) {
        let host = Self::host(url);
        let mut req = self.http.request(method, url);
        if let Some(jar) = self.cookies.get(&host) {
            let header: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("Cookie", header.join("; "));
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("browser: {url}: {e}"));
        let status = resp.status().as_u16();
        for c in resp.headers().get_all("set-cookie") {
            let text = c.to_str().unwrap_or_default();
            if let Some((k, v)) = text.split(';').next().and_then(|kv| kv.split_once('=')) {
                self.cookies
                    .entry(host.clone())
                    .or_default()
                    .insert(k.trim().to_owned(), v.to_owned());
            }
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| Self::absolute(url, l));
        let body = resp.text().await.unwrap_or_default();
        (status, location, body)
    }

    /// Starts at `url` and signs in as `login` wherever the provider asks; returns the first
    /// URL that leaves the hosts in `within` (and pbackend's host of `url`) — the CLI's
    /// local port, or a client's callback — without visiting it.
    pub async fn sign_in(&mut self, url: &str, login: &str, within: &[&str]) -> String {
        let mut hosts: Vec<String> = within.iter().map(|u| Self::host(u)).collect();
        hosts.push(Self::host(url));
        let mut next = (
            reqwest::Method::GET,
            url.to_owned(),
            None::<Vec<(String, String)>>,
        );
        for _ in 0..20 {
            let (method, at, form) = next.clone();
            let form_ref: Option<Vec<(&str, &str)>> = form
                .as_ref()
                .map(|f| f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
            let (status, location, body) = self.request(method, &at, form_ref.as_deref()).await;
            if let Some(loc) = location {
                if !hosts.contains(&Self::host(&loc)) {
                    return loc;
                }
                next = (reqwest::Method::GET, loc, None);
                continue;
            }
            assert_eq!(status, 200, "browser at {at}: {status}: {body}");
            let action = body
                .split("action=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("no form at {at}: {body}"));
            let action = Self::absolute(&at, action);
            let fields: Vec<(String, String)> = if body.contains("name=\"prompt\" value=\"login\"")
            {
                vec![
                    ("prompt".into(), "login".into()),
                    ("login".into(), login.into()),
                    ("password".into(), "any".into()),
                ]
            } else {
                vec![("prompt".into(), "consent".into())]
            };
            next = (reqwest::Method::POST, action, Some(fields));
        }
        panic!("the browser went round in circles from {url}");
    }
}
