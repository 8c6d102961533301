//! Alert rules (a USD amount of spend over a day, a week or a month, for
//! the org or one project, delivered to a webhook) and the alerts fired by
//! rules and budgets, with their delivery state. The roles are the budgets':
//! org owners and admins for the org's, project owners and admins for their
//! project's; project members read their projects' alerts.
//!
//! A webhook's secret signs every delivery (`webhooks`); given or generated
//! (`whsec_...`), it is returned only by the request that set it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_control_db::tables::alerts::{self as table, AlertFilter, RuleRow};
use floopy_control_db::Actor;
use floopy_model::validate::{check_length, NAME_CHARS};
use floopy_model::{usd_to_micro, Period};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action, Membership};
use crate::state::AppState;

/// The longest webhook URL.
const URL_CHARS: usize = 2000;
/// A webhook secret's length bounds.
const SECRET_CHARS: std::ops::RangeInclusive<usize> = 16..=200;

/// Checks a webhook URL (`""` when `clearable`: remove the webhook).
pub fn check_webhook_url(url: &str, clearable: bool) -> Result<(), String> {
    if url.is_empty() && clearable {
        return Ok(());
    }
    if url.chars().count() > URL_CHARS {
        return Err(format!("must be at most {URL_CHARS} characters"));
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err("must be an http or https URL with a host".into()),
        Err(e) => Err(format!("is not a URL: {e}")),
    }
}

/// Checks a webhook secret.
pub fn check_webhook_secret(secret: &str) -> Result<(), String> {
    if SECRET_CHARS.contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "must be {} to {} printable ASCII characters",
            SECRET_CHARS.start(),
            SECRET_CHARS.end()
        ))
    }
}

/// A new webhook secret.
pub fn new_webhook_secret() -> Result<String, ApiError> {
    crate::auth::new_secret("whsec_")
}

/// A USD amount field in micro-USD: required on creation, optional on a
/// change; a problem is pushed to `errors` under `name`.
pub fn usd_field(
    value: Option<f64>,
    name: &'static str,
    creating: bool,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    match value.map(usd_to_micro) {
        None if creating => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
        None => None,
        Some(Ok(micro)) => i64::try_from(micro).ok(),
        Some(Err(e)) => {
            errors.push(FieldError::new(name, e.to_string()));
            None
        }
    }
}

/// Whether the caller may see (else 404 `what`) and, with `manage`,
/// manage (else 403) a budget or alert rule scoped to `project` (`None`:
/// the org): the budgets' roles.
pub fn authorize_scope(
    m: &Membership,
    project: Option<Uuid>,
    manage: bool,
    what: &'static str,
) -> Result<(), ApiError> {
    if authorize(m, Action::ReadBudgets(project)).is_err() {
        return Err(ApiError::NotFound(what));
    }
    if manage {
        authorize(m, Action::ManageBudgets(project))?;
    }
    Ok(())
}

/// Checks a period name.
pub fn check_period(period: &str) -> Result<Period, String> {
    Period::parse(period).ok_or_else(|| format!("{period:?} is not one of day, week, month"))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertRuleView {
    pub id: Uuid,
    pub org_id: Uuid,
    /// The project it is scoped to; absent: the whole org.
    pub project_id: Option<Uuid>,
    pub name: String,
    /// Spend over the period at which it fires, in USD.
    pub threshold_usd: String,
    /// `day`, `week` (ISO, from Monday) or `month`, UTC.
    pub period: String,
    pub webhook_url: String,
    /// Only in the response of the request that set or generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl From<RuleRow> for AlertRuleView {
    fn from(r: RuleRow) -> AlertRuleView {
        AlertRuleView {
            id: r.id,
            org_id: r.org_id,
            project_id: r.project_id,
            name: r.name,
            threshold_usd: r.threshold_usd,
            period: r.period,
            webhook_url: r.webhook_url,
            webhook_secret: None,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleFields {
    pub name: Option<String>,
    /// Only on creation: the project (absent: the org).
    pub project_id: Option<Uuid>,
    /// Required on creation.
    pub threshold_usd: Option<f64>,
    /// `day`, `week` or `month` (the default).
    pub period: Option<String>,
    /// Required on creation: an http or https URL.
    pub webhook_url: Option<String>,
    /// 16 to 200 printable ASCII characters; generated when absent on
    /// creation.
    pub webhook_secret: Option<String>,
}

/// The checked values of an alert rule's fields.
struct CheckedRule {
    name: Option<String>,
    threshold: Option<i64>,
    period: Option<String>,
    url: Option<String>,
    secret: Option<String>,
}

impl CheckedRule {
    fn fields(&self) -> table::RuleFields<'_> {
        table::RuleFields {
            name: self.name.as_deref(),
            threshold_micro_usd: self.threshold,
            period: self.period.as_deref(),
            webhook_url: self.url.as_deref(),
            webhook_secret: self.secret.as_deref(),
        }
    }
}

impl AlertRuleFields {
    fn check(&self, creating: bool) -> Result<CheckedRule, ApiError> {
        let mut errors = Vec::new();
        if let Some(Err(message)) = self.name.as_deref().map(|n| check_length(n, NAME_CHARS)) {
            errors.push(FieldError::new("name", message));
        }
        let threshold = usd_field(self.threshold_usd, "threshold_usd", creating, &mut errors);
        if let Some(Err(message)) = self.period.as_deref().map(check_period) {
            errors.push(FieldError::new("period", message));
        }
        match self.webhook_url.as_deref() {
            None if creating => errors.push(FieldError::new("webhook_url", "is required")),
            None => {}
            Some(url) => {
                if let Err(message) = check_webhook_url(url, false) {
                    errors.push(FieldError::new("webhook_url", message));
                }
            }
        }
        if let Some(Err(message)) = self.webhook_secret.as_deref().map(check_webhook_secret) {
            errors.push(FieldError::new("webhook_secret", message));
        }
        if !creating && self.project_id.is_some() {
            errors.push(FieldError::new("project_id", "cannot be changed"));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let secret = match (&self.webhook_secret, creating) {
            (Some(secret), _) => Some(secret.clone()),
            (None, true) => Some(new_webhook_secret()?),
            (None, false) => None,
        };
        Ok(CheckedRule {
            name: self.name.clone(),
            threshold,
            period: self.period.clone(),
            url: self.webhook_url.clone(),
            secret,
        })
    }
}

/// The rule, if the caller may `manage` (else read) it.
async fn authorized_rule(
    db: &tokio_postgres::Client,
    caller: &Caller,
    (org, rule): (Uuid, Uuid),
    manage: bool,
) -> Result<RuleRow, ApiError> {
    let m = membership(db, caller, org).await?;
    let row = table::read_rule(db, org, rule)
        .await?
        .ok_or(ApiError::NotFound("alert rule"))?;
    authorize_scope(&m, row.project_id, manage, "alert rule")?;
    Ok(row)
}

/// `authorized_rule` for a change: the rule locked on `tx`, the membership
/// read on it too; and who changes it.
async fn managed_rule(
    tx: &tokio_postgres::Transaction<'_>,
    caller: &Caller,
    (org, rule): (Uuid, Uuid),
) -> Result<(Actor, RuleRow), ApiError> {
    let m = membership(tx.client(), caller, org).await?;
    let row = table::lock_rule(tx, org, rule)
        .await?
        .ok_or(ApiError::NotFound("alert rule"))?;
    authorize_scope(&m, row.project_id, true, "alert rule")?;
    Ok((Actor::person(org, caller.user_id), row))
}

/// `GET /v1/orgs/{org}/alert-rules`: those the caller may see.
#[utoipa::path(
    operation_id = "alert_rules_list",
    tag = "alerts",
    get,
    path = "/v1/orgs/{org}/alert-rules",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<AlertRuleView>), crate::http::schema::Refusals),
)]
pub async fn list_rules(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<AlertRuleView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    let all = m.org_role.runs_the_org();
    let mine: Vec<Uuid> = m.projects.keys().copied().collect();
    let rows = table::list_rules(&db, org, after, limit + 1, all, &mine).await?;
    let items = rows.into_iter().map(AlertRuleView::from).collect();
    Ok(Json(Page::new(items, limit, |r| r.id)))
}

/// `POST /v1/orgs/{org}/alert-rules`.
#[utoipa::path(
    operation_id = "alert_rules_create",
    tag = "alerts",
    post,
    path = "/v1/orgs/{org}/alert-rules",
    params(("org" = Uuid, Path, description = "The organization's id")),
    request_body = AlertRuleFields,
    responses((status = 201, body = AlertRuleView), crate::http::schema::Refusals),
)]
pub async fn create_rule(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<AlertRuleFields>,
) -> Result<(StatusCode, Json<AlertRuleView>), ApiError> {
    let rule = body.check(true)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageBudgets(body.project_id))?;
    let actor = Actor::person(org, caller.user_id);
    let ids = (org, Uuid::now_v7());
    let created = table::insert_rule(&tx, actor, ids, body.project_id, &rule.fields())
        .await
        .map_err(|e| match e.constraint() {
            Some("alert_rules_org_id_project_id_fkey") => {
                ApiError::Validation(vec![FieldError::new(
                    "project_id",
                    "is not a project of this organization",
                )])
            }
            _ => e.into(),
        })?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(AlertRuleView {
            webhook_secret: rule.secret,
            ..created.into()
        }),
    ))
}

/// `GET /v1/orgs/{org}/alert-rules/{rule}`.
#[utoipa::path(
    operation_id = "alert_rules_read",
    tag = "alerts",
    get,
    path = "/v1/orgs/{org}/alert-rules/{rule}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("rule" = Uuid, Path, description = "The alert rule's id")),
    responses((status = 200, body = AlertRuleView), crate::http::schema::Refusals),
)]
pub async fn read_rule_handler(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, rule)): Ids<(Uuid, Uuid)>,
) -> Result<Json<AlertRuleView>, ApiError> {
    let db = state.db().await?;
    let rule = authorized_rule(&db, &caller, (org, rule), false).await?;
    Ok(Json(rule.into()))
}

/// `PATCH /v1/orgs/{org}/alert-rules/{rule}`: name, threshold, period,
/// webhook URL, secret.
#[utoipa::path(
    operation_id = "alert_rules_update",
    tag = "alerts",
    patch,
    path = "/v1/orgs/{org}/alert-rules/{rule}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("rule" = Uuid, Path, description = "The alert rule's id")),
    request_body = AlertRuleFields,
    responses((status = 200, body = AlertRuleView), crate::http::schema::Refusals),
)]
pub async fn update_rule(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, rule)): Ids<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<AlertRuleFields>,
) -> Result<Json<AlertRuleView>, ApiError> {
    let fields = body.check(false)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, before) = managed_rule(&tx, &caller, (org, rule)).await?;
    let after = table::update_rule(&tx, actor, &before, &fields.fields()).await?;
    tx.commit().await?;
    Ok(Json(AlertRuleView {
        webhook_secret: fields.secret,
        ..after.into()
    }))
}

/// `DELETE /v1/orgs/{org}/alert-rules/{rule}` (its alerts stay listed; those
/// not yet delivered are marked failed).
#[utoipa::path(
    operation_id = "alert_rules_delete",
    tag = "alerts",
    delete,
    path = "/v1/orgs/{org}/alert-rules/{rule}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("rule" = Uuid, Path, description = "The alert rule's id")),
    responses((status = 204, description = "Deleted"), crate::http::schema::Refusals),
)]
pub async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, rule)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, before) = managed_rule(&tx, &caller, (org, rule)).await?;
    table::delete_rule(&tx, actor, &before).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// The alert's id: the idempotency id its webhook carries.
    pub id: Uuid,
    pub org_id: Uuid,
    /// The project of a project-scoped budget or rule.
    pub project_id: Option<Uuid>,
    /// `budget` or `rule`.
    pub source: String,
    /// The budget's or the rule's id.
    pub source_id: Uuid,
    /// The period's first day (`2026-11-01`).
    pub period_start: String,
    /// The budget's threshold in percent (100 for a rule).
    pub threshold_percent: i32,
    /// `threshold` (a threshold crossed, once per period) or `revocation`
    /// (a budget revoked its scope's keys: each time, a breach after a
    /// restore included; the body's `keys_revoked` says how many).
    pub kind: String,
    /// The webhook's body.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// `pending` (to be delivered or retried), `delivered`, `failed`
    /// (retries exhausted) or `recorded` (no webhook).
    pub state: String,
    pub attempts: i32,
    pub webhook_url: Option<String>,
    /// The last attempt's HTTP status, if there was an answer.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub last_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// When a pending alert is tried next.
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Only this project's.
    pub project_id: Option<Uuid>,
    /// Only this budget's or rule's.
    pub source_id: Option<Uuid>,
    /// Only in this state.
    pub state: Option<String>,
}

/// `GET /v1/orgs/{org}/alerts`: the alerts the caller may see, newest first.
#[utoipa::path(
    operation_id = "alerts_list",
    tag = "alerts",
    get,
    path = "/v1/orgs/{org}/alerts",
    params(("org" = Uuid, Path, description = "The organization's id"), AlertQuery),
    responses((status = 200, body = Page<AlertView>), crate::http::schema::Refusals),
)]
pub async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(query): QueryParams<AlertQuery>,
) -> Result<Json<Page<AlertView>>, ApiError> {
    let (limit, before) = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    }
    .parse()?;
    if let Some(s) = query
        .state
        .as_deref()
        .filter(|s| !matches!(*s, "pending" | "delivered" | "failed" | "recorded"))
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            "state",
            format!("{s:?} is not one of pending, delivered, failed, recorded"),
        )]));
    }
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    let all = m.org_role.runs_the_org();
    let mine: Vec<Uuid> = m.projects.keys().copied().collect();
    let filter = AlertFilter {
        all,
        projects: &mine,
        project_id: query.project_id,
        source_id: query.source_id,
        state: query.state.as_deref(),
    };
    let rows = table::list(&db, org, before, limit + 1, &filter).await?;
    let items = rows
        .into_iter()
        .map(|a| AlertView {
            id: a.id,
            org_id: a.org_id,
            project_id: a.project_id,
            source: a.source,
            source_id: a.source_id,
            period_start: floopy_model::calendar::iso_date(u32::try_from(a.period).unwrap_or(0)),
            threshold_percent: a.threshold,
            kind: if a.revocation > 0 {
                "revocation"
            } else {
                "threshold"
            }
            .to_string(),
            body: a.body,
            state: a.state,
            attempts: a.attempts,
            webhook_url: a.webhook_url,
            last_status: a.last_status,
            last_error: a.last_error,
            created_at: a.created_at,
            last_attempt_at: a.last_attempt_at,
            delivered_at: a.delivered_at,
            next_attempt_at: a.next_attempt_at,
        })
        .collect();
    Ok(Json(Page::new(items, limit, |a| a.id)))
}
