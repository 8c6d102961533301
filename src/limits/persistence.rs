//! Where month-to-date spend lives between restarts, chosen once from the
//! control source: the state file (file control source), or the control
//! database through the exchange with the other replicas (Postgres). Either
//! way the same three moments: restore before serving, keep saving in a
//! background service while serving, save once more after the last request
//! settled.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use uuid::Uuid;

use super::exchange::UsageExchange;
use super::state::{sync_state, StateError, StateWriter};
use super::Limiter;
use crate::config::{Config, ControlSource};
use crate::metrics::Metrics;

/// The spend persistence of one gateway process.
#[derive(Clone)]
pub enum SpendPersistence {
    /// Merged into `limits.state_file` once a second and at shutdown.
    StateFile(Arc<StateWriter>),
    /// Exchanged with the other replicas through the control database
    /// every `limits.exchange_interval_ms`, and kept there.
    Exchange(Arc<UsageExchange>),
}

impl SpendPersistence {
    /// The persistence `config`'s control source calls for.
    pub fn choose(config: &Config, limiter: Arc<Limiter>, metrics: Arc<Metrics>) -> Self {
        match &config.control {
            ControlSource::File(_) => SpendPersistence::StateFile(Arc::new(StateWriter {
                path: config.state_file.clone(),
                limiter,
            })),
            ControlSource::Postgres(source) => {
                SpendPersistence::Exchange(Arc::new(UsageExchange {
                    db: source.db.clone(),
                    // The gateway id and a random part, new at every start:
                    // a restarted replica's old rows still count.
                    replica: format!(
                        "{}-{}",
                        config.server.gateway_id,
                        &Uuid::now_v7().simple().to_string()[20..]
                    ),
                    limiter,
                    metrics,
                    interval: config.exchange_interval,
                }))
            }
        }
    }

    /// Before serving: this month's spend so far (from the file, or the
    /// totals of every replica). A state file that cannot be read is an
    /// error; an unreachable database is not (the exchange keeps trying,
    /// and the limits hold with what this replica sees meanwhile).
    pub async fn restore(&self) -> Result<(), StateError> {
        match self {
            SpendPersistence::StateFile(writer) => {
                sync_state(&writer.path, &writer.limiter).map(drop)
            }
            SpendPersistence::Exchange(exchange) => {
                exchange.exchange_now().await;
                Ok(())
            }
        }
    }

    /// After the last request settled: save what is not saved yet.
    pub async fn save(&self) {
        match self {
            SpendPersistence::StateFile(writer) => writer.flush(),
            SpendPersistence::Exchange(exchange) => exchange.exchange_now().await,
        }
    }

    /// The background service's name.
    pub fn service_name(&self) -> &'static str {
        match self {
            SpendPersistence::StateFile(_) => "spend-state",
            SpendPersistence::Exchange(_) => "usage-exchange",
        }
    }
}

#[async_trait]
impl BackgroundService for SpendPersistence {
    async fn start(&self, shutdown: ShutdownWatch) {
        match self {
            SpendPersistence::StateFile(writer) => writer.start(shutdown).await,
            SpendPersistence::Exchange(exchange) => exchange.start(shutdown).await,
        }
    }
}
