//! Requests per minute of one (org, environment): this replica's exact count
//! per UTC minute, admitted against its share of the limit (`shared`).

use super::shared::Shared;

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

/// This replica's requests in one UTC minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RpmCount {
    pub minute: u64,
    pub count: u64,
}

impl RpmCount {
    /// The count of the minute of `now_ms` (a new minute starts at 0; a
    /// clock read late by another thread does not go back).
    pub fn roll(&mut self, now_ms: u64) {
        let minute = now_ms / 60_000;
        if minute > self.minute {
            *self = RpmCount { minute, count: 0 };
        }
    }

    /// Counts one request if this replica's share of `limit` has room.
    pub fn try_acquire(&mut self, now_ms: u64, limit: u32, shared: &Shared) -> RpmDecision {
        self.roll(now_ms);
        let reset_ms = 60_000 - now_ms % 60_000;
        let allowance = shared.request_allowance(self.minute, u64::from(limit));
        let total = shared.total_requests(self.minute, self.count);
        let allowed = self.count < allowance && total < u64::from(limit);
        if allowed {
            self.count += 1;
        }
        let used = shared.total_requests(self.minute, self.count);
        RpmDecision {
            allowed,
            limit,
            remaining: u32::try_from(u64::from(limit).saturating_sub(used)).unwrap_or(0),
            reset_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The start of a UTC minute.
    const T0: u64 = 1_795_000_020_000;

    #[test]
    fn allows_limit_requests_per_minute_then_refuses_until_the_next() {
        let mut w = RpmCount::default();
        let alone = Shared::default();
        for i in 0..3 {
            let d = w.try_acquire(T0 + 10_000, 3, &alone);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let refused = w.try_acquire(T0 + 59_999, 3, &alone);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_secs(), 1);
        let next = w.try_acquire(T0 + 60_000, 3, &alone);
        assert!(next.allowed, "a new minute starts empty");
        assert_eq!(next.remaining, 2);
        assert_eq!(next.reset_secs(), 60);
    }

    #[test]
    fn a_late_clock_read_does_not_reset_the_window() {
        let mut w = RpmCount::default();
        let alone = Shared::default();
        assert!(w.try_acquire(T0 + 60_000, 1, &alone).allowed);
        assert!(
            !w.try_acquire(T0 + 59_999, 1, &alone).allowed,
            "the newer window stands"
        );
    }

    #[test]
    fn another_replica_counts_against_the_limit() {
        let mut w = RpmCount::default();
        let minute = T0 / 60_000;
        // At the exchange: 8 requests in all, 2 of them ours, 2 replicas.
        w.roll(T0);
        w.count = 2;
        let shared = Shared {
            replicas: 2,
            minute,
            global_requests: 8,
            own_requests: 2,
            others_request_claims: 6,
            ..Shared::default()
        };
        // 10 - 6 - 2 = 2 left, 1 each.
        assert!(w.try_acquire(T0 + 1, 10, &shared).allowed);
        let d = w.try_acquire(T0 + 2, 10, &shared);
        assert!(!d.allowed, "this replica's share is used");
        assert_eq!(d.remaining, 1, "the other replica's share is still there");
    }
}
