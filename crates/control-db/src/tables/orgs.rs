//! `organizations`: an org's name and plan. An org is created by the
//! control plane's `bootstrap` or the `admin` command (with its Default
//! project, made by the schema), renamed and re-planned by its owners.

use floopy_model::Plan;
use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::{audit, parsed, Actor, DbError};
use crate::rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct OrgRow {
    pub id: Uuid,
    pub name: String,
    pub plan: Plan,
    pub created_at: String,
}

const COLUMNS: &str = concat!(
    "o.id, o.name, o.plan::text AS plan, ",
    rfc3339!("o.created_at"),
    " AS created_at"
);

fn row(row: &Row) -> Result<OrgRow, DbError> {
    Ok(OrgRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan: parsed(row, "plan", Plan::parse)?,
        created_at: row.try_get("created_at")?,
    })
}

fn with_role(r: &Row) -> Result<(OrgRow, String), DbError> {
    Ok((row(r)?, r.try_get("role")?))
}

/// A page of the orgs `user` is a member of, after `after`, by id, each
/// with the user's role.
pub async fn list_for(
    db: &Client,
    user: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(OrgRow, String)>, DbError> {
    db.query(
        &format!(
            "SELECT {COLUMNS}, m.role::text AS role FROM organizations o
               JOIN org_members m ON m.org_id = o.id AND m.user_id = $1
              WHERE ($2::uuid IS NULL OR o.id > $2) ORDER BY o.id LIMIT $3"
        ),
        &[&user, &after, &limit],
    )
    .await?
    .iter()
    .map(with_role)
    .collect()
}

/// The org, with `user`'s role in it; `None` when they are not a member.
pub async fn read_for(
    db: &Client,
    org: Uuid,
    user: Uuid,
) -> Result<Option<(OrgRow, String)>, DbError> {
    db.query_opt(
        &format!(
            "SELECT {COLUMNS}, m.role::text AS role FROM organizations o
               JOIN org_members m ON m.org_id = o.id AND m.user_id = $2 WHERE o.id = $1"
        ),
        &[&org, &user],
    )
    .await?
    .as_ref()
    .map(with_role)
    .transpose()
}

/// The org locked until `tx` ends, with how many projects it has. Project
/// creation's quota trigger takes the same lock, so a plan change and a
/// create cannot pass each other's check.
pub async fn lock(tx: &Transaction<'_>, org: Uuid) -> Result<Option<(OrgRow, i64)>, DbError> {
    tx.query_opt(
        &format!(
            "SELECT {COLUMNS}, (SELECT count(*) FROM projects WHERE org_id = $1) AS projects
               FROM organizations o WHERE o.id = $1 FOR UPDATE"
        ),
        &[&org],
    )
    .await?
    .as_ref()
    .map(|r| Ok((row(r)?, r.try_get("projects")?)))
    .transpose()
}

/// The org's plan.
pub async fn plan(db: &Client, org: Uuid) -> Result<Option<Plan>, DbError> {
    db.query_opt(
        "SELECT plan::text AS plan FROM organizations WHERE id = $1",
        &[&org],
    )
    .await?
    .map(|r| parsed(&r, "plan", Plan::parse))
    .transpose()
}

/// Creates org `id` (`org.create`); the schema adds its Default project.
pub async fn insert(
    tx: &Transaction<'_>,
    actor: Actor,
    id: Uuid,
    name: &str,
    plan: Plan,
) -> Result<OrgRow, DbError> {
    tx.execute(
        "INSERT INTO organizations (id, name, plan) VALUES ($1, $2, $3::text::floopy_plan)",
        &[&id, &name, &plan.as_str()],
    )
    .await?;
    let after = read(tx, id).await?;
    audit::change(
        tx,
        actor,
        "org.create",
        "organization",
        id,
        None,
        Some(&after),
    )
    .await?;
    Ok(after)
}

/// Renames it or changes its plan (`org.update`).
pub async fn update(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &OrgRow,
    name: Option<&str>,
    plan: Option<Plan>,
) -> Result<OrgRow, DbError> {
    tx.execute(
        "UPDATE organizations SET name = coalesce($2, name),
                plan = coalesce($3::text::floopy_plan, plan) WHERE id = $1",
        &[&before.id, &name, &plan.map(Plan::as_str)],
    )
    .await?;
    let after = read(tx, before.id).await?;
    audit::change(
        tx,
        actor,
        "org.update",
        "organization",
        before.id,
        Some(before),
        Some(&after),
    )
    .await?;
    Ok(after)
}

async fn read(tx: &Transaction<'_>, id: Uuid) -> Result<OrgRow, DbError> {
    let r = tx
        .query_one(
            &format!("SELECT {COLUMNS} FROM organizations o WHERE o.id = $1"),
            &[&id],
        )
        .await?;
    row(&r)
}

/// Every org `user` is a member of, by name: (id, name, role).
pub async fn memberships(db: &Client, user: Uuid) -> Result<Vec<(Uuid, String, String)>, DbError> {
    db.query(
        "SELECT o.id, o.name, m.role::text AS role FROM org_members m
           JOIN organizations o ON o.id = m.org_id
          WHERE m.user_id = $1 ORDER BY o.name, o.id",
        &[&user],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("name")?, r.try_get("role")?)))
    .collect()
}
