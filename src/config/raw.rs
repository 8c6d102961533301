//! The YAML file as written by the operator: serde structs, every one
//! `deny_unknown_fields`. Serde already parses what has one right shape
//! (addresses, numbers that must not be zero, the lowercase names of kinds,
//! plans and environments), so its error names the field's path; the rest
//! (URLs, ids, slugs, money, cross-references) is checked by `config`'s
//! validation, which reports every error of a file at once. Every default is
//! a named constant here, with the reason for its value; the log sink's
//! section is its owner's (`logs::config`).

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};

use floopy_model::{Environment, Plan};
use serde::Deserialize;

pub use crate::logs::config::RawLogSink;
use crate::upstream::ProviderKind;

/// SPEC section 3: the request body limit, 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Output tokens assumed for a request without `max_tokens`: a long answer,
/// so that reservations err on the side of the cap.
pub const DEFAULT_COMPLETION_TOKENS: u64 = 4_096;
/// Where month-to-date spend is kept by default (file control source).
pub const DEFAULT_STATE_FILE: &str = "var/spend-state.json";
/// The limits exchange between replicas: once a second keeps N replicas
/// within about a second's traffic of one cap, at one small query each.
pub const DEFAULT_EXCHANGE_INTERVAL_MS: u64 = 1_000;
/// Seconds the old process keeps serving after a graceful upgrade or
/// SIGTERM. Pingora's own default (300 s) makes every shutdown wait five
/// minutes; 10 s lets streams in flight finish in most deployments.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 10;
/// Seconds allowed for services (the log sink's flush) after the grace
/// period.
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;
/// Connecting to a provider: long enough for a TLS handshake across an
/// ocean, short enough to answer 504 before a client gives up.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Ten minutes: a long non-streamed completion sends nothing until done.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 600_000;
/// Sending a request body of up to 10 MiB to a provider.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 60_000;
/// The control database's version poll, besides LISTEN/NOTIFY: catches a
/// missed notification within a second.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;
/// `/readyz` turns unready after this long without a confirmed sync: long
/// enough to ride out a database failover, short enough that a load
/// balancer stops sending to a replica that lost its control data.
pub const DEFAULT_MAX_STALENESS_SECONDS: u64 = 30;
/// Failed authentications (unknown keys) one client address may make in a
/// minute before its requests get 429 without their keys being looked up:
/// far more than a misconfigured client needs to notice, far too few to
/// guess a key.
pub const DEFAULT_MAX_FAILED_AUTH_PER_MINUTE: u32 = 30;
/// HTTP/2 streams one client connection may have open at once.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// How often the certificate files are checked for a change on disk.
pub const DEFAULT_CERTIFICATE_WATCH_MS: u64 = 5_000;

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
    /// The plain-HTTP listener (optional when `tls` is set).
    pub listen: Option<SocketAddr>,
    pub admin_listen: SocketAddr,
    /// The TLS listener.
    pub tls: Option<RawTls>,
    /// Worker threads of the proxy service. Default 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    /// Name of this replica in every request log. Default: the host name.
    pub gateway_id: Option<String>,
    #[serde(default = "default_grace_period_seconds")]
    pub grace_period_seconds: u64,
    #[serde(default = "default_graceful_shutdown_timeout_seconds")]
    pub graceful_shutdown_timeout_seconds: u64,
    /// Milliseconds a request header may take from its first byte.
    pub header_timeout_ms: Option<std::num::NonZeroU64>,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: SocketAddr,
    /// The first is the default (a client without SNI, or with a name no
    /// certificate has).
    pub certificates: Vec<RawCertificate>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// PEM file of the CAs client certificates must chain to: set, every
    /// client must present one (mTLS).
    pub client_ca: Option<String>,
    /// Offer HTTP/2 (ALPN h2, then http/1.1). Default true.
    pub http2: Option<bool>,
    pub max_concurrent_streams: Option<NonZeroU32>,
    /// How often the files are checked for a change (a rotated certificate).
    pub watch_interval_ms: Option<NonZeroU64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM: the certificate, then its chain.
    pub cert: String,
    /// PEM: its private key.
    pub key: String,
    /// The names it serves (SNI); default: its DNS subject alternative names
    /// (else its common name).
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// `server.header_timeout_ms` when absent.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;

fn default_grace_period_seconds() -> u64 {
    DEFAULT_GRACE_PERIOD_SECONDS
}

fn default_graceful_shutdown_timeout_seconds() -> u64 {
    DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<NonZeroU64>,
    pub default_completion_tokens: Option<NonZeroU64>,
    pub state_file: Option<String>,
    pub exchange_interval_ms: Option<NonZeroU64>,
    /// Failed authentications one client address may make per minute; 0
    /// turns the throttle off.
    pub max_failed_auth_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect_ms: Option<NonZeroU64>,
    pub read_ms: Option<NonZeroU64>,
    pub write_ms: Option<NonZeroU64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: ProviderKind,
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

/// `control.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlSourceKind {
    /// The control data is `control.orgs`, in this file.
    File,
    /// The control database at `control.url`.
    Postgres,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub source: ControlSourceKind,
    /// `file`: the control data itself.
    #[serde(default)]
    pub orgs: Vec<RawOrg>,
    /// `postgres`: the connection string (`postgres://user@host:5432/db`).
    pub url: Option<String>,
    /// `postgres`: how often to check for missed changes, besides
    /// LISTEN/NOTIFY.
    pub poll_interval_ms: Option<NonZeroU64>,
    /// `postgres`: after this long without a confirmed sync, `/readyz`
    /// reports not ready (the gateway keeps serving its last snapshot).
    pub max_staleness_seconds: Option<NonZeroU64>,
    /// `postgres`: a copy of the last loaded control data, to start from
    /// when the database is unreachable at start.
    pub cache_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrg {
    pub id: String,
    pub name: String,
    pub plan: Plan,
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
    pub environment: Option<Environment>,
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
    pub environment: Environment,
    pub rpm: Option<NonZeroU32>,
    pub monthly_cost_usd: Option<f64>,
}
