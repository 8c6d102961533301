//! `log_sink`: which sink writes the request logs, as the file has it
//! (`RawLogSink`, every default a named constant) and checked into a
//! `LogSinkConfig`. Beside the sinks, so a new sink's settings live next to
//! its code.

use std::path::PathBuf;

use std::num::{NonZeroU64, NonZeroUsize};

use serde::Deserialize;

use crate::config_error::Errors;
use crate::logs::clickhouse::ClickHouseSinkConfig;
use crate::logs::kafka::KafkaSinkConfig;

/// Request log records between the request path and the writer: about a
/// second of traffic at a high request rate (records beyond it wait in the
/// overflow list, never dropped).
pub const DEFAULT_LOG_QUEUE_CAPACITY: usize = 65_536;
/// The Kafka topic of request logs.
pub const DEFAULT_KAFKA_TOPIC: &str = "floopy.request_logs";
/// `log_sink.feedback_topic`.
pub const DEFAULT_FEEDBACK_TOPIC: &str = "floopy.feedback";
/// Where records the broker did not take wait.
pub const DEFAULT_SPOOL_DIR: &str = "var/spool";
/// Kafka batching delay: 20 ms fills batches at a few hundred requests a
/// second while adding nothing a client sees (logging is off the request
/// path).
pub const DEFAULT_LINGER_MS: u64 = 20;
/// How long the producer retries a record before it is spooled.
pub const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 10_000;

/// `log_sink.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSinkKind {
    /// JSON Lines appended to `log_sink.path`.
    File,
    /// Kafka at `log_sink.brokers`, with the disk spool behind it.
    Kafka,
    /// Batched inserts into ClickHouse at `log_sink.url`, with the disk
    /// spool behind them.
    #[serde(rename = "clickhouse")]
    ClickHouse,
}

/// `log_sink.compression`: the producer's codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    /// Fast to compress at the request rates a gateway sees, and what the
    /// broker and ClickHouse decode cheaply.
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    /// The name librdkafka's `compression.codec` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogSink {
    pub kind: LogSinkKind,
    /// file: the JSON Lines file.
    pub path: Option<String>,
    /// Records held in memory between the request path and the writer.
    pub queue_capacity: Option<NonZeroUsize>,
    /// kafka: `host:port[,host:port...]`.
    pub brokers: Option<String>,
    pub topic: Option<String>,
    /// kafka: the feedback records' topic.
    pub feedback_topic: Option<String>,
    /// kafka and clickhouse: where records wait while they cannot be
    /// delivered.
    pub spool_dir: Option<String>,
    /// clickhouse: `http://host:port`.
    pub url: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<floopy_model::Secret>,
    pub linger_ms: Option<u64>,
    pub compression: Option<Compression>,
    pub message_timeout_ms: Option<NonZeroU64>,
    /// kafka: idempotent producer (default true).
    pub idempotence: Option<bool>,
}

/// Where request logs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSinkConfig {
    /// JSON Lines appended to a local file.
    File {
        path: PathBuf,
        queue_capacity: usize,
    },
    /// Kafka, with the disk spool behind it.
    Kafka(KafkaSinkConfig),
    /// ClickHouse directly, with the disk spool behind it.
    ClickHouse(ClickHouseSinkConfig),
}

/// `log_sink` of the file, checked; errors go to `errors` with their path.
pub(crate) fn validate_log_sink(raw: &RawLogSink, errors: &mut Errors) -> LogSinkConfig {
    let queue_capacity = raw
        .queue_capacity
        .map_or(DEFAULT_LOG_QUEUE_CAPACITY, |n| n.get());
    // Each field belongs to the kinds listed; set on another, it is an
    // error naming the kinds it is for.
    use LogSinkKind::{ClickHouse, File, Kafka};
    let fields: [(&str, bool, &[LogSinkKind], &str); 13] = [
        ("path", raw.path.is_some(), &[File], "file"),
        ("brokers", raw.brokers.is_some(), &[Kafka], "kafka"),
        ("topic", raw.topic.is_some(), &[Kafka], "kafka"),
        (
            "feedback_topic",
            raw.feedback_topic.is_some(),
            &[Kafka],
            "kafka",
        ),
        ("linger_ms", raw.linger_ms.is_some(), &[Kafka], "kafka"),
        ("compression", raw.compression.is_some(), &[Kafka], "kafka"),
        (
            "message_timeout_ms",
            raw.message_timeout_ms.is_some(),
            &[Kafka],
            "kafka",
        ),
        ("idempotence", raw.idempotence.is_some(), &[Kafka], "kafka"),
        (
            "spool_dir",
            raw.spool_dir.is_some(),
            &[Kafka, ClickHouse],
            "kafka and clickhouse",
        ),
        ("url", raw.url.is_some(), &[ClickHouse], "clickhouse"),
        (
            "database",
            raw.database.is_some(),
            &[ClickHouse],
            "clickhouse",
        ),
        ("user", raw.user.is_some(), &[ClickHouse], "clickhouse"),
        (
            "password",
            raw.password.is_some(),
            &[ClickHouse],
            "clickhouse",
        ),
    ];
    for (field, set, kinds, names) in fields {
        if set && !kinds.contains(&raw.kind) {
            errors.add(
                format!("log_sink.{field}"),
                format!("only for kind: {names}"),
            );
        }
    }
    let spool_dir = PathBuf::from(raw.spool_dir.as_deref().unwrap_or(DEFAULT_SPOOL_DIR));
    match raw.kind {
        File => {}
        Kafka => return validate_kafka_sink(raw, queue_capacity, spool_dir, errors),
        ClickHouse => {
            return LogSinkConfig::ClickHouse(validate_clickhouse_sink(
                raw,
                queue_capacity,
                spool_dir,
                errors,
            ))
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
    spool_dir: PathBuf,
    errors: &mut Errors,
) -> LogSinkConfig {
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
        .unwrap_or_else(|| DEFAULT_KAFKA_TOPIC.to_string());
    if !topic_ok(&topic) {
        errors.add(
            "log_sink.topic",
            format!("{topic:?} is not a Kafka topic name"),
        );
    }
    let feedback_topic = raw
        .feedback_topic
        .clone()
        .unwrap_or_else(|| DEFAULT_FEEDBACK_TOPIC.to_string());
    if !topic_ok(&feedback_topic) {
        errors.add(
            "log_sink.feedback_topic",
            format!("{feedback_topic:?} is not a Kafka topic name"),
        );
    } else if feedback_topic == topic {
        errors.add(
            "log_sink.feedback_topic",
            "must differ from log_sink.topic (ClickHouse reads each into its own table)",
        );
    }
    let compression = raw.compression.unwrap_or_default();
    let message_timeout_ms = raw
        .message_timeout_ms
        .map_or(DEFAULT_MESSAGE_TIMEOUT_MS, |n| n.get());
    LogSinkConfig::Kafka(KafkaSinkConfig {
        brokers,
        topic,
        feedback_topic,
        queue_capacity,
        spool_dir,
        linger_ms: raw.linger_ms.unwrap_or(DEFAULT_LINGER_MS),
        compression,
        message_timeout_ms,
        idempotence: raw.idempotence.unwrap_or(true),
    })
}

fn topic_ok(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 249
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn validate_clickhouse_sink(
    raw: &RawLogSink,
    queue_capacity: usize,
    spool_dir: PathBuf,
    errors: &mut Errors,
) -> ClickHouseSinkConfig {
    let url = match &raw.url {
        Some(u) if u.starts_with("http://") && u.len() > "http://".len() => {
            u.trim_end_matches('/').to_string()
        }
        Some(u) => {
            errors.add(
                "log_sink.url",
                format!("{u:?} is not http://host:port (ClickHouse's HTTP interface)"),
            );
            String::new()
        }
        None => {
            errors.add("log_sink.url", "required for kind: clickhouse");
            String::new()
        }
    };
    let database = raw.database.clone().unwrap_or_else(|| "default".into());
    if database.is_empty()
        || !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        errors.add(
            "log_sink.database",
            format!("{database:?} is not a database name (letters, digits, _)"),
        );
    }
    ClickHouseSinkConfig {
        url,
        database,
        user: raw.user.clone(),
        password: raw.password.clone(),
        queue_capacity,
        spool_dir,
    }
}
