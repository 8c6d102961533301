//! Month-to-date spend on disk, for the file control source: a restart does
//! not reset spend. The whole state is one small JSON file, replaced
//! atomically (written to a temporary file in the same directory, synced,
//! renamed over the old one, directory synced), so a crash leaves either the
//! old or the new state, never a torn one. Once a second, and once more at
//! shutdown, each process adds what it settled since its last turn to the
//! figures on disk, under a file lock: the two processes of a graceful
//! upgrade share the file without losing each other's spend. A crash loses
//! at most the last second of spend.

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
use floopy_model::Environment;

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
    /// Merges this process's spend into `disk` (what the state file holds
    /// now) and takes in what other processes added there: each figure on
    /// disk grows by what this process settled since its last merge. Two
    /// processes sharing the file (the old and the new one of a graceful
    /// upgrade) therefore add up instead of overwriting each other. Returns
    /// the merged state and whether this process added anything.
    pub fn merge_state(&self, disk: &SpendState) -> (SpendState, bool) {
        let month = month_of(self.now_ms());
        let mut added = false;
        let mut state = SpendState {
            version: VERSION,
            ..SpendState::default()
        };
        let disk_envs: std::collections::HashMap<(Uuid, &str), u64> = disk
            .environments
            .iter()
            .filter(|e| e.month == month)
            .map(|e| ((e.org_id, e.environment.as_str()), e.settled_micro_usd))
            .collect();
        for (org, env) in disk_envs
            .keys()
            .filter_map(|(o, e)| Some((*o, Environment::parse(e)?)))
        {
            let _ = self.counters(org, env);
        }
        for ((org, env), counters) in self.envs.entries() {
            let on_disk = disk_envs.get(&(org, env.as_str())).copied().unwrap_or(0);
            let mut guard = lock(&counters.state);
            let spend = &mut guard.spend;
            spend.roll(month);
            let delta = spend.settled.saturating_sub(spend.persisted);
            added |= delta > 0;
            spend.settled = on_disk.saturating_add(delta);
            spend.persisted = spend.settled;
            if spend.settled > 0 {
                state.environments.push(EnvironmentEntry {
                    org_id: org,
                    environment: env.as_str().to_string(),
                    month,
                    settled_micro_usd: spend.settled,
                });
            }
        }
        let disk_projects: std::collections::HashMap<(Uuid, Uuid), u64> = disk
            .projects
            .iter()
            .filter(|p| p.month == month)
            .map(|p| ((p.org_id, p.project_id), p.settled_micro_usd))
            .collect();
        for (org, project) in disk_projects.keys() {
            let _ = self.project(*org, *project);
        }
        for ((org, project), spend) in self.projects.entries() {
            let on_disk = disk_projects.get(&(org, project)).copied().unwrap_or(0);
            let mut spend = lock(&spend);
            if month > spend.month {
                *spend = ProjectSpend {
                    month,
                    ..ProjectSpend::default()
                };
            }
            let delta = spend.settled.saturating_sub(spend.persisted);
            added |= delta > 0;
            spend.settled = on_disk.saturating_add(delta);
            spend.persisted = spend.settled;
            if spend.settled > 0 {
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
        (state, added)
    }
}

/// Reads the state file, adds this process's spend, and writes it back,
/// under an exclusive lock on `PATH.lock` so that processes sharing the
/// file take turns. Returns whether the file was written.
pub fn sync_state(path: &Path, limiter: &Limiter) -> Result<bool, StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .map_err(write_err)?;
    lock_file.lock().map_err(write_err)?;
    let disk = read_state(path)?;
    let (merged, added) = limiter.merge_state(&disk);
    if added {
        write_state(path, &merged)?;
    }
    Ok(added)
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
    /// Merges this process's spend into the file now.
    pub fn flush(&self) {
        if let Err(e) = sync_state(&self.path, &self.limiter) {
            tracing::error!(error = %e, "spend state not saved; retrying");
        }
    }
}

#[async_trait]
impl BackgroundService for StateWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let path = self.path.clone();
                    let limiter = self.limiter.clone();
                    let writer = StateWriter { path, limiter };
                    let _ = tokio::task::spawn_blocking(move || writer.flush()).await;
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
        assert!(sync_state(&path, &limiter).unwrap(), "written");
        assert!(
            !sync_state(&path, &limiter).unwrap(),
            "nothing new to write"
        );

        let restarted = Limiter::new(clock.clone());
        sync_state(&path, &restarted).unwrap();
        assert_eq!(restarted.environment_spend(org, Environment::Staging), 1234);
        assert_eq!(restarted.project_spend(org, project), 1234);

        clock.set(month_start_ms(2026, 12));
        let next_month = Limiter::new(clock);
        sync_state(&path, &next_month).unwrap();
        assert_eq!(next_month.environment_spend(org, Environment::Staging), 0);
    }

    #[test]
    fn two_processes_sharing_the_file_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spend.json");
        let org = Uuid::from_u128(1);
        let clock = Arc::new(FakeClock::at(month_start_ms(2026, 11) + 5_000));
        let old = Limiter::new(clock.clone());
        let spend = |l: &Limiter, cost: u64| {
            let a = l.admit(org, Environment::Production, None, 0).unwrap();
            l.settle(a, org, None, None, cost);
        };
        spend(&old, 100);
        sync_state(&path, &old).unwrap();
        // The new process starts from the file; both go on serving.
        let new = Limiter::new(clock);
        sync_state(&path, &new).unwrap();
        spend(&new, 10);
        spend(&old, 7);
        sync_state(&path, &new).unwrap();
        sync_state(&path, &old).unwrap(); // the old one's last turn
        sync_state(&path, &new).unwrap();
        let disk = read_state(&path).unwrap();
        assert_eq!(disk.environments[0].settled_micro_usd, 117);
        assert_eq!(
            new.environment_spend(org, Environment::Production),
            117,
            "the new process took in the old one's spend"
        );
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
