//! Bounded gzip inflation for anything a client sends.
//!
//! Nothing about the output is trusted in advance: the gzip trailer's size field is read only
//! by the decoder's own check at the end, never to size an allocation. Output grows in
//! steps, each step charged to a caller-given [`Charge`] (the server's budget of bytes in
//! flight) before it is allocated, and inflation stops with `TooLarge` one byte past the
//! limit. The first [`INLINE_LIMIT`] bytes of output are produced on the calling thread;
//! a body that inflates past that is finished on the blocking pool, so the choice is made
//! on decompressed bytes as they arrive, not on the compressed size.

use std::io::Read;

use bytes::{Buf, Bytes};
use flate2::read::GzDecoder;

use crate::engine::blocking::{INLINE_LIMIT, run_blocking};
use crate::engine::error::{EngineError, EngineResult};

/// Takes `n` more bytes from a budget, or refuses.
pub trait Charge: Send + 'static {
    fn charge(&mut self, n: usize) -> EngineResult<()>;
}

/// No budget: only the limit applies.
pub struct Unmetered;

impl Charge for Unmetered {
    fn charge(&mut self, _: usize) -> EngineResult<()> {
        Ok(())
    }
}

/// Output grows by at most this much at a time.
const STEP: usize = 256 * 1024;

pub struct Inflater<R: Read, C: Charge> {
    dec: GzDecoder<R>,
    out: Vec<u8>,
    limit: usize,
    charge: C,
}

fn too_large(limit: usize) -> EngineError {
    EngineError::TooLarge(format!(
        "the decompressed body is larger than the limit of {limit} bytes"
    ))
}

impl<R: Read, C: Charge> Inflater<R, C> {
    pub fn new(gz: R, limit: usize, charge: C) -> Self {
        Inflater {
            dec: GzDecoder::new(gz),
            out: Vec::new(),
            limit,
            charge,
        }
    }

    /// Inflates until the output holds at least `until` bytes or the stream ends; `true` at
    /// the end (the CRC and size in the trailer checked).
    pub fn run(&mut self, until: usize) -> EngineResult<bool> {
        loop {
            if self.out.len() >= until {
                return Ok(false);
            }
            // One byte past the limit tells "exactly the limit" from "more".
            let room = self.limit.saturating_add(1).saturating_sub(self.out.len());
            if room == 0 {
                return Err(too_large(self.limit));
            }
            let grow = self.out.len().clamp(16 * 1024, STEP).min(room);
            self.charge.charge(grow)?;
            self.out.reserve_exact(grow);
            // `take` keeps `read_to_end` within what was reserved (and charged).
            let n = (&mut self.dec)
                .take(grow as u64)
                .read_to_end(&mut self.out)
                .map_err(|e| EngineError::Invalid(format!("the body is not valid gzip: {e}")))?;
            if self.out.len() > self.limit {
                return Err(too_large(self.limit));
            }
            if n < grow {
                return Ok(true);
            }
        }
    }

    pub fn into_output(self) -> (Vec<u8>, C) {
        (self.out, self.charge)
    }
}

/// Inflates a client's gzip body under `limit`, charging `charge` as output grows; small
/// outputs inline, large ones finished on the blocking pool. Returns the output and the
/// charge (which holds what was taken from the budget).
pub async fn inflate<C: Charge>(gz: Bytes, limit: usize, charge: C) -> EngineResult<(Vec<u8>, C)> {
    let mut inf = Inflater::new(gz.reader(), limit, charge);
    if inf.run(INLINE_LIMIT)? {
        return Ok(inf.into_output());
    }
    run_blocking(move || {
        inf.run(usize::MAX)?;
        Ok(inf.into_output())
    })
    .await
}

/// Inflates on the calling thread (already on the blocking pool, or in tests and fuzzing).
pub fn inflate_sync(gz: &[u8], limit: usize) -> EngineResult<Vec<u8>> {
    inflate_sync_into(gz, limit, Vec::new())
}

/// Like [`inflate_sync`] into `out` (reserved by a caller that knows the size: growing a
/// buffer of many megabytes step by step can hold the old and the new allocation at once).
pub fn inflate_sync_into(gz: &[u8], limit: usize, out: Vec<u8>) -> EngineResult<Vec<u8>> {
    let mut inf = Inflater::new(gz, limit, Unmetered);
    inf.out = out;
    inf.run(usize::MAX)?;
    Ok(inf.into_output().0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::deployment::gzip;

    #[test]
    fn round_trips_and_stops_at_the_limit() {
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let gz = gzip(&data);
        assert_eq!(inflate_sync(&gz, data.len()).unwrap(), data);
        assert!(matches!(
            inflate_sync(&gz, data.len() - 1),
            Err(EngineError::TooLarge(_))
        ));
        assert!(matches!(
            inflate_sync(b"not gzip", 10),
            Err(EngineError::Invalid(_))
        ));
        assert_eq!(inflate_sync(&gzip(b""), 0).unwrap(), b"");
    }

    #[test]
    fn a_forged_trailer_neither_sizes_memory_nor_passes() {
        let data = vec![b'a'; 100_000];
        let mut gz = gzip(&data);
        let n = gz.len();
        // Claim 4 GiB - 1 in the size field.
        gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut inf = Inflater::new(&gz[..], 1 << 30, Unmetered);
        assert!(matches!(inf.run(usize::MAX), Err(EngineError::Invalid(_))));
        assert!(inf.out.capacity() < 1 << 20);
    }

    struct Budget(usize);
    impl Charge for Budget {
        fn charge(&mut self, n: usize) -> EngineResult<()> {
            if n > self.0 {
                return Err(EngineError::Unavailable("over budget".into()));
            }
            self.0 -= n;
            Ok(())
        }
    }

    #[test]
    fn the_budget_is_charged_before_memory_grows() {
        let gz = gzip(&vec![0u8; 10 << 20]);
        let mut inf = Inflater::new(&gz[..], 64 << 20, Budget(1 << 20));
        assert!(matches!(
            inf.run(usize::MAX),
            Err(EngineError::Unavailable(_))
        ));
        assert!(inf.out.capacity() <= 1 << 20);
    }
}
