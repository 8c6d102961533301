//! `log_sink`: which sink writes the request logs, checked into a
//! `LogSinkConfig`. Beside the sinks, so a new sink's settings live next to
//! its code.

use std::path::PathBuf;

use crate::config::raw::{
    LogSinkKind, RawLogSink, DEFAULT_FEEDBACK_TOPIC, DEFAULT_KAFKA_TOPIC, DEFAULT_LINGER_MS,
    DEFAULT_LOG_QUEUE_CAPACITY, DEFAULT_MESSAGE_TIMEOUT_MS, DEFAULT_SPOOL_DIR,
};
use crate::config::Errors;
use crate::logs::clickhouse::ClickHouseSinkConfig;
use crate::logs::kafka::KafkaSinkConfig;

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
