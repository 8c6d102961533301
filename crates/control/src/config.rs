//! The control plane's YAML configuration, read like the gateway's: unknown
//! fields are errors, every error names its path, every invalid value of a
//! file is reported at once, `--check-config` validates a file without
//! starting. Every default is a named constant.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::Path;
use std::time::Duration;

use floopy_control_db::DbConfig;
use floopy_model::Secret;
use serde::Deserialize;

/// Connections to the control database: the API's queries are short, so a
/// few serve many concurrent requests.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// A dashboard session lasts a working day.
pub const DEFAULT_SESSION_TTL_HOURS: u64 = 12;
/// Failed logins of one account within the window before it is throttled:
/// enough for typos, far too few to guess a password.
pub const DEFAULT_MAX_FAILURES_PER_ACCOUNT: u32 = 5;
/// Failed logins from one client address within the window (it may be an
/// office behind one address, so more than per account).
pub const DEFAULT_MAX_FAILURES_PER_CLIENT: u32 = 20;
/// The throttling window.
pub const DEFAULT_THROTTLE_WINDOW_SECONDS: u64 = 900;
/// How often budgets are evaluated (SPEC: at least once a second).
pub const DEFAULT_BUDGET_EVALUATION_MS: u64 = 1_000;
/// How long one webhook delivery may take before it counts as failed.
pub const DEFAULT_DELIVERY_TIMEOUT_MS: u64 = 10_000;
/// The first retry's delay; each next one doubles, up to the maximum.
pub const DEFAULT_RETRY_BASE_MS: u64 = 1_000;
/// The longest delay between two attempts.
pub const DEFAULT_RETRY_MAX_MS: u64 = 3_600_000;
/// How long an alert is retried before it is marked failed (SPEC: at least
/// 24 h).
pub const DEFAULT_RETRY_FOR_SECONDS: u64 = 86_400;
/// How often the outbox is polled for alerts due.
pub const DEFAULT_POLL_MS: u64 = 250;
/// Seconds the server lets requests in flight finish on SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    database: RawDatabase,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    login_throttle: RawThrottle,
    shutdown_grace_seconds: Option<u64>,
    #[serde(default)]
    budgets: RawBudgets,
    #[serde(default)]
    alerts: RawAlerts,
    clickhouse: Option<RawClickHouse>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClickHouse {
    url: String,
    database: Option<String>,
    user: Option<String>,
    password: Option<Secret>,
    query_timeout_ms: Option<NonZeroU64>,
    rollup_interval_ms: Option<NonZeroU64>,
    #[serde(default)]
    prices: Vec<RawPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    model: String,
    input_per_mtok_usd: f64,
    cached_input_per_mtok_usd: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    delivery_timeout_ms: Option<NonZeroU64>,
    retry_base_ms: Option<NonZeroU64>,
    retry_max_ms: Option<NonZeroU64>,
    retry_for_seconds: Option<NonZeroU64>,
    poll_ms: Option<NonZeroU64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    evaluate_every_ms: Option<NonZeroU64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    pool_size: Option<NonZeroUsize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    ttl_hours: Option<NonZeroU64>,
    /// Send the cookie only over HTTPS (default true; false for a local
    /// plain-HTTP set-up).
    secure_cookie: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    max_failures_per_account: Option<NonZeroU32>,
    max_failures_per_client: Option<NonZeroU32>,
    window_seconds: Option<NonZeroU64>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub db: DbConfig,
    pub pool_size: usize,
    pub session_ttl: Duration,
    pub secure_cookie: bool,
    pub throttle: Throttle,
    pub shutdown_grace: Duration,
    /// How often the budget evaluator runs.
    pub budget_evaluation: Duration,
    pub delivery: Delivery,
    /// Where the analytics are read from and control-plane feedback is
    /// written; `None`: the analytics API answers 503.
    pub clickhouse: Option<ClickHouseConfig>,
}

/// How long one analytics query may run by default.
pub const DEFAULT_QUERY_TIMEOUT_MS: u64 = 10_000;
/// How often the hourly rollup is brought up to date.
pub const DEFAULT_ROLLUP_INTERVAL_MS: u64 = 2_000;

/// The analytics store.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// `http://host:port` of ClickHouse's HTTP interface.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub query_timeout: Duration,
    /// How often the hourly rollup is brought up to date (by one replica).
    pub rollup_interval: Duration,
    /// Input and cached-input prices per model, in micro-USD per million
    /// tokens, for the cache page's savings (the gateway's `pricing`).
    pub prices: Vec<ModelPrice>,
}

/// A model's prompt prices, in micro-USD per million tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub model: String,
    pub input: u64,
    pub cached_input: u64,
}

/// How alerts are delivered to their webhooks.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub timeout: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// An alert not delivered this long after it fired is marked failed.
    pub retry_for: Duration,
    pub poll: Duration,
}

/// Failed-login limits within a sliding window.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub max_failures_per_account: u32,
    pub max_failures_per_client: u32,
    pub window: Duration,
}

/// Reads and validates a configuration file; `Err` is every error, one per
/// line, each with its path.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: cannot read the configuration file: {e}",
            path.display()
        )
    })?;
    parse(&text)
}

/// Parses and validates configuration text. A file serde cannot read
/// stops at its first shape error (serde's); past that, every invalid
/// value is reported, one line each.
pub fn parse(text: &str) -> Result<Config, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = without_location_prefix(&path, e.into_inner().to_string());
        format!("{path}: {message}")
    })?;
    let mut errors = Vec::new();
    let db = DbConfig::parse(&raw.database.url)
        .map_err(|e| errors.push(format!("database.url: {e}")))
        .ok();
    let clickhouse = raw
        .clickhouse
        .and_then(|raw| clickhouse_config(raw, &mut errors));
    let Some(db) = db.filter(|_| errors.is_empty()) else {
        return Err(errors.join("\n"));
    };
    Ok(Config {
        clickhouse,
        listen: raw.listen,
        db,
        pool_size: raw
            .database
            .pool_size
            .map_or(DEFAULT_POOL_SIZE, NonZeroUsize::get),
        session_ttl: Duration::from_secs(
            3600 * raw
                .sessions
                .ttl_hours
                .map_or(DEFAULT_SESSION_TTL_HOURS, NonZeroU64::get),
        ),
        secure_cookie: raw.sessions.secure_cookie.unwrap_or(true),
        throttle: Throttle {
            max_failures_per_account: raw
                .login_throttle
                .max_failures_per_account
                .map_or(DEFAULT_MAX_FAILURES_PER_ACCOUNT, NonZeroU32::get),
            max_failures_per_client: raw
                .login_throttle
                .max_failures_per_client
                .map_or(DEFAULT_MAX_FAILURES_PER_CLIENT, NonZeroU32::get),
            window: Duration::from_secs(
                raw.login_throttle
                    .window_seconds
                    .map_or(DEFAULT_THROTTLE_WINDOW_SECONDS, NonZeroU64::get),
            ),
        },
        shutdown_grace: Duration::from_secs(
            raw.shutdown_grace_seconds
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS),
        ),
        budget_evaluation: Duration::from_millis(
            raw.budgets
                .evaluate_every_ms
                .map_or(DEFAULT_BUDGET_EVALUATION_MS, NonZeroU64::get),
        ),
        delivery: Delivery {
            timeout: millis(raw.alerts.delivery_timeout_ms, DEFAULT_DELIVERY_TIMEOUT_MS),
            retry_base: millis(raw.alerts.retry_base_ms, DEFAULT_RETRY_BASE_MS),
            retry_max: millis(raw.alerts.retry_max_ms, DEFAULT_RETRY_MAX_MS),
            retry_for: Duration::from_secs(
                raw.alerts
                    .retry_for_seconds
                    .map_or(DEFAULT_RETRY_FOR_SECONDS, NonZeroU64::get),
            ),
            poll: millis(raw.alerts.poll_ms, DEFAULT_POLL_MS),
        },
    })
}

/// The `clickhouse` section; each invalid value is pushed to `errors`.
fn clickhouse_config(raw: RawClickHouse, errors: &mut Vec<String>) -> Option<ClickHouseConfig> {
    let before = errors.len();
    if !raw.url.starts_with("http://") || raw.url.len() <= "http://".len() {
        errors.push(format!(
            "clickhouse.url: {:?} is not http://host:port (ClickHouse's HTTP interface)",
            raw.url
        ));
    }
    let database = raw.database.unwrap_or_else(|| "default".into());
    if database.is_empty()
        || !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        errors.push(format!(
            "clickhouse.database: {database:?} is not a database name (letters, digits, _)"
        ));
    }
    let mut prices = Vec::new();
    for (i, p) in raw.prices.into_iter().enumerate() {
        let mut per_mtok = |field: &str, usd: f64| {
            floopy_model::usd_to_micro(usd)
                .map_err(|e| errors.push(format!("clickhouse.prices[{i}].{field}: {e}")))
                .unwrap_or(0)
        };
        let input = per_mtok("input_per_mtok_usd", p.input_per_mtok_usd);
        let cached_input = match p.cached_input_per_mtok_usd {
            Some(usd) => per_mtok("cached_input_per_mtok_usd", usd),
            None => input,
        };
        prices.push(ModelPrice {
            model: p.model,
            input,
            cached_input,
        });
    }
    if errors.len() > before {
        return None;
    }
    Some(ClickHouseConfig {
        url: raw.url.trim_end_matches('/').to_string(),
        database,
        user: raw.user,
        password: raw.password,
        query_timeout: millis(raw.query_timeout_ms, DEFAULT_QUERY_TIMEOUT_MS),
        rollup_interval: millis(raw.rollup_interval_ms, DEFAULT_ROLLUP_INTERVAL_MS),
        prices,
    })
}

fn millis(value: Option<NonZeroU64>, default: u64) -> Duration {
    Duration::from_millis(value.map_or(default, NonZeroU64::get))
}

/// serde_yaml starts some messages with the place they are about
/// (`database: unknown field ...`), which the path already names.
fn without_location_prefix(path: &str, message: String) -> String {
    match message.split_once(": ") {
        Some((place, rest)) if path.starts_with(place) => rest.to_string(),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "listen: \"127.0.0.1:8081\"\ndatabase:\n  url: \"postgres://u@h/d\"\n";

    #[test]
    fn defaults_are_the_named_constants() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.pool_size, DEFAULT_POOL_SIZE);
        assert!(config.secure_cookie, "cookies are Secure unless told");
        assert_eq!(config.throttle.max_failures_per_account, 5);
    }

    #[test]
    fn the_shipped_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf/control/control.yaml");
        if let Err(e) = load(&path) {
            panic!("{}: {e}", path.display());
        }
    }

    #[test]
    fn errors_name_their_path() {
        let bad = MINIMAL.replace("database:", "database:\n  pool_sise: 3");
        let e = parse(&bad).unwrap_err();
        assert!(
            e.starts_with("database.pool_sise: unknown field `pool_sise`"),
            "{e}"
        );
        let bad = MINIMAL.replace("postgres://u@h/d", "postgres://u@h/d?sslmode=sometimes");
        let e = parse(&bad).unwrap_err();
        assert!(e.starts_with("database.url: sslmode"), "{e}");
        let bad = format!("{MINIMAL}login_throttle: {{max_failures_per_account: 0}}\n");
        let e = parse(&bad).unwrap_err();
        assert!(
            e.starts_with("login_throttle.max_failures_per_account: invalid value"),
            "{e}"
        );
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let bad = format!(
            "{}clickhouse:\n  url: \"ch:8123\"\n  database: \"a-b\"\n  prices:\n    - {{model: m, input_per_mtok_usd: -1}}\n    - {{model: n, input_per_mtok_usd: 1, cached_input_per_mtok_usd: -2}}\n",
            MINIMAL.replace("postgres://u@h/d", "postgres://u@h/d?sslmode=sometimes")
        );
        let e = parse(&bad).unwrap_err();
        let paths: Vec<&str> = e.lines().filter_map(|l| l.split(": ").next()).collect();
        assert_eq!(
            paths,
            [
                "database.url",
                "clickhouse.url",
                "clickhouse.database",
                "clickhouse.prices[0].input_per_mtok_usd",
                "clickhouse.prices[1].cached_input_per_mtok_usd",
            ],
            "{e}"
        );
    }
}
