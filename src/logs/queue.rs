//! The one request log queue every sink uses: between the request path and
//! a sink's writer thread.
//!
//! - `submit` (request path) puts the record on a bounded channel and
//!   returns; when the channel is full (the sink is slower than the traffic
//!   for a moment) the record goes to an overflow list the writer also
//!   drains. It never blocks and never drops (`log_queue_overflow_total`
//!   counts those moments).
//! - The writer thread takes up to `BATCH` records at a time, overflow
//!   included, and hands them to the sink's `BatchWriter`, which owns what
//!   "written" means (a file write, a Kafka produce with the spool behind
//!   it). Between batches it pauses `BATCH_PAUSE` and gives the sink a
//!   `tick` for periodic work.
//! - `shutdown` stops the writer after it has written everything accepted,
//!   then lets the sink make it durable (`finish`).
//!
//! Locks follow the gateway's one policy (`crate::locks`): a poisoned lock
//! is taken anyway, so a record is never skipped because some thread
//! panicked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::locks::lock;
use crate::metrics::Metrics;

/// Records handed to the sink per batch at most, to bound its buffers.
pub const BATCH: usize = 1024;

/// Pause after each batch. The writer then is not parked on the channel
/// while records arrive, so handing one over costs the request path no
/// wake-up of another thread; a record waits at most about this long.
pub const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// Longest wait for a record before the sink gets its `tick` anyway.
pub const IDLE_TICK: Duration = Duration::from_millis(100);

/// What a sink does with the records the queue hands it, on the queue's
/// writer thread.
pub trait BatchWriter<T>: Send + 'static {
    /// Writes `batch` (and leaves it empty). It must not lose a record: a
    /// sink that cannot write retries, or puts the records somewhere durable
    /// (the Kafka sink's spool).
    fn write_batch(&mut self, batch: &mut Vec<T>);

    /// Periodic work between batches (at least every `IDLE_TICK`).
    fn tick(&mut self) {}

    /// After the last batch at shutdown: make everything written durable.
    fn finish(&mut self);
}

enum Message<T> {
    Record(T),
    /// Write out everything queued, finish, and stop.
    Shutdown,
}

/// The queue of records of type `T` (what the sink's request path hands
/// its writer).
pub struct LogQueue<T> {
    tx: SyncSender<Message<T>>,
    /// Records in the channel (a std channel does not say).
    queued: Arc<AtomicUsize>,
    overflow: Arc<Mutex<Vec<T>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl<T: Send + 'static> LogQueue<T> {
    /// Starts the writer thread `thread_name`, handing batches to `writer`,
    /// below the workers' priority (`priority`).
    pub fn start(
        thread_name: &str,
        capacity: usize,
        metrics: Arc<Metrics>,
        writer: impl BatchWriter<T>,
    ) -> std::io::Result<LogQueue<T>> {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let queued = Arc::new(AtomicUsize::new(0));
        let overflow = Arc::new(Mutex::new(Vec::new()));
        let drain = Drain {
            rx,
            queued: queued.clone(),
            overflow: overflow.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                crate::priority::lower_current_thread();
                drain.run(writer)
            })?;
        Ok(LogQueue {
            tx,
            queued,
            overflow,
            writer: Mutex::new(Some(handle)),
            metrics,
        })
    }

    /// Hands a record over; never blocks, never drops.
    pub fn submit(&self, record: T) {
        self.metrics.log_records_submitted.inc();
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Message::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(message)) | Err(TrySendError::Disconnected(message)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.metrics.log_queue_overflow.inc();
                if let Message::Record(record) = message {
                    lock(&self.overflow).push(record);
                }
            }
        }
    }

    /// Records accepted and not yet handed to the sink.
    pub fn depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed) + lock(&self.overflow).len()
    }

    /// Writes out everything accepted, lets the sink finish, and returns
    /// when it has. Called once, after the server has drained.
    pub fn shutdown(&self) {
        // Waits for room in the channel: by now nothing else is sent.
        if self.tx.send(Message::Shutdown).is_err() {
            tracing::error!("the request log writer had stopped before shutdown");
        }
        if let Some(handle) = lock(&self.writer).take() {
            if handle.join().is_err() {
                tracing::error!("the request log writer panicked");
            }
        }
    }
}

/// The writer thread's end of the queue.
struct Drain<T> {
    rx: mpsc::Receiver<Message<T>>,
    queued: Arc<AtomicUsize>,
    overflow: Arc<Mutex<Vec<T>>>,
}

impl<T> Drain<T> {
    fn run(self, mut writer: impl BatchWriter<T>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let stop = self.fill(&mut batch);
            if !batch.is_empty() {
                writer.write_batch(&mut batch);
                batch.clear();
            }
            if stop {
                // Whatever raced the shutdown in, then the end.
                while self.take_all(&mut batch) {
                    writer.write_batch(&mut batch);
                    batch.clear();
                }
                writer.finish();
                return;
            }
            writer.tick();
            std::thread::sleep(BATCH_PAUSE);
        }
    }

    /// Up to `BATCH` records from the channel (waiting up to `IDLE_TICK`
    /// for the first), then the overflow; `true` once shutdown was asked.
    fn fill(&self, batch: &mut Vec<T>) -> bool {
        let mut next = self.rx.recv_timeout(IDLE_TICK);
        let stop = loop {
            match next {
                Ok(Message::Record(record)) => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    batch.push(record);
                }
                Ok(Message::Shutdown) | Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
            if batch.len() >= BATCH {
                break false;
            }
            next = match self.rx.try_recv() {
                Ok(message) => Ok(message),
                Err(mpsc::TryRecvError::Empty) => break false,
                Err(mpsc::TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            };
        };
        batch.append(&mut lock(&self.overflow));
        stop
    }

    /// At shutdown: everything left in the channel and the overflow;
    /// `false` when there was nothing.
    fn take_all(&self, batch: &mut Vec<T>) -> bool {
        while let Ok(message) = self.rx.try_recv() {
            if let Message::Record(record) = message {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                batch.push(record);
            }
        }
        batch.append(&mut lock(&self.overflow));
        !batch.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// Keeps what it is handed; slow when asked, to fill the channel.
    struct Collect {
        written: Arc<Mutex<Vec<u64>>>,
        slow: Arc<AtomicBool>,
        finished: Arc<AtomicBool>,
    }

    impl BatchWriter<u64> for Collect {
        fn write_batch(&mut self, batch: &mut Vec<u64>) {
            if self.slow.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            lock(&self.written).extend(batch.drain(..));
        }

        fn finish(&mut self) {
            self.finished.store(true, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_full_queue_overflows_and_shutdown_writes_every_record() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let slow = Arc::new(AtomicBool::new(true));
        let finished = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::default());
        let queue = LogQueue::start(
            "test-log-writer",
            4,
            metrics.clone(),
            Collect {
                written: written.clone(),
                slow: slow.clone(),
                finished: finished.clone(),
            },
        )
        .unwrap();
        for n in 0..5_000 {
            queue.submit(n);
        }
        assert!(
            metrics.log_queue_overflow.get() > 0,
            "a channel of 4 overflowed"
        );
        assert!(queue.depth() > 0);
        slow.store(false, Ordering::Relaxed);
        queue.shutdown();
        assert!(
            finished.load(Ordering::Relaxed),
            "the sink was told to finish"
        );
        let mut got = lock(&written).clone();
        got.sort_unstable();
        assert_eq!(got, (0..5_000).collect::<Vec<_>>(), "every record, once");
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn a_poisoned_overflow_list_still_takes_records() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::default());
        let queue = LogQueue::start(
            "test-log-writer",
            1,
            metrics,
            Collect {
                written: written.clone(),
                slow: Arc::new(AtomicBool::new(true)),
                finished: Arc::new(AtomicBool::new(false)),
            },
        )
        .unwrap();
        let overflow = queue.overflow.clone();
        let poisoner = std::thread::spawn(move || {
            let _guard = overflow.lock();
            panic!("a thread panics while holding the overflow list");
        });
        assert!(poisoner.join().is_err());
        assert!(queue.overflow.is_poisoned());
        for n in 0..100 {
            queue.submit(n);
        }
        queue.shutdown();
        assert_eq!(lock(&written).len(), 100, "no record skipped");
    }

    /// Remembers the nice value of the thread that writes.
    struct Nice(Arc<std::sync::atomic::AtomicI32>);

    impl BatchWriter<u64> for Nice {
        fn write_batch(&mut self, batch: &mut Vec<u64>) {
            batch.clear();
            self.0
                .store(crate::priority::current_nice(), Ordering::Relaxed);
        }

        fn finish(&mut self) {}
    }

    #[test]
    fn the_writer_runs_below_the_workers_priority() {
        let nice = Arc::new(std::sync::atomic::AtomicI32::new(i32::MIN));
        let queue = LogQueue::start(
            "test-log-writer",
            4,
            Arc::new(Metrics::default()),
            Nice(nice.clone()),
        )
        .unwrap();
        queue.submit(1);
        queue.shutdown();
        let workers = crate::priority::current_nice();
        assert_eq!(
            nice.load(Ordering::Relaxed),
            crate::priority::background_nice(workers)
        );
    }
}
