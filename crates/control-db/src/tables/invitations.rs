//! `invitations`: an email invited to an org with a role, accepted once
//! with its token (stored as its SHA-256). Creating, accepting and revoking
//! one records its audit entry.

use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::audit;
use super::{Actor, DbError};
use crate::rfc3339;

/// A pending invitation, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationRow {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub expires_at: String,
}

fn invitation(row: &Row) -> Result<InvitationRow, DbError> {
    Ok(InvitationRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: row.try_get("role")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// A new invitation: who invites whom to which org, with what role.
pub struct NewInvitation<'a> {
    pub org: Uuid,
    pub email: &'a str,
    pub role: &'a str,
    pub token_hash: &'a [u8],
    pub invited_by: Uuid,
    pub valid_days: i32,
}

/// Inserts the invitation (`invitation.create`).
pub async fn insert(
    tx: &Transaction<'_>,
    new: NewInvitation<'_>,
) -> Result<InvitationRow, DbError> {
    let id = Uuid::now_v7();
    let row = tx
        .query_one(
            concat!(
                "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, expires_at)
                 VALUES ($1, $2, $3, $4::text::floopy_org_role, $5, $6,
                         now() + make_interval(days => $7::int))
                 RETURNING id, email, role::text AS role, ",
                rfc3339!("expires_at"),
                " AS expires_at"
            ),
            &[
                &id,
                &new.org,
                &new.email,
                &new.role,
                &new.token_hash,
                &new.invited_by,
                &new.valid_days,
            ],
        )
        .await?;
    let created = invitation(&row)?;
    audit::record(
        tx,
        Actor::person(new.org, new.invited_by),
        audit::Entry {
            action: "invitation.create",
            object_type: "invitation",
            object_id: id.to_string(),
            before: None,
            after: audit::snapshot(&created),
        },
    )
    .await?;
    Ok(created)
}

/// An invitation that can be accepted, locked until the transaction ends.
pub struct Acceptable {
    pub id: Uuid,
    pub org: Uuid,
    pub email: String,
    pub role: String,
}

/// The invitation with this token hash, if it can still be accepted: not
/// accepted, revoked or expired, and its inviter still has the right to
/// make it (an owner for an owner, an owner or admin otherwise).
pub async fn lock_acceptable(
    tx: &Transaction<'_>,
    token_hash: &[u8],
) -> Result<Option<Acceptable>, DbError> {
    tx.query_opt(
        "SELECT i.id, i.org_id, i.email, i.role::text AS role FROM invitations i
           JOIN org_members inviter
             ON inviter.org_id = i.org_id AND inviter.user_id = i.invited_by
          WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL
            AND i.expires_at > now()
            AND (inviter.role = 'owner' OR (inviter.role = 'admin' AND i.role <> 'owner'))
          FOR UPDATE OF i",
        &[&token_hash],
    )
    .await?
    .map(|row| {
        Ok(Acceptable {
            id: row.try_get("id")?,
            org: row.try_get("org_id")?,
            email: row.try_get("email")?,
            role: row.try_get("role")?,
        })
    })
    .transpose()
}

/// Marks the invitation accepted by `user`, who has joined the org
/// (`invitation.accept`, the new member as its object).
pub async fn accepted(
    tx: &Transaction<'_>,
    invitation: &Acceptable,
    user: Uuid,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE invitations SET accepted_at = now() WHERE id = $1",
        &[&invitation.id],
    )
    .await?;
    audit::record(
        tx,
        Actor::person(invitation.org, user),
        audit::Entry {
            action: "invitation.accept",
            object_type: "org_member",
            object_id: user.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "user_id": user, "email": invitation.email, "role": invitation.role,
            })),
        },
    )
    .await
}

/// A page of the org's pending invitations after `after`, by id.
pub async fn list_pending(
    db: &Client,
    org: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<InvitationRow>, DbError> {
    db.query(
        concat!(
            "SELECT id, email, role::text AS role, ",
            rfc3339!("expires_at"),
            " AS expires_at FROM invitations WHERE org_id = $1 AND accepted_at IS NULL
               AND revoked_at IS NULL AND expires_at > now() AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3"
        ),
        &[&org, &after, &limit],
    )
    .await?
    .iter()
    .map(invitation)
    .collect()
}

/// Revokes a pending invitation of the org (`invitation.revoke`); false
/// when there is none with that id.
pub async fn revoke(
    tx: &Transaction<'_>,
    actor: Actor,
    org: Uuid,
    id: Uuid,
) -> Result<bool, DbError> {
    let Some(row) = tx
        .query_opt(
            "UPDATE invitations SET revoked_at = now()
              WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL
              RETURNING email, role::text AS role",
            &[&org, &id],
        )
        .await?
    else {
        return Ok(false);
    };
    let (email, role): (String, String) = (row.try_get("email")?, row.try_get("role")?);
    audit::record(
        tx,
        actor,
        audit::Entry {
            action: "invitation.revoke",
            object_type: "invitation",
            object_id: id.to_string(),
            before: Some(serde_json::json!({"email": email, "role": role})),
            after: None,
        },
    )
    .await?;
    Ok(true)
}
