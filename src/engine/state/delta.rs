//! Delta checkpoints (`checkpointdelta`): byte-offset text edits against the update's last
//! verbatim checkpoint text, verified with the SHA-256 the CLI computed for the result.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::error::{EngineError, EngineResult};

#[derive(Deserialize)]
struct Point {
    offset: i64,
}

#[derive(Deserialize)]
struct Span {
    start: Point,
    end: Point,
}

#[derive(Deserialize)]
pub struct TextEdit {
    #[serde(rename = "Span")]
    span: Span,
    #[serde(rename = "NewText", default)]
    new_text: String,
}

/// A `PATCH …/checkpointdelta` body.
#[derive(Deserialize)]
pub struct DeltaRequest<'a> {
    #[serde(rename = "checkpointHash")]
    pub checkpoint_hash: String,
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: i64,
    #[serde(rename = "deploymentDelta", borrow, default)]
    pub edits: Option<&'a RawValue>,
}

pub fn parse_request(body: &[u8]) -> EngineResult<DeltaRequest<'_>> {
    let r: DeltaRequest<'_> = serde_json::from_slice(body)
        .map_err(|e| EngineError::Invalid(format!("the delta checkpoint is not valid: {e}")))?;
    let hash_ok = r.checkpoint_hash.len() == 64
        && r.checkpoint_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hash_ok {
        return Err(EngineError::Invalid(
            "checkpointHash must be 64 lowercase hexadecimal characters".into(),
        ));
    }
    Ok(r)
}

pub fn parse_edits(edits: Option<&str>) -> EngineResult<Vec<TextEdit>> {
    match edits {
        None | Some("null") => Ok(vec![]),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| EngineError::Invalid(format!("the deploymentDelta is not valid: {e}"))),
    }
}

/// Up to this many edits are spliced in place; more are applied in one pass into a new
/// buffer, so that a delta's cost stays linear in the text and the edits whatever their count.
const SPLICE_MAX: usize = 4;

/// Applies `edits` in order to `base`, into a new buffer. Offsets are bytes; edits must be in
/// ascending order, not overlap, and stay within the text.
pub fn apply(base: &[u8], edits: &[TextEdit]) -> EngineResult<Vec<u8>> {
    let spans = spans(base.len(), edits)?;
    Ok(build(base, &spans, edits))
}

fn build(base: &[u8], spans: &[(usize, usize)], edits: &[TextEdit]) -> Vec<u8> {
    let added: usize = edits.iter().map(|e| e.new_text.len()).sum();
    let removed: usize = spans.iter().map(|(s, e)| e - s).sum();
    let mut out = Vec::with_capacity((base.len() + added).saturating_sub(removed));
    let mut last = 0usize;
    for ((start, end), e) in spans.iter().zip(edits) {
        out.extend_from_slice(&base[last..*start]);
        out.extend_from_slice(e.new_text.as_bytes());
        last = *end;
    }
    out.extend_from_slice(&base[last..]);
    out
}

/// Checks the edits against `base` (order, bounds) and returns them as byte ranges.
fn spans(base_len: usize, edits: &[TextEdit]) -> EngineResult<Vec<(usize, usize)>> {
    let mut last = 0usize;
    let mut out = Vec::with_capacity(edits.len());
    for (i, e) in edits.iter().enumerate() {
        let (start, end) = (e.span.start.offset, e.span.end.offset);
        if start < 0 || end < start || end as u64 > base_len as u64 || (start as usize) < last {
            return Err(EngineError::Invalid(format!(
                "delta edit {i} [{start}, {end}) is out of order or outside the {base_len}-byte checkpoint"
            )));
        }
        out.push((start as usize, end as usize));
        last = end as usize;
    }
    Ok(out)
}

/// Like [`apply_verified`], but edits `text` in place, and only once the hash of the result
/// (computed over the pieces, without building it) matches. On any error `text` is unchanged.
/// This saves allocating and faulting in a copy of a multi-megabyte checkpoint per delta.
pub fn apply_verified_in_place(
    text: &mut Vec<u8>,
    edits: &[TextEdit],
    expected_hash: &str,
) -> EngineResult<()> {
    use sha2::{Digest, Sha256};
    let spans = spans(text.len(), edits)?;
    let mut hasher = Sha256::new();
    let mut last = 0;
    for ((start, end), e) in spans.iter().zip(edits) {
        hasher.update(&text[last..*start]);
        hasher.update(e.new_text.as_bytes());
        last = *end;
    }
    hasher.update(&text[last..]);
    let got = hex::encode(hasher.finalize());
    if got != expected_hash {
        return Err(EngineError::Invalid(format!(
            "the delta does not produce the checkpoint the client expected (hash {got}, expected \
             {expected_hash}); send the full checkpoint"
        )));
    }
    if edits.len() <= SPLICE_MAX {
        // Back to front, so that earlier offsets stay valid. Each splice moves the tail, so
        // this is for the usual handful of edits only.
        for ((start, end), e) in spans.iter().zip(edits).rev() {
            text.splice(*start..*end, e.new_text.bytes());
        }
    } else {
        // Many edits: one pass into a new buffer, linear in text plus edits.
        *text = build(text, &spans, edits);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::crypto::sha256_hex;

    /// The worked example from our notes on the CLI contract.
    #[test]
    fn applies_the_reference_vector() {
        let base = br#"{"version":3,"deployment":{"manifest":{"time":"2026-01-01T00:00:00Z","magic":"","version":""},"metadata":{},"resources":[{"urn":"urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev","custom":false,"type":"pulumi:pulumi:Stack"}]}}"#;
        assert_eq!(
            sha256_hex(base),
            "eaf41f040cc28f9334083384499a60d07178a3d1f2cf5cfe6808a64e4f4a097f"
        );
        let delta = r#"[{"Span":{"uri":"","start":{"line":1,"column":1,"offset":121},"end":{"line":1,"column":1,"offset":224}},"NewText":"{\"urn\":\"urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev\",\"custom\":false,\"type\":\"pulumi:pulumi:Stack\"},{\"urn\":\"urn:pulumi:dev::web::random:index/randomPet:RandomPet::pet\",\"custom\":true,\"id\":\"fine-owl\",\"type\":\"random:index/randomPet:RandomPet\",\"parent\":\"urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev\"}"}]"#;
        let edits = parse_edits(Some(delta)).unwrap();
        let out = apply(base, &edits).unwrap();
        assert_eq!(out.len(), 429);
        assert_eq!(
            sha256_hex(&out),
            "0fdd47665985dc1ec42480eaaf040808236a660531ee58ef4f6fd5c54e811752"
        );
        let mut inplace = base.to_vec();
        assert!(apply_verified_in_place(&mut inplace, &edits, &"0".repeat(64)).is_err());
        assert_eq!(inplace, base);
        apply_verified_in_place(
            &mut inplace,
            &edits,
            "0fdd47665985dc1ec42480eaaf040808236a660531ee58ef4f6fd5c54e811752",
        )
        .unwrap();
        assert_eq!(inplace, out);
    }

    #[test]
    fn many_edits_apply_in_one_pass_and_agree_with_splicing() {
        let base: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let edits: Vec<TextEdit> = (0..2_000i64)
            .map(|i| TextEdit {
                span: Span {
                    start: Point { offset: i * 5 },
                    end: Point { offset: i * 5 + 1 },
                },
                new_text: if i % 2 == 0 {
                    String::new()
                } else {
                    "XY".into()
                },
            })
            .collect();
        let expected = apply(&base, &edits).unwrap();
        let mut text = base.clone();
        apply_verified_in_place(&mut text, &edits, &sha256_hex(&expected)).unwrap();
        assert_eq!(text, expected);
        let few = &edits[..3];
        let expected = apply(&base, few).unwrap();
        let mut text = base.clone();
        apply_verified_in_place(&mut text, few, &sha256_hex(&expected)).unwrap();
        assert_eq!(text, expected);
    }

    #[test]
    fn refuses_bad_offsets_without_panicking() {
        let base = "héllo".as_bytes();
        let e = |s: i64, t: i64| TextEdit {
            span: Span {
                start: Point { offset: s },
                end: Point { offset: t },
            },
            new_text: "x".into(),
        };
        assert!(apply(base, &[e(-1, 0)]).is_err());
        assert!(apply(base, &[e(3, 2)]).is_err());
        assert!(apply(base, &[e(0, 99)]).is_err());
        assert!(apply(base, &[e(3, 4), e(1, 2)]).is_err());
        // Offsets inside a multi-byte character are bytes, not chars: no panic.
        assert_eq!(apply(base, &[e(2, 3)]).unwrap(), b"h\xc3xllo".to_vec());
        assert_eq!(apply(base, &[]).unwrap(), base);
    }
}
