//! What this replica knows of the others, as of the last exchange
//! (`exchange`), and the rule that divides what is left of a limit between
//! the replicas until the next one.
//!
//! Each replica publishes a *claim* per limit: the most it may reach before
//! its next exchange. At an exchange replica `i`, with usage `u_i` (spend
//! settled plus reserved, or requests counted), reads the others' claims
//! `C_j` (their real usage where a replica is no longer live) and takes
//!
//! ```text
//! C_i = u_i + (limit - sum_j C_j - u_i) / n
//! ```
//!
//! where `n` is the number of live replicas. Since no replica exceeds its
//! claim, the claims of replicas that exchange at the same moment, from the
//! same old claims, still add up to at most the limit: dividing what is left
//! by `n` leaves room for every replica's share. A replica alone gets the
//! whole limit; one that does not use its claim sees it halve at each of its
//! exchanges, so a busy replica soon gets nearly all. Before a replica's
//! first exchange (or of a new month or minute) its claim is `limit / n`,
//! and the others count it so until it has published one.

/// The last exchange's view of one (org, environment), from one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    /// Live replicas, this one included (the limiter's current count is
    /// put here when the view is used).
    pub replicas: u32,
    /// `year * 100 + month` of the spend figures.
    pub month: u32,
    /// Month-to-date spend of all replicas (real, not claimed), this one's
    /// flushed spend included.
    pub global_settled: u64,
    /// This replica's settled spend as flushed at the exchange.
    pub own_settled: u64,
    /// This replica's settled plus reserved spend at the exchange.
    pub own_spend_usage: u64,
    /// What the other replicas may have spent by their next exchange.
    pub others_spend_claims: u64,
    /// Live replicas that have published no claim for this month yet: each
    /// may spend `cap / n` before it does.
    pub others_unclaimed_spend: u32,
    /// Epoch minute of the request figures.
    pub minute: u64,
    /// Requests of all replicas in `minute` (real), this one's included.
    pub global_requests: u64,
    pub own_requests: u64,
    pub others_request_claims: u64,
    /// Live replicas with no claim for this minute yet.
    pub others_unclaimed_requests: u32,
}

impl Shared {
    /// A replica on its own: no exchange yet, or none at all.
    pub const ALONE: Shared = Shared {
        replicas: 1,
        month: 0,
        global_settled: 0,
        own_settled: 0,
        own_spend_usage: 0,
        others_spend_claims: 0,
        others_unclaimed_spend: 0,
        minute: 0,
        global_requests: 0,
        own_requests: 0,
        others_request_claims: 0,
        others_unclaimed_requests: 0,
    };
}

impl Default for Shared {
    fn default() -> Self {
        Shared::ALONE
    }
}

/// `usage + (limit - others - usage) / n`, never below `usage`.
fn claim(limit: u64, others: u64, usage: u64, replicas: u64) -> u64 {
    usage.saturating_add(limit.saturating_sub(others).saturating_sub(usage) / replicas.max(1))
}

impl Shared {
    fn replicas(&self) -> u64 {
        u64::from(self.replicas.max(1))
    }

    /// All replicas' spend this month as far as known: the global total at
    /// the exchange plus this replica's spend since.
    pub fn total_settled(&self, month: u32, own: u64) -> u64 {
        if self.month == month {
            self.global_settled
                .saturating_add(own.saturating_sub(self.own_settled))
        } else {
            own
        }
    }

    /// This replica's claim on `cap`: the most its settled plus reserved
    /// spend may reach before the next exchange.
    pub fn spend_allowance(&self, month: u32, cap: u64) -> u64 {
        if self.month == month {
            let unclaimed = u64::from(self.others_unclaimed_spend) * (cap / self.replicas());
            claim(
                cap,
                self.others_spend_claims.saturating_add(unclaimed),
                self.own_spend_usage,
                self.replicas(),
            )
        } else {
            cap / self.replicas()
        }
    }

    /// All replicas' requests in `minute` as far as known.
    pub fn total_requests(&self, minute: u64, own: u64) -> u64 {
        if self.minute == minute {
            self.global_requests
                .saturating_add(own.saturating_sub(self.own_requests))
        } else {
            own
        }
    }

    /// This replica's claim on `limit` requests in `minute`.
    pub fn request_allowance(&self, minute: u64, limit: u64) -> u64 {
        if self.minute == minute {
            let unclaimed = u64::from(self.others_unclaimed_requests) * (limit / self.replicas());
            claim(
                limit,
                self.others_request_claims.saturating_add(unclaimed),
                self.own_requests,
                self.replicas(),
            )
        } else {
            limit / self.replicas()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_a_replica_gets_the_whole_limit() {
        let alone = Shared::default();
        assert_eq!(alone.spend_allowance(202_611, 1000), 1000);
        assert_eq!(alone.total_settled(202_611, 400), 400);
        assert_eq!(alone.request_allowance(5, 60), 60);
    }

    #[test]
    fn a_replica_claims_its_share_of_what_the_others_left() {
        let s = Shared {
            replicas: 2,
            month: 202_611,
            global_settled: 600,
            own_settled: 200,
            own_spend_usage: 250,
            others_spend_claims: 450,
            minute: 7,
            global_requests: 40,
            own_requests: 10,
            others_request_claims: 40,
            ..Shared::default()
        };
        // 1000 - 450 - 250 = 300 left, half of it: 250 + 150.
        assert_eq!(s.spend_allowance(202_611, 1000), 400);
        assert_eq!(s.total_settled(202_611, 250), 650);
        // 60 - 40 - 10 = 10 left, half: 10 + 5.
        assert_eq!(s.request_allowance(7, 60), 15);
        assert_eq!(s.total_requests(7, 12), 42);
        // A new minute or month before the next exchange: an equal share.
        assert_eq!(s.request_allowance(8, 60), 30);
        assert_eq!(s.spend_allowance(202_612, 1000), 500);
        assert_eq!(s.total_settled(202_612, 5), 5);
    }

    #[test]
    fn claims_made_at_the_same_moment_add_up_to_at_most_the_limit() {
        // Replicas with usages u and old claims c (u <= c, sum c <= limit)
        // exchange at once, each from the others' old claims.
        let limit = 1000u64;
        for (usages, old) in [
            (vec![0u64, 0, 0], vec![333u64, 333, 333]),
            (vec![300, 10, 0], vec![500, 300, 200]),
            (vec![500, 0], vec![500, 500]),
            (vec![90, 90, 90, 90], vec![250, 250, 250, 250]),
        ] {
            let n = usages.len() as u64;
            let new: Vec<u64> = (0..usages.len())
                .map(|i| {
                    let others: u64 = old
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, c)| c)
                        .sum();
                    claim(limit, others, usages[i], n)
                })
                .collect();
            assert!(
                new.iter().sum::<u64>() <= limit,
                "{usages:?} {old:?} -> {new:?}"
            );
            for (u, c) in usages.iter().zip(&new) {
                assert!(c >= u, "a claim never drops below usage");
            }
        }
    }

    #[test]
    fn an_idle_replicas_claim_halves_and_a_busy_one_gets_the_rest() {
        let (limit, mut busy, mut idle) = (1000u64, 500u64, 500u64);
        let mut used = 0u64;
        for _ in 0..30 {
            used = busy; // the busy replica uses all it may
            busy = claim(limit, idle, used, 2);
            idle = claim(limit, busy, 0, 2);
        }
        assert!(busy + idle <= limit);
        assert!(
            busy >= 990,
            "the busy replica converges to the limit: {busy}"
        );
        assert!(used <= busy);
    }

    #[test]
    fn a_replica_that_has_not_claimed_yet_keeps_its_equal_share() {
        // The other replica has not exchanged this minute: it may already
        // have used 30 of 60.
        let s = Shared {
            replicas: 2,
            minute: 7,
            own_requests: 30,
            others_unclaimed_requests: 1,
            ..Shared::default()
        };
        assert_eq!(
            s.request_allowance(7, 60),
            30,
            "nothing more until it claims"
        );
    }

    #[test]
    fn a_spent_cap_leaves_nothing_to_divide() {
        let s = Shared {
            replicas: 3,
            month: 1,
            own_spend_usage: 300,
            others_spend_claims: 900,
            ..Shared::default()
        };
        assert_eq!(s.spend_allowance(1, 1000), 300, "no growth allowed");
    }
}
