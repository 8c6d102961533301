//! The file control source: orgs, projects, API keys and environment limits
//! declared under `control.orgs` in the YAML, checked with the data model's
//! rules (`floopy_model::validate`) into the same `ControlData` the control
//! database yields. Every error names its path
//! (`control.orgs[0].projects[1].slug`).

use std::sync::Arc;

use floopy_model::validate::{
    is_valid_color, is_valid_slug, parse_hyphenated_uuid, slug_error, DESCRIPTION_CHARS,
    ICON_CHARS, NAME_CHARS, PROJECT_NAME_CHARS,
};
use floopy_model::{
    hash_key, is_valid_key_string, usd_to_micro, ApiKey, ControlData, EnvironmentLimits, KeyHash,
    Org, Plan, Project, DEFAULT_PROJECT_ID,
};
use rustc_hash::FxHashSet;
use uuid::Uuid;

use super::raw::{RawApiKey, RawControl, RawProject};
use super::Errors;

/// `control.orgs` of a file with `source: file`, checked.
pub(crate) fn validate_file_control(raw: &RawControl, errors: &mut Errors) -> ControlData {
    let mut data = ControlData::default();
    let mut org_ids = FxHashSet::default();
    let mut key_ids = FxHashSet::default();
    let mut key_hashes: FxHashSet<KeyHash> = FxHashSet::default();
    for (i, org) in raw.orgs.iter().enumerate() {
        let path = format!("control.orgs[{i}]");
        let Some(org_id) = parse_uuid(&org.id, &format!("{path}.id"), errors) else {
            continue;
        };
        if org_id.is_nil() {
            errors.add(format!("{path}.id"), "an org id cannot be the zero UUID");
        }
        if !org_ids.insert(org_id) {
            errors.add(
                format!("{path}.id"),
                format!("org {org_id} is declared twice"),
            );
        }
        check_length(&org.name, NAME_CHARS, &format!("{path}.name"), errors);
        let plan = org.plan;
        data.orgs.push(Org {
            id: org_id,
            name: org.name.clone(),
            plan,
        });
        let projects = validate_projects(org_id, plan, &org.projects, &path, errors);
        let active: FxHashSet<Uuid> = projects.iter().map(|p| p.id).collect();
        for (j, key) in org.api_keys.iter().enumerate() {
            let key_path = format!("{path}.api_keys[{j}]");
            if let Some(key) = validate_key(org_id, &active, key, &key_path, errors) {
                if !key_ids.insert(key.id) {
                    errors.add(
                        format!("{key_path}.id"),
                        format!("key {} is declared twice", key.id),
                    );
                }
                if !key_hashes.insert(key.hash) {
                    errors.add(key_path, "another key has the same secret");
                }
                data.api_keys.push(Arc::new(key));
            }
        }
        let mut envs = FxHashSet::default();
        for (j, limits) in org.environment_limits.iter().enumerate() {
            let lpath = format!("{path}.environment_limits[{j}]");
            let environment = limits.environment;
            if !envs.insert(environment) {
                errors.add(
                    format!("{lpath}.environment"),
                    format!("limits for {environment} are declared twice"),
                );
            }
            let monthly_cost_micro_usd = match limits.monthly_cost_usd.map(usd_to_micro) {
                None => None,
                Some(Ok(micro)) => Some(micro),
                Some(Err(e)) => {
                    errors.add(format!("{lpath}.monthly_cost_usd"), e.to_string());
                    None
                }
            };
            data.environment_limits.push(EnvironmentLimits {
                org_id,
                environment,
                rpm: limits.rpm.map(|n| n.get()),
                monthly_cost_micro_usd,
            });
        }
        data.projects.extend(projects);
    }
    data
}

fn parse_uuid(value: &str, path: &str, errors: &mut Errors) -> Option<Uuid> {
    let id = parse_hyphenated_uuid(value);
    if id.is_none() {
        errors.add(path, format!("{value:?} is not a hyphenated UUID"));
    }
    id
}

fn check_length(value: &str, bounds: (usize, usize), path: &str, errors: &mut Errors) {
    if let Err(message) = floopy_model::validate::check_length(value, bounds) {
        errors.add(path, message);
    }
}

fn validate_projects(
    org_id: Uuid,
    plan: Plan,
    raw: &[RawProject],
    org_path: &str,
    errors: &mut Errors,
) -> Vec<Project> {
    let mut projects = Vec::new();
    let mut slugs = FxHashSet::default();
    for (j, p) in raw.iter().enumerate() {
        let path = format!("{org_path}.projects[{j}]");
        let Some(id) = parse_uuid(&p.id, &format!("{path}.id"), errors) else {
            continue;
        };
        check_length(&p.name, PROJECT_NAME_CHARS, &format!("{path}.name"), errors);
        if !is_valid_slug(&p.slug) {
            errors.add(format!("{path}.slug"), slug_error(&p.slug));
        } else if !slugs.insert(p.slug.as_str()) {
            errors.add(
                format!("{path}.slug"),
                format!("slug {:?} is already used in this org", p.slug),
            );
        }
        if let Some(description) = &p.description {
            check_length(
                description,
                DESCRIPTION_CHARS,
                &format!("{path}.description"),
                errors,
            );
        }
        if let Some(color) = &p.color {
            if !is_valid_color(color) {
                errors.add(format!("{path}.color"), format!("{color:?} is not #rrggbb"));
            }
        }
        if let Some(icon) = &p.icon {
            check_length(icon, ICON_CHARS, &format!("{path}.icon"), errors);
        }
        if projects.iter().any(|q: &Project| q.id == id) {
            errors.add(
                format!("{path}.id"),
                format!("project {id} is declared twice"),
            );
        }
        if id == DEFAULT_PROJECT_ID && p.archived {
            errors.add(
                format!("{path}.archived"),
                "the Default project cannot be archived",
            );
        }
        projects.push(Project {
            org_id,
            id,
            name: p.name.clone(),
            slug: p.slug.clone(),
            archived: p.archived,
        });
    }
    if !projects.iter().any(|p| p.id == DEFAULT_PROJECT_ID) {
        projects.insert(
            0,
            Project {
                org_id,
                id: DEFAULT_PROJECT_ID,
                name: "Default".into(),
                slug: "default".into(),
                archived: false,
            },
        );
    }
    if let Some(max) = plan.max_projects() {
        if projects.len() > max {
            errors.add(
                format!("{org_path}.projects"),
                format!(
                    "{} projects (Default included) exceed the plan's quota of {max}",
                    projects.len()
                ),
            );
        }
    }
    projects
}

fn validate_key(
    org_id: Uuid,
    projects: &FxHashSet<Uuid>,
    raw: &RawApiKey,
    path: &str,
    errors: &mut Errors,
) -> Option<ApiKey> {
    let id = parse_uuid(&raw.id, &format!("{path}.id"), errors);
    let environment = raw.environment;
    let mut project_ref = |value: &Option<String>, field: &str| -> Option<Uuid> {
        let value = value.as_ref()?;
        let id = parse_uuid(value, &format!("{path}.{field}"), errors)?;
        if !projects.contains(&id) {
            errors.add(
                format!("{path}.{field}"),
                format!("project {id} is not a project of this org"),
            );
        }
        Some(id)
    };
    let project_id = project_ref(&raw.project_id, "project_id");
    let default_project_id = project_ref(&raw.default_project_id, "default_project_id");
    let hash = match (&raw.secret_sha256, &raw.secret) {
        (Some(hex_hash), None) => {
            let mut hash = [0u8; 32];
            match hex::decode_to_slice(hex_hash, &mut hash) {
                Ok(()) => Some(hash),
                Err(_) => {
                    errors.add(
                        format!("{path}.secret_sha256"),
                        "must be 64 hexadecimal characters",
                    );
                    None
                }
            }
        }
        (None, Some(secret)) => {
            if is_valid_key_string(secret) {
                Some(hash_key(secret.as_bytes()))
            } else {
                errors.add(
                    format!("{path}.secret"),
                    "must look like fpk_ followed by at least 32 letters or digits",
                );
                None
            }
        }
        _ => {
            errors.add(path, "give exactly one of secret_sha256, secret");
            None
        }
    };
    check_length(&raw.name, NAME_CHARS, &format!("{path}.name"), errors);
    Some(ApiKey {
        id: id?,
        org_id,
        name: raw.name.clone(),
        hash: hash?,
        environment,
        project_id,
        default_project_id,
        revoked: raw.revoked,
    })
}
