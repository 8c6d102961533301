//! Invitations: how users join an org. An owner or admin invites an email
//! with a role (an owner only by an owner) and gets a one-time token
//! (`fpi_...`, stored as SHA-256, valid for a week) to hand over; no mail
//! server is assumed. Accepting it with the token joins the org: a new user
//! sets their name and password; an existing user accepts it signed in as
//! themselves (never by sending their password with someone else's token,
//! which would let an inviter guess it). An invitation works only while its
//! inviter still has the right to make it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_model::validate::{check_length, NAME_CHARS};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::auth::{check_password, hash_password, new_secret, secret_hash, Caller};
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action, OrgRole};
use crate::state::AppState;
use floopy_control_db::tables::{invitations, members, sessions};
use floopy_control_db::Actor;

/// The prefix of invitation tokens.
pub const INVITATION_PREFIX: &str = "fpi_";
/// How long an invitation can be accepted.
const VALID_DAYS: i32 = 7;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    pub email: String,
    pub role: OrgRole,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    pub role: OrgRole,
    pub expires_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    pub view: InvitationView,
    /// The one-time token: shown this once; accepted at
    /// `POST /v1/invitations/accept`.
    pub token: String,
}

/// A plausible email (the database checks the same shape), lowercased.
fn normalize_email(email: &str) -> Result<String, FieldError> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && !host.is_empty() && !host.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(FieldError::new(
            "email",
            format!("{email:?} is not an email address"),
        ))
    }
}

/// `POST /v1/orgs/{org}/invitations`.
#[utoipa::path(
    operation_id = "invitations_create",
    tag = "invitations",
    post,
    path = "/v1/orgs/{org}/invitations",
    params(("org" = Uuid, Path, description = "The organization's id")),
    request_body = NewInvitation,
    responses((status = 201, body = CreatedInvitation), crate::http::schema::Refusals),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<NewInvitation>,
) -> Result<(StatusCode, Json<CreatedInvitation>), ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageOrgMembers)?;
    if body.role == OrgRole::Owner && m.org_role != OrgRole::Owner {
        return Err(ApiError::Forbidden("only an owner invites an owner".into()));
    }
    let email = normalize_email(&body.email).map_err(|e| ApiError::Validation(vec![e]))?;
    let token = new_secret(INVITATION_PREFIX)?;
    let row = invitations::insert(
        &tx,
        invitations::NewInvitation {
            org,
            email: &email,
            role: body.role.as_str(),
            token_hash: &secret_hash(&token),
            invited_by: caller.user_id,
            valid_days: VALID_DAYS,
        },
    )
    .await?;
    tx.commit().await?;
    let view = InvitationView {
        id: row.id,
        email: row.email,
        role: body.role,
        expires_at: row.expires_at,
    };
    Ok((StatusCode::CREATED, Json(CreatedInvitation { view, token })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    pub token: String,
    /// A new user's display name.
    pub name: Option<String>,
    /// A new user's password (an existing user accepts signed in instead).
    pub password: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub role: OrgRole,
}

/// `POST /v1/invitations/accept`: the token is the credential for a new
/// user; an existing user sends it signed in.
#[utoipa::path(
    operation_id = "invitations_accept",
    tag = "invitations",
    post,
    path = "/v1/invitations/accept",
    request_body = Acceptance,
    responses((status = 200, body = Accepted), crate::http::schema::Refusals),
    security((), ("token" = [])),
)]
pub async fn accept(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<Acceptance>,
) -> Result<Json<Accepted>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let invitation = invitations::lock_acceptable(&tx, &secret_hash(&body.token))
        .await?
        .ok_or(ApiError::NotFound("invitation"))?;
    let role = OrgRole::parse(&invitation.role)
        .ok_or_else(|| ApiError::internal(invitation.role.clone()))?;
    let existing = sessions::user_by_email(tx.client(), &invitation.email).await?;
    let user_id = match existing {
        Some((user, _)) => match caller {
            Ok(caller) if caller.user_id == user => user,
            Ok(_) => {
                return Err(ApiError::Forbidden(
                    "this invitation is for another user".into(),
                ))
            }
            Err(_) => return Err(ApiError::Unauthenticated),
        },
        None => {
            let mut errors = Vec::new();
            match body.name.as_deref() {
                None => errors.push(FieldError::new("name", "is required for a new user")),
                Some(name) => {
                    if let Err(message) = check_length(name, NAME_CHARS) {
                        errors.push(FieldError::new("name", message));
                    }
                }
            }
            let password = body.password.unwrap_or_default();
            if let Err(message) = check_password(&password) {
                errors.push(FieldError::new("password", message));
            }
            if !errors.is_empty() {
                return Err(ApiError::Validation(errors));
            }
            let hash = hash_password(password).await?;
            members::insert_user(&tx, &invitation.email, body.name.as_deref(), &hash).await?
        }
    };
    if !members::join_org(&tx, invitation.org, user_id, role.as_str()).await? {
        return Err(ApiError::Conflict {
            code: "already_member",
            message: "this user is already a member of the organization".into(),
        });
    }
    invitations::accepted(&tx, &invitation, user_id).await?;
    tx.commit().await?;
    let org = invitation.org;
    Ok(Json(Accepted {
        org_id: org,
        user_id,
        role,
    }))
}

/// `GET /v1/orgs/{org}/invitations`: those not accepted, revoked or
/// expired (owners and admins).
#[utoipa::path(
    operation_id = "invitations_list",
    tag = "invitations",
    get,
    path = "/v1/orgs/{org}/invitations",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<InvitationView>), crate::http::schema::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<InvitationView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ManageOrgMembers)?;
    let items = invitations::list_pending(&db, org, after, limit + 1)
        .await?
        .into_iter()
        .map(|row| {
            Ok(InvitationView {
                id: row.id,
                role: OrgRole::parse(&row.role).ok_or_else(|| ApiError::internal(row.role))?,
                email: row.email,
                expires_at: row.expires_at,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(Page::new(items, limit, |i| i.id)))
}

/// `DELETE /v1/orgs/{org}/invitations/{invitation}`: the token no longer
/// works.
#[utoipa::path(
    operation_id = "invitations_revoke",
    tag = "invitations",
    delete,
    path = "/v1/orgs/{org}/invitations/{invitation}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("invitation" = Uuid, Path, description = "The invitation's id")),
    responses((status = 204, description = "Revoked"), crate::http::schema::Refusals),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, invitation)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageOrgMembers)?;
    let actor = Actor::person(org, caller.user_id);
    if !invitations::revoke(&tx, actor, org, invitation).await? {
        return Err(ApiError::NotFound("invitation"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in ["", "ann", "@x", "ann@", "a b@c", "a@b@c"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
