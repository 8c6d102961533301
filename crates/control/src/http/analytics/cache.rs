//! `GET .../analytics/cache`: the providers' prompt caching per model and
//! what it saved.

use axum::extract::State;
use axum::Json;
use floopy_model::format_usd;
use serde::Serialize;
use uuid::Uuid;

use super::{ask, share, AnalyticsQuery};
use crate::analytics as sql;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Ids, QueryParams};
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheView {
    pub model: String,
    pub requests: u64,
    /// Requests with cached prompt tokens.
    pub cached_requests: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// cached_tokens / prompt_tokens (0 without prompt tokens).
    pub cached_share: f64,
    /// What the cached tokens would have cost at the input price, less what
    /// they cost, in micro-USD; null for a model the configuration has no
    /// price for.
    pub saved_micro_usd: Option<u64>,
    pub saved_usd: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CacheReport {
    pub data: Vec<CacheView>,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub cached_share: f64,
    /// The savings of the models with a price.
    pub saved_micro_usd: u64,
    pub saved_usd: String,
}

/// `GET /v1/orgs/{org}/analytics/cache`: the providers' prompt cache, by
/// model: the cached share of prompt tokens and the money it saved.
#[utoipa::path(
    operation_id = "analytics_cache",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/cache",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = CacheReport), crate::http::schema::Refusals),
)]
pub async fn cache(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<CacheReport>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let rows: Vec<sql::CacheRow> = a
        .analytics
        .fetch(&sql::cache(&a.scope, &a.range, &a.filters))
        .await?;
    let data: Vec<CacheView> = rows
        .into_iter()
        .map(|r| {
            let saved = a.analytics.cache_saving(&r.model, r.cached_tokens);
            CacheView {
                cached_share: share(r.cached_tokens, r.prompt_tokens),
                saved_micro_usd: saved,
                saved_usd: saved.map(format_usd),
                model: r.model,
                requests: r.requests,
                cached_requests: r.cached_requests,
                prompt_tokens: r.prompt_tokens,
                cached_tokens: r.cached_tokens,
            }
        })
        .collect();
    let prompt_tokens = data.iter().map(|c| c.prompt_tokens).sum();
    let cached_tokens = data.iter().map(|c| c.cached_tokens).sum();
    let saved: u64 = data.iter().filter_map(|c| c.saved_micro_usd).sum();
    Ok(Json(CacheReport {
        data,
        prompt_tokens,
        cached_tokens,
        cached_share: share(cached_tokens, prompt_tokens),
        saved_micro_usd: saved,
        saved_usd: format_usd(saved),
    }))
}
