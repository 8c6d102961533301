//! The embedded default sink: JSON Lines appended to a local file (request
//! logs and feedback records, told apart by their first member).
//!
//! - `submit` (request path) appends the record to the write-ahead log
//!   (`wal`, in `<path>.wal/`) and hands it to the log queue (`queue`).
//! - The writer thread writes a batch to the file; a write that fails is
//!   retried once a second with the batch kept (and `/readyz` reports it).
//!   Written records are done in the write-ahead log.
//! - Every `SYNC_INTERVAL` the file and the write-ahead log are synced
//!   (group commit). At start and once a second, what a crashed process
//!   left in the write-ahead log is appended to the file.
//! - At shutdown the file is synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::feedback::Feedback;
use super::queue::{BatchWriter, LogQueue};
use super::spool::SYNC_INTERVAL;
use super::wal::{Pending, Wal};
use super::{LogSink, RequestLog};
use crate::locks::lock;
use crate::metrics::Metrics;

/// How long a failed write waits before it is tried again.
const RETRY_WRITE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the write-ahead log is checked for what a crash left.
const RECOVER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub struct FileSink {
    queue: LogQueue<Pending>,
    wal: Arc<Wal>,
    metrics: Arc<Metrics>,
    /// The last write error, cleared by the next successful write.
    failing: Arc<Mutex<Option<String>>>,
}

/// The write-ahead log of the file sink writing `path`: `<path>.wal/`.
pub fn wal_dir(path: &Path) -> PathBuf {
    let mut dir = path.as_os_str().to_owned();
    dir.push(".wal");
    PathBuf::from(dir)
}

impl FileSink {
    /// Opens (creating directories as needed) `path` for appending and
    /// starts the writer thread.
    pub fn open(path: &Path, capacity: usize, metrics: Arc<Metrics>) -> io::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let wal = Arc::new(Wal::open(&wal_dir(path))?);
        let failing = Arc::new(Mutex::new(None));
        let mut writer = FileWriter {
            failing: failing.clone(),
            path: path.to_path_buf(),
            file,
            buf: Vec::new(),
            metrics: metrics.clone(),
            wal: wal.clone(),
            unsynced: false,
            last_sync: Instant::now(),
            last_recovery: Instant::now(),
        };
        writer.recover();
        let queue = LogQueue::start("floopy-log-writer", capacity, metrics.clone(), writer)?;
        Ok(FileSink {
            queue,
            wal,
            metrics,
            failing,
        })
    }
}

impl LogSink for FileSink {
    fn submit(&self, record: RequestLog) {
        self.queue.submit(self.wal.write(&record, &self.metrics));
    }

    fn submit_feedback(&self, feedback: &Feedback) {
        self.queue.submit(
            self.wal
                .write_with(|json| feedback.write_json(json), &self.metrics),
        );
    }

    fn queue_depth(&self) -> usize {
        self.queue.depth()
    }

    fn health(&self) -> Result<(), String> {
        match lock(&self.failing).as_ref() {
            Some(e) => Err(format!("request log writes are failing: {e}")),
            None => self.wal.health(),
        }
    }

    fn shutdown(&self) {
        self.queue.shutdown();
    }
}

struct FileWriter {
    failing: Arc<Mutex<Option<String>>>,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    metrics: Arc<Metrics>,
    wal: Arc<Wal>,
    /// Written since the last sync.
    unsynced: bool,
    last_sync: Instant,
    last_recovery: Instant,
}

impl BatchWriter<Pending> for FileWriter {
    fn write_batch(&mut self, batch: &mut Vec<Pending>) {
        self.buf.clear();
        for record in batch.iter() {
            self.buf.extend_from_slice(record.json());
            self.buf.push(b'\n');
        }
        self.write_buf(batch.len() as u64);
        for record in batch.drain(..) {
            record.done();
        }
    }

    fn tick(&mut self) {
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync();
        }
        if let Err(e) = self.wal.tick() {
            tracing::error!(error = %e, "cannot sync the request log's write-ahead log");
        }
        if self.last_recovery.elapsed() >= RECOVER_INTERVAL {
            self.recover();
        }
    }

    fn finish(&mut self) {
        if let Err(e) = self.file.sync_all() {
            tracing::error!(path = %self.path.display(), error = %e, "cannot sync the request log at shutdown");
        }
        if let Err(e) = self.wal.close() {
            tracing::error!(error = %e, "cannot close the request log's write-ahead log at shutdown");
        }
    }
}

impl FileWriter {
    /// Group commit: what was written to the file since, to disk.
    fn sync(&mut self) {
        self.last_sync = Instant::now();
        if self.unsynced {
            match self.file.sync_data() {
                Ok(()) => self.unsynced = false,
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot sync the request log")
                }
            }
        }
    }

    /// Appends what crashed processes left in the write-ahead log to the
    /// file, synced before the segments are deleted.
    fn recover(&mut self) {
        self.last_recovery = Instant::now();
        let recovered = match self.wal.recover() {
            Ok(recovered) => recovered,
            Err(e) => {
                tracing::error!(error = %e, "cannot recover the request log's write-ahead log");
                return;
            }
        };
        if !recovered.records.is_empty() {
            self.buf.clear();
            for json in &recovered.records {
                self.buf.extend_from_slice(json);
                self.buf.push(b'\n');
            }
            self.write_buf(recovered.records.len() as u64);
            if let Err(e) = self.file.sync_data() {
                tracing::error!(path = %self.path.display(), error = %e, "cannot sync the request log; the recovered segments are kept");
                return;
            }
            self.metrics
                .log_records_recovered
                .add(recovered.records.len() as u64);
            tracing::warn!(
                records = recovered.records.len(),
                corrupt = recovered.corrupt,
                "request logs left by a stopped process were recovered"
            );
        }
        self.metrics
            .log_spool_corrupt_records
            .add(recovered.corrupt);
        recovered.remove();
    }

    /// Writes `buf` (`count` records), retrying until the disk takes it.
    fn write_buf(&mut self, count: u64) {
        loop {
            match self
                .file
                .write_all(&self.buf)
                .and_then(|()| self.file.flush())
            {
                Ok(()) => {
                    self.metrics.log_records_written.add(count);
                    self.unsynced = true;
                    lock(&self.failing).take();
                    return;
                }
                Err(e) => {
                    self.metrics.log_write_errors.inc();
                    *lock(&self.failing) = Some(e.to_string());
                    tracing::error!(path = %self.path.display(), error = %e, "cannot write request logs; retrying");
                    std::thread::sleep(RETRY_WRITE_AFTER);
                }
            }
        }
    }
}
