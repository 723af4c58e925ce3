//! The "service" secrets provider: each stack's values are encrypted with that stack's own key.
//!
//! Calls are resolved through the stack's current *or former* name: a deployment written
//! before a rename still names the old stack in its secrets provider, and the CLI decrypts
//! through that name until the next update rewrites it.

use crate::engine::blocking::run_sized;
use crate::engine::crypto::StackSecretKey;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::{Engine, Identity, names};
use crate::store::StackKey;

/// Most values accepted in one batch call (the CLI sends at most 1000).
pub const MAX_BATCH: usize = 10_000;

impl Engine {
    async fn secrets_key(&self, caller: &Identity, key: &StackKey) -> EngineResult<StackSecretKey> {
        names::check_key(key)?;
        self.check_org_access(caller, &key.org)?;
        let (_, wrapped) = self
            .store
            .get_secrets_key(key)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("stack '{key}' not found")))?;
        self.master()?.unwrap_key(&wrapped)
    }

    pub(crate) async fn stack_secret_key(&self, stack_id: i64) -> EngineResult<StackSecretKey> {
        let wrapped = self
            .store
            .get_stack_key(stack_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("stack not found".into()))?;
        self.master()?.unwrap_key(&wrapped)
    }

    pub async fn encrypt(
        &self,
        caller: &Identity,
        key: &StackKey,
        plaintexts: Vec<Vec<u8>>,
    ) -> EngineResult<Vec<Vec<u8>>> {
        if plaintexts.len() > MAX_BATCH {
            return Err(EngineError::TooLarge(format!(
                "at most {MAX_BATCH} values per call"
            )));
        }
        let k = self.secrets_key(caller, key).await?;
        let size = plaintexts.iter().map(|p| p.len() + 64).sum();
        run_sized(size, move || {
            Ok(plaintexts.iter().map(|p| k.encrypt(p)).collect())
        })
        .await
    }

    pub async fn decrypt(
        &self,
        caller: &Identity,
        key: &StackKey,
        ciphertexts: Vec<Vec<u8>>,
    ) -> EngineResult<Vec<Vec<u8>>> {
        if ciphertexts.len() > MAX_BATCH {
            return Err(EngineError::TooLarge(format!(
                "at most {MAX_BATCH} values per call"
            )));
        }
        let k = self.secrets_key(caller, key).await?;
        let size = ciphertexts.iter().map(|c| c.len() + 64).sum();
        run_sized(size, move || {
            ciphertexts
                .iter()
                .map(|c| {
                    k.decrypt(c).ok_or_else(|| {
                        EngineError::Invalid(
                            "a ciphertext could not be decrypted with this stack's key".into(),
                        )
                    })
                })
                .collect()
        })
        .await
    }
}
