//! The failed-authentication throttle: key guessing is slowed down per
//! client address. Each unknown key counts one failure for its client
//! address; an address that reached `limits.max_failed_auth_per_minute`
//! within the last minute gets 429 `too_many_failed_authentications`
//! without its key being looked up, until its failures age out.
//!
//! Counting is per address, never per key, so nobody can lock a key's
//! owner out by failing with that key from elsewhere; clients sharing one
//! address (a NAT) share its budget. IPv6 clients count per /64, the
//! smallest network a client is usually given, so rotating addresses within
//! it does not reset the count.
//!
//! The counts live in Pingora's count-min estimator: fixed memory
//! (`SLOTS` x `HASHES` counters, two windows, about 1 MiB), lock-free, never
//! an undercount. An attack from more addresses in one minute than there are
//! slots can make an innocent address look throttled; at 16,384 slots that
//! is some ten thousand attacking addresses.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pingora_limits::rate::Rate;

const WINDOW: Duration = Duration::from_secs(60);
const HASHES: usize = 4;
const SLOTS: usize = 16_384;

pub struct AuthThrottle {
    failures: Rate,
    started: Instant,
    /// Seconds after `started` of the last failure, plus one (0: none yet):
    /// while no address failed within two windows, nobody can be throttled
    /// and the estimator is not even read.
    last_failure: AtomicU64,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            failures: Rate::new_with_estimator_config(WINDOW, HASHES, SLOTS),
            started: Instant::now(),
            last_failure: AtomicU64::new(0),
        }
    }
}

/// What is counted for a client address: the address itself (IPv4), or its
/// /64 network (IPv6).
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
    }
}

impl AuthThrottle {
    /// Whether `ip` has used up its failures of the last minute (`max` 0:
    /// never). The last minute is estimated from the current window and
    /// the part of the previous one it still covers (a sliding window, so
    /// a burst across a window boundary counts whole). Reads only: a
    /// request that is not throttled writes nothing.
    pub fn is_throttled(&self, ip: IpAddr, max: u32) -> bool {
        if max == 0 {
            return false;
        }
        let last = self.last_failure.load(Ordering::Relaxed);
        if last == 0 || self.seconds() >= last + 2 * WINDOW.as_secs() {
            return false;
        }
        self.failures.rate_with(&key(ip), |c| {
            c.prev_samples as f64 * (1.0 - c.current_interval_fraction) + c.curr_samples as f64
        }) >= f64::from(max)
    }

    fn seconds(&self) -> u64 {
        self.started.elapsed().as_secs() + 1
    }

    /// Counts one failed authentication of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        self.failures.observe(&key(ip), 1);
        self.last_failure.store(self.seconds(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_at_its_limit_and_others_are_not() {
        let throttle = AuthThrottle::default();
        let guesser: IpAddr = "203.0.113.7".parse().unwrap();
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        for _ in 0..3 {
            assert!(!throttle.is_throttled(guesser, 3));
            throttle.failed(guesser);
        }
        assert!(throttle.is_throttled(guesser, 3));
        assert!(!throttle.is_throttled(other, 3));
        assert!(!throttle.is_throttled(guesser, 0), "0 turns it off");
        assert!(!throttle.is_throttled(guesser, 4));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(key(v4), key(mapped));
    }
}
