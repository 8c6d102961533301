//! Authentication: who the caller is.
//!
//! - Passwords are stored only as Argon2id hashes (PHC strings), hashed and
//!   verified on a blocking thread (about 20 ms of CPU each).
//! - The dashboard signs in with a session cookie (`floopy_session`:
//!   HttpOnly, SameSite=Strict, Secure unless configured off, Path=/). Every
//!   state-changing request made with the cookie must carry the session's
//!   CSRF token in `x-csrf-token`.
//! - Scripts use personal access tokens (`Authorization: Bearer fpu_...`):
//!   shown once, stored as SHA-256, revocable; no CSRF token (a browser
//!   never sends one on its own).
//! - Failed logins are throttled per account and per client address within
//!   a sliding window.
//!
//! Secrets (passwords, session and token strings) are never logged nor
//! written to the audit log; only their hashes are stored.

use std::net::SocketAddr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use floopy_control_db::tables::sessions;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "floopy_session";
/// The header a cookie-authenticated state change carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The prefix of personal access tokens.
pub const TOKEN_PREFIX: &str = "fpu_";

/// A random secret: `prefix` and 40 base62 characters (about 238 bits).
pub fn new_secret(prefix: &str) -> Result<String, ApiError> {
    floopy_model::random_secret(prefix, 40).map_err(ApiError::internal)
}

/// SHA-256 of a secret: how sessions and tokens are stored.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    floopy_model::hash_key(secret.as_bytes()).to_vec()
}

/// An Argon2id hash (PHC string) of `password`, on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(ApiError::internal)?;
        let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// A hash of no password, verified against when the account does not exist,
/// so that an unknown email costs the same time as a wrong password. Made
/// once, with the same parameters as every stored hash.
fn no_account_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::encode_b64(&[7u8; 16]).ok();
        salt.and_then(|salt| {
            Argon2::default()
                .hash_password(b"no account has this password", &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
    })
}

/// Whether `password` matches `hash` (`None`: no such account; the work is
/// done all the same).
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let exists = hash.is_some();
        let hash = hash.unwrap_or_else(|| no_account_hash().to_string());
        let matches = PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        exists && matches
    })
    .await
    .unwrap_or(false)
}

/// Checks a password's strength at the edge: long enough to resist
/// guessing, short enough not to be a denial of service for the hasher.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if !(12..=256).contains(&n) {
        return Err(format!("must be 12 to 256 characters long (is {n})"));
    }
    Ok(())
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session cookie (whose CSRF token was checked if the method
    /// changes state).
    Session { token_hash: Vec<u8> },
    /// A personal access token.
    Token { id: Uuid },
}

/// The authenticated caller: a handler that takes one cannot forget to
/// authenticate.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub credential: Credential,
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let db = state.db().await?;
        if let Some(token) = bearer {
            if !token.starts_with(TOKEN_PREFIX) {
                return Err(ApiError::Unauthenticated);
            }
            let (id, user_id) = sessions::use_token(&db, &secret_hash(token))
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            return Ok(Caller {
                user_id,
                credential: Credential::Token { id },
            });
        }
        let session = cookie(parts, SESSION_COOKIE).ok_or(ApiError::Unauthenticated)?;
        let token_hash = secret_hash(session);
        let (user_id, csrf) = sessions::live(&db, &token_hash)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !same_secret(sent, csrf.as_bytes()) {
                return Err(ApiError::CsrfRejected);
            }
        }
        Ok(Caller {
            user_id,
            credential: Credential::Session { token_hash },
        })
    }
}

/// The client's address, for login throttling.
pub fn client_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!verify_password("correct horse battery!".into(), Some(hash)).await);
        assert!(!verify_password("anything at all".into(), None).await);
    }

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = new_secret(TOKEN_PREFIX).unwrap();
        let b = new_secret(TOKEN_PREFIX).unwrap();
        assert!(a.starts_with("fpu_") && a.len() == 44, "{a}");
        assert_ne!(a, b);
        assert_eq!(secret_hash(&a).len(), 32);
    }

    #[test]
    fn password_length_is_checked() {
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
        assert!(check_password(&"x".repeat(257)).is_err());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
