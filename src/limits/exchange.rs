//! The exchange of spend and request counts between replicas that share a
//! control database: about once a second each replica writes its own
//! cumulative figures (replacing its rows, never incrementing them), marks
//! itself alive, and reads back the sums over all replicas and the number of
//! live replicas. `shared` turns that into each replica's share of what is
//! left. A replica that cannot reach the database keeps enforcing with the
//! last totals it read plus its own spend since; the next successful
//! exchange reconciles.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use floopy_control_db::exchange::{
    publish_claims, write_and_read, Claim, EnvUsage, OthersUsage, OwnUsage,
};
use floopy_control_db::{Connection, ControlError, DbConfig};
use floopy_model::Environment;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::clock::{day_of, month_of};
use super::shared::Shared;
use super::{lock, Limiter};
use crate::control_source::CONNECT_TIMEOUT;
use crate::metrics::Metrics;

impl Limiter {
    /// This replica's figures for the current month and minute.
    pub fn own_usage(&self) -> OwnUsage {
        let now = self.now_ms();
        let month = month_of(now);
        let minute = now / 60_000;
        let yesterday = day_of(now.saturating_sub(86_400_000));
        let mut own = OwnUsage {
            month,
            minute,
            ..OwnUsage::default()
        };
        for ((org, env), counters) in self.envs.entries() {
            let state = *lock(&counters.state);
            own.environments.push(EnvUsage {
                org,
                env,
                settled: if state.spend.month == month {
                    state.spend.settled
                } else {
                    0
                },
                reserved: state.spend.reserved,
                requests: if state.rpm.minute == minute {
                    state.rpm.count
                } else {
                    0
                },
            });
        }
        for ((org, project), spend) in self.projects.entries() {
            let spend = *lock(&spend);
            if spend.month == month {
                own.projects.push((org, project, spend.settled));
            }
            // Today's and yesterday's only: older days are final (and a
            // project idle for weeks must not write its last day back
            // after the evaluator pruned it).
            for (day, settled) in spend
                .days
                .into_iter()
                .filter(|d| d.1 > 0 && d.0 >= yesterday)
            {
                own.project_days.push((org, project, day, settled));
            }
        }
        own
    }

    /// Takes in what an exchange read: `own` is what this replica wrote.
    /// Returns the claims to publish.
    pub fn apply_exchange(&self, own: &OwnUsage, others: &OthersUsage) -> Vec<Claim> {
        self.set_replicas(others.replicas);
        let replicas = others.replicas.max(1);
        let mut claims = Vec::with_capacity(own.environments.len());
        let own_envs: FxHashMap<(Uuid, Environment), EnvUsage> = own
            .environments
            .iter()
            .map(|u| ((u.org, u.env), *u))
            .collect();
        let keys: Vec<(Uuid, Environment)> = own_envs
            .keys()
            .chain(others.environments.keys())
            .copied()
            .collect::<rustc_hash::FxHashSet<_>>()
            .into_iter()
            .collect();
        for (org, env) in keys {
            let mine = own_envs.get(&(org, env)).copied().unwrap_or(EnvUsage {
                org,
                env,
                settled: 0,
                reserved: 0,
                requests: 0,
            });
            let theirs = others
                .environments
                .get(&(org, env))
                .copied()
                .unwrap_or_default();
            let shared = Shared {
                replicas,
                month: own.month,
                global_settled: theirs.settled.saturating_add(mine.settled),
                own_settled: mine.settled,
                own_spend_usage: mine.settled.saturating_add(mine.reserved),
                others_spend_claims: theirs.spend_claims,
                minute: own.minute,
                global_requests: theirs.requests.saturating_add(mine.requests),
                own_requests: mine.requests,
                others_request_claims: theirs.request_claims,
                others_unclaimed_spend: (replicas - 1).saturating_sub(theirs.live_with_month),
                others_unclaimed_requests: (replicas - 1).saturating_sub(theirs.live_with_minute),
            };
            let counters = self.counters(org, env);
            let mut state = lock(&counters.state);
            state.shared = shared;
            if own_envs.contains_key(&(org, env)) {
                let spend_claim = state.cap.map_or(shared.own_spend_usage, |cap| {
                    shared.spend_allowance(own.month, cap)
                });
                let request_claim = state.rpm_limit.map_or(mine.requests, |limit| {
                    shared.request_allowance(own.minute, u64::from(limit))
                });
                claims.push((org, env, spend_claim, request_claim));
            }
        }
        let own_projects: FxHashMap<(Uuid, Uuid), u64> = own
            .projects
            .iter()
            .map(|(org, project, settled)| ((*org, *project), *settled))
            .collect();
        for (&(org, project), &global_settled) in &others.projects {
            let spend = self.project(org, project);
            let mut spend = lock(&spend);
            spend.shared_month = own.month;
            spend.global_settled = global_settled;
            spend.own_at_exchange = own_projects.get(&(org, project)).copied().unwrap_or(0);
        }
        claims
    }
}

/// How the exchange's connections name themselves in `pg_stat_activity`.
const APPLICATION_NAME: &str = "floopy-gateway";

/// The background service running the exchange.
pub struct UsageExchange {
    pub db: DbConfig,
    /// This process's id in the exchange: the gateway id and a random part,
    /// new at every start (a restarted replica's old rows still count).
    pub replica: String,
    pub limiter: Arc<Limiter>,
    pub metrics: Arc<Metrics>,
    pub interval: Duration,
}

impl UsageExchange {
    /// One exchange on `conn`.
    pub async fn exchange_once(&self, conn: &Connection) -> Result<(), tokio_postgres::Error> {
        let own = self.limiter.own_usage();
        let others = write_and_read(conn, &self.replica, &own).await?;
        let claims = self.limiter.apply_exchange(&own, &others);
        publish_claims(conn, &self.replica, own.month, &claims).await?;
        self.metrics.usage_exchanges.inc();
        Ok(())
    }

    /// Connects and exchanges until the connection fails.
    async fn session(&self) -> Result<(), ControlError> {
        let conn = self.db.connect(APPLICATION_NAME, CONNECT_TIMEOUT).await?;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.exchange_once(&conn).await {
                return Err(conn.error(e));
            }
        }
    }

    /// One exchange on a connection of its own: at start (to know the
    /// totals before serving) and at shutdown (so the spend of the last
    /// requests is in the database).
    pub async fn exchange_now(&self) {
        match self.db.connect(APPLICATION_NAME, CONNECT_TIMEOUT).await {
            Ok(conn) => {
                if let Err(e) = self.exchange_once(&conn).await {
                    tracing::error!(error = %e, "final usage exchange failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "final usage exchange failed"),
        }
    }
}

#[async_trait]
impl BackgroundService for UsageExchange {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                result = self.session() => {
                    if let Err(e) = result {
                        self.metrics.usage_exchange_errors.inc();
                        tracing::warn!(error = %e, "usage exchange failed; enforcing with the last known totals");
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::clock::{month_start_ms, FakeClock};
    use floopy_control_db::exchange::OthersEnv;
    use floopy_model::EnvironmentLimits;

    #[test]
    fn two_replicas_exchanging_hold_one_cap() {
        let org = Uuid::from_u128(1);
        let env = Environment::Production;
        let clock = Arc::new(FakeClock::at(month_start_ms(2026, 11) + 1_000));
        let a = Limiter::new(clock.clone());
        let b = Limiter::new(clock.clone());
        let limits = EnvironmentLimits {
            org_id: org,
            environment: env,
            rpm: None,
            monthly_cost_micro_usd: Some(10_000),
        };
        // The database, reduced to what each replica would read: the
        // others' settled spend and claims.
        let claims: std::cell::RefCell<FxHashMap<usize, u64>> = Default::default();
        let exchange = |replicas: &[&Limiter]| {
            let owns: Vec<OwnUsage> = replicas.iter().map(|l| l.own_usage()).collect();
            for (i, l) in replicas.iter().enumerate() {
                let mut theirs = OthersEnv {
                    live_with_month: replicas.len() as u32 - 1,
                    live_with_minute: replicas.len() as u32 - 1,
                    ..OthersEnv::default()
                };
                for (j, own) in owns.iter().enumerate().filter(|(j, _)| *j != i) {
                    for u in &own.environments {
                        theirs.settled += u.settled;
                        let claim = claims.borrow().get(&j).copied().unwrap_or(0);
                        theirs.spend_claims += claim.max(u.settled);
                    }
                }
                let mut others = OthersUsage {
                    replicas: replicas.len() as u32,
                    ..OthersUsage::default()
                };
                others.environments.insert((org, env), theirs);
                for (_, _, spend_claim, _) in l.apply_exchange(&owns[i], &others) {
                    claims.borrow_mut().insert(i, spend_claim);
                }
            }
        };
        let _ = a.counters(org, env);
        let _ = b.counters(org, env);
        exchange(&[&a, &b]);
        let mut admitted = 0;
        for round in 0..50 {
            for l in [&a, &b] {
                if let Ok(adm) = l.admit(org, env, Some(&limits), 100) {
                    admitted += 1;
                    l.settle(adm, org, None, Some(10_000), 100);
                }
            }
            if round % 5 == 4 {
                exchange(&[&a, &b]);
            }
        }
        exchange(&[&a, &b]);
        let total = a.environment_spend(org, env);
        assert_eq!(
            total,
            b.environment_spend(org, env),
            "both see the same total"
        );
        assert!(
            total <= 10_000,
            "the replicas together held the cap: {total}"
        );
        assert!(total >= 9_000, "and used most of it: {total}");
        assert_eq!(admitted * 100, total);
    }
}
