//! What every handler and extractor shares: the connection pool to the
//! control database, the configuration, the response counters and the
//! analytics store. A leaf: it knows nothing of the routes.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};

use crate::config::Config;
use crate::error::ApiError;

/// Counters for `/metrics`, by status class.
#[derive(Debug, Default)]
pub struct Metrics {
    pub responses: [AtomicU64; 5],
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// The analytics store, when `clickhouse` is configured.
    pub analytics: Option<Arc<crate::analytics::Analytics>>,
}

impl AppState {
    /// A pooled connection to the control database.
    pub async fn db(&self) -> Result<Object, ApiError> {
        Ok(self.pool.get().await?)
    }
}

/// A pool of connections to the control database (none opened yet).
pub fn pool(config: &Config) -> anyhow::Result<Pool> {
    let mut pg = config.db.postgres_config().clone();
    if pg.get_application_name().is_none() {
        pg.application_name("floopy-control");
    }
    pg.connect_timeout(std::time::Duration::from_secs(5));
    let manager = Manager::from_config(
        pg,
        config.db.tls(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(config.pool_size).build()?)
}
