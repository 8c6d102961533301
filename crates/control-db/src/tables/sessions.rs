//! `sessions`, `access_tokens` and `login_failures`: how a person signs in
//! to the control plane (a session cookie with its CSRF token, or a
//! personal access token), and the failed logins that throttle guessing.
//! Only the SHA-256 of a session or token string is stored.

use serde::Serialize;
use tokio_postgres::{Client, Row, Transaction};
use uuid::Uuid;

use super::{audit, Actor, DbError};
use crate::rfc3339;

/// Failed logins within the last `window_secs`: (for `email`, from
/// `client`).
pub async fn recent_failures(
    db: &Client,
    email: &str,
    client: &str,
    window_secs: f64,
) -> Result<(i64, i64), DbError> {
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE email = $1) AS by_account,
                    count(*) FILTER (WHERE client = $2) AS by_client
               FROM login_failures WHERE at > now() - make_interval(secs => $3)",
            &[&email, &client, &window_secs],
        )
        .await?;
    Ok((row.try_get("by_account")?, row.try_get("by_client")?))
}

/// Counts a login attempt as a failure (until `succeeded` says otherwise);
/// its id.
pub async fn count_attempt(db: &Client, email: &str, client: &str) -> Result<i64, DbError> {
    Ok(db
        .query_one(
            "INSERT INTO login_failures (email, client) VALUES ($1, $2) RETURNING id",
            &[&email, &client],
        )
        .await?
        .try_get("id")?)
}

/// The attempt `attempt` succeeded: it is no failure. Failures of `email`
/// older than the window go too.
pub async fn succeeded(
    db: &Client,
    attempt: i64,
    email: &str,
    window_secs: f64,
) -> Result<(), DbError> {
    db.execute("DELETE FROM login_failures WHERE id = $1", &[&attempt])
        .await?;
    db.execute(
        "DELETE FROM login_failures WHERE email = $1 AND at <= now() - make_interval(secs => $2)",
        &[&email, &window_secs],
    )
    .await?;
    Ok(())
}

/// The user signing in as `email` (lowercase): their id and password hash.
pub async fn user_by_email(
    db: &Client,
    email: &str,
) -> Result<Option<(Uuid, Option<String>)>, DbError> {
    db.query_opt(
        "SELECT id, password_hash FROM users WHERE lower(email) = $1",
        &[&email],
    )
    .await?
    .map(|r| Ok((r.try_get("id")?, r.try_get("password_hash")?)))
    .transpose()
}

/// A user's email and name.
pub async fn user(db: &Client, user: Uuid) -> Result<Option<(String, Option<String>)>, DbError> {
    db.query_opt("SELECT email, name FROM users WHERE id = $1", &[&user])
        .await?
        .map(|r| Ok((r.try_get("email")?, r.try_get("name")?)))
        .transpose()
}

/// Opens a session for `user` for `ttl_secs` (their expired sessions go).
pub async fn open(
    db: &Client,
    user: Uuid,
    token_hash: &[u8],
    csrf_token: &str,
    ttl_secs: f64,
) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()",
        &[&user],
    )
    .await?;
    db.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        &[&token_hash, &user, &csrf_token, &ttl_secs],
    )
    .await?;
    Ok(())
}

/// Ends the session.
pub async fn close(db: &Client, token_hash: &[u8]) -> Result<(), DbError> {
    db.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
        .await?;
    Ok(())
}

/// A live session: its user and CSRF token.
pub async fn live(db: &Client, token_hash: &[u8]) -> Result<Option<(Uuid, String)>, DbError> {
    db.query_opt(
        "SELECT user_id, csrf_token FROM sessions WHERE token_hash = $1 AND expires_at > now()",
        &[&token_hash],
    )
    .await?
    .map(|r| Ok((r.try_get("user_id")?, r.try_get("csrf_token")?)))
    .transpose()
}

/// An active access token: (its id, its user). Its `last_used_at` is
/// refreshed at most once a minute: a script's every read is not a write.
pub async fn use_token(db: &Client, token_hash: &[u8]) -> Result<Option<(Uuid, Uuid)>, DbError> {
    db.query_opt(
        "WITH t AS (SELECT id, user_id, last_used_at FROM access_tokens
                     WHERE token_hash = $1 AND revoked_at IS NULL),
              touched AS (UPDATE access_tokens a SET last_used_at = now() FROM t
                           WHERE a.id = t.id AND (t.last_used_at IS NULL
                                 OR t.last_used_at < now() - interval '1 minute'))
         SELECT id, user_id FROM t",
        &[&token_hash],
    )
    .await?
    .map(|r| Ok((r.try_get("id")?, r.try_get("user_id")?)))
    .transpose()
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

const TOKEN_COLUMNS: &str = concat!(
    "id, name, prefix, ",
    rfc3339!("created_at"),
    " AS created_at, ",
    rfc3339!("last_used_at"),
    " AS last_used_at, revoked_at IS NOT NULL AS revoked"
);

fn token(r: &Row) -> Result<TokenRow, DbError> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked: r.try_get("revoked")?,
    })
}

/// Creates a personal access token for the actor (`token.create`).
pub async fn insert_token(
    tx: &Transaction<'_>,
    actor: Actor,
    user: Uuid,
    name: &str,
    token_hash: &[u8],
    prefix: &str,
) -> Result<TokenRow, DbError> {
    let id = Uuid::now_v7();
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO access_tokens (id, user_id, name, token_hash, prefix)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLUMNS}"
            ),
            &[&id, &user, &name, &token_hash, &prefix],
        )
        .await?;
    let after = token(&row)?;
    audit::change(
        tx,
        actor,
        "token.create",
        "access_token",
        id,
        None,
        Some(&after),
    )
    .await?;
    Ok(after)
}

/// A page of the user's tokens after `after`, by id.
pub async fn list_tokens(
    db: &Client,
    user: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<TokenRow>, DbError> {
    db.query(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens
              WHERE user_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ),
        &[&user, &after, &limit],
    )
    .await?
    .iter()
    .map(token)
    .collect()
}

/// Revokes one of the user's active tokens (`token.revoke`); whether there
/// was one.
pub async fn revoke_token(
    tx: &Transaction<'_>,
    actor: Actor,
    user: Uuid,
    id: Uuid,
) -> Result<bool, DbError> {
    let n = tx
        .execute(
            "UPDATE access_tokens SET revoked_at = now()
              WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            &[&id, &user],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    let entry = audit::Entry {
        action: "token.revoke",
        object_type: "access_token",
        object_id: id.to_string(),
        before: None,
        after: None,
    };
    audit::record(tx, actor, entry).await?;
    Ok(true)
}
