//! End to end with the real `pulumi` CLI (v3.259.0 by default, `--cli vX.Y.Z` for another
//! built by `scripts/pulumi-toolchain.sh`):
//! `up` creating N resources padded to ~16 KB, a no-op `up` right after (cold) and again
//! (warm), `up` adding 2, `stack export --show-secrets`, `destroy`, against
//!
//! * `pbackend` — the release binary, a fresh database per run, with what the CLI asks for
//!   (on v3.277: journal v2 and begin-update);
//! * `pbackend-j1` — the same with journal v1 offered and begin-update off in the CLI
//!   (`--max-journal-version 1`, `PULUMI_DISABLE_BEGIN_UPDATE=true`): v3.259's protocol;
//! * `pbackend-full` — `pbackend` with `--durability full` (an fsync per commit);
//! * `pbackend-pg` — `pbackend` on PostgreSQL (the distribution's, started in a temp
//!   directory); its server CPU includes PostgreSQL's;
//! * `pbackend-ckpt` — checkpoints only (`PULUMI_DISABLE_JOURNALING=true`, begin-update off);
//! * `null` — a do-nothing service in this process that answers every call at once with the
//!   least valid reply and stores nothing: the physical limit of the protocol;
//! * `file` — the CLI's own `file://` backend;
//! * `skip` — `file://` with `PULUMI_SKIP_CHECKPOINTS=true` (the CLI writes state once).
//!
//! Runs are interleaved (repeat × size × backend) and each is reported as median and range of
//! wall seconds, CLI CPU seconds and server CPU seconds, plus the server's peak RSS.
//!
//! `--shape echo` gives each resource a ~16 KB input string (`data`) that its outputs echo once
//! (~32 KB of state per resource, ~20 MB at 600: the Go peer's benchmark shape) instead of
//! 16 KB of output padding. `--shape heavy` makes that string the resource's `value`, which the
//! outputs repeat three times, once as a secret (~70 KB per resource and 16 KB of secret each).
//!
//!     cargo bench --bench e2e -- [--sizes 10,200,600] [--repeats 3] [--cli v3.259.0] [--shape echo|heavy]
//!         [--backends pbackend,pbackend-full,pbackend-pg,pbackend-j1,pbackend-ckpt,null,file,skip] [--file-max-size 600]

#[path = "common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

use std::collections::BTreeMap;

use common::{postgres_cpu_secs, proc_cpu_secs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const TOKEN: &str = "pul-e2e-bench-token-0000000000000000000000";
const PAD: usize = 16_000;

// ------------------------------------------------------------------ the do-nothing server

fn body_json(headers: &HeaderMap, body: &Bytes) -> Value {
    use std::io::Read;
    let gz = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let raw = if gz {
        let mut out = Vec::new();
        let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out);
        out
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&raw).unwrap_or(Value::Null)
}

async fn null_service(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    let none = || StatusCode::NO_CONTENT.into_response();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["api", "capabilities"]) => ok(json!({"capabilities": [
            {"capability": "delta-checkpoint-uploads-v2", "version": 2, "configuration": {"checkpointCutoffSizeBytes": 1048576}},
            {"capability": "batch-encrypt"},
            {"capability": "begin-update", "version": 1},
            {"capability": "deployment-schema-version", "version": 1, "configuration": {"version": 4}}]})),
        ("POST", ["api", "stacks", _, _, _, "begin-update"]) => {
            let b = body_json(&headers, &body);
            let mut r = json!({"version": 1, "token": "lease", "tokenExpiration": 0,
                "updateID": "00000000-0000-0000-0000-000000000000",
                "aiSettings": {"copilotIsEnabled": false}, "stack": {"tags": {}},
                "deployment": {"version": 3, "deployment":
                    {"manifest": {"time": "0001-01-01T00:00:00Z", "magic": "", "version": ""}}}});
            if let Some(v) = b["journalVersion"].as_i64().filter(|v| *v >= 1) {
                r["journalVersion"] = json!(v.min(2));
            }
            ok(r)
        }
        ("GET", ["api", "user"]) => ok(
            json!({"id": "u", "githubLogin": "admin", "name": "admin", "email": "", "avatarUrl": "",
            "organizations": [{"name": "organization", "githubLogin": "organization", "avatarUrl": ""}], "identities": []}),
        ),
        ("GET", ["api", "user", "organizations", "default"]) => {
            ok(json!({"GitHubLogin": "organization", "Messages": []}))
        }
        ("GET", ["api", "user", "stacks"]) => ok(json!({"stacks": []})),
        ("HEAD", ["api", "stacks", _, _]) => StatusCode::OK.into_response(),
        ("POST", ["api", "stacks", _, _]) => ok(json!({})),
        ("GET", ["api", "stacks", o, p, s]) => ok(
            json!({"id": "1", "orgName": o, "projectName": p, "stackName": s,
            "activeUpdate": "", "tags": {}, "version": 0}),
        ),
        ("DELETE", ["api", "stacks", _, _, _]) => none(),
        ("GET", ["api", "stacks", _, _, _, "export", ..]) => ok(json!({"version": 3, "deployment":
            {"manifest": {"time": "0001-01-01T00:00:00Z", "magic": "", "version": ""}}})),
        ("GET", ["api", "stacks", _, _, _, "updates"]) => ok(json!({"updates": []})),
        ("POST", ["api", "stacks", _, _, _, "encrypt"]) => {
            let b = body_json(&headers, &body);
            ok(json!({"ciphertext": b["plaintext"]}))
        }
        ("POST", ["api", "stacks", _, _, _, "decrypt"]) => {
            let b = body_json(&headers, &body);
            ok(json!({"plaintext": b["ciphertext"]}))
        }
        ("POST", ["api", "stacks", _, _, _, "batch-encrypt"]) => {
            let b = body_json(&headers, &body);
            ok(json!({"ciphertexts": b["plaintexts"]}))
        }
        ("POST", ["api", "stacks", _, _, _, "batch-decrypt"]) => {
            let b = body_json(&headers, &body);
            let map: serde_json::Map<String, Value> = b["ciphertexts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| (c.as_str().unwrap_or("").to_owned(), c.clone()))
                        .collect()
                })
                .unwrap_or_default();
            ok(json!({"plaintexts": map}))
        }
        ("POST", ["api", "stacks", _, _, _, "decrypt", _]) => none(),
        ("POST", ["api", "stacks", _, _, _, _kind]) => {
            ok(json!({"updateID": "00000000-0000-0000-0000-000000000000",
            "aiSettings": {"copilotIsEnabled": false}}))
        }
        ("POST", ["api", "stacks", _, _, _, _, _]) => {
            let b = body_json(&headers, &body);
            let mut r = json!({"version": 1, "token": "lease", "tokenExpiration": 0});
            if let Some(v) = b["journalVersion"].as_i64().filter(|v| *v >= 1) {
                r["journalVersion"] = json!(v.min(2));
            }
            ok(r)
        }
        ("POST", [.., "renew_lease"]) => ok(json!({"token": "lease", "tokenExpiration": 0})),
        ("POST", [.., "events", "batch"]) => StatusCode::OK.into_response(),
        ("PATCH", _) | ("POST", [.., "complete"]) | ("POST", [.., "cancel"]) => none(),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": 404, "message": "Not Found"})),
        )
            .into_response(),
    }
}

fn start_null_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(null_service);
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

// ------------------------------------------------------------------ measurement

fn self_cpu() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn proc_hwm_mb(pid: u32) -> f64 {
    common::proc_field(pid, "VmHWM:") as f64 / 1024.0
}

/// Runs a command, returning (wall, CPU of the child) and asserting success.
// The child is reaped with wait4 (for its CPU time), not through `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_timed(cmd: &mut std::process::Command) -> (f64, f64) {
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // wait4 reports the child's own CPU (and that of its waited-for descendants: plugins).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        panic!("command failed: {cmd:?}\n{err}");
    }
    (wall, tv(ru.ru_utime) + tv(ru.ru_stime))
}

// ------------------------------------------------------------------ workload

struct Toolchain {
    pulumi: PathBuf,
    plugins: PathBuf,
}

fn toolchain() -> Toolchain {
    let dir = std::env::var_os("PBACKEND_TOOLCHAIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var("HOME").unwrap()).join(".cache/pbackend-toolchain")
        });
    let t = Toolchain {
        pulumi: dir.join(format!(
            "pulumi-{}/pulumi",
            arg("--cli").unwrap_or_else(|| "v3.259.0".into())
        )),
        plugins: dir.join("plugins"),
    };
    assert!(t.pulumi.is_file(), "run scripts/pulumi-toolchain.sh first");
    t
}

fn program(tc: &Toolchain, n: usize) -> String {
    let p = tc.plugins.display();
    let mut s = format!(
        "name: bench\nruntime: yaml\nplugins:\n  providers:\n    - name: pbtest\n      path: {p}\n  languages:\n    - name: yaml\n      path: {p}\nresources:\n"
    );
    let shape = arg("--shape");
    for i in 0..n {
        let properties = match shape.as_deref() {
            None => format!("value: v{i}\n      padBytes: {PAD}"),
            Some("echo") => format!("value: v{i}\n      data: \"{}\"", echo_value(i)),
            Some("heavy") => format!("value: \"{}\"", echo_value(i)),
            Some(other) => {
                panic!("--shape {other}: echo or heavy (or none for the padded default)")
            }
        };
        s.push_str(&format!(
            "  r{i}:\n    type: pbtest:index:Item\n    properties:\n      {properties}\n"
        ));
    }
    s.push_str("outputs:\n  s: ${r0.secret}\n");
    s
}

/// The ~16 KB string of `--shape echo` and `--shape heavy`. The Go peer's benchmark pads with
/// one repeated letter; this one uses letters and digits from a fixed pseudo-random sequence,
/// so the state does not compress to nothing (it gzips to about three quarters).
fn echo_value(i: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..PAD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Backend {
    Pbackend,
    PbackendFull,
    PbackendPg,
    PbackendJ1,
    PbackendCkpt,
    /// Another build of pbackend (`PBACKEND_BENCH_ALT_BIN`), for before/after comparisons.
    PbackendAlt,
    Null,
    File,
    Skip,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Pbackend => "pbackend",
            Backend::PbackendFull => "pbackend, durability full",
            Backend::PbackendPg => "pbackend, PostgreSQL",
            Backend::PbackendJ1 => "pbackend, journal v1",
            Backend::PbackendCkpt => "pbackend, checkpoints",
            Backend::PbackendAlt => "pbackend, other build",
            Backend::Null => "do-nothing",
            Backend::File => "file://",
            Backend::Skip => "skip-checkpoints",
        }
    }

    fn ops(self) -> &'static [&'static str] {
        match self {
            Backend::Pbackend
            | Backend::PbackendFull
            | Backend::PbackendPg
            | Backend::PbackendJ1
            | Backend::PbackendCkpt
            | Backend::PbackendAlt
            | Backend::File => &[
                "create",
                "no-op (cold)",
                "no-op (warm)",
                "add 2",
                "export",
                "destroy",
            ],
            Backend::Null => &["create"],
            Backend::Skip => &["create", "destroy"],
        }
    }
}

#[derive(Default)]
struct Sample {
    wall: Vec<f64>,
    client_cpu: Vec<f64>,
    server_cpu: Vec<f64>,
    rss: Vec<f64>,
}

fn med_range(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = s[s.len() / 2];
    if s.len() == 1 {
        format!("{m:.digits$}")
    } else {
        format!(
            "{m:.digits$} ({:.digits$}–{:.digits$})",
            s[0],
            s[s.len() - 1]
        )
    }
}

/// One full sequence of operations for a backend at size `n`; returns per-op measures.
fn run_sequence(
    tc: &Toolchain,
    backend: Backend,
    n: usize,
) -> Vec<(&'static str, f64, f64, f64, f64)> {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let proj = work.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("Pulumi.yaml"), program(tc, n)).unwrap();
    let mut server: Option<std::process::Child> = None;
    let url = match backend {
        Backend::Pbackend
        | Backend::PbackendFull
        | Backend::PbackendPg
        | Backend::PbackendJ1
        | Backend::PbackendCkpt
        | Backend::PbackendAlt => {
            let db = if backend == Backend::PbackendPg {
                pg::server()
                    .expect("PostgreSQL server binaries (scripts/test-deps.sh)")
                    .fresh_database()
            } else {
                work.path().join("pb.db").display().to_string()
            };
            let port = common::free_port();
            // PBACKEND_BENCH_SERVER_LOG=FILE: every request at debug level, appended to FILE
            // (to count what a CLI version sends; it costs the server some CPU).
            let log = std::env::var_os("PBACKEND_BENCH_SERVER_LOG");
            let level = if log.is_some() {
                "pbackend=debug"
            } else {
                "warn"
            };
            let stderr = match &log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap(),
                ),
                None => Stdio::null(),
            };
            let bin = match backend {
                Backend::PbackendAlt => std::env::var_os("PBACKEND_BENCH_ALT_BIN")
                    .map(PathBuf::from)
                    .expect("pbackend-alt needs PBACKEND_BENCH_ALT_BIN"),
                _ => PathBuf::from(env!("CARGO_BIN_EXE_pbackend")),
            };
            // PBACKEND_BENCH_SERVER_WRAP="heaptrack -o FILE": the server under a profiler.
            let mut command = common::server_command(&bin);
            let child = command
                .args([
                    "serve",
                    "--addr",
                    &format!("127.0.0.1:{port}"),
                    "--single-tenant-token",
                    TOKEN,
                    "--log-level",
                    level,
                ])
                .arg("--db")
                .arg(&db)
                .arg("--master-key")
                .arg("00".repeat(32))
                .args(match backend {
                    Backend::PbackendJ1 => &["--max-journal-version", "1"][..],
                    Backend::PbackendFull => &["--durability", "full"][..],
                    _ => &[][..],
                })
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap();
            server = Some(child);
            let url = format!("http://127.0.0.1:{port}");
            for _ in 0..400 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            url
        }
        Backend::Null => NULL_URL.with(|u| u.clone()),
        Backend::File | Backend::Skip => {
            let state = work.path().join("state");
            std::fs::create_dir_all(&state).unwrap();
            format!("file://{}", state.display())
        }
    };
    let pulumi = |args: &[&str]| {
        let mut c = std::process::Command::new(&tc.pulumi);
        c.args(args)
            .current_dir(&proj)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("PULUMI_HOME", &home)
            .env("PULUMI_SKIP_UPDATE_CHECK", "true")
            .env("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
            .env("PULUMI_ACCESS_TOKEN", TOKEN)
            .env("PULUMI_CONFIG_PASSPHRASE", "bench")
            .env("NO_COLOR", "1");
        if backend == Backend::Skip {
            c.env("PULUMI_SKIP_CHECKPOINTS", "true");
        }
        if matches!(backend, Backend::PbackendJ1 | Backend::PbackendCkpt) {
            c.env("PULUMI_DISABLE_BEGIN_UPDATE", "true");
        }
        if backend == Backend::PbackendCkpt {
            c.env("PULUMI_DISABLE_JOURNALING", "true");
        }
        c
    };
    run_timed(pulumi(&["login", &url]).stdin(Stdio::null()));
    run_timed(&mut pulumi(&["stack", "init", "dev"]));
    let on_pg = backend == Backend::PbackendPg;
    let server_cpu = || {
        server
            .as_ref()
            .map(|s| proc_cpu_secs(s.id()) + if on_pg { postgres_cpu_secs() } else { 0.0 })
            .unwrap_or_else(self_cpu)
    };
    let mut out = Vec::new();
    for &op in backend.ops() {
        if op == "add 2" {
            std::fs::write(proj.join("Pulumi.yaml"), program(tc, n + 2)).unwrap();
        }
        let args: &[&str] = match op {
            "create" | "no-op (cold)" | "no-op (warm)" | "add 2" => &["up", "--yes"],
            "export" => &["stack", "export", "--show-secrets"],
            "destroy" => &["destroy", "--yes"],
            _ => unreachable!(),
        };
        let s0 = server_cpu();
        let (wall, cpu) = run_timed(&mut pulumi(args));
        let s1 = server_cpu();
        let rss = server.as_ref().map(|s| proc_hwm_mb(s.id())).unwrap_or(0.0);
        out.push((op, wall, cpu, s1 - s0, rss));
    }
    if let Some(s) = server {
        common::stop_server(s);
    }
    out
}

thread_local! {
    static NULL_URL: String = start_null_server();
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let tc = toolchain();
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "10,200,600".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let repeats: usize = arg("--repeats").map(|r| r.parse().unwrap()).unwrap_or(3);
    let file_max: usize = arg("--file-max-size")
        .map(|r| r.parse().unwrap())
        .unwrap_or(600);
    let backends: Vec<Backend> = arg("--backends")
        .unwrap_or_else(|| "pbackend,null,file,skip".into())
        .split(',')
        .map(|b| match b {
            "pbackend" => Backend::Pbackend,
            "pbackend-pg" => Backend::PbackendPg,
            "pbackend-full" => Backend::PbackendFull,
            "pbackend-j1" => Backend::PbackendJ1,
            "pbackend-ckpt" => Backend::PbackendCkpt,
            "pbackend-alt" => Backend::PbackendAlt,
            "null" => Backend::Null,
            "file" => Backend::File,
            "skip" => Backend::Skip,
            other => panic!("unknown backend {other}"),
        })
        .collect();
    let mut results: BTreeMap<(usize, &'static str, Backend), Sample> = BTreeMap::new();
    for r in 0..repeats {
        for &n in &sizes {
            for &b in &backends {
                if b == Backend::File && n > file_max {
                    continue;
                }
                eprintln!("repeat {} size {n} {}", r + 1, b.name());
                for (op, wall, cpu, scpu, rss) in run_sequence(&tc, b, n) {
                    let s = results.entry((n, op, b)).or_default();
                    s.wall.push(wall);
                    s.client_cpu.push(cpu);
                    s.server_cpu.push(scpu);
                    s.rss.push(rss);
                }
            }
        }
    }
    println!(
        "| resources | operation | backend | wall s | CLI CPU s | server CPU s | server peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|");
    let order = [
        "create",
        "no-op (cold)",
        "no-op (warm)",
        "add 2",
        "export",
        "destroy",
    ];
    for &n in &sizes {
        for op in order {
            for &b in &backends {
                if let Some(s) = results.get(&(n, op, b)) {
                    let (scpu, rss) = match b {
                        Backend::Pbackend
                        | Backend::PbackendFull
                        | Backend::PbackendPg
                        | Backend::PbackendAlt => {
                            (med_range(&s.server_cpu, 2), med_range(&s.rss, 0))
                        }
                        Backend::Null => (med_range(&s.server_cpu, 2), "-".into()),
                        _ => ("-".into(), "-".into()),
                    };
                    println!(
                        "| {n} | {op} | {} | {} | {} | {scpu} | {rss} |",
                        b.name(),
                        med_range(&s.wall, 2),
                        med_range(&s.client_cpu, 1)
                    );
                }
            }
        }
    }
    // Ratios against the targets, on medians.
    let med = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!();
    println!("| resources | ratio | value | target |");
    println!("|---|---|---|---|");
    for &n in &sizes {
        let get = |op, b| {
            results
                .get(&(n, op, b))
                .map(|s| med(&s.wall))
                .unwrap_or(f64::NAN)
        };
        let pb_create = get("create", Backend::Pbackend);
        println!(
            "| {n} | create: pbackend / do-nothing | {:.3} | ≤ 1.02 |",
            pb_create / get("create", Backend::Null)
        );
        if results.contains_key(&(n, "create", Backend::PbackendFull)) {
            println!(
                "| {n} | create: durability full / normal | {:.3} | |",
                get("create", Backend::PbackendFull) / pb_create
            );
        }
        if results.contains_key(&(n, "create", Backend::PbackendPg)) {
            println!(
                "| {n} | create: pbackend on PostgreSQL / do-nothing | {:.3} | ≤ 1.05 |",
                get("create", Backend::PbackendPg) / get("create", Backend::Null)
            );
        }
        println!(
            "| {n} | create: pbackend / file:// | {:.3} | ≤ 0.07 (at 600) |",
            pb_create / get("create", Backend::File)
        );
        println!(
            "| {n} | no-op cold / no-op warm (pbackend) | {:.3} | ≤ 1.05 |",
            get("no-op (cold)", Backend::Pbackend) / get("no-op (warm)", Backend::Pbackend)
        );
        if let Some(s) = results.get(&(n, "create", Backend::Pbackend)) {
            println!(
                "| {n} | server CPU per create (pbackend) | {:.2} s | ≤ 0.25 s (at 600) |",
                med(&s.server_cpu)
            );
        }
    }
}
