//! `--instructions`: the server's CPU cost per request kind, counted in instructions by
//! `valgrind --tool=callgrind` — immune to this machine's timing noise. The server runs under
//! callgrind; before each kind the counters are zeroed (`callgrind_control -z`) and after it
//! dumped (`-d`), so each dump holds one kind's requests and whatever background work ran
//! meanwhile (measured on its own as "idle, per second").

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::common::{deployment, resource};
use super::{call, gz, spawn_wrapped, stop_server};

const PAD: usize = 400;

fn control(args: &[&str], pid: u32) {
    let ok = std::process::Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "callgrind_control {args:?} failed");
}

/// The instruction total of the newest dump in `dir`.
fn last_dump_total(dir: &Path, seen: &mut usize) -> u64 {
    for _ in 0..100 {
        let mut dumps: Vec<_> = std::fs::read_dir(dir)
            .expect("dump dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("cg.") && n.matches('.').count() == 2)
            })
            .collect();
        if dumps.len() > *seen {
            dumps.sort_by_key(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .and_then(|e| e.parse::<u32>().ok())
                    .unwrap_or(0)
            });
            let text = std::fs::read_to_string(dumps.last().expect("a dump")).unwrap_or_default();
            if let Some(total) = text
                .lines()
                .find_map(|l| l.strip_prefix("totals:").or(l.strip_prefix("summary:")))
                .and_then(|v| v.trim().parse().ok())
            {
                *seen = dumps.len();
                return total;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("callgrind wrote no dump in {}", dir.display());
}

struct Kind {
    name: String,
    count: usize,
    instructions: u64,
}

pub async fn run() {
    // `PBACKEND_BENCH_CALLGRIND_DIR` keeps the dumps (one per kind, in the order below) for
    // `callgrind_annotate`.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = std::env::var_os("PBACKEND_BENCH_CALLGRIND_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("dump dir");
    let db = tmp.path().join("cg.db").display().to_string();
    let out = format!(
        "valgrind --tool=callgrind --callgrind-out-file={}/cg.%p",
        dir.display()
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let (child, base) = spawn_wrapped(&http, &db, "normal", &out).await;
    let pid = child.id();
    let auth = format!("token {}", super::TOKEN);
    let post = reqwest::Method::POST;
    let mut seen = 0;
    let mut kinds: Vec<Kind> = Vec::new();
    for s in ["j", "c"] {
        let body = json!({ "stackName": s }).to_string().into_bytes();
        call(
            &http,
            post.clone(),
            format!("{base}/api/stacks/organization/proj"),
            &auth,
            Some((body, false)),
        )
        .await;
    }
    let start = |stack: &'static str, journal: bool| {
        let (http, base, auth) = (http.clone(), base.clone(), auth.clone());
        async move {
            let st = format!("{base}/api/stacks/organization/proj/{stack}");
            let body = json!({"options": {"dryRun": false}})
                .to_string()
                .into_bytes();
            let id = call(
                &http,
                reqwest::Method::POST,
                format!("{st}/update"),
                &auth,
                Some((body, false)),
            )
            .await["updateID"]
                .as_str()
                .expect("update id")
                .to_owned();
            let start = if journal {
                json!({"journalVersion": 1})
            } else {
                json!({})
            };
            let token = call(
                &http,
                reqwest::Method::POST,
                format!("{st}/update/{id}"),
                &auth,
                Some((start.to_string().into_bytes(), false)),
            )
            .await["token"]
                .as_str()
                .expect("lease")
                .to_owned();
            (format!("{st}/update/{id}"), format!("update-token {token}"))
        }
    };

    // Each kind: zero, send `count` requests, dump, read the dump's total.
    macro_rules! kind {
        ($name:expr, $count:expr, $body:expr) => {{
            control(&["-z"], pid);
            for i in 0..$count {
                $body(i).await;
            }
            control(&["-d"], pid);
            kinds.push(Kind {
                name: $name.to_string(),
                count: $count,
                instructions: last_dump_total(&dir, &mut seen),
            });
        }};
    }

    kind!("idle, per second (background work)", 2, |_| {
        tokio::time::sleep(Duration::from_millis(500))
    });
    kind!("GET /api/user", 20, |_| call(
        &http,
        reqwest::Method::GET,
        format!("{base}/api/user"),
        &auth,
        None
    ));

    let plaintexts: Vec<String> = (0..4)
        .map(|i| base64::engine::general_purpose::STANDARD.encode(format!("secret value {i}")))
        .collect();
    let enc = json!({ "plaintexts": plaintexts }).to_string().into_bytes();
    kind!("batch-encrypt (4 values)", 20, |_| call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/stacks/organization/proj/j/batch-encrypt"),
        &auth,
        Some((enc.clone(), false))
    ));

    let (upd, lease) = start("j", true).await;
    let mut seq = 1;
    let mut batches = vec![gz(
        &json!({"entries": [{"version":1,"kind":6,"sequenceID":1,"operationID":0,
        "secretsProvider":{"type":"service","state":{"url":base,"owner":"organization","project":"proj","stack":"j"}}}]}),
    )];
    let entries = super::common::create_entries(0, 1000, PAD, &mut seq);
    batches.extend(entries.chunks(100).map(|c| gz(&json!({ "entries": c }))));
    call(
        &http,
        reqwest::Method::PATCH,
        format!("{upd}/journalentries"),
        &lease,
        Some((batches[0].clone(), true)),
    )
    .await;
    kind!(
        "journal batch (100 entries, ~1 KB states)",
        10,
        |i: usize| call(
            &http,
            reqwest::Method::PATCH,
            format!("{upd}/journalentries"),
            &lease,
            Some((batches[i + 1].clone(), true))
        )
    );

    let events = gz(
        &json!({"events": (0..50).map(|i| json!({"sequence": i, "timestamp": 1,
        "stdoutEvent": {"message": format!("line {i} of the engine's output"), "color": "raw"}})).collect::<Vec<_>>()}),
    );
    kind!("events batch (50 events)", 20, |_| call(
        &http,
        reqwest::Method::POST,
        format!("{upd}/events/batch"),
        &lease,
        Some((events.clone(), true))
    ));

    kind!("renew lease", 20, |_| call(
        &http,
        reqwest::Method::POST,
        format!("{upd}/renew_lease"),
        &lease,
        Some((br#"{"duration":300}"#.to_vec(), false))
    ));

    kind!("complete (journal, 1,000 resources, 1.1 MB)", 1, |_| call(
        &http,
        reqwest::Method::POST,
        format!("{upd}/complete"),
        &lease,
        Some((br#"{"status":"succeeded"}"#.to_vec(), false))
    ));

    kind!("export (1,000 resources)", 10, |_| call(
        &http,
        reqwest::Method::GET,
        format!("{base}/api/stacks/organization/proj/j/export"),
        &auth,
        None
    ));

    let (cupd, clease) = start("c", false).await;
    let full = gz(&deployment(
        (0..1000).map(|i| resource(i, "a", PAD)).collect(),
    ));
    kind!("full checkpoint (1,000 resources, 1.1 MB)", 5, |_| call(
        &http,
        reqwest::Method::PATCH,
        format!("{cupd}/checkpoint"),
        &clease,
        Some((full.clone(), true))
    ));
    call(
        &http,
        reqwest::Method::POST,
        format!("{cupd}/complete"),
        &clease,
        Some((br#"{"status":"succeeded"}"#.to_vec(), false)),
    )
    .await;

    stop_server(child);

    let idle_per_sec = kinds[0].instructions as f64;
    println!("### Instructions per request (callgrind)");
    println!();
    println!(
        "`cargo bench --bench load -- --instructions`: the release server under \
         `valgrind --tool=callgrind`, requests sent one at a time; all of the server's threads \
         counted. Background work (idle, per second) is shown on its own and not subtracted."
    );
    println!();
    println!("| request | count | instructions per request |");
    println!("|---|---|---|");
    println!(
        "| idle, per second (background work) | 1 s | {:.0} |",
        idle_per_sec
    );
    for k in &kinds[1..] {
        println!(
            "| {} | {} | {:.0} |",
            k.name,
            k.count,
            k.instructions as f64 / k.count as f64
        );
    }
    println!();
}
