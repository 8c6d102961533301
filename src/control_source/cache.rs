//! The control data cache file: a copy of the last data loaded from the
//! control database, written after each load, read at start only when the
//! database is unreachable, so a replica can start and serve what it last
//! knew. Replaced atomically (temporary file, sync, rename).

use std::path::Path;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use floopy_model::{ApiKey, ControlData, Environment, EnvironmentLimits, Org, Plan, Project};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    orgs: Vec<(Uuid, String, String)>,
    /// (org, id, name, slug, archived)
    projects: Vec<(Uuid, Uuid, String, String, bool)>,
    /// (id, org, name, hex hash, environment, lock, default, revoked)
    api_keys: Vec<CachedKey>,
    /// (org, environment, rpm, monthly cost)
    limits: Vec<(Uuid, String, Option<u32>, Option<u64>)>,
}

#[derive(Serialize, Deserialize)]
struct CachedKey {
    id: Uuid,
    org_id: Uuid,
    name: String,
    hash: String,
    environment: Option<String>,
    project_id: Option<Uuid>,
    default_project_id: Option<Uuid>,
    revoked: bool,
}

pub fn write_cache(path: &Path, data: &ControlData) -> std::io::Result<()> {
    let file = CacheFile {
        version: VERSION,
        orgs: data
            .orgs
            .iter()
            .map(|o| (o.id, o.name.clone(), plan_name(o.plan).to_string()))
            .collect(),
        projects: data
            .projects
            .iter()
            .map(|p| (p.org_id, p.id, p.name.clone(), p.slug.clone(), p.archived))
            .collect(),
        api_keys: data
            .api_keys
            .iter()
            .map(|k| CachedKey {
                id: k.id,
                org_id: k.org_id,
                name: k.name.clone(),
                hash: hex::encode(k.hash),
                environment: k.environment.map(|e| e.as_str().to_string()),
                project_id: k.project_id,
                default_project_id: k.default_project_id,
                revoked: k.revoked,
            })
            .collect(),
        limits: data
            .environment_limits
            .iter()
            .map(|l| {
                (
                    l.org_id,
                    l.environment.as_str().to_string(),
                    l.rpm,
                    l.monthly_cost_micro_usd,
                )
            })
            .collect(),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    serde_json::to_writer(&mut out, &file)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn read_cache(path: &Path) -> Result<ControlData, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: CacheFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a control data cache: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!(
            "{}: cache version {} is not {VERSION}",
            path.display(),
            file.version
        ));
    }
    let bad = |what: &str| format!("{}: invalid {what}", path.display());
    let mut data = ControlData::default();
    for (id, name, plan) in file.orgs {
        let plan = Plan::parse(&plan).ok_or_else(|| bad("plan"))?;
        data.orgs.push(Org { id, name, plan });
    }
    for (org_id, id, name, slug, archived) in file.projects {
        data.projects.push(Project {
            org_id,
            id,
            name,
            slug,
            archived,
        });
    }
    for k in file.api_keys {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&k.hash, &mut hash).map_err(|_| bad("key hash"))?;
        let environment = match k.environment {
            Some(e) => Some(Environment::parse(&e).ok_or_else(|| bad("environment"))?),
            None => None,
        };
        data.api_keys.push(std::sync::Arc::new(ApiKey {
            id: k.id,
            org_id: k.org_id,
            name: k.name,
            hash,
            environment,
            project_id: k.project_id,
            default_project_id: k.default_project_id,
            revoked: k.revoked,
        }));
    }
    for (org_id, env, rpm, cost) in file.limits {
        data.environment_limits.push(EnvironmentLimits {
            org_id,
            environment: Environment::parse(&env).ok_or_else(|| bad("environment"))?,
            rpm,
            monthly_cost_micro_usd: cost,
        });
    }
    Ok(data)
}

pub fn plan_name(plan: Plan) -> &'static str {
    match plan {
        Plan::Free => "free",
        Plan::Starter => "starter",
        Plan::Pro => "pro",
        Plan::Enterprise => "enterprise",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floopy_model::hash_key;

    #[test]
    fn round_trips_control_data() {
        let org = Uuid::from_u128(1);
        let data = ControlData {
            orgs: vec![Org {
                id: org,
                name: "o".into(),
                plan: Plan::Pro,
            }],
            projects: vec![Project {
                org_id: org,
                id: Uuid::nil(),
                name: "Default".into(),
                slug: "default".into(),
                archived: false,
            }],
            api_keys: vec![std::sync::Arc::new(ApiKey {
                id: Uuid::from_u128(3),
                org_id: org,
                name: "k".into(),
                hash: hash_key(b"fpk_x"),
                environment: Some(Environment::Staging),
                project_id: None,
                default_project_id: Some(Uuid::nil()),
                revoked: true,
            })],
            environment_limits: vec![EnvironmentLimits {
                org_id: org,
                environment: Environment::Staging,
                rpm: Some(5),
                monthly_cost_micro_usd: None,
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.json");
        write_cache(&path, &data).unwrap();
        assert_eq!(read_cache(&path).unwrap(), data);
        std::fs::write(&path, b"{").unwrap();
        assert!(read_cache(&path)
            .unwrap_err()
            .contains("is not a control data cache"));
    }
}
