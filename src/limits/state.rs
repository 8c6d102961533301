//! Month-to-date spend on disk, for the file control source: a restart does
//! not reset spend. The whole state is one small JSON file, replaced
//! atomically (written to a temporary file in the same directory, synced,
//! renamed over the old one, directory synced), so a crash leaves either the
//! old or the new state, never a torn one. It is written at most once a
//! second while spend changes, and once more at shutdown: a crash loses at
//! most the last second of spend.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clock::month_of;
use super::{lock, Limiter, ProjectSpend};
use crate::model::Environment;

const VERSION: u32 = 1;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendState {
    pub version: u32,
    pub environments: Vec<EnvironmentEntry>,
    pub projects: Vec<ProjectEntry>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentEntry {
    pub org_id: Uuid,
    pub environment: String,
    pub month: u32,
    pub settled_micro_usd: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectEntry {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub month: u32,
    pub settled_micro_usd: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the spend state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the spend state {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write the spend state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Limiter {
    /// This month's settled spend, for the state file.
    pub fn export_state(&self) -> SpendState {
        let month = month_of(self.now_ms());
        let mut state = SpendState {
            version: VERSION,
            ..SpendState::default()
        };
        for ((org, env), counters) in self.envs.entries() {
            let spend = lock(&counters.state).spend;
            if spend.month == month && spend.settled > 0 {
                state.environments.push(EnvironmentEntry {
                    org_id: org,
                    environment: env.as_str().to_string(),
                    month,
                    settled_micro_usd: spend.settled,
                });
            }
        }
        for ((org, project), spend) in self.projects.entries() {
            let spend = *lock(&spend);
            if spend.month == month {
                state.projects.push(ProjectEntry {
                    org_id: org,
                    project_id: project,
                    month,
                    settled_micro_usd: spend.settled,
                });
            }
        }
        state
            .environments
            .sort_by_key(|e| (e.org_id, e.environment.clone()));
        state.projects.sort_by_key(|p| (p.org_id, p.project_id));
        state
    }

    /// Restores settled spend of the current month; older months are over.
    pub fn import_state(&self, state: &SpendState) {
        let month = month_of(self.now_ms());
        for e in state.environments.iter().filter(|e| e.month == month) {
            let Some(env) = Environment::parse(&e.environment) else {
                continue;
            };
            let counters = self.counters(e.org_id, env);
            let mut state = lock(&counters.state);
            state.spend.roll(month);
            state.spend.settled = state.spend.settled.max(e.settled_micro_usd);
        }
        for p in state.projects.iter().filter(|p| p.month == month) {
            *lock(&self.project(p.org_id, p.project_id)) = ProjectSpend {
                month,
                settled: p.settled_micro_usd,
                ..ProjectSpend::default()
            };
        }
    }
}

/// Reads the state file; a missing file is an empty state.
pub fn read_state(path: &Path) -> Result<SpendState, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SpendState::default()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let state: SpendState = serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if state.version != VERSION {
        return Err(StateError::Invalid {
            path: path.to_path_buf(),
            message: format!("version {} is not {VERSION}", state.version),
        });
    }
    Ok(state)
}

/// Replaces the state file atomically.
pub fn write_state(path: &Path, state: &SpendState) -> Result<(), StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| write_err(e.into()))?;
    let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
    file.write_all(&bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Writes the state file once a second while spend changes.
pub struct StateWriter {
    pub path: PathBuf,
    pub limiter: Arc<Limiter>,
}

impl StateWriter {
    /// Writes now if spend changed since `written`; returns the change count
    /// now on disk.
    pub fn flush(&self, written: u64) -> u64 {
        let changes = self.limiter.changes();
        if changes == written {
            return written;
        }
        match write_state(&self.path, &self.limiter.export_state()) {
            Ok(()) => changes,
            Err(e) => {
                tracing::error!(error = %e, "spend state not saved; retrying");
                written
            }
        }
    }
}

#[async_trait]
impl BackgroundService for StateWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut written = self.limiter.changes();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let path = self.path.clone();
                    let limiter = self.limiter.clone();
                    let writer = StateWriter { path, limiter };
                    written = tokio::task::spawn_blocking(move || writer.flush(written))
                        .await
                        .unwrap_or(written);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::clock::{month_start_ms, FakeClock};

    #[test]
    fn spend_survives_a_restart_within_the_month_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("spend.json");
        let org = Uuid::from_u128(1);
        let project = Uuid::from_u128(2);
        let clock = Arc::new(FakeClock::at(month_start_ms(2026, 11) + 5_000));
        let limiter = Limiter::new(clock.clone());
        let a = limiter.admit(org, Environment::Staging, None, 0).unwrap();
        limiter.settle(a, org, Some(project), None, 1234);
        write_state(&path, &limiter.export_state()).unwrap();

        let restarted = Limiter::new(clock.clone());
        restarted.import_state(&read_state(&path).unwrap());
        assert_eq!(restarted.environment_spend(org, Environment::Staging), 1234);
        assert_eq!(restarted.project_spend(org, project), 1234);

        clock.set(month_start_ms(2026, 12));
        let next_month = Limiter::new(clock);
        next_month.import_state(&read_state(&path).unwrap());
        assert_eq!(next_month.environment_spend(org, Environment::Staging), 0);
    }

    #[test]
    fn missing_file_is_empty_and_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend.json");
        assert_eq!(read_state(&path).unwrap(), SpendState::default());
        std::fs::write(&path, b"{\"version\":1,\"environments\":[").unwrap();
        let err = read_state(&path).unwrap_err().to_string();
        assert!(err.contains("spend.json is not valid"), "{err}");
    }
}
