//! Which answers are gzip-compressed on the way out.
//!
//! Large JSON answers compress well and cross slow links; ciphertexts do not compress at all
//! (they are random bytes in base64). With resources that carry large secrets, deflate at the
//! default level was the server's largest single cost in a no-op update (22% of its CPU, on
//! `batch-encrypt` and `batch-decrypt` answers).
//! Handlers that answer with ciphertexts mark their response [`Incompressible`].

use axum::body::HttpBody;
use axum::http::Response;
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};

/// A response extension: the body is not worth compressing.
#[derive(Clone, Copy, Debug)]
pub struct Incompressible;

#[derive(Clone, Copy)]
struct NotMarked;

impl Predicate for NotMarked {
    fn should_compress<B: HttpBody>(&self, response: &Response<B>) -> bool {
        response.extensions().get::<Incompressible>().is_none()
    }
}

/// gzip only, for answers above 4 KB that are not marked: the small answers (most of the
/// protocol) cost more to compress than to send over a LAN; setting up a deflate stream
/// showed in profiles. At the fastest level, as states are stored: the large answers are
/// plaintexts of whole secret outputs (`batch-decrypt`) and states, where the default level
/// cost several times the CPU for a few percent of size.
pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .quality(CompressionLevel::Fastest)
        .gzip(true)
        .no_br()
        .no_deflate()
        .no_zstd()
        .compress_when(SizeAbove::new(4096).and(NotMarked))
}
