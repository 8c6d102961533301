//! The workspace's rooms stay apart: the gateway (data plane) never links
//! the control plane's web stack or the fake provider, the shared model
//! depends on neither plane, and the control database crate on no plane.
//! Read from `cargo tree` over normal dependencies, which is what a release
//! build (the Dockerfile's) links.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

/// Names of every package `package` links in a normal build, itself included.
fn linked_packages(package: &str, depth: Option<u32>) -> BTreeSet<String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "tree",
        "--offline",
        "--locked",
        "-e",
        "normal",
        "--prefix",
        "none",
    ])
    .args(["--format", "{p}", "-p", package])
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(depth) = depth {
        cmd.args(["--depth", &depth.to_string()]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        names.contains(package),
        "{package} is in its own tree: {names:?}"
    );
    names
}

fn assert_none_of(package: &str, forbidden: &[&str]) {
    let linked = linked_packages(package, None);
    let found: Vec<_> = forbidden.iter().filter(|f| linked.contains(**f)).collect();
    assert!(found.is_empty(), "{package} must not depend on {found:?}");
}

/// What the control plane's web stack brings; none of it belongs on the
/// request path.
const WEB_STACK: &[&str] = &[
    "floopy-control",
    "axum",
    "axum-core",
    "actix-web",
    "tower-http",
    "utoipa",
    "argon2",
];

#[test]
fn the_gateway_links_neither_the_control_plane_nor_the_fake_provider() {
    assert_none_of("floopy-gateway", WEB_STACK);
    assert_none_of("floopy-gateway", &["floopy-fake-provider"]);
    // And it does link what it is made of, so the check reads a real tree.
    let linked = linked_packages("floopy-gateway", None);
    for needed in ["pingora-proxy", "floopy-model", "floopy-control-db"] {
        assert!(linked.contains(needed), "floopy-gateway links {needed}");
    }
}

#[test]
fn the_model_depends_on_neither_plane() {
    let mut forbidden = vec![
        "floopy-gateway",
        "floopy-control-db",
        "floopy-fake-provider",
        "pingora",
        "pingora-core",
        "tokio",
        "tokio-postgres",
        "rdkafka",
        "hyper",
    ];
    forbidden.extend_from_slice(WEB_STACK);
    assert_none_of("floopy-model", &forbidden);
}

#[test]
fn the_control_database_crate_depends_on_no_plane() {
    let mut forbidden = vec![
        "floopy-gateway",
        "floopy-fake-provider",
        "pingora",
        "rdkafka",
    ];
    forbidden.extend_from_slice(WEB_STACK);
    assert_none_of("floopy-control-db", &forbidden);
}

#[test]
fn the_gateway_lists_no_dependency_it_does_not_use() {
    // `log` was listed without a use (Pingora logs through it on its own,
    // and tracing-subscriber bridges it).
    let direct = linked_packages("floopy-gateway", Some(1));
    assert!(!direct.contains("log"), "floopy-gateway lists log directly");
}
