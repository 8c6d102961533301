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

/// A floopy-gateway (the workspace's binary) on the control database of
/// `db`, in front of `provider`, pricing gpt-4o; killed when dropped.
struct Gateway {
    child: std::process::Child,
    chat: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(db: &TestDb, provider: &FakeProvider) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = (free_port(), free_port());
        let config = dir.path().join("gateway.yaml");
        let log = dir.path().join("logs.jsonl");
        std::fs::write(
            &config,
            format!(
                r#"server: {{listen: "127.0.0.1:{listen}", admin_listen: "127.0.0.1:{admin}", threads: 1, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1}}
providers:
  - {{name: fake, kind: openai, base_url: "{}", models: [gpt-4o]}}
pricing:
  - {{model: gpt-4o, input_per_mtok_usd: 2.50, output_per_mtok_usd: 10.00}}
control: {{source: postgres, url: "{}", poll_interval_ms: 200}}
log_sink: {{kind: file, path: "{}"}}
"#,
                provider.base_url(),
                db.url(),
                log.display(),
            ),
        )
        .unwrap();
        let bin = bin_dir().join("floopy-gateway");
        assert!(
            bin.exists(),
            "{} is built with the workspace (cargo build --workspace --bins)",
            bin.display()
        );
        let child = Command::new(&bin)
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
        Gateway {
            child,
            chat: format!("http://127.0.0.1:{listen}/v1/chat/completions"),
            log,
            _dir: dir,
        }
    }

    /// The sum of `cost_micro_usd` of the logged requests of `project`.
    fn logged_cost(&self, project: &str) -> i64 {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["project_id"] == project)
            .map(|r| r["cost_micro_usd"].as_i64().unwrap())
            .sum()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

    let gateway = Gateway::start(&db, &provider).await;
    let http = reqwest::Client::new();

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
    let chat = gateway.chat.clone();
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

    drop(gateway);
    drop(control);
    db.drop_db().await;
}

/// Sends one priced request with `key`; its status.
async fn spend(http: &reqwest::Client, url: &str, key: &str) -> u16 {
    http.post(url)
        .bearer_auth(key)
        .header("x-fake-prompt-tokens", "1000")
        .header("x-fake-completion-tokens", "1000")
        .json(&json!({"model": "gpt-4o", "max_tokens": 10, "messages": []}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breached_budget_revokes_its_project_s_keys_within_three_seconds() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "budgets: {evaluate_every_ms: 500}\n").await;
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let token = token_for(&db, owner).await;
    let provider = FakeProvider::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = |path: String| control.url(&path);

    let mut projects = Vec::new();
    for slug in ["capped", "other"] {
        let (status, p) = call(
            &http,
            "POST",
            &url(format!("/v1/orgs/{org}/projects")),
            Some(&token),
            Some(json!({"name": slug, "slug": slug})),
        )
        .await;
        assert_eq!(status, 201, "{p}");
        projects.push(p["id"].as_str().unwrap().to_string());
    }
    let (capped, other) = (&projects[0], &projects[1]);
    let mut keys = Vec::new();
    for body in [
        json!({"name": "locked", "project_id": capped}),
        json!({"name": "defaulting", "default_project_id": capped}),
        json!({"name": "elsewhere", "project_id": other}),
    ] {
        let (status, k) = call(
            &http,
            "POST",
            &url(format!("/v1/orgs/{org}/keys")),
            Some(&token),
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{k}");
        keys.push(k["key"].as_str().unwrap().to_string());
    }
    // gpt-4o: 1000 prompt tokens at $2.50 and 1000 completion tokens at $10
    // per million tokens: $0.0125 a request; a budget of $0.03 breaks on
    // the third.
    let (status, budget) = call(
        &http,
        "POST",
        &url(format!("/v1/orgs/{org}/budgets")),
        Some(&token),
        Some(json!({"name": "cap", "project_id": capped, "amount_usd": 0.03, "action": "alert_and_revoke"})),
    )
    .await;
    assert_eq!(status, 201, "{budget}\n{}", control.stderr());
    let budget_id = budget["id"].as_str().unwrap().to_string();

    let gateway = Gateway::start(&db, &provider).await;
    let chat = gateway.chat.clone();
    served_within(&http, &chat, &keys[2], 200, Duration::from_secs(20)).await;

    // Spend until a request is refused. Each costs 12,500 micro-USD, so the
    // third crosses the budget; the clock starts when its answer arrives.
    let mut crossed_at = None;
    let mut answered = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let status = spend(&http, &chat, &keys[0]).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        answered += 1;
        if answered * 12_500 >= 30_000 && crossed_at.is_none() {
            crossed_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let crossed_at = crossed_at.expect("the budget was crossed");
    let refused_after = served_within(&http, &chat, &keys[0], 401, Duration::from_secs(3)).await
        + crossed_at.elapsed();
    eprintln!("breach to refusal: at most {refused_after:?}");
    assert!(refused_after < Duration::from_secs(3), "{refused_after:?}");
    assert_eq!(
        spend(&http, &chat, &keys[1]).await,
        401,
        "the key defaulting to the project"
    );
    assert_eq!(
        spend(&http, &chat, &keys[2]).await,
        200,
        "another project's key still works"
    );

    // The budget's spend is the exact sum of the project's records.
    let logged = gateway.logged_cost(capped);
    let started = Instant::now();
    loop {
        let (_, b) = call(
            &http,
            "GET",
            &url(format!("/v1/orgs/{org}/budgets/{budget_id}")),
            Some(&token),
            None,
        )
        .await;
        let spent_usd: f64 = b["spent_usd"].as_str().unwrap().parse().unwrap();
        if (spent_usd * 1e6).round() as i64 == logged {
            assert_eq!(b["breached"], true);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "budget spend {b} vs logged {logged}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restoring needs the budget raised (or a new month).
    let restore = url(format!("/v1/orgs/{org}/budgets/{budget_id}/restore"));
    let (status, v) = call(&http, "POST", &restore, Some(&token), None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("budget_exceeded")),
        "{v}"
    );
    let (status, _) = call(
        &http,
        "PATCH",
        &url(format!("/v1/orgs/{org}/budgets/{budget_id}")),
        Some(&token),
        Some(json!({"amount_usd": 10})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(&http, "POST", &restore, Some(&token), None).await;
    assert_eq!((status, v["keys_restored"].as_u64()), (200, Some(2)), "{v}");
    served_within(&http, &chat, &keys[0], 200, Duration::from_secs(1)).await;

    drop(gateway);
    drop(control);
    db.drop_db().await;
}
