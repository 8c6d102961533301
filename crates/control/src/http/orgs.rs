//! Organizations: the caller's list, one org, renaming and the plan
//! (owners), and its audit log. Its members are `members`'.

use axum::extract::State;
use axum::Json;
use floopy_control_db::tables::audit as audit_log;
use floopy_control_db::tables::orgs::{self as table, OrgRow};
use floopy_control_db::Actor;
use floopy_model::validate::{check_length, NAME_CHARS};
use floopy_model::Plan;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, Action, OrgRole};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrgView {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = crate::http::schema::PlanName)]
    pub plan: Plan,
    /// Most projects the plan allows, Default included; absent: unlimited.
    pub max_projects: Option<usize>,
    /// The caller's role.
    pub role: OrgRole,
    pub created_at: String,
}

fn org_view((org, role): (OrgRow, String)) -> Result<OrgView, ApiError> {
    Ok(OrgView {
        id: org.id,
        name: org.name,
        plan: org.plan,
        max_projects: org.plan.max_projects(),
        role: OrgRole::parse(&role).ok_or_else(|| ApiError::internal(format!("role {role}")))?,
        created_at: org.created_at,
    })
}

/// `GET /v1/orgs`: the organizations the caller belongs to.
#[utoipa::path(
    operation_id = "orgs_list",
    tag = "orgs",
    get,
    path = "/v1/orgs",
    params(PageQuery),
    responses((status = 200, body = Page<OrgView>), crate::http::schema::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<OrgView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let rows = table::list_for(&db, caller.user_id, after, limit + 1).await?;
    let items = rows.into_iter().map(org_view).collect::<Result<_, _>>()?;
    Ok(Json(Page::new(items, limit, |o| o.id)))
}

async fn read_org(
    db: &tokio_postgres::Client,
    caller: &Caller,
    org: Uuid,
) -> Result<OrgView, ApiError> {
    let org = table::read_for(db, org, caller.user_id)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    org_view(org)
}

/// `GET /v1/orgs/{org}`.
#[utoipa::path(
    operation_id = "orgs_read",
    tag = "orgs",
    get,
    path = "/v1/orgs/{org}",
    params(("org" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = OrgView), crate::http::schema::Refusals),
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
) -> Result<Json<OrgView>, ApiError> {
    let db = state.db().await?;
    read_org(&db, &caller, org).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgUpdate {
    pub name: Option<String>,
    #[schema(value_type = Option<crate::http::schema::PlanName>)]
    pub plan: Option<Plan>,
}

/// `PATCH /v1/orgs/{org}`: rename or change the plan (owners). A plan whose
/// quota is below the projects the org has is refused.
#[utoipa::path(
    operation_id = "orgs_update",
    tag = "orgs",
    patch,
    path = "/v1/orgs/{org}",
    params(("org" = Uuid, Path, description = "The organization's id")),
    request_body = OrgUpdate,
    responses((status = 200, body = OrgView), crate::http::schema::Refusals),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<OrgUpdate>,
) -> Result<Json<OrgView>, ApiError> {
    if let Some(Err(message)) = body.name.as_deref().map(|n| check_length(n, NAME_CHARS)) {
        return Err(ApiError::Validation(vec![FieldError::new("name", message)]));
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::UpdateOrg)?;
    let (before, projects) = table::lock(&tx, org)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    if let Some(max) = body.plan.and_then(Plan::max_projects) {
        if projects > max as i64 {
            return Err(ApiError::Validation(vec![FieldError::new(
                "plan",
                format!("allows {max} projects and the organization has {projects}"),
            )]));
        }
    }
    let actor = Actor::person(org, caller.user_id);
    let after = table::update(&tx, actor, &before, body.name.as_deref(), body.plan).await?;
    tx.commit().await?;
    org_view((after, m.org_role.as_str().to_string())).map(Json)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    pub at: String,
}

/// `GET /v1/orgs/{org}/audit`: the org's changes, newest first (owners and
/// admins).
#[utoipa::path(
    operation_id = "orgs_audit",
    tag = "orgs",
    get,
    path = "/v1/orgs/{org}/audit",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<AuditView>), crate::http::schema::Refusals),
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<AuditView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ReadAudit)?;
    // Newest first: the cursor is the last (smallest) id of the previous page.
    let before = after.unwrap_or(Uuid::max());
    let rows = audit_log::list(&db, org, before, limit + 1).await?;
    let items = rows
        .into_iter()
        .map(|e| AuditView {
            id: e.id,
            actor_id: e.actor_id,
            action: e.action,
            object_type: e.object_type,
            object_id: e.object_id,
            before: e.before,
            after: e.after,
            at: e.at,
        })
        .collect();
    Ok(Json(Page::new(items, limit, |e| e.id)))
}
