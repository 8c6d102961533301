//! The Kafka sink: one JSON object per message (SPEC section 4), keyed by
//! project id, through an idempotent, batching, compressing producer, with
//! the disk spool (`spool`) behind it so no record is lost.
//!
//! - `submit` (request path) hands the record to the log queue (`queue`):
//!   never blocks, never drops.
//! - The queue's writer thread (the forwarder) serialises records and hands
//!   them to librdkafka. A record librdkafka refuses (its queue full) goes
//!   to the spool.
//! - Every delivery report is tracked: acknowledged, or spooled when the
//!   broker did not take it within `message_timeout_ms`.
//! - Once a second, when spooled segments exist and the broker answers, the
//!   oldest segment is replayed; it is deleted only after every record in it
//!   is acknowledged (or spooled again, durably, if the broker fails again).
//! - Shutdown flushes the producer; what it cannot deliver in time is purged
//!   into the spool, which the next start replays.
//!
//! Order: records of one project keep their order while the broker is up.
//! Across an outage, spooled records are replayed after the live ones that
//! followed them were delivered; consumers deduplicate and order by
//! `request_id` and `ts_ms`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::ClientContext;

use super::queue::{BatchWriter, LogQueue};
use super::spool::{list_segments, read_segment, spool_stats, SpoolWriter};
use super::{LogSink, RequestLog};
use crate::config::raw::Compression;
use crate::locks::lock;
use crate::metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    pub brokers: String,
    pub topic: String,
    pub queue_capacity: usize,
    pub spool_dir: PathBuf,
    pub linger_ms: u64,
    pub compression: Compression,
    pub message_timeout_ms: u64,
    pub idempotence: bool,
}

/// Where a message came from: its delivery report says what to do.
enum Origin {
    Live,
    Replay(Arc<ReplaySegment>),
}

/// A spool segment being replayed: deleted when its last record is done.
struct ReplaySegment {
    path: PathBuf,
    pending: AtomicUsize,
}

impl ReplaySegment {
    fn done_one(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::error!(path = %self.path.display(), error = %e, "cannot delete a replayed spool segment");
            }
        }
    }
}

struct Shared {
    spool: Mutex<SpoolWriter>,
    metrics: Arc<Metrics>,
    /// When the last acknowledgement and the last delivery error came
    /// (milliseconds since the sink started).
    last_ack_ms: AtomicU64,
    last_error_ms: AtomicU64,
    started: Instant,
    /// The spool cannot be written (a disk problem): the one state in which
    /// records are at risk.
    spool_failing: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Shared {
    /// Appends a record to the spool; on a disk error it is logged, counted
    /// and retried until the disk takes it (losing it is not an option).
    fn spool(&self, json: &[u8]) {
        let mut spool = lock(&self.spool);
        loop {
            match spool.append(json) {
                Ok(()) => {
                    self.metrics.log_records_spooled.inc();
                    self.spool_failing.store(false, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.metrics.log_write_errors.inc();
                    self.spool_failing.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "cannot append to the log spool; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
}

struct SinkContext {
    shared: Arc<Shared>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(facility = fac, "kafka: {log_message}")
            }
            Warning => tracing::warn!(facility = fac, "kafka: {log_message}"),
            _ => tracing::debug!(facility = fac, "kafka: {log_message}"),
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        match result {
            Ok(_) => {
                self.shared.metrics.log_records_acked.inc();
                self.shared
                    .last_ack_ms
                    .store(self.shared.now_ms(), Ordering::Relaxed);
            }
            Err((e, message)) => {
                self.shared.metrics.log_delivery_errors.inc();
                self.shared
                    .last_error_ms
                    .store(self.shared.now_ms(), Ordering::Relaxed);
                tracing::debug!(error = %e, "request log not delivered; spooling it");
                if let Some(payload) = message.payload() {
                    self.shared.spool(payload);
                }
            }
        }
        if let Origin::Replay(segment) = *origin {
            segment.done_one();
        }
    }
}

type KafkaProducer = ThreadedProducer<SinkContext>;

pub struct KafkaSink {
    queue: LogQueue,
    shared: Arc<Shared>,
    spool_dir: PathBuf,
}

impl KafkaSink {
    /// Creates the producer and starts the forwarder. Fails only on an
    /// invalid producer configuration or an unusable spool directory; an
    /// unreachable broker is not an error (records go to the spool).
    pub fn start(config: &KafkaSinkConfig, metrics: Arc<Metrics>) -> Result<KafkaSink, String> {
        let spool = SpoolWriter::open(&config.spool_dir)
            .map_err(|e| format!("log spool {}: {e}", config.spool_dir.display()))?;
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            metrics: metrics.clone(),
            last_ack_ms: AtomicU64::new(0),
            last_error_ms: AtomicU64::new(0),
            started: Instant::now(),
            spool_failing: std::sync::atomic::AtomicBool::new(false),
        });
        let producer = create_producer(config, &shared)?;
        let forwarder = Forwarder {
            config: config.clone(),
            last_replacement: Instant::now(),
            last_replay: Instant::now(),
            producer,
            topic: config.topic.clone(),
            shared: shared.clone(),
            spool_dir: config.spool_dir.clone(),
            replaying: None,
            buf: Vec::with_capacity(1024),
        };
        let queue = LogQueue::start(
            "floopy-kafka-forwarder",
            config.queue_capacity,
            metrics,
            forwarder,
        )
        .map_err(|e| format!("cannot start the kafka forwarder: {e}"))?;
        Ok(KafkaSink {
            queue,
            shared,
            spool_dir: config.spool_dir.clone(),
        })
    }
}

impl LogSink for KafkaSink {
    fn submit(&self, record: RequestLog) {
        self.queue.submit(record);
    }

    fn shutdown(&self) {
        self.queue.shutdown();
    }

    fn queue_depth(&self) -> usize {
        self.queue.depth()
    }

    fn health(&self) -> Result<(), String> {
        // A broker outage is not a reason to stop serving: records wait in
        // the spool (floopy_log_spool_bytes and _age_seconds show it). Only
        // a spool that cannot be written puts records at risk.
        if self.shared.spool_failing.load(Ordering::Relaxed) {
            return Err(format!(
                "the request log spool {} cannot be written",
                self.spool_dir.display()
            ));
        }
        Ok(())
    }

    fn spool_stats(&self) -> Option<(u64, Duration)> {
        Some(spool_stats(&self.spool_dir))
    }
}

fn create_producer(
    config: &KafkaSinkConfig,
    shared: &Arc<Shared>,
) -> Result<KafkaProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", config.idempotence.to_string())
        .set("acks", "all")
        .set("linger.ms", config.linger_ms.to_string())
        .set("compression.type", config.compression.as_str())
        .set("message.timeout.ms", config.message_timeout_ms.to_string())
        .set("queue.buffering.max.messages", "200000")
        .set("client.id", "floopy-gateway")
        .create_with_context(SinkContext {
            shared: shared.clone(),
        })
        .map_err(|e| format!("kafka producer: {e}"))
}

/// A producer whose last acknowledgement is older than this, with delivery
/// errors since, is replaced (at most every `REPLACE_INTERVAL`): an
/// idempotent producer whose messages timed out can stay unable to deliver
/// after the broker is back (its producer id needs a bump some brokers
/// refuse); a new one starts clean. Its records go to the spool first.
const STUCK_AFTER_MS: u64 = 5_000;
const REPLACE_INTERVAL: Duration = Duration::from_secs(10);

/// How often the oldest spool segment is considered for replay.
const REPLAY_INTERVAL: Duration = Duration::from_secs(1);

/// The Kafka sink's `BatchWriter`: produces, spools what the producer
/// refuses, and between batches syncs the spool and replays it.
struct Forwarder {
    config: KafkaSinkConfig,
    last_replacement: Instant,
    last_replay: Instant,
    producer: KafkaProducer,
    topic: String,
    shared: Arc<Shared>,
    spool_dir: PathBuf,
    replaying: Option<Arc<ReplaySegment>>,
    buf: Vec<u8>,
}

impl BatchWriter for Forwarder {
    fn write_batch(&mut self, batch: &mut Vec<RequestLog>) {
        for record in batch.drain(..) {
            self.produce(&record);
        }
    }

    fn tick(&mut self) {
        // Group commit: what was spooled since the last tick is synced now.
        if let Err(e) = lock(&self.shared.spool).sync() {
            tracing::error!(error = %e, "cannot sync the log spool");
        }
        if self.last_replay.elapsed() >= REPLAY_INTERVAL {
            self.last_replay = Instant::now();
            self.replay_step();
        }
    }

    /// Shutdown: deliver what can be delivered within a few seconds, spool
    /// the rest.
    fn finish(&mut self) {
        if self.producer.flush(Duration::from_secs(5)).is_err() {
            tracing::warn!(
                in_flight = self.producer.in_flight_count(),
                "the broker did not take every request log before shutdown; spooling the rest"
            );
            self.purge_to_spool();
        }
        if let Err(e) = lock(&self.shared.spool).close_segment() {
            tracing::error!(error = %e, "cannot close the log spool segment at shutdown");
        }
    }
}

impl Forwarder {
    fn produce(&mut self, record: &RequestLog) {
        self.buf.clear();
        record.write_json(&mut self.buf);
        let mut key_buf = uuid::Uuid::encode_buffer();
        let key: &str = match record.project_id.0 {
            Some(id) => id.hyphenated().encode_lower(&mut key_buf),
            None => "",
        };
        let message = BaseRecord::with_opaque_to(&self.topic, Box::new(Origin::Live))
            .key(key)
            .payload(&self.buf[..]);
        match self.producer.send(message) {
            Ok(()) => self.shared.metrics.log_records_produced.inc(),
            Err((e, _)) => {
                self.note_refusal(&e);
                let json = self.buf.clone();
                self.shared.spool(&json);
            }
        }
    }

    fn note_refusal(&self, e: &KafkaError) {
        self.shared.metrics.log_delivery_errors.inc();
        self.shared
            .last_error_ms
            .store(self.shared.now_ms(), Ordering::Relaxed);
        tracing::debug!(error = %e, "producer refused a request log; spooling it");
    }

    /// Replays the oldest closed segment when the previous replay is done
    /// and the broker looks healthy.
    fn replay_step(&mut self) {
        let now = self.shared.now_ms();
        let last_ack = self.shared.last_ack_ms.load(Ordering::Relaxed);
        let last_error = self.shared.last_error_ms.load(Ordering::Relaxed);
        let failing = last_error > last_ack;
        if failing
            && now.saturating_sub(last_ack) > STUCK_AFTER_MS
            && self.last_replacement.elapsed() >= REPLACE_INTERVAL
        {
            self.replace_producer();
            return;
        }
        // Replay while deliveries succeed, or, after failures, once the
        // broker answers and no error came for a full message timeout.
        let quiet = now.saturating_sub(last_error) > self.config.message_timeout_ms;
        if let Some(segment) = &self.replaying {
            if segment.pending.load(Ordering::Acquire) > 0 {
                return;
            }
            self.replaying = None;
        }
        let Ok(segments) = list_segments(&self.spool_dir) else {
            return;
        };
        if segments.is_empty() {
            return;
        }
        if failing && !(quiet && self.broker_answers()) {
            return;
        }
        let current = lock(&self.shared.spool).current_seq();
        let oldest = match segments.iter().find(|s| Some(s.seq) != current) {
            Some(segment) => segment.clone(),
            None => {
                // Only the segment being written: close it so it can be
                // replayed at the next step.
                if let Err(e) = lock(&self.shared.spool).close_segment() {
                    tracing::error!(error = %e, "cannot close the log spool segment");
                }
                return;
            }
        };
        let read = match read_segment(&oldest.path) {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(path = %oldest.path.display(), error = %e, "cannot read a spool segment");
                return;
            }
        };
        if read.corrupt > 0 {
            self.shared
                .metrics
                .log_spool_corrupt_records
                .add(read.corrupt);
            tracing::error!(
                path = %oldest.path.display(),
                skipped = read.corrupt,
                "corrupt records in a spool segment were skipped"
            );
        }
        let segment = Arc::new(ReplaySegment {
            path: oldest.path.clone(),
            // One extra, released below, so an empty segment is deleted too.
            pending: AtomicUsize::new(read.records.len() + 1),
        });
        for json in &read.records {
            let key = project_key(json);
            let message =
                BaseRecord::with_opaque_to(&self.topic, Box::new(Origin::Replay(segment.clone())))
                    .key(&key[..])
                    .payload(&json[..]);
            match self.producer.send(message) {
                Ok(()) => self.shared.metrics.log_records_replayed.inc(),
                Err((e, _)) => {
                    self.note_refusal(&e);
                    self.shared.spool(json);
                    segment.done_one();
                }
            }
        }
        segment.done_one();
        self.replaying = Some(segment);
    }

    /// Moves everything the current producer holds to the spool and starts
    /// a new producer.
    fn replace_producer(&mut self) {
        let replacement = match create_producer(&self.config, &self.shared) {
            Ok(producer) => producer,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a new kafka producer");
                return;
            }
        };
        tracing::warn!(
            in_flight = self.producer.in_flight_count(),
            "the broker answers but takes no request logs: replacing the producer (its records are spooled)"
        );
        self.purge_to_spool();
        self.producer = replacement;
        self.last_replacement = Instant::now();
        self.shared.metrics.log_producer_replacements.inc();
    }

    /// Drops what the producer still holds; each dropped record's failed
    /// delivery report spools it.
    fn purge_to_spool(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let _ = self.producer.flush(Duration::from_secs(2));
    }

    fn broker_answers(&self) -> bool {
        self.producer
            .client()
            .fetch_metadata(Some(&self.topic), Duration::from_secs(1))
            .is_ok()
    }
}

/// The message key of a spooled record: its `project_id`.
fn project_key(json: &[u8]) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(borrow)]
        project_id: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Key>(json)
        .ok()
        .and_then(|k| k.project_id)
        .map(|p| p.as_bytes().to_vec())
        .unwrap_or_default()
}
