//! OpenTelemetry traces over OTLP/HTTP (JSON), off unless `--otel-endpoint` is given: each
//! request's span (`request`) with child spans for the store transactions it runs
//! (`store.write`, `store.read`), so a slow `pulumi up` can be followed from request to commit.
//!
//! The exporter's batch processor runs on a thread of its own and blocks on each export; the
//! HTTP client it calls therefore drives our own reqwest (rustls, the stack the rest of the
//! binary uses) on a small runtime of its own instead of expecting one around it.

use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::cli::error::{CliError, CliResult};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    rt: Arc<tokio::runtime::Runtime>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let req = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body);
        let http = self.http.clone();
        let resp = self.rt.block_on(async move {
            let resp = http.execute(req.build()?).await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        })?;
        let mut out = http::Response::new(resp.1);
        *out.status_mut() = resp.0;
        Ok(out)
    }
}

/// The tracing layer that exports spans to `endpoint` (a collector's base URL; traces go to
/// `<endpoint>/v1/traces`).
pub fn layer(
    endpoint: &str,
) -> CliResult<impl tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::io("cannot start the trace exporter"))?;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| CliError::Invalid(format!("cannot build the trace exporter: {e}")))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_http_client(Client {
            http,
            rt: Arc::new(rt),
        })
        .build()
        .map_err(|e| CliError::Invalid(format!("--otel-endpoint {endpoint}: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("pbackend")
                .build(),
        )
        .build();
    let tracer = provider.tracer("pbackend");
    let _ = PROVIDER.set(provider);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Sends the spans still buffered (at exit).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown_with_timeout(std::time::Duration::from_secs(5));
    }
}
