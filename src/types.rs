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

/// What an identity may do with a stack, each level including the ones below it. The wire
/// codes are the service's (`StackPermission`: 0, 101, 102, 103; 104 "creator" reads as
/// admin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StackPermission {
    None,
    /// See the stack, its history, state and outputs; decrypt its secrets.
    Read,
    /// Run updates, import, cancel, change tags and config.
    Write,
    /// Delete, rename, grant access.
    Admin,
}

impl StackPermission {
    pub fn code(self) -> i64 {
        match self {
            StackPermission::None => 0,
            StackPermission::Read => 101,
            StackPermission::Write => 102,
            StackPermission::Admin => 103,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => StackPermission::None,
            101 => StackPermission::Read,
            102 => StackPermission::Write,
            103 | 104 => StackPermission::Admin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StackPermission::None => "none",
            StackPermission::Read => "read",
            StackPermission::Write => "write",
            StackPermission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => StackPermission::None,
            "read" => StackPermission::Read,
            "write" | "edit" => StackPermission::Write,
            "admin" => StackPermission::Admin,
            _ => return None,
        })
    }
}

/// A member's built-in role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrgRole {
    Member,
    Admin,
    /// Sees billing only: no stack access beyond what is granted.
    BillingManager,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Member => "member",
            OrgRole::Admin => "admin",
            OrgRole::BillingManager => "billing-manager",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "member" => OrgRole::Member,
            "admin" => OrgRole::Admin,
            "billing-manager" => OrgRole::BillingManager,
            _ => return None,
        })
    }
}

/// What an access token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A user's own token: the user's permissions.
    Personal,
    /// An organization's machine token: org member (or admin) permissions.
    Organization,
    /// A team's machine token: the team's permissions.
    Team,
    /// Exchangeable at `/api/oauth/token` for a new access token; never a bearer credential.
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Personal => "personal",
            TokenKind::Organization => "organization",
            TokenKind::Team => "team",
            TokenKind::Refresh => "refresh",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "personal" => TokenKind::Personal,
            "organization" => TokenKind::Organization,
            "team" => TokenKind::Team,
            "refresh" => TokenKind::Refresh,
            _ => return None,
        })
    }
}

/// Who a stack grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    User(String),
    /// A team of the stack's organization.
    Team(String),
}
