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
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::clock::month_of;
use super::shared::Shared;
use super::{lock, Limiter};
use crate::control::postgres::{connect, Connection, ControlError};
use crate::metrics::Metrics;
use crate::model::Environment;

/// A replica is live while it exchanged within this many seconds.
const LIVE_SECONDS: f64 = 5.0;

/// One replica's own figures at one exchange.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OwnUsage {
    pub month: u32,
    pub minute: u64,
    pub environments: Vec<EnvUsage>,
    /// (org, project, settled this month)
    pub projects: Vec<(Uuid, Uuid, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvUsage {
    pub org: Uuid,
    pub env: Environment,
    /// Settled this month.
    pub settled: u64,
    /// Reserved by requests in flight.
    pub reserved: u64,
    /// Requests this minute.
    pub requests: u64,
}

/// What the other replicas wrote, read back at one exchange.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OthersUsage {
    /// Live replicas, this one included.
    pub replicas: u32,
    pub environments: FxHashMap<(Uuid, Environment), OthersEnv>,
    /// All replicas' settled spend per project, this one's included.
    pub projects: FxHashMap<(Uuid, Uuid), u64>,
}

/// The other replicas' figures for one (org, environment).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OthersEnv {
    pub settled: u64,
    /// Claims of live replicas (at least their settled), settled spend of
    /// the others.
    pub spend_claims: u64,
    pub requests: u64,
    pub request_claims: u64,
    /// Live other replicas with a row for this month / for this minute.
    pub live_with_month: u32,
    pub live_with_minute: u32,
}

/// A claim to publish: (org, environment, spend claim, request claim).
pub type Claim = (Uuid, Environment, u64, u64);

impl Limiter {
    /// This replica's figures for the current month and minute.
    pub fn own_usage(&self) -> OwnUsage {
        let now = self.now_ms();
        let month = month_of(now);
        let minute = now / 60_000;
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

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn to_u64(v: Option<i64>) -> u64 {
    v.map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

/// Writes `own` under `replica`, marks it live, and reads the others back.
pub async fn write_and_read(
    conn: &Connection,
    replica: &str,
    own: &OwnUsage,
) -> Result<OthersUsage, tokio_postgres::Error> {
    let client = &conn.client;
    let month = i32::try_from(own.month).unwrap_or(i32::MAX);
    let minute = to_i64(own.minute);
    if !own.environments.is_empty() {
        let orgs: Vec<Uuid> = own.environments.iter().map(|e| e.org).collect();
        let envs: Vec<&str> = own.environments.iter().map(|e| e.env.as_str()).collect();
        let settled: Vec<i64> = own.environments.iter().map(|e| to_i64(e.settled)).collect();
        let requests: Vec<i32> = own
            .environments
            .iter()
            .map(|e| to_i32(e.requests))
            .collect();
        client
            .execute(
                "INSERT INTO replica_usage
                     (replica, org_id, environment, month, settled_micro_usd, minute, rpm_count, updated_at)
                 SELECT $1, o, e::floopy_environment, $2, s, $3, c, now()
                   FROM unnest($4::uuid[], $5::text[], $6::bigint[], $7::int[]) AS t(o, e, s, c)
                 ON CONFLICT (org_id, environment, month, replica) DO UPDATE
                   SET settled_micro_usd = EXCLUDED.settled_micro_usd,
                       rpm_claim = CASE WHEN replica_usage.minute = EXCLUDED.minute
                                        THEN replica_usage.rpm_claim ELSE 0 END,
                       minute = EXCLUDED.minute,
                       rpm_count = EXCLUDED.rpm_count,
                       updated_at = now()",
                &[&replica, &month, &minute, &orgs, &envs, &settled, &requests],
            )
            .await?;
    }
    if !own.projects.is_empty() {
        let orgs: Vec<Uuid> = own.projects.iter().map(|p| p.0).collect();
        let projects: Vec<Uuid> = own.projects.iter().map(|p| p.1).collect();
        let settled: Vec<i64> = own.projects.iter().map(|p| to_i64(p.2)).collect();
        client
            .execute(
                "INSERT INTO replica_project_usage (replica, org_id, project_id, month, settled_micro_usd, updated_at)
                 SELECT $1, o, p, $2, s, now()
                   FROM unnest($3::uuid[], $4::uuid[], $5::bigint[]) AS t(o, p, s)
                 ON CONFLICT (org_id, project_id, month, replica) DO UPDATE
                   SET settled_micro_usd = EXCLUDED.settled_micro_usd, updated_at = now()",
                &[&replica, &month, &orgs, &projects, &settled],
            )
            .await?;
    }
    let live: i64 = client
        .query_one(
            "WITH beat AS (
                 INSERT INTO replicas (replica, last_seen) VALUES ($1, now())
                 ON CONFLICT (replica) DO UPDATE SET last_seen = now()
             )
             SELECT count(*) + 1 FROM replicas
              WHERE replica <> $1 AND last_seen > now() - make_interval(secs => $2)",
            &[&replica, &LIVE_SECONDS],
        )
        .await?
        .get(0);
    let mut others = OthersUsage {
        replicas: u32::try_from(live).unwrap_or(1).max(1),
        ..OthersUsage::default()
    };
    // A live replica may reach its claim; one that stopped has what it
    // settled (its reservations ended with it).
    for row in client
        .query(
            "SELECT u.org_id, u.environment::text,
                    sum(u.settled_micro_usd)::bigint,
                    sum(CASE WHEN r.last_seen > now() - make_interval(secs => $4)
                             THEN greatest(u.settled_micro_usd, u.spend_claim)
                             ELSE u.settled_micro_usd END)::bigint,
                    sum(CASE WHEN u.minute = $2 THEN u.rpm_count ELSE 0 END)::bigint,
                    sum(CASE WHEN u.minute <> $2 THEN 0
                             WHEN r.last_seen > now() - make_interval(secs => $4)
                             THEN greatest(u.rpm_count, u.rpm_claim)
                             ELSE u.rpm_count END)::bigint,
                    count(DISTINCT u.replica) FILTER
                        (WHERE r.last_seen > now() - make_interval(secs => $4)),
                    count(DISTINCT u.replica) FILTER
                        (WHERE r.last_seen > now() - make_interval(secs => $4) AND u.minute = $2)
               FROM replica_usage u LEFT JOIN replicas r ON r.replica = u.replica
              WHERE u.month = $1 AND u.replica <> $3
              GROUP BY 1, 2",
            &[&month, &minute, &replica, &LIVE_SECONDS],
        )
        .await?
    {
        let env: String = row.get(1);
        if let Some(env) = Environment::parse(&env) {
            others.environments.insert(
                (row.get(0), env),
                OthersEnv {
                    settled: to_u64(row.get(2)),
                    spend_claims: to_u64(row.get(3)),
                    requests: to_u64(row.get(4)),
                    request_claims: to_u64(row.get(5)),
                    live_with_month: u32::try_from(row.get::<_, i64>(6)).unwrap_or(0),
                    live_with_minute: u32::try_from(row.get::<_, i64>(7)).unwrap_or(0),
                },
            );
        }
    }
    for row in client
        .query(
            "SELECT org_id, project_id, sum(settled_micro_usd)::bigint
               FROM replica_project_usage WHERE month = $1 GROUP BY 1, 2",
            &[&month],
        )
        .await?
    {
        others
            .projects
            .insert((row.get(0), row.get(1)), to_u64(row.get(2)));
    }
    Ok(others)
}

/// Publishes this replica's claims (after reading the others': the order
/// the claim rule needs).
pub async fn publish_claims(
    conn: &Connection,
    replica: &str,
    month: u32,
    claims: &[Claim],
) -> Result<(), tokio_postgres::Error> {
    if claims.is_empty() {
        return Ok(());
    }
    let month = i32::try_from(month).unwrap_or(i32::MAX);
    let orgs: Vec<Uuid> = claims.iter().map(|c| c.0).collect();
    let envs: Vec<&str> = claims.iter().map(|c| c.1.as_str()).collect();
    let spend: Vec<i64> = claims.iter().map(|c| to_i64(c.2)).collect();
    let requests: Vec<i32> = claims.iter().map(|c| to_i32(c.3)).collect();
    conn.client
        .execute(
            "UPDATE replica_usage u SET spend_claim = t.s, rpm_claim = t.c
               FROM unnest($3::uuid[], $4::text[], $5::bigint[], $6::int[]) AS t(o, e, s, c)
              WHERE u.replica = $1 AND u.month = $2
                AND u.org_id = t.o AND u.environment = t.e::floopy_environment",
            &[&replica, &month, &orgs, &envs, &spend, &requests],
        )
        .await?;
    Ok(())
}

/// The background service running the exchange.
pub struct UsageExchange {
    pub url: String,
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
        let conn = connect(&self.url, Duration::from_secs(5)).await?;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.exchange_once(&conn).await {
                return Err(ControlError::Database {
                    target: crate::control::postgres::describe(&self.url),
                    source: e,
                });
            }
        }
    }

    /// One exchange on a connection of its own: at start (to know the
    /// totals before serving) and at shutdown (so the spend of the last
    /// requests is in the database).
    pub async fn exchange_now(&self) {
        match connect(&self.url, Duration::from_secs(5)).await {
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
    use crate::model::EnvironmentLimits;

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
