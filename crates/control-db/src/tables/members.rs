//! `users`, `org_members` and `project_members`: who may do what where.
//! The org's last owner is kept by the schema (a trigger); a project member
//! must be a member of the org (a foreign key). Roles are the database's
//! enums, passed here as their lowercase names.

use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::audit;
use super::{Actor, DbError};

/// A member, of an org or of a project, with their role there.
#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub user_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
}

fn member(row: &Row) -> Result<MemberRow, DbError> {
    Ok(MemberRow {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
    })
}

/// A user's roles in an org: theirs in the org, and on each project they
/// are a member of.
pub struct Roles {
    pub org_role: String,
    pub projects: Vec<(Uuid, String)>,
}

/// `user`'s roles in `org`; `None` when they are not a member. On a
/// transaction, read as of the change they authorize.
pub async fn roles(db: &Client, org: Uuid, user: Uuid) -> Result<Option<Roles>, DbError> {
    let Some(row) = db
        .query_opt(
            "SELECT role::text AS role FROM org_members WHERE org_id = $1 AND user_id = $2",
            &[&org, &user],
        )
        .await?
    else {
        return Ok(None);
    };
    let projects = db
        .query(
            "SELECT project_id, role::text AS role FROM project_members
              WHERE org_id = $1 AND user_id = $2",
            &[&org, &user],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get("project_id")?, r.try_get("role")?)))
        .collect::<Result<_, DbError>>()?;
    Ok(Some(Roles {
        org_role: row.try_get("role")?,
        projects,
    }))
}

/// A page of the org's members after user `after`, by user id.
pub async fn list_org(
    db: &Client,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<MemberRow>, DbError> {
    db.query(
        "SELECT u.id AS user_id, u.email, u.name, m.role::text AS role FROM org_members m
           JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1 AND ($2::uuid IS NULL OR u.id > $2) ORDER BY u.id LIMIT $3",
        &[&org, &after, &limit],
    )
    .await?
    .iter()
    .map(member)
    .collect()
}

/// A page of the project's members after user `after`, by user id.
pub async fn list_project(
    db: &Client,
    org: Uuid,
    project: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<MemberRow>, DbError> {
    db.query(
        "SELECT u.id AS user_id, u.email, u.name, pm.role::text AS role FROM project_members pm
           JOIN users u ON u.id = pm.user_id
          WHERE pm.org_id = $1 AND pm.project_id = $2 AND ($3::uuid IS NULL OR u.id > $3)
          ORDER BY u.id LIMIT $4",
        &[&org, &project, &after, &limit],
    )
    .await?
    .iter()
    .map(member)
    .collect()
}

/// `user`'s org role, the row locked until `tx` ends (`share`: only
/// against leaving, as a project membership needs; else for a change).
pub async fn lock_org_role(
    tx: &Transaction<'_>,
    org: Uuid,
    user: Uuid,
    share: bool,
) -> Result<Option<String>, DbError> {
    let sql = if share {
        "SELECT role::text AS role FROM org_members WHERE org_id = $1 AND user_id = $2 FOR KEY SHARE"
    } else {
        "SELECT role::text AS role FROM org_members WHERE org_id = $1 AND user_id = $2 FOR UPDATE"
    };
    tx.query_opt(sql, &[&org, &user])
        .await?
        .map(|r| r.try_get("role"))
        .transpose()
        .map_err(DbError::from)
}

/// `user`'s role on the project, the row locked until `tx` ends.
pub async fn lock_project_role(
    tx: &Transaction<'_>,
    org: Uuid,
    project: Uuid,
    user: Uuid,
) -> Result<Option<String>, DbError> {
    tx.query_opt(
        "SELECT role::text AS role FROM project_members
          WHERE org_id = $1 AND project_id = $2 AND user_id = $3 FOR UPDATE",
        &[&org, &project, &user],
    )
    .await?
    .map(|r| r.try_get("role"))
    .transpose()
    .map_err(DbError::from)
}

fn role_json(user: Uuid, role: &str) -> Option<serde_json::Value> {
    Some(serde_json::json!({"user_id": user, "role": role}))
}

/// Changes a member's org role from `before` (`member.role`).
pub async fn set_org_role(
    tx: &Transaction<'_>,
    actor: Actor,
    org: Uuid,
    user: Uuid,
    before: &str,
    role: &str,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE org_members SET role = $3::text::floopy_org_role WHERE org_id = $1 AND user_id = $2",
        &[&org, &user, &role],
    )
    .await?;
    let entry = audit::Entry {
        action: "member.role",
        object_type: "org_member",
        object_id: user.to_string(),
        before: role_json(user, before),
        after: role_json(user, role),
    };
    audit::record(tx, actor, entry).await
}

/// Removes a member (of role `before`) from the org and its projects
/// (`member.remove`).
pub async fn remove_org_member(
    tx: &Transaction<'_>,
    actor: Actor,
    org: Uuid,
    user: Uuid,
    before: &str,
) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2",
        &[&org, &user],
    )
    .await?;
    let entry = audit::Entry {
        action: "member.remove",
        object_type: "org_member",
        object_id: user.to_string(),
        before: role_json(user, before),
        after: None,
    };
    audit::record(tx, actor, entry).await
}

/// Makes `user` a member of the org with `role`; `false` when they are one
/// already. The caller records the audit entry of what made them one (an
/// invitation, an organization's creation).
pub async fn join_org(
    tx: &Transaction<'_>,
    org: Uuid,
    user: Uuid,
    role: &str,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3::text::floopy_org_role)
             ON CONFLICT DO NOTHING",
            &[&org, &user, &role],
        )
        .await?;
    Ok(n == 1)
}

/// Gives `user` `role` on the project, from `before` (none: added)
/// (`project_member.set`).
pub async fn set_project_role(
    tx: &Transaction<'_>,
    actor: Actor,
    (org, project, user): (Uuid, Uuid, Uuid),
    before: Option<&str>,
    role: &str,
) -> Result<MemberRow, DbError> {
    tx.execute(
        "INSERT INTO project_members (org_id, project_id, user_id, role)
         VALUES ($1, $2, $3, $4::text::floopy_project_role)
         ON CONFLICT (org_id, project_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        &[&org, &project, &user, &role],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT u.id AS user_id, u.email, u.name, pm.role::text AS role FROM project_members pm
               JOIN users u ON u.id = pm.user_id
              WHERE pm.org_id = $1 AND pm.project_id = $2 AND pm.user_id = $3",
            &[&org, &project, &user],
        )
        .await?;
    let after = member(&row)?;
    let entry = audit::Entry {
        action: "project_member.set",
        object_type: "project_member",
        object_id: format!("{project}/{user}"),
        before: before.and_then(|role| role_json(user, role)),
        after: audit::snapshot(&after),
    };
    audit::record(tx, actor, entry).await?;
    Ok(after)
}

/// Removes `user` (of role `before`) from the project
/// (`project_member.remove`).
pub async fn remove_project_member(
    tx: &Transaction<'_>,
    actor: Actor,
    (org, project, user): (Uuid, Uuid, Uuid),
    before: &str,
) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM project_members WHERE org_id = $1 AND project_id = $2 AND user_id = $3",
        &[&org, &project, &user],
    )
    .await?;
    let entry = audit::Entry {
        action: "project_member.remove",
        object_type: "project_member",
        object_id: format!("{project}/{user}"),
        before: role_json(user, before),
        after: None,
    };
    audit::record(tx, actor, entry).await
}

/// Creates a user (their password already hashed); their id.
pub async fn insert_user(
    tx: &Transaction<'_>,
    email: &str,
    name: Option<&str>,
    password_hash: &str,
) -> Result<Uuid, DbError> {
    let id = Uuid::now_v7();
    tx.execute(
        "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, $4)",
        &[&id, &email, &name, &password_hash],
    )
    .await?;
    Ok(id)
}
