//! Requests per minute of one (org, environment): an exact counter per UTC
//! minute, in one atomic word (minute index and count), updated with a
//! compare-and-swap so concurrent requests never over- or under-count.

use std::sync::atomic::{AtomicU64, Ordering};

/// The outcome of one request against the limit, with what the
/// `x-ratelimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpmDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Milliseconds until the current window ends.
    pub reset_ms: u64,
}

impl RpmDecision {
    /// Whole seconds until the window ends, at least 1 (`Retry-After`).
    pub fn reset_secs(&self) -> u64 {
        self.reset_ms.div_ceil(1000).max(1)
    }
}

#[derive(Debug, Default)]
pub struct RpmWindow(AtomicU64);

fn pack(minute: u32, count: u32) -> u64 {
    (u64::from(minute) << 32) | u64::from(count)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

impl RpmWindow {
    /// Counts one request if the window has room.
    pub fn try_acquire(&self, now_ms: u64, limit: u32) -> RpmDecision {
        let minute = (now_ms / 60_000) as u32;
        let reset_ms = 60_000 - now_ms % 60_000;
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let (window, count) = unpack(current);
            // A window from a clock read a moment later on another thread
            // is the current one.
            let (window, count) = if window >= minute {
                (window, count)
            } else {
                (minute, 0)
            };
            if count >= limit {
                return RpmDecision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset_ms,
                };
            }
            match self.0.compare_exchange_weak(
                current,
                pack(window, count + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return RpmDecision {
                        allowed: true,
                        limit,
                        remaining: limit - count - 1,
                        reset_ms,
                    }
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Requests counted in the window of `now_ms`.
    pub fn count(&self, now_ms: u64) -> u32 {
        let (window, count) = unpack(self.0.load(Ordering::Acquire));
        if u64::from(window) == now_ms / 60_000 {
            count
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_795_000_000_000 - 1_795_000_000_000 % 60_000;

    #[test]
    fn allows_limit_requests_per_minute_then_refuses_until_the_next() {
        let w = RpmWindow::default();
        for i in 0..3 {
            let d = w.try_acquire(T0 + 10_000, 3);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let refused = w.try_acquire(T0 + 59_999, 3);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_ms, 1);
        assert_eq!(refused.reset_secs(), 1);
        let next = w.try_acquire(T0 + 60_000, 3);
        assert!(next.allowed, "a new minute starts empty");
        assert_eq!(next.remaining, 2);
        assert_eq!(next.reset_secs(), 60);
    }

    #[test]
    fn concurrent_requests_are_counted_exactly() {
        let w = std::sync::Arc::new(RpmWindow::default());
        let allowed = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (w, allowed) = (w.clone(), allowed.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        if w.try_acquire(T0, 5000).allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(allowed.load(Ordering::Relaxed), 5000);
        assert_eq!(w.count(T0), 5000);
    }

    #[test]
    fn a_late_clock_read_does_not_reset_the_window() {
        let w = RpmWindow::default();
        assert!(w.try_acquire(T0 + 60_000, 1).allowed);
        assert!(
            !w.try_acquire(T0 + 59_999, 1).allowed,
            "the newer window stands"
        );
    }
}
