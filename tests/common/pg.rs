//! Postgres for the gateway's tests: the test database (`floopy-test-kit`)
//! and the `floopy-gateway admin` command.

#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::process::Command;

pub use floopy_test_kit::pg::*;

/// Runs `floopy-gateway admin` against `url`; returns stdout, or panics
/// with stderr.
pub fn admin(url: &str, args: &[&str]) -> String {
    let out = admin_output(url, args);
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn admin_output(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("admin")
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

/// (key id, key string) of `admin create-key`.
pub fn create_key(url: &str, args: &[&str]) -> (String, String) {
    let out = admin(url, &[&["create-key"], args].concat());
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    (field("key id:"), field("key:"))
}

pub fn postgres_control(url: &str, extra: &str) -> String {
    format!(
        "control:\n  source: postgres\n  url: \"{url}\"\n  poll_interval_ms: 200\n  max_staleness_seconds: 1\n{extra}"
    )
}
