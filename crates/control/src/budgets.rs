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

use floopy_control_db::tables::{audit, keys};
use floopy_control_db::Actor;
use floopy_model::calendar::{day_of, iso_date, rfc3339, Period};
use floopy_model::format_usd;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use crate::jobs::JobError;

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

/// The sum of a scope's spend over the days of its period, as SQL over the
/// columns `{t}.org_id`, `{t}.project_id` and `per.first`/`per.next`.
fn spend_sql(t: &str) -> String {
    format!(
        "coalesce((SELECT sum(u.settled_micro_usd) FROM replica_project_daily_usage u
                    WHERE u.org_id = {t}.org_id AND u.day >= per.first AND u.day < per.next
                      AND ({t}.project_id IS NULL OR u.project_id = {t}.project_id)),
                  0)::bigint"
    )
}

/// The periods current at `now_ms`: (kind, first day, first day after).
const PERIODS_SQL: &str =
    "WITH per (kind, first, next) AS (SELECT * FROM unnest($1::text[], $2::int[], $3::int[]))";

/// One evaluation at `now_ms`, if this replica holds the tick's lock.
pub async fn evaluate(db: &mut Client, now_ms: u64) -> Result<Evaluation, JobError> {
    let tx = db.transaction().await?;
    let mine: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&EVALUATOR_LOCK])
        .await?
        .get(0);
    if !mine {
        return Ok(Evaluation::default());
    }
    let mut done = Evaluation {
        ran: true,
        ..Evaluation::default()
    };
    let kinds: Vec<&str> = Period::ALL.iter().map(|p| p.as_str()).collect();
    let firsts: Vec<i32> = Period::ALL.iter().map(|p| key(p.days(now_ms).0)).collect();
    let nexts: Vec<i32> = Period::ALL.iter().map(|p| key(p.days(now_ms).1)).collect();
    let budgets = tx
        .query(
            &format!(
                "{PERIODS_SQL}
                 SELECT b.id, b.org_id, b.project_id, b.amount_micro_usd, b.thresholds, b.action,
                        per.kind, per.first, per.next, {},
                        coalesce(p.fired, '{{}}'), p.breached_at IS NOT NULL, b.name,
                        b.webhook_url IS NOT NULL
                   FROM budgets b JOIN per ON per.kind = b.period
                   LEFT JOIN budget_periods p ON p.budget_id = b.id AND p.period = per.first",
                spend_sql("b")
            ),
            &[&kinds, &firsts, &nexts],
        )
        .await?;
    for row in budgets {
        let budget = Budget {
            id: row.get(0),
            org: row.get(1),
            project: row.get(2),
            amount: row.get(3),
            thresholds: row.get(4),
            action: row.get(5),
            period: (row.get(6), row.get(7), row.get(8)),
            spent: row.get(9),
            fired: row.get(10),
            breached: row.get(11),
            name: row.get(12),
            webhook: row.get(13),
        };
        budget.evaluate(&tx, now_ms, &mut done).await?;
    }
    let rules = tx
        .query(
            &format!(
                "{PERIODS_SQL}
                 SELECT r.id, r.org_id, r.project_id, r.threshold_micro_usd, r.name,
                        per.kind, per.first, per.next, {}
                   FROM alert_rules r JOIN per ON per.kind = r.period
                  WHERE NOT EXISTS (SELECT 1 FROM alerts a
                                     WHERE a.source_id = r.id AND a.period = per.first)",
                spend_sql("r")
            ),
            &[&kinds, &firsts, &nexts],
        )
        .await?;
    for row in rules {
        let (id, org, project, threshold): (Uuid, Uuid, Option<Uuid>, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let (name, kind, first, next, spent): (String, String, i32, i32, i64) =
            (row.get(4), row.get(5), row.get(6), row.get(7), row.get(8));
        if spent < threshold {
            continue;
        }
        let body = serde_json::json!({
            "type": "alert_rule.triggered",
            "org_id": org,
            "project_id": project,
            "alert_rule": {"id": id, "name": name, "threshold_usd": usd(threshold)},
            "period": period_json(&kind, first, next),
            "spent_usd": usd(spent),
        });
        let alert = Alert {
            org,
            project,
            source: "rule",
            source_id: id,
            period: first,
            threshold: 100,
            revocation: 0,
            webhook: true,
        };
        done.alerts_fired += u64::from(alert.fire(&tx, now_ms, body).await?);
    }
    let oldest = key(day_of(now_ms.saturating_sub(KEEP_DAYS_MS)));
    tx.execute(
        "DELETE FROM replica_project_daily_usage WHERE day < $1",
        &[&oldest],
    )
    .await?;
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
struct Budget {
    id: Uuid,
    org: Uuid,
    project: Option<Uuid>,
    amount: i64,
    thresholds: Vec<i32>,
    action: String,
    /// (kind, first day, first day after)
    period: (String, i32, i32),
    spent: i64,
    fired: Vec<i32>,
    breached: bool,
    name: String,
    webhook: bool,
}

impl Budget {
    async fn evaluate(
        &self,
        tx: &Transaction<'_>,
        now_ms: u64,
        done: &mut Evaluation,
    ) -> Result<(), JobError> {
        let (kind, first, next) = (&self.period.0, self.period.1, self.period.2);
        let now_reached = reached(self.spent, self.amount, &self.thresholds);
        let newly: Vec<i32> = now_reached
            .iter()
            .copied()
            .filter(|t| !self.fired.contains(t))
            .collect();
        let breach = self.spent >= self.amount && !self.breached;
        tx.execute(
            "INSERT INTO budget_periods (budget_id, period, spent_micro_usd, fired, breached_at)
             VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)
             ON CONFLICT (budget_id, period) DO UPDATE
               SET spent_micro_usd = EXCLUDED.spent_micro_usd,
                   fired = coalesce((SELECT array_agg(DISTINCT t ORDER BY t)
                                       FROM unnest(budget_periods.fired || EXCLUDED.fired) AS t),
                                    '{}'),
                   breached_at = coalesce(budget_periods.breached_at, EXCLUDED.breached_at)",
            &[&self.id, &first, &self.spent, &now_reached, &breach],
        )
        .await?;
        let mut revoked = None;
        if breach && self.action == "alert_and_revoke" {
            let n = keys::revoke_for_budget(tx, self.id, self.org, self.project).await?;
            done.keys_revoked += n;
            revoked = Some(n);
            self.record(
                tx,
                "budget.revoke",
                serde_json::json!({
                    "period": first, "spent_micro_usd": self.spent,
                    "amount_micro_usd": self.amount, "keys_revoked": n,
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
                    "spent_micro_usd": self.spent, "amount_micro_usd": self.amount,
                }),
            )
            .await?;
            let mut body = serde_json::json!({
                "type": "budget.threshold",
                "org_id": self.org,
                "project_id": self.project,
                "budget": self.json(),
                "period": period_json(kind, first, next),
                "threshold_percent": threshold,
                "spent_usd": usd(self.spent),
            });
            if let Some(n) = revoked.filter(|_| threshold >= 100) {
                body["keys_revoked"] = n.into();
            }
            let alert = self.alert(threshold, 0);
            done.alerts_fired += u64::from(alert.fire(tx, now_ms, body).await?);
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
        let (kind, first, next) = (&self.period.0, self.period.1, self.period.2);
        let revocation: i32 = tx
            .query_one(
                "UPDATE budget_periods SET revocations = revocations + 1
                  WHERE budget_id = $1 AND period = $2 RETURNING revocations",
                &[&self.id, &first],
            )
            .await?
            .try_get("revocations")?;
        let body = serde_json::json!({
            "type": "budget.keys_revoked",
            "org_id": self.org,
            "project_id": self.project,
            "budget": self.json(),
            "period": period_json(kind, first, next),
            "revocation": revocation,
            "keys_revoked": keys,
            "spent_usd": usd(self.spent),
        });
        self.alert(100, revocation).fire(tx, now_ms, body).await
    }

    /// The budget as its alerts' bodies describe it.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "amount_usd": usd(self.amount),
            "action": self.action,
        })
    }

    /// One of its alerts in the current period: a threshold's (revocation
    /// 0) or a revocation's.
    fn alert(&self, threshold: i32, revocation: i32) -> Alert {
        Alert {
            org: self.org,
            project: self.project,
            source: "budget",
            source_id: self.id,
            period: self.period.1,
            threshold,
            revocation,
            webhook: self.webhook,
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
            object_id: self.id.to_string(),
            before: None,
            after: Some(after),
        };
        audit::record(tx, Actor::system(self.org), entry).await?;
        Ok(())
    }
}

/// An alert to put in the outbox.
struct Alert {
    org: Uuid,
    project: Option<Uuid>,
    source: &'static str,
    source_id: Uuid,
    period: i32,
    threshold: i32,
    /// The revocation's number in the period; 0 for a threshold alert.
    revocation: i32,
    /// Whether there is a webhook to deliver it to.
    webhook: bool,
}

impl Alert {
    /// Inserts the alert with `body` (plus its id and time) unless it fired
    /// already; whether it is new.
    async fn fire(
        &self,
        tx: &Transaction<'_>,
        now_ms: u64,
        mut body: serde_json::Value,
    ) -> Result<bool, JobError> {
        let id = Uuid::now_v7();
        body["id"] = id.to_string().into();
        body["fired_at"] = rfc3339(now_ms).into();
        let state = if self.webhook { "pending" } else { "recorded" };
        let n = tx
            .execute(
                "INSERT INTO alerts (id, org_id, project_id, source, source_id, period, threshold,
                                     revocation, body, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $10, $8::text::jsonb, $9)
                 ON CONFLICT (source_id, period, threshold, revocation) DO NOTHING",
                &[
                    &id,
                    &self.org,
                    &self.project,
                    &self.source,
                    &self.source_id,
                    &self.period,
                    &self.threshold,
                    &body.to_string(),
                    &state,
                    &self.revocation,
                ],
            )
            .await?;
        Ok(n == 1)
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
