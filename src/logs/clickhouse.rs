//! The direct ClickHouse sink (`log_sink.kind: clickhouse`): batched
//! inserts of the records, exactly the JSON objects the Kafka sink would
//! produce, into ClickHouse's `request_logs_direct` and `feedback_direct`
//! Null tables, whose materialized views fill `request_logs` and `feedback`
//! (conf/clickhouse/004_direct.sql). No broker to run; Kafka stays the path
//! for scale.
//!
//! - `submit` (request path) appends the record to the write-ahead log
//!   (`wal`) and hands it to the log queue (`queue`): never blocks, never
//!   drops.
//! - The queue's writer thread inserts each batch (one INSERT per table,
//!   through the `clickhouse` crate). An insert that fails or times out
//!   sends its records to the spool; for `RETRY_AFTER` after a failure,
//!   batches go straight to the spool instead of waiting on a ClickHouse
//!   that is down. Either way the records are then done in the
//!   write-ahead log.
//! - Once a second, while inserts succeed, the oldest spool segment is
//!   inserted and then deleted; what a crashed process left in the
//!   write-ahead log goes to the spool first.
//! - An insert that timed out may still have been applied: its records can
//!   arrive twice. `request_logs` and `feedback` are ReplacingMergeTree
//!   tables and the analytics queries deduplicate (FINAL, or the last score
//!   per request), so a replay never counts twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::feedback::{is_feedback, Feedback};
use super::queue::{BatchWriter, LogQueue};
use super::spool::{has_segments, spool_stats, Spool};
use super::wal::{Pending, Wal};
use super::{LogSink, RequestLog};
use crate::metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseSinkConfig {
    /// `http://host:port` of ClickHouse's HTTP interface.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<floopy_model::Secret>,
    pub queue_capacity: usize,
    pub spool_dir: PathBuf,
}

/// The tables the records are inserted into.
const REQUEST_LOGS_TABLE: &str = "request_logs_direct";
const FEEDBACK_TABLE: &str = "feedback_direct";

/// How long an insert may take, sending and then waiting for the answer.
const INSERT_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed insert, how long batches go straight to the spool.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the spool is considered for replay.
const REPLAY_INTERVAL: Duration = Duration::from_secs(1);
/// Records per insert when a spool segment is replayed.
const REPLAY_BATCH: usize = 50_000;

pub struct ClickHouseSink {
    queue: LogQueue<Pending>,
    wal: Arc<Wal>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    spool_dir: PathBuf,
}

impl ClickHouseSink {
    /// Starts the writer. Fails only on an unusable spool directory; an
    /// unreachable ClickHouse is not an error (records go to the spool).
    pub fn start(
        config: &ClickHouseSinkConfig,
        metrics: Arc<Metrics>,
    ) -> Result<ClickHouseSink, String> {
        let spool = Spool::open(&config.spool_dir, metrics.clone())
            .map_err(|e| format!("log spool {}: {e}", config.spool_dir.display()))?;
        let spool = Arc::new(spool);
        let wal = Wal::open(&config.spool_dir.join("wal")).map_err(|e| {
            format!(
                "log write-ahead log {}/wal: {e}",
                config.spool_dir.display()
            )
        })?;
        let wal = Arc::new(wal);
        spool.recover(&wal);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the ClickHouse client's runtime: {e}"))?;
        let mut client = clickhouse::Client::default()
            .with_url(&config.url)
            .with_database(&config.database);
        if let Some(user) = &config.user {
            client = client.with_user(user);
        }
        if let Some(password) = &config.password {
            client = client.with_password(password.expose());
        }
        let writer = Inserter {
            runtime,
            client,
            wal: wal.clone(),
            spool: spool.clone(),
            metrics: metrics.clone(),
            spool_dir: config.spool_dir.clone(),
            last_failure: None,
            last_replay: Instant::now(),
        };
        let queue = LogQueue::start(
            "floopy-clickhouse-writer",
            config.queue_capacity,
            metrics.clone(),
            writer,
        )
        .map_err(|e| format!("cannot start the ClickHouse writer: {e}"))?;
        Ok(ClickHouseSink {
            queue,
            wal,
            spool,
            metrics,
            spool_dir: config.spool_dir.clone(),
        })
    }
}

impl LogSink for ClickHouseSink {
    fn submit(&self, record: RequestLog) {
        self.queue.submit(self.wal.write(&record, &self.metrics));
    }

    fn submit_feedback(&self, feedback: &Feedback) {
        self.queue.submit(
            self.wal
                .write_with(|json| feedback.write_json(json), &self.metrics),
        );
    }

    fn shutdown(&self) {
        self.queue.shutdown();
    }

    fn queue_depth(&self) -> usize {
        self.queue.depth()
    }

    fn health(&self) -> Result<(), String> {
        // ClickHouse being down is not a reason to stop serving: records
        // wait in the spool. Only a spool that cannot be written puts
        // records at risk.
        if self.spool.failing() {
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

/// The sink's `BatchWriter`: inserts, spools what cannot be inserted, and
/// between batches syncs and replays the spool.
struct Inserter {
    runtime: tokio::runtime::Runtime,
    client: clickhouse::Client,
    wal: Arc<Wal>,
    spool: Arc<Spool>,
    metrics: Arc<Metrics>,
    spool_dir: PathBuf,
    last_failure: Option<Instant>,
    last_replay: Instant,
}

impl Inserter {
    /// Whether inserts are worth trying: none failed within `RETRY_AFTER`.
    fn healthy(&self) -> bool {
        self.last_failure
            .is_none_or(|failed| failed.elapsed() >= RETRY_AFTER)
    }

    /// One INSERT of `rows` (JSON objects, one per line) into `table`.
    fn insert(&mut self, table: &str, rows: Vec<u8>) -> Result<(), clickhouse::error::Error> {
        // The insert arms its timers when made: inside the runtime.
        let runtime = self.runtime.enter();
        let mut insert = self
            .client
            .insert_formatted_with(format!("INSERT INTO {table} FORMAT JSONEachRow"))
            .with_timeouts(Some(INSERT_TIMEOUT), Some(INSERT_TIMEOUT));
        drop(runtime);
        let result = self.runtime.block_on(async move {
            insert.send(Bytes::from(rows)).await?;
            insert.end().await
        });
        match &result {
            Ok(()) => self.last_failure = None,
            Err(e) => {
                self.last_failure = Some(Instant::now());
                self.metrics.log_delivery_errors.inc();
                tracing::warn!(table, error = %e, "insert into ClickHouse failed; the records are spooled");
            }
        }
        result
    }

    /// Inserts `lines` (each a record) split by table; what fails is
    /// spooled. Returns whether every insert succeeded.
    fn insert_lines<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]> + Clone) -> bool {
        // The batch as JSONEachRow, a body per table.
        let (mut requests, mut feedback) = (Vec::new(), Vec::new());
        for json in lines.clone() {
            let rows = if is_feedback(json) {
                &mut feedback
            } else {
                &mut requests
            };
            rows.extend_from_slice(json);
            rows.push(b'\n');
        }
        let mut all = true;
        for (table, rows, is_feedback_table) in [
            (REQUEST_LOGS_TABLE, requests, false),
            (FEEDBACK_TABLE, feedback, true),
        ] {
            if rows.is_empty() {
                continue;
            }
            let count = rows.iter().filter(|b| **b == b'\n').count() as u64;
            let inserted = self.healthy() && self.insert(table, rows).is_ok();
            if inserted {
                self.metrics.log_records_acked.add(count);
            } else {
                all = false;
                for json in lines
                    .clone()
                    .filter(|j| is_feedback(j) == is_feedback_table)
                {
                    self.spool.append(json);
                }
            }
        }
        all
    }

    /// Inserts the oldest closed spool segment, and deletes it once each of
    /// its records is in ClickHouse or spooled again.
    fn replay_step(&mut self) {
        if !self.healthy() || !has_segments(&self.spool_dir) {
            return;
        }
        let Some(segment) = self.spool.oldest_closed(&self.spool_dir) else {
            return;
        };
        let Some(read) = self.spool.read(&segment) else {
            return;
        };
        for chunk in read.records.chunks(REPLAY_BATCH) {
            // A failed chunk is spooled again (a new segment): the segment
            // is done either way.
            if self.insert_lines(chunk.iter().map(|r| &r[..])) {
                self.metrics.log_records_replayed.add(chunk.len() as u64);
            }
        }
        if let Err(e) = self.spool.writer().sync() {
            tracing::error!(error = %e, "cannot sync the log spool; the replayed segment is kept");
            return;
        }
        if let Err(e) = std::fs::remove_file(&segment.path) {
            tracing::error!(path = %segment.path.display(), error = %e, "cannot delete a replayed spool segment");
        }
    }
}

impl BatchWriter<Pending> for Inserter {
    fn write_batch(&mut self, batch: &mut Vec<Pending>) {
        self.metrics.log_records_produced.add(batch.len() as u64);
        self.insert_lines(batch.iter().map(|p| p.json()));
        for record in batch.drain(..) {
            record.done();
        }
    }

    fn tick(&mut self) {
        if let Err(e) = self.wal.tick() {
            tracing::error!(error = %e, "cannot sync the request log's write-ahead log");
        }
        if let Err(e) = self.spool.writer().sync() {
            tracing::error!(error = %e, "cannot sync the log spool");
        }
        if self.last_replay.elapsed() >= REPLAY_INTERVAL {
            self.last_replay = Instant::now();
            self.spool.recover(&self.wal);
            self.replay_step();
        }
    }

    fn finish(&mut self) {
        if let Err(e) = self.spool.writer().close_segment() {
            tracing::error!(error = %e, "cannot close the log spool segment at shutdown");
        }
        if let Err(e) = self.wal.close() {
            tracing::error!(error = %e, "cannot close the request log's write-ahead log at shutdown");
        }
    }
}
