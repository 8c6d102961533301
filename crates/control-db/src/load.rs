//! The control data as the gateway serves it: everything loaded in one
//! consistent read, the version it corresponds to, and the channel that
//! announces changes.
//!
//! Triggers (migration 0001) bump the one `control_version` row and
//! `NOTIFY floopy_control` on every change to organizations, projects, keys
//! or limits; a reader `LISTEN`s on `CHANGES_CHANNEL` and polls
//! `current_version` for what a notification missed.

use std::sync::Arc;

use floopy_model::{ApiKey, ControlData, Environment, EnvironmentLimits, Org, Plan, Project};
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

use crate::connect::{Connection, ControlError};

/// The channel the change triggers notify.
pub const CHANGES_CHANNEL: &str = "floopy_control";

/// Loads all control data in one repeatable-read transaction, with the
/// `control_version` it corresponds to.
pub async fn load_control(conn: &mut Connection) -> Result<(ControlData, i64), ControlError> {
    let target = conn.target().to_string();
    let tx = conn
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| ControlError::Database {
            target: target.clone(),
            source: e,
        })?;
    let db = |source| ControlError::Database {
        target: target.clone(),
        source,
    };
    let invalid = |table: &'static str, message: String| ControlError::InvalidRow {
        target: target.clone(),
        table,
        message,
    };
    let version: i64 = tx
        .query_one("SELECT version FROM control_version", &[])
        .await
        .map_err(db)?
        .try_get("version")
        .map_err(db)?;
    let mut data = ControlData::default();
    for row in tx
        .query(
            "SELECT id, name, plan::text AS plan FROM organizations",
            &[],
        )
        .await
        .map_err(db)?
    {
        let plan: String = row.try_get("plan").map_err(db)?;
        data.orgs.push(Org {
            id: row.try_get("id").map_err(db)?,
            name: row.try_get("name").map_err(db)?,
            plan: Plan::parse(&plan)
                .ok_or_else(|| invalid("organizations", format!("plan {plan:?}")))?,
        });
    }
    for row in tx
        .query("SELECT org_id, id, name, slug, archived FROM projects", &[])
        .await
        .map_err(db)?
    {
        data.projects.push(Project {
            org_id: row.try_get("org_id").map_err(db)?,
            id: row.try_get("id").map_err(db)?,
            name: row.try_get("name").map_err(db)?,
            slug: row.try_get("slug").map_err(db)?,
            archived: row.try_get("archived").map_err(db)?,
        });
    }
    let keys = tx
        .query(
            "SELECT id, org_id, name, key_hash, environment::text AS environment, project_id,
                    default_project_id, revoked_at IS NOT NULL AS revoked
               FROM api_keys",
            &[],
        )
        .await
        .map_err(db)?;
    data.api_keys.reserve(keys.len());
    for row in keys {
        let id: Uuid = row.try_get("id").map_err(db)?;
        let hash_bytes: &[u8] = row.try_get("key_hash").map_err(db)?;
        let hash = <[u8; 32]>::try_from(hash_bytes)
            .map_err(|_| invalid("api_keys", format!("key {id}: hash is not 32 bytes")))?;
        data.api_keys.push(Arc::new(ApiKey {
            id,
            org_id: row.try_get("org_id").map_err(db)?,
            name: row.try_get("name").map_err(db)?,
            hash,
            environment: parse_environment(row.try_get("environment").map_err(db)?)
                .map_err(|e| invalid("api_keys", format!("key {id}: environment {e:?}")))?,
            project_id: row.try_get("project_id").map_err(db)?,
            default_project_id: row.try_get("default_project_id").map_err(db)?,
            revoked: row.try_get("revoked").map_err(db)?,
        }));
    }
    for row in tx
        .query(
            "SELECT org_id, environment::text AS environment, rpm, monthly_cost_micro_usd
               FROM environment_limits",
            &[],
        )
        .await
        .map_err(db)?
    {
        let env: String = row.try_get("environment").map_err(db)?;
        let rpm: Option<i32> = row.try_get("rpm").map_err(db)?;
        let cost: Option<i64> = row.try_get("monthly_cost_micro_usd").map_err(db)?;
        data.environment_limits.push(EnvironmentLimits {
            org_id: row.try_get("org_id").map_err(db)?,
            environment: Environment::parse(&env)
                .ok_or_else(|| invalid("environment_limits", format!("environment {env:?}")))?,
            rpm: rpm.and_then(|r| u32::try_from(r).ok()),
            monthly_cost_micro_usd: cost.and_then(|c| u64::try_from(c).ok()),
        });
    }
    tx.commit().await.map_err(db)?;
    Ok((data, version))
}

fn parse_environment(value: Option<String>) -> Result<Option<Environment>, String> {
    match value {
        None => Ok(None),
        Some(v) => Environment::parse(&v).map(Some).ok_or(v),
    }
}

/// The version of the control data now in the database.
pub async fn current_version(conn: &Connection) -> Result<i64, ControlError> {
    let row = conn
        .client
        .query_one("SELECT version FROM control_version", &[])
        .await
        .map_err(|e| conn.error(e))?;
    row.try_get("version").map_err(|e| conn.error(e))
}

/// Starts receiving change notifications on `conn.notifications`.
pub async fn listen(conn: &Connection) -> Result<(), ControlError> {
    conn.client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await
        .map_err(|e| conn.error(e))
}
