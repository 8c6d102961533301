//! floopy-gateway, the data plane: an LLM API gateway on Pingora. Every
//! request is authenticated by an API key, attributed to a project, held to
//! its environment's limits, forwarded to the provider that serves its
//! model, priced from its token usage, and logged.
//!
//! It owns the request path and what serves it: configuration, the control
//! data snapshot, limits and the spend exchange, the proxy phases, usage and
//! pricing, request logs, metrics and the health listener (`health`). The data model is
//! `floopy-model`'s and the control database's SQL is `floopy-control-db`'s.
//! It must not depend on the control plane (`floopy-control`) or its web
//! stack, and the fake provider is only ever a dev-dependency
//! (`tests/dependencies.rs` checks both). The binary (`main.rs`) only wires
//! these modules together.

pub mod alloc;
pub mod auth;
pub mod body;
pub mod config;
pub mod config_error;
pub mod control_source;
pub mod error;
pub mod header_deadline;
pub mod health;
pub mod json_scan;
pub mod limits;
pub mod locks;
pub mod log_noise;
pub mod logs;
pub mod metrics;
pub mod pricing;
pub mod priority;
pub mod project;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod snapshot;
pub mod timeline;
pub mod tls;
pub mod upstream;
pub mod usage;
