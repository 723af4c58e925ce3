//! The DIY backend's passphrase secrets: the key is PBKDF2-HMAC-SHA256 of the passphrase over
//! the stack's 8-byte salt (1,000,000 rounds, 32 bytes); values are `v1:<nonce>:<sealed>`,
//! standard base64, AES-256-GCM with a 12-byte nonce and no associated data. The salt state
//! `v1:<salt>:<v1:…>` carries the word `pulumi` sealed with the key, to tell a wrong
//! passphrase from damaged data.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::engine::error::{EngineError, EngineResult};

const ROUNDS: u32 = 1_000_000;

pub struct Crypter {
    cipher: Aes256Gcm,
}

impl Crypter {
    /// Derives the key of one salt state and checks it against the state's check value.
    pub fn new(passphrase: &str, salt_state: &str) -> EngineResult<Crypter> {
        let bad =
            || EngineError::Invalid(format!("the passphrase salt {salt_state:?} is malformed"));
        let mut parts = salt_state.splitn(3, ':');
        let (Some("v1"), Some(salt), Some(check)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let salt = STANDARD.decode(salt).map_err(|_| bad())?;
        let key =
            pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(passphrase.as_bytes(), &salt, ROUNDS);
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| bad())?;
        let c = Crypter { cipher };
        match c.decrypt(check) {
            Ok(word) if word == "pulumi" => Ok(c),
            _ => Err(EngineError::Invalid(
                "the passphrase is not the one these stacks were encrypted with".into(),
            )),
        }
    }

    /// Opens one `v1:<nonce>:<sealed>` value.
    pub fn decrypt(&self, value: &str) -> EngineResult<String> {
        let bad = || EngineError::Invalid("a passphrase-encrypted value does not open".into());
        let mut parts = value.split(':');
        let (Some("v1"), Some(nonce), Some(sealed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let nonce: [u8; 12] = STANDARD
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(bad)?;
        let sealed = STANDARD.decode(sealed).map_err(|_| bad())?;
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), sealed.as_slice())
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by the real CLI (v3.259) with the passphrase `pw`.
    const SALT: &str = "v1:l4nQn1DXqHE=:v1:JNgkOMjKdGEY1xBM:wVL2SJLQ9F7lQMx7J9NH72RplyMRzQ==";
    const OUTPUT: &str = "v1:toWGTeNEfWsOwaMx:AZV3X2eMI+jJuqndxKnKGgsn+zzfn78TiREWxWF+KuObpg==";

    #[test]
    fn opens_what_the_cli_sealed_and_refuses_a_wrong_passphrase() {
        let c = Crypter::new("pw", SALT).unwrap();
        assert_eq!(c.decrypt(OUTPUT).unwrap(), "\"topsecret-output\"");
        assert!(c.decrypt("v1:toWGTeNEfWsOwaMx:AAAA").is_err());
        let Err(e) = Crypter::new("wrong", SALT) else {
            panic!("a wrong passphrase was accepted")
        };
        assert!(e.to_string().contains("passphrase"));
        assert!(Crypter::new("pw", "v2:x").is_err());
    }
}
