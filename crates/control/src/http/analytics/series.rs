//! Time series: `GET .../analytics/timeseries` (a metric per interval),
//! `.../rate-limits` (requests refused by a limit) and `.../security`
//! (refusals by reason).

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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    /// The bucket's start, RFC 3339 UTC.
    pub time: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro_usd: u64,
    pub cost_usd: String,
    /// Answers with a status of 400 or more.
    pub errors: u64,
    pub avg_latency_ms: f64,
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Series {
    /// `hour` or `day`.
    pub interval: String,
    /// Buckets with requests, oldest first.
    pub data: Vec<SeriesPoint>,
}

fn interval_name(secs: u64) -> String {
    if secs == 3_600 { "hour" } else { "day" }.to_string()
}

/// `GET /v1/orgs/{org}/analytics/timeseries`: requests, tokens, cost and
/// latency percentiles per hour or day.
#[utoipa::path(
    operation_id = "analytics_timeseries",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/timeseries",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = Series), crate::http::schema::Refusals),
)]
pub async fn timeseries(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Series>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let mut errors = Vec::new();
    let secs = q.interval(&a.range, &mut errors);
    check(errors)?;
    let point = |bucket: u64, requests, prompt, completion, cost: u64, errors| SeriesPoint {
        time: rfc3339(bucket * 1000),
        requests,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_micro_usd: cost,
        cost_usd: format_usd(cost),
        errors,
        avg_latency_ms: 0.0,
        p50_latency_ms: 0.0,
        p95_latency_ms: 0.0,
        p99_latency_ms: 0.0,
    };
    let data = if sql::rollup_answers(&a.filters) {
        let rows: Vec<sql::RolledSeriesRow> = a
            .analytics
            .fetch(&sql::timeseries_rolled(
                &a.scope,
                &a.range,
                a.filters.environment.as_deref(),
                secs,
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                let (values, counts) = &r.latencies;
                SeriesPoint {
                    avg_latency_ms: r.latency_sum_ms as f64 / r.requests.max(1) as f64,
                    p50_latency_ms: sql::histogram_quantile(values, counts, 0.5),
                    p95_latency_ms: sql::histogram_quantile(values, counts, 0.95),
                    p99_latency_ms: sql::histogram_quantile(values, counts, 0.99),
                    ..point(
                        r.bucket,
                        r.requests,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.cost_micro_usd,
                        r.errors,
                    )
                }
            })
            .collect()
    } else {
        let rows: Vec<sql::SeriesRow> = a
            .analytics
            .fetch(&sql::timeseries(&a.scope, &a.range, &a.filters, secs))
            .await?;
        rows.into_iter()
            .map(|r| SeriesPoint {
                avg_latency_ms: r.avg_latency_ms,
                p50_latency_ms: r.p50_latency_ms,
                p95_latency_ms: r.p95_latency_ms,
                p99_latency_ms: r.p99_latency_ms,
                ..point(
                    r.bucket,
                    r.requests,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cost_micro_usd,
                    r.errors,
                )
            })
            .collect()
    };
    Ok(Json(Series {
        interval: interval_name(secs),
        data,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitedPoint {
    pub time: String,
    /// Empty for keys without an environment.
    pub environment: String,
    /// 429 answers (the environment's requests-per-minute limit).
    pub rate_limited: u64,
    /// 402 answers (the environment's monthly cost cap).
    pub cost_capped: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitedSeries {
    pub interval: String,
    pub data: Vec<LimitedPoint>,
}

/// `GET /v1/orgs/{org}/analytics/rate-limits`: 429 and 402 answers over
/// time by environment.
#[utoipa::path(
    operation_id = "analytics_rate_limits",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/rate-limits",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = LimitedSeries), crate::http::schema::Refusals),
)]
pub async fn rate_limits(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<LimitedSeries>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let mut errors = Vec::new();
    let secs = q.interval(&a.range, &mut errors);
    check(errors)?;
    let rows: Vec<sql::LimitedRow> = a
        .analytics
        .fetch(&sql::rate_limits(&a.scope, &a.range, &a.filters, secs))
        .await?;
    Ok(Json(LimitedSeries {
        interval: interval_name(secs),
        data: rows
            .into_iter()
            .map(|r| LimitedPoint {
                time: rfc3339(r.bucket * 1000),
                environment: r.environment,
                rate_limited: r.rate_limited,
                cost_capped: r.cost_capped,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefusalPoint {
    pub time: String,
    pub api_key_id: String,
    /// 401 or 403.
    pub status: u16,
    pub error_code: String,
    pub requests: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefusalSeries {
    pub interval: String,
    pub data: Vec<RefusalPoint>,
}

/// `GET /v1/orgs/{org}/analytics/security`: 401 and 403 answers over time
/// by key and code (a request with an unknown key has no org, so it is
/// counted only in the gateway's metrics).
#[utoipa::path(
    operation_id = "analytics_security",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/security",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = RefusalSeries), crate::http::schema::Refusals),
)]
pub async fn security(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<RefusalSeries>, ApiError> {
    let mut a = ask(&state, &caller, org, &q).await?;
    let mut errors = Vec::new();
    let secs = q.interval(&a.range, &mut errors);
    check(errors)?;
    if q.kind.is_none() {
        // A refusal is a security event whatever the endpoint.
        a.filters.kind = None;
    }
    let rows: Vec<sql::RefusalRow> = a
        .analytics
        .fetch(&sql::security(&a.scope, &a.range, &a.filters, secs))
        .await?;
    Ok(Json(RefusalSeries {
        interval: interval_name(secs),
        data: rows
            .into_iter()
            .map(|r| RefusalPoint {
                time: rfc3339(r.bucket * 1000),
                api_key_id: r.api_key_id,
                status: r.status,
                error_code: r.error_code,
                requests: r.requests,
            })
            .collect(),
    }))
}
