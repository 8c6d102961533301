//! The `/v1/` API, a module per resource, and what they share: the JSON
//! body extractor (errors name the field), the caller's membership in the
//! org a path names, and cursor pagination.

pub mod alerts;
pub mod analytics;
pub mod budgets;
pub mod invitations;
pub mod keys;
pub mod limits;
pub mod members;
pub mod orgs;
pub mod projects;
pub mod schema;
pub mod session;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, patch, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{Membership, OrgRole, ProjectRole};
use crate::state::AppState;

/// Every route of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/login", post(session::login))
        .route("/v1/auth/logout", post(session::logout))
        .route("/v1/me", get(session::me))
        .route(
            "/v1/tokens",
            get(session::list_tokens).post(session::create_token),
        )
        .route(
            "/v1/tokens/{token}",
            axum::routing::delete(session::revoke_token),
        )
        .route("/v1/orgs", get(orgs::list))
        .route("/v1/orgs/{org}", get(orgs::read).patch(orgs::update))
        .route("/v1/orgs/{org}/audit", get(orgs::audit))
        .route(
            "/v1/orgs/{org}/projects",
            get(projects::list).post(projects::create),
        )
        .route(
            "/v1/orgs/{org}/projects/{project}",
            get(projects::read)
                .patch(projects::update)
                .delete(projects::delete),
        )
        .route(
            "/v1/orgs/{org}/projects/{project}/archive",
            post(projects::archive),
        )
        .route(
            "/v1/orgs/{org}/projects/{project}/unarchive",
            post(projects::unarchive),
        )
        .route("/v1/orgs/{org}/keys", get(keys::list).post(keys::create))
        .route(
            "/v1/orgs/{org}/keys/{key}",
            get(keys::read).patch(keys::rename),
        )
        .route("/v1/orgs/{org}/keys/{key}/revoke", post(keys::revoke))
        .route("/v1/orgs/{org}/keys/{key}/restore", post(keys::restore))
        .route("/v1/orgs/{org}/limits", get(limits::list))
        .route(
            "/v1/orgs/{org}/limits/{environment}",
            put(limits::set).delete(limits::remove),
        )
        .route("/v1/orgs/{org}/members", get(members::list))
        .route(
            "/v1/orgs/{org}/members/{user}",
            patch(members::set_member_role).delete(members::remove),
        )
        .route(
            "/v1/orgs/{org}/projects/{project}/members",
            get(members::list_project),
        )
        .route(
            "/v1/orgs/{org}/projects/{project}/members/{user}",
            put(members::set_project).delete(members::remove_project),
        )
        .route(
            "/v1/orgs/{org}/invitations",
            get(invitations::list).post(invitations::create),
        )
        .route(
            "/v1/orgs/{org}/invitations/{invitation}",
            axum::routing::delete(invitations::revoke),
        )
        .route("/v1/invitations/accept", post(invitations::accept))
        .route(
            "/v1/orgs/{org}/budgets",
            get(budgets::list).post(budgets::create),
        )
        .route(
            "/v1/orgs/{org}/budgets/{budget}",
            get(budgets::read)
                .patch(budgets::update)
                .delete(budgets::delete),
        )
        .route(
            "/v1/orgs/{org}/budgets/{budget}/restore",
            post(budgets::restore),
        )
        .route(
            "/v1/orgs/{org}/alert-rules",
            get(alerts::list_rules).post(alerts::create_rule),
        )
        .route(
            "/v1/orgs/{org}/alert-rules/{rule}",
            get(alerts::read_rule_handler)
                .patch(alerts::update_rule)
                .delete(alerts::delete_rule),
        )
        .route("/v1/orgs/{org}/alerts", get(alerts::list_alerts))
        .route(
            "/v1/orgs/{org}/feedback",
            post(analytics::feedback::create_feedback),
        )
        .route(
            "/v1/orgs/{org}/analytics/requests",
            get(analytics::requests::requests),
        )
        .route(
            "/v1/orgs/{org}/analytics/requests/{request}",
            get(analytics::requests::request),
        )
        .route(
            "/v1/orgs/{org}/analytics/timeseries",
            get(analytics::series::timeseries),
        )
        .route(
            "/v1/orgs/{org}/analytics/sessions",
            get(analytics::groups::sessions),
        )
        .route(
            "/v1/orgs/{org}/analytics/users",
            get(analytics::groups::users),
        )
        .route(
            "/v1/orgs/{org}/analytics/properties",
            get(analytics::groups::properties),
        )
        .route(
            "/v1/orgs/{org}/analytics/cache",
            get(analytics::cache::cache),
        )
        .route(
            "/v1/orgs/{org}/analytics/rate-limits",
            get(analytics::series::rate_limits),
        )
        .route(
            "/v1/orgs/{org}/analytics/security",
            get(analytics::series::security),
        )
        .route(
            "/v1/orgs/{org}/analytics/evaluations",
            get(analytics::evaluations::evaluations),
        )
        .route(
            "/v1/orgs/{org}/analytics/projects",
            get(analytics::projects::projects),
        )
        .route(
            "/v1/orgs/{org}/analytics/widgets/cost-per-mtok",
            get(analytics::widgets::widget_cost_per_mtok),
        )
        .route(
            "/v1/orgs/{org}/analytics/widgets/latency",
            get(analytics::widgets::widget_latency),
        )
        .route(
            "/v1/orgs/{org}/analytics/widgets/quality",
            get(analytics::widgets::widget_quality),
        )
        .route(
            "/v1/orgs/{org}/analytics/widgets/rank",
            get(analytics::widgets::widget_rank),
        )
        .route(
            "/v1/orgs/{org}/analytics/widgets/cost-by-environment",
            get(analytics::widgets::widget_cost_by_environment),
        )
}

/// A JSON request body: another content type is 415, a body that is not
/// JSON 400 `invalid_json`, a field of the wrong type or an unknown field
/// 422 naming it.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // JSON only: a form posted from another site (text/plain, no CORS
        // preflight) is refused before it is read.
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or_default().trim();
                mime.eq_ignore_ascii_case("application/json")
            });
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            return Err(ApiError::InvalidJson(e.to_string()));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut de)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let param = if path == "." { "(body)".into() } else { path };
                let message = e.into_inner().to_string();
                // serde_json appends the position; the field is named already.
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_string();
                ApiError::Validation(vec![FieldError::new(param, message)])
            })
    }
}

/// Path parameters (ids): one that does not parse names nothing that
/// exists, so it is a JSON 404 like any unknown object.
pub struct Ids<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Ids<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(ids)| Ids(ids))
            .map_err(|_| ApiError::NotFound("object"))
    }
}

/// A query string; a parameter of the wrong type or an unknown one is a
/// 422 naming it.
pub struct QueryParams<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let path = e.path().to_string();
                let param = if path == "." { "(query)".into() } else { path };
                ApiError::Validation(vec![FieldError::new(param, e.into_inner().to_string())])
            })
    }
}

/// The caller's membership in `org`; 404 when they are not a member (an org
/// that is not theirs does not exist for them).
pub async fn membership(
    db: &tokio_postgres::Client,
    caller: &Caller,
    org: Uuid,
) -> Result<Membership, ApiError> {
    let roles = floopy_control_db::tables::members::roles(db, org, caller.user_id)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    let role = roles.org_role;
    let org_role =
        OrgRole::parse(&role).ok_or_else(|| ApiError::internal(format!("role {role}")))?;
    let projects = roles
        .projects
        .into_iter()
        .filter_map(|(project, role)| Some((project, ProjectRole::parse(&role)?)))
        .collect();
    Ok(Membership { org_role, projects })
}

/// `?limit=&cursor=` of a list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Items per page by default, and at most.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

impl PageQuery {
    /// (page size, the id to list after: none on the first page). Ids are
    /// UUID v7, so their order is creation order; the cursor is the last id
    /// of the previous page.
    pub fn parse(&self) -> Result<(i64, Option<Uuid>), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        let mut errors = Vec::new();
        if !(1..=MAX_PAGE).contains(&limit) {
            errors.push(FieldError::new("limit", format!("must be 1 to {MAX_PAGE}")));
        }
        let after = match &self.cursor {
            None => None,
            Some(c) => match Uuid::try_parse(c) {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this API returned",
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok((limit, after))
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// One page of a list: `next_cursor` is absent on the last.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` fetched items (the extra one tells
    /// whether there is a next page); `id` gives an item's id.
    pub fn new(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(usize::try_from(limit).unwrap_or(0));
        let next_cursor = if more {
            items.last().map(|item| id(item).to_string())
        } else {
            None
        };
        Page {
            data: items,
            next_cursor,
        }
    }
}

/// SQL for a `timestamptz` column as an RFC 3339 UTC string.
#[macro_export]
macro_rules! rfc3339 {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}
