//! Environment limits of an org (owners and admins): requests per minute
//! and the monthly cost cap, per environment. A change reaches every
//! gateway through the database's change notification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_model::{format_usd, usd_to_micro, Environment};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page};
use crate::app::AppState;
use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LimitsView {
    #[schema(value_type = crate::openapi::EnvironmentName)]
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

fn view(row: &tokio_postgres::Row) -> Result<Option<LimitsView>, ApiError> {
    let environment: String = row.try_get("environment")?;
    let cost: Option<i64> = row.try_get("monthly_cost_micro_usd")?;
    let Some(environment) = Environment::parse(&environment) else {
        return Ok(None);
    };
    Ok(Some(LimitsView {
        environment,
        rpm: row.try_get("rpm")?,
        monthly_cost_usd: cost.map(|c| format_usd(u64::try_from(c).unwrap_or(0))),
        month_to_date_usd: None,
    }))
}

/// `GET /v1/orgs/{org}/limits`: every environment (four, so one page),
/// with its limits (absent where none is set) and its spend this UTC month.
#[utoipa::path(
    operation_id = "limits_list",
    tag = "limits",
    get,
    path = "/v1/orgs/{org}/limits",
    params(("org" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = Page<LimitsView>), crate::openapi::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
) -> Result<Json<Page<LimitsView>>, ApiError> {
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ReadLimits)?;
    let environments: Vec<&str> = Environment::ALL.iter().map(|e| e.as_str()).collect();
    let rows = db
        .query(
            "SELECT e.name AS environment, l.rpm, l.monthly_cost_micro_usd,
                    COALESCE((SELECT sum(u.settled_micro_usd) FROM replica_usage u
                               WHERE u.org_id = $1 AND u.environment::text = e.name
                                 AND u.month = to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')::int),
                             0)::bigint AS spent
               FROM unnest($2::text[]) WITH ORDINALITY AS e (name, n)
               LEFT JOIN environment_limits l
                 ON l.org_id = $1 AND l.environment::text = e.name
              ORDER BY e.n",
            &[&org, &environments],
        )
        .await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let spent: i64 = row.try_get("spent")?;
        if let Some(v) = view(row)? {
            data.push(LimitsView {
                month_to_date_usd: Some(format_usd(u64::try_from(spent).unwrap_or(0))),
                ..v
            });
        }
    }
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
    responses((status = 200, body = LimitsView), crate::openapi::Refusals),
)]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, environment)): Ids<(Uuid, String)>,
    JsonBody(body): JsonBody<LimitsChange>,
) -> Result<Json<LimitsView>, ApiError> {
    let environment = parse_environment(&environment)?;
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ManageLimits)?;
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
    let tx = db.transaction().await?;
    let before = tx
        .query_opt(
            "SELECT environment::text, rpm, monthly_cost_micro_usd FROM environment_limits
              WHERE org_id = $1 AND environment = $2::text::floopy_environment",
            &[&org, &environment.as_str()],
        )
        .await?
        .as_ref()
        .map(view)
        .transpose()?
        .flatten();
    let row = tx
        .query_one(
            "INSERT INTO environment_limits (org_id, environment, rpm, monthly_cost_micro_usd)
             VALUES ($1, $2::text::floopy_environment, $3, $4)
             ON CONFLICT (org_id, environment)
             DO UPDATE SET rpm = EXCLUDED.rpm, monthly_cost_micro_usd = EXCLUDED.monthly_cost_micro_usd
             RETURNING environment::text, rpm, monthly_cost_micro_usd",
            &[&org, &environment.as_str(), &rpm, &cost],
        )
        .await?;
    let after = view(&row)?.ok_or_else(|| ApiError::internal("environment"))?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "limits.set",
            object_type: "environment_limits",
            object_id: environment.to_string(),
            before: before.as_ref().and_then(audit::snapshot),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// `DELETE /v1/orgs/{org}/limits/{environment}`: no limits for it.
#[utoipa::path(
    operation_id = "limits_remove",
    tag = "limits",
    delete,
    path = "/v1/orgs/{org}/limits/{environment}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("environment" = String, Path, description = "development, staging, production or other")),
    responses((status = 204, description = "No limits for the environment"), crate::openapi::Refusals),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, environment)): Ids<(Uuid, String)>,
) -> Result<StatusCode, ApiError> {
    let environment = parse_environment(&environment)?;
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ManageLimits)?;
    let tx = db.transaction().await?;
    let before = tx
        .query_opt(
            "DELETE FROM environment_limits WHERE org_id = $1 AND environment = $2::text::floopy_environment
             RETURNING environment::text, rpm, monthly_cost_micro_usd",
            &[&org, &environment.as_str()],
        )
        .await?
        .ok_or(ApiError::NotFound("limits"))?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "limits.remove",
            object_type: "environment_limits",
            object_id: environment.to_string(),
            before: view(&before)?.as_ref().and_then(audit::snapshot),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
