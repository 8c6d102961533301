//! floopy-gateway: an LLM API gateway on Pingora. Every request is
//! authenticated by an API key, attributed to a project, forwarded to the
//! provider that serves its model, priced from its token usage, and logged.
//!
//! The binary (`main.rs`) only wires these modules together.

pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
pub mod control;
pub mod error;
pub mod fake_provider;
pub mod json_scan;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod pricing;
pub mod project;
pub mod proxy;
pub mod reload;
pub mod snapshot;
pub mod upstream;
pub mod usage;
