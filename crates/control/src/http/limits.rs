//! Environment limits of an org (owners and admins): requests per minute
//! and the monthly cost cap, per environment. A change reaches every
//! gateway through the database's change notification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_control_db::tables::limits::{self as table, LimitsRow};
use floopy_control_db::Actor;
use floopy_model::{usd_to_micro, Environment};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LimitsView {
    #[schema(value_type = crate::http::schema::EnvironmentName)]
    pub environment: Environment,
    /// Requests per minute, all keys of the environment together.
    pub rpm: Option<i32>,
    /// The monthly cost cap in USD, exact to the micro-dollar.
    pub monthly_cost_usd: Option<String>,
    /// In the list: the org's spend in the environment this UTC month, as
    /// the gateways enforce it against the cap (their settled spend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month_to_date_usd: Option<String>,
}

impl From<LimitsRow> for LimitsView {
    fn from(l: LimitsRow) -> LimitsView {
        LimitsView {
            environment: l.environment,
            rpm: l.rpm,
            monthly_cost_usd: l.monthly_cost_usd,
            month_to_date_usd: None,
        }
    }
}

/// `GET /v1/orgs/{org}/limits`: every environment (four, so one page),
/// with its limits (absent where none is set) and its spend this UTC month.
#[utoipa::path(
    operation_id = "limits_list",
    tag = "limits",
    get,
    path = "/v1/orgs/{org}/limits",
    params(("org" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = Page<LimitsView>), crate::http::schema::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
) -> Result<Json<Page<LimitsView>>, ApiError> {
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ReadLimits)?;
    let data = table::list_with_spend(&db, org)
        .await?
        .into_iter()
        .map(|(limits, spent)| LimitsView {
            month_to_date_usd: Some(spent),
            ..limits.into()
        })
        .collect();
    Ok(Json(Page {
        data,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    pub rpm: Option<i64>,
    pub monthly_cost_usd: Option<f64>,
}

fn parse_environment(value: &str) -> Result<Environment, ApiError> {
    Environment::parse(value).ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new(
            "environment",
            format!("{value:?} is not one of development, staging, production, other"),
        )])
    })
}

/// `PUT /v1/orgs/{org}/limits/{environment}`: sets both limits (an absent
/// one is removed).
#[utoipa::path(
    operation_id = "limits_set",
    tag = "limits",
    put,
    path = "/v1/orgs/{org}/limits/{environment}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("environment" = String, Path, description = "development, staging, production or other")),
    request_body = LimitsChange,
    responses((status = 200, body = LimitsView), crate::http::schema::Refusals),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, environment)): Ids<(Uuid, String)>,
    JsonBody(body): JsonBody<LimitsChange>,
) -> Result<Json<LimitsView>, ApiError> {
    let environment = parse_environment(&environment)?;
    let mut errors = Vec::new();
    let rpm = match body.rpm {
        None => None,
        Some(n) if (1..=i64::from(i32::MAX)).contains(&n) => i32::try_from(n).ok(),
        Some(_) => {
            errors.push(FieldError::new("rpm", "must be 1 to 2147483647"));
            None
        }
    };
    let cost = match body.monthly_cost_usd.map(usd_to_micro) {
        None => None,
        Some(Ok(micro)) => i64::try_from(micro).ok(),
        Some(Err(e)) => {
            errors.push(FieldError::new("monthly_cost_usd", e.to_string()));
            None
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageLimits)?;
    let actor = Actor::person(org, caller.user_id);
    let after = table::set(&tx, actor, org, environment, rpm, cost).await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

/// `DELETE /v1/orgs/{org}/limits/{environment}`: no limits for it.
#[utoipa::path(
    operation_id = "limits_remove",
    tag = "limits",
    delete,
    path = "/v1/orgs/{org}/limits/{environment}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("environment" = String, Path, description = "development, staging, production or other")),
    responses((status = 204, description = "No limits for the environment"), crate::http::schema::Refusals),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, environment)): Ids<(Uuid, String)>,
) -> Result<StatusCode, ApiError> {
    let environment = parse_environment(&environment)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageLimits)?;
    let actor = Actor::person(org, caller.user_id);
    table::remove(&tx, actor, org, environment)
        .await?
        .ok_or(ApiError::NotFound("limits"))?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
