//! Keys and ciphers.
//!
//! * The **master key** (32 bytes, from the operator) wraps every stack's key with AES-256-GCM.
//!   It never touches the database; a *canary* (a known text encrypted with it) lets start-up
//!   detect a wrong key before anything is decrypted with it.
//! * Each **stack key** (32 random bytes) encrypts that stack's secret values. Ciphertexts are
//!   `0x01 ‖ nonce(12) ‖ AES-256-GCM(plaintext) ‖ tag(16)`; the leading byte is a format version
//!   so a later scheme can coexist.
//! * Tokens (API and lease) are random and only their SHA-256 is stored.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

use crate::engine::error::{EngineError, EngineResult};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const WRAP_AAD: &[u8] = b"pbackend/stack-key/v1";
const SECRET_AAD: &[u8] = b"pbackend/secret/v1";
const CANARY_AAD: &[u8] = b"pbackend/canary/v1";
const KEPT_SECRET_AAD: &[u8] = b"pbackend/kept-secret/v1";
const CANARY_TEXT: &[u8] = b"pbackend master key canary";

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is not something a server can continue from.
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// A new secret token: `prefix` followed by 40 hex characters (160 random bits).
pub fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random_bytes::<20>()))
}

fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    seal_with(key, random_bytes::<NONCE_LEN>(), plaintext, aad)
}

fn seal_with(
    key: &[u8; 32],
    nonce_bytes: [u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Nonce::from(nonce_bytes);
    // Encryption only fails for inputs beyond 64 GiB, which never reach this point.
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of a bounded input");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    out
}

fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
        return None;
    }
    let cipher = Aes256Gcm::new(key.into());
    let nonce_bytes: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().ok()?;
    let nonce = Nonce::from(nonce_bytes);
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad,
            },
        )
        .ok()
}

/// The operator's master key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        MasterKey(random_bytes())
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s.trim())
            .map_err(|_| "the master key must be 64 hexadecimal characters".to_string())?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            "the master key must be 32 bytes (64 hexadecimal characters)".to_string()
        })?;
        Ok(MasterKey(key))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn canary(&self) -> Vec<u8> {
        seal(&self.0, CANARY_TEXT, CANARY_AAD)
    }

    pub fn opens_canary(&self, canary: &[u8]) -> bool {
        open(&self.0, canary, CANARY_AAD).is_some_and(|t| t == CANARY_TEXT)
    }

    pub fn wrap(&self, key: &StackSecretKey) -> Vec<u8> {
        seal(&self.0, &key.0, WRAP_AAD)
    }

    /// Seals a secret pbackend keeps for itself (an identity provider's refresh token).
    pub fn seal_secret(&self, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.0, plaintext, KEPT_SECRET_AAD)
    }

    pub fn open_secret(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        open(&self.0, sealed, KEPT_SECRET_AAD)
    }

    pub fn unwrap_key(&self, wrapped: &[u8]) -> EngineResult<StackSecretKey> {
        let raw = open(&self.0, wrapped, WRAP_AAD).ok_or_else(|| {
            EngineError::Internal("a stack key does not unwrap with the master key".into())
        })?;
        let key: [u8; 32] = raw
            .try_into()
            .map_err(|_| EngineError::Internal("a stack key has the wrong length".into()))?;
        Ok(StackSecretKey(key))
    }
}

/// The key that encrypts one stack's secret values.
pub struct StackSecretKey([u8; 32]);

/// Domain label of the key that derives a secret's nonce from its plaintext.
const NONCE_KEY_LABEL: &[u8] = b"pbackend/secret-nonce/v1";

impl StackSecretKey {
    pub fn generate() -> Self {
        StackSecretKey(random_bytes())
    }

    /// Encrypts one value deterministically: the nonce is a MAC of the plaintext (the
    /// synthetic-IV construction), so a value encrypts to the same ciphertext every time.
    ///
    /// Why: the CLI encrypts every secret of every resource anew on each update. With a
    /// random nonce an unchanged resource came back as different text, so a no-op update held
    /// a second copy of the state and stored every resource again. The same text lets replay
    /// keep the base's copy. What it reveals is which values of one stack are equal, and only
    /// to someone reading ciphertexts who cannot decrypt; every API caller who may encrypt
    /// may also decrypt. Distinct values get distinct nonces except with the probability of a
    /// 96-bit collision, the same bound random nonces have.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.0, self.nonce_for(plaintext), plaintext, SECRET_AAD)
    }

    fn nonce_for(&self, plaintext: &[u8]) -> [u8; NONCE_LEN] {
        use hmac::{Hmac, KeyInit, Mac};
        let mac = |key: &[u8], data: &[u8]| {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            m.update(data);
            m.finalize().into_bytes()
        };
        let nonce_key = mac(&self.0, NONCE_KEY_LABEL);
        let tag = mac(&nonce_key, plaintext);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag[..NONCE_LEN]);
        nonce
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        open(&self.0, ciphertext, SECRET_AAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_encrypt_deterministically_per_stack_key() {
        let k = StackSecretKey::generate();
        let a = k.encrypt(b"hunter2");
        assert_eq!(a, k.encrypt(b"hunter2"), "same value, same ciphertext");
        assert_ne!(a, k.encrypt(b"hunter3"));
        assert_ne!(a[1..1 + NONCE_LEN], k.encrypt(b"hunter3")[1..1 + NONCE_LEN]);
        assert_ne!(a, StackSecretKey::generate().encrypt(b"hunter2"));
        assert_eq!(k.decrypt(&a).unwrap(), b"hunter2");
        // Ciphertexts made with a random nonce (before this scheme) still decrypt.
        let old = seal(&k.0, b"hunter2", SECRET_AAD);
        assert_eq!(k.decrypt(&old).unwrap(), b"hunter2");
        let mut bad = a.clone();
        bad[20] ^= 1;
        assert!(k.decrypt(&bad).is_none());
    }

    #[test]
    fn wrap_round_trip_and_wrong_master_key() {
        let m = MasterKey::generate();
        let k = StackSecretKey::generate();
        let wrapped = m.wrap(&k);
        let back = m.unwrap_key(&wrapped).unwrap();
        let ct = k.encrypt(b"hello");
        assert_eq!(back.decrypt(&ct).unwrap(), b"hello");
        assert!(MasterKey::generate().unwrap_key(&wrapped).is_err());
        assert!(m.opens_canary(&m.canary()));
        assert!(!MasterKey::generate().opens_canary(&m.canary()));
    }

    #[test]
    fn ciphertext_of_one_stack_does_not_open_with_another() {
        let a = StackSecretKey::generate();
        let b = StackSecretKey::generate();
        assert!(b.decrypt(&a.encrypt(b"x")).is_none());
        assert!(a.decrypt(b"garbage").is_none());
        assert!(a.decrypt(&[]).is_none());
    }

    #[test]
    fn master_key_hex_parsing() {
        assert!(MasterKey::from_hex("zz").is_err());
        assert!(MasterKey::from_hex(&"ab".repeat(31)).is_err());
        let k = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(k.to_hex(), "ab".repeat(32));
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
    }
}
