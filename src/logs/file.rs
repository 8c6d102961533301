//! The embedded default sink: JSON Lines appended to a local file.
//!
//! `submit` puts the record on a bounded queue with `try_send`; a dedicated
//! writer thread drains the queue in batches, serialises, writes and flushes.
//! When the queue is full (the disk is slower than the traffic), records go
//! to an overflow list the writer also drains, so the request path neither
//! waits nor drops; `log_queue_overflow_total` counts those moments.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::{LogSink, RequestLog};
use crate::metrics::Metrics;

/// Records written per batch at most, to bound the write buffer.
const BATCH: usize = 1024;

/// Pause after each batch. The writer then is not parked on the queue while
/// records arrive, so handing one over costs the request path no wake-up of
/// another thread; a record waits at most this long to be written.
pub const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// What the writer thread receives.
enum Message {
    Record(Box<RequestLog>),
    /// Write out everything queued, sync, and stop.
    Shutdown,
}

pub struct FileSink {
    tx: mpsc::Sender<Message>,
    /// The last write error, cleared by the next successful write.
    failing: Arc<Mutex<Option<String>>>,
    overflow: Arc<Mutex<Vec<RequestLog>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl FileSink {
    /// Opens (creating directories as needed) `path` for appending and
    /// starts the writer thread.
    pub fn open(path: &Path, capacity: usize, metrics: Arc<Metrics>) -> io::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel(capacity);
        let overflow = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(Mutex::new(None));
        let writer = Writer {
            failing: failing.clone(),
            path: path.to_path_buf(),
            file,
            rx,
            overflow: overflow.clone(),
            metrics: metrics.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("floopy-log-writer".into())
            .spawn(move || writer.run())?;
        Ok(FileSink {
            tx,
            failing,
            overflow,
            writer: Mutex::new(Some(handle)),
            metrics,
        })
    }
}

impl LogSink for FileSink {
    fn submit(&self, record: RequestLog) {
        self.metrics.log_records_submitted.inc();
        match self.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(Message::Record(record)))
            | Err(TrySendError::Closed(Message::Record(record))) => {
                let record = *record;
                self.metrics.log_queue_overflow.inc();
                if let Ok(mut overflow) = self.overflow.lock() {
                    overflow.push(record);
                }
            }
            Err(_) => {}
        }
    }

    fn queue_depth(&self) -> usize {
        let overflow = self.overflow.lock().map_or(0, |o| o.len());
        self.tx.max_capacity() - self.tx.capacity() + overflow
    }

    fn health(&self) -> Result<(), String> {
        match self.failing.lock().ok().and_then(|f| f.clone()) {
            Some(e) => Err(format!("request log writes are failing: {e}")),
            None => Ok(()),
        }
    }

    fn shutdown(&self) {
        // Waits for room: by now the server has stopped serving.
        let _ = self.tx.blocking_send(Message::Shutdown);
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

struct Writer {
    failing: Arc<Mutex<Option<String>>>,
    path: PathBuf,
    file: File,
    rx: mpsc::Receiver<Message>,
    overflow: Arc<Mutex<Vec<RequestLog>>>,
    metrics: Arc<Metrics>,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut buf = Vec::with_capacity(BATCH * 512);
        loop {
            let mut stop = false;
            let mut next = self.rx.blocking_recv();
            while let Some(message) = next {
                match message {
                    Message::Record(record) => batch.push(*record),
                    Message::Shutdown => stop = true,
                }
                // After a shutdown, drain everything that raced it in.
                next = if batch.len() < BATCH || stop {
                    self.rx.try_recv().ok()
                } else {
                    None
                };
            }
            if let Ok(mut overflow) = self.overflow.lock() {
                batch.append(&mut overflow);
            }
            stop |= self.rx.is_closed() && self.rx.is_empty();
            self.write(&mut batch, &mut buf);
            if stop {
                let _ = self.file.sync_all();
                break;
            }
            std::thread::sleep(BATCH_PAUSE);
        }
    }

    fn write(&mut self, batch: &mut Vec<RequestLog>, buf: &mut Vec<u8>) {
        buf.clear();
        let mut count = 0;
        for record in batch.drain(..) {
            record.to_json_line(buf);
            count += 1;
        }
        if buf.is_empty() {
            return;
        }
        // A failed write is retried once a second: the records stay in
        // `buf` until the disk takes them.
        loop {
            match self.file.write_all(buf).and_then(|()| self.file.flush()) {
                Ok(()) => {
                    self.metrics.log_records_written.add(count);
                    if let Ok(mut failing) = self.failing.lock() {
                        failing.take();
                    }
                    return;
                }
                Err(e) => {
                    self.metrics.log_write_errors.inc();
                    if let Ok(mut failing) = self.failing.lock() {
                        *failing = Some(e.to_string());
                    }
                    tracing::error!(path = %self.path.display(), error = %e, "cannot write request logs; retrying");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }
}
