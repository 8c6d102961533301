//! A per-request phase timeline, to explain a latency tail from data
//! instead of inferring it. With `FLOOPY_TIMELINE=1` in the environment at
//! start, every request notes when it entered and left each phase (request
//! filter, waiting for the upstream's answer, the response body, writing
//! its record) and how long its worker thread was runnable but not running
//! while it was in flight (the scheduler's run delay, from
//! `/proc/thread-self/schedstat`); the slowest `KEPT` since the last read
//! are served by the admin listener at `GET /debug/timeline` (JSON), and
//! the list starts over. Off (the default), a request pays one relaxed
//! load of a flag and, at each phase, a check of an empty field.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use uuid::Uuid;

use crate::locks::lock;

/// How many of the slowest requests are kept between two reads.
pub const KEPT: usize = 50;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Reads `FLOOPY_TIMELINE` once, at start.
pub fn init_from_env() {
    let on = std::env::var("FLOOPY_TIMELINE").is_ok_and(|v| v == "1");
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The marks of one request: microseconds since it began.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Marks {
    pub request_filter_in_us: u32,
    pub request_filter_out_us: u32,
    /// The upstream's response header arrived (`response_filter`).
    pub response_header_us: u32,
    /// The response's last chunk went through the body filter.
    pub body_end_us: u32,
    /// Building, settling and submitting the request's record.
    pub record_in_us: u32,
    pub record_out_us: u32,
    /// The worker's run delay when the request began (ns), then the
    /// delay accumulated while it was in flight.
    #[serde(skip)]
    run_delay_start_ns: u64,
    pub run_delay_us: u32,
    /// Whether the request ended on another thread than it began on.
    pub moved_thread: bool,
    #[serde(skip)]
    thread: u64,
}

/// One request's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub request_id: Uuid,
    pub status: u16,
    pub stream: bool,
    pub total_us: u32,
    #[serde(flatten)]
    pub marks: Marks,
}

impl Marks {
    /// At the request's start (on its worker thread).
    pub fn start() -> Box<Marks> {
        Box::new(Marks {
            run_delay_start_ns: run_delay_ns(),
            thread: thread_id(),
            ..Marks::default()
        })
    }
}

/// Microseconds from `started` to now.
pub fn since(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// The slowest requests since the last read; `threshold` is the fastest
/// kept once the list is full (a faster request is not even locked for).
struct Slowest {
    entries: Mutex<Vec<Entry>>,
    threshold: AtomicU64,
}

static SLOWEST: Slowest = Slowest {
    entries: Mutex::new(Vec::new()),
    threshold: AtomicU64::new(0),
};

/// At the request's end: closes its marks and keeps it if it is among the
/// slowest.
pub fn finish(mut marks: Marks, started: Instant, request_id: Uuid, status: u16, stream: bool) {
    let total_us = since(started);
    marks.run_delay_us =
        u32::try_from(run_delay_ns().saturating_sub(marks.run_delay_start_ns) / 1000)
            .unwrap_or(u32::MAX);
    marks.moved_thread = marks.thread != thread_id();
    if u64::from(total_us) <= SLOWEST.threshold.load(Ordering::Relaxed) {
        return;
    }
    let mut entries = lock(&SLOWEST.entries);
    entries.push(Entry {
        request_id,
        status,
        stream,
        total_us,
        marks,
    });
    if entries.len() > KEPT {
        entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.total_us));
        entries.truncate(KEPT);
        let fastest = entries.last().map_or(0, |e| e.total_us);
        SLOWEST
            .threshold
            .store(u64::from(fastest), Ordering::Relaxed);
    }
}

/// The slowest requests since the last call, slowest first; starts over.
pub fn take() -> Vec<Entry> {
    let mut entries = std::mem::take(&mut *lock(&SLOWEST.entries));
    SLOWEST.threshold.store(0, Ordering::Relaxed);
    entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.total_us));
    entries
}

fn thread_id() -> u64 {
    // SAFETY: gettid has no preconditions.
    u64::try_from(unsafe { libc::gettid() }).unwrap_or(0)
}

/// The calling thread's run delay so far (ns): the second field of
/// `/proc/thread-self/schedstat`; 0 where it cannot be read.
fn run_delay_ns() -> u64 {
    thread_local! {
        static SCHEDSTAT: RefCell<Option<File>> = const { RefCell::new(None) };
    }
    SCHEDSTAT.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = File::open("/proc/thread-self/schedstat").ok();
        }
        let Some(file) = cell.as_ref() else { return 0 };
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_are_kept_slowest_first_and_a_read_starts_over() {
        let started = Instant::now();
        for i in 0..(KEPT as u32 + 20) {
            let mut marks = Marks::start();
            marks.record_in_us = i;
            // A request's total is what `started` says; make them differ
            // by back-dating the start.
            let begun = started - std::time::Duration::from_micros(u64::from(i) * 10);
            finish(*marks, begun, Uuid::nil(), 200, false);
        }
        let kept = take();
        assert_eq!(kept.len(), KEPT);
        assert!(kept.windows(2).all(|w| w[0].total_us >= w[1].total_us));
        // The slowest is the most back-dated.
        assert_eq!(kept[0].marks.record_in_us, KEPT as u32 + 19);
        assert!(take().is_empty());
    }

    #[test]
    fn the_run_delay_of_this_thread_is_read() {
        // Linux keeps it per thread; it only grows.
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let before: u64 = text
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("schedstat has a run delay");
        assert!(run_delay_ns() >= before);
    }
}
