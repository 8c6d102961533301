//! The vocabulary the API's operations document themselves with (utoipa):
//! the names of plans and environments, the error body every refusal has,
//! and the refusals any operation may answer. `openapi` assembles the
//! document from the operations; the operations name these.

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::FieldError;

/// A plan's name.
#[derive(ToSchema)]
#[schema(as = Plan)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub enum PlanName {
    Free,
    Starter,
    Pro,
    Enterprise,
}

/// An environment's name.
#[derive(ToSchema)]
#[schema(as = Environment)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentName {
    Development,
    Staging,
    Production,
    Other,
}

/// Every error: the gateway's shape.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    /// The field the error is about, if any.
    pub param: Option<String>,
    /// On 422: every invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
}

/// The refusals any operation may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Refusals {
    /// The body is not JSON.
    #[response(status = 400)]
    InvalidJson(#[to_schema] ErrorBody),
    /// No or an unknown credential.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// Outside the caller's role, a missing CSRF token, or over the plan's quota.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such object, or not the caller's to know of.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The Default project, the last owner, an existing member.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// Invalid fields, each named.
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// The body is not sent as application/json.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Too many failed logins.
    #[response(status = 429)]
    Throttled(ErrorBody),
    /// The analytics store (ClickHouse) is not configured or not answering.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
