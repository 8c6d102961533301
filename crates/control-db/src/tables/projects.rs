//! `projects`: an org's projects. The plan's quota, the unique slug and the
//! Default project's protection are the schema's (a trigger and
//! constraints); this module is the one writer, and `read` is the one rule
//! for "this project is the org's".

use floopy_model::DEFAULT_PROJECT_ID;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::audit;
use super::{Actor, DbError};
use crate::rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub color: Option<String>,
    pub icon: Option<String>,
    pub archived: bool,
    /// The Default project (the zero UUID).
    pub is_default: bool,
    pub created_at: String,
}

const COLUMNS: &str = concat!(
    "id, org_id, name, slug, description, color, icon, archived, ",
    rfc3339!("created_at"),
    " AS created_at"
);

fn row(row: &Row) -> Result<ProjectRow, DbError> {
    let id: Uuid = row.try_get("id")?;
    Ok(ProjectRow {
        id,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        description: row.try_get("description")?,
        color: row.try_get("color")?,
        icon: row.try_get("icon")?,
        archived: row.try_get("archived")?,
        is_default: id == DEFAULT_PROJECT_ID,
        created_at: row.try_get("created_at")?,
    })
}

/// The org's project `project`: `None` when it is not the org's (another
/// org's, or none at all).
pub async fn read(db: &Client, org: Uuid, project: Uuid) -> Result<Option<ProjectRow>, DbError> {
    db.query_opt(
        &format!("SELECT {COLUMNS} FROM projects WHERE org_id = $1 AND id = $2"),
        &[&org, &project],
    )
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// `read`, the row locked until `tx` ends: what a change then replaces.
pub async fn lock(
    tx: &Transaction<'_>,
    org: Uuid,
    project: Uuid,
) -> Result<Option<ProjectRow>, DbError> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM projects WHERE org_id = $1 AND id = $2 FOR UPDATE"),
        &[&org, &project],
    )
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// A page of the org's projects after `after`, by id: every one when
/// `all`, else those `user` is a member of.
pub async fn list(
    db: &Client,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
    all: bool,
    user: Uuid,
) -> Result<Vec<ProjectRow>, DbError> {
    db.query(
        &format!(
            "SELECT {COLUMNS} FROM projects p
              WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2)
                AND ($4 OR EXISTS (SELECT 1 FROM project_members pm
                                    WHERE pm.org_id = p.org_id AND pm.project_id = p.id
                                      AND pm.user_id = $5))
              ORDER BY id LIMIT $3"
        ),
        &[&org, &after, &limit, &all, &user],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// The id and name of every project of the org.
pub async fn names(db: &Client, org: Uuid) -> Result<Vec<(Uuid, String)>, DbError> {
    db.query("SELECT id, name FROM projects WHERE org_id = $1", &[&org])
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .collect()
}

/// How many projects the org has.
pub async fn count(db: &Client, org: Uuid) -> Result<i64, DbError> {
    Ok(db
        .query_one(
            "SELECT count(*) AS n FROM projects WHERE org_id = $1",
            &[&org],
        )
        .await?
        .try_get("n")?)
}

/// The fields of a project; `None` keeps (or, creating, leaves empty) one.
#[derive(Debug, Default)]
pub struct ProjectFields<'a> {
    pub name: Option<&'a str>,
    pub slug: Option<&'a str>,
    pub description: Option<&'a str>,
    pub color: Option<&'a str>,
    pub icon: Option<&'a str>,
}

/// Creates project `id` (`project.create`). The plan's quota refuses with
/// constraint `projects_plan_quota`.
pub async fn insert(
    tx: &Transaction<'_>,
    actor: Actor,
    org: Uuid,
    id: Uuid,
    fields: &ProjectFields<'_>,
) -> Result<ProjectRow, DbError> {
    tx.execute(
        "INSERT INTO projects (org_id, id, name, slug, description, color, icon)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &org,
            &id,
            &fields.name,
            &fields.slug,
            &fields.description,
            &fields.color,
            &fields.icon,
        ],
    )
    .await?;
    let created = changed(tx, actor, "project.create", None, org, id).await?;
    created.ok_or(DbError::Invalid {
        column: "id",
        value: id.to_string(),
    })
}

/// Changes the fields given (`project.update`).
pub async fn update(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &ProjectRow,
    fields: &ProjectFields<'_>,
) -> Result<Option<ProjectRow>, DbError> {
    write(
        tx,
        actor,
        "project.update",
        before,
        "UPDATE projects SET name = coalesce($3, name), slug = coalesce($4, slug),
                description = coalesce($5, description), color = coalesce($6, color),
                icon = coalesce($7, icon)
          WHERE org_id = $1 AND id = $2",
        &[
            &before.org_id,
            &before.id,
            &fields.name,
            &fields.slug,
            &fields.description,
            &fields.color,
            &fields.icon,
        ],
    )
    .await
}

/// Archives or unarchives it (`project.archive` / `project.unarchive`).
pub async fn set_archived(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &ProjectRow,
    archived: bool,
) -> Result<Option<ProjectRow>, DbError> {
    let action = if archived {
        "project.archive"
    } else {
        "project.unarchive"
    };
    write(
        tx,
        actor,
        action,
        before,
        "UPDATE projects SET archived = $3 WHERE org_id = $1 AND id = $2",
        &[&before.org_id, &before.id, &archived],
    )
    .await
}

/// Deletes it (`project.delete`); the schema revokes the keys locked to it
/// and clears it as a key's default.
pub async fn delete(
    tx: &Transaction<'_>,
    actor: Actor,
    before: &ProjectRow,
) -> Result<(), DbError> {
    write(
        tx,
        actor,
        "project.delete",
        before,
        "DELETE FROM projects WHERE org_id = $1 AND id = $2",
        &[&before.org_id, &before.id],
    )
    .await?;
    Ok(())
}

async fn write(
    tx: &Transaction<'_>,
    actor: Actor,
    action: &str,
    before: &ProjectRow,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<ProjectRow>, DbError> {
    tx.execute(sql, params).await?;
    changed(tx, actor, action, Some(before), before.org_id, before.id).await
}

/// The project after a change, with the change's audit entry.
async fn changed(
    tx: &Transaction<'_>,
    actor: Actor,
    action: &str,
    before: Option<&ProjectRow>,
    org: Uuid,
    id: Uuid,
) -> Result<Option<ProjectRow>, DbError> {
    let after = read(tx.client(), org, id).await?;
    audit::change(tx, actor, action, "project", id, before, after.as_ref()).await?;
    Ok(after)
}
