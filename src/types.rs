//! Names and values every layer speaks of: the store persists them, the engine reasons about
//! them, the server puts them on the wire. Nothing here knows SQL, HTTP or Pulumi JSON.

use std::collections::BTreeMap;

/// Fully qualified stack name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    pub org: String,
    pub project: String,
    pub stack: String,
}

impl std::fmt::Display for StackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.org, self.project, self.stack)
    }
}

/// A stack's tags: name → value.
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStatus {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl UpdateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStatus::NotStarted => "not-started",
            UpdateStatus::Running => "running",
            UpdateStatus::Succeeded => "succeeded",
            UpdateStatus::Failed => "failed",
            UpdateStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "not-started" => UpdateStatus::NotStarted,
            "running" => UpdateStatus::Running,
            "succeeded" => UpdateStatus::Succeeded,
            "failed" => UpdateStatus::Failed,
            "cancelled" => UpdateStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            UpdateStatus::Succeeded | UpdateStatus::Failed | UpdateStatus::Cancelled
        )
    }
}
