//! Entry points for the fuzz targets in `fuzz/`: each takes arbitrary bytes, drives one
//! parser or applier the server runs on client input, and panics only when an invariant
//! breaks (an error for bad input is fine; a panic, an over-limit output or a disagreement
//! with the direct model is a finding).

use std::io::Read;

use crate::engine::inflate::inflate_sync;
use crate::engine::state::delta;
use crate::engine::state::deployment::{
    check_untyped, count_resources, gzip, untyped_from_full_checkpoint, untyped_from_verbatim,
};
use crate::engine::state::events::{EventBody, batch_of};
use crate::engine::state::journal::{Base, Replayer, parse_entries};
use crate::testkit::journal_model::{Step, base_deployment, simulate};

/// Inflation with a limit, on arbitrary bytes and on real gzip with forged trailers: never
/// more output than the limit, and the same bytes as a plain decoder whenever it succeeds.
pub fn inflate(data: &[u8]) {
    const LIMIT: usize = 1 << 20;
    let check = |gz: &[u8]| {
        if let Ok(out) = inflate_sync(gz, LIMIT) {
            assert!(out.len() <= LIMIT);
            let mut plain = Vec::new();
            let ok = flate2::read::GzDecoder::new(gz)
                .read_to_end(&mut plain)
                .is_ok();
            assert!(
                ok && plain == out,
                "inflate accepted what a plain decoder refuses"
            );
        }
    };
    check(data);
    // The same bytes as a real gzip stream, then with its trailer's size field forged.
    let mut gz = gzip(data);
    check(&gz);
    let n = gz.len();
    if n >= 4 && data.len() >= 4 {
        gz[n - 4..].copy_from_slice(&data[..4]);
        check(&gz);
    }
}

/// The streaming scan of gzip event batches, and the plain-JSON path.
pub fn event_batch(data: &[u8]) {
    let _ = batch_of(EventBody::Gzip(data.to_vec()), 1 << 20);
    let _ = batch_of(EventBody::Gzip(gzip(data)), 1 << 20);
    let _ = batch_of(EventBody::Json(data.to_vec()), 1 << 20);
}

/// Delta requests against a base text: applying in place agrees with applying into a new
/// buffer, and a refused delta leaves the text unchanged.
pub fn delta(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let (base, body) = rest.split_at(*first as usize * rest.len() / 256);
    let Ok(req) = delta::parse_request(body) else {
        return;
    };
    let Ok(edits) = delta::parse_edits(req.edits.map(|r| r.get())) else {
        return;
    };
    let direct = delta::apply(base, &edits);
    let mut text = base.to_vec();
    let hash = match &direct {
        Ok(out) => crate::engine::crypto::sha256_hex(out),
        Err(_) => req.checkpoint_hash.clone(),
    };
    match delta::apply_verified_in_place(&mut text, &edits, &hash) {
        Ok(()) => assert_eq!(Some(&text), direct.as_ref().ok()),
        Err(_) => assert_eq!(text, base),
    }
}

/// Journal bodies from arbitrary bytes: parse, replay on a small base, generate.
pub fn journal_parse(data: &[u8]) {
    let Ok(entries) = parse_entries(data) else {
        return;
    };
    let base = base_deployment(3).to_string();
    let Ok(base) = Base::from_untyped(base.into_bytes()) else {
        return;
    };
    let mut r = Replayer::with_version(base, 2);
    for e in entries {
        if r.add(e).is_err() {
            return;
        }
    }
    if let Ok(g) = r.generate() {
        let out = g.to_untyped("v", "t");
        serde_json::from_slice::<serde_json::Value>(&out).expect("generated JSON parses");
    }
}

/// Steps decoded from bytes, played through the replayer, must give the model's state.
pub fn journal_model(data: &[u8]) {
    let n = data.first().map_or(0, |b| (*b % 16) as usize);
    let steps = Step::from_bytes(data.get(1..).unwrap_or_default());
    let (entries, resources, pending) = simulate(n, &steps);
    let base = base_deployment(n).to_string();
    let base = Base::from_untyped(base.into_bytes()).expect("model base");
    let mut r = Replayer::with_version(base, 2);
    for e in entries {
        let e = serde_json::from_value(e).expect("model entry");
        r.add(e).expect("the model's journal replays");
    }
    let out = r.generate().expect("generate").to_untyped("v", "t");
    let d: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    let got = d["deployment"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(got, resources, "replay disagrees with the model");
    let got = d["deployment"]["pending_operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(got, pending, "pending operations disagree with the model");
}

/// The readers of whole deployments (checkpoints, verbatim checkpoints, imports).
pub fn deployment(data: &[u8]) {
    let _ = untyped_from_full_checkpoint(data);
    let _ = untyped_from_verbatim(data);
    let _ = check_untyped(data);
    let _ = count_resources(data);
    let _ = Base::from_untyped(bytes::Bytes::copy_from_slice(data));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seeds_of_each_target_run_clean() {
        // Base of 3; create, migrate at 1, update base 0, migrate at 0, replace, refresh.
        super::journal_model(&[3, 0, 0, 14, 1, 3, 0, 14, 0, 8, 1, 11, 3]);
        super::journal_model(&[5, 14, 9, 13, 0, 14, 2]);
        super::inflate(b"hello");
        super::delta(b"\x10{}{\"checkpointHash\":\"00\"}");
        super::journal_parse(br#"{"entries":[]}"#);
        super::deployment(br#"{"version":3,"deployment":{}}"#);
        super::event_batch(br#"{"events":[]}"#);
    }
}
