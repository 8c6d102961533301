//! Month-to-date spend of one (org, environment) against its monthly cap:
//! settled spend, reservations in flight, and the blocked state with its
//! hysteresis. All amounts in integer micro-USD.
//!
//! Rules (SPEC section 3):
//! - a request is admitted while settled spend plus the reservations in
//!   flight is below the cap, and reserves its estimated cost;
//! - when it ends, its reservation is released and its real cost settled;
//! - the environment is blocked once settled spend reaches the cap and
//!   unblocked only when it falls below 95% of the cap (month rollover, a
//!   raised cap);
//! - a new UTC month starts from zero.
//!
//! With other replicas (`shared`), "settled spend" is all replicas' spend as
//! far as known, and this replica's room is its share of what is left.

use super::shared::Shared;

/// Why a request was refused by the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapRefusal {
    /// Settled spend reached the cap (and has not fallen below 95% since).
    Blocked { settled: u64, cap: u64 },
    /// Settled spend plus reservations in flight leave no room.
    Full {
        settled: u64,
        reserved: u64,
        cap: u64,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    /// `year * 100 + month` of `settled`.
    pub month: u32,
    pub settled: u64,
    pub reserved: u64,
    pub blocked: bool,
    /// The part of `settled` already in the spend state file.
    pub persisted: u64,
}

impl Spend {
    /// Starts a new month when `month` is later than the one held.
    pub fn roll(&mut self, month: u32) {
        if month > self.month {
            self.month = month;
            self.settled = 0;
            self.persisted = 0;
            self.blocked = false;
        }
    }

    /// Applies the hysteresis to the total settled spend: blocked at >= 100%
    /// of the cap, unblocked below 95%, unchanged in between.
    fn update_blocked(&mut self, cap: u64, shared: &Shared) {
        let total = shared.total_settled(self.month, self.settled);
        if total >= cap {
            self.blocked = true;
        } else if u128::from(total) * 100 < u128::from(cap) * 95 {
            self.blocked = false;
        }
    }

    /// Admits a request of estimated cost `estimate` under `cap`, reserving
    /// the estimate.
    pub fn try_reserve(
        &mut self,
        month: u32,
        cap: u64,
        estimate: u64,
        shared: &Shared,
    ) -> Result<(), CapRefusal> {
        self.roll(month);
        self.update_blocked(cap, shared);
        if self.blocked {
            return Err(CapRefusal::Blocked {
                settled: shared.total_settled(month, self.settled),
                cap,
            });
        }
        if self.settled.saturating_add(self.reserved) >= shared.spend_allowance(month, cap) {
            return Err(CapRefusal::Full {
                settled: shared.total_settled(month, self.settled),
                reserved: self.reserved,
                cap,
            });
        }
        self.reserved = self.reserved.saturating_add(estimate);
        Ok(())
    }

    /// Ends a request: releases its reservation (0 if it had none) and adds
    /// its real cost to this month.
    pub fn settle(
        &mut self,
        month: u32,
        cap: Option<u64>,
        reserved: u64,
        actual: u64,
        shared: &Shared,
    ) {
        self.roll(month);
        self.reserved = self.reserved.saturating_sub(reserved);
        self.settled = self.settled.saturating_add(actual);
        if let Some(cap) = cap {
            self.update_blocked(cap, shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALONE: Shared = Shared::ALONE;

    const NOV: u32 = 202_611;
    const DEC: u32 = 202_612;

    fn blocked_at(settled: u64, cap: u64) -> Spend {
        let mut s = Spend::default();
        s.settle(NOV, Some(cap), 0, settled, &ALONE);
        s
    }

    #[test]
    fn blocks_at_exactly_100_percent_not_at_99_9() {
        let mut s = blocked_at(999, 1000);
        assert!(
            s.try_reserve(NOV, 1000, 0, &ALONE).is_ok(),
            "99.9% still admits"
        );
        s.settle(NOV, Some(1000), 0, 1, &ALONE);
        assert!(s.blocked, "100% blocks");
        assert_eq!(
            s.try_reserve(NOV, 1000, 0, &ALONE),
            Err(CapRefusal::Blocked {
                settled: 1000,
                cap: 1000
            })
        );
    }

    #[test]
    fn unblocks_only_below_95_percent() {
        // Blocked at 950 with a cap of 950, then the cap is raised.
        let mut s = blocked_at(950, 950);
        assert!(s.blocked);
        assert!(
            s.try_reserve(NOV, 1000, 0, &ALONE).is_err(),
            "95.0% stays blocked"
        );
        assert!(
            s.try_reserve(NOV, 999, 0, &ALONE).is_err(),
            "95.1% stays blocked"
        );
        assert!(
            s.try_reserve(NOV, 1001, 0, &ALONE).is_ok(),
            "94.9% unblocks"
        );
        assert!(!s.blocked);
    }

    #[test]
    fn a_cap_raised_into_the_band_stays_blocked_and_above_it_stays_open() {
        let mut s = blocked_at(100, 100);
        assert!(
            s.try_reserve(NOV, 104, 0, &ALONE).is_err(),
            "96% of the new cap: blocked"
        );
        assert!(s.try_reserve(NOV, 200, 0, &ALONE).is_ok(), "50%: unblocked");
        // Unblocked, spend now between 95% and 100% of a lowered cap: open.
        assert!(
            s.try_reserve(NOV, 104, 0, &ALONE).is_ok(),
            "not blocked until 100% again"
        );
        s.settle(NOV, Some(104), 0, 4, &ALONE);
        assert!(s.blocked, "104 of 104");
    }

    #[test]
    fn a_lowered_cap_blocks_at_once() {
        let mut s = blocked_at(500, 1000);
        assert!(!s.blocked);
        assert!(s.try_reserve(NOV, 400, 0, &ALONE).is_err());
        assert!(s.blocked);
    }

    #[test]
    fn month_rollover_resets_settled_spend_and_the_block() {
        let mut s = blocked_at(1000, 1000);
        assert!(s.try_reserve(NOV, 1000, 0, &ALONE).is_err());
        assert!(
            s.try_reserve(DEC, 1000, 10, &ALONE).is_ok(),
            "a new month is open"
        );
        assert_eq!(s.settled, 0);
        assert_eq!(s.reserved, 10);
        // An older month read late by another thread changes nothing.
        s.roll(NOV);
        assert_eq!(s.month, DEC);
    }

    #[test]
    fn reservations_count_against_the_cap_until_settled() {
        let mut s = Spend::default();
        assert!(s.try_reserve(NOV, 100, 60, &ALONE).is_ok());
        assert!(
            s.try_reserve(NOV, 100, 60, &ALONE).is_ok(),
            "60 < 100: admitted, may overshoot by one"
        );
        assert_eq!(
            s.try_reserve(NOV, 100, 1, &ALONE),
            Err(CapRefusal::Full {
                settled: 0,
                reserved: 120,
                cap: 100
            })
        );
        s.settle(NOV, Some(100), 60, 10, &ALONE);
        s.settle(NOV, Some(100), 60, 20, &ALONE);
        assert_eq!((s.settled, s.reserved), (30, 0));
        assert!(s.try_reserve(NOV, 100, 5, &ALONE).is_ok());
    }

    #[test]
    fn other_replicas_spend_counts_and_blocks() {
        let shared = Shared {
            replicas: 2,
            month: NOV,
            global_settled: 900,
            own_settled: 100,
            own_spend_usage: 100,
            others_spend_claims: 800,
            ..ALONE
        };
        let mut s = Spend::default();
        s.settle(NOV, Some(1000), 0, 100, &ALONE);
        // 100 left of 1000, 50 each: this replica may reach 150.
        assert!(s.try_reserve(NOV, 1000, 40, &shared).is_ok());
        assert!(
            s.try_reserve(NOV, 1000, 40, &shared).is_ok(),
            "140 < 150: admitted"
        );
        assert!(matches!(
            s.try_reserve(NOV, 1000, 1, &shared),
            Err(CapRefusal::Full { .. })
        ));
        s.settle(NOV, Some(1000), 80, 100, &shared);
        assert!(s.blocked, "900 + 100 since the exchange reaches the cap");
    }

    #[test]
    fn a_zero_cap_admits_nothing() {
        let mut s = Spend::default();
        assert!(s.try_reserve(NOV, 0, 0, &ALONE).is_err());
    }
}
