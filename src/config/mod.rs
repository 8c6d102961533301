//! Configuration: the YAML file (`raw`) -> a validated, typed `Config`.
//!
//! Every error names the path of the field it is about
//! (`providers[1].base_url: ...`), and validation reports all errors at once.
//! Reading a credential from the environment or a file and resolving a
//! provider's host happen here, so a configuration that loads is one that can
//! serve. Nothing here touches the running gateway: `reload` swaps.

pub mod raw;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use uuid::Uuid;

use floopy_control_db::DbConfig;
use floopy_model::validate::{
    is_valid_color, is_valid_slug, parse_hyphenated_uuid, slug_error, DESCRIPTION_CHARS,
    ICON_CHARS, NAME_CHARS, PROJECT_NAME_CHARS,
};
use floopy_model::{
    hash_key, is_valid_key_string, usd_to_micro, ApiKey, ControlData, Environment,
    EnvironmentLimits, KeyHash, Org, Plan, Project, DEFAULT_PROJECT_ID,
};

use crate::logs::kafka::KafkaSinkConfig;
use crate::pricing::Price;
use crate::upstream::{credential_header, Endpoint, ProviderKind, Secret, Timeouts};
use raw::*;

/// SPEC section 3: the default request body limit.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default log queue: about a second of traffic at a high request rate.
pub const DEFAULT_LOG_QUEUE_CAPACITY: usize = 65_536;
/// Output tokens assumed for a request without `max_tokens`: a long answer,
/// so that reservations err on the side of the cap.
pub const DEFAULT_COMPLETION_TOKENS: u64 = 4_096;
/// Where month-to-date spend is kept by default (file control source).
pub const DEFAULT_STATE_FILE: &str = "var/spend-state.json";

/// One validation error: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every error found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub max_body_bytes: u64,
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
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    pub gateway_id: String,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSinkConfig {
    /// JSON Lines appended to a local file.
    File {
        path: PathBuf,
        queue_capacity: usize,
    },
    /// Kafka, with the disk spool behind it.
    Kafka(KafkaSinkConfig),
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
        ConfigErrors(vec![ConfigError {
            path: if path == "." { "(root)".into() } else { path },
            message: e.into_inner().to_string(),
        }])
    })?;
    validate(raw, resolve)
}

/// Collects errors with their paths while validating.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn validate(raw: RawConfig, resolve: Resolve) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::default();
    let server = validate_server(&raw.server, &mut errors);
    let max_body_bytes = match raw.limits.max_body_bytes {
        Some(0) => {
            errors.add("limits.max_body_bytes", "must be greater than 0");
            DEFAULT_MAX_BODY_BYTES
        }
        Some(n) => n,
        None => DEFAULT_MAX_BODY_BYTES,
    };
    let default_completion_tokens = match raw.limits.default_completion_tokens {
        Some(0) => {
            errors.add("limits.default_completion_tokens", "must be greater than 0");
            DEFAULT_COMPLETION_TOKENS
        }
        Some(n) => n,
        None => DEFAULT_COMPLETION_TOKENS,
    };
    let state_file = match &raw.limits.state_file {
        Some(p) if p.is_empty() => {
            errors.add("limits.state_file", "must not be empty");
            PathBuf::new()
        }
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(DEFAULT_STATE_FILE),
    };
    let exchange_interval = match raw.limits.exchange_interval_ms {
        Some(0) => {
            errors.add("limits.exchange_interval_ms", "must be greater than 0");
            Duration::from_secs(1)
        }
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(1),
    };
    let timeouts = validate_timeouts(&raw.timeouts, &mut errors);
    let providers = validate_providers(&raw.providers, resolve, &mut errors);
    let prices = validate_pricing(&raw.pricing, &mut errors);
    let control = validate_control(&raw.control, &mut errors);
    let log_sink = validate_log_sink(&raw.log_sink, &mut errors);

    match (server, control) {
        (Some(server), Some(control)) if errors.0.is_empty() => Ok(Config {
            server,
            max_body_bytes,
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

fn parse_socket_addr(value: &str, path: &str, errors: &mut Errors) -> Option<SocketAddr> {
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.add(
                path,
                format!("{value:?} is not an address like 127.0.0.1:8080"),
            );
            None
        }
    }
}

fn validate_server(raw: &RawServer, errors: &mut Errors) -> Option<ServerSettings> {
    let listen = parse_socket_addr(&raw.listen, "server.listen", errors);
    let admin_listen = parse_socket_addr(&raw.admin_listen, "server.admin_listen", errors);
    let gateway_id = match &raw.gateway_id {
        Some(id) if id.is_empty() => {
            errors.add("server.gateway_id", "must not be empty");
            String::new()
        }
        Some(id) => id.clone(),
        None => default_gateway_id(),
    };
    Some(ServerSettings {
        listen: listen?,
        admin_listen: admin_listen?,
        threads: if raw.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            raw.threads
        },
        gateway_id,
        grace_period_seconds: raw.grace_period_seconds,
        graceful_shutdown_timeout_seconds: raw.graceful_shutdown_timeout_seconds,
        pid_file: raw.pid_file.clone(),
        upgrade_sock: raw.upgrade_sock.clone(),
    })
}

fn default_gateway_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "floopy-gateway".to_string())
}

fn validate_timeouts(raw: &RawTimeouts, errors: &mut Errors) -> Timeouts {
    let mut ms = |value: Option<u64>, name: &str, default: u64| match value {
        Some(0) => {
            errors.add(format!("timeouts.{name}"), "must be greater than 0");
            Duration::from_millis(default)
        }
        Some(v) => Duration::from_millis(v),
        None => Duration::from_millis(default),
    };
    Timeouts {
        connect: ms(raw.connect_ms, "connect_ms", 5_000),
        // Ten minutes: a long non-streamed completion sends nothing until done.
        read: ms(raw.read_ms, "read_ms", 600_000),
        write: ms(raw.write_ms, "write_ms", 60_000),
    }
}

fn validate_providers(
    raw: &[RawProvider],
    resolve: Resolve,
    errors: &mut Errors,
) -> Vec<ProviderConfig> {
    let mut providers = Vec::new();
    let mut names = FxHashSet::default();
    let mut models: FxHashMap<&str, usize> = FxHashMap::default();
    for (i, p) in raw.iter().enumerate() {
        let path = format!("providers[{i}]");
        if p.name.is_empty() {
            errors.add(format!("{path}.name"), "must not be empty");
        } else if !names.insert(p.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("provider {:?} is declared twice", p.name),
            );
        }
        let kind = ProviderKind::parse(&p.kind);
        if kind.is_none() {
            errors.add(
                format!("{path}.kind"),
                format!("{:?} is not one of openai, anthropic", p.kind),
            );
        }
        let endpoint = parse_base_url(&p.base_url, &format!("{path}.base_url"), resolve, errors);
        let credential = p
            .credential
            .as_ref()
            .and_then(|c| read_credential(c, &format!("{path}.credential"), errors));
        if p.models.is_empty() {
            errors.add(format!("{path}.models"), "must list at least one model");
        }
        for (j, model) in p.models.iter().enumerate() {
            if model.is_empty() {
                errors.add(format!("{path}.models[{j}]"), "must not be empty");
            } else if let Some(other) = models.insert(model, i) {
                errors.add(
                    format!("{path}.models[{j}]"),
                    format!("model {model:?} is already served by providers[{other}]"),
                );
            }
        }
        let ca = p
            .ca_file
            .as_ref()
            .and_then(|file| read_ca_file(file, &format!("{path}.ca_file"), errors));
        let Some(kind) = kind else { continue };
        let credential_header = credential.and_then(|secret| {
            credential_header(kind, &secret)
                .map_err(|_| {
                    errors.add(
                        format!("{path}.credential"),
                        "the credential cannot be sent in an HTTP header (only visible ASCII, spaces and tabs)",
                    )
                })
                .ok()
        });
        if let Some(mut endpoint) = endpoint {
            endpoint.ca = ca;
            providers.push(ProviderConfig {
                name: p.name.clone(),
                kind,
                endpoint,
                credential_header,
                models: p.models.clone(),
            });
        }
    }
    providers
}

/// `http[s]://host[:port][/prefix]` -> a resolved `Endpoint`.
fn parse_base_url(
    value: &str,
    path: &str,
    resolve: Resolve,
    errors: &mut Errors,
) -> Option<Endpoint> {
    let uri: http::Uri = match value.parse() {
        Ok(uri) => uri,
        Err(e) => {
            errors.add(path, format!("{value:?} is not a URL: {e}"));
            return None;
        }
    };
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            errors.add(
                path,
                format!("{value:?} must start with http:// or https://"),
            );
            return None;
        }
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        errors.add(path, format!("{value:?} has no host"));
        return None;
    };
    if uri.query().is_some() {
        errors.add(path, format!("{value:?} must not have a query string"));
        return None;
    }
    let default_port = if tls { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let resolved = match resolve {
        Resolve::Skip => Ok(vec![SocketAddr::from(([0, 0, 0, 0], port))].into_iter()),
        Resolve::Hosts => (host.as_str(), port).to_socket_addrs(),
    };
    let address = match resolved {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            errors.add(path, format!("cannot resolve host {host:?}: {e}"));
            return None;
        }
    };
    let Some(address) = address else {
        errors.add(path, format!("host {host:?} resolves to no address"));
        return None;
    };
    // The Host header keeps an IPv6 address in its brackets (RFC 9110,
    // section 7.2: the authority's form).
    let host_in_authority = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let authority = if port == default_port {
        host_in_authority
    } else {
        format!("{host_in_authority}:{port}")
    };
    let Ok(host_header) = http::HeaderValue::from_str(&authority) else {
        errors.add(
            path,
            format!("{authority:?} cannot be sent as a Host header"),
        );
        return None;
    };
    Some(Endpoint {
        address,
        tls,
        ca: None,
        host,
        host_header,
        path_prefix: uri.path().trim_end_matches('/').to_string(),
    })
}

fn read_ca_file(
    file: &str,
    path: &str,
    errors: &mut Errors,
) -> Option<Arc<pingora::protocols::tls::CaType>> {
    let pem = match std::fs::read(file) {
        Ok(pem) => pem,
        Err(e) => {
            errors.add(path, format!("cannot read {file}: {e}"));
            return None;
        }
    };
    match pingora::tls::x509::X509::stack_from_pem(&pem) {
        Ok(certs) if !certs.is_empty() => Some(Arc::new(certs.into_boxed_slice())),
        Ok(_) => {
            errors.add(path, format!("{file} holds no PEM certificate"));
            None
        }
        Err(e) => {
            errors.add(path, format!("{file} is not PEM certificates: {e}"));
            None
        }
    }
}

fn read_credential(raw: &RawCredential, path: &str, errors: &mut Errors) -> Option<Secret> {
    let value = match (&raw.env, &raw.file) {
        (Some(var), None) => match std::env::var(var) {
            Ok(v) => v,
            Err(_) => {
                errors.add(
                    format!("{path}.env"),
                    format!("environment variable {var} is not set"),
                );
                return None;
            }
        },
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(v) => v,
            Err(e) => {
                errors.add(format!("{path}.file"), format!("cannot read {file}: {e}"));
                return None;
            }
        },
        _ => {
            errors.add(path, "give exactly one of env, file");
            return None;
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        errors.add(path, "the credential is empty");
        return None;
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        errors.add(path, "the credential contains control characters");
        return None;
    }
    Some(Secret::new(value))
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

fn validate_log_sink(raw: &RawLogSink, errors: &mut Errors) -> LogSinkConfig {
    let queue_capacity = match raw.queue_capacity {
        Some(0) => {
            errors.add("log_sink.queue_capacity", "must be greater than 0");
            DEFAULT_LOG_QUEUE_CAPACITY
        }
        Some(n) => n,
        None => DEFAULT_LOG_QUEUE_CAPACITY,
    };
    match raw.kind.as_str() {
        "file" => {
            for (field, set) in [
                ("brokers", raw.brokers.is_some()),
                ("topic", raw.topic.is_some()),
                ("spool_dir", raw.spool_dir.is_some()),
                ("linger_ms", raw.linger_ms.is_some()),
                ("compression", raw.compression.is_some()),
                ("message_timeout_ms", raw.message_timeout_ms.is_some()),
                ("idempotence", raw.idempotence.is_some()),
            ] {
                if set {
                    errors.add(format!("log_sink.{field}"), "only for kind: kafka");
                }
            }
        }
        "kafka" => return validate_kafka_sink(raw, queue_capacity, errors),
        other => {
            errors.add(
                "log_sink.kind",
                format!("{other:?} is not one of: file, kafka"),
            );
        }
    }
    let path = match &raw.path {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            errors.add("log_sink.path", "required for the file sink");
            PathBuf::new()
        }
    };
    LogSinkConfig::File {
        path,
        queue_capacity,
    }
}

fn validate_kafka_sink(
    raw: &RawLogSink,
    queue_capacity: usize,
    errors: &mut Errors,
) -> LogSinkConfig {
    if raw.path.is_some() {
        errors.add(
            "log_sink.path",
            "only for kind: file (kafka spools to spool_dir)",
        );
    }
    let brokers = match &raw.brokers {
        Some(b) if !b.trim().is_empty() && b.split(',').all(|h| h.trim().contains(':')) => {
            b.clone()
        }
        Some(b) => {
            errors.add(
                "log_sink.brokers",
                format!("{b:?} is not host:port[,host:port...]"),
            );
            String::new()
        }
        None => {
            errors.add("log_sink.brokers", "required for kind: kafka");
            String::new()
        }
    };
    let topic = raw
        .topic
        .clone()
        .unwrap_or_else(|| "floopy.request_logs".to_string());
    let topic_ok = !topic.is_empty()
        && topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !topic_ok {
        errors.add(
            "log_sink.topic",
            format!("{topic:?} is not a Kafka topic name"),
        );
    }
    let compression = raw.compression.clone().unwrap_or_else(|| "lz4".to_string());
    if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str()) {
        errors.add(
            "log_sink.compression",
            format!("{compression:?} is not one of none, gzip, snappy, lz4, zstd"),
        );
    }
    let message_timeout_ms = raw.message_timeout_ms.unwrap_or(10_000);
    if message_timeout_ms == 0 {
        errors.add("log_sink.message_timeout_ms", "must be greater than 0");
    }
    LogSinkConfig::Kafka(KafkaSinkConfig {
        brokers,
        topic,
        queue_capacity,
        spool_dir: PathBuf::from(raw.spool_dir.as_deref().unwrap_or("var/spool")),
        linger_ms: raw.linger_ms.unwrap_or(20),
        compression,
        message_timeout_ms,
        idempotence: raw.idempotence.unwrap_or(true),
    })
}

fn validate_control(raw: &RawControl, errors: &mut Errors) -> Option<ControlSource> {
    match raw.source.as_str() {
        "file" => {
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
            validate_file_control(raw, errors)
        }
        "postgres" => validate_postgres_control(raw, errors),
        other => {
            errors.add(
                "control.source",
                format!("{other:?} is not one of: file, postgres"),
            );
            None
        }
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
    let poll_ms = raw.poll_interval_ms.unwrap_or(1_000);
    if poll_ms == 0 {
        errors.add("control.poll_interval_ms", "must be greater than 0");
    }
    let staleness = raw.max_staleness_seconds.unwrap_or(30);
    if staleness == 0 {
        errors.add("control.max_staleness_seconds", "must be greater than 0");
    }
    Some(ControlSource::Postgres(PostgresSource {
        url,
        db,
        poll_interval: Duration::from_millis(poll_ms.max(1)),
        max_staleness: Duration::from_secs(staleness.max(1)),
        cache_file: raw.cache_file.as_ref().map(PathBuf::from),
    }))
}

fn validate_file_control(raw: &RawControl, errors: &mut Errors) -> Option<ControlSource> {
    let mut data = ControlData::default();
    let mut org_ids = FxHashSet::default();
    let mut key_ids = FxHashSet::default();
    let mut key_hashes: FxHashSet<KeyHash> = FxHashSet::default();
    for (i, org) in raw.orgs.iter().enumerate() {
        let path = format!("control.orgs[{i}]");
        let Some(org_id) = parse_uuid(&org.id, &format!("{path}.id"), errors) else {
            continue;
        };
        if org_id.is_nil() {
            errors.add(format!("{path}.id"), "an org id cannot be the zero UUID");
        }
        if !org_ids.insert(org_id) {
            errors.add(
                format!("{path}.id"),
                format!("org {org_id} is declared twice"),
            );
        }
        check_length(&org.name, NAME_CHARS, &format!("{path}.name"), errors);
        let Some(plan) = Plan::parse(&org.plan) else {
            errors.add(
                format!("{path}.plan"),
                format!(
                    "{:?} is not one of free, starter, pro, enterprise",
                    org.plan
                ),
            );
            continue;
        };
        data.orgs.push(Org {
            id: org_id,
            name: org.name.clone(),
            plan,
        });
        let projects = validate_projects(org_id, plan, &org.projects, &path, errors);
        let active: FxHashSet<Uuid> = projects.iter().map(|p| p.id).collect();
        for (j, key) in org.api_keys.iter().enumerate() {
            let key_path = format!("{path}.api_keys[{j}]");
            if let Some(key) = validate_key(org_id, &active, key, &key_path, errors) {
                if !key_ids.insert(key.id) {
                    errors.add(
                        format!("{key_path}.id"),
                        format!("key {} is declared twice", key.id),
                    );
                }
                if !key_hashes.insert(key.hash) {
                    errors.add(key_path, "another key has the same secret");
                }
                data.api_keys.push(Arc::new(key));
            }
        }
        let mut envs = FxHashSet::default();
        for (j, limits) in org.environment_limits.iter().enumerate() {
            let lpath = format!("{path}.environment_limits[{j}]");
            let Some(environment) = Environment::parse(&limits.environment) else {
                errors.add(
                    format!("{lpath}.environment"),
                    format!(
                        "{:?} is not one of development, staging, production, other",
                        limits.environment
                    ),
                );
                continue;
            };
            if !envs.insert(environment) {
                errors.add(
                    format!("{lpath}.environment"),
                    format!("limits for {environment} are declared twice"),
                );
            }
            if limits.rpm == Some(0) {
                errors.add(format!("{lpath}.rpm"), "must be greater than 0");
            }
            let monthly_cost_micro_usd = match limits.monthly_cost_usd.map(usd_to_micro) {
                None => None,
                Some(Ok(micro)) => Some(micro),
                Some(Err(e)) => {
                    errors.add(format!("{lpath}.monthly_cost_usd"), e.to_string());
                    None
                }
            };
            data.environment_limits.push(EnvironmentLimits {
                org_id,
                environment,
                rpm: limits.rpm,
                monthly_cost_micro_usd,
            });
        }
        data.projects.extend(projects);
    }
    Some(ControlSource::File(data))
}

fn parse_uuid(value: &str, path: &str, errors: &mut Errors) -> Option<Uuid> {
    let id = parse_hyphenated_uuid(value);
    if id.is_none() {
        errors.add(path, format!("{value:?} is not a hyphenated UUID"));
    }
    id
}

fn check_length(value: &str, bounds: (usize, usize), path: &str, errors: &mut Errors) {
    if let Err(message) = floopy_model::validate::check_length(value, bounds) {
        errors.add(path, message);
    }
}

fn validate_projects(
    org_id: Uuid,
    plan: Plan,
    raw: &[RawProject],
    org_path: &str,
    errors: &mut Errors,
) -> Vec<Project> {
    let mut projects = Vec::new();
    let mut slugs = FxHashSet::default();
    for (j, p) in raw.iter().enumerate() {
        let path = format!("{org_path}.projects[{j}]");
        let Some(id) = parse_uuid(&p.id, &format!("{path}.id"), errors) else {
            continue;
        };
        check_length(&p.name, PROJECT_NAME_CHARS, &format!("{path}.name"), errors);
        if !is_valid_slug(&p.slug) {
            errors.add(format!("{path}.slug"), slug_error(&p.slug));
        } else if !slugs.insert(p.slug.as_str()) {
            errors.add(
                format!("{path}.slug"),
                format!("slug {:?} is already used in this org", p.slug),
            );
        }
        if let Some(description) = &p.description {
            check_length(
                description,
                DESCRIPTION_CHARS,
                &format!("{path}.description"),
                errors,
            );
        }
        if let Some(color) = &p.color {
            if !is_valid_color(color) {
                errors.add(format!("{path}.color"), format!("{color:?} is not #rrggbb"));
            }
        }
        if let Some(icon) = &p.icon {
            check_length(icon, ICON_CHARS, &format!("{path}.icon"), errors);
        }
        if projects.iter().any(|q: &Project| q.id == id) {
            errors.add(
                format!("{path}.id"),
                format!("project {id} is declared twice"),
            );
        }
        if id == DEFAULT_PROJECT_ID && p.archived {
            errors.add(
                format!("{path}.archived"),
                "the Default project cannot be archived",
            );
        }
        projects.push(Project {
            org_id,
            id,
            name: p.name.clone(),
            slug: p.slug.clone(),
            archived: p.archived,
        });
    }
    if !projects.iter().any(|p| p.id == DEFAULT_PROJECT_ID) {
        projects.insert(
            0,
            Project {
                org_id,
                id: DEFAULT_PROJECT_ID,
                name: "Default".into(),
                slug: "default".into(),
                archived: false,
            },
        );
    }
    if let Some(max) = plan.max_projects() {
        if projects.len() > max {
            errors.add(
                format!("{org_path}.projects"),
                format!(
                    "{} projects (Default included) exceed the plan's quota of {max}",
                    projects.len()
                ),
            );
        }
    }
    projects
}

fn validate_key(
    org_id: Uuid,
    projects: &FxHashSet<Uuid>,
    raw: &RawApiKey,
    path: &str,
    errors: &mut Errors,
) -> Option<ApiKey> {
    let id = parse_uuid(&raw.id, &format!("{path}.id"), errors);
    let environment = match &raw.environment {
        None => None,
        Some(env) => {
            let parsed = Environment::parse(env);
            if parsed.is_none() {
                errors.add(
                    format!("{path}.environment"),
                    format!("{env:?} is not one of development, staging, production, other"),
                );
            }
            parsed
        }
    };
    let mut project_ref = |value: &Option<String>, field: &str| -> Option<Uuid> {
        let value = value.as_ref()?;
        let id = parse_uuid(value, &format!("{path}.{field}"), errors)?;
        if !projects.contains(&id) {
            errors.add(
                format!("{path}.{field}"),
                format!("project {id} is not a project of this org"),
            );
        }
        Some(id)
    };
    let project_id = project_ref(&raw.project_id, "project_id");
    let default_project_id = project_ref(&raw.default_project_id, "default_project_id");
    let hash = match (&raw.secret_sha256, &raw.secret) {
        (Some(hex_hash), None) => {
            let mut hash = [0u8; 32];
            match hex::decode_to_slice(hex_hash, &mut hash) {
                Ok(()) => Some(hash),
                Err(_) => {
                    errors.add(
                        format!("{path}.secret_sha256"),
                        "must be 64 hexadecimal characters",
                    );
                    None
                }
            }
        }
        (None, Some(secret)) => {
            if is_valid_key_string(secret) {
                Some(hash_key(secret.as_bytes()))
            } else {
                errors.add(
                    format!("{path}.secret"),
                    "must look like fpk_ followed by at least 32 letters or digits",
                );
                None
            }
        }
        _ => {
            errors.add(path, "give exactly one of secret_sha256, secret");
            None
        }
    };
    check_length(&raw.name, NAME_CHARS, &format!("{path}.name"), errors);
    Some(ApiKey {
        id: id?,
        org_id,
        name: raw.name.clone(),
        hash: hash?,
        environment,
        project_id,
        default_project_id,
        revoked: raw.revoked,
    })
}

#[cfg(test)]
mod tests;
