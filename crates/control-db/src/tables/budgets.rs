//! `budgets` and `budget_periods`: spend limits over a day, a week or a
//! month, their thresholds, and each period's spend and breach.

use floopy_model::{format_usd, Period};
use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::{audit, Actor, DbError};

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

/// A budget as the API shows it, with its current period's spend.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Option<Uuid>,
    pub name: String,
    pub amount_usd: String,
    pub period: String,
    pub thresholds: Vec<i32>,
    pub action: String,
    pub spent_usd: String,
    pub breached: bool,
    pub webhook_url: Option<String>,
    pub keys_revoked: i64,
}

fn usd(micro: i64) -> String {
    format_usd(u64::try_from(micro).unwrap_or(0))
}

fn budget(row: &Row) -> Result<BudgetRow, DbError> {
    Ok(BudgetRow {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        amount_usd: usd(row.try_get("amount_micro_usd")?),
        period: row.try_get("period")?,
        thresholds: row.try_get("thresholds")?,
        action: row.try_get("action")?,
        spent_usd: usd(row.try_get("spent_micro_usd")?),
        breached: row.try_get("breached")?,
        webhook_url: row.try_get("webhook_url")?,
        keys_revoked: row.try_get("keys_revoked")?,
    })
}

fn select(filter: &str) -> String {
    format!(
        "SELECT b.id, b.org_id, b.project_id, b.name, b.amount_micro_usd, b.period, b.thresholds,
                b.action, coalesce(p.spent_micro_usd, 0) AS spent_micro_usd,
                p.breached_at IS NOT NULL AS breached, b.webhook_url,
                (SELECT count(*) FROM api_keys k WHERE k.revoked_by_budget = b.id) AS keys_revoked
           FROM budgets b
           LEFT JOIN budget_periods p ON p.budget_id = b.id AND p.period = {}
          WHERE {filter}",
        current_period_sql("b", floopy_model::calendar::now_ms())
    )
}

/// The org's budget `budget`, if it is the org's.
pub async fn read(db: &Client, org: Uuid, budget_id: Uuid) -> Result<Option<BudgetRow>, DbError> {
    db.query_opt(&select("b.org_id = $1 AND b.id = $2"), &[&org, &budget_id])
        .await?
        .as_ref()
        .map(budget)
        .transpose()
}

/// `read`, the budget locked until `tx` ends.
pub async fn lock(
    tx: &Transaction<'_>,
    org: Uuid,
    budget_id: Uuid,
) -> Result<Option<BudgetRow>, DbError> {
    tx.query_opt(
        "SELECT 1 FROM budgets WHERE org_id = $1 AND id = $2 FOR UPDATE",
        &[&org, &budget_id],
    )
    .await?;
    read(tx.client(), org, budget_id).await
}

/// A page of the org's budgets after `after`, by id: every one when `all`,
/// else those of `projects`.
pub async fn list(
    db: &Client,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
    all: bool,
    projects: &[Uuid],
) -> Result<Vec<BudgetRow>, DbError> {
    let sql = format!(
        "{} ORDER BY b.id LIMIT $3",
        select(
            "b.org_id = $1 AND ($2::uuid IS NULL OR b.id > $2) AND ($4 OR b.project_id = ANY($5))"
        )
    );
    db.query(&sql, &[&org, &after, &limit, &all, &projects])
        .await?
        .iter()
        .map(budget)
        .collect()
}

/// A budget's fields; `None` keeps one (creating: its default).
#[derive(Debug, Default)]
pub struct BudgetFields<'a> {
    pub name: Option<&'a str>,
    pub amount_micro_usd: Option<i64>,
    pub period: Option<&'a str>,
    pub thresholds: Option<&'a [i32]>,
    pub action: Option<&'a str>,
    /// `Some("")`: remove the webhook (and its secret).
    pub webhook_url: Option<&'a str>,
    pub webhook_secret: Option<&'a str>,
}

/// Creates budget `id` for the org or one of its projects
/// (`budget.create`). A project not of the org is refused with constraint
/// `budgets_org_id_project_id_fkey`.
pub async fn insert(
    tx: &Transaction<'_>,
    actor: Actor,
    (org, id): (Uuid, Uuid),
    project: Option<Uuid>,
    fields: &BudgetFields<'_>,
) -> Result<BudgetRow, DbError> {
    tx.execute(
        "INSERT INTO budgets (id, org_id, project_id, amount_micro_usd, name, thresholds, action, period,
                              webhook_url, webhook_secret)
         VALUES ($1, $2, $3, $4, coalesce($5::text, 'Budget'), coalesce($6::int[], '{50,80,100}'),
                 coalesce($7::text, 'alert'), coalesce($8::text, 'month'), $9, $10)",
        &[
            &id,
            &org,
            &project,
            &fields.amount_micro_usd,
            &fields.name,
            &fields.thresholds,
            &fields.action,
            &fields.period,
            &fields.webhook_url,
            &fields.webhook_secret,
        ],
    )
    .await?;
    let after = read(tx.client(), org, id).await?.ok_or(DbError::Invalid {
        column: "id",
        value: id.to_string(),
    })?;
    audit::change(tx, actor, "budget.create", "budget", id, None, Some(&after)).await?;
    Ok(after)
}

/// Changes the fields given (`budget.update`).
pub async fn update(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &BudgetRow,
    fields: &BudgetFields<'_>,
) -> Result<BudgetRow, DbError> {
    let (org, id) = (before.org_id, before.id);
    tx.execute(
        "UPDATE budgets SET name = coalesce($3, name), amount_micro_usd = coalesce($4, amount_micro_usd),
                thresholds = coalesce($5, thresholds), action = coalesce($6, action),
                period = coalesce($7, period),
                webhook_url = CASE WHEN $8::text = '' THEN NULL ELSE coalesce($8, webhook_url) END,
                webhook_secret = CASE WHEN $8::text = '' THEN NULL ELSE coalesce($9, webhook_secret) END
          WHERE org_id = $1 AND id = $2",
        &[
            &org,
            &id,
            &fields.name,
            &fields.amount_micro_usd,
            &fields.thresholds,
            &fields.action,
            &fields.period,
            &fields.webhook_url,
            &fields.webhook_secret,
        ],
    )
    .await?;
    let after = read(tx.client(), org, id).await?.ok_or(DbError::Invalid {
        column: "id",
        value: id.to_string(),
    })?;
    audit::change(
        tx,
        actor,
        "budget.update",
        "budget",
        id,
        Some(before),
        Some(&after),
    )
    .await?;
    Ok(after)
}

/// Gives back the keys the budget revoked (`budget.restore`, saying how
/// many and `why`); how many.
pub async fn restore_keys(
    tx: &Transaction<'_>,
    actor: Actor,
    (org, budget_id): (Uuid, Uuid),
    why: &str,
) -> Result<u64, DbError> {
    let n = super::keys::restore_for_budget(tx, org, budget_id).await?;
    let entry = audit::Entry {
        action: "budget.restore",
        object_type: "budget",
        object_id: budget_id.to_string(),
        before: None,
        after: Some(serde_json::json!({"keys_restored": n, "reason": why})),
    };
    audit::record(tx, actor, entry).await?;
    Ok(n)
}

/// Deletes it (`budget.delete`), after giving back the keys it revoked
/// (nothing holds them revoked any more).
pub async fn delete(tx: &Transaction<'_>, actor: Actor, before: &BudgetRow) -> Result<(), DbError> {
    let (org, id) = (before.org_id, before.id);
    restore_keys(tx, actor, (org, id), "budget deleted").await?;
    tx.execute(
        "DELETE FROM budgets WHERE org_id = $1 AND id = $2",
        &[&org, &id],
    )
    .await?;
    audit::change(tx, actor, "budget.delete", "budget", id, Some(before), None).await
}

/// The budget's current period as the evaluator last saw it: (spent,
/// amount, period kind), in micro-USD, the budget locked until `tx` ends.
pub async fn lock_period_spend(
    tx: &Transaction<'_>,
    budget_id: Uuid,
) -> Result<Option<(i64, i64, String)>, DbError> {
    let current = current_period_sql("b", floopy_model::calendar::now_ms());
    tx.query_opt(
        &format!(
            "SELECT coalesce(p.spent_micro_usd, 0) AS spent, b.amount_micro_usd AS amount, b.period
               FROM budgets b
               LEFT JOIN budget_periods p ON p.budget_id = b.id AND p.period = {current}
              WHERE b.id = $1 FOR UPDATE OF b"
        ),
        &[&budget_id],
    )
    .await?
    .map(|r| {
        Ok((
            r.try_get("spent")?,
            r.try_get("amount")?,
            r.try_get("period")?,
        ))
    })
    .transpose()
}

/// The periods current at the evaluation's time: for each kind (`day`,
/// `week`, `month`), its first day and the first day after, as `YYYYMMDD`.
pub struct Periods<'a> {
    pub kinds: &'a [&'a str],
    pub firsts: &'a [i32],
    pub nexts: &'a [i32],
}

/// The periods as a CTE `per (kind, first, next)` over `$1`, `$2`, `$3`.
pub(crate) const PERIODS_SQL: &str =
    "WITH per (kind, first, next) AS (SELECT * FROM unnest($1::text[], $2::int[], $3::int[]))";

/// The sum of a scope's settled spend over the days of its period, as SQL
/// over the columns `{t}.org_id`, `{t}.project_id` and `per.first`/`per.next`.
pub(crate) fn spend_sql(t: &str) -> String {
    format!(
        "coalesce((SELECT sum(u.settled_micro_usd) FROM replica_project_daily_usage u
                    WHERE u.org_id = {t}.org_id AND u.day >= per.first AND u.day < per.next
                      AND ({t}.project_id IS NULL OR u.project_id = {t}.project_id)),
                  0)::bigint"
    )
}

/// A budget in its current period, as the evaluator reads it.
pub struct EvaluatedBudget {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Option<Uuid>,
    pub name: String,
    pub amount_micro_usd: i64,
    pub thresholds: Vec<i32>,
    pub action: String,
    /// (kind, first day, first day after)
    pub period: (String, i32, i32),
    /// The period's spend now, from the gateways' settled daily spend.
    pub spent_micro_usd: i64,
    /// Thresholds already alerted this period.
    pub fired: Vec<i32>,
    pub breached: bool,
    pub has_webhook: bool,
}

/// Every budget in its current period.
pub async fn evaluated(
    tx: &Transaction<'_>,
    periods: &Periods<'_>,
) -> Result<Vec<EvaluatedBudget>, DbError> {
    let sql = format!(
        "{PERIODS_SQL}
         SELECT b.id, b.org_id, b.project_id, b.amount_micro_usd, b.thresholds, b.action,
                per.kind, per.first, per.next, {} AS spent,
                coalesce(p.fired, '{{}}') AS fired, p.breached_at IS NOT NULL AS breached, b.name,
                b.webhook_url IS NOT NULL AS has_webhook
           FROM budgets b JOIN per ON per.kind = b.period
           LEFT JOIN budget_periods p ON p.budget_id = b.id AND p.period = per.first",
        spend_sql("b")
    );
    let rows = tx
        .query(&sql, &[&periods.kinds, &periods.firsts, &periods.nexts])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(EvaluatedBudget {
                id: r.try_get("id")?,
                org_id: r.try_get("org_id")?,
                project_id: r.try_get("project_id")?,
                name: r.try_get("name")?,
                amount_micro_usd: r.try_get("amount_micro_usd")?,
                thresholds: r.try_get("thresholds")?,
                action: r.try_get("action")?,
                period: (r.try_get("kind")?, r.try_get("first")?, r.try_get("next")?),
                spent_micro_usd: r.try_get("spent")?,
                fired: r.try_get("fired")?,
                breached: r.try_get("breached")?,
                has_webhook: r.try_get("has_webhook")?,
            })
        })
        .collect()
}

/// Records the period's spend, the thresholds it has reached (added to
/// those fired before) and, with `breach`, when it was breached (kept if it
/// was already).
pub async fn record_period(
    tx: &Transaction<'_>,
    budget_id: Uuid,
    first: i32,
    spent: i64,
    reached: &[i32],
    breach: bool,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO budget_periods (budget_id, period, spent_micro_usd, fired, breached_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)
         ON CONFLICT (budget_id, period) DO UPDATE
           SET spent_micro_usd = EXCLUDED.spent_micro_usd,
               fired = coalesce((SELECT array_agg(DISTINCT t ORDER BY t)
                                   FROM unnest(budget_periods.fired || EXCLUDED.fired) AS t),
                                '{}'),
               breached_at = coalesce(budget_periods.breached_at, EXCLUDED.breached_at)",
        &[&budget_id, &first, &spent, &reached, &breach],
    )
    .await?;
    Ok(())
}

/// Counts one more revocation in the period; its number (1 for the first).
pub async fn count_revocation(
    tx: &Transaction<'_>,
    budget_id: Uuid,
    first: i32,
) -> Result<i32, DbError> {
    Ok(tx
        .query_one(
            "UPDATE budget_periods SET revocations = revocations + 1
              WHERE budget_id = $1 AND period = $2 RETURNING revocations",
            &[&budget_id, &first],
        )
        .await?
        .try_get("revocations")?)
}
