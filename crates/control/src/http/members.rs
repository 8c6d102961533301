//! Members: of an org (listed by every member; their role changed and
//! removed by owners and admins, an owner only by an owner; the last owner
//! stays) and of a project (added, changed and removed by the project's
//! owners and admins, or the org's).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_control_db::tables::members::{self as table, MemberRow};
use floopy_control_db::tables::projects;
use floopy_control_db::Actor;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, project_role, Action, Membership, OrgRole, ProjectRole};
use crate::state::AppState;

/// Granting, changing or removing a project's `owner` takes an owner: the
/// project's own, or the org's owner or admin. A project admin manages the
/// other members only (else they could make themselves owner, and delete).
fn may_touch_owner(m: &Membership, project: Uuid) -> Result<(), ApiError> {
    let owner = project_role(m, project) == Some(ProjectRole::Owner) || m.org_role.runs_the_org();
    if owner {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the project's owner (or the org's owners and admins) grants, changes or removes an owner".into(),
        ))
    }
}

/// The member's current role on the project, its row locked.
async fn current_project_role(
    tx: &tokio_postgres::Transaction<'_>,
    (org, project, user): (Uuid, Uuid, Uuid),
) -> Result<Option<ProjectRole>, ApiError> {
    let role = table::lock_project_role(tx, org, project, user).await?;
    Ok(role.as_deref().and_then(ProjectRole::parse))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
}

impl From<MemberRow> for MemberView {
    fn from(m: MemberRow) -> MemberView {
        MemberView {
            user_id: m.user_id,
            email: m.email,
            name: m.name,
            role: m.role,
        }
    }
}

/// `GET /v1/orgs/{org}/members`.
#[utoipa::path(
    operation_id = "members_list",
    tag = "members",
    get,
    path = "/v1/orgs/{org}/members",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<MemberView>), crate::http::schema::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<MemberView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ReadOrgMembers)?;
    let rows = table::list_org(&db, org, after, limit + 1).await?;
    let items = rows.into_iter().map(MemberView::from).collect();
    Ok(Json(Page::new(items, limit, |m| m.user_id)))
}

/// `DELETE /v1/orgs/{org}/members/{user}`: the user leaves the org (and its
/// projects).
#[utoipa::path(
    operation_id = "members_remove",
    tag = "members",
    delete,
    path = "/v1/orgs/{org}/members/{user}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("user" = Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "Removed"), crate::http::schema::Refusals),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, user)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageOrgMembers)?;
    let role = table::lock_org_role(&tx, org, user, false)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    if role == "owner" && m.org_role != OrgRole::Owner {
        return Err(ApiError::Forbidden("only an owner removes an owner".into()));
    }
    let actor = Actor::person(org, caller.user_id);
    table::remove_org_member(&tx, actor, org, user, &role).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: OrgRole,
}

/// `PATCH /v1/orgs/{org}/members/{user}`: changes a member's org role
/// (owners and admins; only an owner makes or unmakes an owner; the last
/// owner stays one).
#[utoipa::path(
    operation_id = "orgs_set_member_role",
    tag = "orgs",
    patch,
    path = "/v1/orgs/{org}/members/{user}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("user" = Uuid, Path, description = "The user's id")),
    request_body = RoleChange,
    responses((status = 200, description = "The member's new role", body = Object), crate::http::schema::Refusals),
)]
pub async fn set_member_role(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, user)): Ids<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<RoleChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageOrgMembers)?;
    let current = table::lock_org_role(&tx, org, user, false)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    let touches_owner = current == "owner" || body.role == OrgRole::Owner;
    if touches_owner && m.org_role != OrgRole::Owner {
        return Err(ApiError::Forbidden(
            "only an owner makes or unmakes an owner".into(),
        ));
    }
    let actor = Actor::person(org, caller.user_id);
    table::set_org_role(&tx, actor, org, user, &current, body.role.as_str()).await?;
    tx.commit().await?;
    Ok(Json(
        serde_json::json!({"user_id": user, "role": body.role}),
    ))
}

/// `GET /v1/orgs/{org}/projects/{project}/members`.
#[utoipa::path(
    operation_id = "members_list_project",
    tag = "members",
    get,
    path = "/v1/orgs/{org}/projects/{project}/members",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id"), PageQuery),
    responses((status = 200, body = Page<MemberView>), crate::http::schema::Refusals),
)]
pub async fn list_project(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project)): Ids<(Uuid, Uuid)>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<MemberView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ReadProject(project))?;
    // An org's owners and admins may read any of its projects, not a
    // project of another org or one that does not exist.
    if projects::read(&db, org, project).await?.is_none() {
        return Err(ApiError::NotFound("project"));
    }
    let rows = table::list_project(&db, org, project, after, limit + 1).await?;
    let items = rows.into_iter().map(MemberView::from).collect();
    Ok(Json(Page::new(items, limit, |m| m.user_id)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRoleChange {
    pub role: ProjectRole,
}

/// `PUT /v1/orgs/{org}/projects/{project}/members/{user}`: adds the org's
/// member `user` to the project with `role`, or changes their role.
#[utoipa::path(
    operation_id = "members_set_project",
    tag = "members",
    put,
    path = "/v1/orgs/{org}/projects/{project}/members/{user}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id"), ("user" = Uuid, Path, description = "The user's id")),
    request_body = ProjectRoleChange,
    responses((status = 200, body = MemberView), crate::http::schema::Refusals),
)]
pub async fn set_project(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project, user)): Ids<(Uuid, Uuid, Uuid)>,
    JsonBody(body): JsonBody<ProjectRoleChange>,
) -> Result<Json<MemberView>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageProjectMembers(project))?;
    if projects::read(tx.client(), org, project).await?.is_none() {
        return Err(ApiError::NotFound("project"));
    }
    // Locked, so the member cannot leave the org before the insert.
    if table::lock_org_role(&tx, org, user, true).await?.is_none() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "user",
            format!("{user} is not a member of this organization"),
        )]));
    }
    let before = current_project_role(&tx, (org, project, user)).await?;
    if body.role == ProjectRole::Owner || before == Some(ProjectRole::Owner) {
        may_touch_owner(&m, project)?;
    }
    let actor = Actor::person(org, caller.user_id);
    let before = before.map(ProjectRole::as_str);
    let member =
        table::set_project_role(&tx, actor, (org, project, user), before, body.role.as_str())
            .await?;
    tx.commit().await?;
    Ok(Json(member.into()))
}

/// `DELETE /v1/orgs/{org}/projects/{project}/members/{user}`.
#[utoipa::path(
    operation_id = "members_remove_project",
    tag = "members",
    delete,
    path = "/v1/orgs/{org}/projects/{project}/members/{user}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id"), ("user" = Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "Removed"), crate::http::schema::Refusals),
)]
pub async fn remove_project(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project, user)): Ids<(Uuid, Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageProjectMembers(project))?;
    let Some(before) = current_project_role(&tx, (org, project, user)).await? else {
        return Err(ApiError::NotFound("member"));
    };
    if before == ProjectRole::Owner {
        may_touch_owner(&m, project)?;
    }
    let actor = Actor::person(org, caller.user_id);
    table::remove_project_member(&tx, actor, (org, project, user), before.as_str()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
