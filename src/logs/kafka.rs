//! The Kafka sink: one JSON object per message (SPEC section 4), keyed by
//! project id, through an idempotent, batching, compressing producer, with
//! the disk spool (`spool`) behind it so no record is lost. Feedback
//! records go the same way to their own topic.
//!
//! - `submit` (request path) appends the record to the write-ahead log
//!   (`wal`) and hands it to the log queue (`queue`): never blocks on the
//!   disk, never drops. From then on a crash of the process cannot lose it.
//! - The queue's writer thread (the forwarder) hands records to librdkafka.
//!   A record librdkafka refuses (its queue full) goes to the spool.
//! - Every delivery report is tracked: acknowledged, or spooled when the
//!   broker did not take it within `message_timeout_ms`; either way the
//!   record is then done in the write-ahead log.
//! - At start and once a second, what a crashed process left in the
//!   write-ahead log goes to the spool.
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::ClientContext;

use super::feedback::{is_feedback, Feedback};
use super::queue::{BatchWriter, LogQueue};
use super::spool::{has_segments, spool_stats, Spool};
use super::wal::{Pending, Wal};
use super::{LogSink, RequestLog};
use crate::logs::config::Compression;
use crate::metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    pub brokers: String,
    pub topic: String,
    /// Where feedback records go.
    pub feedback_topic: String,
    pub queue_capacity: usize,
    pub spool_dir: PathBuf,
    pub linger_ms: u64,
    pub compression: Compression,
    pub message_timeout_ms: u64,
    pub idempotence: bool,
}

/// Where a message came from: its delivery report says what to do.
enum Origin {
    Live(Pending),
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
    spool: Spool,
    metrics: Arc<Metrics>,
    /// When the last acknowledgement and the last delivery error came
    /// (milliseconds since the sink started).
    last_ack_ms: AtomicU64,
    last_error_ms: AtomicU64,
    started: Instant,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
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
                    self.shared.spool.append(payload);
                }
            }
        }
        match *origin {
            Origin::Live(pending) => pending.done(),
            Origin::Replay(segment) => segment.done_one(),
        }
    }
}

type KafkaProducer = ThreadedProducer<SinkContext>;

pub struct KafkaSink {
    queue: LogQueue<Pending>,
    wal: Arc<Wal>,
    shared: Arc<Shared>,
    spool_dir: PathBuf,
}

impl KafkaSink {
    /// Creates the producer and starts the forwarder. Fails only on an
    /// invalid producer configuration or an unusable spool directory; an
    /// unreachable broker is not an error (records go to the spool).
    pub fn start(config: &KafkaSinkConfig, metrics: Arc<Metrics>) -> Result<KafkaSink, String> {
        let spool = Spool::open(&config.spool_dir, metrics.clone())
            .map_err(|e| format!("log spool {}: {e}", config.spool_dir.display()))?;
        let shared = Arc::new(Shared {
            spool,
            metrics: metrics.clone(),
            last_ack_ms: AtomicU64::new(0),
            last_error_ms: AtomicU64::new(0),
            started: Instant::now(),
        });
        let wal = Wal::open(&config.spool_dir.join("wal")).map_err(|e| {
            format!(
                "log write-ahead log {}/wal: {e}",
                config.spool_dir.display()
            )
        })?;
        let wal = Arc::new(wal);
        shared.spool.recover(&wal);
        // Made on a thread below the workers' priority: librdkafka's
        // threads and the polling thread inherit it (`priority`). A
        // replacement is made on the forwarder's thread, which has it too.
        let producer = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    crate::priority::lower_current_thread();
                    create_producer(config, &shared)
                })
                .join()
                .unwrap_or_else(|_| Err("the kafka producer's creation panicked".into()))
        })?;
        let forwarder = Forwarder {
            wal: wal.clone(),
            config: config.clone(),
            last_replacement: Instant::now(),
            last_replay: Instant::now(),
            producer,
            topic: config.topic.clone(),
            feedback_topic: config.feedback_topic.clone(),
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
            wal,
            shared,
            spool_dir: config.spool_dir.clone(),
        })
    }
}

impl LogSink for KafkaSink {
    fn submit(&self, record: RequestLog) {
        self.queue
            .submit(self.wal.write(&record, &self.shared.metrics));
    }

    fn submit_feedback(&self, feedback: &Feedback) {
        self.queue.submit(
            self.wal
                .write_with(|json| feedback.write_json(json), &self.shared.metrics),
        );
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
        if self.shared.spool.failing() {
            return Err(format!(
                "the request log spool {} cannot be written",
                self.spool_dir.display()
            ));
        }
        self.wal.health()
    }

    fn spool_stats(&self) -> Option<(u64, Duration)> {
        Some(spool_stats(&self.spool_dir))
    }
}

/// librdkafka allocates with the C library's `malloc` (the gateway's own
/// code uses mimalloc). glibc's defaults hand a thread's freed memory back
/// to the kernel as soon as 128 KiB lie free at the top of its heap, so the
/// producer's threads, which allocate and free a batch's buffers many
/// times a second, page-faulted the same memory back in each time: about
/// 0.1 page faults per request on the broker thread at the pinned peak
/// (`load-tests/compare.sh` prints faults per request). Fixed values keep
/// up to `TRIM_THRESHOLD` of free memory in each heap and serve buffers up
/// to `MMAP_THRESHOLD` from the heap rather than from a fresh mapping each.
/// Setting them also turns off glibc's own adjustment of the two.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_c_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 4 << 20;
    const TRIM_THRESHOLD: libc::c_int = 32 << 20;
    const TOP_PAD: libc::c_int = 4 << 20;
    for (param, value, name) in [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "M_MMAP_THRESHOLD"),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "M_TRIM_THRESHOLD"),
        (libc::M_TOP_PAD, TOP_PAD, "M_TOP_PAD"),
    ] {
        // SAFETY: mallopt takes two integers; glibc serialises it with
        // its own allocator locks.
        if unsafe { libc::mallopt(param, value) } != 1 {
            tracing::warn!(option = name, value, "mallopt refused a value");
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_c_allocator() {}

fn create_producer(
    config: &KafkaSinkConfig,
    shared: &Arc<Shared>,
) -> Result<KafkaProducer, String> {
    tune_c_allocator();
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
    wal: Arc<Wal>,
    config: KafkaSinkConfig,
    last_replacement: Instant,
    last_replay: Instant,
    producer: KafkaProducer,
    topic: String,
    feedback_topic: String,
    shared: Arc<Shared>,
    spool_dir: PathBuf,
    replaying: Option<Arc<ReplaySegment>>,
    buf: Vec<u8>,
}

impl BatchWriter<Pending> for Forwarder {
    fn write_batch(&mut self, batch: &mut Vec<Pending>) {
        for record in batch.drain(..) {
            self.produce(record);
        }
    }

    fn tick(&mut self) {
        // Group commit: what was logged and spooled since the last tick is
        // synced now.
        if let Err(e) = self.wal.tick() {
            tracing::error!(error = %e, "cannot sync the request log's write-ahead log");
        }
        if let Err(e) = self.shared.spool.writer().sync() {
            tracing::error!(error = %e, "cannot sync the log spool");
        }
        if self.last_replay.elapsed() >= REPLAY_INTERVAL {
            self.last_replay = Instant::now();
            self.shared.spool.recover(&self.wal);
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
        if let Err(e) = self.shared.spool.writer().close_segment() {
            tracing::error!(error = %e, "cannot close the log spool segment at shutdown");
        }
        if let Err(e) = self.wal.close() {
            tracing::error!(error = %e, "cannot close the request log's write-ahead log at shutdown");
        }
    }
}

impl Forwarder {
    fn produce(&mut self, record: Pending) {
        // librdkafka copies the payload; the record itself rides along as
        // the message's opaque, to be marked done by its delivery report.
        self.buf.clear();
        self.buf.extend_from_slice(record.json());
        let topic = self.topic_of(&self.buf);
        let message = BaseRecord::with_opaque_to(topic, Box::new(Origin::Live(record)))
            .key(project_key(&self.buf))
            .payload(&self.buf[..]);
        match self.producer.send(message) {
            Ok(()) => self.shared.metrics.log_records_produced.inc(),
            Err((e, message)) => {
                self.note_refusal(&e);
                self.shared.spool.append(&self.buf);
                if let Origin::Live(record) = *message.delivery_opaque {
                    record.done();
                }
            }
        }
    }

    /// A record's topic: feedback has its own.
    fn topic_of(&self, json: &[u8]) -> &str {
        if is_feedback(json) {
            &self.feedback_topic
        } else {
            &self.topic
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
        if !has_segments(&self.spool_dir) {
            return;
        }
        if failing && !(quiet && self.broker_answers()) {
            return;
        }
        let Some(oldest) = self.shared.spool.oldest_closed(&self.spool_dir) else {
            return;
        };
        let Some(read) = self.shared.spool.read(&oldest) else {
            return;
        };
        let segment = Arc::new(ReplaySegment {
            path: oldest.path.clone(),
            // One extra, released below, so an empty segment is deleted too.
            pending: AtomicUsize::new(read.records.len() + 1),
        });
        for json in &read.records {
            let message = BaseRecord::with_opaque_to(
                self.topic_of(json),
                Box::new(Origin::Replay(segment.clone())),
            )
            .key(project_key(json))
            .payload(&json[..]);
            match self.producer.send(message) {
                Ok(()) => self.shared.metrics.log_records_replayed.inc(),
                Err((e, _)) => {
                    self.note_refusal(&e);
                    self.shared.spool.append(json);
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

/// The message key of a record: its `project_id` (a UUID or empty). The
/// record's writer puts the member before any free text, and a `"` inside
/// a string is escaped, so the first match is the member.
fn project_key(json: &[u8]) -> &[u8] {
    const MEMBER: &[u8] = b"\"project_id\":\"";
    memchr::memmem::find(json, MEMBER)
        .map(|at| &json[at + MEMBER.len()..])
        .and_then(|rest| memchr::memchr(b'"', rest).map(|end| &rest[..end]))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogId;

    #[test]
    fn the_key_is_the_records_project() {
        let project = uuid::Uuid::now_v7();
        let mut json = Vec::new();
        RequestLog {
            project_id: LogId(Some(project)),
            model: r#"a "project_id":"x" model"#.into(),
            ..RequestLog::default()
        }
        .write_json(&mut json);
        assert_eq!(
            project_key(&json),
            project.hyphenated().to_string().as_bytes()
        );
        json.clear();
        RequestLog::default().write_json(&mut json);
        assert_eq!(project_key(&json), b"");
        assert_eq!(project_key(b"{}"), b"");
    }

    /// The nice value and name of each of this process's threads.
    fn threads() -> Vec<(u32, String, i32)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // "tid (name) state ppid ..."; nice is the 19th field.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            out.push((
                stat[..open].trim().parse().unwrap_or(0),
                stat[open + 1..close].to_string(),
                fields.get(16).and_then(|n| n.parse().ok()).unwrap_or(0),
            ));
        }
        out
    }

    /// The producer's threads (librdkafka's and the polling one) and the
    /// forwarder run below the workers' priority; the caller's thread does
    /// not change. No broker is needed: nothing is sent.
    #[test]
    fn the_sinks_threads_run_below_the_workers_priority() {
        let dir = tempfile::tempdir().unwrap();
        let before: Vec<u32> = threads().into_iter().map(|t| t.0).collect();
        let workers = crate::priority::current_nice();
        let sink = KafkaSink::start(
            &KafkaSinkConfig {
                brokers: "127.0.0.1:9".into(),
                topic: "t".into(),
                feedback_topic: "f".into(),
                queue_capacity: 16,
                spool_dir: dir.path().to_path_buf(),
                linger_ms: 5,
                compression: Compression::default(),
                message_timeout_ms: 1_000,
                idempotence: true,
            },
            Arc::new(Metrics::default()),
        )
        .unwrap();
        // A new thread names itself once it runs: wait for the names. Other
        // tests of this process may start threads meanwhile: only the
        // sink's are looked at.
        let expected_names = ["rdk:main", "producer pollin", "floopy-kafka-fo"];
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = loop {
            let started: Vec<_> = threads()
                .into_iter()
                .filter(|t| !before.contains(&t.0))
                .filter(|t| {
                    ["rdk:", "floopy-kafka", "producer"]
                        .iter()
                        .any(|p| t.1.starts_with(p))
                })
                .collect();
            let named = expected_names
                .iter()
                .all(|name| started.iter().any(|t| t.1 == *name));
            if named || Instant::now() > deadline {
                break started;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        sink.shutdown();
        let expected = crate::priority::background_nice(workers);
        for name in expected_names {
            assert!(
                started.iter().any(|t| t.1 == name),
                "{name} among {started:?}"
            );
        }
        for (_, name, nice) in &started {
            assert_eq!(*nice, expected, "{name}: {started:?}");
        }
        assert_eq!(crate::priority::current_nice(), workers);
    }
}
