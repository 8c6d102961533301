//! The embedded default sink: JSON Lines appended to a local file, through
//! the log queue (`queue`). The writer serialises a batch, writes and
//! flushes it; a write that fails is retried once a second with the batch
//! kept in memory (and `/readyz` reports it), so nothing accepted is lost.
//! At shutdown the file is synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::queue::{BatchWriter, LogQueue};
use super::{LogSink, RequestLog};
use crate::locks::lock;
use crate::metrics::Metrics;

/// How long a failed write waits before it is tried again.
const RETRY_WRITE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

pub struct FileSink {
    queue: LogQueue,
    /// The last write error, cleared by the next successful write.
    failing: Arc<Mutex<Option<String>>>,
}

impl FileSink {
    /// Opens (creating directories as needed) `path` for appending and
    /// starts the writer thread.
    pub fn open(path: &Path, capacity: usize, metrics: Arc<Metrics>) -> io::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let failing = Arc::new(Mutex::new(None));
        let writer = FileWriter {
            failing: failing.clone(),
            path: path.to_path_buf(),
            file,
            buf: Vec::new(),
            metrics: metrics.clone(),
        };
        let queue = LogQueue::start("floopy-log-writer", capacity, metrics, writer)?;
        Ok(FileSink { queue, failing })
    }
}

impl LogSink for FileSink {
    fn submit(&self, record: RequestLog) {
        self.queue.submit(record);
    }

    fn queue_depth(&self) -> usize {
        self.queue.depth()
    }

    fn health(&self) -> Result<(), String> {
        match lock(&self.failing).as_ref() {
            Some(e) => Err(format!("request log writes are failing: {e}")),
            None => Ok(()),
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
}

impl BatchWriter for FileWriter {
    fn write_batch(&mut self, batch: &mut Vec<RequestLog>) {
        self.buf.clear();
        let count = batch.len() as u64;
        for record in batch.drain(..) {
            record.to_json_line(&mut self.buf);
        }
        // The records stay in `buf` until the disk takes them.
        loop {
            match self
                .file
                .write_all(&self.buf)
                .and_then(|()| self.file.flush())
            {
                Ok(()) => {
                    self.metrics.log_records_written.add(count);
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

    fn finish(&mut self) {
        if let Err(e) = self.file.sync_all() {
            tracing::error!(path = %self.path.display(), error = %e, "cannot sync the request log at shutdown");
        }
    }
}
