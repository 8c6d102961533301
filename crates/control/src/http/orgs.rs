//! Organizations: the caller's list, one org, renaming and the plan (owners),
//! its members and their roles, and its audit log.

use axum::extract::State;
use axum::Json;
use floopy_model::validate::{check_length, NAME_CHARS};
use floopy_model::Plan;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::app::AppState;
use crate::audit;
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::rfc3339;
use crate::roles::{authorize, Action, OrgRole};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrgView {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = crate::openapi::PlanName)]
    pub plan: Plan,
    /// Most projects the plan allows, Default included; absent: unlimited.
    pub max_projects: Option<usize>,
    /// The caller's role.
    pub role: OrgRole,
    pub created_at: String,
}

const ORG_COLUMNS: &str = concat!(
    "o.id, o.name, o.plan::text, m.role::text, ",
    rfc3339!("o.created_at")
);

fn org_view(row: &tokio_postgres::Row) -> Result<OrgView, ApiError> {
    let plan: String = row.get(2);
    let role: String = row.get(3);
    let plan = Plan::parse(&plan).ok_or_else(|| ApiError::internal(format!("plan {plan}")))?;
    Ok(OrgView {
        id: row.get(0),
        name: row.get(1),
        plan,
        max_projects: plan.max_projects(),
        role: OrgRole::parse(&role).ok_or_else(|| ApiError::internal(format!("role {role}")))?,
        created_at: row.get(4),
    })
}

/// `GET /v1/orgs`: the organizations the caller belongs to.
#[utoipa::path(
    operation_id = "orgs_list",
    tag = "orgs",
    get,
    path = "/v1/orgs",
    params(PageQuery),
    responses((status = 200, body = Page<OrgView>), crate::openapi::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<OrgView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let rows = db
        .query(
            &format!(
                "SELECT {ORG_COLUMNS} FROM organizations o
                   JOIN org_members m ON m.org_id = o.id AND m.user_id = $1
                  WHERE ($2::uuid IS NULL OR o.id > $2) ORDER BY o.id LIMIT $3"
            ),
            &[&caller.user_id, &after, &(limit + 1)],
        )
        .await?;
    let items = rows.iter().map(org_view).collect::<Result<_, _>>()?;
    Ok(Json(Page::new(items, limit, |o| o.id)))
}

async fn read_org(
    db: &tokio_postgres::Client,
    caller: &Caller,
    org: Uuid,
) -> Result<OrgView, ApiError> {
    let row = db
        .query_opt(
            &format!(
                "SELECT {ORG_COLUMNS} FROM organizations o
                   JOIN org_members m ON m.org_id = o.id AND m.user_id = $2 WHERE o.id = $1"
            ),
            &[&org, &caller.user_id],
        )
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    org_view(&row)
}

/// `GET /v1/orgs/{org}`.
#[utoipa::path(
    operation_id = "orgs_read",
    tag = "orgs",
    get,
    path = "/v1/orgs/{org}",
    params(("org" = Uuid, Path, description = "The organization's id")),
    responses((status = 200, body = OrgView), crate::openapi::Refusals),
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
    #[schema(value_type = Option<crate::openapi::PlanName>)]
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
    responses((status = 200, body = OrgView), crate::openapi::Refusals),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<OrgUpdate>,
) -> Result<Json<OrgView>, ApiError> {
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::UpdateOrg)?;
    if let Some(Err(message)) = body.name.as_deref().map(|n| check_length(n, NAME_CHARS)) {
        return Err(ApiError::Validation(vec![FieldError::new("name", message)]));
    }
    let tx = db.transaction().await?;
    // The org row is locked first, as project creation does: a plan change
    // and a create cannot pass each other's check.
    let projects: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM projects WHERE org_id = $1)
               FROM organizations WHERE id = $1 FOR UPDATE",
            &[&org],
        )
        .await?
        .get(0);
    let before = read_org(tx.client(), &caller, org).await?;
    if let Some(max) = body.plan.and_then(Plan::max_projects) {
        if projects > max as i64 {
            return Err(ApiError::Validation(vec![FieldError::new(
                "plan",
                format!("allows {max} projects and the organization has {projects}"),
            )]));
        }
    }
    tx.execute(
        "UPDATE organizations SET name = coalesce($2, name),
                plan = coalesce($3::text::floopy_plan, plan) WHERE id = $1",
        &[&org, &body.name, &body.plan.map(Plan::as_str)],
    )
    .await?;
    let after = read_org(tx.client(), &caller, org).await?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "org.update",
            object_type: "organization",
            object_id: org.to_string(),
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
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
    responses((status = 200, description = "The member's new role", body = Object), crate::openapi::Refusals),
)]
pub async fn set_member_role(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, user)): Ids<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<RoleChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    authorize(&m, Action::ManageOrgMembers)?;
    let tx = db.transaction().await?;
    let current: String = tx
        .query_opt(
            "SELECT role::text FROM org_members WHERE org_id = $1 AND user_id = $2 FOR UPDATE",
            &[&org, &user],
        )
        .await?
        .ok_or(ApiError::NotFound("member"))?
        .get(0);
    let touches_owner = current == "owner" || body.role == OrgRole::Owner;
    if touches_owner && m.org_role != OrgRole::Owner {
        return Err(ApiError::Forbidden(
            "only an owner makes or unmakes an owner".into(),
        ));
    }
    tx.execute(
        "UPDATE org_members SET role = $3::text::floopy_org_role WHERE org_id = $1 AND user_id = $2",
        &[&org, &user, &body.role.as_str()],
    )
    .await?;
    let after = serde_json::json!({"user_id": user, "role": body.role});
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "member.role",
            object_type: "org_member",
            object_id: user.to_string(),
            before: Some(serde_json::json!({"user_id": user, "role": current})),
            after: Some(after.clone()),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
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
    responses((status = 200, body = Page<AuditView>), crate::openapi::Refusals),
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
    let rows = db
        .query(
            concat!(
                "SELECT id, actor_id, action, object_type, object_id, before::text, after::text, ",
                rfc3339!("at"),
                " FROM audit_log WHERE org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            ),
            &[&org, &before, &(limit + 1)],
        )
        .await?;
    let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    let items = rows
        .iter()
        .map(|row| AuditView {
            id: row.get(0),
            actor_id: row.get(1),
            action: row.get(2),
            object_type: row.get(3),
            object_id: row.get(4),
            before: parse(row.get(5)),
            after: parse(row.get(6)),
            at: row.get(7),
        })
        .collect();
    Ok(Json(Page::new(items, limit, |e| e.id)))
}
