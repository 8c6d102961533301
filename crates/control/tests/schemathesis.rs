//! schemathesis (PyPI) against a running floopy-control and the real
//! Postgres: requests generated from `/openapi.json`, with a personal access
//! token of an org owner. No answer may be a 5xx, and every answer must be
//! one the document describes (status, content type, schema).
//!
//! schemathesis comes from the test suite's Python environment
//! (`FLOOPY_PYTHON`, made by scripts/install-kafka-tools.sh); without it the
//! test fails and says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;

fn python() -> String {
    std::env::var("FLOOPY_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/floopy/venv/bin/python")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_documented_answers_and_no_5xx() {
    let python = python();
    let has_it = Command::new(&python)
        .args(["-c", "import schemathesis"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_it,
        "schemathesis is missing from {python}: run scripts/install-kafka-tools.sh (or set FLOOPY_PYTHON)"
    );
    // With the analytics store, so its endpoints answer (not 503).
    let ch = clickhouse::ClickHouse::start_with_tables().await;
    let db = TestDb::create().await;
    let control = Control::start(
        &db,
        &format!(
            "clickhouse: {{url: \"{}\"}}\n",
            ch.http.trim_end_matches('/')
        ),
    )
    .await;
    let (_, owner) = control.bootstrap("Acme", "enterprise", "owner@acme.test");
    let token = token_for(&db, owner).await;
    let base = control.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "schemathesis.cli", "run"])
            .arg(format!("{base}/openapi.json"))
            .args(["--base-url", &base])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
            .args(["--hypothesis-max-examples", "25", "--hypothesis-derandomize"])
            .args(["--hypothesis-suppress-health-check", "all"])
            .arg("--experimental=openapi-3.1")
            .arg("--no-color")
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\nfloopy-control's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        control.stderr()
    );
    // Its summary's last line counts operations: "== N passed[, M
    // skipped] in Xs ==". Every documented operation must have been run.
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default();
    let words: Vec<&str> = summary
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let count = |what: &str| -> usize {
        words
            .windows(2)
            .find(|w| w[1] == what)
            .map_or(0, |w| w[0].parse().unwrap_or(0))
    };
    let doc: serde_json::Value =
        serde_json::from_str(&floopy_control::openapi::document()).unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|methods| methods.as_object().unwrap().len())
        .sum();
    assert_eq!(
        (count("passed"), count("failed"), count("errored")),
        (operations, 0, 0),
        "every one of the {operations} documented operations passed:\n{stdout}"
    );
    drop(control);
    db.drop_db().await;
}
