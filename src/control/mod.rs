//! Control sources: where orgs, projects, API keys and environment limits
//! come from. The file source is the YAML itself (`config`); the Postgres
//! source is the control database shared by replicas: its schema and
//! migrations (`migrate`), loading and live sync (`postgres`), the cache
//! file used when it is unreachable at start (`cache`), and the `admin`
//! command that manages it without SQL.

pub mod admin;
pub mod cache;
pub mod migrate;
pub mod postgres;
