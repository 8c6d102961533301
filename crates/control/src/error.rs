//! `ApiError`: every error the API answers, in the gateway's JSON shape
//! (`{"error": {"message", "type", "code", "param"}}`), with a `fields` list
//! on 422 naming every invalid field. Internal errors are logged with their
//! cause and answered as a bare 500: a database message never reaches a
//! client. Database constraints (the data model's rules, enforced by the
//! schema so that racing replicas cannot break them) are mapped to the field
//! they are about in `from_db`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use floopy_model::Plan;
use serde::Serialize;

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub param: String,
    pub message: String,
}

impl FieldError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            param: param.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required: a session cookie or a personal access token")]
    Unauthenticated,
    #[error("the email or the password is wrong")]
    InvalidCredentials,
    #[error("too many failed logins; retry in {retry_after_secs} s")]
    LoginThrottled { retry_after_secs: u64 },
    #[error("the x-csrf-token header is missing or does not match the session")]
    CsrfRejected,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid request: {}", summary(.0))]
    Validation(Vec<FieldError>),
    #[error("the {plan} plan allows {limit} projects (Default included); upgrade the plan or delete a project")]
    QuotaExceeded { plan: Plan, limit: usize },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the request body must be sent as Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("internal error")]
    Internal(String),
    /// A dependency (ClickHouse for the analytics) is not configured or
    /// not answering; the message says which (no secret in it).
    #[error("{0}")]
    Unavailable(String),
}

fn summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| format!("{}: {}", f.param, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::LoginThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::CsrfRejected | ApiError::Forbidden(_) | ApiError::QuotaExceeded { .. } => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "authentication_required",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::LoginThrottled { .. } => "login_throttled",
            ApiError::CsrfRejected => "csrf_token_invalid",
            ApiError::Forbidden(_) => "permission_denied",
            ApiError::NotFound(_) => "not_found",
            ApiError::Validation(_) => "invalid_request",
            ApiError::QuotaExceeded { .. } => "plan_quota_exceeded",
            ApiError::Conflict { code, .. } => code,
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Internal(_) => "internal_error",
            ApiError::Unavailable(_) => "analytics_unavailable",
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated
            | ApiError::InvalidCredentials
            | ApiError::LoginThrottled { .. } => "authentication_error",
            ApiError::CsrfRejected | ApiError::Forbidden(_) | ApiError::QuotaExceeded { .. } => {
                "permission_error"
            }
            ApiError::NotFound(_)
            | ApiError::Validation(_)
            | ApiError::Conflict { .. }
            | ApiError::InvalidJson(_)
            | ApiError::UnsupportedMediaType => "invalid_request_error",
            ApiError::Internal(_) | ApiError::Unavailable(_) => "server_error",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::Validation(fields) => fields.first().map(|f| f.param.as_str()),
            ApiError::CsrfRejected => Some("x-csrf-token"),
            ApiError::Unauthenticated
            | ApiError::InvalidCredentials
            | ApiError::LoginThrottled { .. }
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::QuotaExceeded { .. }
            | ApiError::Conflict { .. }
            | ApiError::InvalidJson(_)
            | ApiError::UnsupportedMediaType
            | ApiError::Internal(_)
            | ApiError::Unavailable(_) => None,
        }
    }

    /// A database error: a known constraint becomes what it means, anything
    /// else an internal error (logged, not shown).
    pub fn from_db(e: tokio_postgres::Error) -> ApiError {
        if let Some(db) = e.as_db_error() {
            let field = |param: &str, message: &str| {
                ApiError::Validation(vec![FieldError::new(param, message)])
            };
            match db.constraint() {
                Some("projects_slug_unique_in_org") => {
                    return field(
                        "slug",
                        "is already used by another project of this organization",
                    )
                }
                Some("projects_default_not_deleted") => {
                    return ApiError::Conflict {
                        code: "default_project",
                        message: "the Default project cannot be deleted".into(),
                    }
                }
                Some("projects_default_not_archived") => {
                    return ApiError::Conflict {
                        code: "default_project",
                        message: "the Default project cannot be archived".into(),
                    }
                }
                Some("org_members_last_owner") => {
                    return ApiError::Conflict {
                        code: "last_owner",
                        message: "an organization keeps at least one owner".into(),
                    }
                }
                Some("users_email_unique") => {
                    return field("email", "is already the email of another user")
                }
                Some("api_keys_project") => {
                    return field("project_id", "is not a project of this organization")
                }
                Some("api_keys_default_project") => {
                    return field(
                        "default_project_id",
                        "is not a project of this organization",
                    )
                }
                // The member left the org while being added to a project.
                Some("project_members_org_id_user_id_fkey") => return ApiError::NotFound("member"),
                _ => {}
            }
        }
        // The driver's own message ("db error") says little without its
        // cause; both are logged, never shown.
        ApiError::Internal(floopy_control_db::with_causes(&e))
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::from_db(e)
    }
}

impl From<floopy_control_db::DbError> for ApiError {
    fn from(e: floopy_control_db::DbError) -> Self {
        match e {
            floopy_control_db::DbError::Postgres(e) => ApiError::from_db(e),
            invalid => ApiError::Internal(invalid.to_string()),
        }
    }
}

impl From<crate::analytics::StoreError> for ApiError {
    fn from(e: crate::analytics::StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Internal(format!("control database pool: {e}"))
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    param: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a [FieldError]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error answering a request");
        }
        if let ApiError::Unavailable(cause) = &self {
            tracing::warn!(error = %cause, "a dependency is unavailable");
        }
        let status = self.status();
        let body = Body {
            error: Inner {
                message: self.to_string(),
                kind: self.kind(),
                code: self.code(),
                param: self.param(),
                fields: match &self {
                    ApiError::Validation(fields) => Some(fields),
                    _ => None,
                },
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::LoginThrottled { retry_after_secs } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_lists_every_field_and_names_the_first() {
        let e = ApiError::Validation(vec![
            FieldError::new("name", "must be 1 to 100 characters long (is 0)"),
            FieldError::new("slug", "bad"),
        ]);
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.param(), Some("name"));
        assert!(e.to_string().contains("slug: bad"));
    }

    #[test]
    fn quota_names_the_plan_and_its_limit() {
        let e = ApiError::QuotaExceeded {
            plan: Plan::Starter,
            limit: 3,
        };
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(e.code(), "plan_quota_exceeded");
        assert!(e.to_string().contains("starter plan allows 3 projects"));
    }
}
