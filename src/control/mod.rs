//! Control sources: where orgs, projects, API keys and environment limits
//! come from. The file source is the YAML itself (`config`); the Postgres
//! source is the control database shared by replicas, whose schema and
//! queries are `floopy-control-db`'s. Here is what the gateway does with it:
//! the first load and the live sync into the snapshot (`sync`), and the
//! cache file used when it is unreachable at start (`cache`).

pub mod cache;
pub mod file;
pub mod sync;

use std::time::Duration;

/// How long connecting to the control database may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
