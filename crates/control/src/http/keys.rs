//! API keys: create (the secret returned once; only its SHA-256 and a short
//! prefix are stored), list and read (never the secret), rename, revoke,
//! and restore a key a budget revoked once that budget no longer holds it.
//! Org owners and admins manage every key; project owners and admins the
//! keys locked to their project. A key created or revoked here reaches
//! every gateway through the database's change notification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_control_db::tables::keys::{self as table, KeyRow, NewKey as KeyFields};
use floopy_control_db::tables::{budgets, projects};
use floopy_control_db::Actor;
use floopy_model::generate_key;
use floopy_model::validate::{check_length, NAME_CHARS};
use floopy_model::Environment;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, FieldError};
use crate::roles::{authorize, project_role, Action, Membership};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    #[schema(value_type = Option<crate::http::schema::EnvironmentName>)]
    pub environment: Option<Environment>,
    /// Every request of the key goes to this project.
    pub project_id: Option<Uuid>,
    /// The project of requests that name none.
    pub default_project_id: Option<Uuid>,
    /// The key's first characters, to recognise it; never the secret.
    pub prefix: Option<String>,
    pub revoked: bool,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// The budget whose breach revoked the key (restored through
    /// `POST .../budgets/{budget}/restore`, or through the key's own
    /// `restore` once the budget no longer holds it revoked).
    pub revoked_by_budget: Option<Uuid>,
    /// Revoked by a budget that no longer holds it revoked (raised above
    /// its spend, a new period, or deleted): `POST .../keys/{key}/restore`
    /// gives it back. A key revoked by a person is never restorable.
    pub restorable: bool,
}

impl From<KeyRow> for KeyView {
    fn from(k: KeyRow) -> KeyView {
        KeyView {
            id: k.id,
            org_id: k.org_id,
            name: k.name,
            environment: k.environment,
            project_id: k.project_id,
            default_project_id: k.default_project_id,
            prefix: k.prefix,
            revoked: k.revoked,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            revoked_by_budget: k.revoked_by_budget,
            restorable: k.restorable,
        }
    }
}

/// A key the caller may see: 404 for one they may not (its project is not
/// theirs) and one that is not the org's.
fn visible(m: &Membership, key: Option<KeyRow>) -> Result<KeyRow, ApiError> {
    match key {
        Some(key) if authorize(m, Action::ReadKeys(key.project_id)).is_ok() => Ok(key),
        _ => Err(ApiError::NotFound("key")),
    }
}

/// `GET /v1/orgs/{org}/keys`: the keys the caller may see (org owners and
/// admins: all; others: those locked to their projects).
#[utoipa::path(
    operation_id = "keys_list",
    tag = "keys",
    get,
    path = "/v1/orgs/{org}/keys",
    params(("org" = Uuid, Path, description = "The organization's id"), PageQuery),
    responses((status = 200, body = Page<KeyView>), crate::http::schema::Refusals),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<KeyView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    let mine: Vec<Uuid> = m.projects.keys().copied().collect();
    let keys = table::list(&db, org, after, limit + 1, m.org_role.runs_the_org(), &mine).await?;
    let items = keys.into_iter().map(KeyView::from).collect();
    Ok(Json(Page::new(items, limit, |k| k.id)))
}

/// `GET /v1/orgs/{org}/keys/{key}`.
#[utoipa::path(
    operation_id = "keys_read",
    tag = "keys",
    get,
    path = "/v1/orgs/{org}/keys/{key}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("key" = Uuid, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), crate::http::schema::Refusals),
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, key)): Ids<(Uuid, Uuid)>,
) -> Result<Json<KeyView>, ApiError> {
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    let key = table::read(&db, org, key).await?;
    Ok(Json(visible(&m, key)?.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[schema(value_type = Option<crate::http::schema::EnvironmentName>)]
    pub environment: Option<Environment>,
    pub project_id: Option<Uuid>,
    pub default_project_id: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    /// The key itself: shown this once, never again.
    pub key: String,
}

/// `POST /v1/orgs/{org}/keys`.
#[utoipa::path(
    operation_id = "keys_create",
    tag = "keys",
    post,
    path = "/v1/orgs/{org}/keys",
    params(("org" = Uuid, Path, description = "The organization's id")),
    request_body = NewKey,
    responses((status = 201, body = CreatedKey), crate::http::schema::Refusals),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    authorize(&m, Action::ManageKeys(body.project_id))?;
    let mut errors = Vec::new();
    if let Err(message) = check_length(&body.name, NAME_CHARS) {
        errors.push(FieldError::new("name", message));
    }
    // Both projects must be active projects of this org the caller sees.
    for (param, project) in [
        ("project_id", body.project_id),
        ("default_project_id", body.default_project_id),
    ] {
        let Some(project) = project else { continue };
        let active = projects::read(tx.client(), org, project)
            .await?
            .is_some_and(|p| !p.archived);
        if !active || project_role(&m, project).is_none() {
            errors.push(FieldError::new(
                param,
                format!("{project} is not an active project of this organization"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let secret = generate_key().map_err(ApiError::internal)?;
    let fields = KeyFields {
        name: &body.name,
        environment: body.environment,
        project_id: body.project_id,
        default_project_id: body.default_project_id,
        secret: &secret,
    };
    let actor = Actor::person(org, caller.user_id);
    let key = table::insert(&tx, actor, org, Uuid::now_v7(), &fields).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            view: key.into(),
            key: secret,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRename {
    pub name: String,
}

/// A key the caller manages, locked on `tx` (the membership that
/// authorizes the change read on it too), and who changes it.
async fn managed_key(
    tx: &tokio_postgres::Transaction<'_>,
    caller: &Caller,
    (org, key): (Uuid, Uuid),
) -> Result<(Actor, KeyRow), ApiError> {
    let m = membership(tx.client(), caller, org).await?;
    let before = visible(&m, table::lock(tx, org, key).await?)?;
    authorize(&m, Action::ManageKeys(before.project_id))?;
    Ok((Actor::person(org, caller.user_id), before))
}

/// `PATCH /v1/orgs/{org}/keys/{key}`: renames it.
#[utoipa::path(
    operation_id = "keys_rename",
    tag = "keys",
    patch,
    path = "/v1/orgs/{org}/keys/{key}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("key" = Uuid, Path, description = "The key's id")),
    request_body = KeyRename,
    responses((status = 200, body = KeyView), crate::http::schema::Refusals),
)]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Ids(ids): Ids<(Uuid, Uuid)>,
    JsonBody(body): JsonBody<KeyRename>,
) -> Result<Json<KeyView>, ApiError> {
    if let Err(message) = check_length(&body.name, NAME_CHARS) {
        return Err(ApiError::Validation(vec![FieldError::new("name", message)]));
    }
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, before) = managed_key(&tx, &caller, ids).await?;
    let after = table::rename(&tx, actor, &before, &body.name).await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

/// `POST /v1/orgs/{org}/keys/{key}/revoke`: every gateway refuses it within
/// about a second. Final: a key a budget had revoked is no longer
/// restorable once revoked here.
#[utoipa::path(
    operation_id = "keys_revoke",
    tag = "keys",
    post,
    path = "/v1/orgs/{org}/keys/{key}/revoke",
    params(("org" = Uuid, Path, description = "The organization's id"), ("key" = Uuid, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), crate::http::schema::Refusals),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Ids(ids): Ids<(Uuid, Uuid)>,
) -> Result<Json<KeyView>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, before) = managed_key(&tx, &caller, ids).await?;
    let after = table::revoke(&tx, actor, &before).await?;
    tx.commit().await?;
    Ok(Json(after.into()))
}

/// `POST /v1/orgs/{org}/keys/{key}/restore`: gives back a key a budget
/// revoked, once that budget no longer holds it revoked (its period's spend
/// is below its amount again, or it was deleted); 409 `budget_exceeded`
/// while it does, 409 `key_revoked_by_a_person` for a key revoked through
/// `revoke` (that is final). Restoring an active key changes nothing. The
/// budget may breach, and revoke, again in the same period.
#[utoipa::path(
    operation_id = "keys_restore",
    tag = "keys",
    post,
    path = "/v1/orgs/{org}/keys/{key}/restore",
    params(("org" = Uuid, Path, description = "The organization's id"), ("key" = Uuid, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), crate::http::schema::Refusals),
)]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Ids(ids): Ids<(Uuid, Uuid)>,
) -> Result<Json<KeyView>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let (actor, before) = managed_key(&tx, &caller, ids).await?;
    if !before.revoked {
        return Ok(Json(before.into()));
    }
    if !before.revoked_by_a_budget {
        return Err(ApiError::Conflict {
            code: "key_revoked_by_a_person",
            message: "this key was revoked through the API or the dashboard, which is final: create a new key".into(),
        });
    }
    if !before.restorable {
        return Err(ApiError::Conflict {
            code: "budget_exceeded",
            message: format!(
                "budget {} still holds this key revoked: raise the budget above this period's spend, wait for the next period, or delete the budget",
                before.revoked_by_budget.map(|b| b.to_string()).unwrap_or_default()
            ),
        });
    }
    let after = table::restore(&tx, actor, &before).await?;
    if let Some(budget) = before.revoked_by_budget {
        budgets::rearm(&tx, budget).await?;
    }
    tx.commit().await?;
    Ok(Json(after.into()))
}
