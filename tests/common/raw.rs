//! Requests on a raw connection: a head that declares a body and sends none of it, to see
//! whether a server answers before reading the body (a credential check) or waits for it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response read off a raw connection.
pub struct Raw {
    pub status: u16,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

/// Sends a request head that declares a large gzip body and then sends none of it. A server
/// that reads bodies before checking credentials would wait for those bytes (and answer 408
/// after its body idle timeout); one that checks first answers at once.
pub async fn head_only(url: &str, method: &str, path: &str, auth: Option<&str>) -> Raw {
    let addr = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: 50000000\r\n"
    );
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    let start = Instant::now();
    tcp.write_all(head.as_bytes()).await.expect("write head");
    read_response(&mut tcp, start, method == "HEAD").await
}

pub async fn read_response(tcp: &mut tokio::net::TcpStream, start: Instant, head: bool) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Duration::from_secs(10);
    loop {
        let n = tokio::time::timeout(deadline, tcp.read(&mut chunk))
            .await
            .expect("the server answered in time")
            .expect("read");
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head_text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head_text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if head || buf.len() >= end + 4 + len {
                let status = head_text[9..12].parse().expect("status");
                let body = if head {
                    Vec::new()
                } else {
                    buf[end + 4..end + 4 + len].to_vec()
                };
                return Raw {
                    status,
                    body,
                    elapsed: start.elapsed(),
                };
            }
        }
    }
    panic!(
        "connection closed before a whole response: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Like [`head_only`], but gives up after `wait`: `None` means the server is waiting for the
/// declared body, so it let the request through to the handler.
pub async fn head_only_within(
    url: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    wait: Duration,
) -> Option<Raw> {
    tokio::time::timeout(wait, head_only(url, method, path, auth))
        .await
        .ok()
}
