//! The analytics store: ClickHouse, read through the `clickhouse` crate
//! (typed rows in RowBinary, validation off so that ClickHouse 18.16
//! answers), and the SQL of every analytics query (SPEC section 9).
//!
//! Every query is built here as one SQL string by a pure function of the
//! caller's `Scope` (their org and the projects they may see), the time
//! range and the filters, so the same text can be run on another engine
//! (the tests run it on ClickHouse 18.16 and on the current engine).
//! Values from the caller enter only as quoted literals (`quote`), numbers
//! or UUIDs.
//!
//! Exactness: `request_logs` is a ReplacingMergeTree, and a record may be
//! delivered twice (a replay after an uncertain delivery); every query
//! reads it `FINAL`, so a replayed record counts once. A request's score is
//! the last given (`argMax(score, ts_ms)` per request), and a score counts
//! only for a request of its own org (joined on the request, whose project
//! it is).
//!
//! The SQL is the subset both ClickHouse 18.16 and current releases
//! accept: no tuple comparisons, `LIMIT offset, n`, `ANY INNER JOIN ...
//! USING`, time buckets as integer arithmetic on `ts_ms` (UTC, whatever the
//! server's time zone), every result column cast to the type its row reads.

use std::fmt::Write as _;
use std::time::Duration;

use uuid::Uuid;

use crate::config::{ClickHouseConfig, ModelPrice};

/// The ClickHouse the analytics read.
pub struct Analytics {
    client: clickhouse::Client,
    timeout: Duration,
    pub prices: Vec<ModelPrice>,
}

impl Analytics {
    pub fn new(config: &ClickHouseConfig) -> Analytics {
        let mut client = clickhouse::Client::default()
            .with_url(&config.url)
            .with_database(&config.database)
            .with_validation(false);
        if let Some(user) = &config.user {
            client = client.with_user(user);
        }
        if let Some(password) = &config.password {
            client = client.with_password(password.expose());
        }
        Analytics {
            client,
            timeout: config.query_timeout,
            prices: config.prices.clone(),
        }
    }

    /// Runs `sql` (built here) and reads its rows.
    pub async fn fetch<T>(&self, sql: &str) -> Result<Vec<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        // The crate reads `?` as a placeholder; `??` is a literal one.
        let query = self.client.query(&sql.replace('?', "??"));
        match tokio::time::timeout(self.timeout, query.fetch_all::<T>()).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(StoreError::Failed(e)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Runs a statement that returns no rows (an INSERT ... SELECT).
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let query = self.client.query(&sql.replace('?', "??"));
        match tokio::time::timeout(self.timeout, query.execute()).await {
            Ok(result) => result.map_err(StoreError::Failed),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// The saving of `cached` prompt tokens of `model`: what they would
    /// have cost at the input price, less what they cost at the cached
    /// price, in micro-USD (rounded); `None` for a model without a price.
    pub fn cache_saving(&self, model: &str, cached: u64) -> Option<u64> {
        let price = self.prices.iter().find(|p| p.model == model)?;
        let per_mtok = price.input.saturating_sub(price.cached_input);
        Some(((u128::from(cached) * u128::from(per_mtok) + 500_000) / 1_000_000) as u64)
    }
}

/// Why the analytics store did not answer (never with a secret in it).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the analytics store (ClickHouse) failed: {0}")]
    Failed(clickhouse::error::Error),
    #[error("the analytics query took longer than {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("{0}")]
    Unexpected(&'static str),
}

/// A ClickHouse string literal: `'...'` with `\` and `'` escaped.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// What the caller may see: their org, and the projects of it they may see
/// (`None`: all of them, the requests of no project included; an org owner
/// or admin with no project selected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub org: Uuid,
    pub projects: Option<Vec<Uuid>>,
}

impl Scope {
    /// The scope as a condition on `request_logs` (or any table with
    /// `org_id` and `project_id`).
    pub fn condition(&self) -> String {
        let mut sql = format!("org_id = {}", quote(&self.org.to_string()));
        match &self.projects {
            None => {}
            Some(projects) if projects.is_empty() => sql.push_str(" AND 1 = 0"),
            Some(projects) => {
                sql.push_str(" AND project_id IN (");
                for (i, p) in projects.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&quote(&p.to_string()));
                }
                sql.push(')');
            }
        }
        sql
    }

    /// The same org, one project of it.
    pub fn only(&self, project: Uuid) -> Scope {
        Scope {
            org: self.org,
            projects: Some(vec![project]),
        }
    }
}

/// A time range in epoch milliseconds, `from` included, `to` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl Range {
    /// The range as a condition: on `ts_ms` exactly, and on `ts` (seconds,
    /// in the sorting key and the partitions) so that ClickHouse reads only
    /// the parts and granules in range.
    pub fn condition(&self) -> String {
        format!(
            "ts >= toDateTime({}) AND ts <= toDateTime({}) AND ts_ms >= {} AND ts_ms < {}",
            self.from_ms / 1000,
            self.to_ms / 1000,
            self.from_ms,
            self.to_ms
        )
    }
}

/// The request filters of SPEC section 9 (each `None`: no filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub environment: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub api_key: Option<Uuid>,
    pub session: Option<String>,
    pub user: Option<String>,
    pub property: Option<String>,
    pub property_value: Option<String>,
    /// The kind of request (`request_logs.kind`: `llm`, `feedback`,
    /// `models`, `other`); `None`: every kind. The API's default is `llm`.
    pub kind: Option<String>,
}

/// The kinds of `request_logs.kind` (conf/clickhouse/006_request_kind.sql):
/// calls to a model, scores, model listings, and requests for no endpoint.
pub const KINDS: [&str; 4] = ["llm", "feedback", "models", "other"];

/// The kind analytics count unless asked otherwise: calls to a model.
pub const LLM: &str = "llm";

/// `AND kind = 'llm'`: what the queries with no request filters (cost by
/// environment, the rollup) count.
pub fn llm_only() -> String {
    format!(" AND kind = {}", quote(LLM))
}

impl Filters {
    /// No filter but the default kind: what the API applies when the
    /// query names none.
    pub fn llm() -> Filters {
        Filters {
            kind: Some(LLM.into()),
            ..Filters::default()
        }
    }

    fn condition(&self) -> String {
        let mut sql = String::new();
        let mut eq = |column: &str, value: &Option<String>| {
            if let Some(v) = value {
                let _ = write!(sql, " AND {column} = {}", quote(v));
            }
        };
        eq("environment", &self.environment);
        eq("model", &self.model);
        eq("provider", &self.provider);
        eq("error_code", &self.error_code);
        eq("session_id", &self.session);
        eq("user_id", &self.user);
        eq("api_key_id", &self.api_key.map(|k| k.to_string()));
        eq("kind", &self.kind);
        if let Some(status) = self.status {
            let _ = write!(sql, " AND status = {status}");
        }
        match (&self.property, &self.property_value) {
            (Some(name), Some(value)) => {
                let _ = write!(
                    sql,
                    " AND arrayExists((k, v) -> k = {} AND v = {}, property_keys, property_values)",
                    quote(name),
                    quote(value)
                );
            }
            (Some(name), None) => {
                let _ = write!(sql, " AND has(property_keys, {})", quote(name));
            }
            _ => {}
        }
        sql
    }
}

/// Scope, range and filters together: the `WHERE` of a query on
/// `request_logs`.
fn where_clause(scope: &Scope, range: &Range, filters: &Filters) -> String {
    format!(
        "{} AND {}{}",
        scope.condition(),
        range.condition(),
        filters.condition()
    )
}

/// The time bucket of a series, in epoch seconds (UTC).
fn bucket(interval_secs: u64) -> String {
    format!(
        "toUInt64(intDiv(ts_ms, {}) * {interval_secs})",
        interval_secs * 1000
    )
}

/// The columns of one request, in `RequestRow`'s order.
pub const REQUEST_COLUMNS: &str = "request_id, ts_ms, project_id, api_key_id, environment, \
provider, model, path, status, error_code, stream, prompt_tokens, completion_tokens, \
cached_tokens, cost_micro_usd, latency_ms, ttfb_ms, session_id, user_id, property_keys, \
property_values, gateway_id, kind";

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct RequestRow {
    pub request_id: String,
    pub ts_ms: u64,
    pub project_id: String,
    pub api_key_id: String,
    pub environment: String,
    pub provider: String,
    pub model: String,
    pub path: String,
    pub status: u16,
    pub error_code: String,
    pub stream: u8,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_micro_usd: u64,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
    pub session_id: String,
    pub user_id: String,
    pub property_keys: Vec<String>,
    pub property_values: Vec<String>,
    pub gateway_id: String,
    /// `llm`, `feedback`, `models` or `other` (from the path).
    pub kind: String,
}

/// Where a page of the request list starts: after this request (the last
/// of the previous page), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub ts_ms: u64,
    pub request_id: String,
}

/// A request's place in the list: newest first, by time then id.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
pub struct PageKey {
    pub ts_ms: u64,
    pub request_id: String,
}

/// The keys of a page of the request list, newest first: `limit` (and one
/// more, which says a next page exists). Two narrow columns are read for
/// every request in range; the page's rows are read by `requests_by_keys`.
pub fn requests_page(
    scope: &Scope,
    range: &Range,
    filters: &Filters,
    after: Option<&After>,
    limit: u64,
) -> String {
    let mut sql = format!(
        "SELECT ts_ms, request_id FROM request_logs WHERE {}",
        where_clause(scope, range, filters)
    );
    if let Some(after) = after {
        let _ = write!(
            sql,
            " AND (ts_ms < {ts} OR (ts_ms = {ts} AND request_id < {id}))",
            ts = after.ts_ms,
            id = quote(&after.request_id)
        );
    }
    // Each request once (a replayed record is the same row twice): cheaper
    // than FINAL for a page.
    let _ = write!(
        sql,
        " ORDER BY ts_ms DESC, request_id DESC LIMIT 1 BY request_id LIMIT {}",
        limit + 1
    );
    sql
}

/// The rows of a page's requests (`keys`, non-empty), in the list's order.
pub fn requests_by_keys(scope: &Scope, keys: &[PageKey]) -> String {
    let first = keys.iter().map(|k| k.ts_ms).min().unwrap_or(0);
    let last = keys.iter().map(|k| k.ts_ms).max().unwrap_or(0);
    let mut ids = String::new();
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            ids.push_str(", ");
        }
        ids.push_str(&quote(&k.request_id));
    }
    format!(
        "SELECT {REQUEST_COLUMNS} FROM request_logs WHERE {} AND {} AND request_id IN ({ids}) \
         ORDER BY ts_ms DESC, request_id DESC LIMIT 1 BY request_id",
        scope.condition(),
        Range {
            from_ms: first,
            to_ms: last + 1,
        }
        .condition()
    )
}

/// One request, if the scope holds it.
pub fn request_by_id(scope: &Scope, request_id: Uuid) -> String {
    format!(
        "SELECT {REQUEST_COLUMNS} FROM request_logs FINAL WHERE {} AND request_id = {} LIMIT 1",
        scope.condition(),
        quote(&request_id.to_string())
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct FeedbackRow {
    pub score: f64,
    pub comment: String,
    /// Scores given (the last counts).
    pub ratings: u64,
    pub scored_ms: u64,
}

/// A request's feedback: its last score and comment.
pub fn feedback_of(org: Uuid, request_id: Uuid) -> String {
    format!(
        "SELECT toFloat64(argMax(score, ts_ms)), argMax(comment, ts_ms), \
         toUInt64(uniqExact(feedback_id)), toUInt64(max(ts_ms)) \
         FROM feedback WHERE org_id = {} AND request_id = {}",
        quote(&org.to_string()),
        quote(&request_id.to_string())
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct SeriesRow {
    pub bucket: u64,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro_usd: u64,
    pub errors: u64,
    pub avg_latency_ms: f64,
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub p99_latency_ms: f64,
}

/// Requests, tokens, cost and latency per time bucket.
pub fn timeseries(scope: &Scope, range: &Range, filters: &Filters, interval_secs: u64) -> String {
    format!(
        "SELECT {bucket} AS bucket, toUInt64(count()), toUInt64(sum(prompt_tokens)), \
         toUInt64(sum(completion_tokens)), toUInt64(sum(cost_micro_usd)), \
         toUInt64(countIf(status >= 400)), toFloat64(avg(latency_ms)), \
         toFloat64(quantileExact(0.5)(latency_ms)), toFloat64(quantileExact(0.95)(latency_ms)), \
         toFloat64(quantileExact(0.99)(latency_ms)) \
         FROM request_logs FINAL WHERE {w} GROUP BY bucket ORDER BY bucket",
        bucket = bucket(interval_secs),
        w = where_clause(scope, range, filters)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct GroupRow {
    pub id: String,
    pub requests: u64,
    pub tokens: u64,
    pub cost_micro_usd: u64,
    pub errors: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub avg_latency_ms: f64,
}

/// Sessions or users (`column`: `session_id` or `user_id`), the most
/// recently active first; a page of `limit` (and one more) from `offset`.
pub fn groups(
    column: &str,
    scope: &Scope,
    range: &Range,
    filters: &Filters,
    offset: u64,
    limit: u64,
) -> String {
    format!(
        "SELECT {column} AS id, toUInt64(count()), toUInt64(sum(prompt_tokens + completion_tokens)), \
         toUInt64(sum(cost_micro_usd)), toUInt64(countIf(status >= 400)), toUInt64(min(ts_ms)), \
         toUInt64(max(ts_ms)) AS last_ms, toFloat64(avg(latency_ms)) \
         FROM request_logs FINAL WHERE {w} AND {column} != '' \
         GROUP BY id ORDER BY last_ms DESC, id LIMIT {offset}, {n}",
        w = where_clause(scope, range, filters),
        n = limit + 1
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct PropertyRow {
    pub name: String,
    pub value: String,
    pub requests: u64,
    pub tokens: u64,
    pub cost_micro_usd: u64,
}

/// Property name/value pairs, the most used first.
pub fn properties(
    scope: &Scope,
    range: &Range,
    filters: &Filters,
    offset: u64,
    limit: u64,
) -> String {
    format!(
        "SELECT property_name, property_value, toUInt64(count()) AS requests, \
         toUInt64(sum(prompt_tokens + completion_tokens)), toUInt64(sum(cost_micro_usd)) \
         FROM request_logs FINAL \
         ARRAY JOIN property_keys AS property_name, property_values AS property_value \
         WHERE {w} GROUP BY property_name, property_value \
         ORDER BY requests DESC, property_name, property_value LIMIT {offset}, {n}",
        w = where_clause(scope, range, filters),
        n = limit + 1
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct CacheRow {
    pub model: String,
    pub requests: u64,
    pub cached_requests: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
}

/// Prompt-cache use by model.
pub fn cache(scope: &Scope, range: &Range, filters: &Filters) -> String {
    format!(
        "SELECT model, toUInt64(count()), toUInt64(countIf(cached_tokens > 0)), \
         toUInt64(sum(prompt_tokens)), toUInt64(sum(cached_tokens)) \
         FROM request_logs FINAL WHERE {w} AND model != '' GROUP BY model ORDER BY model",
        w = where_clause(scope, range, filters)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct LimitedRow {
    pub bucket: u64,
    pub environment: String,
    pub rate_limited: u64,
    pub cost_capped: u64,
}

/// 429 (rate limit) and 402 (cost cap) answers per bucket and environment.
pub fn rate_limits(scope: &Scope, range: &Range, filters: &Filters, interval_secs: u64) -> String {
    format!(
        "SELECT {bucket} AS bucket, environment, toUInt64(countIf(status = 429)), \
         toUInt64(countIf(status = 402)) \
         FROM request_logs FINAL WHERE {w} AND status IN (429, 402) \
         GROUP BY bucket, environment ORDER BY bucket, environment",
        bucket = bucket(interval_secs),
        w = where_clause(scope, range, filters)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct RefusalRow {
    pub bucket: u64,
    pub api_key_id: String,
    pub status: u16,
    pub error_code: String,
    pub requests: u64,
}

/// 401 and 403 answers per bucket, key and code.
pub fn security(scope: &Scope, range: &Range, filters: &Filters, interval_secs: u64) -> String {
    format!(
        "SELECT {bucket} AS bucket, api_key_id, status, error_code, toUInt64(count()) \
         FROM request_logs FINAL WHERE {w} AND status IN (401, 403) \
         GROUP BY bucket, api_key_id, status, error_code \
         ORDER BY bucket, api_key_id, status, error_code",
        bucket = bucket(interval_secs),
        w = where_clause(scope, range, filters)
    )
}

/// The scored requests of the scope: (request_id, project_id, last_score,
/// last_comment, scored_ms), each request's last score, as a subquery.
/// (An alias never repeats a column's name: ClickHouse 18.16 reads that as
/// a cycle; current releases want an alias on each joined subquery.)
fn scored(scope: &Scope, range: &Range, filters: &Filters) -> String {
    format!(
        "(SELECT request_id, project_id FROM request_logs FINAL WHERE {w}) AS scored_requests \
         ANY INNER JOIN \
         (SELECT request_id, argMax(score, ts_ms) AS last_score, \
          argMax(comment, ts_ms) AS last_comment, max(ts_ms) AS scored_ms \
          FROM feedback WHERE org_id = {org} GROUP BY request_id) AS last_scores \
         USING request_id",
        w = where_clause(scope, range, filters),
        org = quote(&scope.org.to_string())
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct QualityRow {
    pub project_id: String,
    pub ratings: u64,
    pub score_sum: f64,
}

/// Per project: scored requests and the sum of their scores.
pub fn quality_by_project(scope: &Scope, range: &Range, filters: &Filters) -> String {
    format!(
        "SELECT project_id, toUInt64(count()), toFloat64(sum(last_score)) FROM {} \
         GROUP BY project_id ORDER BY project_id",
        scored(scope, range, filters)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct HistogramRow {
    /// Scores in [bucket / 10, (bucket + 1) / 10); 9 includes 1.0.
    pub bucket: u8,
    pub ratings: u64,
}

/// The scores' distribution in tenths.
pub fn score_histogram(scope: &Scope, range: &Range, filters: &Filters) -> String {
    format!(
        "SELECT toUInt8(least(floor(last_score * 10), 9)) AS bucket, toUInt64(count()) FROM {} \
         GROUP BY bucket ORDER BY bucket",
        scored(scope, range, filters)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct ScoredRow {
    pub request_id: String,
    pub project_id: String,
    pub score: f64,
    pub comment: String,
    pub scored_ms: u64,
}

/// The most recently scored requests.
pub fn recent_scores(scope: &Scope, range: &Range, filters: &Filters, limit: u64) -> String {
    format!(
        "SELECT request_id, project_id, toFloat64(last_score), last_comment, toUInt64(scored_ms) \
         FROM {} \
         ORDER BY scored_ms DESC, request_id LIMIT {limit}",
        scored(scope, range, filters)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct ProjectRow {
    pub project_id: String,
    pub requests: u64,
    pub tokens: u64,
    pub cost_micro_usd: u64,
    pub errors: u64,
    pub latency_sum_ms: u64,
    pub p95_latency_ms: f64,
}

/// Per project of the scope: the figures of the breakdown table and the
/// widgets (requests of no project left out).
pub fn by_project(scope: &Scope, range: &Range, filters: &Filters) -> String {
    format!(
        "SELECT project_id, toUInt64(count()), toUInt64(sum(prompt_tokens + completion_tokens)), \
         toUInt64(sum(cost_micro_usd)), toUInt64(countIf(status >= 400)), \
         toUInt64(sum(latency_ms)), toFloat64(quantileExact(0.95)(latency_ms)) \
         FROM request_logs FINAL WHERE {w} AND project_id != '' \
         GROUP BY project_id ORDER BY project_id",
        w = where_clause(scope, range, filters)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct EnvironmentRow {
    pub environment: String,
    pub requests: u64,
    pub cost_micro_usd: u64,
}

/// Cost by environment over the range (the month to date for the widget).
pub fn by_environment(scope: &Scope, range: &Range) -> String {
    format!(
        "SELECT environment, toUInt64(count()), toUInt64(sum(cost_micro_usd)) \
         FROM request_logs FINAL WHERE {} AND {}{} GROUP BY environment ORDER BY environment",
        scope.condition(),
        range.condition(),
        llm_only()
    )
}

/// Looks up the project of a request of `org` (for scoring it).
pub fn project_of_request(org: Uuid, request_id: Uuid) -> String {
    format!(
        "SELECT project_id FROM request_logs WHERE org_id = {} AND request_id = {} LIMIT 1",
        quote(&org.to_string()),
        quote(&request_id.to_string())
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct ProjectIdRow {
    pub project_id: String,
}

/// A score given from the control plane, written straight to `feedback`.
#[allow(clippy::too_many_arguments)]
pub fn insert_feedback(
    feedback_id: Uuid,
    request_id: Uuid,
    ts_ms: u64,
    org: Uuid,
    project: &str,
    user: Uuid,
    score: f64,
    comment: &str,
) -> String {
    format!(
        "INSERT INTO feedback (feedback_id, request_id, ts_ms, ts, org_id, project_id, api_key_id, \
         user_id, score, comment) SELECT {}, {}, {ts_ms}, toDateTime({}), {}, {}, '', {}, \
         toFloat64({score:?}), {}",
        quote(&feedback_id.to_string()),
        quote(&request_id.to_string()),
        ts_ms / 1000,
        quote(&org.to_string()),
        quote(project),
        quote(&user.to_string()),
        quote(comment)
    )
}

const HOUR_MS: u64 = 3_600_000;

/// The epoch hours `[first, end)` a range touches: the range rounded out
/// to whole hours, as the rollup counts it.
pub fn hours_covering(range: &Range) -> (u64, u64) {
    (range.from_ms / HOUR_MS, range.to_ms.div_ceil(HOUR_MS))
}

/// Whether the rollup can answer under `filters`: it is kept by project
/// and environment only, and counts calls to a model only.
pub fn rollup_answers(filters: &Filters) -> bool {
    Filters {
        environment: None,
        ..filters.clone()
    } == Filters::llm()
}

/// The requests of `scope` in the hours `range` touches (and
/// `environment`), by epoch hour, project and environment, with their
/// scores, from the rollup (the newest version of each row). Columns:
/// u_hour, u_project, u_env, u_requests, u_prompt, u_completion, u_cost,
/// u_errors, u_latency, u_values, u_counts, u_ratings, u_score.
fn hourly(scope: &Scope, range: &Range, environment: Option<&str>, latencies: bool) -> String {
    let env = environment
        .map(|e| format!(" AND environment = {}", quote(e)))
        .unwrap_or_default();
    // The latency histograms are as big as the rows they count: read only
    // where a percentile is asked for.
    let histograms = if latencies {
        "argMax(latency_values, version) AS u_values, \
         argMax(latency_counts, version) AS u_counts"
    } else {
        "emptyArrayUInt64() AS u_values, emptyArrayUInt64() AS u_counts"
    };
    let (first, end) = hours_covering(range);
    // The newest version of each row: what FINAL reads, without its cost on
    // ClickHouse 18.16.
    format!(
        "(SELECT hour AS u_hour, project_id AS u_project, environment AS u_env, \
         argMax(requests, version) AS u_requests, argMax(prompt_tokens, version) AS u_prompt, \
         argMax(completion_tokens, version) AS u_completion, \
         argMax(cost_micro_usd, version) AS u_cost, argMax(errors, version) AS u_errors, \
         argMax(latency_sum_ms, version) AS u_latency, {histograms}, \
         argMax(ratings, version) AS u_ratings, argMax(score_sum, version) AS u_score \
         FROM request_rollup \
         WHERE {} AND hour >= {first} AND hour < {end}{env} \
         GROUP BY u_hour, u_project, u_env)",
        scope.condition()
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct RolledProjectRow {
    pub project_id: String,
    pub requests: u64,
    pub tokens: u64,
    pub cost_micro_usd: u64,
    pub errors: u64,
    pub latency_sum_ms: u64,
    /// Each distinct latency (ms) and its count.
    pub latencies: (Vec<u64>, Vec<u64>),
    pub ratings: u64,
    pub score_sum: f64,
}

/// `by_project` and `quality_by_project` together, from the rollup; the
/// latency histograms only with `latencies`.
pub fn by_project_rolled(
    scope: &Scope,
    range: &Range,
    environment: Option<&str>,
    latencies: bool,
) -> String {
    format!(
        "SELECT u_project AS project_id, toUInt64(sum(u_requests)), \
         toUInt64(sum(u_prompt + u_completion)), toUInt64(sum(u_cost)), toUInt64(sum(u_errors)), \
         toUInt64(sum(u_latency)), sumMap(u_values, u_counts), toUInt64(sum(u_ratings)), \
         toFloat64(sum(u_score)) \
         FROM {} WHERE u_project != '' GROUP BY project_id ORDER BY project_id",
        hourly(scope, range, environment, latencies)
    )
}

/// `by_environment`, from the rollup.
pub fn by_environment_rolled(scope: &Scope, range: &Range) -> String {
    format!(
        "SELECT u_env AS environment, toUInt64(sum(u_requests)), toUInt64(sum(u_cost)) \
         FROM {} GROUP BY environment ORDER BY environment",
        hourly(scope, range, None, false)
    )
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct RolledSeriesRow {
    pub bucket: u64,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro_usd: u64,
    pub errors: u64,
    pub latency_sum_ms: u64,
    pub latencies: (Vec<u64>, Vec<u64>),
}

/// `timeseries`, from the rollup (`interval_secs`: an hour or a day).
pub fn timeseries_rolled(
    scope: &Scope,
    range: &Range,
    environment: Option<&str>,
    interval_secs: u64,
) -> String {
    let hours = (interval_secs / 3600).max(1);
    format!(
        "SELECT toUInt64(intDiv(u_hour, {hours}) * {interval_secs}) AS bucket, \
         toUInt64(sum(u_requests)), toUInt64(sum(u_prompt)), toUInt64(sum(u_completion)), \
         toUInt64(sum(u_cost)), toUInt64(sum(u_errors)), toUInt64(sum(u_latency)), \
         sumMap(u_values, u_counts) \
         FROM {} GROUP BY bucket ORDER BY bucket",
        hourly(scope, range, environment, true)
    )
}

/// ClickHouse's `quantileExact(level)` of a histogram (distinct values in
/// ascending order, their counts): the value at index floor(level * n) of
/// the sorted values; 0 for none.
pub fn histogram_quantile(values: &[u64], counts: &[u64], level: f64) -> f64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let index = ((level * n as f64) as u64).min(n - 1);
    let mut seen = 0;
    for (value, count) in values.iter().zip(counts) {
        seen += count;
        if seen > index {
            return *value as f64;
        }
    }
    values.last().copied().unwrap_or(0) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_rounded_out_to_whole_hours() {
        let h = HOUR_MS;
        let r = |a, b| Range {
            from_ms: a,
            to_ms: b,
        };
        assert_eq!(hours_covering(&r(10 * h + 5, 13 * h + 7)), (10, 14));
        assert_eq!(hours_covering(&r(10 * h, 12 * h)), (10, 12));
        assert_eq!(hours_covering(&r(10 * h + 5, 10 * h + 6)), (10, 11));
    }

    #[test]
    fn histogram_quantiles_are_quantile_exact() {
        // Values 1..=10 once each: quantileExact(0.5) is the 6th smallest.
        let values: Vec<u64> = (1..=10).collect();
        let counts = vec![1; 10];
        assert_eq!(histogram_quantile(&values, &counts, 0.5), 6.0);
        assert_eq!(histogram_quantile(&values, &counts, 0.95), 10.0);
        assert_eq!(histogram_quantile(&values, &counts, 0.0), 1.0);
        assert_eq!(histogram_quantile(&[5, 9], &[3, 1], 0.75), 9.0);
        assert_eq!(histogram_quantile(&[5, 9], &[3, 1], 0.5), 5.0);
        assert_eq!(histogram_quantile(&[], &[], 0.5), 0.0);
    }

    #[test]
    fn literals_are_quoted_and_escaped() {
        assert_eq!(quote("a"), "'a'");
        assert_eq!(quote(r"it's a \ back"), r"'it\'s a \\ back'");
        assert_eq!(quote("a\0b"), r"'a\0b'");
    }

    #[test]
    fn a_scope_of_no_project_matches_nothing() {
        let org = Uuid::nil();
        let scope = Scope {
            org,
            projects: Some(vec![]),
        };
        assert!(scope.condition().ends_with("AND 1 = 0"));
        let all = Scope {
            org,
            projects: None,
        };
        assert!(!all.condition().contains("project_id"));
    }

    #[test]
    fn filters_become_quoted_conditions() {
        let filters = Filters {
            model: Some("gpt' OR 1=1 --".into()),
            status: Some(429),
            property: Some("team".into()),
            property_value: Some("core".into()),
            ..Filters::default()
        };
        let sql = filters.condition();
        assert!(sql.contains(r"model = 'gpt\' OR 1=1 --'"), "{sql}");
        assert!(sql.contains("status = 429"));
        assert!(sql.contains("k = 'team' AND v = 'core'"));
    }
}
