//! The budget evaluator: once per tick, across every floopy-control replica
//! (whoever takes the advisory lock for that tick does the work; the others
//! skip it), each budget's and each alert rule's spend in its current period
//! is summed from the gateways' exchanged spend per project and day
//! (`replica_project_daily_usage`: every replica's settled spend, exact to
//! the micro-dollar). A threshold crossed for the first time in the period
//! fires an alert: a row in `alerts`, unique per (budget or rule, period,
//! threshold), which `webhooks` delivers. A breached `alert_and_revoke`
//! budget revokes the keys of its scope: a project's keys locked to it or
//! defaulting to it, an org's every key; each revocation fires an alert of
//! its own (`budget.keys_revoked`), a second breach in the period included. The revocation reaches every
//! gateway through the database's change notification, like any other.
//! Everything one evaluation decides commits in one transaction, so a
//! database cut mid-way fires nothing twice: the next tick starts over.
//!
//! The time is a parameter (`evaluate(db, now_ms)`), so period boundaries
//! are tested by passing a time. Periods are UTC days, ISO weeks from
//! Monday, and calendar months, each known by its first day (`20261101`).

use std::time::Duration;

use floopy_control_db::tables::{alerts, audit, budgets, keys};
use floopy_control_db::Actor;
use floopy_model::calendar::{day_of, iso_date, Period};
use floopy_model::format_usd;
use tokio_postgres::{Client, Transaction};

use crate::jobs::{take_tick, JobError};

/// An arbitrary constant naming the evaluator's lock.
const EVALUATOR_LOCK: i64 = 0x666c_6f6f_7062;

/// Spend by day is kept this many days (a month or a week needs at most 31).
const KEEP_DAYS_MS: u64 = 62 * 86_400_000;

pub use floopy_control_db::tables::budgets::current_period_sql;
pub use floopy_model::calendar::now_ms;

/// The thresholds (percent of `amount`) that `spent` has reached.
pub fn reached(spent: i64, amount: i64, thresholds: &[i32]) -> Vec<i32> {
    thresholds
        .iter()
        .copied()
        .filter(|t| i128::from(spent) * 100 >= i128::from(amount) * i128::from(*t))
        .collect()
}

/// What one evaluation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// Whether this replica held the tick's lock.
    pub ran: bool,
    pub alerts_fired: u64,
    pub keys_revoked: u64,
}

/// One evaluation at `now_ms`, if this replica holds the tick's lock.
pub async fn evaluate(db: &mut Client, now_ms: u64) -> Result<Evaluation, JobError> {
    let tx = db.transaction().await?;
    if !take_tick(&tx, EVALUATOR_LOCK).await? {
        return Ok(Evaluation::default());
    }
    let mut done = Evaluation {
        ran: true,
        ..Evaluation::default()
    };
    let kinds: Vec<&str> = Period::ALL.iter().map(|p| p.as_str()).collect();
    let firsts: Vec<i32> = Period::ALL.iter().map(|p| key(p.days(now_ms).0)).collect();
    let nexts: Vec<i32> = Period::ALL.iter().map(|p| key(p.days(now_ms).1)).collect();
    let periods = budgets::Periods {
        kinds: &kinds,
        firsts: &firsts,
        nexts: &nexts,
    };
    for budget in budgets::evaluated(&tx, &periods).await? {
        Budget(budget).evaluate(&tx, now_ms, &mut done).await?;
    }
    for rule in alerts::rules_reached(&tx, &periods).await? {
        let (kind, first, next) = &rule.period;
        let body = serde_json::json!({
            "type": "alert_rule.triggered",
            "org_id": rule.org_id,
            "project_id": rule.project_id,
            "alert_rule": {"id": rule.id, "name": rule.name, "threshold_usd": usd(rule.threshold_micro_usd)},
            "period": period_json(kind, *first, *next),
            "spent_usd": usd(rule.spent_micro_usd),
        });
        let alert = alerts::NewAlert {
            org_id: rule.org_id,
            project_id: rule.project_id,
            source: "rule",
            source_id: rule.id,
            period: *first,
            threshold: 100,
            revocation: 0,
            webhook: true,
        };
        done.alerts_fired += u64::from(alerts::fire(&tx, &alert, now_ms, body).await?);
    }
    let oldest = key(day_of(now_ms.saturating_sub(KEEP_DAYS_MS)));
    floopy_control_db::exchange::forget_daily_usage_before(&tx, oldest).await?;
    tx.commit().await?;
    Ok(done)
}

fn key(day: u32) -> i32 {
    i32::try_from(day).unwrap_or(i32::MAX)
}

fn usd(micro: i64) -> String {
    format_usd(u64::try_from(micro).unwrap_or(0))
}

fn period_json(kind: &str, first: i32, next: i32) -> serde_json::Value {
    let date = |d: i32| iso_date(u32::try_from(d).unwrap_or(0));
    serde_json::json!({"kind": kind, "start": date(first), "end": date(next)})
}

/// One budget as the evaluator reads it.
struct Budget(budgets::EvaluatedBudget);

impl Budget {
    async fn evaluate(
        &self,
        tx: &Transaction<'_>,
        now_ms: u64,
        done: &mut Evaluation,
    ) -> Result<(), JobError> {
        let (kind, first, next) = (&self.0.period.0, self.0.period.1, self.0.period.2);
        let now_reached = reached(
            self.0.spent_micro_usd,
            self.0.amount_micro_usd,
            &self.0.thresholds,
        );
        let newly: Vec<i32> = now_reached
            .iter()
            .copied()
            .filter(|t| !self.0.fired.contains(t))
            .collect();
        let breach = self.0.spent_micro_usd >= self.0.amount_micro_usd && !self.0.breached;
        budgets::record_period(
            tx,
            self.0.id,
            first,
            self.0.spent_micro_usd,
            &now_reached,
            breach,
        )
        .await?;
        let mut revoked = None;
        if breach && self.0.action == "alert_and_revoke" {
            let n =
                keys::revoke_for_budget(tx, self.0.id, self.0.org_id, self.0.project_id).await?;
            done.keys_revoked += n;
            revoked = Some(n);
            self.record(
                tx,
                "budget.revoke",
                serde_json::json!({
                    "period": first, "spent_micro_usd": self.0.spent_micro_usd,
                    "amount_micro_usd": self.0.amount_micro_usd, "keys_revoked": n,
                }),
            )
            .await?;
        }
        for threshold in newly {
            self.record(
                tx,
                "budget.threshold",
                serde_json::json!({
                    "period": first, "threshold_percent": threshold,
                    "spent_micro_usd": self.0.spent_micro_usd, "amount_micro_usd": self.0.amount_micro_usd,
                }),
            )
            .await?;
            let mut body = serde_json::json!({
                "type": "budget.threshold",
                "org_id": self.0.org_id,
                "project_id": self.0.project_id,
                "budget": self.json(),
                "period": period_json(kind, first, next),
                "threshold_percent": threshold,
                "spent_usd": usd(self.0.spent_micro_usd),
            });
            if let Some(n) = revoked.filter(|_| threshold >= 100) {
                body["keys_revoked"] = n.into();
            }
            let alert = self.alert(threshold, 0);
            done.alerts_fired += u64::from(alerts::fire(tx, &alert, now_ms, body).await?);
        }
        if let Some(n) = revoked.filter(|n| *n > 0) {
            done.alerts_fired += u64::from(self.announce_revocation(tx, now_ms, n).await?);
        }
        Ok(())
    }

    /// Every revocation is announced by an alert of its own
    /// (`budget.keys_revoked`), numbered in its period: a budget raised,
    /// restored and breached again in the same period revokes again, and
    /// says so again, though its thresholds fired already.
    async fn announce_revocation(
        &self,
        tx: &Transaction<'_>,
        now_ms: u64,
        keys: u64,
    ) -> Result<bool, JobError> {
        let (kind, first, next) = (&self.0.period.0, self.0.period.1, self.0.period.2);
        let revocation = budgets::count_revocation(tx, self.0.id, first).await?;
        let body = serde_json::json!({
            "type": "budget.keys_revoked",
            "org_id": self.0.org_id,
            "project_id": self.0.project_id,
            "budget": self.json(),
            "period": period_json(kind, first, next),
            "revocation": revocation,
            "keys_revoked": keys,
            "spent_usd": usd(self.0.spent_micro_usd),
        });
        let alert = self.alert(100, revocation);
        Ok(alerts::fire(tx, &alert, now_ms, body).await?)
    }

    /// The budget as its alerts' bodies describe it.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.0.id, "name": self.0.name, "amount_usd": usd(self.0.amount_micro_usd),
            "action": self.0.action,
        })
    }

    /// One of its alerts in the current period: a threshold's (revocation
    /// 0) or a revocation's.
    fn alert(&self, threshold: i32, revocation: i32) -> alerts::NewAlert {
        alerts::NewAlert {
            org_id: self.0.org_id,
            project_id: self.0.project_id,
            source: "budget",
            source_id: self.0.id,
            period: self.0.period.1,
            threshold,
            revocation,
            webhook: self.0.has_webhook,
        }
    }

    async fn record(
        &self,
        tx: &Transaction<'_>,
        action: &str,
        after: serde_json::Value,
    ) -> Result<(), JobError> {
        let entry = audit::Entry {
            action,
            object_type: "budget",
            object_id: self.0.id.to_string(),
            before: None,
            after: Some(after),
        };
        audit::record(tx, Actor::system(self.0.org_id), entry).await?;
        Ok(())
    }
}

/// Runs the evaluator every `every` on a connection of its own, until the
/// process ends.
pub async fn run(db: floopy_control_db::DbConfig, every: Duration) {
    crate::jobs::every_tick(db, "floopy-control-budgets", every, |db| {
        Box::pin(async move {
            let done = evaluate(db, now_ms()).await?;
            if done.keys_revoked > 0 {
                tracing::warn!(keys = done.keys_revoked, "budgets breached: keys revoked");
            }
            Ok(())
        })
    })
    .await;
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
