//! Budgets: an amount in USD per UTC day, ISO week or calendar month for the
//! org or one of its projects, alert thresholds (default 50/80/100 %), the
//! action on breach (`alert`, or `alert_and_revoke` the scope's keys), and
//! an optional webhook the threshold alerts are delivered to. Org owners and
//! admins manage the org's budgets; project owners and admins their
//! project's. `restore` gives back the keys a budget revoked, once the
//! budget is raised above the spend or the period has rolled over.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_control_db::tables::budgets::{self as table, BudgetRow};
use floopy_control_db::Actor;
use floopy_model::format_usd;
use floopy_model::validate::{check_length, NAME_CHARS};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::alerts::{
    authorize_scope, check_period, check_webhook_secret, check_webhook_url, new_webhook_secret,
    usd_field,
};
use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BudgetView {
    pub id: Uuid,
    pub org_id: Uuid,
    /// The project it is scoped to; absent: the whole org.
    pub project_id: Option<Uuid>,
    pub name: String,
    /// The amount per period in USD, exact to the micro-dollar.
    pub amount_usd: String,
    /// `day`, `week` (ISO, from Monday) or `month`, UTC.
    pub period: String,
    /// Alert thresholds in percent of the amount.
    pub thresholds: Vec<i32>,
    /// `alert` or `alert_and_revoke`.
    pub action: String,
    /// Spend in the current period, as last evaluated, in USD.
    pub spent_usd: String,
    /// Whether the budget is breached in the current period.
    pub breached: bool,
    /// Where its threshold alerts are delivered (absent: only listed).
    pub webhook_url: Option<String>,
    /// Keys it holds revoked now: `restore`, or deleting the budget, gives
    /// them back.
    pub keys_revoked: i64,
    /// Only in the response of the request that set or generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl From<BudgetRow> for BudgetView {
    fn from(b: BudgetRow) -> BudgetView {
        BudgetView {
            id: b.id,
            org_id: b.org_id,
            project_id: b.project_id,
            name: b.name,
            amount_usd: b.amount_usd,
            period: b.period,
            thresholds: b.thresholds,
            action: b.action,
            spent_usd: b.spent_usd,
            breached: b.breached,
            webhook_url: b.webhook_url,
            keys_revoked: b.keys_revoked,
            webhook_secret: None,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetFields {
    pub name: Option<String>,
    /// Only on creation: the project (absent: the org).
    pub project_id: Option<Uuid>,
    pub amount_usd: Option<f64>,
    /// `day`, `week` (ISO, from Monday, UTC) or `month` (the default).
    pub period: Option<String>,
    /// Alert thresholds in percent of the amount: 1 to 10 of them, each 1
    /// to 1000 (default 50, 80, 100).
    #[schema(min_items = 1, max_items = 10, value_type = Option<Vec<ThresholdPercent>>)]
    pub thresholds: Option<Vec<i64>>,
    /// `alert` (the default) or `alert_and_revoke`.
    pub action: Option<String>,
    /// An http or https URL the threshold alerts are delivered to; `""`
    /// removes it.
    pub webhook_url: Option<String>,
    /// 16 to 200 printable ASCII characters; generated when a webhook is
    /// set without one.
    pub webhook_secret: Option<String>,
}

/// How many thresholds a budget has at most, and their range in percent
/// (the database's `budgets_thresholds` constraint says the same).
const MAX_THRESHOLDS: usize = 10;
const THRESHOLD_PERCENT: std::ops::RangeInclusive<i64> = 1..=1000;

/// A threshold in percent of the budget's amount, 1 to 1000 (the OpenAPI
/// schema of one).
pub struct ThresholdPercent;

impl utoipa::PartialSchema for ThresholdPercent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(*THRESHOLD_PERCENT.start()))
            .maximum(Some(*THRESHOLD_PERCENT.end()))
            .description(Some("A threshold in percent of the budget's amount."))
            .into()
    }
}

impl utoipa::ToSchema for ThresholdPercent {}

/// The checked values of a budget's fields.
struct Checked {
    name: Option<String>,
    amount: Option<i64>,
    period: Option<String>,
    thresholds: Option<Vec<i32>>,
    action: Option<String>,
    /// `Some("")`: remove the webhook.
    url: Option<String>,
    secret: Option<String>,
}

impl Checked {
    fn fields(&self) -> table::BudgetFields<'_> {
        table::BudgetFields {
            name: self.name.as_deref(),
            amount_micro_usd: self.amount,
            period: self.period.as_deref(),
            thresholds: self.thresholds.as_deref(),
            action: self.action.as_deref(),
            webhook_url: self.url.as_deref(),
            webhook_secret: self.secret.as_deref(),
        }
    }
}

impl BudgetFields {
    fn check(&self, creating: bool) -> Result<Checked, ApiError> {
        let mut errors = Vec::new();
        if let Some(Err(message)) = self.name.as_deref().map(|n| check_length(n, NAME_CHARS)) {
            errors.push(FieldError::new("name", message));
        }
        let amount = usd_field(self.amount_usd, "amount_usd", creating, &mut errors);
        if let Some(Err(message)) = self.period.as_deref().map(check_period) {
            errors.push(FieldError::new("period", message));
        }
        if let Some(Err(message)) = self
            .webhook_url
            .as_deref()
            .map(|u| check_webhook_url(u, !creating))
        {
            errors.push(FieldError::new("webhook_url", message));
        }
        if let Some(Err(message)) = self.webhook_secret.as_deref().map(check_webhook_secret) {
            errors.push(FieldError::new("webhook_secret", message));
        }
        if self.webhook_secret.is_some() && self.webhook_url.as_deref() == Some("") {
            errors.push(FieldError::new(
                "webhook_secret",
                "cannot be set while the webhook is removed",
            ));
        }
        let thresholds = match &self.thresholds {
            None => None,
            Some(t)
                if !t.is_empty()
                    && t.len() <= MAX_THRESHOLDS
                    && t.iter().all(|p| THRESHOLD_PERCENT.contains(p)) =>
            {
                let mut t: Vec<i32> = t.iter().filter_map(|p| i32::try_from(*p).ok()).collect();
                t.sort_unstable();
                t.dedup();
                Some(t)
            }
            Some(_) => {
                errors.push(FieldError::new(
                    "thresholds",
                    "must be 1 to 10 percentages from 1 to 1000",
                ));
                None
            }
        };
        if let Some(action) = self
            .action
            .as_deref()
            .filter(|a| !matches!(*a, "alert" | "alert_and_revoke"))
        {
            errors.push(FieldError::new(
                "action",
                format!("{action:?} is not one of alert, alert_and_revoke"),
            ));
        }
        if !creating && self.project_id.is_some() {
            errors.push(FieldError::new("project_id", "cannot be changed"));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(Checked {
            name: self.name.clone(),
            amount,
            period: self.period.clone(),
            thresholds,
            action: self.action.clone(),
            url: self.webhook_url.clone(),
            secret: self.webhook_secret.clone(),
        })
    }
}

/// `GET /v1/orgs/{org}/budgets`: those the caller may see.
#[utoipa::path(
    operation_id = "budgets_list",
    tag = "budgets",
    get,
    path = "/v1/orgs/{org}/budgets",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<BudgetView>), crate::http::schema::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<BudgetView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    let all = m.org_role.runs_the_org();
    let mine: Vec<Uuid> = m.projects.keys().copied().collect();
    let rows = table::list(&db, org, after, limit + 1, all, &mine).await?;
    let items = rows.into_iter().map(BudgetView::from).collect();
    Ok(Json(Page::new(items, limit, |b| b.id)))
}

/// `POST /v1/orgs/{org}/budgets`.
#[utoipa::path(
    operation_id = "budgets_create",
    tag = "budgets",
    post,
    path = "/v1/orgs/{org}/budgets",
    params(("org" = Uuid, Path, description = "The organization's id")),
    request_body = BudgetFields,
    responses((status = 201, body = BudgetView), crate::http::schema::Refusals),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<BudgetFields>,
) -> Result<(StatusCode, Json<BudgetView>), ApiError> {
    let mut b = body.check(true)?;
    if b.url.is_some() && b.secret.is_none() {
        b.secret = Some(new_webhook_secret()?);
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageBudgets(body.project_id))?;
    let actor = Actor::person(org, caller.user_id);
    let ids = (org, Uuid::now_v7());
    let budget = table::insert(&tx, actor, ids, body.project_id, &b.fields())
        .await
        .map_err(|e| match e.constraint() {
            Some("budgets_org_id_project_id_fkey") => ApiError::Validation(vec![FieldError::new(
                "project_id",
                "is not a project of this organization",
            )]),
            _ => e.into(),
        })?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(BudgetView {
            webhook_secret: b.secret,
            ..budget.into()
        }),
    ))
}

/// The budget, if the caller may `manage` (else read) it.
async fn authorized(
    db: &tokio_postgres::Client,
    caller: &Caller,
    (org, budget): (Uuid, Uuid),
    manage: bool,
) -> Result<BudgetRow, ApiError> {
    let m = membership(db, caller, org).await?;
    let row = table::read(db, org, budget)
        .await?
        .ok_or(ApiError::NotFound("budget"))?;
    authorize_scope(&m, row.project_id, manage, "budget")?;
    Ok(row)
}

/// `authorized` for a change: the budget locked on `tx`, the membership read
/// on it too; and who changes it.
async fn managed(
    tx: &tokio_postgres::Transaction<'_>,
    caller: &Caller,
    (org, budget): (Uuid, Uuid),
) -> Result<(Actor, BudgetRow), ApiError> {
    let m = membership(tx.client(), caller, org).await?;
    let row = table::lock(tx, org, budget)
        .await?
        .ok_or(ApiError::NotFound("budget"))?;
    authorize_scope(&m, row.project_id, true, "budget")?;
    Ok((Actor::person(org, caller.user_id), row))
}

/// `GET /v1/orgs/{org}/budgets/{budget}`.
#[utoipa::path(
    operation_id = "budgets_read",
    tag = "budgets",
    get,
    path = "/v1/orgs/{org}/budgets/{budget}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("budget" = Uuid, Path, description = "The budget's id")),
    responses((status = 200, body = BudgetView), crate::http::schema::Refusals),
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, budget)): Ids<(Uuid, Uuid)>,
) -> Result<Json<BudgetView>, ApiError> {
    let db = state.db().await?;
    let budget = authorized(&db, &caller, (org, budget), false).await?;
    Ok(Json(budget.into()))
}

/// `PATCH /v1/orgs/{org}/budgets/{budget}`: name, amount, thresholds,
/// action, period, webhook. Lowered below the period's spend, it is
/// breached at the next evaluation.
#[utoipa::path(
    operation_id = "budgets_update",
    tag = "budgets",
    patch,
    path = "/v1/orgs/{org}/budgets/{budget}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("budget" = Uuid, Path, description = "The budget's id")),
    request_body = BudgetFields,
    responses((status = 200, body = BudgetView), crate::http::schema::Refusals),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, budget)): Ids<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<BudgetFields>,
) -> Result<Json<BudgetView>, ApiError> {
    let mut b = body.check(false)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, before) = managed(&tx, &caller, (org, budget)).await?;
    let adding_webhook =
        before.webhook_url.is_none() && b.url.as_deref().is_some_and(|u| !u.is_empty());
    if adding_webhook && b.secret.is_none() {
        b.secret = Some(new_webhook_secret()?);
    }
    let after = table::update(&tx, actor, &before, &b.fields()).await?;
    tx.commit().await?;
    Ok(Json(BudgetView {
        webhook_secret: b.secret,
        ..after.into()
    }))
}

/// `DELETE /v1/orgs/{org}/budgets/{budget}`: the keys it revoked are
/// restored (nothing holds them revoked any more), with a `budget.restore`
/// audit entry before the `budget.delete` one.
#[utoipa::path(
    operation_id = "budgets_delete",
    tag = "budgets",
    delete,
    path = "/v1/orgs/{org}/budgets/{budget}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("budget" = Uuid, Path, description = "The budget's id")),
    responses((status = 204, description = "Deleted"), crate::http::schema::Refusals),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, budget)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, before) = managed(&tx, &caller, (org, budget)).await?;
    table::delete(&tx, actor, &before).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Restored {
    /// Keys given back.
    pub keys_restored: u64,
}

/// `POST /v1/orgs/{org}/budgets/{budget}/restore`: gives back the keys this
/// budget revoked, once its period's spend is below its amount (raised, or a
/// new period); 409 `budget_exceeded` before.
#[utoipa::path(
    operation_id = "budgets_restore",
    tag = "budgets",
    post,
    path = "/v1/orgs/{org}/budgets/{budget}/restore",
    params(("org" = Uuid, Path, description = "The organization's id"), ("budget" = Uuid, Path, description = "The budget's id")),
    responses((status = 200, body = Restored), crate::http::schema::Refusals),
)]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, budget)): Ids<(Uuid, Uuid)>,
) -> Result<Json<Restored>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, _) = managed(&tx, &caller, (org, budget)).await?;
    // The spend the evaluator saw this period, against the amount now.
    let (spent, amount, period) = table::lock_period_spend(&tx, budget)
        .await?
        .ok_or(ApiError::NotFound("budget"))?;
    if spent >= amount {
        return Err(ApiError::Conflict {
            code: "budget_exceeded",
            message: format!(
                "this {period}'s spend ({} USD) is not below the budget ({} USD): raise it or wait for the next {period}",
                format_usd(u64::try_from(spent).unwrap_or(0)),
                format_usd(u64::try_from(amount).unwrap_or(0))
            ),
        });
    }
    let n = table::restore_keys(&tx, actor, (org, budget), "restored").await?;
    table::rearm(&tx, budget).await?;
    tx.commit().await?;
    Ok(Json(Restored { keys_restored: n }))
}
