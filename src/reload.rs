//! SIGHUP: re-read the YAML, validate, build a new snapshot, swap. Prepare,
//! then swap: everything that can fail happens before the store, so a bad
//! file is logged and the running configuration keeps serving. Requests in
//! flight keep the snapshot they loaded.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, ConfigErrors, ControlSource};
use crate::metrics::Metrics;
use crate::snapshot::{ConfigParts, SnapshotStore};

/// Loads `path` and, if it is valid, swaps in its snapshot. With the file
/// control source the file's orgs, projects and keys are swapped too; with
/// Postgres the data stays what the database says.
pub fn reload(path: &std::path::Path, store: &SnapshotStore) -> Result<(), ConfigErrors> {
    let config = config::load(path)?;
    let parts = ConfigParts::from_config(&config);
    match config.control {
        ControlSource::File(data) => store.replace_all(parts, data),
        ControlSource::Postgres(_) => store.replace_config(parts),
    }
    Ok(())
}

/// The background service that waits for SIGHUP.
pub struct Reloader {
    pub config_path: PathBuf,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
}

impl Reloader {
    async fn reload_now(&self) {
        let path = self.config_path.clone();
        let store = self.store.clone();
        // Reading files and resolving provider hosts block: not on a worker.
        let result = tokio::task::spawn_blocking(move || reload(&path, &store)).await;
        match result {
            Ok(Ok(())) => {
                self.metrics.reloads_ok.inc();
                tracing::info!(path = %self.config_path.display(), "configuration reloaded");
            }
            Ok(Err(errors)) => {
                self.metrics.reloads_failed.inc();
                tracing::error!(
                    path = %self.config_path.display(),
                    "configuration rejected, the running one stays:\n{errors}"
                );
            }
            Err(e) => {
                self.metrics.reloads_failed.inc();
                tracing::error!(error = %e, "configuration reload task failed");
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is disabled");
                return;
            }
        };
        loop {
            tokio::select! {
                received = hangup.recv() => {
                    if received.is_none() {
                        return;
                    }
                    self.reload_now().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Installs the process's SIGHUP handler before any service runs, so a
/// SIGHUP that arrives during start-up is kept for the reloader instead of
/// killing the process (the default action).
pub fn install_sighup_handler() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async { signal(SignalKind::hangup()).map(drop) })
}
