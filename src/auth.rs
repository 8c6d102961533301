//! Bearer authentication: `Authorization` header -> the key's `Principal`.
//! Owns nothing but the parsing and the lookup; what the key may do is
//! `project`'s (and later the limits') concern.

use std::sync::Arc;

use crate::snapshot::Snapshot;
use floopy_model::{hash_key, ApiKey};

/// The authenticated caller: the API key, with its org, environment and
/// project lock.
pub type Principal = Arc<ApiKey>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer API key: send Authorization: Bearer <key>")]
    MissingKey,
    #[error("unknown API key")]
    UnknownKey,
    /// The key exists but is revoked; its org is known, so it is logged.
    #[error("the API key has been revoked")]
    Revoked(Principal),
}

/// Authenticates an `Authorization` header value against the snapshot.
pub fn authenticate(snapshot: &Snapshot, header: Option<&[u8]>) -> Result<Principal, AuthError> {
    let key = header.and_then(bearer_token).ok_or(AuthError::MissingKey)?;
    let principal = snapshot.key(&hash_key(key)).ok_or(AuthError::UnknownKey)?;
    if principal.revoked {
        return Err(AuthError::Revoked(principal.clone()));
    }
    Ok(principal.clone())
}

/// The token of `Bearer <token>` (scheme case-insensitive, per RFC 9110).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PriceTable;
    use crate::snapshot::{ConfigParts, Settings};
    use crate::upstream::Routes;
    use floopy_model::ControlData;
    use uuid::Uuid;

    const KEY: &str = "fpk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const REVOKED: &str = "fpk_rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";

    fn snapshot() -> Snapshot {
        let key = |secret: &str, revoked| ApiKey {
            id: Uuid::now_v7(),
            org_id: Uuid::from_u128(1),
            name: "k".into(),
            hash: hash_key(secret.as_bytes()),
            environment: None,
            project_id: None,
            default_project_id: None,
            revoked,
        };
        let data = ControlData {
            api_keys: vec![Arc::new(key(KEY, false)), Arc::new(key(REVOKED, true))],
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

    #[test]
    fn accepts_a_known_key_with_any_case_scheme() {
        let snap = snapshot();
        for header in [
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
            format!("BEARER  {KEY} "),
        ] {
            let p = authenticate(&snap, Some(header.as_bytes()));
            assert!(p.is_ok(), "header {header:?} should authenticate");
        }
    }

    #[test]
    fn rejects_missing_malformed_unknown_and_revoked_keys() {
        let snap = snapshot();
        assert_eq!(authenticate(&snap, None), Err(AuthError::MissingKey));
        assert_eq!(
            authenticate(&snap, Some(b"Basic abc")),
            Err(AuthError::MissingKey)
        );
        assert_eq!(
            authenticate(&snap, Some(b"Bearer ")),
            Err(AuthError::MissingKey)
        );
        assert_eq!(
            authenticate(&snap, Some(b"Bearer")),
            Err(AuthError::MissingKey)
        );
        assert_eq!(
            authenticate(&snap, Some(b"Bearer fpk_nope")),
            Err(AuthError::UnknownKey)
        );
        let revoked = authenticate(&snap, Some(format!("Bearer {REVOKED}").as_bytes()));
        assert!(matches!(revoked, Err(AuthError::Revoked(k)) if k.revoked));
    }
}
