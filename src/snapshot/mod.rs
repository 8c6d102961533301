//! The snapshot: one immutable structure with everything the request path
//! reads (keys by hash, projects, environment limits, routes, prices), held
//! in one `ArcSwap`. Built off the request path from a validated `Config`;
//! a request loads it once and keeps that `Arc` to its end, so a reload never
//! changes the rules under a request in flight. Counters (rate, spend) live
//! outside it so they survive reloads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::config::Config;
use crate::locks::lock;
use crate::pricing::PriceTable;
use crate::upstream::{Provider, Routes};
use floopy_model::{ApiKey, ControlData, Environment, EnvironmentLimits, KeyHash};

/// A key's SHA-256 as a map key. The digest is already uniformly random, so
/// its first eight bytes are the hash: no second hash function runs per
/// lookup.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashedKey(pub KeyHash);

impl Hash for HashedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(first));
    }
}

/// Passes the `u64` written by `HashedKey` through unchanged.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than HashedKey is hashed; fold it in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type KeyMap = HashMap<HashedKey, Arc<ApiKey>, BuildHasherDefault<PassThroughHasher>>;

/// Settings the request path needs besides the control data.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: u64,
    /// Failed authentications per client address and minute (0: off).
    pub max_failed_auth_per_minute: u32,
    /// Output tokens assumed when reserving a request without `max_tokens`.
    pub default_completion_tokens: u64,
    pub gateway_id: Arc<str>,
}

pub struct Snapshot {
    keys: KeyMap,
    /// (org, project) -> archived. The Default project of every org is here.
    projects: FxHashMap<(Uuid, Uuid), bool>,
    limits: FxHashMap<(Uuid, Environment), EnvironmentLimits>,
    /// What comes from the YAML (providers, prices, settings), shared by
    /// every snapshot built from the same configuration.
    pub config: Arc<ConfigParts>,
    pub built_at: SystemTime,
    pub key_count: usize,
}

/// The parts of a snapshot that come from the configuration file.
pub struct ConfigParts {
    pub routes: Routes,
    pub prices: PriceTable,
    /// `GET /v1/models`, rendered once.
    pub models_body: Bytes,
    pub settings: Settings,
}

impl ConfigParts {
    pub fn new(routes: Routes, prices: PriceTable, settings: Settings) -> Self {
        ConfigParts {
            models_body: render_models(&routes),
            routes,
            prices,
            settings,
        }
    }

    /// Providers, prices and settings of a validated configuration.
    pub fn from_config(config: &Config) -> Self {
        let providers: Vec<Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| {
                Arc::new(Provider::new(
                    p.name.clone(),
                    p.kind,
                    p.endpoint.clone(),
                    p.credential_header.clone(),
                    config.timeouts,
                ))
            })
            .collect();
        let models: Vec<(String, usize)> = config
            .providers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.models.iter().map(move |m| (m.clone(), i)))
            .collect();
        ConfigParts::new(
            Routes::new(&providers, &models),
            PriceTable::new(config.prices.iter().cloned()),
            Settings {
                max_body_bytes: config.max_body_bytes,
                max_failed_auth_per_minute: config.max_failed_auth_per_minute,
                default_completion_tokens: config.default_completion_tokens,
                gateway_id: Arc::from(config.server.gateway_id.as_str()),
            },
        )
    }
}

impl Snapshot {
    /// Seconds since this snapshot was built.
    pub fn age_seconds(&self) -> f64 {
        self.built_at.elapsed().map_or(0.0, |d| d.as_secs_f64())
    }

    /// Indexes control data for the request path. Cannot fail: everything
    /// that can fail happened while loading the configuration and the data.
    pub fn build(data: &ControlData, config: Arc<ConfigParts>) -> Self {
        let mut keys = KeyMap::with_capacity_and_hasher(data.api_keys.len(), Default::default());
        for key in &data.api_keys {
            keys.insert(HashedKey(key.hash), key.clone());
        }
        let projects = data
            .projects
            .iter()
            .map(|p| ((p.org_id, p.id), p.archived))
            .collect();
        let limits = data
            .environment_limits
            .iter()
            .map(|l| ((l.org_id, l.environment), *l))
            .collect();
        Snapshot {
            key_count: keys.len(),
            keys,
            projects,
            limits,
            config,
            built_at: SystemTime::now(),
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.config.routes
    }

    pub fn prices(&self) -> &PriceTable {
        &self.config.prices
    }

    pub fn settings(&self) -> &Settings {
        &self.config.settings
    }

    /// The key whose SHA-256 is `hash`, revoked or not.
    pub fn key(&self, hash: &KeyHash) -> Option<&Arc<ApiKey>> {
        self.keys.get(&HashedKey(*hash))
    }

    /// Whether `project` is an active (existing, not archived) project of
    /// `org`. The zero UUID is every org's Default project.
    pub fn is_active_project(&self, org: Uuid, project: Uuid) -> bool {
        self.projects.get(&(org, project)) == Some(&false)
    }

    pub fn environment_limits(&self, org: Uuid, env: Environment) -> Option<&EnvironmentLimits> {
        self.limits.get(&(org, env))
    }
}

fn render_models(routes: &Routes) -> Bytes {
    let data: Vec<serde_json::Value> = routes
        .models
        .iter()
        .map(|(model, provider)| {
            serde_json::json!({"id": model, "object": "model", "created": 0, "owned_by": provider})
        })
        .collect();
    let body = serde_json::json!({"object": "list", "data": data});
    Bytes::from(body.to_string())
}

/// The one place the current snapshot lives, with the two inputs it was
/// built from, so that either can be replaced alone: a reload brings new
/// configuration parts, the control database new data.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    inputs: Mutex<(Arc<ConfigParts>, Arc<ControlData>)>,
    /// When the control data was last confirmed current (epoch ms).
    synced_at_ms: AtomicU64,
}

impl SnapshotStore {
    pub fn new(config: ConfigParts, data: ControlData) -> Self {
        let config = Arc::new(config);
        let data = Arc::new(data);
        SnapshotStore {
            current: ArcSwap::from_pointee(Snapshot::build(&data, config.clone())),
            inputs: Mutex::new((config, data)),
            synced_at_ms: AtomicU64::new(now_ms()),
        }
    }

    /// The current snapshot; a request calls this once.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rebuilds with new configuration parts and the current control data.
    pub fn replace_config(&self, config: ConfigParts) {
        let mut inputs = lock(&self.inputs);
        inputs.0 = Arc::new(config);
        self.swap_in(Arc::new(Snapshot::build(&inputs.1, inputs.0.clone())));
    }

    /// Rebuilds with both inputs new (a reload of a file that holds the
    /// control data too).
    pub fn replace_all(&self, config: ConfigParts, data: ControlData) {
        let config = Arc::new(config);
        let data = Arc::new(data);
        let mut inputs = lock(&self.inputs);
        self.swap_in(Arc::new(Snapshot::build(&data, config.clone())));
        *inputs = (config, data);
        self.mark_synced();
    }

    /// Rebuilds with new control data and the current configuration parts.
    /// The index is built before the swap; requests never wait for it.
    pub fn replace_control(&self, data: ControlData) {
        let data = Arc::new(data);
        let config = {
            let inputs = lock(&self.inputs);
            inputs.0.clone()
        };
        let snapshot = Arc::new(Snapshot::build(&data, config.clone()));
        let mut inputs = lock(&self.inputs);
        // A reload may have swapped the configuration meanwhile: rebuild
        // with it rather than lose it.
        let snapshot = if Arc::ptr_eq(&inputs.0, &config) {
            snapshot
        } else {
            Arc::new(Snapshot::build(&data, inputs.0.clone()))
        };
        inputs.1 = data;
        self.swap_in(snapshot);
        self.mark_synced();
    }

    /// Makes `snapshot` current and retires the old one off the request
    /// path: freeing a large snapshot (a million keys take tens of
    /// milliseconds) must not fall to the request that happens to drop the
    /// last reference. A reaper thread waits until requests in flight have
    /// let go of it, then frees it.
    fn swap_in(&self, snapshot: Arc<Snapshot>) {
        let old = self.current.swap(snapshot);
        if Arc::strong_count(&old) == 1 {
            return; // freed here, on the rebuilding thread
        }
        let spawned = std::thread::Builder::new()
            .name("floopy-snapshot-reaper".into())
            .spawn(move || {
                while Arc::strong_count(&old) > 1 {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                drop(old);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the snapshot reaper; a request will free the old snapshot");
        }
    }

    /// The control data the current snapshot was built from.
    pub fn control_data(&self) -> Arc<ControlData> {
        lock(&self.inputs).1.clone()
    }

    /// Records that the control data was confirmed current now.
    pub fn mark_synced(&self) {
        self.synced_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Seconds since the control data was last confirmed current.
    pub fn staleness_seconds(&self) -> f64 {
        now_ms().saturating_sub(self.synced_at_ms.load(Ordering::Relaxed)) as f64 / 1000.0
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
