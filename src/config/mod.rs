//! Configuration: the YAML file (`raw`) -> a validated, typed `Config`.
//!
//! Every error names the path of the field it is about
//! (`providers[1].base_url: ...`), and validation reports all errors at once
//! (serde's shape errors stop at the first). Reading a credential from the
//! environment or a file and resolving a provider's host happen here, so a
//! configuration that loads is one that can serve. The sections with a home
//! of their own are checked there: providers in `providers`, the file
//! control data in `control`, the log sink in `logs::config` (its owner,
//! file shape and defaults included), the TLS listener's types in `tls`;
//! they report into `config_error::Errors`, a leaf, and never import this
//! module. Nothing here touches the running gateway: `reload` swaps.

mod control;
mod providers;
pub mod raw;

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use floopy_control_db::DbConfig;
use floopy_model::{usd_to_micro, ControlData};
use rustc_hash::FxHashSet;

use crate::logs::config::validate_log_sink;
pub use crate::logs::config::LogSinkConfig;
use crate::pricing::Price;
use crate::upstream::{Endpoint, ProviderKind, Timeouts};
use control::validate_file_control;
use raw::*;
pub use raw::{DEFAULT_COMPLETION_TOKENS, DEFAULT_MAX_BODY_BYTES, DEFAULT_STATE_FILE};

pub(crate) use crate::config_error::Errors;
pub use crate::config_error::{ConfigError, ConfigErrors};

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub max_body_bytes: u64,
    /// Failed authentications per client address and minute (0: off).
    pub max_failed_auth_per_minute: u32,
    pub default_completion_tokens: u64,
    pub state_file: PathBuf,
    pub exchange_interval: Duration,
    pub timeouts: Timeouts,
    pub providers: Vec<ProviderConfig>,
    pub prices: Vec<(String, Price)>,
    pub control: ControlSource,
    pub log_sink: LogSinkConfig,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The plain-HTTP listener, if any.
    pub listen: Option<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub threads: usize,
    pub gateway_id: String,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    /// A request header must arrive within this from its first byte.
    pub header_timeout: std::time::Duration,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

pub use crate::tls::{CertificateFiles, TlsConfig};

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub endpoint: Endpoint,
    /// The credential as the header value the provider's kind expects.
    pub credential_header: Option<http::HeaderValue>,
    pub models: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ControlSource {
    /// Orgs, projects, keys and limits declared in the YAML itself.
    File(ControlData),
    /// The control database, shared by every replica.
    Postgres(PostgresSource),
}

#[derive(Debug, Clone)]
pub struct PostgresSource {
    /// As written in the file (it may hold a password: never log it).
    pub url: String,
    /// The parsed URL, TLS settings resolved.
    pub db: DbConfig,
    pub poll_interval: Duration,
    pub max_staleness: Duration,
    pub cache_file: Option<PathBuf>,
}

/// Whether validation resolves provider host names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Resolve them (to serve): an unresolvable host is an error.
    Hosts,
    /// Skip DNS (`--check-config` on a machine that cannot reach the
    /// providers' DNS): addresses are left unspecified.
    Skip,
}

/// Reads, parses and validates a configuration file, resolving provider
/// hosts: the result can serve.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, Resolve::Hosts)
}

/// Reads, parses and validates a configuration file.
pub fn load_with(path: &Path, resolve: Resolve) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })?;
    parse_with(&text, resolve)
}

/// Parses and validates configuration text, resolving provider hosts.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_with(text, Resolve::Hosts)
}

/// Parses and validates configuration text.
pub fn parse_with(text: &str, resolve: Resolve) -> Result<Config, ConfigErrors> {
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // The root is ".", and a key with an empty name at the root "".
        let path = if path == "." || path.is_empty() {
            "(root)".into()
        } else {
            path
        };
        // serde_yaml starts some messages with the place they are about
        // (`limits: unknown field ...`), which the path already names.
        let message = e.into_inner().to_string();
        let message = match message.split_once(": ") {
            Some((place, rest)) if path.starts_with(place) => rest.to_string(),
            _ => message,
        };
        ConfigErrors(vec![ConfigError { path, message }])
    })?;
    validate(raw, resolve)
}

fn validate(raw: RawConfig, resolve: Resolve) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::default();
    let server = validate_server(&raw.server, &mut errors);
    let limits = &raw.limits;
    let max_body_bytes = limits
        .max_body_bytes
        .map_or(DEFAULT_MAX_BODY_BYTES, |n| n.get());
    let default_completion_tokens = limits
        .default_completion_tokens
        .map_or(DEFAULT_COMPLETION_TOKENS, |n| n.get());
    let max_failed_auth_per_minute = limits
        .max_failed_auth_per_minute
        .unwrap_or(DEFAULT_MAX_FAILED_AUTH_PER_MINUTE);
    let state_file = match &limits.state_file {
        Some(p) if p.is_empty() => {
            errors.add("limits.state_file", "must not be empty");
            PathBuf::new()
        }
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(DEFAULT_STATE_FILE),
    };
    let exchange_interval = Duration::from_millis(
        limits
            .exchange_interval_ms
            .map_or(DEFAULT_EXCHANGE_INTERVAL_MS, |n| n.get()),
    );
    let timeouts = validate_timeouts(&raw.timeouts);
    let providers = providers::validate_providers(&raw.providers, resolve, &mut errors);
    let prices = validate_pricing(&raw.pricing, &mut errors);
    let control = validate_control(&raw.control, &mut errors);
    let log_sink = validate_log_sink(&raw.log_sink, &mut errors);

    match control {
        Some(control) if errors.0.is_empty() => Ok(Config {
            server,
            max_body_bytes,
            max_failed_auth_per_minute,
            default_completion_tokens,
            state_file,
            exchange_interval,
            timeouts,
            providers,
            prices,
            control,
            log_sink,
        }),
        _ => Err(ConfigErrors(errors.0)),
    }
}

fn validate_server(raw: &RawServer, errors: &mut Errors) -> ServerSettings {
    let gateway_id = match &raw.gateway_id {
        Some(id) if id.is_empty() => {
            errors.add("server.gateway_id", "must not be empty");
            String::new()
        }
        Some(id) => id.clone(),
        None => default_gateway_id(),
    };
    if raw.listen.is_none() && raw.tls.is_none() {
        errors.add(
            "server.listen",
            "is required unless server.tls is set (the proxy needs a listener)",
        );
    }
    ServerSettings {
        listen: raw.listen,
        admin_listen: raw.admin_listen,
        tls: raw.tls.as_ref().and_then(|tls| validate_tls(tls, errors)),
        threads: if raw.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            raw.threads
        },
        gateway_id,
        grace_period_seconds: raw.grace_period_seconds,
        graceful_shutdown_timeout_seconds: raw.graceful_shutdown_timeout_seconds,
        header_timeout: std::time::Duration::from_millis(
            raw.header_timeout_ms
                .map_or(DEFAULT_HEADER_TIMEOUT_MS, |ms| ms.get()),
        ),
        pid_file: raw.pid_file.clone(),
        upgrade_sock: raw.upgrade_sock.clone(),
    }
}

/// The TLS section, its files read and checked (`crate::tls`): every
/// problem is an error with its path.
fn validate_tls(raw: &RawTls, errors: &mut Errors) -> Option<TlsConfig> {
    let tls13_only = match raw.min_version.as_deref() {
        None | Some("1.2") => false,
        Some("1.3") => true,
        Some(other) => {
            errors.add(
                "server.tls.min_version",
                format!("{other:?} is not a TLS version the gateway offers (\"1.2\" or \"1.3\")"),
            );
            false
        }
    };
    if raw.certificates.is_empty() {
        errors.add("server.tls.certificates", "needs at least one certificate");
    }
    let config = TlsConfig {
        listen: raw.listen,
        certificates: raw
            .certificates
            .iter()
            .map(|c| CertificateFiles {
                cert: PathBuf::from(&c.cert),
                key: PathBuf::from(&c.key),
                server_names: c
                    .server_names
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect(),
            })
            .collect(),
        tls13_only,
        client_ca: raw.client_ca.as_ref().map(PathBuf::from),
        http2: raw.http2.unwrap_or(true),
        max_concurrent_streams: raw
            .max_concurrent_streams
            .map_or(DEFAULT_MAX_CONCURRENT_STREAMS, NonZeroU32::get),
        watch_interval: Duration::from_millis(
            raw.watch_interval_ms
                .map_or(DEFAULT_CERTIFICATE_WATCH_MS, NonZeroU64::get),
        ),
    };
    let before = errors.0.len();
    if let Err(problems) = crate::tls::CertificateSet::load(&config, crate::tls::now_unix()) {
        errors.0.extend(problems);
    }
    if let Some(ca) = &config.client_ca {
        if let Err(e) = crate::tls::check_client_ca(ca) {
            errors.add("server.tls.client_ca", e);
        }
    }
    (errors.0.len() == before).then_some(config)
}

/// The host name, else `floopy-gateway`: a replica's name by default.
fn default_gateway_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "floopy-gateway".to_string())
}

fn validate_timeouts(raw: &RawTimeouts) -> Timeouts {
    let ms = |value: Option<std::num::NonZeroU64>, default: u64| {
        Duration::from_millis(value.map_or(default, |v| v.get()))
    };
    Timeouts {
        connect: ms(raw.connect_ms, DEFAULT_CONNECT_TIMEOUT_MS),
        read: ms(raw.read_ms, DEFAULT_READ_TIMEOUT_MS),
        write: ms(raw.write_ms, DEFAULT_WRITE_TIMEOUT_MS),
    }
}

fn validate_pricing(raw: &[RawPrice], errors: &mut Errors) -> Vec<(String, Price)> {
    let mut seen = FxHashSet::default();
    let mut prices = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let path = format!("pricing[{i}]");
        if !seen.insert(p.model.as_str()) {
            errors.add(
                format!("{path}.model"),
                format!("model {:?} is priced twice", p.model),
            );
        }
        let mut micro = |usd: f64, field: &str| {
            usd_to_micro(usd)
                .map_err(|e| errors.add(format!("{path}.{field}"), e.to_string()))
                .ok()
        };
        let input = micro(p.input_per_mtok_usd, "input_per_mtok_usd");
        let output = micro(p.output_per_mtok_usd, "output_per_mtok_usd");
        let cached = match p.cached_input_per_mtok_usd {
            Some(usd) => micro(usd, "cached_input_per_mtok_usd"),
            None => input,
        };
        if let (Some(input), Some(output), Some(cached_input)) = (input, output, cached) {
            prices.push((
                p.model.clone(),
                Price {
                    input,
                    output,
                    cached_input,
                },
            ));
        }
    }
    prices
}

fn validate_control(raw: &RawControl, errors: &mut Errors) -> Option<ControlSource> {
    match raw.source {
        ControlSourceKind::File => {
            for (field, set) in [
                ("url", raw.url.is_some()),
                ("poll_interval_ms", raw.poll_interval_ms.is_some()),
                ("max_staleness_seconds", raw.max_staleness_seconds.is_some()),
                ("cache_file", raw.cache_file.is_some()),
            ] {
                if set {
                    errors.add(format!("control.{field}"), "only for source: postgres");
                }
            }
            Some(ControlSource::File(validate_file_control(raw, errors)))
        }
        ControlSourceKind::Postgres => validate_postgres_control(raw, errors),
    }
}

fn validate_postgres_control(raw: &RawControl, errors: &mut Errors) -> Option<ControlSource> {
    if !raw.orgs.is_empty() {
        errors.add(
            "control.orgs",
            "only for source: file (with postgres the data is in the database)",
        );
    }
    let Some(url) = raw.url.clone() else {
        errors.add("control.url", "required for source: postgres");
        return None;
    };
    let db = match DbConfig::parse(&url) {
        Ok(db) => db,
        Err(e) => {
            errors.add("control.url", e.to_string());
            return None;
        }
    };
    let poll_ms = raw
        .poll_interval_ms
        .map_or(DEFAULT_POLL_INTERVAL_MS, |n| n.get());
    let staleness = raw
        .max_staleness_seconds
        .map_or(DEFAULT_MAX_STALENESS_SECONDS, |n| n.get());
    Some(ControlSource::Postgres(PostgresSource {
        url,
        db,
        poll_interval: Duration::from_millis(poll_ms),
        max_staleness: Duration::from_secs(staleness),
        cache_file: raw.cache_file.as_ref().map(PathBuf::from),
    }))
}

#[cfg(test)]
mod tests;
