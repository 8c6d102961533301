//! The workspace's rooms stay apart: the gateway (data plane) never links
//! the control plane's web stack or the fake provider, the shared model
//! depends on neither plane, and the control database crate on no plane.
//! Read from `cargo tree` over normal dependencies, which is what a release
//! build (the Dockerfile's) links. And no crate lists a dependency its code
//! never names.

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
    assert_none_of(
        "floopy-gateway",
        &["floopy-fake-provider", "floopy-test-kit"],
    );
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
fn the_control_plane_links_no_test_code() {
    assert_none_of(
        "floopy-control",
        &["floopy-fake-provider", "floopy-test-kit"],
    );
}

#[test]
fn the_test_kit_depends_on_neither_plane() {
    assert_none_of(
        "floopy-test-kit",
        &[
            "floopy-gateway",
            "floopy-control",
            "floopy-control-db",
            "pingora",
        ],
    );
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

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `text` names the crate `ident` (`ident::`, `use ident`,
/// `extern crate ident`), as a whole word.
fn names_crate(text: &str, ident: &str) -> bool {
    text.match_indices(ident).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let word_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let after = &text[at + ident.len()..];
        let prefix = text[..at].trim_end();
        word_start
            && (after.starts_with("::")
                || (after.starts_with([';', ' ', ','])
                    && (prefix.ends_with("use") || prefix.ends_with("extern crate"))))
    })
}

#[test]
fn every_direct_dependency_of_every_crate_is_used() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--offline",
            "--locked",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut unused = Vec::new();
    let mut checked = 0;
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let root = std::path::Path::new(package["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_path_buf();
        // Normal dependencies must be named by the crate's own code
        // (src/, build.rs); dev-dependencies by anything it compiles.
        let mut normal_files = Vec::new();
        rust_files(&root.join("src"), &mut normal_files);
        normal_files.push(root.join("build.rs"));
        let mut dev_files = normal_files.clone();
        for dir in ["tests", "benches", "examples"] {
            rust_files(&root.join(dir), &mut dev_files);
        }
        let read = |files: &[std::path::PathBuf]| -> String {
            files
                .iter()
                .filter(|f| !f.starts_with(root.join("fuzz")))
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .collect()
        };
        let (normal_text, dev_text) = (read(&normal_files), read(&dev_files));
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let kind = dep["kind"].as_str().unwrap_or("normal");
            if kind == "build" {
                continue;
            }
            let ident = dep["rename"].as_str().unwrap_or(dep_name).replace('-', "_");
            let text = if kind == "dev" {
                &dev_text
            } else {
                &normal_text
            };
            checked += 1;
            if !names_crate(text, &ident) {
                unused.push(format!(
                    "{name} lists {dep_name} ({kind}), which no source names"
                ));
            }
        }
    }
    assert!(checked > 50, "only {checked} dependencies found");
    assert!(unused.is_empty(), "{}", unused.join("\n"));
}

#[test]
fn the_check_for_unused_dependencies_sees_a_crate_named_and_one_not() {
    assert!(names_crate("use serde::Serialize;", "serde"));
    assert!(names_crate("x = tokio::spawn(f);", "tokio"));
    assert!(names_crate("use itoa;", "itoa"));
    assert!(!names_crate("use serde_json::Value;", "serde"));
    assert!(!names_crate("// the log crate", "log"));
    assert!(!names_crate("my_log::info!()", "log"));
}
