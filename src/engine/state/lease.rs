//! Update leases: the credential of every update-scoped call.
//!
//! The server checks a lease from the request's headers and path *before* it reads a byte of
//! the body ([`Engine::verify_lease`]); the engine methods that write take the resulting
//! [`Lease`], a value that can only be had from that check. The store checks the lease again
//! inside the transaction of each write, so a lease that ends between the two checks (a
//! cancel, an expiry) still refuses the write.

use subtle::ConstantTimeEq;

use crate::engine::crypto::sha256;
use crate::engine::error::{EngineError, EngineResult, lease_error};
use crate::engine::{Engine, LeaseToken, names};
use crate::store::{LeaseCheck, LeaseDenied, StackKey, UpdateStatus};

/// Which leases a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseUse {
    /// Only the live lease of a running update.
    Live,
    /// Also the lease of an update that has since finished (a retried `complete`, whose
    /// first attempt landed but whose answer was lost).
    OrFinished,
}

/// Proof that a request carries the lease of the update in its path.
#[derive(Debug, Clone)]
pub struct Lease {
    pub(crate) check: LeaseCheck,
    pub(crate) key: StackKey,
    /// Where the call came from, for the audit log.
    pub(crate) source_ip: Option<std::net::IpAddr>,
}

impl Lease {
    pub fn update_id(&self) -> &str {
        &self.check.update_id
    }

    pub fn stack(&self) -> &StackKey {
        &self.key
    }

    /// The same lease, noting the address the call came from.
    pub fn from_address(mut self, ip: Option<std::net::IpAddr>) -> Self {
        self.source_ip = ip;
        self
    }
}

pub(crate) fn check_update_id(id: &str) -> EngineResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EngineError::NotFound(format!("update '{id}' not found")))
    }
}

impl Engine {
    /// Checks an `update-token` against the update it names, with one read and nothing
    /// written or cached: the answer for a bad credential costs the same whatever the body.
    pub async fn verify_lease(
        &self,
        key: &StackKey,
        update_id: &str,
        token: &LeaseToken,
        accept: LeaseUse,
    ) -> EngineResult<Lease> {
        names::check_key(key)?;
        check_update_id(update_id)?;
        let hash = sha256(token.0.as_bytes());
        let now = self.now();
        let Some(state) = self.store.lease_state(key, update_id).await? else {
            return Err(lease_error(&LeaseDenied::UnknownUpdate));
        };
        let matches = state
            .lease_hash
            .as_deref()
            .is_some_and(|h| bool::from(h.ct_eq(&hash)));
        if !matches {
            return Err(lease_error(&LeaseDenied::WrongToken));
        }
        match state.status {
            UpdateStatus::Running => {
                if state.lease_expires.is_none_or(|e| e <= now) {
                    return Err(lease_error(&LeaseDenied::Expired));
                }
            }
            s if s.is_finished() => {
                if accept != LeaseUse::OrFinished {
                    return Err(lease_error(&LeaseDenied::Finished(s)));
                }
            }
            _ => return Err(lease_error(&LeaseDenied::WrongToken)),
        }
        Ok(Lease {
            check: LeaseCheck {
                update_id: update_id.to_owned(),
                stack_id: state.stack_id,
                token_hash: hash.to_vec(),
                now,
            },
            key: key.clone(),
            source_ip: None,
        })
    }
}
