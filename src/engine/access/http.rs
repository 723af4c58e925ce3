//! The outbound HTTP pbackend makes for logins: OpenID discovery, key sets, the identity
//! provider's token endpoint. One client with timeouts; nothing is retried here (a login
//! fails and the user tries again).

use std::time::Duration;

use crate::engine::{EngineError, EngineResult};

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// The most a discovery document, key set or token response may weigh.
const MAX_RESPONSE: usize = 1 << 20;

fn upstream(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("{what}: {e}"))
}

impl Http {
    pub fn new() -> EngineResult<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            // Redirects from an identity provider's API are not expected; a login's own
            // redirects go through the browser.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EngineError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Http { client })
    }

    /// GETs a JSON document.
    pub async fn get_json(&self, url: &str) -> EngineResult<serde_json::Value> {
        let resp = self
            .client
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| upstream(url, e))?;
        let status = resp.status();
        let body = read_bounded(resp).await?;
        if !status.is_success() {
            return Err(upstream(url, format!("answered {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| upstream(url, e))
    }

    /// Sends an `openidconnect` request (discovery, token exchange, refresh).
    pub async fn call(
        &self,
        req: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let resp = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError(e.to_string()))?;
        let mut out = http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let body = read_bounded(resp)
            .await
            .map_err(|e| HttpError(e.to_string()))?;
        out.body(body).map_err(|e| HttpError(e.to_string()))
    }
}

async fn read_bounded(mut resp: reqwest::Response) -> EngineResult<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| upstream("reading a response", e))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(upstream("a response", "larger than 1 MiB"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error type `openidconnect` needs from an HTTP client.
#[derive(Debug)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}
