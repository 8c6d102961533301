//! floopy's control database (PostgreSQL): the schema and its migrations
//! (`migrations/`, embedded), connecting with TLS (`connect`), the queries
//! that load the control data the gateway serves and tell it of changes
//! (`load`), the SQL of the limits exchange between gateway replicas
//! (`exchange`), the one writer of each control-plane table (`tables`), and
//! the operator's `admin` command.
//!
//! Both planes use it: the gateway (`floopy-gateway`) to load, sync and
//! exchange; the control plane (`floopy-control`) to manage the same rows.
//! It depends on the shared model (`floopy-model`) and the Postgres driver,
//! never on a plane: no Pingora, no web framework. The invariants of the data
//! model (slugs, quotas, the Default project) live in the schema itself, so
//! every writer is held to them.

pub mod admin;
pub mod connect;
pub mod exchange;
pub mod load;
pub mod migrate;
pub mod tables;

pub use connect::{with_causes, Connection, ControlError, DbConfig, TlsMode, UrlError};
pub use tables::{Actor, DbError};
