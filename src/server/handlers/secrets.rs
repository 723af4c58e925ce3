//! Secrets routes of the "service" secrets provider. Values travel as standard base64.

use std::collections::BTreeMap;

use axum::Json as AxumJson;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::server::auth::ApiIdentity;
use crate::server::compression::Incompressible;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{Json, OptionalJson, P, SmallBody};
use crate::server::handlers::StackPath;
use crate::server::state::AppState;
use crate::server::wire::*;

fn decode(s: &str, what: &str) -> ApiResult<Vec<u8>> {
    B64.decode(s)
        .map_err(|_| ApiError::bad_request(format!("the {what} is not valid base64")))
}

pub async fn encrypt(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Json(req): Json<EncryptValueRequest>,
) -> ApiResult<(Extension<Incompressible>, AxumJson<EncryptValueResponse>)> {
    let plain = decode(&req.plaintext, "plaintext")?;
    let mut out = state.engine.encrypt(&caller, &p.key(), vec![plain]).await?;
    Ok((
        Extension(Incompressible),
        AxumJson(EncryptValueResponse {
            ciphertext: B64.encode(out.pop().unwrap_or_default()),
        }),
    ))
}

pub async fn decrypt(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Json(req): Json<DecryptValueRequest>,
) -> ApiResult<AxumJson<DecryptValueResponse>> {
    let ct = decode(&req.ciphertext, "ciphertext")?;
    let mut out = state.engine.decrypt(&caller, &p.key(), vec![ct]).await?;
    Ok(AxumJson(DecryptValueResponse {
        plaintext: B64.encode(out.pop().unwrap_or_default()),
    }))
}

pub async fn batch_encrypt(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    SmallBody(body): SmallBody,
) -> ApiResult<(Extension<Incompressible>, AxumJson<BatchEncryptResponse>)> {
    let req: BatchEncryptRequest = body.parse().await?;
    let plains = req
        .plaintexts
        .iter()
        .map(|s| decode(s, "plaintext"))
        .collect::<ApiResult<Vec<_>>>()?;
    let cts = state.engine.encrypt(&caller, &p.key(), plains).await?;
    Ok((
        Extension(Incompressible),
        AxumJson(BatchEncryptResponse {
            ciphertexts: cts.iter().map(|c| B64.encode(c)).collect(),
        }),
    ))
}

/// The answer maps each requested ciphertext, exactly as the CLI sent it, to its plaintext.
pub async fn batch_decrypt(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    SmallBody(body): SmallBody,
) -> ApiResult<AxumJson<BatchDecryptResponse>> {
    let req: BatchDecryptRequest = body.parse().await?;
    let cts = req
        .ciphertexts
        .iter()
        .map(|s| decode(s, "ciphertext"))
        .collect::<ApiResult<Vec<_>>>()?;
    let plains = state.engine.decrypt(&caller, &p.key(), cts).await?;
    let plaintexts: BTreeMap<String, String> = req
        .ciphertexts
        .into_iter()
        .zip(plains.iter().map(|p| B64.encode(p)))
        .collect();
    Ok(AxumJson(BatchDecryptResponse { plaintexts }))
}

/// `decrypt/log-decryption` and `decrypt/log-batch-decryption`: the CLI reports that it showed
/// secrets in clear; we record it in the log.
pub async fn log_decryption(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    OptionalJson(body): OptionalJson<serde_json::Value>,
) -> StatusCode {
    let what = body
        .get("commandName")
        .or_else(|| body.get("secretName"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let key = p.key();
    tracing::info!(user = %caller.user, stack = %key, what = %what, "secrets shown in clear");
    // The CLI ignores the answer; a failure to record is the log's to tell.
    if let Err(e) = state.engine.note_decryption(&caller, &key, &what).await {
        tracing::warn!(error = %e, "recording a decryption in the audit log failed");
    }
    StatusCode::NO_CONTENT
}
