//! API keys: create (the secret returned once; only its SHA-256 and a short
//! prefix are stored), list and read (never the secret), rename, revoke,
//! and restore a key a budget revoked once that budget no longer holds it.
//! Org owners and admins manage every key; project owners and admins the
//! keys locked to their project. A key created or revoked here reaches
//! every gateway through the database's change notification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use floopy_model::validate::{check_length, NAME_CHARS};
use floopy_model::{generate_key, hash_key, Environment};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{membership, Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::app::AppState;
use crate::audit;
use crate::auth::Caller;
use crate::budgets::{current_period_sql, now_ms};
use crate::error::{ApiError, FieldError};
use crate::rfc3339;
use crate::roles::{authorize, project_role, Action, Membership};

/// Characters of a key shown to recognise it (`fpk_` and the next eight).
const SHOWN_PREFIX: usize = 12;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    #[schema(value_type = Option<crate::openapi::EnvironmentName>)]
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

/// The columns of a `KeyView`, from `api_keys` (no alias): whether a
/// budget still holds the key revoked is its current period's spend
/// against its amount now.
fn columns() -> String {
    format!(
        concat!(
            "id, org_id, name, environment::text, project_id, default_project_id, prefix, ",
            "revoked_at IS NOT NULL AS revoked, ",
            rfc3339!("created_at"),
            " AS created_at, ",
            rfc3339!("revoked_at"),
            " AS revoked_at, revoked_by_budget, ",
            "revoked_at IS NOT NULL AND revoked_by_a_budget AND NOT EXISTS (",
            "SELECT 1 FROM budgets b LEFT JOIN budget_periods p ",
            "ON p.budget_id = b.id AND p.period = {} ",
            "WHERE b.id = api_keys.revoked_by_budget ",
            "AND coalesce(p.spent_micro_usd, 0) >= b.amount_micro_usd) AS restorable"
        ),
        current_period_sql("b", now_ms())
    )
}

fn view(row: &tokio_postgres::Row) -> Result<KeyView, ApiError> {
    let environment: Option<String> = row.try_get("environment")?;
    Ok(KeyView {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        environment: environment.as_deref().and_then(Environment::parse),
        project_id: row.try_get("project_id")?,
        default_project_id: row.try_get("default_project_id")?,
        prefix: row.try_get("prefix")?,
        revoked: row.try_get("revoked")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_by_budget: row.try_get("revoked_by_budget")?,
        restorable: row.try_get("restorable")?,
    })
}

async fn read_key(db: &tokio_postgres::Client, org: Uuid, key: Uuid) -> Result<KeyView, ApiError> {
    db.query_opt(
        &format!(
            "SELECT {} FROM api_keys WHERE org_id = $1 AND id = $2",
            columns()
        ),
        &[&org, &key],
    )
    .await?
    .map(|row| view(&row))
    .transpose()?
    .ok_or(ApiError::NotFound("key"))
}

/// A key the caller may see: 404 for one they may not (its project is not
/// theirs).
async fn visible_key(
    db: &tokio_postgres::Client,
    m: &Membership,
    org: Uuid,
    key: Uuid,
) -> Result<KeyView, ApiError> {
    let view = read_key(db, org, key).await?;
    match authorize(m, Action::ReadKeys(view.project_id)) {
        Ok(()) => Ok(view),
        Err(_) => Err(ApiError::NotFound("key")),
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
    responses((status = 200, body = Page<KeyView>), crate::openapi::Refusals),
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
    let all = m.org_role.runs_the_org();
    let mine: Vec<Uuid> = m.projects.keys().copied().collect();
    let rows = db
        .query(
            &format!(
                "SELECT {} FROM api_keys
                  WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) AND ($4 OR project_id = ANY($5))
                  ORDER BY id LIMIT $3",
                columns()
            ),
            &[&org, &after, &(limit + 1), &all, &mine],
        )
        .await?;
    let items = rows.iter().map(view).collect::<Result<_, _>>()?;
    Ok(Json(Page::new(items, limit, |k| k.id)))
}

/// `GET /v1/orgs/{org}/keys/{key}`.
#[utoipa::path(
    operation_id = "keys_read",
    tag = "keys",
    get,
    path = "/v1/orgs/{org}/keys/{key}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("key" = Uuid, Path, description = "The key's id")),
    responses((status = 200, body = KeyView), crate::openapi::Refusals),
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, key)): Ids<(Uuid, Uuid)>,
) -> Result<Json<KeyView>, ApiError> {
    let db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
    visible_key(&db, &m, org, key).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    #[schema(value_type = Option<crate::openapi::EnvironmentName>)]
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
    responses((status = 201, body = CreatedKey), crate::openapi::Refusals),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Ids(org): Ids<Uuid>,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let mut db = state.db().await?;
    let m = membership(&db, &caller, org).await?;
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
        let active: Option<bool> = db
            .query_opt(
                "SELECT NOT archived FROM projects WHERE org_id = $1 AND id = $2",
                &[&org, &project],
            )
            .await?
            .map(|row| row.get(0));
        if active != Some(true) || project_role(&m, project).is_none() {
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
    let id = Uuid::now_v7();
    let tx = db.transaction().await?;
    tx.execute(
        "INSERT INTO api_keys (id, org_id, name, key_hash, environment, project_id, default_project_id, prefix)
         VALUES ($1, $2, $3, $4, $5::text::floopy_environment, $6, $7, $8)",
        &[
            &id,
            &org,
            &body.name,
            &hash_key(secret.as_bytes()).to_vec(),
            &body.environment.map(Environment::as_str),
            &body.project_id,
            &body.default_project_id,
            &&secret[..SHOWN_PREFIX],
        ],
    )
    .await?;
    let view = read_key(tx.client(), org, id).await?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "key.create",
            object_type: "api_key",
            object_id: id.to_string(),
            before: None,
            after: audit::snapshot(&view),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { view, key: secret })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRename {
    pub name: String,
}

/// Changes a key the caller manages, with its audit entry.
async fn change_key(
    state: &AppState,
    caller: &Caller,
    (org, key): (Uuid, Uuid),
    audit_action: &str,
    sql: &str,
    extra: Option<&String>,
) -> Result<KeyView, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), caller, org).await?;
    // Locked, so `before` is what this change replaces.
    tx.query_opt(
        "SELECT 1 FROM api_keys WHERE org_id = $1 AND id = $2 FOR UPDATE",
        &[&org, &key],
    )
    .await?;
    let before = visible_key(tx.client(), &m, org, key).await?;
    authorize(&m, Action::ManageKeys(before.project_id))?;
    match extra {
        Some(value) => tx.execute(sql, &[&org, &key, value]).await?,
        None => tx.execute(sql, &[&org, &key]).await?,
    };
    let after = read_key(tx.client(), org, key).await?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: audit_action,
            object_type: "api_key",
            object_id: key.to_string(),
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// `PATCH /v1/orgs/{org}/keys/{key}`: renames it.
#[utoipa::path(
    operation_id = "keys_rename",
    tag = "keys",
    patch,
    path = "/v1/orgs/{org}/keys/{key}",
    params(("org" = Uuid, Path, description = "The organization's id"), ("key" = Uuid, Path, description = "The key's id")),
    request_body = KeyRename,
    responses((status = 200, body = KeyView), crate::openapi::Refusals),
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
    change_key(
        &state,
        &caller,
        ids,
        "key.rename",
        "UPDATE api_keys SET name = $3 WHERE org_id = $1 AND id = $2",
        Some(&body.name),
    )
    .await
    .map(Json)
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
    responses((status = 200, body = KeyView), crate::openapi::Refusals),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Ids(ids): Ids<(Uuid, Uuid)>,
) -> Result<Json<KeyView>, ApiError> {
    change_key(
        &state,
        &caller,
        ids,
        "key.revoke",
        // A person's revocation is final, even of a key a budget revoked.
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), revoked_by_budget = NULL,
                revoked_by_a_budget = false
          WHERE org_id = $1 AND id = $2",
        None,
    )
    .await
    .map(Json)
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
    responses((status = 200, body = KeyView), crate::openapi::Refusals),
)]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Ids((org, key)): Ids<(Uuid, Uuid)>,
) -> Result<Json<KeyView>, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let m = membership(tx.client(), &caller, org).await?;
    let by_a_budget: Option<bool> = tx
        .query_opt(
            "SELECT revoked_by_a_budget FROM api_keys WHERE org_id = $1 AND id = $2 FOR UPDATE",
            &[&org, &key],
        )
        .await?
        .map(|row| row.try_get("revoked_by_a_budget"))
        .transpose()?;
    let before = visible_key(tx.client(), &m, org, key).await?;
    authorize(&m, Action::ManageKeys(before.project_id))?;
    if !before.revoked {
        return Ok(Json(before));
    }
    if by_a_budget != Some(true) {
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
    tx.execute(
        "UPDATE api_keys SET revoked_at = NULL, revoked_by_budget = NULL, revoked_by_a_budget = false
          WHERE org_id = $1 AND id = $2",
        &[&org, &key],
    )
    .await?;
    if let Some(budget) = before.revoked_by_budget {
        super::budgets::rearm(&tx, budget).await?;
    }
    let after = read_key(tx.client(), org, key).await?;
    audit::record(
        &tx,
        audit::Entry {
            org_id: Some(org),
            actor_id: caller.user_id,
            action: "key.restore",
            object_type: "api_key",
            object_id: key.to_string(),
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}
