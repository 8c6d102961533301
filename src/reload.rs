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

use arc_swap::ArcSwap;

use crate::config::{self, Config, ConfigError, ConfigErrors, ControlSource, TlsConfig};
use crate::metrics::Metrics;
use crate::snapshot::{ConfigParts, SnapshotStore};
use crate::tls::{CertificateSet, Certificates};

/// Loads `path` and, if it is valid, swaps in its snapshot. With the file
/// control source the file's orgs, projects and keys are swapped too; with
/// Postgres the data stays what the database says.
///
/// What the process was built from at start is read at start only: the
/// listeners, the worker threads, the shutdown timings, the PID file and
/// upgrade socket, the spend persistence (state file, exchange interval),
/// the log sink, the control source (but for the file source's own data)
/// and the TLS listener's settings (but for its certificates, which are
/// read again and swapped with the rest). A file that changes any of them
/// is refused whole, every such field named, so a reload is never
/// half-applied.
pub fn reload(
    path: &std::path::Path,
    store: &SnapshotStore,
    started: &Config,
    tls: Option<&RunningTls>,
) -> Result<(), ConfigErrors> {
    let config = config::load(path)?;
    let mut refused = start_only_changes(started, &config);
    refused.extend(control_changes(&started.control, &config.control));
    let running_tls = tls.map(|t| t.config.load_full());
    refused.extend(tls_changes(
        running_tls.as_deref(),
        config.server.tls.as_ref(),
    ));
    if !refused.is_empty() {
        return Err(ConfigErrors(refused));
    }
    let certificates = match (tls, &config.server.tls) {
        (Some(_), Some(new)) => {
            Some(CertificateSet::load(new, crate::tls::now_unix()).map_err(ConfigErrors)?)
        }
        _ => None,
    };
    let parts = ConfigParts::from_config(&config);
    if let (Some(tls), Some(set), Some(new)) = (tls, certificates, &config.server.tls) {
        tls.certificates.swap(set, new);
        tls.config.store(Arc::new(new.clone()));
    }
    match config.control {
        ControlSource::File(data) => store.replace_all(parts, data),
        ControlSource::Postgres(_) => store.replace_config(parts),
    }
    Ok(())
}

const RESTART: &str = "is read at start only; restart the gateway to change it";

/// The start-only fields outside `control` and `server.tls` that `new`
/// changes, each with its path.
fn start_only_changes(old: &Config, new: &Config) -> Vec<ConfigError> {
    let (a, b) = (&old.server, &new.server);
    [
        ("server.listen", a.listen == b.listen),
        ("server.admin_listen", a.admin_listen == b.admin_listen),
        ("server.threads", a.threads == b.threads),
        (
            "server.grace_period_seconds",
            a.grace_period_seconds == b.grace_period_seconds,
        ),
        (
            "server.graceful_shutdown_timeout_seconds",
            a.graceful_shutdown_timeout_seconds == b.graceful_shutdown_timeout_seconds,
        ),
        (
            "server.header_timeout_ms",
            a.header_timeout == b.header_timeout,
        ),
        ("server.pid_file", a.pid_file == b.pid_file),
        ("server.upgrade_sock", a.upgrade_sock == b.upgrade_sock),
        ("limits.state_file", old.state_file == new.state_file),
        (
            "limits.exchange_interval_ms",
            old.exchange_interval == new.exchange_interval,
        ),
        ("log_sink", old.log_sink == new.log_sink),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(path, _)| ConfigError {
        path: path.to_string(),
        message: RESTART.to_string(),
    })
    .collect()
}

/// Each start-only `control` field that `new` changes.
fn control_changes(running: &ControlSource, new: &ControlSource) -> Vec<ConfigError> {
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
    errors
}

/// The TLS listener of the running process: its certificates and
/// configuration (the file watch reads the latter).
#[derive(Clone)]
pub struct RunningTls {
    pub certificates: Arc<Certificates>,
    pub config: Arc<ArcSwap<TlsConfig>>,
}

/// Each start-only TLS setting that `new` changes (everything but the
/// certificates).
fn tls_changes(running: Option<&TlsConfig>, new: Option<&TlsConfig>) -> Vec<ConfigError> {
    let error = |field: &str| ConfigError {
        path: format!("server.tls{field}"),
        message: RESTART.to_string(),
    };
    let mut errors = Vec::new();
    match (running, new) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => errors.push(error("")),
        (Some(old), Some(new)) => {
            for (field, same) in [
                (".listen", old.listen == new.listen),
                (".min_version", old.tls13_only == new.tls13_only),
                (".client_ca", old.client_ca == new.client_ca),
                (".http2", old.http2 == new.http2),
                (
                    ".max_concurrent_streams",
                    old.max_concurrent_streams == new.max_concurrent_streams,
                ),
            ] {
                if !same {
                    errors.push(error(field));
                }
            }
        }
    }
    errors
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
    /// The configuration the process started with (its start-only fields
    /// stay).
    pub started: Arc<Config>,
    pub tls: Option<RunningTls>,
}

impl Reloader {
    async fn reload_now(&self) {
        let path = self.config_path.clone();
        let store = self.store.clone();
        let started = self.started.clone();
        let tls = self.tls.clone();
        // Reading files and resolving provider hosts block: not on a worker.
        let result =
            tokio::task::spawn_blocking(move || reload(&path, &store, &started, tls.as_ref()))
                .await;
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
