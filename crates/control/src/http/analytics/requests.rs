//! `GET .../analytics/requests` (the request log, filtered, newest first,
//! by cursor) and `GET .../analytics/requests/{id}` (one request's record
//! and its scores).

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use floopy_model::calendar::rfc3339;
use floopy_model::format_usd;
use serde::Serialize;
use uuid::Uuid;

use super::{ask, check, AnalyticsQuery, PAGE_SPANS_MS};
use crate::analytics::{self as sql, After, Range};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::http::{Ids, QueryParams};
use crate::state::AppState;
use floopy_control_db::tables::keys;

/// One request's record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    pub request_id: String,
    /// RFC 3339 UTC.
    pub time: String,
    pub ts_ms: u64,
    /// Empty for a request refused before its project was known.
    pub project_id: String,
    pub api_key_id: String,
    pub environment: String,
    pub provider: String,
    pub model: String,
    pub path: String,
    pub status: u16,
    pub error_code: String,
    pub stream: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    /// Exact, in micro-USD.
    pub cost_micro_usd: u64,
    /// The same in USD, six decimals.
    pub cost_usd: String,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
    pub session_id: String,
    pub user_id: String,
    /// `floopy-property-<name>` headers, name to value.
    pub properties: HashMap<String, String>,
    pub gateway_id: String,
    /// `llm` (a call to a model), `feedback`, `models` or `other`: what the
    /// path was for.
    pub kind: String,
}

fn request_view(row: sql::RequestRow) -> RequestView {
    RequestView {
        time: rfc3339(row.ts_ms),
        ts_ms: row.ts_ms,
        cost_usd: format_usd(row.cost_micro_usd),
        stream: row.stream != 0,
        properties: row
            .property_keys
            .into_iter()
            .zip(row.property_values)
            .collect(),
        request_id: row.request_id,
        project_id: row.project_id,
        api_key_id: row.api_key_id,
        environment: row.environment,
        provider: row.provider,
        model: row.model,
        path: row.path,
        status: row.status,
        error_code: row.error_code,
        prompt_tokens: row.prompt_tokens,
        completion_tokens: row.completion_tokens,
        cached_tokens: row.cached_tokens,
        cost_micro_usd: row.cost_micro_usd,
        latency_ms: row.latency_ms,
        ttfb_ms: row.ttfb_ms,
        session_id: row.session_id,
        user_id: row.user_id,
        gateway_id: row.gateway_id,
        kind: row.kind,
    }
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestPage {
    pub data: Vec<RequestView>,
    pub next_cursor: Option<String>,
}

fn parse_after(cursor: &str) -> Option<After> {
    let (ts, id) = cursor.split_once('_')?;
    Uuid::try_parse(id).ok()?;
    Some(After {
        ts_ms: ts.parse().ok()?,
        request_id: id.to_string(),
    })
}

/// `GET /v1/orgs/{org}/analytics/requests`: the request list, newest
/// first, filtered.
#[utoipa::path(
    operation_id = "analytics_requests",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/requests",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = RequestPage), crate::http::schema::Refusals),
)]
pub async fn requests(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let mut errors = Vec::new();
    let limit = q.limit(&mut errors);
    let after = match &q.cursor {
        None => None,
        Some(c) => {
            let after = parse_after(c);
            if after.is_none() {
                errors.push(FieldError::new(
                    "cursor",
                    "is not a cursor this API returned",
                ));
            }
            after
        }
    };
    check(errors)?;
    // Newest first: the page is in the most recent stretch of the range
    // that holds more than `limit` requests. Reading a request `FINAL`
    // costs in proportion to the rows read, so the stretch grows from an
    // hour until it holds the page (or is the whole range): the first page
    // of a busy month reads the last hour.
    let end = match &after {
        Some(after) => a.range.to_ms.min(after.ts_ms + 1),
        None => a.range.to_ms,
    };
    let mut keys: Vec<sql::PageKey> = Vec::new();
    for span in PAGE_SPANS_MS {
        let window = Range {
            from_ms: end.saturating_sub(span).max(a.range.from_ms),
            to_ms: end,
        };
        keys = a
            .analytics
            .fetch(&sql::requests_page(
                &a.scope,
                &window,
                &a.filters,
                after.as_ref(),
                limit,
            ))
            .await?;
        if keys.len() as u64 > limit || window.from_ms == a.range.from_ms {
            break;
        }
    }
    let mut rows: Vec<sql::RequestRow> = if keys.is_empty() {
        Vec::new()
    } else {
        a.analytics
            .fetch(&sql::requests_by_keys(&a.scope, &keys))
            .await?
    };
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| format!("{}_{}", r.ts_ms, r.request_id))
    } else {
        None
    };
    Ok(Json(RequestPage {
        data: rows.into_iter().map(request_view).collect(),
        next_cursor,
    }))
}

/// A request's feedback: the last score given.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedbackView {
    pub score: f64,
    pub comment: String,
    /// How many scores were given (the last counts).
    pub ratings: u64,
    pub scored_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub request: RequestView,
    /// The key's name, as the key list shows it (absent: no such key in
    /// the org any more).
    pub api_key_name: Option<String>,
    /// The key's first characters (`fpk_` and eight more).
    pub api_key_prefix: Option<String>,
    pub feedback: Option<FeedbackView>,
}

/// `GET /v1/orgs/{org}/analytics/requests/{request}`: one request's record
/// and its feedback.
#[utoipa::path(
    operation_id = "analytics_request",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/requests/{request}",
    params(
        ("org" = Uuid, Path, description = "The organization's id"),
        ("request" = Uuid, Path, description = "The request's id (its floopy-request-id)"),
    ),
    responses((status = 200, body = RequestDetail), crate::http::schema::Refusals),
)]
pub async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, request_id)): Ids<(Uuid, Uuid)>,
) -> Result<Json<RequestDetail>, ApiError> {
    let a = ask(&state, &caller, org, &AnalyticsQuery::default()).await?;
    let row = a
        .analytics
        .fetch::<sql::RequestRow>(&sql::request_by_id(&a.peers, request_id))
        .await?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound("request"))?;
    let feedback = a
        .analytics
        .fetch::<sql::FeedbackRow>(&sql::feedback_of(org, request_id))
        .await?
        .into_iter()
        .find(|f| f.ratings > 0)
        .map(|f| FeedbackView {
            score: f.score,
            comment: f.comment,
            ratings: f.ratings,
            scored_at: rfc3339(f.scored_ms),
        });
    let key = match Uuid::try_parse(&row.api_key_id) {
        Ok(key) => keys::read(&*state.db().await?, org, key).await?,
        Err(_) => None,
    };
    let (api_key_name, api_key_prefix) = match key {
        Some(key) => (Some(key.name), key.prefix),
        None => (None, None),
    };
    Ok(Json(RequestDetail {
        request: request_view(row),
        api_key_name,
        api_key_prefix,
        feedback,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_read_back() {
        let id = Uuid::now_v7();
        assert_eq!(
            parse_after(&format!("17_{id}")),
            Some(After {
                ts_ms: 17,
                request_id: id.to_string()
            })
        );
        assert_eq!(parse_after("17"), None);
        assert_eq!(parse_after("x_y"), None);
    }
}
