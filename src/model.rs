//! The control data model of SPEC section 2 (organizations, projects, API
//! keys, environment limits) as every control source hands it over. These are
//! plain values; `snapshot` indexes them for the request path.

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

/// SHA-256 of the full API key string: how keys are stored and looked up.
pub type KeyHash = [u8; 32];

/// The org's Default project: the zero UUID.
pub const DEFAULT_PROJECT_ID: Uuid = Uuid::nil();

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plan {
    Free,
    Starter,
    Pro,
    Enterprise,
}

impl Plan {
    pub fn parse(s: &str) -> Option<Plan> {
        match s {
            "free" => Some(Plan::Free),
            "starter" => Some(Plan::Starter),
            "pro" => Some(Plan::Pro),
            "enterprise" => Some(Plan::Enterprise),
            _ => None,
        }
    }

    /// Most projects an org on this plan may have, Default included;
    /// `None` is unlimited.
    pub fn max_projects(self) -> Option<usize> {
        match self {
            Plan::Free => Some(1),
            Plan::Starter => Some(3),
            Plan::Pro => Some(10),
            Plan::Enterprise => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Development,
    Staging,
    Production,
    Other,
}

impl Environment {
    pub fn parse(s: &str) -> Option<Environment> {
        match s {
            "development" => Some(Environment::Development),
            "staging" => Some(Environment::Staging),
            "production" => Some(Environment::Production),
            "other" => Some(Environment::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
            Environment::Other => "other",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Org {
    pub id: Uuid,
    pub name: String,
    pub plan: Plan,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub org_id: Uuid,
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub archived: bool,
}

/// An API key as the request path needs it. The secret itself is never kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub hash: KeyHash,
    pub environment: Option<Environment>,
    /// Hard lock: every request of this key goes to this project.
    pub project_id: Option<Uuid>,
    /// Used when the request names no project.
    pub default_project_id: Option<Uuid>,
    pub revoked: bool,
}

/// Limits of one (org, environment). Money in integer micro-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvironmentLimits {
    pub org_id: Uuid,
    pub environment: Environment,
    pub rpm: Option<u32>,
    pub monthly_cost_micro_usd: Option<u64>,
}

/// Everything a control source provides, ready to be indexed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlData {
    pub orgs: Vec<Org>,
    pub projects: Vec<Project>,
    /// Shared with the snapshots built from this data: a rebuild copies
    /// pointers, not keys.
    pub api_keys: Vec<Arc<ApiKey>>,
    pub environment_limits: Vec<EnvironmentLimits>,
}

/// SHA-256 of a key string, as stored by every control source.
pub fn hash_key(key: &[u8]) -> KeyHash {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}
