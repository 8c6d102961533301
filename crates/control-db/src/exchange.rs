//! The limits exchange's SQL: each replica writes its own cumulative
//! month-to-date spend and current-minute request count (replacing its rows,
//! so a retried exchange never counts twice), marks itself live, reads back
//! what the others wrote, and publishes its claims. The arithmetic that turns
//! these figures into claims is the gateway's (`limits::shared`); this module
//! only moves them in and out of `replica_usage`, `replica_project_usage`,
//! `replicas` (migration 0002) and `replica_project_daily_usage` (0005, the
//! days that budgets sum).

use floopy_model::Environment;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::connect::Connection;

/// A replica is live while it exchanged within this many seconds.
pub const LIVE_SECONDS: f64 = 5.0;

/// One replica's own figures at one exchange.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OwnUsage {
    pub month: u32,
    pub minute: u64,
    pub environments: Vec<EnvUsage>,
    /// (org, project, settled this month)
    pub projects: Vec<(Uuid, Uuid, u64)>,
    /// (org, project, day as `yyyymmdd`, settled that day): today's and the
    /// day before's, for budgets over days and weeks.
    pub project_days: Vec<(Uuid, Uuid, u32, u64)>,
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
    if !own.project_days.is_empty() {
        let orgs: Vec<Uuid> = own.project_days.iter().map(|p| p.0).collect();
        let projects: Vec<Uuid> = own.project_days.iter().map(|p| p.1).collect();
        let days: Vec<i32> = own
            .project_days
            .iter()
            .map(|p| i32::try_from(p.2).unwrap_or(i32::MAX))
            .collect();
        let settled: Vec<i64> = own.project_days.iter().map(|p| to_i64(p.3)).collect();
        client
            .execute(
                "INSERT INTO replica_project_daily_usage (replica, org_id, project_id, day, settled_micro_usd, updated_at)
                 SELECT $1, o, p, d, s, now()
                   FROM unnest($2::uuid[], $3::uuid[], $4::int[], $5::bigint[]) AS t(o, p, d, s)
                 ON CONFLICT (org_id, day, project_id, replica) DO UPDATE
                   SET settled_micro_usd = EXCLUDED.settled_micro_usd, updated_at = now()
                 WHERE replica_project_daily_usage.settled_micro_usd <> EXCLUDED.settled_micro_usd",
                &[&replica, &orgs, &projects, &days, &settled],
            )
            .await?;
    }
    let live: i64 = client
        .query_one(
            "WITH beat AS (
                 INSERT INTO replicas (replica, last_seen) VALUES ($1, now())
                 ON CONFLICT (replica) DO UPDATE SET last_seen = now()
             )
             SELECT count(*) + 1 AS live FROM replicas
              WHERE replica <> $1 AND last_seen > now() - make_interval(secs => $2)",
            &[&replica, &LIVE_SECONDS],
        )
        .await?
        .try_get("live")?;
    let mut others = OthersUsage {
        replicas: u32::try_from(live).unwrap_or(1).max(1),
        ..OthersUsage::default()
    };
    // A live replica may reach its claim; one that stopped has what it
    // settled (its reservations ended with it).
    for row in client
        .query(
            "SELECT u.org_id, u.environment::text AS environment,
                    sum(u.settled_micro_usd)::bigint AS settled,
                    sum(CASE WHEN r.last_seen > now() - make_interval(secs => $4)
                             THEN greatest(u.settled_micro_usd, u.spend_claim)
                             ELSE u.settled_micro_usd END)::bigint AS spend_claims,
                    sum(CASE WHEN u.minute = $2 THEN u.rpm_count ELSE 0 END)::bigint AS requests,
                    sum(CASE WHEN u.minute <> $2 THEN 0
                             WHEN r.last_seen > now() - make_interval(secs => $4)
                             THEN greatest(u.rpm_count, u.rpm_claim)
                             ELSE u.rpm_count END)::bigint AS request_claims,
                    count(DISTINCT u.replica) FILTER
                        (WHERE r.last_seen > now() - make_interval(secs => $4)) AS live_with_month,
                    count(DISTINCT u.replica) FILTER
                        (WHERE r.last_seen > now() - make_interval(secs => $4) AND u.minute = $2)
                        AS live_with_minute
               FROM replica_usage u LEFT JOIN replicas r ON r.replica = u.replica
              WHERE u.month = $1 AND u.replica <> $3
              GROUP BY 1, 2",
            &[&month, &minute, &replica, &LIVE_SECONDS],
        )
        .await?
    {
        let env: String = row.try_get("environment")?;
        if let Some(env) = Environment::parse(&env) {
            others.environments.insert(
                (row.try_get("org_id")?, env),
                OthersEnv {
                    settled: to_u64(row.try_get("settled")?),
                    spend_claims: to_u64(row.try_get("spend_claims")?),
                    requests: to_u64(row.try_get("requests")?),
                    request_claims: to_u64(row.try_get("request_claims")?),
                    live_with_month: u32::try_from(row.try_get::<_, i64>("live_with_month")?)
                        .unwrap_or(0),
                    live_with_minute: u32::try_from(row.try_get::<_, i64>("live_with_minute")?)
                        .unwrap_or(0),
                },
            );
        }
    }
    for row in client
        .query(
            "SELECT org_id, project_id, sum(settled_micro_usd)::bigint AS settled
               FROM replica_project_usage WHERE month = $1 GROUP BY 1, 2",
            &[&month],
        )
        .await?
    {
        others.projects.insert(
            (row.try_get("org_id")?, row.try_get("project_id")?),
            to_u64(row.try_get("settled")?),
        );
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

/// Forgets the settled spend by day before `day` (`YYYYMMDD`): the budget
/// evaluator keeps only what its longest period needs.
pub async fn forget_daily_usage_before(
    tx: &tokio_postgres::Transaction<'_>,
    day: i32,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM replica_project_daily_usage WHERE day < $1",
        &[&day],
    )
    .await?;
    Ok(())
}
