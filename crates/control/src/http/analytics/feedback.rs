//! `POST /v1/orgs/{org}/feedback`: a score (and a comment) given to a
//! request from the control plane.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{check, now_ms, store};
use crate::analytics as sql;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::http::{membership, Ids, JsonBody};
use crate::roles::{authorize, Action};
use crate::state::AppState;

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
    responses((status = 201, body = FeedbackCreated), crate::http::schema::Refusals),
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
