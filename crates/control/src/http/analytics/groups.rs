//! Group pages: `GET .../analytics/sessions`, `.../users` and
//! `.../properties`, each a page of groups with their requests' figures.

use axum::extract::State;
use axum::Json;
use floopy_model::calendar::rfc3339;
use floopy_model::format_usd;
use serde::Serialize;
use uuid::Uuid;

use super::{ask, check, AnalyticsQuery};
use crate::analytics as sql;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Ids, QueryParams};
use crate::state::AppState;

/// A session or a user: its requests over the range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    /// The session's or the user's id.
    pub id: String,
    pub requests: u64,
    pub tokens: u64,
    pub cost_micro_usd: u64,
    pub cost_usd: String,
    pub errors: u64,
    pub avg_latency_ms: f64,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupPage {
    pub data: Vec<GroupView>,
    pub next_cursor: Option<String>,
}

async fn group_page(
    state: &AppState,
    caller: &Caller,
    org: Uuid,
    q: &AnalyticsQuery,
    column: &str,
) -> Result<GroupPage, ApiError> {
    let a = ask(state, caller, org, q).await?;
    let mut errors = Vec::new();
    let (limit, offset) = (q.limit(&mut errors), q.offset(&mut errors));
    check(errors)?;
    let mut rows: Vec<sql::GroupRow> = a
        .analytics
        .fetch(&sql::groups(
            column, &a.scope, &a.range, &a.filters, offset, limit,
        ))
        .await?;
    let next_cursor = (rows.len() as u64 > limit).then(|| format!("o{}", offset + limit));
    rows.truncate(limit as usize);
    Ok(GroupPage {
        data: rows
            .into_iter()
            .map(|r| GroupView {
                cost_usd: format_usd(r.cost_micro_usd),
                first_seen: rfc3339(r.first_ms),
                last_seen: rfc3339(r.last_ms),
                id: r.id,
                requests: r.requests,
                tokens: r.tokens,
                cost_micro_usd: r.cost_micro_usd,
                errors: r.errors,
                avg_latency_ms: r.avg_latency_ms,
            })
            .collect(),
        next_cursor,
    })
}

/// `GET /v1/orgs/{org}/analytics/sessions`: sessions (`floopy-session-id`),
/// the most recently active first.
#[utoipa::path(
    operation_id = "analytics_sessions",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/sessions",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = GroupPage), crate::http::schema::Refusals),
)]
pub async fn sessions(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<GroupPage>, ApiError> {
    Ok(Json(
        group_page(&state, &caller, org, &q, "session_id").await?,
    ))
}

/// `GET /v1/orgs/{org}/analytics/users`: end users (`floopy-user-id`, else
/// the body's `user`), the most recently active first.
#[utoipa::path(
    operation_id = "analytics_users",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/users",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = GroupPage), crate::http::schema::Refusals),
)]
pub async fn users(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<GroupPage>, ApiError> {
    Ok(Json(group_page(&state, &caller, org, &q, "user_id").await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PropertyView {
    pub name: String,
    pub value: String,
    pub requests: u64,
    pub tokens: u64,
    pub cost_micro_usd: u64,
    pub cost_usd: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PropertyPage {
    pub data: Vec<PropertyView>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/orgs/{org}/analytics/properties`: property name/value pairs
/// (`floopy-property-<name>` headers), the most used first.
#[utoipa::path(
    operation_id = "analytics_properties",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/properties",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = PropertyPage), crate::http::schema::Refusals),
)]
pub async fn properties(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<PropertyPage>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let mut errors = Vec::new();
    let (limit, offset) = (q.limit(&mut errors), q.offset(&mut errors));
    check(errors)?;
    let mut rows: Vec<sql::PropertyRow> = a
        .analytics
        .fetch(&sql::properties(
            &a.scope, &a.range, &a.filters, offset, limit,
        ))
        .await?;
    let next_cursor = (rows.len() as u64 > limit).then(|| format!("o{}", offset + limit));
    rows.truncate(limit as usize);
    Ok(Json(PropertyPage {
        data: rows
            .into_iter()
            .map(|r| PropertyView {
                cost_usd: format_usd(r.cost_micro_usd),
                name: r.name,
                value: r.value,
                requests: r.requests,
                tokens: r.tokens,
                cost_micro_usd: r.cost_micro_usd,
            })
            .collect(),
        next_cursor,
    }))
}
