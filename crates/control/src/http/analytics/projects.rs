//! `GET .../analytics/projects`: the all-projects table, each project's
//! figures and share of the org's cost.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use floopy_model::format_usd;
use serde::Serialize;
use uuid::Uuid;

use super::figures::ProjectFigures;
use super::{ask, ratio, share, AnalyticsQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Ids, QueryParams};
use crate::state::AppState;
use floopy_control_db::tables::projects;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectBreakdown {
    pub project_id: String,
    /// The project's name (null for a project deleted since).
    pub name: Option<String>,
    pub requests: u64,
    pub tokens: u64,
    pub cost_micro_usd: u64,
    pub cost_usd: String,
    /// USD per million tokens (null without tokens).
    pub cost_per_mtok: Option<f64>,
    pub avg_latency_ms: f64,
    pub p95_latency_ms: f64,
    /// Answers with a status of 400 or more, over all.
    pub error_rate: f64,
    /// The average of the scored requests' last scores (null: none).
    pub feedback_score: Option<f64>,
    pub ratings: u64,
    /// This project's share of the cost of all the projects listed.
    pub cost_share: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    pub data: Vec<ProjectBreakdown>,
}

/// `GET /v1/orgs/{org}/analytics/projects`: the all-projects table, one row
/// per project with requests in range, the costliest first.
#[utoipa::path(
    operation_id = "analytics_projects",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/projects",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = Breakdown), crate::http::schema::Refusals),
)]
pub async fn projects(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Breakdown>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let figures = ProjectFigures::load(&a, true).await?;
    let names: HashMap<String, String> = projects::names(&*state.db().await?, org)
        .await?
        .into_iter()
        .map(|(id, name)| (id.to_string(), name))
        .collect();
    let total: u64 = figures.rows.iter().map(|r| r.cost_micro_usd).sum();
    let mut data: Vec<ProjectBreakdown> = figures
        .rows
        .iter()
        .filter(|r| match &a.scope.projects {
            Some(only) => only.iter().any(|p| p.to_string() == r.project_id),
            None => true,
        })
        .map(|r| ProjectBreakdown {
            name: names.get(&r.project_id).cloned(),
            project_id: r.project_id.clone(),
            requests: r.requests,
            tokens: r.tokens,
            cost_micro_usd: r.cost_micro_usd,
            cost_usd: format_usd(r.cost_micro_usd),
            cost_per_mtok: ratio(r.cost_micro_usd as f64, r.tokens),
            avg_latency_ms: r.latency_sum_ms as f64 / r.requests.max(1) as f64,
            p95_latency_ms: r.p95_latency_ms,
            error_rate: share(r.errors, r.requests),
            feedback_score: ratio(r.score_sum, r.ratings),
            ratings: r.ratings,
            cost_share: share(r.cost_micro_usd, total),
        })
        .collect();
    data.sort_by(|x, y| {
        y.cost_micro_usd
            .cmp(&x.cost_micro_usd)
            .then_with(|| x.project_id.cmp(&y.project_id))
    });
    Ok(Json(Breakdown { data }))
}
