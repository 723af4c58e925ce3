//! Harness for tests that drive the real `pulumi` CLI against a real `pbackend serve`
//! process. The binaries come from `scripts/pulumi-toolchain.sh` (cache dir
//! `$PBACKEND_TOOLCHAIN_DIR`, default `~/.cache/pbackend-toolchain`); the CLI version from
//! `$PBACKEND_PULUMI_VERSION` (default v3.259.0). Without them the tests skip, saying so,
//! unless `PBACKEND_REQUIRE_CLI=1` (CI) turns a missing toolchain into a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const DEFAULT_CLI_VERSION: &str = "v3.259.0";
pub const CLI_TOKEN: &str = "pul-cli-test-token-000000000000";
pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[derive(Clone, Debug)]
pub struct Toolchain {
    pub pulumi: PathBuf,
    pub plugins: PathBuf,
    pub version: String,
}

pub fn toolchain() -> Option<Toolchain> {
    let dir = std::env::var_os("PBACKEND_TOOLCHAIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/pbackend-toolchain"))
        })?;
    let version =
        std::env::var("PBACKEND_PULUMI_VERSION").unwrap_or_else(|_| DEFAULT_CLI_VERSION.into());
    let tc = Toolchain {
        pulumi: dir.join(format!("pulumi-{version}")).join("pulumi"),
        plugins: dir.join("plugins"),
        version,
    };
    let present = tc.pulumi.is_file()
        && tc.plugins.join("pulumi-language-yaml").is_file()
        && tc.plugins.join("pulumi-resource-pbtest").is_file();
    if present {
        Some(tc)
    } else if std::env::var("PBACKEND_REQUIRE_CLI").is_ok_and(|v| v == "1") {
        panic!(
            "PBACKEND_REQUIRE_CLI=1 but the toolchain is missing at {} (run scripts/pulumi-toolchain.sh)",
            dir.display()
        );
    } else {
        None
    }
}

/// Returns the toolchain, or skips the calling test (with a message) when it is absent.
#[macro_export]
macro_rules! require_cli {
    () => {
        match common::cli::toolchain() {
            Some(t) => t,
            None => {
                eprintln!(
                    "SKIPPED: the pulumi CLI toolchain is not built; run scripts/pulumi-toolchain.sh"
                );
                return;
            }
        }
    };
}

/// Whether a version string like `v3.200.0` is at least `major.minor`.
pub fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.trim_start_matches('v').split('.');
    let ma: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let mi: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (ma, mi) >= (major, minor)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `pbackend serve` process on a temp database.
pub struct ServerProcess {
    pub dir: TempDir,
    db: PathBuf,
    pub url: String,
    pub port: u16,
    extra: Vec<String>,
    /// Environment variables the server starts with (beside the test's own).
    env: Vec<(String, String)>,
    /// The master key the server starts with.
    pub key: String,
    child: Option<tokio::process::Child>,
    starts: usize,
    /// The port was picked free here and no client knows it yet: when another process took
    /// it meanwhile (the pick is released before `serve` binds it), pick again.
    movable_port: bool,
}

impl ServerProcess {
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::test_database(dir.path());
        Self::launch_on(dir, db, free_port(), true, extra).await
    }

    /// With extra environment variables (e.g. an S3 endpoint and its credentials).
    pub async fn start_with_env(extra: &[&str], env: Vec<(String, String)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::test_database(dir.path());
        let mut s = ServerProcess::unstarted(dir, db, free_port(), extra);
        s.env = env;
        s.movable_port = true;
        s.spawn().await;
        s.movable_port = false;
        s
    }

    /// On a port chosen beforehand (for flags that name the server's own URL).
    pub async fn start_at(port: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::test_database(dir.path());
        Self::launch_on(dir, db, port, false, extra).await
    }

    /// Another `pbackend serve` on the database `db` (a replica when it is PostgreSQL).
    pub async fn start_on(db: PathBuf, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::launch_on(dir, db, free_port(), true, extra).await
    }

    async fn launch_on(
        dir: TempDir,
        db: PathBuf,
        port: u16,
        movable_port: bool,
        extra: &[&str],
    ) -> Self {
        let mut s = ServerProcess::unstarted(dir, db, port, extra);
        s.movable_port = movable_port;
        s.spawn().await;
        s.movable_port = false;
        s
    }

    fn unstarted(dir: TempDir, db: PathBuf, port: u16, extra: &[&str]) -> Self {
        ServerProcess {
            dir,
            db,
            url: String::new(),
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            key: MASTER_KEY.to_owned(),
            child: None,
            starts: 0,
            movable_port: false,
        }
    }

    pub fn db(&self) -> PathBuf {
        self.db.clone()
    }

    pub fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("server-{n}.log"))
    }

    /// `pbackend serve` on this server's port, database and key, logging to the current
    /// start's log file.
    fn serve_command(&self, debug: bool) -> tokio::process::Command {
        let log = std::fs::File::create(self.log_path(self.starts)).expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pbackend"));
        cmd.arg("serve")
            .arg("--addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--db")
            .arg(self.db())
            .arg("--master-key")
            .arg(&self.key)
            .arg("--single-tenant-token")
            .arg(CLI_TOKEN);
        if debug && !self.extra.iter().any(|a| a == "--log-level") {
            cmd.args(["--log-level", "debug"]);
        }
        // Tests that are not about rate limits must not be slowed by them.
        if !self.extra.iter().any(|a| a == "--rate-limit") {
            cmd.args(["--rate-limit", "off"]);
        }
        cmd.args(&self.extra)
            .envs(self.env.iter().cloned())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true);
        cmd
    }

    /// Starts the server and returns whether it came up (false: it exited, e.g. refused to
    /// start), without panicking.
    pub async fn try_start(&mut self) -> bool {
        self.kill().await;
        self.starts += 1;
        self.url = self.own_url();
        let mut child = self.serve_command(false).spawn().expect("pbackend starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = self.probe_client();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if let Ok(r) = http
                .get(format!("{}/api/capabilities", self.url))
                .send()
                .await
                && r.status().is_success()
            {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (SIGKILL) and waits for it to exit.
    pub async fn stop(&mut self) {
        self.kill().await;
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let child = self.serve_command(true).spawn().expect("pbackend starts");
        self.child = Some(child);
        self.url = self.own_url();
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = self.probe_client();
        loop {
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited
                && self.movable_port
                && self.log(self.starts).contains("Address already in use")
            {
                self.port = free_port();
                return Box::pin(self.spawn()).await;
            }
            if let Ok(r) = http
                .get(format!("{}/api/capabilities", self.url))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("pbackend did not come up: {}", self.log(self.starts));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `https://` when the server was given a certificate.
    fn own_url(&self) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn tls(&self) -> bool {
        self.extra.iter().any(|a| a == "--tls-cert")
    }

    /// The client that waits for the server to come up: it only asks whether the server
    /// answers, so it does not check the certificate (the TLS tests do that themselves).
    fn probe_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(self.tls())
            .build()
            .expect("client")
    }

    pub fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL): no graceful shutdown, no final checkpoint.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Asks the server to stop (SIGTERM) without waiting for it.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the server a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{name}"), &pid.to_string()])
                .status();
        }
    }

    /// Waits for the server to exit by itself; its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        c.wait().await.ok().and_then(|s| s.code())
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub fn api(&self) -> super::Api {
        super::Api::new(&self.url, CLI_TOKEN)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// The result of one CLI invocation.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.all()))
    }
}

/// A Pulumi YAML project in a temp dir, with its own `PULUMI_HOME`, logged in to a server.
pub struct Project {
    pub tc: Toolchain,
    pub dir: TempDir,
    pub home: TempDir,
    pub name: String,
    pub url: String,
    pub env: Vec<(String, String)>,
    /// Variables removed from the CLI's environment (e.g. `PULUMI_ACCESS_TOKEN`, for logins
    /// that must not fall back to it).
    pub unset: Vec<String>,
}

impl Project {
    /// A project that has not logged in and has no `PULUMI_ACCESS_TOKEN`.
    pub fn bare(tc: &Toolchain, url: &str, name: &str) -> Self {
        let p = Project {
            tc: tc.clone(),
            dir: tempfile::tempdir().expect("tempdir"),
            home: tempfile::tempdir().expect("tempdir"),
            name: name.to_owned(),
            url: url.to_owned(),
            env: vec![],
            unset: vec!["PULUMI_ACCESS_TOKEN".to_owned()],
        };
        p.write_program(&items(1, "v", 0), "");
        p
    }

    pub async fn new(tc: &Toolchain, server: &ServerProcess, name: &str) -> Self {
        Self::at(tc, &server.url, name).await
    }

    /// A project logged in to the service at `url` (a server, or a proxy in front of several).
    pub async fn at(tc: &Toolchain, url: &str, name: &str) -> Self {
        Self::logged_in_as(tc, url, name, CLI_TOKEN, "organization").await
    }

    /// A project logged in with `token`; older CLIs are told `default_org` as their users
    /// would tell them.
    pub async fn logged_in_as(
        tc: &Toolchain,
        url: &str,
        name: &str,
        token: &str,
        default_org: &str,
    ) -> Self {
        let mut p = Self::bare(tc, url, name);
        p.unset.clear();
        p.set_env("PULUMI_ACCESS_TOKEN", token);
        p.ok(&["login", url]).await;
        if !p.asks_server_for_default_org() {
            // Older CLIs put unqualified stacks under the user's own name unless a default
            // organization is configured locally, as their users had to do.
            p.ok(&["org", "set-default", default_org]).await;
        }
        p
    }

    /// CLIs from 3.180 on ask `GET /api/user/organizations/default` for the default org.
    pub fn asks_server_for_default_org(&self) -> bool {
        version_at_least(&self.tc.version, 3, 180)
    }

    /// Another project sharing this one's login (same `PULUMI_HOME`).
    pub fn sibling(&self, name: &str) -> Project {
        let p = Project {
            tc: self.tc.clone(),
            dir: tempfile::tempdir().expect("tempdir"),
            home: tempfile::tempdir().expect("tempdir"),
            name: name.to_owned(),
            url: self.url.clone(),
            env: self.env.clone(),
            unset: self.unset.clone(),
        };
        // Copy the credentials so the sibling is logged in too.
        for file in ["credentials.json", "config.json"] {
            let _ = std::fs::copy(self.home.path().join(file), p.home.path().join(file));
        }
        p.write_program(&items(1, "v", 0), "");
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `Pulumi.yaml` with the given `resources:` and `outputs:` bodies (YAML, indented
    /// by two spaces) and the plugin paths of the toolchain.
    pub fn write_program(&self, resources: &str, outputs: &str) {
        let plugins = self.tc.plugins.display();
        let mut text = format!(
            "name: {}\nruntime: yaml\nplugins:\n  providers:\n    - name: pbtest\n      path: {plugins}\n  \
             languages:\n    - name: yaml\n      path: {plugins}\n",
            self.name
        );
        if !resources.trim().is_empty() {
            text.push_str("resources:\n");
            text.push_str(resources);
        }
        if !outputs.trim().is_empty() {
            text.push_str("outputs:\n");
            text.push_str(outputs);
        }
        std::fs::write(self.dir.path().join("Pulumi.yaml"), text).expect("write Pulumi.yaml");
    }

    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(x, _)| x != k);
        self.env.push((k.to_owned(), v.to_owned()));
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        self.command_via(&self.tc.pulumi, args)
    }

    /// `program ARGS` in the CLI's environment (e.g. `script`, to give the CLI a terminal).
    pub fn command_via(&self, program: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("PULUMI_HOME", self.home.path())
            .env("PULUMI_SKIP_UPDATE_CHECK", "true")
            .env("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
            .env("PULUMI_ACCESS_TOKEN", CLI_TOKEN)
            .env("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", "true")
            .env("NO_COLOR", "1")
            // Anything that is not our loopback server goes to a dead proxy and fails at once.
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for k in &self.unset {
            cmd.env_remove(k);
        }
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        let out = self.command(args).output().await.expect("pulumi runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts success.
    pub async fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args).await;
        assert_eq!(
            out.code,
            0,
            "`pulumi {}` failed:\n{}",
            args.join(" "),
            out.all()
        );
        out
    }

    /// Runs and asserts failure.
    pub async fn fails(&self, args: &[&str]) -> Out {
        let out = self.run(args).await;
        assert_ne!(
            out.code,
            0,
            "`pulumi {}` should fail:\n{}",
            args.join(" "),
            out.all()
        );
        out
    }
}

/// `n` pbtest:index:Item resources named r0..r{n-1}, value `{prefix}-{i}`, each padded.
pub fn items(n: usize, prefix: &str, pad: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "  r{i}:\n    type: pbtest:index:Item\n    properties:\n      value: {prefix}-{i}\n"
        ));
        if pad > 0 {
            s.push_str(&format!("      padBytes: {pad}\n"));
        }
    }
    s
}
