//! The layers point down and stay apart: `server` never names the store (or SQLite), the
//! engine never names HTTP or the command line, the store never names the engine, the server
//! or the wire format. A `use` added across a boundary fails here.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn offenders(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let mut out = Vec::new();
    for f in rust_files(&root) {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                if code.contains(word) {
                    out.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn the_server_never_names_the_store() {
    let found = offenders("server", &["crate::store", "rusqlite", "postgres::"]);
    assert!(
        found.is_empty(),
        "src/server reaches into the store:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_engine_never_names_http_or_the_command_line() {
    let found = offenders(
        "engine",
        &["axum", "hyper", "crate::server", "crate::cli", "clap"],
    );
    assert!(
        found.is_empty(),
        "src/engine reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_store_never_names_the_layers_above() {
    let found = offenders(
        "store",
        &["crate::engine", "crate::server", "crate::cli", "axum"],
    );
    assert!(
        found.is_empty(),
        "src/store reaches up:\n{}",
        found.join("\n")
    );
}
