//! `log_sink`: which sink writes the request logs, checked into a
//! `LogSinkConfig`. Beside the sinks, so a new sink's settings live next to
//! its code.

use std::path::PathBuf;

use crate::config::raw::{
    LogSinkKind, RawLogSink, DEFAULT_KAFKA_TOPIC, DEFAULT_LINGER_MS, DEFAULT_LOG_QUEUE_CAPACITY,
    DEFAULT_MESSAGE_TIMEOUT_MS, DEFAULT_SPOOL_DIR,
};
use crate::config::Errors;
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
}

/// `log_sink` of the file, checked; errors go to `errors` with their path.
pub(crate) fn validate_log_sink(raw: &RawLogSink, errors: &mut Errors) -> LogSinkConfig {
    let queue_capacity = raw
        .queue_capacity
        .map_or(DEFAULT_LOG_QUEUE_CAPACITY, |n| n.get());
    match raw.kind {
        LogSinkKind::File => {
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
        LogSinkKind::Kafka => return validate_kafka_sink(raw, queue_capacity, errors),
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
        .unwrap_or_else(|| DEFAULT_KAFKA_TOPIC.to_string());
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
    let compression = raw.compression.unwrap_or_default();
    let message_timeout_ms = raw
        .message_timeout_ms
        .map_or(DEFAULT_MESSAGE_TIMEOUT_MS, |n| n.get());
    LogSinkConfig::Kafka(KafkaSinkConfig {
        brokers,
        topic,
        queue_capacity,
        spool_dir: PathBuf::from(raw.spool_dir.as_deref().unwrap_or(DEFAULT_SPOOL_DIR)),
        linger_ms: raw.linger_ms.unwrap_or(DEFAULT_LINGER_MS),
        compression,
        message_timeout_ms,
        idempotence: raw.idempotence.unwrap_or(true),
    })
}
