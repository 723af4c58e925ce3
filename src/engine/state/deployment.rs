//! Deployments as bytes: compression, hashing, the few structural facts the engine needs
//! (schema version, resource count) and the shapes checkpoints arrive in.
//!
//! The engine keeps deployments as the exact JSON text the CLI sent. It never re-serialises a
//! whole deployment: a resource can hold numbers or strings that a round trip through a
//! generic JSON value would change, and the verbatim text is the baseline later deltas edit.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::engine::crypto::sha256_hex;
use crate::engine::error::{EngineError, EngineResult};
use crate::store::StateBlob;

/// The newest deployment schema version this server stores (advertised to the CLI).
pub const MAX_SCHEMA_VERSION: i64 = 4;

/// What `export` answers for a stack that has no state yet: a valid, empty version-3
/// deployment (an empty manifest version has an empty magic, which the CLI accepts).
pub const EMPTY_DEPLOYMENT: &[u8] =
    br#"{"version":3,"deployment":{"manifest":{"time":"0001-01-01T00:00:00Z","magic":"","version":""}}}"#;

/// Level 1: deployments are large and written often; the CPU saved matters more than the
/// few percent of size a higher level would win.
const STATE_LEVEL: Compression = Compression::new(1);

/// Compresses `data` as this server stores it.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), STATE_LEVEL);
    // Writing into a Vec cannot fail.
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Decompresses `data`, refusing more than `limit` bytes of output (gzip bombs). The output
/// is never sized from the gzip trailer (see `inflate`).
pub fn gunzip(data: &[u8], limit: usize) -> EngineResult<Vec<u8>> {
    crate::engine::inflate::inflate_sync(data, limit)
}

/// Decompresses a blob this server stored.
pub fn gunzip_stored(data: &[u8]) -> EngineResult<Vec<u8>> {
    gunzip_stored_sized(data, 0)
}

/// Decompresses a stored blob into one buffer of its recorded `size` (written by this
/// server, so trusted as a size; the output is still bounded by what the stream holds).
pub fn gunzip_stored_sized(data: &[u8], size: i64) -> EngineResult<Vec<u8>> {
    let out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    crate::engine::inflate::inflate_sync_into(data, usize::MAX - 1, out)
        .map_err(|e| EngineError::Internal(format!("stored state does not decompress: {e}")))
}

/// Builds the stored form of a deployment text.
pub fn blob_of(json: &[u8], resource_count: i64) -> StateBlob {
    let mut sink = StateSink::new(json.len() / 4 + 64);
    // Writing into memory cannot fail.
    sink.write_all(json).expect("gzip into memory");
    sink.finish(resource_count).expect("gzip into memory")
}

/// Builds the stored form of a deployment that `write` produces, hashing and compressing the
/// text as it is written: only the compressed form is ever whole in memory, so a large final
/// state costs its gzip, not a second copy of its text.
pub fn blob_streamed(
    resource_count: i64,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> EngineResult<StateBlob> {
    let io = |e: std::io::Error| EngineError::Internal(format!("writing the state: {e}"));
    // The writers emit many small pieces (a comma, one resource); zlib and SHA-256 work best
    // on larger runs.
    let mut buf = std::io::BufWriter::with_capacity(64 * 1024, StateSink::new(0));
    write(&mut buf).map_err(io)?;
    let sink = buf.into_inner().map_err(|e| io(e.into_error()))?;
    sink.finish(resource_count).map_err(io)
}

/// What a deployment's text becomes when stored: its SHA-256, its length and its gzip, taken
/// in one pass as it is written.
struct StateSink {
    sha: sha2::Sha256,
    gz: GzEncoder<Vec<u8>>,
    size: usize,
}

impl StateSink {
    fn new(gz_capacity: usize) -> StateSink {
        use sha2::Digest;
        StateSink {
            sha: sha2::Sha256::new(),
            gz: GzEncoder::new(Vec::with_capacity(gz_capacity), STATE_LEVEL),
            size: 0,
        }
    }

    fn finish(self, resource_count: i64) -> std::io::Result<StateBlob> {
        use sha2::Digest;
        Ok(StateBlob {
            sha256: hex::encode(self.sha.finalize()),
            size: self.size as i64,
            gz: self.gz.finish()?,
            resource_count,
        })
    }
}

impl Write for StateSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        self.sha.update(buf);
        self.gz.write_all(buf)?;
        self.size += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Like [`blob_of`] when the caller already holds the gzip of `json` (a gzip request body).
pub fn blob_with_gz(json: &[u8], gz: Vec<u8>, resource_count: i64) -> StateBlob {
    StateBlob {
        gz,
        sha256: sha256_hex(json),
        size: json.len() as i64,
        resource_count,
    }
}

/// Counts array elements without building them.
struct Count(i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct ResourceHead {
    #[allow(dead_code)]
    urn: String,
    #[serde(rename = "type")]
    #[allow(dead_code)]
    kind: String,
}

#[derive(Deserialize)]
struct DeploymentCheck {
    #[allow(dead_code)]
    manifest: IgnoredAny,
    #[serde(default)]
    resources: Option<Vec<ResourceHead>>,
}

#[derive(Deserialize)]
struct UntypedCheck {
    version: Option<i64>,
    deployment: Option<DeploymentCheck>,
}

/// Checks that `json` is a deployment the CLI will be able to read back (an object with a
/// supported schema version, a manifest, and resources that each have a URN and a type), and
/// returns its resource count.
pub fn check_untyped(json: &[u8]) -> EngineResult<i64> {
    let d: UntypedCheck = serde_json::from_slice(json)
        .map_err(|e| EngineError::Invalid(format!("the deployment is not valid: {e}")))?;
    let version = d.version.unwrap_or(0);
    if !(1..=MAX_SCHEMA_VERSION).contains(&version) {
        return Err(EngineError::Invalid(format!(
            "unsupported deployment version {version}: this server accepts 1 to {MAX_SCHEMA_VERSION}"
        )));
    }
    let dep = d
        .deployment
        .ok_or_else(|| EngineError::Invalid("the deployment has no \"deployment\" field".into()))?;
    Ok(dep.resources.map(|r| r.len() as i64).unwrap_or(0))
}

#[derive(Deserialize)]
struct CountDeployment {
    #[serde(default)]
    resources: Option<Count>,
}

#[derive(Deserialize)]
struct CountUntyped {
    deployment: Option<CountDeployment>,
}

/// Number of resources in a stored deployment text.
pub fn count_resources(json: &[u8]) -> EngineResult<i64> {
    let d: CountUntyped = serde_json::from_slice(json)
        .map_err(|e| EngineError::Internal(format!("stored deployment does not parse: {e}")))?;
    Ok(d.deployment
        .and_then(|d| d.resources)
        .map(|c| c.0)
        .unwrap_or(0))
}

#[derive(Deserialize)]
struct FullCheckpoint<'a> {
    version: i64,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(borrow)]
    deployment: Option<&'a RawValue>,
}

/// Turns a `PATCH …/checkpoint` body into the deployment text to store.
pub fn untyped_from_full_checkpoint(body: &[u8]) -> EngineResult<Vec<u8>> {
    let c: FullCheckpoint<'_> = serde_json::from_slice(body)
        .map_err(|e| EngineError::Invalid(format!("the checkpoint is not valid JSON: {e}")))?;
    if !(1..=MAX_SCHEMA_VERSION).contains(&c.version) {
        return Err(EngineError::Invalid(format!(
            "unsupported deployment version {}",
            c.version
        )));
    }
    let deployment = c
        .deployment
        .ok_or_else(|| EngineError::Invalid("the checkpoint has no deployment".into()))?;
    if !deployment.get().starts_with('{') {
        return Err(EngineError::Invalid(
            "the checkpoint's deployment is not an object".into(),
        ));
    }
    let mut out = Vec::with_capacity(deployment.get().len() + 64);
    out.extend_from_slice(b"{\"version\":");
    out.extend_from_slice(c.version.to_string().as_bytes());
    if let Some(features) = c.features.filter(|f| !f.is_empty() && c.version >= 4) {
        out.extend_from_slice(b",\"features\":");
        out.extend_from_slice(&serde_json::to_vec(&features).map_err(EngineError::internal)?);
    }
    out.extend_from_slice(b",\"deployment\":");
    out.extend_from_slice(deployment.get().as_bytes());
    out.push(b'}');
    Ok(out)
}

#[derive(Deserialize)]
struct VerbatimCheckpoint<'a> {
    #[serde(rename = "sequenceNumber", default)]
    sequence_number: i64,
    #[serde(rename = "untypedDeployment", borrow)]
    untyped: Option<&'a RawValue>,
}

/// Splits a `PATCH …/checkpointverbatim` body into the exact deployment text (byte for byte
/// as the CLI wrote it: later deltas address its bytes) and the sequence number.
pub fn untyped_from_verbatim(body: &[u8]) -> EngineResult<(Vec<u8>, i64)> {
    let c: VerbatimCheckpoint<'_> = serde_json::from_slice(body)
        .map_err(|e| EngineError::Invalid(format!("the checkpoint is not valid JSON: {e}")))?;
    let raw = c
        .untyped
        .ok_or_else(|| EngineError::Invalid("the checkpoint has no untypedDeployment".into()))?;
    if c.sequence_number < 0 {
        return Err(EngineError::Invalid(
            "sequenceNumber must not be negative".into(),
        ));
    }
    Ok((raw.get().as_bytes().to_vec(), c.sequence_number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trip_and_bomb_limit() {
        let data = vec![b'x'; 100_000];
        let gz = gzip(&data);
        assert_eq!(gunzip(&gz, 100_000).unwrap(), data);
        assert!(matches!(gunzip(&gz, 99_999), Err(EngineError::TooLarge(_))));
        assert!(matches!(
            gunzip(b"not gzip", 10),
            Err(EngineError::Invalid(_))
        ));
    }

    #[test]
    fn full_checkpoint_keeps_deployment_bytes() {
        let body = br#"{"isInvalid":false,"version":4,"features":["views"],"deployment":{"manifest":{"time":"t","magic":"","version":""},"resources":[{"urn":"u","type":"t","outputs":{"n":1.50}}]}}"#;
        let out = untyped_from_full_checkpoint(body).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"version":4,"features":["views"],"deployment":{"manifest":{"time":"t","magic":"","version":""},"resources":[{"urn":"u","type":"t","outputs":{"n":1.50}}]}}"#
        );
        assert_eq!(count_resources(&out).unwrap(), 1);
        assert_eq!(check_untyped(&out).unwrap(), 1);
    }

    #[test]
    fn verbatim_is_byte_exact() {
        let body = br#"{"version":3,"untypedDeployment":{"version":3,"deployment":{"manifest":{}, "x":1e3}},"sequenceNumber":7}"#;
        let (text, seq) = untyped_from_verbatim(body).unwrap();
        assert_eq!(seq, 7);
        assert_eq!(
            text,
            br#"{"version":3,"deployment":{"manifest":{}, "x":1e3}}"#
        );
    }

    #[test]
    fn check_untyped_refuses_bad_shapes() {
        assert!(check_untyped(b"{}").is_err());
        assert!(check_untyped(br#"{"version":9,"deployment":{"manifest":{}}}"#).is_err());
        assert!(check_untyped(br#"{"version":3}"#).is_err());
        assert!(
            check_untyped(br#"{"version":3,"deployment":{"manifest":{},"resources":[{"x":1}]}}"#)
                .is_err()
        );
        assert_eq!(check_untyped(EMPTY_DEPLOYMENT).unwrap(), 0);
    }
}
