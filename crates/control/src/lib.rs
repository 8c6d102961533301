//! floopy-control, the control plane: the management API (`/v1/`) through
//! which teams run what the gateway enforces: organizations, projects
//! within their plan, API keys per environment, members and their roles,
//! environment limits, and the audit log of every change. SPEC section 7 is
//! the contract.
//!
//! It is stateless: everything lives in the control database
//! (`floopy-control-db`, shared with the gateway), so any number of replicas
//! can run, and a change reaches every gateway through the database's change
//! notifications. It shares the data model and its validation
//! (`floopy-model`) with the gateway. It must never be a dependency of the
//! gateway (`tests/dependencies.rs` in the gateway checks it), and it has
//! nothing to do with the request path.
//!
//! Layout: `config` (the YAML), `error` (the one API error type and its
//! JSON), `auth` (passwords, sessions with CSRF, personal access tokens,
//! login throttling, the `Caller` extractor), `roles` (who may do what: one
//! function of caller, action and object), `http` (a module per resource:
//! extract, authorize, validate, call `floopy_control_db::tables`, answer),
//! `openapi` (the document, generated from the handlers), `state` (what the
//! handlers share), `app` (the router and the server), `jobs` (what the
//! background jobs share), `budgets` (the evaluator of budgets and alert
//! rules), `webhooks` (alert delivery from the outbox), `analytics` (the
//! ClickHouse queries behind `http::analytics`), `rollup` (the hourly
//! rollup job) and `dashboard` (the web page at `/`, a client of the API).
//! Every write to the control database goes through
//! `floopy_control_db::tables`, which records its audit entry.

pub mod analytics;
pub mod app;
pub mod auth;
pub mod budgets;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod http;
pub mod jobs;
pub mod openapi;
pub mod roles;
pub mod rollup;
pub mod state;
pub mod webhooks;
