//! `GET .../analytics/evaluations`: the scores given to requests, per
//! project and the most recent.

use axum::extract::State;
use axum::Json;
use floopy_model::calendar::rfc3339;
use serde::Serialize;
use uuid::Uuid;

use super::{ask, AnalyticsQuery, RECENT_SCORES};
use crate::analytics as sql;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Ids, QueryParams};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectQuality {
    pub project_id: String,
    /// Scored requests.
    pub ratings: u64,
    pub avg_score: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScoreView {
    pub request_id: String,
    pub project_id: String,
    pub score: f64,
    pub comment: String,
    pub scored_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Evaluations {
    pub ratings: u64,
    /// The mean of each scored request's last score; null without any.
    pub avg_score: Option<f64>,
    pub by_project: Vec<ProjectQuality>,
    /// Scored requests per tenth of the score: [0, 0.1), ..., [0.9, 1].
    pub histogram: Vec<u64>,
    pub recent: Vec<ScoreView>,
}

/// `GET /v1/orgs/{org}/analytics/evaluations`: feedback scores of the
/// requests in range (each request's last score).
#[utoipa::path(
    operation_id = "analytics_evaluations",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/evaluations",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = Evaluations), crate::http::schema::Refusals),
)]
pub async fn evaluations(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Evaluations>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let queries = (
        sql::quality_by_project(&a.scope, &a.range, &a.filters),
        sql::score_histogram(&a.scope, &a.range, &a.filters),
        sql::recent_scores(&a.scope, &a.range, &a.filters, RECENT_SCORES),
    );
    let (by_project, histogram, recent) = tokio::try_join!(
        a.analytics.fetch::<sql::QualityRow>(&queries.0),
        a.analytics.fetch::<sql::HistogramRow>(&queries.1),
        a.analytics.fetch::<sql::ScoredRow>(&queries.2),
    )?;
    let ratings: u64 = by_project.iter().map(|p| p.ratings).sum();
    let score_sum: f64 = by_project.iter().map(|p| p.score_sum).sum();
    let mut buckets = vec![0u64; 10];
    for h in histogram {
        buckets[usize::from(h.bucket.min(9))] += h.ratings;
    }
    Ok(Json(Evaluations {
        ratings,
        avg_score: (ratings > 0).then(|| score_sum / ratings as f64),
        by_project: by_project
            .into_iter()
            .map(|p| ProjectQuality {
                avg_score: p.score_sum / p.ratings.max(1) as f64,
                project_id: p.project_id,
                ratings: p.ratings,
            })
            .collect(),
        histogram: buckets,
        recent: recent
            .into_iter()
            .map(|s| ScoreView {
                scored_at: rfc3339(s.scored_ms),
                request_id: s.request_id,
                project_id: s.project_id,
                score: s.score,
                comment: s.comment,
            })
            .collect(),
    }))
}
