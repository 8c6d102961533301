//! The budget evaluator: once per tick, across every floopy-control replica
//! (whoever takes the advisory lock for that tick does the work; the others
//! skip it), each budget's spend in its current period is read from the
//! gateways' exchanged spend (`replica_project_usage`: every replica's
//! settled spend per project, exact to the micro-dollar), its thresholds
//! crossed for the first time in the period are recorded (each fires once
//! per period), and a breached `alert_and_revoke` budget revokes the keys of
//! its scope: a project's keys locked to it or defaulting to it, an org's
//! every key. The revocation reaches every gateway through the database's
//! change notification, like any other.
//!
//! Periods are UTC calendar months (`year * 100 + month`, as the exchange
//! keeps them).

use std::time::Duration;

use tokio_postgres::Client;
use uuid::Uuid;

use crate::error::ApiError;

/// An arbitrary constant naming the evaluator's lock.
const EVALUATOR_LOCK: i64 = 0x666c_6f6f_7062;

/// The current period of a budget: `year * 100 + month`, UTC.
pub const CURRENT_PERIOD_SQL: &str = "to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')::int";

/// The thresholds (percent of `amount`) that `spent` has reached.
pub fn reached(spent: i64, amount: i64, thresholds: &[i32]) -> Vec<i32> {
    thresholds
        .iter()
        .copied()
        .filter(|t| i128::from(spent) * 100 >= i128::from(amount) * i128::from(*t))
        .collect()
}

/// One evaluation, if this replica holds the tick's lock; how many keys it
/// revoked.
pub async fn evaluate(db: &mut Client) -> Result<u64, ApiError> {
    let tx = db.transaction().await?;
    let mine: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&EVALUATOR_LOCK])
        .await?
        .get(0);
    if !mine {
        return Ok(0);
    }
    let rows = tx
        .query(
            &format!(
                "SELECT b.id, b.org_id, b.project_id, b.amount_micro_usd, b.thresholds, b.action,
                        {CURRENT_PERIOD_SQL},
                        coalesce((SELECT sum(u.settled_micro_usd) FROM replica_project_usage u
                                   WHERE u.org_id = b.org_id AND u.month = {CURRENT_PERIOD_SQL}
                                     AND (b.project_id IS NULL OR u.project_id = b.project_id)),
                                 0)::bigint,
                        coalesce(p.fired, '{{}}'), p.breached_at IS NOT NULL
                   FROM budgets b
                   LEFT JOIN budget_periods p
                     ON p.budget_id = b.id AND p.period = {CURRENT_PERIOD_SQL}"
            ),
            &[],
        )
        .await?;
    let mut revoked = 0;
    for row in rows {
        let (budget, org, project): (Uuid, Uuid, Option<Uuid>) =
            (row.get(0), row.get(1), row.get(2));
        let (amount, thresholds, action): (i64, Vec<i32>, String) =
            (row.get(3), row.get(4), row.get(5));
        let (period, spent, fired, breached): (i32, i64, Vec<i32>, bool) =
            (row.get(6), row.get(7), row.get(8), row.get(9));
        let now_reached = reached(spent, amount, &thresholds);
        let newly: Vec<i32> = now_reached
            .iter()
            .copied()
            .filter(|t| !fired.contains(t))
            .collect();
        let breach = spent >= amount && !breached;
        tx.execute(
            "INSERT INTO budget_periods (budget_id, period, spent_micro_usd, fired, breached_at)
             VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)
             ON CONFLICT (budget_id, period) DO UPDATE
               SET spent_micro_usd = EXCLUDED.spent_micro_usd,
                   fired = (SELECT array_agg(DISTINCT t ORDER BY t)
                              FROM unnest(budget_periods.fired || EXCLUDED.fired) AS t),
                   breached_at = coalesce(budget_periods.breached_at, EXCLUDED.breached_at)",
            &[&budget, &period, &spent, &now_reached, &breach],
        )
        .await?;
        for threshold in &newly {
            record(
                &tx,
                org,
                "budget.threshold",
                budget,
                serde_json::json!({
                    "period": period, "threshold_percent": threshold, "spent_micro_usd": spent,
                    "amount_micro_usd": amount,
                }),
            )
            .await?;
        }
        if breach && action == "alert_and_revoke" {
            let n = tx
                .execute(
                    "UPDATE api_keys SET revoked_at = now(), revoked_by_budget = $1
                      WHERE org_id = $2 AND revoked_at IS NULL
                        AND ($3::uuid IS NULL OR project_id = $3 OR default_project_id = $3)",
                    &[&budget, &org, &project],
                )
                .await?;
            revoked += n;
            record(
                &tx,
                org,
                "budget.revoke",
                budget,
                serde_json::json!({
                    "period": period, "spent_micro_usd": spent, "amount_micro_usd": amount,
                    "keys_revoked": n,
                }),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(revoked)
}

async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    org: Uuid,
    action: &str,
    budget: Uuid,
    after: serde_json::Value,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO audit_log (id, org_id, actor_id, action, object_type, object_id, after)
         VALUES ($1, $2, NULL, $3, 'budget', $4, $5::text::jsonb)",
        &[
            &Uuid::now_v7(),
            &org,
            &action,
            &budget.to_string(),
            &after.to_string(),
        ],
    )
    .await?;
    Ok(())
}

/// Runs the evaluator every `every` on a connection of its own, until the
/// process ends; errors are logged and the next tick tries again.
pub async fn run(state: crate::app::AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    loop {
        tick.tick().await;
        if conn.is_none() {
            match state
                .config
                .db
                .connect("floopy-control-budgets", Duration::from_secs(5))
                .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "budget evaluator cannot connect; retrying");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match evaluate(&mut c.client).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(keys = n, "budgets breached: keys revoked"),
            Err(e) => {
                tracing::warn!(error = %e, "budget evaluation failed; retrying");
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_reached_exactly_at_their_percent() {
        assert_eq!(reached(499, 1000, &[50, 80, 100]), Vec::<i32>::new());
        assert_eq!(reached(500, 1000, &[50, 80, 100]), [50]);
        assert_eq!(reached(800, 1000, &[50, 80, 100]), [50, 80]);
        assert_eq!(reached(1000, 1000, &[50, 80, 100]), [50, 80, 100]);
        assert_eq!(reached(i64::MAX, 1, &[100]), [100], "no overflow");
        assert_eq!(
            reached(0, 0, &[100]),
            [100],
            "a budget of 0 is reached at once"
        );
    }
}
