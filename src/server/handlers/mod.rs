//! Handlers: each parses its request, calls one engine method, shapes the answer.

pub mod access;
pub mod history;
pub mod hooks;
pub mod integration;
pub mod login;
pub mod meta;
pub mod secrets;
pub mod stacks;
pub mod updates;

use serde::Deserialize;

use crate::server::error::ApiError;
use crate::types::StackKey;

#[derive(Deserialize)]
pub struct OrgPath {
    pub org: String,
}

#[derive(Deserialize)]
pub struct StackPath {
    pub org: String,
    pub project: String,
    pub stack: String,
}

impl StackPath {
    pub fn key(self) -> StackKey {
        StackKey {
            org: self.org,
            project: self.project,
            stack: self.stack,
        }
    }
}

/// `{org}/…/{hook}`: an organization's webhook (API and console).
#[derive(Deserialize)]
pub struct OrgHookPath {
    pub org: String,
    pub hook: String,
}

/// `{org}/{project}/{stack}/…/{hook}`: a stack's webhook (API and console).
#[derive(Deserialize)]
pub struct StackHookPath {
    pub org: String,
    pub project: String,
    pub stack: String,
    pub hook: String,
}

impl StackHookPath {
    pub fn split(self) -> (StackKey, String) {
        (
            StackKey {
                org: self.org,
                project: self.project,
                stack: self.stack,
            },
            self.hook,
        )
    }
}

#[derive(Deserialize)]
pub struct UpdatePath {
    pub org: String,
    pub project: String,
    pub stack: String,
    pub kind: String,
    pub update: String,
}

impl UpdatePath {
    /// The stack and update id. Every call on an existing update uses the `update` segment
    /// whatever the kind; the other kinds are accepted too.
    pub fn split(self) -> Result<(StackKey, String), ApiError> {
        if crate::engine::UpdateKind::parse(&self.kind).is_none() {
            return Err(ApiError::not_found(format!("no route for '{}'", self.kind)));
        }
        Ok((
            StackKey {
                org: self.org,
                project: self.project,
                stack: self.stack,
            },
            self.update,
        ))
    }
}

#[derive(Deserialize)]
pub struct VersionPath {
    pub org: String,
    pub project: String,
    pub stack: String,
    pub version: String,
}

impl VersionPath {
    pub fn split(self) -> Result<(StackKey, i64), ApiError> {
        let v: i64 = self
            .version
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| ApiError::bad_request(format!("invalid version {:?}", self.version)))?;
        Ok((
            StackKey {
                org: self.org,
                project: self.project,
                stack: self.stack,
            },
            v,
        ))
    }
}
