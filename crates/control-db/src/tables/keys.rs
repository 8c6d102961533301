//! `api_keys`: the org's gateway keys. Only the key string's SHA-256 and a
//! short prefix are stored; the secret is returned once, by whoever created
//! it. A key is revoked by a person (final) or by a budget (restorable once
//! the budget no longer holds it). Every gateway learns of a change through
//! the database's change notification.

use floopy_model::{hash_key, Environment};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::audit;
use super::budgets::current_period_sql;
use super::{Actor, DbError};
use crate::rfc3339;

/// Characters of a key kept to recognise it (`fpk_` and the next eight).
pub const SHOWN_PREFIX: usize = 12;

#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub environment: Option<Environment>,
    pub project_id: Option<Uuid>,
    pub default_project_id: Option<Uuid>,
    pub prefix: Option<String>,
    pub revoked: bool,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub revoked_by_budget: Option<Uuid>,
    /// Revoked by a budget that no longer holds it revoked.
    pub restorable: bool,
    /// Revoked by a budget (restorable in time), not by a person.
    #[serde(skip)]
    pub revoked_by_a_budget: bool,
}

/// The columns of a `KeyRow`, from `api_keys` (no alias): whether a budget
/// still holds the key revoked is its current period's spend against its
/// amount at `now_ms`.
fn columns(now_ms: u64) -> String {
    format!(
        concat!(
            "id, org_id, name, environment::text AS environment, project_id, default_project_id, ",
            "prefix, revoked_at IS NOT NULL AS revoked, revoked_by_a_budget, ",
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
        current_period_sql("b", now_ms)
    )
}

fn row(row: &Row) -> Result<KeyRow, DbError> {
    let environment: Option<String> = row.try_get("environment")?;
    let environment = match environment {
        None => None,
        Some(text) => Some(Environment::parse(&text).ok_or(DbError::Invalid {
            column: "environment",
            value: text,
        })?),
    };
    Ok(KeyRow {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        environment,
        project_id: row.try_get("project_id")?,
        default_project_id: row.try_get("default_project_id")?,
        prefix: row.try_get("prefix")?,
        revoked: row.try_get("revoked")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_by_budget: row.try_get("revoked_by_budget")?,
        restorable: row.try_get("restorable")?,
        revoked_by_a_budget: row.try_get("revoked_by_a_budget")?,
    })
}

/// The org's key `key`, if it is the org's.
pub async fn read(db: &Client, org: Uuid, key: Uuid) -> Result<Option<KeyRow>, DbError> {
    let sql = format!(
        "SELECT {} FROM api_keys WHERE org_id = $1 AND id = $2",
        columns(floopy_model::calendar::now_ms())
    );
    db.query_opt(&sql, &[&org, &key])
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// The org that key `key` belongs to, if it exists.
pub async fn org_of(db: &Client, key: Uuid) -> Result<Option<Uuid>, DbError> {
    db.query_opt("SELECT org_id FROM api_keys WHERE id = $1", &[&key])
        .await?
        .map(|r| r.try_get("org_id"))
        .transpose()
        .map_err(DbError::from)
}

/// `read`, the row locked until `tx` ends.
pub async fn lock(tx: &Transaction<'_>, org: Uuid, key: Uuid) -> Result<Option<KeyRow>, DbError> {
    tx.query_opt(
        "SELECT 1 FROM api_keys WHERE org_id = $1 AND id = $2 FOR UPDATE",
        &[&org, &key],
    )
    .await?;
    read(tx.client(), org, key).await
}

/// A page of the org's keys after `after`, by id: every one when `all`,
/// else those locked to one of `projects`.
pub async fn list(
    db: &Client,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
    all: bool,
    projects: &[Uuid],
) -> Result<Vec<KeyRow>, DbError> {
    let sql = format!(
        "SELECT {} FROM api_keys
          WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) AND ($4 OR project_id = ANY($5))
          ORDER BY id LIMIT $3",
        columns(floopy_model::calendar::now_ms())
    );
    db.query(&sql, &[&org, &after, &limit, &all, &projects])
        .await?
        .iter()
        .map(row)
        .collect()
}

/// A key to create.
#[derive(Debug)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub environment: Option<Environment>,
    pub project_id: Option<Uuid>,
    pub default_project_id: Option<Uuid>,
    /// The key string (from `floopy_model::generate_key`): its hash and
    /// prefix are stored, never it.
    pub secret: &'a str,
}

/// Creates key `id` (`key.create`).
pub async fn insert(
    tx: &Transaction<'_>,
    actor: Actor,
    org: Uuid,
    id: Uuid,
    key: &NewKey<'_>,
) -> Result<KeyRow, DbError> {
    tx.execute(
        "INSERT INTO api_keys (id, org_id, name, key_hash, environment, project_id, default_project_id, prefix)
         VALUES ($1, $2, $3, $4, $5::text::floopy_environment, $6, $7, $8)",
        &[
            &id,
            &org,
            &key.name,
            &hash_key(key.secret.as_bytes()).to_vec(),
            &key.environment.map(Environment::as_str),
            &key.project_id,
            &key.default_project_id,
            &key.secret.get(..SHOWN_PREFIX),
        ],
    )
    .await?;
    changed(tx, actor, "key.create", None, org, id).await
}

/// Renames it (`key.rename`).
pub async fn rename(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &KeyRow,
    name: &str,
) -> Result<KeyRow, DbError> {
    write(
        tx,
        actor,
        "key.rename",
        before,
        "UPDATE api_keys SET name = $3 WHERE org_id = $1 AND id = $2",
        &[&before.org_id, &before.id, &name],
    )
    .await
}

/// Revokes it for good (`key.revoke`): a person's revocation is final,
/// even of a key a budget revoked.
pub async fn revoke(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &KeyRow,
) -> Result<KeyRow, DbError> {
    write(
        tx,
        actor,
        "key.revoke",
        before,
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), revoked_by_budget = NULL,
                revoked_by_a_budget = false
          WHERE org_id = $1 AND id = $2",
        &[&before.org_id, &before.id],
    )
    .await
}

/// Gives back a key a budget revoked (`key.restore`).
pub async fn restore(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &KeyRow,
) -> Result<KeyRow, DbError> {
    write(
        tx,
        actor,
        "key.restore",
        before,
        "UPDATE api_keys SET revoked_at = NULL, revoked_by_budget = NULL, revoked_by_a_budget = false
          WHERE org_id = $1 AND id = $2",
        &[&before.org_id, &before.id],
    )
    .await
}

/// Revokes the active keys of the org a budget covers (its project's, or
/// every one), marked as revoked by `budget`; how many. The evaluator
/// records the budget's own audit entry.
pub async fn revoke_for_budget(
    tx: &Transaction<'_>,
    budget: Uuid,
    org: Uuid,
    project: Option<Uuid>,
) -> Result<u64, DbError> {
    Ok(tx
        .execute(
            "UPDATE api_keys SET revoked_at = now(), revoked_by_budget = $1, revoked_by_a_budget = true
              WHERE org_id = $2 AND revoked_at IS NULL
                AND ($3::uuid IS NULL OR project_id = $3 OR default_project_id = $3)",
            &[&budget, &org, &project],
        )
        .await?)
}

/// Gives back every key `budget` revoked; how many. The caller records
/// the budget's audit entry.
pub async fn restore_for_budget(
    tx: &Transaction<'_>,
    org: Uuid,
    budget: Uuid,
) -> Result<u64, DbError> {
    Ok(tx
        .execute(
            "UPDATE api_keys SET revoked_at = NULL, revoked_by_budget = NULL, revoked_by_a_budget = false
              WHERE org_id = $1 AND revoked_by_budget = $2",
            &[&org, &budget],
        )
        .await?)
}

async fn write(
    tx: &Transaction<'_>,
    actor: Actor,
    action: &str,
    before: &KeyRow,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<KeyRow, DbError> {
    tx.execute(sql, params).await?;
    changed(tx, actor, action, Some(before), before.org_id, before.id).await
}

/// The key after a change, with the change's audit entry.
async fn changed(
    tx: &Transaction<'_>,
    actor: Actor,
    action: &str,
    before: Option<&KeyRow>,
    org: Uuid,
    id: Uuid,
) -> Result<KeyRow, DbError> {
    let after = read(tx.client(), org, id).await?.ok_or(DbError::Invalid {
        column: "id",
        value: id.to_string(),
    })?;
    audit::change(tx, actor, action, "api_key", id, before, Some(&after)).await?;
    Ok(after)
}
