//! Environment limits: requests per minute and the monthly cost cap of each
//! (org, environment), and month-to-date spend per environment and per
//! project. The counters live here, outside the snapshot, so reloads keep
//! them; the limits themselves are read from the request's snapshot.
//!
//! A request is admitted once (`Limiter::admit`: the RPM count, then a
//! reservation of its estimated cost) and ended once (`Limiter::settle`:
//! release the reservation, add the real cost). `rpm` and `spend` hold the
//! arithmetic; `state` makes spend survive a restart.

pub mod clock;
pub mod exchange;
pub mod persistence;
pub mod rpm;
pub mod shared;
pub mod spend;
pub mod state;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::locks::lock;
use clock::{day_of, month_of, Clock};
use floopy_model::{Environment, EnvironmentLimits};
use rpm::{RpmCount, RpmDecision};
use shared::Shared;
use spend::{CapRefusal, Spend};

/// This replica's counters of one (org, environment), and what it knows of
/// the other replicas; one lock, taken once at admission and once at
/// settlement.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvState {
    pub rpm: RpmCount,
    pub spend: Spend,
    pub shared: Shared,
    /// The limits the last admission saw, for the claims of the exchange.
    pub cap: Option<u64>,
    pub rpm_limit: Option<u32>,
}

#[derive(Debug, Default)]
pub struct EnvCounters {
    pub state: Mutex<EnvState>,
}

/// Month-to-date spend of one project: this replica's, and all replicas'
/// as of the last exchange; and this replica's spend by day (today and the
/// day before, whose last figure the first exchange of a day still writes),
/// for budgets over days and weeks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProjectSpend {
    pub month: u32,
    pub settled: u64,
    /// (day, settled that day) for today and the day before, newest first.
    pub days: [(u32, u64); 2],
    /// The part of `settled` already in the spend state file.
    pub persisted: u64,
    pub shared_month: u32,
    pub global_settled: u64,
    pub own_at_exchange: u64,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitRefusal {
    RateLimited(RpmDecision),
    CostCapReached(CapRefusal),
}

/// What admission took; handed back to `settle` when the request ends.
#[derive(Debug, Default)]
pub struct Admission {
    counters: Option<Arc<EnvCounters>>,
    reserved: u64,
    /// The RPM state for the response's `x-ratelimit-*` headers.
    pub rpm: Option<RpmDecision>,
}

/// Shared counters by key, created on first use and never removed (a few
/// bytes per environment or project seen).
#[derive(Debug)]
struct CounterMap<K, V>(RwLock<FxHashMap<K, Arc<V>>>);

impl<K: std::hash::Hash + Eq + Copy, V: Default> CounterMap<K, V> {
    fn new() -> Self {
        CounterMap(RwLock::new(FxHashMap::default()))
    }

    fn get(&self, key: K) -> Arc<V> {
        if let Some(v) = self.0.read().ok().and_then(|m| m.get(&key).cloned()) {
            return v;
        }
        // A panic while holding the lock cannot leave the map inconsistent
        // (inserts only): go on with it.
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_default().clone()
    }

    fn entries(&self) -> Vec<(K, Arc<V>)> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

pub struct Limiter {
    clock: Arc<dyn Clock>,
    envs: CounterMap<(Uuid, Environment), EnvCounters>,
    projects: CounterMap<(Uuid, Uuid), Mutex<ProjectSpend>>,
    /// Live replicas sharing the limits (this one included), as of the last
    /// exchange; it divides every limit, also those no replica has used yet.
    replicas: AtomicU32,
}

impl Limiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Limiter {
            clock,
            envs: CounterMap::new(),
            projects: CounterMap::new(),
            replicas: AtomicU32::new(1),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The counters of (org, env), created on first use.
    pub fn counters(&self, org: Uuid, env: Environment) -> Arc<EnvCounters> {
        self.envs.get((org, env))
    }

    fn project(&self, org: Uuid, project: Uuid) -> Arc<Mutex<ProjectSpend>> {
        self.projects.get((org, project))
    }

    /// Admits a request of a key with environment `env` in `org` under
    /// `limits`, reserving `estimate` micro-USD against the cost cap.
    // Out of line: load-tests/instructions.sh reports its cost (one call).
    #[inline(never)]
    pub fn admit(
        &self,
        org: Uuid,
        env: Environment,
        limits: Option<&EnvironmentLimits>,
        estimate: u64,
    ) -> Result<Admission, LimitRefusal> {
        let counters = self.counters(org, env);
        let now = self.clock.now_ms();
        let mut admission = Admission::default();
        {
            let mut state = lock(&counters.state);
            state.cap = limits.and_then(|l| l.monthly_cost_micro_usd);
            state.rpm_limit = limits.and_then(|l| l.rpm);
            let EnvState {
                rpm, spend, shared, ..
            } = &mut *state;
            let shared = &self.with_replicas(shared);
            // The cap is checked first: a request it refuses does not use
            // up the minute's requests.
            if let Some(cap) = limits.and_then(|l| l.monthly_cost_micro_usd) {
                spend
                    .try_reserve(month_of(now), cap, estimate, shared)
                    .map_err(LimitRefusal::CostCapReached)?;
                admission.reserved = estimate;
            }
            if let Some(limit) = limits.and_then(|l| l.rpm) {
                let decision = rpm.try_acquire(now, limit, shared);
                if !decision.allowed {
                    spend.settle(month_of(now), None, admission.reserved, 0, shared);
                    return Err(LimitRefusal::RateLimited(decision));
                }
                admission.rpm = Some(decision);
            }
        }
        admission.counters = Some(counters);
        Ok(admission)
    }

    /// Ends a request: releases what `admission` reserved and adds `actual`
    /// micro-USD to its environment (if it has one) and its project.
    /// `cap` is the environment's cap now (the block follows it).
    pub fn settle(
        &self,
        admission: Admission,
        org: Uuid,
        project: Option<Uuid>,
        cap: Option<u64>,
        actual: u64,
    ) {
        let now = self.clock.now_ms();
        let month = month_of(now);
        if let Some(counters) = &admission.counters {
            let mut state = lock(&counters.state);
            let EnvState { spend, shared, .. } = &mut *state;
            let shared = &self.with_replicas(shared);
            spend.settle(month, cap, admission.reserved, actual, shared);
        }
        if let Some(project) = project.filter(|_| actual > 0) {
            let spend = self.project(org, project);
            let mut entry = lock(&spend);
            if month > entry.month {
                entry.month = month;
                entry.settled = 0;
                entry.persisted = 0;
            }
            entry.settled = entry.settled.saturating_add(actual);
            let day = day_of(now);
            if day > entry.days[0].0 {
                entry.days = [(day, 0), entry.days[0]];
            }
            entry.days[0].1 = entry.days[0].1.saturating_add(actual);
        }
    }

    /// `shared` with the current number of live replicas.
    fn with_replicas(&self, shared: &Shared) -> Shared {
        Shared {
            replicas: self.replicas.load(Ordering::Relaxed).max(1),
            ..*shared
        }
    }

    /// Sets the number of live replicas (from an exchange).
    pub fn set_replicas(&self, replicas: u32) {
        self.replicas.store(replicas.max(1), Ordering::Relaxed);
    }

    /// Month-to-date spend of (org, env), all replicas as far as known.
    pub fn environment_spend(&self, org: Uuid, env: Environment) -> u64 {
        let month = month_of(self.clock.now_ms());
        let state = *lock(&self.counters(org, env).state);
        let own = if state.spend.month == month {
            state.spend.settled
        } else {
            0
        };
        state.shared.total_settled(month, own)
    }

    /// Month-to-date spend of a project, all replicas as far as known.
    pub fn project_spend(&self, org: Uuid, project: Uuid) -> u64 {
        let month = month_of(self.clock.now_ms());
        let spend = *lock(&self.project(org, project));
        let own = if spend.month == month {
            spend.settled
        } else {
            0
        };
        if spend.shared_month == month {
            spend
                .global_settled
                .saturating_add(own.saturating_sub(spend.own_at_exchange))
        } else {
            own
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clock::{month_start_ms, FakeClock};

    const ORG: Uuid = Uuid::from_u128(1);
    const PROJECT: Uuid = Uuid::from_u128(2);

    fn limits(rpm: Option<u32>, cap: Option<u64>) -> EnvironmentLimits {
        EnvironmentLimits {
            org_id: ORG,
            environment: Environment::Production,
            rpm,
            monthly_cost_micro_usd: cap,
        }
    }

    fn limiter_at(ms: u64) -> (Arc<FakeClock>, Limiter) {
        let clock = Arc::new(FakeClock::at(ms));
        (clock.clone(), Limiter::new(clock))
    }

    #[test]
    fn environments_are_counted_apart() {
        let (_, limiter) = limiter_at(month_start_ms(2026, 11));
        let l = limits(Some(1), None);
        assert!(limiter
            .admit(ORG, Environment::Production, Some(&l), 0)
            .is_ok());
        assert!(matches!(
            limiter.admit(ORG, Environment::Production, Some(&l), 0),
            Err(LimitRefusal::RateLimited(_))
        ));
        assert!(limiter
            .admit(ORG, Environment::Staging, Some(&l), 0)
            .is_ok());
        assert!(limiter
            .admit(Uuid::from_u128(9), Environment::Production, Some(&l), 0)
            .is_ok());
    }

    #[test]
    fn minute_windows_follow_the_clock() {
        let (clock, limiter) = limiter_at(month_start_ms(2026, 11) + 30_000);
        let l = limits(Some(2), None);
        for _ in 0..2 {
            assert!(limiter
                .admit(ORG, Environment::Production, Some(&l), 0)
                .is_ok());
        }
        let refused = limiter.admit(ORG, Environment::Production, Some(&l), 0);
        assert!(matches!(refused, Err(LimitRefusal::RateLimited(d)) if d.reset_secs() == 30));
        clock.advance(30_000);
        assert!(limiter
            .admit(ORG, Environment::Production, Some(&l), 0)
            .is_ok());
    }

    #[test]
    fn project_spend_is_kept_by_day_and_the_day_before_is_still_reported() {
        let (clock, limiter) = limiter_at(month_start_ms(2026, 12) - 1);
        limiter.settle(Admission::default(), ORG, Some(PROJECT), None, 700);
        let days = |l: &Limiter| l.own_usage().project_days;
        assert_eq!(days(&limiter), [(ORG, PROJECT, 20_261_130, 700)]);
        clock.advance(1); // 00:00 UTC, December 1st
        limiter.settle(Admission::default(), ORG, Some(PROJECT), None, 5);
        limiter.settle(Admission::default(), ORG, Some(PROJECT), None, 6);
        // The first exchange of the day still writes yesterday's last
        // figure (settled after the last exchange of that day).
        assert_eq!(
            days(&limiter),
            [
                (ORG, PROJECT, 20_261_201, 11),
                (ORG, PROJECT, 20_261_130, 700)
            ]
        );
        clock.advance(86_400_000);
        limiter.settle(Admission::default(), ORG, Some(PROJECT), None, 1);
        assert_eq!(
            days(&limiter),
            [
                (ORG, PROJECT, 20_261_202, 1),
                (ORG, PROJECT, 20_261_201, 11)
            ]
        );
        assert_eq!(limiter.own_usage().projects, [(ORG, PROJECT, 12)]);
        // Two idle days later nothing is reported any more.
        clock.advance(2 * 86_400_000);
        assert_eq!(days(&limiter), []);
    }

    #[test]
    fn spend_settles_per_environment_and_project_and_rolls_monthly() {
        let (clock, limiter) = limiter_at(month_start_ms(2026, 12) - 1);
        let l = limits(None, Some(1_000));
        let a = limiter
            .admit(ORG, Environment::Production, Some(&l), 600)
            .unwrap();
        limiter.settle(a, ORG, Some(PROJECT), Some(1_000), 999);
        assert_eq!(limiter.environment_spend(ORG, Environment::Production), 999);
        assert_eq!(limiter.project_spend(ORG, PROJECT), 999);
        let a = limiter
            .admit(ORG, Environment::Production, Some(&l), 600)
            .unwrap();
        limiter.settle(a, ORG, Some(PROJECT), Some(1_000), 1);
        assert!(matches!(
            limiter.admit(ORG, Environment::Production, Some(&l), 1),
            Err(LimitRefusal::CostCapReached(CapRefusal::Blocked { .. }))
        ));
        clock.advance(1); // 00:00 UTC, December 1st
        assert_eq!(limiter.environment_spend(ORG, Environment::Production), 0);
        assert_eq!(limiter.project_spend(ORG, PROJECT), 0);
        assert!(limiter
            .admit(ORG, Environment::Production, Some(&l), 1)
            .is_ok());
    }

    #[test]
    fn concurrent_admissions_overshoot_by_at_most_one_estimate_plus_excess() {
        let (_, limiter) = limiter_at(month_start_ms(2026, 11));
        let limiter = Arc::new(limiter);
        let cap = 1_000_000;
        let l = limits(None, Some(cap));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    let mut admitted = 0u64;
                    for j in 0..5_000u64 {
                        // Estimates 1000, actual costs 900..=1100.
                        if let Ok(a) = limiter.admit(ORG, Environment::Production, Some(&l), 1_000)
                        {
                            admitted += 1;
                            let actual = 900 + (i * 31 + j * 17) % 201;
                            limiter.settle(a, ORG, None, Some(cap), actual);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let settled = limiter.environment_spend(ORG, Environment::Production);
        assert!(settled >= cap, "the cap was reached ({settled})");
        // One request's cost plus what actual costs exceeded estimates
        // (at most 100 each for the requests in flight at the end: 8).
        assert!(
            settled <= cap + 1_100 + 8 * 100,
            "overshoot too large: {settled}"
        );
        assert!(admitted < 8 * 5_000, "requests were refused");
    }
}
