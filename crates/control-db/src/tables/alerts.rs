//! `alert_rules` and `alerts`: rules (spend over a period that fires a
//! webhook), and the outbox of alerts fired by rules and budgets, each
//! delivered at least once (`claim_due`, then `delivered` or `failed`).
//! An alert fires once per source, period, threshold and revocation (a
//! unique index), however many evaluators race.

use floopy_model::format_usd;
use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::budgets::{spend_sql, Periods, PERIODS_SQL};
use super::{audit, Actor, DbError};
use crate::rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Option<Uuid>,
    pub name: String,
    pub threshold_usd: String,
    pub period: String,
    pub webhook_url: String,
}

const RULE_COLUMNS: &str = "id, org_id, project_id, name, threshold_micro_usd, period, webhook_url";

fn rule(row: &Row) -> Result<RuleRow, DbError> {
    let threshold: i64 = row.try_get("threshold_micro_usd")?;
    Ok(RuleRow {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        threshold_usd: format_usd(u64::try_from(threshold).unwrap_or(0)),
        period: row.try_get("period")?,
        webhook_url: row.try_get("webhook_url")?,
    })
}

/// The org's rule `rule`, if it is the org's.
pub async fn read_rule(db: &Client, org: Uuid, rule_id: Uuid) -> Result<Option<RuleRow>, DbError> {
    db.query_opt(
        &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = $1 AND id = $2"),
        &[&org, &rule_id],
    )
    .await?
    .as_ref()
    .map(rule)
    .transpose()
}

/// `read_rule`, the rule locked until `tx` ends.
pub async fn lock_rule(
    tx: &Transaction<'_>,
    org: Uuid,
    rule_id: Uuid,
) -> Result<Option<RuleRow>, DbError> {
    tx.query_opt(
        &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = $1 AND id = $2 FOR UPDATE"),
        &[&org, &rule_id],
    )
    .await?
    .as_ref()
    .map(rule)
    .transpose()
}

/// A page of the org's rules after `after`, by id: every one when `all`,
/// else those of `projects`.
pub async fn list_rules(
    db: &Client,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
    all: bool,
    projects: &[Uuid],
) -> Result<Vec<RuleRow>, DbError> {
    db.query(
        &format!(
            "SELECT {RULE_COLUMNS} FROM alert_rules
              WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) AND ($4 OR project_id = ANY($5))
              ORDER BY id LIMIT $3"
        ),
        &[&org, &after, &limit, &all, &projects],
    )
    .await?
    .iter()
    .map(rule)
    .collect()
}

/// A rule's fields; `None` keeps one (creating: its default).
#[derive(Debug, Default)]
pub struct RuleFields<'a> {
    pub name: Option<&'a str>,
    pub threshold_micro_usd: Option<i64>,
    pub period: Option<&'a str>,
    pub webhook_url: Option<&'a str>,
    pub webhook_secret: Option<&'a str>,
}

/// Creates rule `id` (`alert_rule.create`). A project not of the org is
/// refused with constraint `alert_rules_org_id_project_id_fkey`.
pub async fn insert_rule(
    tx: &Transaction<'_>,
    actor: Actor,
    (org, id): (Uuid, Uuid),
    project: Option<Uuid>,
    fields: &RuleFields<'_>,
) -> Result<RuleRow, DbError> {
    tx.execute(
        "INSERT INTO alert_rules (id, org_id, project_id, name, threshold_micro_usd, period, webhook_url,
                                  webhook_secret)
         VALUES ($1, $2, $3, coalesce($4::text, 'Alert'), $5, coalesce($6::text, 'month'), $7, $8)",
        &[
            &id,
            &org,
            &project,
            &fields.name,
            &fields.threshold_micro_usd,
            &fields.period,
            &fields.webhook_url,
            &fields.webhook_secret,
        ],
    )
    .await?;
    let after = changed_rule(tx, org, id).await?;
    audit::change(
        tx,
        actor,
        "alert_rule.create",
        "alert_rule",
        id,
        None,
        Some(&after),
    )
    .await?;
    Ok(after)
}

/// Changes the fields given (`alert_rule.update`).
pub async fn update_rule(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &RuleRow,
    fields: &RuleFields<'_>,
) -> Result<RuleRow, DbError> {
    let (org, id) = (before.org_id, before.id);
    tx.execute(
        "UPDATE alert_rules SET name = coalesce($3, name),
                threshold_micro_usd = coalesce($4, threshold_micro_usd),
                period = coalesce($5, period), webhook_url = coalesce($6, webhook_url),
                webhook_secret = coalesce($7, webhook_secret)
          WHERE org_id = $1 AND id = $2",
        &[
            &org,
            &id,
            &fields.name,
            &fields.threshold_micro_usd,
            &fields.period,
            &fields.webhook_url,
            &fields.webhook_secret,
        ],
    )
    .await?;
    let after = changed_rule(tx, org, id).await?;
    let entry = (Some(before), Some(&after));
    audit::change(
        tx,
        actor,
        "alert_rule.update",
        "alert_rule",
        id,
        entry.0,
        entry.1,
    )
    .await?;
    Ok(after)
}

/// Deletes it (`alert_rule.delete`); its alerts stay listed.
pub async fn delete_rule(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &RuleRow,
) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM alert_rules WHERE org_id = $1 AND id = $2",
        &[&before.org_id, &before.id],
    )
    .await?;
    let id = before.id;
    audit::change(
        tx,
        actor,
        "alert_rule.delete",
        "alert_rule",
        id,
        Some(before),
        None,
    )
    .await
}

async fn changed_rule(tx: &Transaction<'_>, org: Uuid, id: Uuid) -> Result<RuleRow, DbError> {
    read_rule(tx.client(), org, id)
        .await?
        .ok_or(DbError::Invalid {
            column: "id",
            value: id.to_string(),
        })
}

/// A rule whose period's spend has reached its threshold and that has not
/// fired this period.
pub struct RuleReached {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Option<Uuid>,
    pub name: String,
    pub threshold_micro_usd: i64,
    /// (kind, first day, first day after)
    pub period: (String, i32, i32),
    pub spent_micro_usd: i64,
}

/// The rules reached in their current period and not fired in it yet.
pub async fn rules_reached(
    tx: &Transaction<'_>,
    periods: &Periods<'_>,
) -> Result<Vec<RuleReached>, DbError> {
    let sql = format!(
        "{PERIODS_SQL}
         SELECT * FROM (
           SELECT r.id, r.org_id, r.project_id, r.threshold_micro_usd, r.name,
                  per.kind, per.first, per.next, {} AS spent
             FROM alert_rules r JOIN per ON per.kind = r.period
            WHERE NOT EXISTS (SELECT 1 FROM alerts a
                               WHERE a.source_id = r.id AND a.period = per.first)) s
          WHERE s.spent >= s.threshold_micro_usd",
        spend_sql("r")
    );
    let rows = tx
        .query(&sql, &[&periods.kinds, &periods.firsts, &periods.nexts])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RuleReached {
                id: r.try_get("id")?,
                org_id: r.try_get("org_id")?,
                project_id: r.try_get("project_id")?,
                name: r.try_get("name")?,
                threshold_micro_usd: r.try_get("threshold_micro_usd")?,
                period: (r.try_get("kind")?, r.try_get("first")?, r.try_get("next")?),
                spent_micro_usd: r.try_get("spent")?,
            })
        })
        .collect()
}

/// An alert to put in the outbox.
pub struct NewAlert {
    pub org_id: Uuid,
    pub project_id: Option<Uuid>,
    /// `budget` or `rule`.
    pub source: &'static str,
    pub source_id: Uuid,
    /// The period's first day.
    pub period: i32,
    pub threshold: i32,
    /// The revocation's number in the period; 0 for a threshold alert.
    pub revocation: i32,
    /// Whether there is a webhook to deliver it to (else it is only
    /// recorded).
    pub webhook: bool,
}

/// Puts the alert with `body` (plus its id and time, `fired_at` as
/// `now_ms`) in the outbox unless it fired already; whether it is new.
pub async fn fire(
    tx: &Transaction<'_>,
    alert: &NewAlert,
    now_ms: u64,
    mut body: serde_json::Value,
) -> Result<bool, DbError> {
    let id = Uuid::now_v7();
    body["id"] = id.to_string().into();
    body["fired_at"] = floopy_model::calendar::rfc3339(now_ms).into();
    let state = if alert.webhook { "pending" } else { "recorded" };
    let n = tx
        .execute(
            "INSERT INTO alerts (id, org_id, project_id, source, source_id, period, threshold,
                                 revocation, body, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $10, $8::text::jsonb, $9)
             ON CONFLICT (source_id, period, threshold, revocation) DO NOTHING",
            &[
                &id,
                &alert.org_id,
                &alert.project_id,
                &alert.source,
                &alert.source_id,
                &alert.period,
                &alert.threshold,
                &body.to_string(),
                &state,
                &alert.revocation,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// An alert as listed.
pub struct AlertRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Option<Uuid>,
    pub source: String,
    pub source_id: Uuid,
    /// The period's first day, `YYYYMMDD`.
    pub period: i32,
    pub threshold: i32,
    pub revocation: i32,
    pub body: serde_json::Value,
    pub state: String,
    pub attempts: i32,
    pub webhook_url: Option<String>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub last_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// Only while pending.
    pub next_attempt_at: Option<String>,
}

/// Which alerts to list.
pub struct AlertFilter<'a> {
    /// Every project's (else only those of `projects`).
    pub all: bool,
    pub projects: &'a [Uuid],
    pub project_id: Option<Uuid>,
    pub source_id: Option<Uuid>,
    pub state: Option<&'a str>,
}

/// A page of the org's alerts older than `before` (an alert id), newest
/// first.
pub async fn list(
    db: &Client,
    org: Uuid,
    before: Option<Uuid>,
    limit: i64,
    filter: &AlertFilter<'_>,
) -> Result<Vec<AlertRow>, DbError> {
    let rows = db
        .query(
            concat!(
                "SELECT id, org_id, project_id, source, source_id, period, threshold, revocation,
                        body::text AS body, state, attempts, webhook_url, last_status, last_error, ",
                rfc3339!("created_at"),
                " AS created_at, ",
                rfc3339!("last_attempt_at"),
                " AS last_attempt_at, ",
                rfc3339!("delivered_at"),
                " AS delivered_at, CASE WHEN state = 'pending' THEN ",
                rfc3339!("next_attempt_at"),
                " END AS next_attempt_at
                   FROM alerts
                  WHERE org_id = $1 AND ($2::uuid IS NULL OR id < $2)
                    AND ($4 OR project_id = ANY($5))
                    AND ($6::uuid IS NULL OR project_id = $6)
                    AND ($7::uuid IS NULL OR source_id = $7)
                    AND ($8::text IS NULL OR state = $8)
                  ORDER BY id DESC LIMIT $3"
            ),
            &[
                &org,
                &before,
                &limit,
                &filter.all,
                &filter.projects,
                &filter.project_id,
                &filter.source_id,
                &filter.state,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let body: String = r.try_get("body")?;
            Ok(AlertRow {
                id: r.try_get("id")?,
                org_id: r.try_get("org_id")?,
                project_id: r.try_get("project_id")?,
                source: r.try_get("source")?,
                source_id: r.try_get("source_id")?,
                period: r.try_get("period")?,
                threshold: r.try_get("threshold")?,
                revocation: r.try_get("revocation")?,
                body: serde_json::from_str(&body).unwrap_or_default(),
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                webhook_url: r.try_get("webhook_url")?,
                last_status: r.try_get("last_status")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
                last_attempt_at: r.try_get("last_attempt_at")?,
                delivered_at: r.try_get("delivered_at")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
            })
        })
        .collect()
}

/// An alert claimed for one delivery attempt.
pub struct Claimed {
    pub id: Uuid,
    pub body: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// Older than the retry window: this attempt is the last.
    pub last_chance: bool,
    /// The webhook (URL, secret) now, from its budget or rule; none if it
    /// was removed.
    pub target: Option<(String, String)>,
}

/// Claims at most `batch` pending alerts that are due, each for `lease_secs`
/// (past it, a claim is free again: its sender died); `retry_for_secs` after
/// its creation an alert's attempt is its last.
pub async fn claim_due(
    db: &Client,
    batch: i64,
    lease_secs: f64,
    retry_for_secs: f64,
) -> Result<Vec<Claimed>, DbError> {
    let rows = db
        .query(
            "UPDATE alerts a
                SET attempts = a.attempts + 1, last_attempt_at = now(),
                    next_attempt_at = now() + make_interval(secs => $2)
               FROM (SELECT id FROM alerts
                      WHERE state = 'pending' AND next_attempt_at <= now()
                      ORDER BY next_attempt_at LIMIT $1
                      FOR UPDATE SKIP LOCKED) due
              WHERE a.id = due.id
          RETURNING a.id, a.body::text AS body, a.attempts,
                    a.created_at <= now() - make_interval(secs => $3) AS last_chance,
                    coalesce((SELECT webhook_url FROM budgets WHERE id = a.source_id),
                             (SELECT webhook_url FROM alert_rules WHERE id = a.source_id)) AS url,
                    coalesce((SELECT webhook_secret FROM budgets WHERE id = a.source_id),
                             (SELECT webhook_secret FROM alert_rules WHERE id = a.source_id)) AS secret",
            &[&batch, &lease_secs, &retry_for_secs],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let url: Option<String> = r.try_get("url")?;
            let secret: Option<String> = r.try_get("secret")?;
            Ok(Claimed {
                id: r.try_get("id")?,
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
                last_chance: r.try_get("last_chance")?,
                target: url.zip(secret),
            })
        })
        .collect()
}

/// Records a delivery: the webhook answered `status` (2xx) at `url`.
pub async fn delivered(
    db: &Client,
    id: Uuid,
    status: i32,
    url: Option<&str>,
) -> Result<(), DbError> {
    db.execute(
        "UPDATE alerts SET state = 'delivered', delivered_at = now(),
                last_status = $2, last_error = NULL, webhook_url = $3
          WHERE id = $1",
        &[&id, &status, &url],
    )
    .await?;
    Ok(())
}

/// A failed attempt: retried after `retry_in_secs`, unless `give_up`.
pub struct Failure<'a> {
    pub give_up: bool,
    pub retry_in_secs: f64,
    pub status: Option<i32>,
    pub error: &'a str,
    pub url: Option<&'a str>,
}

/// Records a failed attempt.
pub async fn failed(db: &Client, id: Uuid, failure: &Failure<'_>) -> Result<(), DbError> {
    db.execute(
        "UPDATE alerts SET state = CASE WHEN $2 THEN 'failed' ELSE 'pending' END,
                next_attempt_at = now() + make_interval(secs => $3),
                last_status = $4, last_error = $5, webhook_url = coalesce($6, webhook_url)
          WHERE id = $1",
        &[
            &id,
            &failure.give_up,
            &failure.retry_in_secs,
            &failure.status,
            &failure.error,
            &failure.url,
        ],
    )
    .await?;
    Ok(())
}
