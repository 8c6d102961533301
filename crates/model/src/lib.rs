//! The control data model of SPEC section 2, shared by the data plane
//! (`floopy-gateway`) and the control plane (`floopy-control`, through
//! `floopy-control-db`): organizations, projects, API keys, environments,
//! plans and their quotas, and the rules their fields follow (slugs, names,
//! colors, key strings, money in integer micro-USD).
//!
//! It owns the values and their validation, nothing else. It must not depend
//! on either plane: no Pingora, no tokio, no database driver, no web
//! framework (`tests/dependencies.rs` in the gateway checks it). Each plane
//! indexes or stores these values its own way.

pub mod calendar;
pub mod keys;
pub mod money;
pub mod secret;
pub mod validate;

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

pub use calendar::Period;
pub use keys::{generate_key, hash_key, is_valid_key_string, random_secret, KeyHash};
pub use money::{format_usd, usd_to_micro, MoneyError, MAX_USD};
pub use secret::Secret;

/// The org's Default project: the zero UUID.
pub const DEFAULT_PROJECT_ID: Uuid = Uuid::nil();

/// An organization's plan: how many projects it may have. Written in
/// lowercase wherever it is text (YAML, JSON, the database's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Starter,
    Pro,
    Enterprise,
}

impl Plan {
    /// Every plan, in the order they are offered.
    pub const ALL: [Plan; 4] = [Plan::Free, Plan::Starter, Plan::Pro, Plan::Enterprise];

    /// The plan its lowercase name names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Plan> {
        Plan::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Starter => "starter",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
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

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment of an API key; limits are kept per (org, environment).
/// Written in lowercase wherever it is text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Staging,
    Production,
    Other,
}

impl Environment {
    /// Every environment.
    pub const ALL: [Environment; 4] = [
        Environment::Development,
        Environment::Staging,
        Environment::Production,
        Environment::Other,
    ];

    /// The environment its lowercase name names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Environment> {
        Environment::ALL.into_iter().find(|e| e.as_str() == s)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_and_environment_names_round_trip() {
        for plan in Plan::ALL {
            assert_eq!(Plan::parse(plan.as_str()), Some(plan), "{plan}");
        }
        for env in Environment::ALL {
            assert_eq!(Environment::parse(env.as_str()), Some(env), "{env}");
        }
        assert_eq!(Plan::parse("Pro"), None, "names are lowercase");
        assert_eq!(Environment::parse("prod"), None);
    }

    #[test]
    fn serde_names_are_the_lowercase_names() {
        for plan in Plan::ALL {
            let json = serde_json::to_string(&plan).unwrap();
            assert_eq!(json, format!("\"{}\"", plan.as_str()));
        }
        for env in Environment::ALL {
            let back: Environment = serde_json::from_str(&format!("\"{env}\"")).unwrap();
            assert_eq!(back, env);
        }
    }

    #[test]
    fn plan_quotas_follow_the_spec() {
        let quotas: Vec<_> = Plan::ALL.iter().map(|p| p.max_projects()).collect();
        assert_eq!(quotas, [Some(1), Some(3), Some(10), None]);
    }
}
