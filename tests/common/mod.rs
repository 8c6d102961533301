//! Test harness: the real `floopy-gateway` binary on free loopback ports,
//! in front of the in-process fake provider, with its request log read back.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod kafka;
pub mod pg;

pub use floopy_test_kit::{clickhouse, free_port};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floopy_fake_provider::FakeProvider;
use serde_json::Value;

pub const ORG: &str = "0190a000-0000-7000-8000-000000000001";
pub const OTHER_ORG: &str = "0190a000-0000-7000-8000-000000000002";
pub const CHECKOUT: &str = "0190a000-0000-7000-8000-0000000000c1";
pub const SEARCH: &str = "0190a000-0000-7000-8000-0000000000c2";
pub const ARCHIVED: &str = "0190a000-0000-7000-8000-0000000000c3";
pub const FOREIGN: &str = "0190a000-0000-7000-8000-0000000000f1";
pub const ZERO: &str = "00000000-0000-0000-0000-000000000000";

/// Not locked, no default: header, else org Default.
pub const KEY_FREE: &str = "fpk_freekey000000000000000000000000000001";
pub const KEY_FREE_ID: &str = "0190a000-0000-7000-8000-00000000000a";
/// Locked to CHECKOUT.
pub const KEY_LOCKED: &str = "fpk_lockedkey0000000000000000000000000002";
pub const KEY_LOCKED_ID: &str = "0190a000-0000-7000-8000-00000000000b";
/// Default project SEARCH.
pub const KEY_DEFAULT: &str = "fpk_defaultkey000000000000000000000000003";
pub const KEY_DEFAULT_ID: &str = "0190a000-0000-7000-8000-00000000000c";
pub const KEY_REVOKED: &str = "fpk_revokedkey000000000000000000000000004";
pub const KEY_REVOKED_ID: &str = "0190a000-0000-7000-8000-00000000000d";
/// No environment.
pub const KEY_NO_ENV: &str = "fpk_noenvkey0000000000000000000000000005";
pub const KEY_NO_ENV_ID: &str = "0190a000-0000-7000-8000-00000000000e";
/// A key of the other org.
pub const KEY_OTHER_ORG: &str = "fpk_otherorgkey00000000000000000000000006";

/// The configuration every test starts from; `{UPSTREAM}`, `{LISTEN}`,
/// `{ADMIN}`, `{LOG}` and `{EXTRA_KEYS}` are filled in.
/// The file control source of the tests: two orgs, projects, keys.
pub const FILE_CONTROL: &str = r##"control:
  source: file
  orgs:
    - id: "0190a000-0000-7000-8000-000000000001"
      name: "Test Org"
      plan: pro
      projects:
        - { id: "0190a000-0000-7000-8000-0000000000c1", name: "Checkout", slug: "checkout" }
        - { id: "0190a000-0000-7000-8000-0000000000c2", name: "Search", slug: "search" }
        - { id: "0190a000-0000-7000-8000-0000000000c3", name: "Old", slug: "old", archived: true }
      api_keys:
        - { id: "0190a000-0000-7000-8000-00000000000a", name: free, environment: development, secret: "fpk_freekey000000000000000000000000000001" }
        - { id: "0190a000-0000-7000-8000-00000000000b", name: locked, environment: production, project_id: "0190a000-0000-7000-8000-0000000000c1", secret: "fpk_lockedkey0000000000000000000000000002" }
        - { id: "0190a000-0000-7000-8000-00000000000c", name: default, environment: staging, default_project_id: "0190a000-0000-7000-8000-0000000000c2", secret: "fpk_defaultkey000000000000000000000000003" }
        - { id: "0190a000-0000-7000-8000-00000000000d", name: revoked, environment: production, revoked: true, secret: "fpk_revokedkey000000000000000000000000004" }
        - { id: "0190a000-0000-7000-8000-00000000000e", name: noenv, secret: "fpk_noenvkey0000000000000000000000000005" }
{EXTRA_KEYS}
{ENV_LIMITS}
    - id: "0190a000-0000-7000-8000-000000000002"
      name: "Other Org"
      plan: enterprise
      projects:
        - { id: "0190a000-0000-7000-8000-0000000000f1", name: "Foreign", slug: "foreign" }
      api_keys:
        - { id: "0190a000-0000-7000-8000-0000000000ff", name: other, environment: production, secret: "fpk_otherorgkey00000000000000000000000006" }
"##;

pub const BASE_CONFIG: &str = r##"
server:
  listen: "{LISTEN}"
  admin_listen: "{ADMIN}"
{EXTRA_SERVER}
  threads: 2
  gateway_id: "test-gw"
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
  upgrade_sock: "{UPGRADE_SOCK}"
limits:
  max_body_bytes: {MAX_BODY}
  state_file: "{STATE}"
  default_completion_tokens: 100
{EXTRA_LIMITS}
timeouts:
  connect_ms: 1000
  read_ms: {READ_MS}
providers:
  - name: fake-openai
    kind: openai
    base_url: "{UPSTREAM}"
    credential: { env: FLOOPY_TEST_OPENAI_KEY }
    models: [gpt-4o, gpt-4o-mini, text-embedding-3-small, unpriced-model]
  - name: fake-anthropic
    kind: anthropic
    base_url: "{UPSTREAM}"
    credential: { env: FLOOPY_TEST_ANTHROPIC_KEY }
    models: [claude-sonnet-4-5]
  - name: dead
    kind: openai
    base_url: "http://127.0.0.1:{DEAD_PORT}"
    models: [dead-model]
{EXTRA_PROVIDERS}
pricing:
  - { model: gpt-4o, input_per_mtok_usd: 2.50, output_per_mtok_usd: 10.00, cached_input_per_mtok_usd: 1.25 }
  - { model: gpt-4o-mini, input_per_mtok_usd: 0.15, output_per_mtok_usd: 0.60 }
  - { model: text-embedding-3-small, input_per_mtok_usd: 0.02, output_per_mtok_usd: 0 }
  - { model: claude-sonnet-4-5, input_per_mtok_usd: 3.00, output_per_mtok_usd: 15.00, cached_input_per_mtok_usd: 0.30 }
{CONTROL}{LOG_SINK}
"##;

/// Options of one gateway under test.
#[derive(Clone)]
pub struct Options {
    pub max_body: u64,
    pub read_ms: u64,
    pub extra_keys: String,
    /// YAML list items appended to `providers`.
    pub extra_providers: String,
    /// The test org's `environment_limits:` member (indented 6 spaces).
    pub env_limits: String,
    /// Spend state file; default: beside the request log.
    pub state_file: Option<PathBuf>,
    /// The whole `control:` section; default `FILE_CONTROL`.
    pub control: Option<String>,
    /// The whole `log_sink:` section; default: the file sink at `{LOG}`.
    pub log_sink: Option<String>,
    /// More `server` fields (`tls:` and its section, say), indented 2
    /// spaces.
    pub extra_server: String,
    /// More `limits` fields, indented 2 spaces.
    pub extra_limits: String,
    /// `FLOOPY_TIMELINE=1`: the per-request phase timeline on.
    pub timeline: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_body: 10 * 1024 * 1024,
            read_ms: 10_000,
            extra_keys: String::new(),
            extra_providers: String::new(),
            env_limits: String::new(),
            state_file: None,
            control: None,
            log_sink: None,
            extra_server: String::new(),
            extra_limits: String::new(),
            timeline: false,
        }
    }
}

pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub upstream: String,
    pub dead_port: u16,
    stderr_path: PathBuf,
    timeline: bool,
}

/// Renders the configuration for these ports and options.
pub fn render_config(
    upstream: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    log: &Path,
    dead_port: u16,
    options: &Options,
) -> String {
    BASE_CONFIG
        .replace(
            "{CONTROL}",
            options.control.as_deref().unwrap_or(FILE_CONTROL),
        )
        .replace(
            "{LOG_SINK}",
            options
                .log_sink
                .as_deref()
                .unwrap_or("log_sink:\n  kind: file\n  path: \"{LOG}\""),
        )
        .replace("{UPSTREAM}", upstream)
        .replace("{LISTEN}", &listen.to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace("{LOG}", &log.display().to_string())
        .replace("{DEAD_PORT}", &dead_port.to_string())
        .replace("{MAX_BODY}", &options.max_body.to_string())
        .replace("{READ_MS}", &options.read_ms.to_string())
        .replace("{EXTRA_KEYS}", &options.extra_keys)
        .replace("{ENV_LIMITS}", &options.env_limits)
        .replace(
            "{UPGRADE_SOCK}",
            &log.with_file_name("upgrade.sock").display().to_string(),
        )
        .replace(
            "{STATE}",
            &options
                .state_file
                .clone()
                .unwrap_or_else(|| log.with_file_name("spend-state.json"))
                .display()
                .to_string(),
        )
        .replace("{EXTRA_PROVIDERS}", &options.extra_providers)
        .replace("{EXTRA_SERVER}", &options.extra_server)
        .replace("{EXTRA_LIMITS}", &options.extra_limits)
}

/// The gateway binary on `config`, with the tests' provider keys.
fn spawn_gateway(config: &Path, stderr: std::fs::File, timeline: bool) -> Child {
    Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("--config")
        .arg(config)
        .env("FLOOPY_TIMELINE", if timeline { "1" } else { "0" })
        .env("FLOOPY_TEST_OPENAI_KEY", "sk-test-openai")
        .env("FLOOPY_TEST_ANTHROPIC_KEY", "sk-test-anthropic")
        .env("FLOOPY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

impl Gateway {
    /// Starts the gateway binary in front of `provider`. Retries on a port
    /// taken between choosing it and binding it.
    pub async fn start(provider: &FakeProvider, options: Options) -> Gateway {
        for _ in 0..5 {
            if let Some(gateway) = Self::try_start(provider, &options).await {
                return gateway;
            }
        }
        panic!("the gateway did not start after 5 attempts");
    }

    async fn try_start(provider: &FakeProvider, options: &Options) -> Option<Gateway> {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dead_port = free_port();
        let log_path = dir.path().join("logs").join("requests.jsonl");
        let config_path = dir.path().join("gateway.yaml");
        let upstream = provider.base_url();
        std::fs::write(
            &config_path,
            render_config(&upstream, addr, admin, &log_path, dead_port, options),
        )
        .unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let child = spawn_gateway(
            &config_path,
            std::fs::File::create(&stderr_path).unwrap(),
            options.timeline,
        );
        let mut gateway = Gateway {
            child,
            addr,
            admin,
            dir,
            config_path,
            log_path,
            upstream,
            dead_port,
            stderr_path,
            timeline: options.timeline,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = gateway.child.try_wait() {
                eprintln!("gateway exited at start:\n{}", gateway.stderr());
                return None;
            }
            let healthy = reqwest::get(format!("http://{}/healthz", gateway.admin))
                .await
                .is_ok_and(|r| r.status() == 200);
            if healthy && tokio::net::TcpStream::connect(gateway.addr).await.is_ok() {
                return Some(gateway);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not become healthy:\n{}", gateway.stderr());
    }

    /// SIGKILL: the process dies at once, nothing flushed or closed.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the gateway again with the same configuration (after `kill`
    /// or `stop`), waiting until it is healthy; its stderr is appended.
    pub async fn restart(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        self.child = spawn_gateway(&self.config_path, stderr, self.timeline);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the gateway exited at restart ({status}):\n{}",
                    self.stderr()
                );
            }
            let healthy = reqwest::get(format!("http://{}/healthz", self.admin))
                .await
                .is_ok_and(|r| r.status() == 200);
            if healthy && tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not become healthy after a restart:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a second gateway process with the same configuration and
    /// `--upgrade`: it waits for this one's listening sockets, which this one
    /// hands over on SIGQUIT.
    pub fn spawn_upgrade(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("--upgrade")
            .env("FLOOPY_TEST_OPENAI_KEY", "sk-test-openai")
            .env("FLOOPY_TEST_ANTHROPIC_KEY", "sk-test-anthropic")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("stderr-upgrade.log")).unwrap())
            .spawn()
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Every request log record written so far.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
            .collect()
    }

    /// The record of `request_id`, waiting up to 5 s for the writer.
    pub async fn record(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(record) = self
                .records()
                .into_iter()
                .find(|r| r["request_id"] == request_id)
            {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "no log record for request {request_id}; log has {:#?}",
                self.records()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log holds at least `n` records.
    pub async fn wait_records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let records = self.records();
            if records.len() >= n || Instant::now() >= deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A chat request body of about `size` bytes.
pub fn chat_body(model: &str, stream: bool, size: usize) -> Vec<u8> {
    let content = "x".repeat(size.saturating_sub(120));
    serde_json::to_vec(&serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": content}],
    }))
    .unwrap()
}

pub async fn start_provider() -> FakeProvider {
    FakeProvider::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// The error body's `error.code`.
pub async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("error bodies are JSON");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the current UTC minute has more than 20 s left, so that a
/// test's requests fall in one RPM window.
pub async fn early_in_a_minute() {
    loop {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
        if secs < 40 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Gateway {
    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of the unlabelled metric `name` in a Prometheus text; a
/// missing or renamed metric fails the test.
pub fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Waits for clients of `send_until_capped`: every answer is a 200 or a 402
/// and every client ends on the cap. Returns the 200s, all clients together.
pub async fn admitted_until_capped(clients: Vec<tokio::task::JoinHandle<Vec<u16>>>) -> usize {
    let mut admitted = 0;
    for c in clients {
        let statuses = c.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 402),
            "{statuses:?}"
        );
        assert_eq!(
            *statuses.last().unwrap(),
            402,
            "every client ends on the cap"
        );
        admitted += statuses.iter().filter(|s| **s == 200).count();
    }
    admitted
}

/// One client sending `body` with `key` until it gets a 402 (or `max`
/// answers); the fake provider reports the body's estimated prompt tokens
/// (bytes / 4) and `completion_tokens`. Returns the statuses in order.
pub async fn send_until_capped(
    gw: std::sync::Arc<Gateway>,
    key: String,
    body: &'static str,
    completion_tokens: u64,
    max: usize,
) -> Vec<u16> {
    let prompt_tokens = (body.len() as u64).div_ceil(4);
    let c = client();
    let mut statuses = Vec::new();
    loop {
        let resp = c
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {key}"))
            .header("x-fake-prompt-tokens", prompt_tokens.to_string())
            .header("x-fake-completion-tokens", completion_tokens.to_string())
            .header("x-fake-latency-ms", "20")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let _ = resp.bytes().await;
        statuses.push(status);
        if status == 402 || statuses.len() > max {
            return statuses;
        }
    }
}
