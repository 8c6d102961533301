//! floopy-test-kit: what the tests of both planes share, so each lives
//! once: a Postgres database (and role) of a test's own on the suite's
//! server (`pg`), a private ClickHouse 18.16 with the shipped tables and
//! queries (`clickhouse`), free loopback ports and the repository's root.
//! A dev-dependency of the gateway and the control plane, never a normal
//! one (`tests/dependencies.rs` checks it); it depends on neither plane.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod clickhouse;
pub mod pg;

use std::path::PathBuf;

/// A loopback port nothing listens on now (bound, read, released: a
/// server started on it may race another test for it, so the servers
/// started here retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The workspace's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
