//! Members: of an org (listed by every member; removed by owners and admins,
//! an owner only by an owner; the last owner stays) and of a project (added,
//! changed and removed by the project's owners and admins, or the org's).
//! Org roles are changed in `orgs::set_member_role`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::app::AppState;
use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, project_role, Action, Membership, OrgRole, ProjectRole};

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
    let row = tx
        .query_opt(
            "SELECT role::text FROM project_members
              WHERE org_id = $1 AND project_id = $2 AND user_id = $3 FOR UPDATE",
            &[&org, &project, &user],
        )
        .await?;
    Ok(row.and_then(|r| ProjectRole::parse(r.get(0))))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
}

fn view(row: &tokio_postgres::Row) -> MemberView {
    MemberView {
        user_id: row.get(0),
        email: row.get(1),
        name: row.get(2),
        role: row.get(3),
    }
}

/// `GET /v1/orgs/{org}/members`.
#[utoipa::path(
    operation_id = "members_list",
    tag = "members",
    get,
    path = "/v1/orgs/{org}/members",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<MemberView>), crate::openapi::Refusals),
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
    let rows = db
        .query(
            "SELECT u.id, u.email, u.name, m.role::text FROM org_members m
               JOIN users u ON u.id = m.user_id
              WHERE m.org_id = $1 AND ($2::uuid IS NULL OR u.id > $2) ORDER BY u.id LIMIT $3",
            &[&org, &after, &(limit + 1)],
        )
        .await?;
    let items = rows.iter().map(view).collect();
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
    responses((status = 204, description = "Removed"), crate::openapi::Refusals),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, user)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ManageOrgMembers)?;
    let tx = db.transaction().await?;
    let role: String = tx
        .query_opt(
            "SELECT role::text FROM org_members WHERE org_id = $1 AND user_id = $2 FOR UPDATE",
            &[&org, &user],
        )
        .await?
        .ok_or(ApiError::NotFound("member"))?
        .get(0);
    if role == "owner" && m.org_role != OrgRole::Owner {
        return Err(ApiError::Forbidden("only an owner removes an owner".into()));
    }
    tx.execute(
        "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2",
        &[&org, &user],
    )
    .await?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "member.remove",
            object_type: "org_member",
            object_id: user.to_string(),
            before: Some(serde_json::json!({"user_id": user, "role": role})),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/orgs/{org}/projects/{project}/members`.
#[utoipa::path(
    operation_id = "members_list_project",
    tag = "members",
    get,
    path = "/v1/orgs/{org}/projects/{project}/members",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id"), PageQuery),
    responses((status = 200, body = Page<MemberView>), crate::openapi::Refusals),
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
    if db
        .query_opt(
            "SELECT 1 FROM projects WHERE org_id = $1 AND id = $2",
            &[&org, &project],
        )
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("project"));
    }
    let rows = db
        .query(
            "SELECT u.id, u.email, u.name, pm.role::text FROM project_members pm
               JOIN users u ON u.id = pm.user_id
              WHERE pm.org_id = $1 AND pm.project_id = $2 AND ($3::uuid IS NULL OR u.id > $3)
              ORDER BY u.id LIMIT $4",
            &[&org, &project, &after, &(limit + 1)],
        )
        .await?;
    let items = rows.iter().map(view).collect();
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
    responses((status = 200, body = MemberView), crate::openapi::Refusals),
)]
pub async fn set_project(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project, user)): Ids<(Uuid, Uuid, Uuid)>,
    JsonBody(body): JsonBody<ProjectRoleChange>,
) -> Result<Json<MemberView>, ApiError> {
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ManageProjectMembers(project))?;
    let tx = db.transaction().await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM projects WHERE org_id = $1 AND id = $2",
            &[&org, &project],
        )
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound("project"));
    }
    // Locked, so the member cannot leave the org before the insert.
    let in_org = tx
        .query_opt(
            "SELECT 1 FROM org_members WHERE org_id = $1 AND user_id = $2 FOR KEY SHARE",
            &[&org, &user],
        )
        .await?;
    if in_org.is_none() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "user",
            format!("{user} is not a member of this organization"),
        )]));
    }
    let before = current_project_role(&tx, (org, project, user)).await?;
    if body.role == ProjectRole::Owner || before == Some(ProjectRole::Owner) {
        may_touch_owner(&m, project)?;
    }
    tx.execute(
        "INSERT INTO project_members (org_id, project_id, user_id, role)
         VALUES ($1, $2, $3, $4::text::floopy_project_role)
         ON CONFLICT (org_id, project_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        &[&org, &project, &user, &body.role.as_str()],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT u.id, u.email, u.name, pm.role::text FROM project_members pm
               JOIN users u ON u.id = pm.user_id
              WHERE pm.org_id = $1 AND pm.project_id = $2 AND pm.user_id = $3",
            &[&org, &project, &user],
        )
        .await?;
    let member = view(&row);
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "project_member.set",
            object_type: "project_member",
            object_id: format!("{project}/{user}"),
            before: before.map(|role| serde_json::json!({"user_id": user, "role": role})),
            after: audit::snapshot(&member),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(member))
}

/// `DELETE /v1/orgs/{org}/projects/{project}/members/{user}`.
#[utoipa::path(
    operation_id = "members_remove_project",
    tag = "members",
    delete,
    path = "/v1/orgs/{org}/projects/{project}/members/{user}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id"), ("user" = Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "Removed"), crate::openapi::Refusals),
)]
pub async fn remove_project(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project, user)): Ids<(Uuid, Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ManageProjectMembers(project))?;
    let tx = db.transaction().await?;
    let Some(before) = current_project_role(&tx, (org, project, user)).await? else {
        return Err(ApiError::NotFound("member"));
    };
    if before == ProjectRole::Owner {
        may_touch_owner(&m, project)?;
    }
    tx.execute(
        "DELETE FROM project_members WHERE org_id = $1 AND project_id = $2 AND user_id = $3",
        &[&org, &project, &user],
    )
    .await?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "project_member.remove",
            object_type: "project_member",
            object_id: format!("{project}/{user}"),
            before: Some(serde_json::json!({"user_id": user, "role": before})),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
