//! The overview's widgets (`GET .../analytics/widgets/...`): a project's
//! cost per million tokens, latency and quality against the org, its rank,
//! and cost by environment; the arithmetic over each project's figures.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use floopy_model::calendar::{month_of, month_start_ms};
use floopy_model::format_usd;
use serde::Serialize;
use uuid::Uuid;

use super::figures::ProjectFigures;
use super::{ask, now_ms, ratio, AnalyticsQuery};
use crate::analytics::{self as sql, Range};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::http::{Ids, QueryParams};
use crate::roles::{authorize, Action};
use crate::state::AppState;
use floopy_control_db::tables::limits;

/// A project's figure next to the average of every project the caller sees.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    pub project_id: Uuid,
    /// Null when the project has nothing to measure in range.
    pub project: Option<f64>,
    /// Null when no project has.
    pub org_average: Option<f64>,
    /// project / org_average - 1 (null when either is null or the average
    /// is 0).
    pub difference: Option<f64>,
}

pub(super) fn comparison(project_id: Uuid, project: Option<f64>, org: Option<f64>) -> Comparison {
    Comparison {
        project_id,
        project,
        org_average: org,
        difference: match (project, org) {
            (Some(p), Some(o)) if o != 0.0 => Some(p / o - 1.0),
            _ => None,
        },
    }
}

fn selected(q: &AnalyticsQuery) -> Result<Uuid, ApiError> {
    q.project.ok_or_else(|| {
        ApiError::Validation(vec![FieldError::new(
            "project",
            "a single-project widget needs project",
        )])
    })
}

/// `GET /v1/orgs/{org}/analytics/widgets/cost-per-mtok`: the project's cost
/// per million tokens (total cost / total tokens, in USD) vs the org's.
#[utoipa::path(
    operation_id = "analytics_widget_cost_per_mtok",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/widgets/cost-per-mtok",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = Comparison), crate::http::schema::Refusals),
)]
pub async fn widget_cost_per_mtok(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Comparison>, ApiError> {
    let project = selected(&q)?;
    let a = ask(&state, &caller, org, &q).await?;
    let figures = ProjectFigures::load(&a, false).await?;
    // Micro-USD per token is USD per million tokens.
    Ok(Json(
        figures.compare(project, |r| (r.cost_micro_usd as f64, r.tokens)),
    ))
}

/// `GET /v1/orgs/{org}/analytics/widgets/latency`: the project's average
/// latency (ms) vs the org's (over all their requests).
#[utoipa::path(
    operation_id = "analytics_widget_latency",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/widgets/latency",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = Comparison), crate::http::schema::Refusals),
)]
pub async fn widget_latency(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Comparison>, ApiError> {
    let project = selected(&q)?;
    let a = ask(&state, &caller, org, &q).await?;
    let figures = ProjectFigures::load(&a, false).await?;
    Ok(Json(figures.compare(project, |r| {
        (r.latency_sum_ms as f64, r.requests)
    })))
}

/// `GET /v1/orgs/{org}/analytics/widgets/quality`: the project's average
/// feedback score vs the org's (each scored request's last score).
#[utoipa::path(
    operation_id = "analytics_widget_quality",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/widgets/quality",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = Comparison), crate::http::schema::Refusals),
)]
pub async fn widget_quality(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Comparison>, ApiError> {
    let project = selected(&q)?;
    let a = ask(&state, &caller, org, &q).await?;
    let figures = ProjectFigures::load(&a, false).await?;
    Ok(Json(figures.compare(project, |r| (r.score_sum, r.ratings))))
}

/// The metrics a project can be ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Requests,
    Cost,
    CostPerMtok,
    Latency,
    Quality,
}

impl Metric {
    fn parse(text: &str) -> Option<Metric> {
        Some(match text {
            "requests" => Metric::Requests,
            "cost" => Metric::Cost,
            "cost_per_mtok" => Metric::CostPerMtok,
            "latency" => Metric::Latency,
            "quality" => Metric::Quality,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Cost => "cost",
            Metric::CostPerMtok => "cost_per_mtok",
            Metric::Latency => "latency",
            Metric::Quality => "quality",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rank {
    pub project_id: Uuid,
    /// requests, cost (USD), cost_per_mtok (USD), latency (average ms) or
    /// quality (average score).
    pub metric: String,
    /// Null when the project has nothing to measure in range.
    pub value: Option<f64>,
    /// 1 for the highest value among the projects that have one.
    pub rank: Option<u64>,
    /// How many projects have a value.
    pub projects: u64,
    /// The share of the other projects with a lower value, in percent (100
    /// for the only one).
    pub percentile: Option<f64>,
}

/// Each project's value of `metric`, for the projects that have one.
fn metric_values(figures: &ProjectFigures, metric: Metric) -> Vec<(String, f64)> {
    figures
        .rows
        .iter()
        .filter_map(|r| {
            let value = match metric {
                Metric::Requests => r.requests as f64,
                Metric::Cost => r.cost_micro_usd as f64 / 1e6,
                Metric::CostPerMtok => ratio(r.cost_micro_usd as f64, r.tokens)?,
                Metric::Latency => ratio(r.latency_sum_ms as f64, r.requests)?,
                Metric::Quality => ratio(r.score_sum, r.ratings)?,
            };
            Some((r.project_id.clone(), value))
        })
        .collect()
}

/// `GET /v1/orgs/{org}/analytics/widgets/rank`: the project's percentile
/// rank among the org's projects by `metric`.
#[utoipa::path(
    operation_id = "analytics_widget_rank",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/widgets/rank",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = Rank), crate::http::schema::Refusals),
)]
pub async fn widget_rank(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Rank>, ApiError> {
    let project = selected(&q)?;
    let metric = match q.metric.as_deref() {
        None => Metric::Requests,
        Some(m) => Metric::parse(m).ok_or_else(|| {
            ApiError::Validation(vec![FieldError::new(
                "metric",
                format!("{m:?} is not one of requests, cost, cost_per_mtok, latency, quality"),
            )])
        })?,
    };
    let a = ask(&state, &caller, org, &q).await?;
    let figures = ProjectFigures::load(&a, false).await?;
    let values = metric_values(&figures, metric);
    let id = project.to_string();
    let value = values.iter().find(|(p, _)| *p == id).map(|(_, v)| *v);
    let n = values.len() as u64;
    let (rank, percentile) = match value {
        None => (None, None),
        Some(v) => {
            let higher = values.iter().filter(|(_, o)| *o > v).count() as u64;
            let lower = values.iter().filter(|(_, o)| *o < v).count() as u64;
            let percentile = if n <= 1 {
                100.0
            } else {
                100.0 * lower as f64 / (n - 1) as f64
            };
            (Some(higher + 1), Some(percentile))
        }
    };
    Ok(Json(Rank {
        project_id: project,
        metric: metric.as_str().to_string(),
        value,
        rank,
        projects: n,
        percentile,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentCost {
    /// Empty for keys without an environment.
    pub environment: String,
    /// The project's requests and cost this month (UTC), from the logs.
    pub requests: u64,
    pub cost_micro_usd: u64,
    pub cost_usd: String,
    /// The environment's monthly cap (the whole org's), for callers who may
    /// read the limits; null otherwise or without a cap.
    pub cap_micro_usd: Option<u64>,
    /// The org's month-to-date spend in the environment as the gateways
    /// enforce it (their exchanged, settled spend), for the same callers.
    pub org_spend_micro_usd: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentCosts {
    pub project_id: Uuid,
    /// The month, `YYYYMM` (UTC).
    pub month: u32,
    pub data: Vec<EnvironmentCost>,
}

/// `GET /v1/orgs/{org}/analytics/widgets/cost-by-environment`: the
/// project's cost this month by environment, each environment's
/// month-to-date spend against its cap.
#[utoipa::path(
    operation_id = "analytics_widget_cost_by_environment",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/widgets/cost-by-environment",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = EnvironmentCosts), crate::http::schema::Refusals),
)]
pub async fn widget_cost_by_environment(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<EnvironmentCosts>, ApiError> {
    let project = selected(&q)?;
    let a = ask(&state, &caller, org, &q).await?;
    let now = now_ms();
    let month = month_of(now);
    let month_range = Range {
        from_ms: month_start_ms(i64::from(month / 100), month % 100),
        to_ms: now + 1,
    };
    let rows: Vec<sql::EnvironmentRow> = a
        .analytics
        .fetch(&sql::by_environment_rolled(&a.scope, &month_range))
        .await?;
    let mut caps: HashMap<String, (Option<u64>, u64)> = HashMap::new();
    if authorize(&a.membership, Action::ReadLimits).is_ok() {
        let db = state.db().await?;
        for (limits, spent) in limits::with_spend(&db, org, Some(month as i32)).await? {
            caps.insert(
                limits.row.environment.as_str().to_string(),
                (
                    limits.monthly_cost_micro_usd,
                    u64::try_from(spent).unwrap_or(0),
                ),
            );
        }
    }
    let limits_readable = !caps.is_empty();
    Ok(Json(EnvironmentCosts {
        project_id: project,
        month,
        data: rows
            .into_iter()
            .map(|r| {
                let (cap, spend) = caps.get(&r.environment).copied().unwrap_or((None, 0));
                EnvironmentCost {
                    cost_usd: format_usd(r.cost_micro_usd),
                    cap_micro_usd: cap,
                    org_spend_micro_usd: (limits_readable && !r.environment.is_empty())
                        .then_some(spend),
                    environment: r.environment,
                    requests: r.requests,
                    cost_micro_usd: r.cost_micro_usd,
                }
            })
            .collect(),
    }))
}
