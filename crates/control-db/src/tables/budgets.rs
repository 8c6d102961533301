//! `budgets` and `budget_periods`: spend limits over a day, a week or a
//! month, their thresholds, and each period's spend and breach.

use floopy_model::Period;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::DbError;

/// SQL for the first day of the current period of the budget or rule
/// `alias` at `now_ms` (a CASE of three integer literals).
pub fn current_period_sql(alias: &str, now_ms: u64) -> String {
    let first = |p: Period| p.days(now_ms).0;
    format!(
        "(CASE {alias}.period WHEN 'day' THEN {} WHEN 'week' THEN {} ELSE {} END)",
        first(Period::Day),
        first(Period::Week),
        first(Period::Month)
    )
}

/// Clears the breach of the budget's current period, so that it alerts
/// and revokes again if its spend passes its amount again.
pub async fn rearm(tx: &Transaction<'_>, budget: Uuid) -> Result<(), DbError> {
    tx.execute(
        &format!(
            "UPDATE budget_periods p SET breached_at = NULL FROM budgets b
              WHERE b.id = $1 AND p.budget_id = b.id AND p.period = {}",
            current_period_sql("b", floopy_model::calendar::now_ms())
        ),
        &[&budget],
    )
    .await?;
    Ok(())
}
