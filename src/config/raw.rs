//! The YAML file as written by the operator: plain serde structs, every one
//! `deny_unknown_fields`, floats and strings as typed. Nothing here is
//! validated beyond shape; `config::validate` turns it into a typed `Config`.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub pricing: Vec<RawPrice>,
    pub control: RawControl,
    pub log_sink: RawLogSink,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: String,
    pub admin_listen: String,
    /// Worker threads of the proxy service. Default 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Name of this replica in every request log. Default: the host name.
    pub gateway_id: Option<String>,
    /// Seconds the old process keeps serving after a graceful upgrade or
    /// SIGTERM. Pingora's own default (300 s) makes every shutdown wait five
    /// minutes; 10 s lets streams in flight finish in most deployments.
    #[serde(default = "default_grace_period_seconds")]
    pub grace_period_seconds: u64,
    /// Seconds allowed for services (the log sink) to finish after the grace
    /// period.
    #[serde(default = "default_graceful_shutdown_timeout_seconds")]
    pub graceful_shutdown_timeout_seconds: u64,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

fn default_grace_period_seconds() -> u64 {
    10
}

fn default_graceful_shutdown_timeout_seconds() -> u64 {
    5
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body accepted, in bytes (SPEC: 10 MiB by default).
    pub max_body_bytes: Option<u64>,
    /// Output tokens assumed when reserving the cost of a request that sets
    /// no `max_tokens`.
    pub default_completion_tokens: Option<u64>,
    /// Where month-to-date spend is kept across restarts (file control
    /// source).
    pub state_file: Option<String>,
    /// How often replicas sharing a control database exchange spend and
    /// request counts.
    pub exchange_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect_ms: Option<u64>,
    /// Longest wait for the next bytes from the provider. LLM responses can
    /// take minutes before the first byte of a non-streamed answer.
    pub read_ms: Option<u64>,
    pub write_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub credential: Option<RawCredential>,
    /// PEM file of CA certificates to trust for this provider, besides the
    /// system ones (a private CA, or a self-signed certificate).
    pub ca_file: Option<String>,
    pub models: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub model: String,
    pub input_per_mtok_usd: f64,
    pub output_per_mtok_usd: f64,
    /// Price of cached input tokens. Default: the input price.
    pub cached_input_per_mtok_usd: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub source: String,
    /// `file`: the control data itself.
    #[serde(default)]
    pub orgs: Vec<RawOrg>,
    /// `postgres`: the connection string (`postgres://user@host:5432/db`).
    pub url: Option<String>,
    /// `postgres`: how often to check for missed changes, besides
    /// LISTEN/NOTIFY.
    pub poll_interval_ms: Option<u64>,
    /// `postgres`: after this long without a confirmed sync, `/readyz`
    /// reports not ready (the gateway keeps serving its last snapshot).
    pub max_staleness_seconds: Option<u64>,
    /// `postgres`: a copy of the last loaded control data, to start from
    /// when the database is unreachable at start.
    pub cache_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrg {
    pub id: String,
    pub name: String,
    pub plan: String,
    #[serde(default)]
    pub projects: Vec<RawProject>,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    #[serde(default)]
    pub environment_limits: Vec<RawEnvironmentLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub color: Option<String>,
    pub icon: Option<String>,
    #[serde(default)]
    pub archived: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub id: String,
    pub name: String,
    pub environment: Option<String>,
    pub project_id: Option<String>,
    pub default_project_id: Option<String>,
    /// Hex SHA-256 of the full key string: the production form.
    pub secret_sha256: Option<String>,
    /// The key string itself: for development only.
    pub secret: Option<String>,
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironmentLimits {
    pub environment: String,
    pub rpm: Option<u32>,
    pub monthly_cost_usd: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogSink {
    pub kind: String,
    /// file: the JSON Lines file.
    pub path: Option<String>,
    /// Records held in memory between the request path and the writer.
    pub queue_capacity: Option<usize>,
    /// kafka: `host:port[,host:port...]`.
    pub brokers: Option<String>,
    /// kafka: default `floopy.request_logs`.
    pub topic: Option<String>,
    /// kafka: the disk spool directory.
    pub spool_dir: Option<String>,
    /// kafka: batching delay (default 20).
    pub linger_ms: Option<u64>,
    /// kafka: none, gzip, snappy, lz4 (default), zstd.
    pub compression: Option<String>,
    /// kafka: how long the producer retries a record before it is spooled
    /// (default 10000).
    pub message_timeout_ms: Option<u64>,
    /// kafka: idempotent producer (default true).
    pub idempotence: Option<bool>,
}
