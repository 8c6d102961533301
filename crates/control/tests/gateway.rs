//! End to end through the real gateway: a key created through the API is
//! served by a running floopy-gateway (on the same control database) within
//! a second, a limit set through the API holds within a second, and a key is
//! refused within a second of its revocation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use floopy_fake_provider::FakeProvider;
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls the gateway with `key` until it answers `expected`; how long that took.
async fn served_within(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    expected: u16,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = http
            .post(url)
            .bearer_auth(key)
            .json(&json!({"model": "gpt-4o", "messages": []}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {status} after {within:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_limits_set_through_the_api_hold_on_the_gateway_within_a_second() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let token = token_for(&db, owner).await;
    let provider = FakeProvider::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            r#"server: {{listen: "127.0.0.1:{listen}", admin_listen: "127.0.0.1:{admin}", threads: 1, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1}}
providers:
  - {{name: fake, kind: openai, base_url: "{}", models: [gpt-4o]}}
control: {{source: postgres, url: "{}", poll_interval_ms: 200}}
log_sink: {{kind: file, path: "{}"}}
limits: {{state_file: "{}"}}
"#,
            provider.base_url(),
            db.url(),
            dir.path().join("logs.jsonl").display(),
            dir.path().join("state.json").display(),
        ),
    )
    .unwrap();
    let gateway_bin = bin_dir().join("floopy-gateway");
    assert!(
        gateway_bin.exists(),
        "{} is built with the workspace (cargo build --workspace --bins)",
        gateway_bin.display()
    );
    let mut gateway = Command::new(&gateway_bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("http://127.0.0.1:{admin}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the gateway did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, created) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/keys")),
        Some(&token),
        Some(json!({"name": "e2e", "environment": "production"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let chat = format!("http://127.0.0.1:{listen}/v1/chat/completions");
    let took = served_within(&http, &chat, &key, 200, Duration::from_secs(1)).await;
    eprintln!("a new key was served after {took:?}");

    // A limit set through the API holds on the gateway within a second.
    let (status, _) = call(
        &http,
        "PUT",
        &control.url(&format!("/v1/orgs/{org}/limits/production")),
        Some(&token),
        Some(json!({"rpm": 1})),
    )
    .await;
    assert_eq!(status, 200);
    let took = served_within(&http, &chat, &key, 429, Duration::from_secs(1)).await;
    eprintln!("a new RPM limit held after {took:?}");

    let (status, _) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/keys/{id}/revoke")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let took = served_within(&http, &chat, &key, 401, Duration::from_secs(1)).await;
    eprintln!("a revoked key was refused after {took:?}");

    let _ = gateway.kill();
    let _ = gateway.wait();
    drop(control);
    db.drop_db().await;
}
