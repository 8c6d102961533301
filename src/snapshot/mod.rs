//! The snapshot: one immutable structure with everything the request path
//! reads (keys by hash, projects, environment limits, routes, prices), held
//! in one `ArcSwap`. Built off the request path from a validated `Config`;
//! a request loads it once and keeps that `Arc` to its end, so a reload never
//! changes the rules under a request in flight. Counters (rate, spend) live
//! outside it so they survive reloads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use uuid::Uuid;

use crate::config::{Config, ControlSource};
use crate::model::{ApiKey, ControlData, Environment, EnvironmentLimits, KeyHash};
use crate::pricing::PriceTable;
use crate::upstream::{Provider, Routes};

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
    /// Output tokens assumed when reserving a request without `max_tokens`.
    pub default_completion_tokens: u64,
    pub gateway_id: Arc<str>,
}

pub struct Snapshot {
    keys: KeyMap,
    /// (org, project) -> archived. The Default project of every org is here.
    projects: FxHashMap<(Uuid, Uuid), bool>,
    limits: FxHashMap<(Uuid, Environment), EnvironmentLimits>,
    pub routes: Routes,
    pub prices: PriceTable,
    /// `GET /v1/models`, rendered once.
    pub models_body: Bytes,
    pub settings: Settings,
    pub built_at: SystemTime,
    pub key_count: usize,
}

impl Snapshot {
    /// Builds the snapshot of a validated configuration. Cannot fail: all
    /// that can fail happened in `config::load`.
    pub fn from_config(config: &Config) -> Snapshot {
        let providers: Vec<Arc<Provider>> = config
            .providers
            .iter()
            .map(|p| {
                Arc::new(Provider::new(
                    p.name.clone(),
                    p.kind,
                    p.endpoint.clone(),
                    p.credential.clone(),
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
        let routes = Routes::new(&providers, &models);
        let ControlSource::File(data) = &config.control;
        Snapshot::build(
            data,
            routes,
            PriceTable::new(config.prices.iter().cloned()),
            Settings {
                max_body_bytes: config.max_body_bytes,
                default_completion_tokens: config.default_completion_tokens,
                gateway_id: Arc::from(config.server.gateway_id.as_str()),
            },
        )
    }

    /// Indexes control data for the request path.
    pub fn build(
        data: &ControlData,
        routes: Routes,
        prices: PriceTable,
        settings: Settings,
    ) -> Self {
        let mut keys = KeyMap::with_capacity_and_hasher(data.api_keys.len(), Default::default());
        for key in &data.api_keys {
            keys.insert(HashedKey(key.hash), Arc::new(key.clone()));
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
        let models_body = render_models(&routes);
        Snapshot {
            key_count: keys.len(),
            keys,
            projects,
            limits,
            routes,
            prices,
            models_body,
            settings,
            built_at: SystemTime::now(),
        }
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

/// The one place the current snapshot lives.
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
}

impl SnapshotStore {
    pub fn new(snapshot: Snapshot) -> Self {
        SnapshotStore {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The current snapshot; a request calls this once.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot. Requests in flight keep the one they loaded.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
