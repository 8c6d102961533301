//! The Postgres control source: connect, load the control data in one
//! consistent read, and keep the snapshot in sync.
//!
//! Sync: the gateway `LISTEN`s on `floopy_control`, which triggers notify on
//! every change to organizations, projects, keys or limits; a notification
//! (debounced, so a burst of changes costs one load) triggers a full load
//! and rebuild off the request path, then an atomic swap. A poll of the one
//! `control_version` row catches anything a notification missed (a
//! connection that dropped and came back). When the database is lost, the
//! gateway serves its last snapshot, reconnects with backoff, and loads
//! everything again when it is back; `/readyz` reports the time since the
//! last confirmed sync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use floopy_control_db::load::{current_version, listen, load_control};
use floopy_control_db::{Connection, ControlError};
use floopy_model::ControlData;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::cache::write_cache;
use super::CONNECT_TIMEOUT;
use crate::config::PostgresSource;
use crate::metrics::Metrics;
use crate::snapshot::SnapshotStore;

/// How long to wait for more notifications before loading: a transaction
/// that changes several tables notifies once per statement.
const DEBOUNCE: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How the sync's connections name themselves in `pg_stat_activity`.
const APPLICATION_NAME: &str = "floopy-gateway";

/// Start-up: connect, migrate, load. The caller decides what an error means
/// (fatal, or start from the cache file).
pub async fn initial_load(source: &PostgresSource) -> Result<ControlData, ControlError> {
    let mut conn = source.db.connect(APPLICATION_NAME, CONNECT_TIMEOUT).await?;
    floopy_control_db::migrate::migrate(&mut conn.client)
        .await
        .map_err(|e| conn.error(e))?;
    let (data, _) = load_control(&mut conn).await?;
    Ok(data)
}

/// The background service that keeps the snapshot in sync.
pub struct ControlSync {
    pub source: PostgresSource,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
}

impl ControlSync {
    /// One connected session: load, then follow notifications and polls
    /// until the connection fails.
    async fn session(&self, backoff: &mut Duration) -> Result<(), ControlError> {
        let mut conn = self
            .source
            .db
            .connect(APPLICATION_NAME, CONNECT_TIMEOUT)
            .await?;
        listen(&conn).await?;
        let mut version = self.load(&mut conn).await?;
        *backoff = Duration::from_millis(100);
        tracing::info!(target = %conn.target(), "control database connected; snapshot synced");
        let mut poll = tokio::time::interval(self.source.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                note = conn.notifications.recv() => {
                    if note.is_none() {
                        return Err(ControlError::Closed { target: conn.target().to_string() });
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    while conn.notifications.try_recv().is_ok() {}
                    version = self.load(&mut conn).await?;
                }
                _ = poll.tick() => {
                    if current_version(&conn).await? != version {
                        version = self.load(&mut conn).await?;
                    } else {
                        self.store.mark_synced();
                    }
                }
            }
        }
    }

    /// Loads everything and swaps in the new snapshot; the index is built on
    /// a blocking thread, never on a request worker.
    async fn load(&self, conn: &mut Connection) -> Result<i64, ControlError> {
        let started = Instant::now();
        let (data, version) = load_control(conn).await?;
        let loaded = started.elapsed();
        let store = self.store.clone();
        let cache = self.source.cache_file.clone();
        let keys = data.api_keys.len();
        let _ = tokio::task::spawn_blocking(move || {
            store.replace_control(data);
            if let Some(path) = cache {
                if let Err(e) = write_cache(&path, &store.control_data()) {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the control data cache");
                }
            }
        })
        .await;
        self.metrics.control_loads.inc();
        tracing::debug!(
            version,
            keys,
            load_ms = loaded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "control data loaded"
        );
        Ok(version)
    }
}

#[async_trait]
impl BackgroundService for ControlSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                result = self.session(&mut backoff) => {
                    if let Err(e) = result {
                        self.metrics.control_errors.inc();
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "control database unavailable; serving the last snapshot");
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
