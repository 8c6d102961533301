//! The project fallback chain of SPEC section 3: (principal, the
//! `floopy-project-id` header) -> the project the request belongs to, or a
//! typed error. Pure; no I/O.

use uuid::Uuid;

use crate::snapshot::Snapshot;
use floopy_model::{ApiKey, DEFAULT_PROJECT_ID};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectError {
    #[error("floopy-project-id must be a hyphenated UUID")]
    InvalidProjectId,
    #[error("this API key is locked to project {locked}; floopy-project-id names {requested}")]
    ProjectMismatch { locked: Uuid, requested: Uuid },
    #[error("project {0} is not an active project of this organization")]
    ProjectNotFound(Uuid),
}

/// Resolves the request's project:
/// 1. a key locked to a project uses it (a header naming another: mismatch);
/// 2. the header's project, which must be active in the key's org (the zero
///    UUID is the Default project);
/// 3. the key's default project, if active;
/// 4. the org's Default project.
pub fn resolve_project(
    snapshot: &Snapshot,
    key: &ApiKey,
    header: Option<&[u8]>,
) -> Result<Uuid, ProjectError> {
    let requested = header.map(parse_project_id).transpose()?;
    if let Some(locked) = key.project_id {
        if let Some(requested) = requested {
            if requested != locked {
                return Err(ProjectError::ProjectMismatch { locked, requested });
            }
        }
        // A locked key keeps its project; if that project was archived or
        // deleted the key no longer has anywhere to send traffic.
        if !snapshot.is_active_project(key.org_id, locked) {
            return Err(ProjectError::ProjectNotFound(locked));
        }
        return Ok(locked);
    }
    if let Some(requested) = requested {
        if requested == DEFAULT_PROJECT_ID || snapshot.is_active_project(key.org_id, requested) {
            return Ok(requested);
        }
        return Err(ProjectError::ProjectNotFound(requested));
    }
    if let Some(default) = key.default_project_id {
        if snapshot.is_active_project(key.org_id, default) {
            return Ok(default);
        }
    }
    Ok(DEFAULT_PROJECT_ID)
}

/// A hyphenated UUID in any case; nothing else (no braces, no URN, no
/// surrounding spaces).
pub fn parse_project_id(value: &[u8]) -> Result<Uuid, ProjectError> {
    if value.len() != 36 {
        return Err(ProjectError::InvalidProjectId);
    }
    Uuid::try_parse_ascii(value).map_err(|_| ProjectError::InvalidProjectId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PriceTable;
    use crate::snapshot::{ConfigParts, Settings};
    use crate::upstream::Routes;
    use floopy_model::{hash_key, ControlData, Project};

    const ORG: Uuid = Uuid::from_u128(0xA);
    const OTHER_ORG: Uuid = Uuid::from_u128(0xB);
    const CHECKOUT: Uuid = Uuid::from_u128(0x00C0_FFEE_0000_0000_0000_0000_0000_0001);
    const SEARCH: Uuid = Uuid::from_u128(0x00C0_FFEE_0000_0000_0000_0000_0000_0002);
    const ARCHIVED: Uuid = Uuid::from_u128(0x00C0_FFEE_0000_0000_0000_0000_0000_0003);
    const FOREIGN: Uuid = Uuid::from_u128(0x00C0_FFEE_0000_0000_0000_0000_0000_0004);

    fn snapshot() -> Snapshot {
        let project = |org_id, id, archived| Project {
            org_id,
            id,
            name: "p".into(),
            slug: "p".into(),
            archived,
        };
        let data = ControlData {
            projects: vec![
                project(ORG, DEFAULT_PROJECT_ID, false),
                project(ORG, CHECKOUT, false),
                project(ORG, SEARCH, false),
                project(ORG, ARCHIVED, true),
                project(OTHER_ORG, FOREIGN, false),
            ],
            ..Default::default()
        };
        Snapshot::build(
            &data,
            std::sync::Arc::new(ConfigParts::new(
                Routes::default(),
                PriceTable::default(),
                Settings {
                    max_body_bytes: 1,
                    max_failed_auth_per_minute: 0,
                    default_completion_tokens: 1,
                    gateway_id: "t".into(),
                },
            )),
        )
    }

    fn key(project_id: Option<Uuid>, default_project_id: Option<Uuid>) -> ApiKey {
        ApiKey {
            id: Uuid::now_v7(),
            org_id: ORG,
            name: "k".into(),
            hash: hash_key(b"x"),
            environment: None,
            project_id,
            default_project_id,
            revoked: false,
        }
    }

    fn header(id: Uuid) -> String {
        id.hyphenated().to_string()
    }

    #[test]
    fn locked_key_uses_its_project_with_no_header_or_the_same_uuid_in_any_case() {
        let snap = snapshot();
        let k = key(Some(CHECKOUT), Some(SEARCH));
        assert_eq!(resolve_project(&snap, &k, None), Ok(CHECKOUT));
        let upper = header(CHECKOUT).to_uppercase();
        assert_eq!(
            resolve_project(&snap, &k, Some(upper.as_bytes())),
            Ok(CHECKOUT)
        );
    }

    #[test]
    fn locked_key_with_another_project_is_a_mismatch() {
        let snap = snapshot();
        let k = key(Some(CHECKOUT), None);
        assert_eq!(
            resolve_project(&snap, &k, Some(header(SEARCH).as_bytes())),
            Err(ProjectError::ProjectMismatch {
                locked: CHECKOUT,
                requested: SEARCH
            })
        );
        assert_eq!(
            resolve_project(&snap, &k, Some(header(DEFAULT_PROJECT_ID).as_bytes())),
            Err(ProjectError::ProjectMismatch {
                locked: CHECKOUT,
                requested: DEFAULT_PROJECT_ID
            }),
            "the zero UUID is a different project too"
        );
    }

    #[test]
    fn locked_key_whose_project_is_archived_is_not_found() {
        let snap = snapshot();
        let k = key(Some(ARCHIVED), None);
        assert_eq!(
            resolve_project(&snap, &k, None),
            Err(ProjectError::ProjectNotFound(ARCHIVED))
        );
    }

    #[test]
    fn header_names_an_active_project_of_the_key_org() {
        let snap = snapshot();
        let k = key(None, Some(SEARCH));
        assert_eq!(
            resolve_project(&snap, &k, Some(header(CHECKOUT).as_bytes())),
            Ok(CHECKOUT)
        );
        assert_eq!(
            resolve_project(&snap, &k, Some(header(DEFAULT_PROJECT_ID).as_bytes())),
            Ok(DEFAULT_PROJECT_ID)
        );
        for missing in [ARCHIVED, FOREIGN, Uuid::from_u128(0xDEAD)] {
            assert_eq!(
                resolve_project(&snap, &k, Some(header(missing).as_bytes())),
                Err(ProjectError::ProjectNotFound(missing)),
                "{missing} must not resolve"
            );
        }
    }

    #[test]
    fn key_default_then_org_default() {
        let snap = snapshot();
        assert_eq!(
            resolve_project(&snap, &key(None, Some(SEARCH)), None),
            Ok(SEARCH)
        );
        assert_eq!(
            resolve_project(&snap, &key(None, Some(ARCHIVED)), None),
            Ok(DEFAULT_PROJECT_ID),
            "an archived key default falls back to the org Default"
        );
        assert_eq!(
            resolve_project(&snap, &key(None, None), None),
            Ok(DEFAULT_PROJECT_ID)
        );
    }

    #[test]
    fn malformed_header_is_rejected_even_for_locked_keys() {
        let snap = snapshot();
        for bad in [
            "",
            "not-a-uuid",
            "c0ffee00000000000000000000000001",
            "{00000000-0000-0000-0000-000000000000}",
            " 00000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000g",
        ] {
            for k in [key(None, None), key(Some(CHECKOUT), None)] {
                assert_eq!(
                    resolve_project(&snap, &k, Some(bad.as_bytes())),
                    Err(ProjectError::InvalidProjectId),
                    "{bad:?}"
                );
            }
        }
    }
}
