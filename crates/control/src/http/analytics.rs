//! The analytics API (SPEC section 9): the dashboard's pages as JSON, read
//! from ClickHouse (`crate::analytics`), and scores given from the control
//! plane.
//!
//! Every endpoint is `GET /v1/orgs/{org}/analytics/...` with the same query
//! parameters: `project` (one project, else every project the caller may
//! see), `from` and `to` (epoch milliseconds, an RFC 3339 UTC time or a
//! date; `to` excluded; default the last 30 days), the request filters, and
//! where they apply `interval`, `metric`, `limit`, `cursor`.
//!
//! The widgets, the all-projects table, cost by environment and the time
//! series read the hourly rollup when the only filter is the environment
//! (`crate::analytics::rollup`): they count whole UTC hours, the range
//! rounded out to the hour, the current hour as of the rollup's last run
//! (every `clickhouse.rollup_interval_ms`). With other filters they read the
//! raw rows, to the millisecond.
//!
//! What a caller sees: an org owner or admin, the whole org (requests
//! refused before their project was known included); anyone else, only the
//! projects they are a member of. The org-wide comparisons of the widgets
//! ("vs the org average", the percentile rank, the share of the org's
//! cost) are computed over what the caller may see, so that a member of one
//! project never reads a figure that includes another's requests.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use floopy_model::calendar::{date_ms, month_of, month_start_ms, rfc3339};
use floopy_model::{format_usd, Environment};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, QueryParams};
use crate::analytics::{self as sql, After, Analytics, Filters, Range, Scope};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action, Membership};

/// The default range: the last 30 days.
const DEFAULT_RANGE_MS: u64 = 30 * 86_400_000;
/// The most buckets a series may have.
const MAX_BUCKETS: u64 = 10_000;
/// Rows per page of a list, by default and at most.
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;
/// The stretches of time a page of requests is looked for in, newest
/// first: an hour, a day, a week, then the whole range.
const PAGE_SPANS_MS: [u64; 4] = [3_600_000, 86_400_000, 7 * 86_400_000, u64::MAX];
/// Recent scores on the evaluations page.
const RECENT_SCORES: u64 = 20;

/// The query parameters of every analytics endpoint.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// One project; absent: every project the caller may see.
    pub project: Option<Uuid>,
    /// Start (included): epoch milliseconds, RFC 3339 UTC or YYYY-MM-DD.
    /// Default: 30 days before `to`.
    pub from: Option<String>,
    /// End (excluded), as `from`. Default: now.
    pub to: Option<String>,
    pub environment: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<u16>,
    pub error_code: Option<String>,
    /// An API key's id.
    pub key: Option<Uuid>,
    pub session: Option<String>,
    pub user: Option<String>,
    /// A property name (`floopy-property-<name>`).
    pub property: Option<String>,
    /// With `property`: its value.
    pub property_value: Option<String>,
    /// The kind of request: `llm` (calls to a model: the default, but on
    /// the security page, which counts every kind), `feedback` (scores),
    /// `models` (model listings), `other` (no endpoint), or `all`.
    pub kind: Option<String>,
    /// Series buckets: `hour` or `day` (default: hour up to 2 days, else day).
    pub interval: Option<String>,
    /// The rank widget's metric: requests, cost, cost_per_mtok, latency,
    /// quality (default requests).
    pub metric: Option<String>,
    /// Rows per page, 1 to 500 (default 50).
    pub limit: Option<u64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// What every analytics handler starts from.
struct Ask {
    analytics: Arc<Analytics>,
    membership: Membership,
    /// What the caller sees with the project selection applied.
    scope: Scope,
    /// What the caller sees in the org (the comparisons' population).
    peers: Scope,
    range: Range,
    filters: Filters,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A time parameter: epoch milliseconds, `YYYY-MM-DD`, or
/// `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn parse_time(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<u64> {
        let s = text.get(from..to)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let midnight = date_ms(year as i64, month as u32, day as u32);
    if b.len() == 10 {
        return Some(midnight);
    }
    if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let (h, m, s) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let millis = match &text[19..text.len() - 1] {
        "" => 0,
        frac if frac.starts_with('.') && (2..=4).contains(&frac.len()) => {
            let digits = &frac[1..];
            let n = num(20, 20 + digits.len())?;
            n * 10u64.pow(3 - digits.len() as u32)
        }
        _ => return None,
    };
    Some(midnight + ((h * 60 + m) * 60 + s) * 1000 + millis)
}

impl AnalyticsQuery {
    fn range(&self, errors: &mut Vec<FieldError>) -> Range {
        let mut time = |field: &'static str, value: &Option<String>| match value {
            None => None,
            Some(text) => {
                let parsed = parse_time(text);
                if parsed.is_none() {
                    errors.push(FieldError::new(
                        field,
                        format!("{text:?} is not epoch milliseconds, YYYY-MM-DD or an RFC 3339 UTC time"),
                    ));
                }
                parsed
            }
        };
        let to = time("to", &self.to).unwrap_or_else(|| now_ms() + 1);
        let from = time("from", &self.from).unwrap_or(to.saturating_sub(DEFAULT_RANGE_MS));
        if from >= to {
            errors.push(FieldError::new("from", "must be before to"));
        }
        Range {
            from_ms: from,
            to_ms: to,
        }
    }

    fn filters(&self, errors: &mut Vec<FieldError>) -> Filters {
        if let Some(env) = &self.environment {
            // "" is the requests of keys without an environment.
            if !env.is_empty() && Environment::parse(env).is_none() {
                errors.push(FieldError::new(
                    "environment",
                    format!("{env:?} is not one of development, staging, production, other"),
                ));
            }
        }
        if self.property_value.is_some() && self.property.is_none() {
            errors.push(FieldError::new(
                "property_value",
                "needs property (the name)",
            ));
        }
        let kind = match self.kind.as_deref() {
            None => Some(sql::LLM.to_string()),
            Some("all") => None,
            Some(k) if sql::KINDS.contains(&k) => Some(k.to_string()),
            Some(other) => {
                errors.push(FieldError::new(
                    "kind",
                    format!("{other:?} is not one of llm, feedback, models, other, all"),
                ));
                None
            }
        };
        Filters {
            kind,
            environment: self.environment.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            status: self.status,
            error_code: self.error_code.clone(),
            api_key: self.key,
            session: self.session.clone(),
            user: self.user.clone(),
            property: self.property.clone(),
            property_value: self.property_value.clone(),
        }
    }

    /// Seconds per bucket of a series over `range`.
    fn interval(&self, range: &Range, errors: &mut Vec<FieldError>) -> u64 {
        let secs = match self.interval.as_deref() {
            Some("hour") => 3_600,
            Some("day") => 86_400,
            None if range.to_ms - range.from_ms <= 2 * 86_400_000 => 3_600,
            None => 86_400,
            Some(other) => {
                errors.push(FieldError::new(
                    "interval",
                    format!("{other:?} is not hour or day"),
                ));
                return 3_600;
            }
        };
        if (range.to_ms.saturating_sub(range.from_ms)) / (secs * 1000) > MAX_BUCKETS {
            errors.push(FieldError::new(
                "interval",
                format!("more than {MAX_BUCKETS} buckets: a shorter range or a longer interval"),
            ));
        }
        secs
    }

    fn limit(&self, errors: &mut Vec<FieldError>) -> u64 {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.push(FieldError::new(
                "limit",
                format!("must be 1 to {MAX_LIMIT}"),
            ));
        }
        limit
    }

    /// An offset cursor (`o<offset>`) of the aggregated lists.
    fn offset(&self, errors: &mut Vec<FieldError>) -> u64 {
        match &self.cursor {
            None => 0,
            Some(c) => match c.strip_prefix('o').and_then(|n| n.parse().ok()) {
                Some(offset) => offset,
                None => {
                    errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this API returned",
                    ));
                    0
                }
            },
        }
    }
}

fn check(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The analytics store, or 503 when none is configured.
fn store(state: &AppState) -> Result<Arc<Analytics>, ApiError> {
    state.analytics.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "analytics are not configured: floopy-control has no `clickhouse` section".into(),
        )
    })
}

/// The caller's scope in `org`: the selected project (404 when they may not
/// see it), else everything they may see.
async fn ask(
    state: &AppState,
    caller: &Caller,
    org: Uuid,
    q: &AnalyticsQuery,
) -> Result<Ask, ApiError> {
    let analytics = store(state)?;
    let db = state.db().await?;
    let m = membership(&db, caller, org).await?;
    let peers = Scope {
        org,
        projects: if m.org_role.runs_the_org() {
            None
        } else {
            let mut visible: Vec<Uuid> = m.projects.keys().copied().collect();
            visible.sort();
            Some(visible)
        },
    };
    let scope = match q.project {
        Some(p) => {
            authorize(&m, Action::ReadProject(p))?;
            peers.only(p)
        }
        None => peers.clone(),
    };
    let mut errors = Vec::new();
    let range = q.range(&mut errors);
    let filters = q.filters(&mut errors);
    check(errors)?;
    Ok(Ask {
        analytics,
        membership: m,
        scope,
        peers,
        range,
        filters,
    })
}

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
    responses((status = 200, body = RequestPage), crate::openapi::Refusals),
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
    responses((status = 200, body = RequestDetail), crate::openapi::Refusals),
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
        Ok(key) => {
            state
                .db()
                .await?
                .query_opt(
                    "SELECT name, prefix FROM api_keys WHERE org_id = $1 AND id = $2",
                    &[&org, &key],
                )
                .await?
        }
        Err(_) => None,
    };
    let (api_key_name, api_key_prefix) = match key {
        Some(row) => (row.try_get("name")?, row.try_get("prefix")?),
        None => (None, None),
    };
    Ok(Json(RequestDetail {
        request: request_view(row),
        api_key_name,
        api_key_prefix,
        feedback,
    }))
}

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
    responses((status = 200, body = Series), crate::openapi::Refusals),
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
    responses((status = 200, body = GroupPage), crate::openapi::Refusals),
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
    responses((status = 200, body = GroupPage), crate::openapi::Refusals),
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
    responses((status = 200, body = PropertyPage), crate::openapi::Refusals),
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

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `GET /v1/orgs/{org}/analytics/cache`: the providers' prompt cache, by
/// model: the cached share of prompt tokens and the money it saved.
#[utoipa::path(
    operation_id = "analytics_cache",
    tag = "analytics",
    get,
    path = "/v1/orgs/{org}/analytics/cache",
    params(("org" = Uuid, Path, description = "The organization's id"), AnalyticsQuery),
    responses((status = 200, body = CacheReport), crate::openapi::Refusals),
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
    responses((status = 200, body = LimitedSeries), crate::openapi::Refusals),
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
    responses((status = 200, body = RefusalSeries), crate::openapi::Refusals),
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
    responses((status = 200, body = Evaluations), crate::openapi::Refusals),
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

/// One project's figures over the range.
#[derive(Debug, Clone, Default)]
struct Figure {
    project_id: String,
    requests: u64,
    tokens: u64,
    cost_micro_usd: u64,
    errors: u64,
    latency_sum_ms: u64,
    p95_latency_ms: f64,
    /// Scored requests and the sum of their last scores.
    ratings: u64,
    score_sum: f64,
}

/// The figures of each project the caller sees (requests of no project
/// left out): from the hourly rollup when the filters allow it (the
/// environment only), else from the raw rows.
struct ProjectFigures {
    rows: Vec<Figure>,
}

impl ProjectFigures {
    /// With `p95`, each project's 95th percentile latency too (a costlier
    /// read).
    async fn load(a: &Ask, p95: bool) -> Result<ProjectFigures, ApiError> {
        if sql::rollup_answers(&a.filters) {
            let rows: Vec<sql::RolledProjectRow> = a
                .analytics
                .fetch(&sql::by_project_rolled(
                    &a.peers,
                    &a.range,
                    a.filters.environment.as_deref(),
                    p95,
                ))
                .await?;
            return Ok(ProjectFigures {
                rows: rows
                    .into_iter()
                    .map(|r| Figure {
                        p95_latency_ms: sql::histogram_quantile(
                            &r.latencies.0,
                            &r.latencies.1,
                            0.95,
                        ),
                        project_id: r.project_id,
                        requests: r.requests,
                        tokens: r.tokens,
                        cost_micro_usd: r.cost_micro_usd,
                        errors: r.errors,
                        latency_sum_ms: r.latency_sum_ms,
                        ratings: r.ratings,
                        score_sum: r.score_sum,
                    })
                    .collect(),
            });
        }
        let queries = (
            sql::by_project(&a.peers, &a.range, &a.filters),
            sql::quality_by_project(&a.peers, &a.range, &a.filters),
        );
        let (rows, quality) = tokio::try_join!(
            a.analytics.fetch::<sql::ProjectRow>(&queries.0),
            a.analytics.fetch::<sql::QualityRow>(&queries.1),
        )?;
        let quality: HashMap<String, sql::QualityRow> = quality
            .into_iter()
            .map(|q| (q.project_id.clone(), q))
            .collect();
        Ok(ProjectFigures {
            rows: rows
                .into_iter()
                .map(|r| {
                    let q = quality.get(&r.project_id);
                    Figure {
                        ratings: q.map_or(0, |q| q.ratings),
                        score_sum: q.map_or(0.0, |q| q.score_sum),
                        project_id: r.project_id,
                        requests: r.requests,
                        tokens: r.tokens,
                        cost_micro_usd: r.cost_micro_usd,
                        errors: r.errors,
                        latency_sum_ms: r.latency_sum_ms,
                        p95_latency_ms: r.p95_latency_ms,
                    }
                })
                .collect(),
        })
    }

    /// The selected project's figure, and `value` of it against the same
    /// over all projects (the sums' ratio).
    fn compare(&self, project: Uuid, part: impl Fn(&Figure) -> (f64, u64)) -> Comparison {
        let id = project.to_string();
        let mine = self.rows.iter().find(|r| r.project_id == id).and_then(|r| {
            let (n, d) = part(r);
            ratio(n, d)
        });
        let (n, d) = self
            .rows
            .iter()
            .map(&part)
            .fold((0.0, 0), |(n, d), (a, b)| (n + a, d + b));
        comparison(project, mine, ratio(n, d))
    }
}

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

fn comparison(project_id: Uuid, project: Option<f64>, org: Option<f64>) -> Comparison {
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

fn ratio(numerator: f64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator / denominator as f64)
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
    responses((status = 200, body = Comparison), crate::openapi::Refusals),
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
    responses((status = 200, body = Comparison), crate::openapi::Refusals),
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
    responses((status = 200, body = Comparison), crate::openapi::Refusals),
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
    responses((status = 200, body = Rank), crate::openapi::Refusals),
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
    responses((status = 200, body = EnvironmentCosts), crate::openapi::Refusals),
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
        for row in db
            .query(
                "SELECT e.environment::text, l.monthly_cost_micro_usd,
                        COALESCE((SELECT sum(u.settled_micro_usd) FROM replica_usage u
                                   WHERE u.org_id = $1 AND u.environment = e.environment
                                     AND u.month = $2), 0)::bigint
                   FROM unnest(enum_range(NULL::floopy_environment)) AS e(environment)
                   LEFT JOIN environment_limits l
                     ON l.org_id = $1 AND l.environment = e.environment",
                &[&org, &(month as i32)],
            )
            .await?
        {
            let cap: Option<i64> = row.get(1);
            let spend: i64 = row.get(2);
            caps.insert(
                row.get(0),
                (
                    cap.map(|c| u64::try_from(c).unwrap_or(0)),
                    u64::try_from(spend).unwrap_or(0),
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
    responses((status = 200, body = Breakdown), crate::openapi::Refusals),
)]
pub async fn projects(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(q): QueryParams<AnalyticsQuery>,
) -> Result<Json<Breakdown>, ApiError> {
    let a = ask(&state, &caller, org, &q).await?;
    let figures = ProjectFigures::load(&a, true).await?;
    let names: HashMap<String, String> = state
        .db()
        .await?
        .query("SELECT id, name FROM projects WHERE org_id = $1", &[&org])
        .await?
        .iter()
        .map(|r| (r.get::<_, Uuid>(0).to_string(), r.get(1)))
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFeedback {
    pub request_id: Uuid,
    /// 0 to 1.
    pub score: f64,
    /// At most 2000 characters.
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedbackCreated {
    pub id: Uuid,
    pub request_id: Uuid,
    pub project_id: String,
    pub score: f64,
}

/// The longest comment, in characters (the gateway's limit too).
const MAX_COMMENT_CHARS: usize = 2_000;

/// `POST /v1/orgs/{org}/feedback`: a project member scores a request of
/// their project (the last score counts).
#[utoipa::path(
    operation_id = "feedback_create",
    tag = "analytics",
    post,
    path = "/v1/orgs/{org}/feedback",
    params(("org" = Uuid, Path, description = "The organization's id")),
    request_body = NewFeedback,
    responses((status = 201, body = FeedbackCreated), crate::openapi::Refusals),
)]
pub async fn create_feedback(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<NewFeedback>,
) -> Result<(axum::http::StatusCode, Json<FeedbackCreated>), ApiError> {
    let mut errors = Vec::new();
    if !(0.0..=1.0).contains(&body.score) {
        errors.push(FieldError::new("score", "must be between 0 and 1"));
    }
    let comment = body.comment.unwrap_or_default();
    if comment.chars().count() > MAX_COMMENT_CHARS {
        errors.push(FieldError::new(
            "comment",
            format!("must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    check(errors)?;
    let analytics = store(&state)?;
    let m = membership(&*state.db().await?, &caller, org).await?;
    let project = analytics
        .fetch::<sql::ProjectIdRow>(&sql::project_of_request(org, body.request_id))
        .await?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound("request"))?
        .project_id;
    // A request of a project the caller does not see does not exist for
    // them; one of no project is the org's owners' and admins' to score.
    match Uuid::try_parse(&project) {
        Ok(p) => {
            authorize(&m, Action::ReadProject(p)).map_err(|_| ApiError::NotFound("request"))?
        }
        Err(_) if m.org_role.runs_the_org() => {}
        Err(_) => return Err(ApiError::NotFound("request")),
    }
    let id = Uuid::now_v7();
    analytics
        .execute(&sql::insert_feedback(
            id,
            body.request_id,
            now_ms(),
            org,
            &project,
            caller.user_id,
            body.score,
            &comment,
        ))
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(FeedbackCreated {
            id,
            request_id: body.request_id,
            project_id: project,
            score: body.score,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_accepted_form() {
        assert_eq!(parse_time("1795792752434"), Some(1_795_792_752_434));
        assert_eq!(parse_time("2026-11-30"), Some(date_ms(2026, 11, 30)));
        assert_eq!(
            parse_time("2026-11-30T01:02:03Z"),
            Some(date_ms(2026, 11, 30) + 3_723_000)
        );
        assert_eq!(
            parse_time("2026-11-30T01:02:03.5Z"),
            Some(date_ms(2026, 11, 30) + 3_723_500)
        );
        assert_eq!(
            parse_time("2026-11-30T01:02:03.123Z"),
            Some(date_ms(2026, 11, 30) + 3_723_123)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-30T25:00:00Z",
            "2026-11-30T01:02:03",
            "2026-11-30T01:02:03+01:00",
            "2026-11-30T01:02:03.1234Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

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
