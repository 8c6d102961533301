//! The analytics API (SPEC section 9): the dashboard's pages as JSON, read
//! from ClickHouse (`crate::analytics`), and scores given from the control
//! plane; a module per resource (`requests`, `series`, `groups`, `cache`,
//! `evaluations`, `figures`, `widgets`, `projects`, `feedback`), the query they share
//! here.
//!
//! Every endpoint is `GET /v1/orgs/{org}/analytics/...` with the same query
//! parameters: `project` (one project, else every project the caller may
//! see), `from` and `to` (epoch milliseconds, an RFC 3339 UTC time or a
//! date; `to` excluded; default the last 30 days), the request filters, and
//! where they apply `interval`, `metric`, `limit`, `cursor`.
//!
//! The widgets, the all-projects table, cost by environment and the time
//! series read the hourly rollup when the only filter is the environment
//! (`crate::rollup`): they count whole UTC hours, the range
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

pub mod cache;
pub mod evaluations;
pub mod feedback;
mod figures;
pub mod groups;
pub mod projects;
pub mod requests;
pub mod series;
pub mod widgets;

use std::sync::Arc;

use floopy_model::calendar::parse_time;
use floopy_model::Environment;
use serde::Deserialize;
use uuid::Uuid;

use super::membership;
use crate::analytics::{self as sql, Analytics, Filters, Range, Scope};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action, Membership};
use crate::state::AppState;

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

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn ratio(numerator: f64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator / denominator as f64)
}
