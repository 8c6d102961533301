//! The audit log: every change made through the API, written in the same
//! transaction as the change (so there is no change without its entry, and
//! no entry without its change): who, what, on which object, before and
//! after. Callers pass the object's public view, which never holds a secret.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;

/// One change.
pub struct Entry<'a> {
    pub org_id: Option<Uuid>,
    pub actor_id: Uuid,
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

/// Writes `entry` on `tx` (the change's own transaction).
pub async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    entry: Entry<'_>,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO audit_log (id, org_id, actor_id, action, object_type, object_id, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb)",
        &[
            &Uuid::now_v7(),
            &entry.org_id,
            &entry.actor_id,
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
