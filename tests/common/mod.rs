//! Test harness: a real pbackend server on a random loopback port over a temp SQLite file,
//! and a small HTTP client that speaks to it the way the Pulumi CLI does.
#![allow(dead_code)]

pub mod browser;
pub mod cli;
pub mod console;
pub mod oidc;
pub mod ops;
pub mod pg;
pub mod proxy;
pub mod raw;
pub mod receiver;
pub mod s3;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use pbackend::engine::clock::{Clock, ManualClock, SystemClock};
use pbackend::engine::crypto::MasterKey;
use pbackend::engine::{Engine, EngineConfig};
use pbackend::server::ServerConfig;
use pbackend::store::open::{Location, Opened, open};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ORG: &str = "organization";
pub const TOKEN: &str = "test-token-0123456789";

#[derive(Clone, Default)]
pub struct Options {
    pub clock: Option<ManualClock>,
    pub config: EngineConfig,
    pub server: ServerConfig,
}

/// Whether the tests run on PostgreSQL (`PBACKEND_TEST_DB=postgres`) rather than SQLite.
pub fn on_postgres() -> bool {
    std::env::var("PBACKEND_TEST_DB").is_ok_and(|v| v == "postgres")
}

/// The database a test server uses: a SQLite file in `dir`, or a fresh PostgreSQL database
/// (its URL as a path, as `--db` takes it).
pub fn test_database(dir: &std::path::Path) -> PathBuf {
    if on_postgres() {
        let pg = pg::server().expect("PBACKEND_TEST_DB=postgres needs PostgreSQL");
        PathBuf::from(pg.fresh_database())
    } else {
        dir.join("pbackend.db")
    }
}

/// Loses the database (a disaster, for recovery tests): removes a SQLite file with its WAL,
/// or empties a PostgreSQL database.
pub fn wipe_database(db: &std::path::Path) {
    let text = db.to_string_lossy();
    if text.starts_with("postgres://") {
        pg::server().expect("PostgreSQL").wipe(&text);
    } else {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
}

/// Every row of the database as backup records (one per line) except the audit log, which
/// records refusals by design: equal before and after means nothing else was written.
/// Opens the database beside the running server.
pub async fn db_snapshot(db: &std::path::Path) -> String {
    db_records(db)
        .await
        .lines()
        .filter(|l| !l.starts_with(r#"{"table":"audit""#))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The audit log's rows alone, as backup records.
pub async fn db_audit(db: &std::path::Path) -> Vec<Value> {
    db_records(db)
        .await
        .lines()
        .filter(|l| l.starts_with(r#"{"table":"audit""#))
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect()
}

async fn db_records(db: &std::path::Path) -> String {
    use pbackend::store::open::{Location, open};
    let opened = open(&Location::parse(db), Default::default(), Default::default())
        .await
        .expect("open the database");
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    opened
        .store
        .dump(Box::new(move |r| {
            sink.lock()
                .unwrap()
                .push(serde_json::to_string(&r).unwrap());
            Ok(())
        }))
        .await
        .expect("dump");
    opened.close();
    lines.lock().unwrap().join("\n")
}

pub struct TestServer {
    pub dir: TempDir,
    db: PathBuf,
    pub master: MasterKey,
    pub opts: Options,
    pub url: String,
    running: Option<Running>,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
    store: Opened,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = test_database(dir.path());
        let mut s = TestServer {
            dir,
            db,
            master: MasterKey::generate(),
            opts,
            url: String::new(),
            running: None,
        };
        s.launch().await.expect("server starts");
        s
    }

    pub fn db_path(&self) -> PathBuf {
        self.db.clone()
    }

    /// Another server on the same database with the same key: a replica (PostgreSQL).
    pub async fn replica(&self) -> TestServer {
        self.replica_on(self.db.clone()).await
    }

    /// A server with this one's key and options on another database.
    pub async fn replica_on(&self, db: PathBuf) -> TestServer {
        let mut s = TestServer {
            dir: tempfile::tempdir().expect("tempdir"),
            db,
            master: self.master.clone(),
            opts: self.opts.clone(),
            url: String::new(),
            running: None,
        };
        s.launch().await.expect("replica starts");
        s
    }

    /// Starts the server on the current database (used again after `stop`).
    pub async fn launch(&mut self) -> Result<(), String> {
        let store = open(
            &Location::parse(&self.db),
            Default::default(),
            Default::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let clock: Arc<dyn Clock> = match &self.opts.clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let (engine, _boot) = Engine::open(
            store.store.clone(),
            self.master.clone(),
            Some(TOKEN.to_owned()),
            self.opts.config.clone(),
            clock,
        )
        .await
        .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        self.url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (tx, rx) = oneshot::channel::<()>();
        let server_cfg = self.opts.server.clone();
        let handle = tokio::spawn(async move {
            let _ = pbackend::server::serve(listener, Arc::new(engine), server_cfg, async {
                let _ = rx.await;
            })
            .await;
        });
        self.running = Some(Running {
            shutdown: tx,
            handle,
            store,
        });
        Ok(())
    }

    /// Stops the server and closes the database.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown.send(());
            let _ = r.handle.await;
            r.store.close();
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await.expect("server restarts");
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url, TOKEN)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown.send(());
            r.store.close();
        }
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A response: status, headers and the (decompressed) body.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a Pulumi-shaped error with this status and returns its message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["code"], json!(status), "error body: {v}");
        v["message"].as_str().expect("message").to_owned()
    }

    pub fn ok(&self) -> &Self {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: Option<String>,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Self {
        Api {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            auth: Some(format!("token {token}")),
        }
    }

    pub fn with_auth(&self, auth: Option<String>) -> Self {
        Api {
            auth,
            ..self.clone()
        }
    }

    pub fn lease(&self, token: &str) -> Self {
        self.with_auth(Some(format!("update-token {token}")))
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        gzip_body: bool,
        extra: &[(&str, &str)],
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("Accept", "application/vnd.pulumi+9".parse().unwrap());
        headers.insert("Accept-Encoding", "gzip".parse().unwrap());
        headers.insert("Content-Type", "application/json".parse().unwrap());
        if let Some(a) = &self.auth {
            headers.insert("Authorization", a.parse().unwrap());
        }
        for (k, v) in extra {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap();
            headers.insert(name, v.parse().unwrap());
        }
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .headers(headers);
        if let Some(b) = body {
            if gzip_body {
                req = req.header("Content-Encoding", "gzip").body(gzip(&b));
            } else {
                req = req.body(b);
            }
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.bytes().await.expect("body").to_vec();
        let gz = headers
            .get("content-encoding")
            .is_some_and(|v| v.to_str().unwrap_or("") == "gzip");
        let body = if gz { gunzip(&raw) } else { raw };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, false, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, false, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(
            "POST",
            path,
            Some(body.to_string().into_bytes()),
            false,
            &[],
        )
        .await
    }

    pub async fn post_gz(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(body.to_string().into_bytes()), true, &[])
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(
            "PATCH",
            path,
            Some(body.to_string().into_bytes()),
            false,
            &[],
        )
        .await
    }

    pub async fn patch_gz(&self, path: &str, body: Value) -> Resp {
        self.send(
            "PATCH",
            path,
            Some(body.to_string().into_bytes()),
            true,
            &[],
        )
        .await
    }

    pub async fn patch_raw_gz(&self, path: &str, body: &[u8]) -> Resp {
        self.send("PATCH", path, Some(body.to_vec()), true, &[])
            .await
    }

    // --- CLI-shaped helpers

    pub async fn create_stack(&self, project: &str, stack: &str) -> Resp {
        self.post(
            &format!("/api/stacks/{ORG}/{project}"),
            json!({"stackName": stack, "tags": {"pulumi:project": project}}),
        )
        .await
    }

    /// Creates and starts an update; returns (update id, lease token, version).
    pub async fn begin(&self, stack: &str, kind: &str, dry_run: bool) -> (String, String, i64) {
        let r = self
            .post(
                &format!("{stack}/{kind}"),
                json!({
                    "name": "proj", "runtime": "yaml", "main": "", "description": "",
                    "options": {"dryRun": dry_run, "parallel": 8, "color": "raw"},
                    "config": {"proj:greeting": {"string": "hi", "secret": false, "object": false}},
                    "metadata": {"message": "test update", "environment": {"exec.kind": "cli"}}
                }),
            )
            .await;
        r.ok();
        let id = r.json()["updateID"].as_str().unwrap().to_owned();
        let r = self
            .post(
                &format!("{stack}/update/{id}"),
                json!({"tags": {"pulumi:project": "proj"}, "journalVersion": 1}),
            )
            .await;
        r.ok();
        let v = r.json();
        (
            id,
            v["token"].as_str().unwrap().to_owned(),
            v["version"].as_i64().unwrap(),
        )
    }
}

/// A deployment (UntypedDeployment) with the root stack resource and `n` custom resources.
pub fn deployment(n: usize, label: &str) -> Value {
    let mut resources = vec![json!({
        "urn": "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev",
        "custom": false,
        "type": "pulumi:pulumi:Stack",
        "outputs": {"label": label}
    })];
    for i in 0..n {
        resources.push(json!({
            "urn": format!("urn:pulumi:dev::proj::pbtest:index:Item::r{i}"),
            "custom": true,
            "id": format!("id-{i}"),
            "type": "pbtest:index:Item",
            "inputs": {"value": format!("{label}-{i}")},
            "outputs": {"value": format!("{label}-{i}"), "n": 1.5e3},
            "parent": "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev"
        }));
    }
    json!({
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-01-01T00:00:00Z", "magic": "", "version": ""},
            "secrets_providers": {"type": "service", "state": {"url": "http://x", "owner": ORG, "project": "proj", "stack": "dev"}},
            "resources": resources
        }
    })
}

/// Waits (up to a minute) until the stack shows a running update.
pub async fn wait_running(api: &Api, stack: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = api.get(stack).await;
        if s.status == 200 && s.json().get("currentOperation").is_some() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no update started on {stack}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The request path of a server log line (`path=/api/...`), if it has one.
pub fn logged_path(line: &str) -> Option<&str> {
    line.split("path=")
        .nth(1)
        .map(|p| p.split(['}', ' ']).next().unwrap_or(""))
}

pub fn stack_path(project: &str, stack: &str) -> String {
    format!("/api/stacks/{ORG}/{project}/{stack}")
}
