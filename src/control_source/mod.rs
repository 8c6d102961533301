//! The control data's source when it is not the YAML: orgs, projects, API
//! keys and environment limits come either from the file itself
//! (`control.orgs`, read by `config`) or from the control database shared
//! by replicas, whose schema and queries are `floopy-control-db`'s. Here is
//! what the gateway does with the database:
//! the first load and the live sync into the snapshot (`sync`), and the
//! cache file used when it is unreachable at start (`cache`).

pub mod cache;
pub mod sync;

use std::time::Duration;

/// How long connecting to the control database may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
