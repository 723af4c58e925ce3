//! Verifying JSON Web Tokens from outside pbackend: ID tokens presented for token exchange
//! (keys from the issuer's OpenID discovery), and bearer JWTs in `--auth-mode jwt` (an HMAC
//! secret, a PEM public key, or a JWKS URL).
//!
//! Key sets are a cache of the issuer's: a token signed with a key id the cache does not
//! know makes it fetch the set again (at most once every ten seconds per set), so a
//! provider's key rotation needs no restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::engine::access::http::Http;
use crate::engine::{EngineError, EngineResult};

/// Where a JWT's verification keys come from.
#[derive(Debug, Clone)]
pub enum Keys {
    /// A shared HMAC secret (HS256/384/512).
    Hmac(Vec<u8>),
    /// An RSA or EC public key, PEM.
    Pem(Vec<u8>),
    /// A JWKS document at this URL.
    Jwks(String),
    /// The `jwks_uri` of this issuer's OpenID discovery document.
    Issuer(String),
}

const REFETCH_AFTER: Duration = Duration::from_secs(10);

pub struct Verifier {
    http: Http,
    sets: Mutex<HashMap<String, (JwkSet, Instant)>>,
    jwks_uris: Mutex<HashMap<String, String>>,
}

fn invalid(why: impl std::fmt::Display) -> EngineError {
    EngineError::Unauthenticated(format!("invalid token: {why}"))
}

/// The claims of a JWT without checking anything (to find its issuer first).
pub fn unverified_claims(token: &str) -> EngineResult<Map<String, Value>> {
    jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
        .map(|d| d.claims)
        .map_err(invalid)
}

/// Whether a credential has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Verifier {
    pub fn new(http: Http) -> Self {
        Verifier {
            http,
            sets: Mutex::new(HashMap::new()),
            jwks_uris: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies the signature, expiry and not-before, and the issuer and audience when given;
    /// returns the claims.
    pub async fn verify(
        &self,
        token: &str,
        keys: &Keys,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> EngineResult<Map<String, Value>> {
        let header = decode_header(token).map_err(invalid)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp"]);
        match issuer {
            Some(i) => validation.set_issuer(&[i]),
            None => validation.iss = None,
        }
        match audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        let key = match keys {
            Keys::Hmac(secret) => {
                if !matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ) {
                    return Err(invalid("the algorithm does not match the configured key"));
                }
                DecodingKey::from_secret(secret).map_err(invalid)?
            }
            Keys::Pem(pem) => {
                if matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                ) {
                    return Err(invalid("the algorithm does not match the configured key"));
                }
                match header.alg {
                    Algorithm::ES256 | Algorithm::ES384 => {
                        DecodingKey::from_ec_pem(pem).map_err(invalid)?
                    }
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(pem).map_err(invalid)?,
                    _ => DecodingKey::from_rsa_pem(pem).map_err(invalid)?,
                }
            }
            Keys::Jwks(url) => self.key_from_set(url, header.kid.as_deref()).await?,
            Keys::Issuer(iss) => {
                let url = self.jwks_uri(iss).await?;
                self.key_from_set(&url, header.kid.as_deref()).await?
            }
        };
        decode::<Map<String, Value>>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(invalid)
    }

    async fn jwks_uri(&self, issuer: &str) -> EngineResult<String> {
        if let Some(u) = self
            .jwks_uris
            .lock()
            .ok()
            .and_then(|m| m.get(issuer).cloned())
        {
            return Ok(u);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self.http.get_json(&url).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(EngineError::Unavailable(format!(
                "the discovery document of {issuer} names another issuer"
            )));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| EngineError::Unavailable(format!("{issuer} publishes no jwks_uri")))?
            .to_owned();
        if let Ok(mut m) = self.jwks_uris.lock() {
            m.insert(issuer.to_owned(), uri.clone());
        }
        Ok(uri)
    }

    async fn key_from_set(&self, url: &str, kid: Option<&str>) -> EngineResult<DecodingKey> {
        let cached = self.sets.lock().ok().and_then(|m| m.get(url).cloned());
        if let Some((set, _)) = &cached
            && let Some(k) = pick(set, kid)
        {
            return DecodingKey::from_jwk(k).map_err(invalid);
        }
        // Unknown key: the provider may have rotated. Fetch again, but not in a loop.
        if cached
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < REFETCH_AFTER)
        {
            return Err(invalid("signed with an unknown key"));
        }
        let doc = self.http.get_json(url).await?;
        let set: JwkSet = serde_json::from_value(doc)
            .map_err(|e| EngineError::Unavailable(format!("the key set at {url}: {e}")))?;
        if let Ok(mut m) = self.sets.lock() {
            m.insert(url.to_owned(), (set.clone(), Instant::now()));
        }
        let k = pick(&set, kid).ok_or_else(|| invalid("signed with an unknown key"))?;
        DecodingKey::from_jwk(k).map_err(invalid)
    }
}

fn pick<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        // Without a key id only a one-key set is unambiguous.
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// A string claim.
pub fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// A list claim (an array of strings, or one space-separated string).
pub fn claim_list(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => vec![],
    }
}
