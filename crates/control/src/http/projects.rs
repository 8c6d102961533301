//! Projects: list (a member sees only theirs), create within the plan's
//! quota (the database's trigger counts under a lock on the org, so
//! concurrent creates never pass it), read, update, archive, unarchive,
//! delete (revoking the keys locked to it and clearing it as a default:
//! the schema does both). The Default project is neither deleted nor
//! archived.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_control_db::tables::projects::{self as table, ProjectRow};
use floopy_control_db::tables::{members, orgs};
use floopy_control_db::Actor;
use floopy_model::validate::{
    check_length, is_valid_color, is_valid_slug, slug_error, DESCRIPTION_CHARS, ICON_CHARS,
    PROJECT_NAME_CHARS,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, project_role, Action, OrgRole, ProjectRole};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub color: Option<String>,
    pub icon: Option<String>,
    pub archived: bool,
    /// The Default project (the zero UUID): requests without attribution.
    pub is_default: bool,
    pub created_at: String,
    /// In a list or a read: the caller's role on the project (org owners
    /// and admins are admins of every project, or its owner if listed so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<ProjectRole>,
}

impl ProjectView {
    fn new(p: ProjectRow, role: Option<ProjectRole>) -> ProjectView {
        ProjectView {
            id: p.id,
            org_id: p.org_id,
            name: p.name,
            slug: p.slug,
            description: p.description,
            color: p.color,
            icon: p.icon,
            archived: p.archived,
            is_default: p.is_default,
            created_at: p.created_at,
            role,
        }
    }
}

/// The fields of a new or changed project, each checked with the data
/// model's rules; every invalid field is reported.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectFields {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub color: Option<String>,
    pub icon: Option<String>,
}

impl ProjectFields {
    fn fields(&self) -> table::ProjectFields<'_> {
        table::ProjectFields {
            name: self.name.as_deref(),
            slug: self.slug.as_deref(),
            description: self.description.as_deref(),
            color: self.color.as_deref(),
            icon: self.icon.as_deref(),
        }
    }

    fn check(&self, creating: bool) -> Result<(), ApiError> {
        let mut errors = Vec::new();
        let mut length = |param: &str, value: &Option<String>, bounds| {
            if let Some(Err(message)) = value.as_deref().map(|v| check_length(v, bounds)) {
                errors.push(FieldError::new(param, message));
            }
        };
        length("name", &self.name, PROJECT_NAME_CHARS);
        length("description", &self.description, DESCRIPTION_CHARS);
        length("icon", &self.icon, ICON_CHARS);
        if let Some(slug) = self.slug.as_deref().filter(|s| !is_valid_slug(s)) {
            errors.push(FieldError::new("slug", slug_error(slug)));
        }
        if let Some(color) = self.color.as_deref().filter(|c| !is_valid_color(c)) {
            errors.push(FieldError::new(
                "color",
                format!("{color:?} is not #rrggbb"),
            ));
        }
        if creating {
            for (param, value) in [("name", &self.name), ("slug", &self.slug)] {
                if value.is_none() {
                    errors.push(FieldError::new(param, "is required"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// `GET /v1/orgs/{org}/projects`: the projects the caller may see.
#[utoipa::path(
    operation_id = "projects_list",
    tag = "projects",
    get,
    path = "/v1/orgs/{org}/projects",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<ProjectView>), crate::http::schema::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<ProjectView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    let all = m.org_role.runs_the_org();
    let rows = table::list(&db, org, after, limit + 1, all, caller.user_id).await?;
    let items = rows
        .into_iter()
        .map(|p| {
            let role = project_role(&m, p.id);
            ProjectView::new(p, role)
        })
        .collect();
    Ok(Json(Page::new(items, limit, |p| p.id)))
}

/// `POST /v1/orgs/{org}/projects` (owners, admins, managers): a manager
/// becomes the new project's owner.
#[utoipa::path(
    operation_id = "projects_create",
    tag = "projects",
    post,
    path = "/v1/orgs/{org}/projects",
    params(("org" = Uuid, Path, description = "The organization's id")),
    request_body = ProjectFields,
    responses((status = 201, body = ProjectView), crate::http::schema::Refusals),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<ProjectFields>,
) -> Result<(StatusCode, Json<ProjectView>), ApiError> {
    body.check(true)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::CreateProject)?;
    let actor = Actor::person(org, caller.user_id);
    let created = table::insert(&tx, actor, org, Uuid::now_v7(), &body.fields()).await;
    let project = match created {
        Ok(project) => project,
        Err(e) if e.constraint() == Some("projects_plan_quota") => {
            // The trigger's refusal: say which plan and what it allows.
            drop(tx);
            let plan = orgs::plan(&db, org)
                .await?
                .ok_or(ApiError::NotFound("organization"))?;
            return Err(ApiError::QuotaExceeded {
                plan,
                limit: plan.max_projects().unwrap_or(usize::MAX),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if m.org_role == OrgRole::Manager {
        let member = (org, project.id, caller.user_id);
        members::set_project_role(&tx, actor, member, None, "owner").await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(ProjectView::new(project, None))))
}

/// `GET /v1/orgs/{org}/projects/{project}`.
#[utoipa::path(
    operation_id = "projects_read",
    tag = "projects",
    get,
    path = "/v1/orgs/{org}/projects/{project}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id")),
    responses((status = 200, body = ProjectView), crate::http::schema::Refusals),
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project)): Ids<(Uuid, Uuid)>,
) -> Result<Json<ProjectView>, ApiError> {
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ReadProject(project))?;
    let v = table::read(&db, org, project)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    Ok(Json(ProjectView::new(v, project_role(&m, project))))
}

/// The project the caller may `action`, locked on `tx` (the membership
/// that authorizes it read on it too), and who changes it.
async fn changed_project(
    tx: &tokio_postgres::Transaction<'_>,
    caller: &Caller,
    (org, project): (Uuid, Uuid),
    action: Action,
) -> Result<(Actor, ProjectRow), ApiError> {
    let m = membership(tx.client(), caller, org).await?;
    authorize(&m, action)?;
    let before = table::lock(tx, org, project)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    Ok((Actor::person(org, caller.user_id), before))
}

/// `PATCH /v1/orgs/{org}/projects/{project}`: name, slug, description,
/// color, icon (project owners and admins).
#[utoipa::path(
    operation_id = "projects_update",
    tag = "projects",
    patch,
    path = "/v1/orgs/{org}/projects/{project}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id")),
    request_body = ProjectFields,
    responses((status = 200, body = ProjectView), crate::http::schema::Refusals),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project)): Ids<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<ProjectFields>,
) -> Result<Json<ProjectView>, ApiError> {
    body.check(false)?;
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let action = Action::UpdateProject(project);
    let (actor, before) = changed_project(&tx, &caller, (org, project), action).await?;
    let after = table::update(&tx, actor, &before, &body.fields()).await?;
    tx.commit().await?;
    after
        .map(|p| Json(ProjectView::new(p, None)))
        .ok_or(ApiError::NotFound("project"))
}

async fn set_archived(
    state: AppState,
    caller: Caller,
    ids: (Uuid, Uuid),
    archived: bool,
) -> Result<Json<ProjectView>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let action = Action::UpdateProject(ids.1);
    let (actor, before) = changed_project(&tx, &caller, ids, action).await?;
    let after = table::set_archived(&tx, actor, &before, archived).await?;
    tx.commit().await?;
    after
        .map(|p| Json(ProjectView::new(p, None)))
        .ok_or(ApiError::NotFound("project"))
}

/// `POST /v1/orgs/{org}/projects/{project}/archive`.
#[utoipa::path(
    operation_id = "projects_archive",
    tag = "projects",
    post,
    path = "/v1/orgs/{org}/projects/{project}/archive",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id")),
    responses((status = 200, body = ProjectView), crate::http::schema::Refusals),
)]
pub async fn archive(
    State(state): State<AppState>,
    caller: Caller,
    Ids(ids): Ids<(Uuid, Uuid)>,
) -> Result<Json<ProjectView>, ApiError> {
    set_archived(state, caller, ids, true).await
}

/// `POST /v1/orgs/{org}/projects/{project}/unarchive`.
#[utoipa::path(
    operation_id = "projects_unarchive",
    tag = "projects",
    post,
    path = "/v1/orgs/{org}/projects/{project}/unarchive",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id")),
    responses((status = 200, body = ProjectView), crate::http::schema::Refusals),
)]
pub async fn unarchive(
    State(state): State<AppState>,
    caller: Caller,
    Ids(ids): Ids<(Uuid, Uuid)>,
) -> Result<Json<ProjectView>, ApiError> {
    set_archived(state, caller, ids, false).await
}

/// `DELETE /v1/orgs/{org}/projects/{project}` (the project's owner, or an
/// org owner or admin).
#[utoipa::path(
    operation_id = "projects_delete",
    tag = "projects",
    delete,
    path = "/v1/orgs/{org}/projects/{project}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id")),
    responses((status = 204, description = "Deleted; its locked keys revoked"), crate::http::schema::Refusals),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let action = Action::DeleteProject(project);
    let (actor, before) = changed_project(&tx, &caller, (org, project), action).await?;
    table::delete(&tx, actor, &before).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
