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

use crate::config::{self, ConfigError, ConfigErrors, ControlSource};
use crate::metrics::Metrics;
use crate::snapshot::{ConfigParts, SnapshotStore};

/// Loads `path` and, if it is valid, swaps in its snapshot. With the file
/// control source the file's orgs, projects and keys are swapped too; with
/// Postgres the data stays what the database says.
///
/// The control source is read at start only (its sync service and the
/// spend persistence were chosen for it): a file whose `control` section
/// differs from `running` in anything but the file source's own data is
/// refused whole, so a reload is never half-applied.
pub fn reload(
    path: &std::path::Path,
    store: &SnapshotStore,
    running: &ControlSource,
) -> Result<(), ConfigErrors> {
    let config = config::load(path)?;
    check_control_unchanged(running, &config.control)?;
    let parts = ConfigParts::from_config(&config);
    match config.control {
        ControlSource::File(data) => store.replace_all(parts, data),
        ControlSource::Postgres(_) => store.replace_config(parts),
    }
    Ok(())
}

/// `Err` naming each start-only `control` field that `new` changes.
fn check_control_unchanged(
    running: &ControlSource,
    new: &ControlSource,
) -> Result<(), ConfigErrors> {
    const RESTART: &str = "is read at start only; restart the gateway to change it";
    let error = |field: &str, detail: String| ConfigError {
        path: format!("control.{field}"),
        message: format!("{detail} {RESTART}"),
    };
    let mut errors = Vec::new();
    match (running, new) {
        (ControlSource::File(_), ControlSource::File(_)) => {}
        (ControlSource::Postgres(old), ControlSource::Postgres(new)) => {
            if old.url != new.url {
                errors.push(error("url", "the control database url".into()));
            }
            if old.poll_interval != new.poll_interval {
                errors.push(error("poll_interval_ms", "the poll interval".into()));
            }
            if old.max_staleness != new.max_staleness {
                errors.push(error("max_staleness_seconds", "the staleness limit".into()));
            }
            if old.cache_file != new.cache_file {
                errors.push(error("cache_file", "the cache file".into()));
            }
        }
        (old, new) => errors.push(error(
            "source",
            format!(
                "changed from {} to {}: the control source",
                source_name(old),
                source_name(new)
            ),
        )),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

fn source_name(source: &ControlSource) -> &'static str {
    match source {
        ControlSource::File(_) => "file",
        ControlSource::Postgres(_) => "postgres",
    }
}

/// The background service that waits for SIGHUP.
pub struct Reloader {
    pub config_path: PathBuf,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    /// The control source the process started with.
    pub control: ControlSource,
}

impl Reloader {
    async fn reload_now(&self) {
        let path = self.config_path.clone();
        let store = self.store.clone();
        let running = self.control.clone();
        // Reading files and resolving provider hosts block: not on a worker.
        let result = tokio::task::spawn_blocking(move || reload(&path, &store, &running)).await;
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
