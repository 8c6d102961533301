//! `environment_limits`: an org's requests per minute and monthly cost cap
//! per environment, which every gateway enforces. The spend shown beside
//! them is the gateways' settled spend (`replica_usage`, written by the
//! limits exchange).

use floopy_model::{format_usd, Environment};
use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::{audit, parsed, Actor, DbError};

#[derive(Debug, Clone, Serialize)]
pub struct LimitsRow {
    pub environment: Environment,
    /// Requests per minute, all keys of the environment together.
    pub rpm: Option<i32>,
    /// The monthly cost cap in USD, exact to the micro-dollar.
    pub monthly_cost_usd: Option<String>,
}

fn usd(micro: i64) -> String {
    format_usd(u64::try_from(micro).unwrap_or(0))
}

fn row(row: &Row) -> Result<LimitsRow, DbError> {
    let cost: Option<i64> = row.try_get("monthly_cost_micro_usd")?;
    Ok(LimitsRow {
        environment: parsed(row, "environment", Environment::parse)?,
        rpm: row.try_get("rpm")?,
        monthly_cost_usd: cost.map(usd),
    })
}

/// Every environment in order, with its limits (none set: both absent) and
/// the org's settled spend in it this UTC month, in USD.
pub async fn list_with_spend(db: &Client, org: Uuid) -> Result<Vec<(LimitsRow, String)>, DbError> {
    Ok(with_spend(db, org, None)
        .await?
        .into_iter()
        .map(|(limits, spent)| (limits.row, usd(spent)))
        .collect())
}

/// An environment's limits, with its monthly cap in micro-USD.
pub struct Limits {
    pub row: LimitsRow,
    pub monthly_cost_micro_usd: Option<u64>,
}

/// Every environment in order, with its limits and the org's settled spend
/// in it in `month` (`YYYYMM`; none: this UTC month), in micro-USD.
pub async fn with_spend(
    db: &Client,
    org: Uuid,
    month: Option<i32>,
) -> Result<Vec<(Limits, i64)>, DbError> {
    let environments: Vec<&str> = Environment::ALL.iter().map(|e| e.as_str()).collect();
    let rows = db
        .query(
            "SELECT e.name AS environment, l.rpm, l.monthly_cost_micro_usd,
                    COALESCE((SELECT sum(u.settled_micro_usd) FROM replica_usage u
                               WHERE u.org_id = $1 AND u.environment::text = e.name
                                 AND u.month = COALESCE($3::int,
                                     to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')::int)),
                             0)::bigint AS spent
               FROM unnest($2::text[]) WITH ORDINALITY AS e (name, n)
               LEFT JOIN environment_limits l
                 ON l.org_id = $1 AND l.environment::text = e.name
              ORDER BY e.n",
            &[&org, &environments, &month],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let cap: Option<i64> = r.try_get("monthly_cost_micro_usd")?;
            let limits = Limits {
                row: row(r)?,
                monthly_cost_micro_usd: cap.map(|c| u64::try_from(c).unwrap_or(0)),
            };
            Ok((limits, r.try_get("spent")?))
        })
        .collect()
}

/// Sets both limits of `environment` (an absent one is removed)
/// (`limits.set`).
pub async fn set(
    tx: &Transaction<'_>,
    actor: Actor,
    org: Uuid,
    environment: Environment,
    rpm: Option<i32>,
    monthly_cost_micro_usd: Option<i64>,
) -> Result<LimitsRow, DbError> {
    let before = tx
        .query_opt(
            "SELECT environment::text AS environment, rpm, monthly_cost_micro_usd
               FROM environment_limits
              WHERE org_id = $1 AND environment = $2::text::floopy_environment FOR UPDATE",
            &[&org, &environment.as_str()],
        )
        .await?
        .as_ref()
        .map(row)
        .transpose()?;
    let after = tx
        .query_one(
            "INSERT INTO environment_limits (org_id, environment, rpm, monthly_cost_micro_usd)
             VALUES ($1, $2::text::floopy_environment, $3, $4)
             ON CONFLICT (org_id, environment)
             DO UPDATE SET rpm = EXCLUDED.rpm, monthly_cost_micro_usd = EXCLUDED.monthly_cost_micro_usd
             RETURNING environment::text AS environment, rpm, monthly_cost_micro_usd",
            &[&org, &environment.as_str(), &rpm, &monthly_cost_micro_usd],
        )
        .await?;
    let after = row(&after)?;
    let entry = audit::Entry {
        action: "limits.set",
        object_type: "environment_limits",
        object_id: environment.to_string(),
        before: before.as_ref().and_then(audit::snapshot),
        after: audit::snapshot(&after),
    };
    audit::record(tx, actor, entry).await?;
    Ok(after)
}

/// Removes `environment`'s limits (`limits.remove`); what they were, `None`
/// when there were none.
pub async fn remove(
    tx: &Transaction<'_>,
    actor: Actor,
    org: Uuid,
    environment: Environment,
) -> Result<Option<LimitsRow>, DbError> {
    let Some(before) = tx
        .query_opt(
            "DELETE FROM environment_limits WHERE org_id = $1 AND environment = $2::text::floopy_environment
             RETURNING environment::text AS environment, rpm, monthly_cost_micro_usd",
            &[&org, &environment.as_str()],
        )
        .await?
    else {
        return Ok(None);
    };
    let before = row(&before)?;
    let entry = audit::Entry {
        action: "limits.remove",
        object_type: "environment_limits",
        object_id: environment.to_string(),
        before: audit::snapshot(&before),
        after: None,
    };
    audit::record(tx, actor, entry).await?;
    Ok(Some(before))
}
