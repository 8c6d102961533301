//! Projects: list (a member sees only theirs), create within the plan's
//! quota (the database's trigger counts under a lock on the org, so
//! concurrent creates never pass it), read, update, archive, unarchive,
//! delete (revoking the keys locked to it and clearing it as a default:
//! the schema does both). The Default project is neither deleted nor
//! archived.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_model::validate::{
    check_length, is_valid_color, is_valid_slug, slug_error, DESCRIPTION_CHARS, ICON_CHARS,
    PROJECT_NAME_CHARS,
};
use floopy_model::{Plan, DEFAULT_PROJECT_ID};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::app::AppState;
use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::rfc3339;
use crate::roles::{authorize, project_role, Action, OrgRole, ProjectRole};

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

const COLUMNS: &str = concat!(
    "id, org_id, name, slug, description, color, icon, archived, ",
    rfc3339!("created_at")
);

fn view(row: &tokio_postgres::Row) -> ProjectView {
    let id: Uuid = row.get(0);
    ProjectView {
        id,
        org_id: row.get(1),
        name: row.get(2),
        slug: row.get(3),
        description: row.get(4),
        color: row.get(5),
        icon: row.get(6),
        archived: row.get(7),
        is_default: id == DEFAULT_PROJECT_ID,
        created_at: row.get(8),
        role: None,
    }
}

async fn read_project(
    db: &tokio_postgres::Client,
    org: Uuid,
    project: Uuid,
) -> Result<ProjectView, ApiError> {
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM projects WHERE org_id = $1 AND id = $2"),
        &[&org, &project],
    )
    .await?
    .map(|row| view(&row))
    .ok_or(ApiError::NotFound("project"))
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
    responses((status = 200, body = Page<ProjectView>), crate::openapi::Refusals),
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
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS} FROM projects p
                  WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2)
                    AND ($4 OR EXISTS (SELECT 1 FROM project_members pm
                                        WHERE pm.org_id = p.org_id AND pm.project_id = p.id
                                          AND pm.user_id = $5))
                  ORDER BY id LIMIT $3"
            ),
            &[&org, &after, &(limit + 1), &all, &caller.user_id],
        )
        .await?;
    let items = rows
        .iter()
        .map(|row| {
            let v = view(row);
            ProjectView {
                role: project_role(&m, v.id),
                ..v
            }
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
    responses((status = 201, body = ProjectView), crate::openapi::Refusals),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<ProjectFields>,
) -> Result<(StatusCode, Json<ProjectView>), ApiError> {
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::CreateProject)?;
    body.check(true)?;
    let id = Uuid::now_v7();
    let tx = db.transaction().await?;
    let created = tx
        .execute(
            "INSERT INTO projects (org_id, id, name, slug, description, color, icon)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &org,
                &id,
                &body.name,
                &body.slug,
                &body.description,
                &body.color,
                &body.icon,
            ],
        )
        .await;
    if let Err(e) = created {
        if e.as_db_error().and_then(|d| d.constraint()) == Some("projects_plan_quota") {
            // The trigger's refusal: say which plan and what it allows.
            drop(tx);
            let plan: String = db
                .query_one(
                    "SELECT plan::text FROM organizations WHERE id = $1",
                    &[&org],
                )
                .await?
                .get(0);
            let plan = Plan::parse(&plan).ok_or_else(|| ApiError::internal(plan))?;
            return Err(ApiError::QuotaExceeded {
                plan,
                limit: plan.max_projects().unwrap_or(usize::MAX),
            });
        }
        return Err(e.into());
    }
    if m.org_role == OrgRole::Manager {
        tx.execute(
            "INSERT INTO project_members (org_id, project_id, user_id, role) VALUES ($1, $2, $3, 'owner')",
            &[&org, &id, &caller.user_id],
        )
        .await?;
    }
    let project = read_project(tx.client(), org, id).await?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "project.create",
            object_type: "project",
            object_id: id.to_string(),
            before: None,
            after: audit::snapshot(&project),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(project)))
}

/// `GET /v1/orgs/{org}/projects/{project}`.
#[utoipa::path(
    operation_id = "projects_read",
    tag = "projects",
    get,
    path = "/v1/orgs/{org}/projects/{project}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id")),
    responses((status = 200, body = ProjectView), crate::openapi::Refusals),
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project)): Ids<(Uuid, Uuid)>,
) -> Result<Json<ProjectView>, ApiError> {
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ReadProject(project))?;
    let v = read_project(&db, org, project).await?;
    Ok(Json(ProjectView {
        role: project_role(&m, project),
        ..v
    }))
}

/// Applies `change` to a project the caller may `action`, in one
/// transaction with its audit entry.
async fn change(
    state: &AppState,
    caller: &Caller,
    (org, project): (Uuid, Uuid),
    action: Action,
    audit_action: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<ProjectView>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), caller, org).await?;
    authorize(&m, action)?;
    // Locked, so `before` is what this change replaces.
    tx.query_opt(
        "SELECT 1 FROM projects WHERE org_id = $1 AND id = $2 FOR UPDATE",
        &[&org, &project],
    )
    .await?;
    let before = read_project(tx.client(), org, project).await?;
    tx.execute(sql, params).await?;
    let after = match read_project(tx.client(), org, project).await {
        Ok(after) => Some(after),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: audit_action,
            object_type: "project",
            object_id: project.to_string(),
            before: audit::snapshot(&before),
            after: after.as_ref().and_then(audit::snapshot),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
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
    responses((status = 200, body = ProjectView), crate::openapi::Refusals),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project)): Ids<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<ProjectFields>,
) -> Result<Json<ProjectView>, ApiError> {
    body.check(false)?;
    let after = change(
        &state,
        &caller,
        (org, project),
        Action::UpdateProject(project),
        "project.update",
        "UPDATE projects SET name = coalesce($3, name), slug = coalesce($4, slug),
                description = coalesce($5, description), color = coalesce($6, color),
                icon = coalesce($7, icon)
          WHERE org_id = $1 AND id = $2",
        &[
            &org,
            &project,
            &body.name,
            &body.slug,
            &body.description,
            &body.color,
            &body.icon,
        ],
    )
    .await?;
    after.map(Json).ok_or(ApiError::NotFound("project"))
}

async fn set_archived(
    state: AppState,
    caller: Caller,
    ids: (Uuid, Uuid),
    archived: bool,
) -> Result<Json<ProjectView>, ApiError> {
    let action = if archived {
        "project.archive"
    } else {
        "project.unarchive"
    };
    let after = change(
        &state,
        &caller,
        ids,
        Action::UpdateProject(ids.1),
        action,
        "UPDATE projects SET archived = $3 WHERE org_id = $1 AND id = $2",
        &[&ids.0, &ids.1, &archived],
    )
    .await?;
    after.map(Json).ok_or(ApiError::NotFound("project"))
}

/// `POST /v1/orgs/{org}/projects/{project}/archive`.
#[utoipa::path(
    operation_id = "projects_archive",
    tag = "projects",
    post,
    path = "/v1/orgs/{org}/projects/{project}/archive",
    params(("org" = Uuid, Path, description = "The organization's id"), ("project" = Uuid, Path, description = "The project's id")),
    responses((status = 200, body = ProjectView), crate::openapi::Refusals),
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
    responses((status = 200, body = ProjectView), crate::openapi::Refusals),
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
    responses((status = 204, description = "Deleted; its locked keys revoked"), crate::openapi::Refusals),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, project)): Ids<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    change(
        &state,
        &caller,
        (org, project),
        Action::DeleteProject(project),
        "project.delete",
        "DELETE FROM projects WHERE org_id = $1 AND id = $2",
        &[&org, &project],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
