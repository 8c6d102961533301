//! The background jobs (the budget evaluator, alert delivery, the
//! analytics rollup) and what they share: a tick on a connection of their
//! own, and their error. They take what they need (the database's
//! settings, their config, the analytics store), never the HTTP layer's
//! state, and fail with a `JobError`, never an API answer.

use floopy_control_db::DbConfig;

use crate::analytics::StoreError;

/// Why a job's run failed; the next tick starts over.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the control database: {}", floopy_control_db::with_causes(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Table(#[from] floopy_control_db::DbError),
    #[error("{0}")]
    Other(String),
}

/// One run of a background job on its connection.
pub type Job<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), JobError>> + Send + 'c>>;

/// Runs `work` every `every` on a connection of its own (`name` in
/// `pg_stat_activity`) until the process ends: the background jobs (the
/// budget evaluator, alert delivery). A failure is logged and the next tick
/// starts over on a new connection.
pub async fn every_tick(
    db: DbConfig,
    name: &'static str,
    every: std::time::Duration,
    mut work: impl for<'c> FnMut(&'c mut tokio_postgres::Client) -> Job<'c>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn = None;
    loop {
        tick.tick().await;
        if conn.is_none() {
            match db.connect(name, std::time::Duration::from_secs(5)).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(job = name, error = %e, "cannot connect to the control database; retrying");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if let Err(e) = work(&mut c.client).await {
            tracing::warn!(job = name, error = %e, "failed; retrying");
            conn = None;
        }
    }
}

/// Whether this replica takes the job's tick: a transaction-scoped advisory
/// lock on `key`, so one replica runs each tick and the lock ends with `tx`.
pub async fn take_tick(tx: &tokio_postgres::Transaction<'_>, key: i64) -> Result<bool, JobError> {
    let row = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1) AS mine", &[&key])
        .await?;
    Ok(row.try_get("mine")?)
}
