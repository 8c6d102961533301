//! `audit_log`: every change made through the control plane, the `admin`
//! command and the budget evaluator, written on the change's own
//! transaction (no change without its entry, no entry without its change):
//! who, what, on which object, before and after. Entries never hold a
//! secret: callers pass rows and views, which hold none.

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, Transaction};
use uuid::Uuid;

use super::{Actor, DbError};
use crate::rfc3339;

/// One change.
pub struct Entry<'a> {
    /// `project.create`, `key.revoke`, ...
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A value's JSON for `before` / `after`.
pub fn snapshot<T: Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

/// Writes `entry`, made by `actor`, on `tx` (the change's own transaction).
pub async fn record(tx: &Transaction<'_>, actor: Actor, entry: Entry<'_>) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO audit_log (id, org_id, actor_id, action, object_type, object_id, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb)",
        &[
            &Uuid::now_v7(),
            &actor.org_id,
            &actor.user_id,
            &entry.action,
            &entry.object_type,
            &entry.object_id,
            &entry.before.map(|v| v.to_string()),
            &entry.after.map(|v| v.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// Records a change of one object (`before` and `after` as rows: `None`
/// for a creation's before and a deletion's after).
pub async fn change<T: Serialize>(
    tx: &Transaction<'_>,
    actor: Actor,
    action: &str,
    object_type: &str,
    object_id: Uuid,
    before: Option<&T>,
    after: Option<&T>,
) -> Result<(), DbError> {
    let entry = Entry {
        action,
        object_type,
        object_id: object_id.to_string(),
        before: before.and_then(snapshot),
        after: after.and_then(snapshot),
    };
    record(tx, actor, entry).await
}

/// An entry as read back.
pub struct EntryRow {
    pub id: Uuid,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub at: String,
}

/// The org's entries older than `before` (an entry id), newest first.
pub async fn list(
    db: &Client,
    org: Uuid,
    before: Uuid,
    limit: i64,
) -> Result<Vec<EntryRow>, DbError> {
    let rows = db
        .query(
            concat!(
                "SELECT id, actor_id, action, object_type, object_id, before::text AS before, ",
                "after::text AS after, ",
                rfc3339!("at"),
                " AS at FROM audit_log WHERE org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            ),
            &[&org, &before, &limit],
        )
        .await?;
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
    rows.iter()
        .map(|row| {
            Ok(EntryRow {
                id: row.try_get("id")?,
                actor_id: row.try_get("actor_id")?,
                action: row.try_get("action")?,
                object_type: row.try_get("object_type")?,
                object_id: row.try_get("object_id")?,
                before: json(row.try_get("before")?),
                after: json(row.try_get("after")?),
                at: row.try_get("at")?,
            })
        })
        .collect()
}
