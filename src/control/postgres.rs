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
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, IsolationLevel, NoTls};
use uuid::Uuid;

use super::cache::write_cache;
use crate::config::PostgresSource;
use crate::metrics::Metrics;
use crate::model::{ApiKey, ControlData, Environment, EnvironmentLimits, Org, Plan, Project};
use crate::snapshot::SnapshotStore;

/// How long to wait for more notifications before loading: a transaction
/// that changes several tables notifies once per statement.
const DEBOUNCE: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control database {target}: {source}")]
    Database {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("control database {target}: timed out after {seconds} s")]
    Timeout { target: String, seconds: u64 },
    #[error("control database {target}: invalid row in {table}: {message}")]
    InvalidRow {
        target: String,
        table: &'static str,
        message: String,
    },
    #[error("control database {target}: the connection closed")]
    Closed { target: String },
}

/// `host:port/db` of a connection string, without user or password: what
/// error messages show.
pub fn describe(url: &str) -> String {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return "(invalid url)".into();
    };
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// A connection and the stream of its notifications; the stream ends when
/// the connection does.
pub struct Connection {
    pub client: Client,
    pub notifications: mpsc::UnboundedReceiver<()>,
    target: String,
}

impl Connection {
    fn error(&self, source: tokio_postgres::Error) -> ControlError {
        ControlError::Database {
            target: self.target.clone(),
            source,
        }
    }
}

/// Connects within `timeout` and drives the connection in a task.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, ControlError> {
    let target = describe(url);
    let db_error = |source| ControlError::Database {
        target: target.clone(),
        source,
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(db_error)?;
    if config.get_application_name().is_none() {
        config.application_name("floopy-gateway");
    }
    config.connect_timeout(timeout);
    config.keepalives_idle(Duration::from_secs(10));
    let connecting = config.connect(NoTls);
    let (client, mut connection) = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ControlError::Timeout {
            target: target.clone(),
            seconds: timeout.as_secs(),
        })?
        .map_err(db_error)?;
    let (tx, notifications) = mpsc::unbounded_channel();
    let driver_target = target.clone();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target = %driver_target, error = %e, "control database connection lost");
                    break;
                }
            }
        }
    });
    Ok(Connection {
        client,
        notifications,
        target,
    })
}

/// Loads all control data in one repeatable-read transaction, with the
/// `control_version` it corresponds to.
pub async fn load_control(conn: &mut Connection) -> Result<(ControlData, i64), ControlError> {
    let target = conn.target.clone();
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
        .get(0);
    let mut data = ControlData::default();
    for row in tx
        .query("SELECT id, name, plan::text FROM organizations", &[])
        .await
        .map_err(db)?
    {
        let plan: String = row.get(2);
        data.orgs.push(Org {
            id: row.get(0),
            name: row.get(1),
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
            org_id: row.get(0),
            id: row.get(1),
            name: row.get(2),
            slug: row.get(3),
            archived: row.get(4),
        });
    }
    let keys = tx
        .query(
            "SELECT id, org_id, name, key_hash, environment::text, project_id, default_project_id,
                    revoked_at IS NOT NULL
               FROM api_keys",
            &[],
        )
        .await
        .map_err(db)?;
    data.api_keys.reserve(keys.len());
    for row in keys {
        let id: Uuid = row.get(0);
        let hash_bytes: &[u8] = row.get(3);
        let hash = <[u8; 32]>::try_from(hash_bytes)
            .map_err(|_| invalid("api_keys", format!("key {id}: hash is not 32 bytes")))?;
        data.api_keys.push(Arc::new(ApiKey {
            id,
            org_id: row.get(1),
            name: row.get(2),
            hash,
            environment: parse_environment(row.get(4))
                .map_err(|e| invalid("api_keys", format!("key {id}: environment {e:?}")))?,
            project_id: row.get(5),
            default_project_id: row.get(6),
            revoked: row.get(7),
        }));
    }
    for row in tx
        .query(
            "SELECT org_id, environment::text, rpm, monthly_cost_micro_usd FROM environment_limits",
            &[],
        )
        .await
        .map_err(db)?
    {
        let env: String = row.get(1);
        let rpm: Option<i32> = row.get(2);
        let cost: Option<i64> = row.get(3);
        data.environment_limits.push(EnvironmentLimits {
            org_id: row.get(0),
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

async fn current_version(conn: &Connection) -> Result<i64, ControlError> {
    let row = conn
        .client
        .query_one("SELECT version FROM control_version", &[])
        .await
        .map_err(|e| conn.error(e))?;
    Ok(row.get(0))
}

/// Start-up: connect, migrate, load. The caller decides what an error means
/// (fatal, or start from the cache file).
pub async fn initial_load(source: &PostgresSource) -> Result<ControlData, ControlError> {
    let mut conn = connect(&source.url, Duration::from_secs(5)).await?;
    super::migrate::migrate(&mut conn.client)
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
        let mut conn = connect(&self.source.url, Duration::from_secs(5)).await?;
        conn.client
            .batch_execute("LISTEN floopy_control")
            .await
            .map_err(|e| conn.error(e))?;
        let mut version = self.load(&mut conn).await?;
        *backoff = Duration::from_millis(100);
        tracing::info!(target = %conn.target, "control database connected; snapshot synced");
        let mut poll = tokio::time::interval(self.source.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                note = conn.notifications.recv() => {
                    if note.is_none() {
                        return Err(ControlError::Closed { target: conn.target.clone() });
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
