//! Signing in and out, the caller's own view, and personal access tokens.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Ids, JsonBody, Page, PageQuery, QueryParams};
use crate::app::AppState;
use crate::auth::{
    client_address, new_secret, secret_hash, verify_password, Caller, Credential, SESSION_COOKIE,
    TOKEN_PREFIX,
};
use crate::error::{ApiError, FieldError};
use crate::rfc3339;
use floopy_control_db::tables::audit;
use floopy_control_db::Actor;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoggedIn {
    pub user_id: Uuid,
    /// Send it back in `x-csrf-token` on every state-changing request made
    /// with the session cookie.
    pub csrf_token: String,
}

/// The client's address, from the connection.
pub struct ClientAddress(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ClientAddress(client_address(parts)))
    }
}

/// `POST /v1/auth/login`: a session cookie and its CSRF token, or 401; 429
/// once the account or the client address failed too often.
#[utoipa::path(
    operation_id = "session_login",
    tag = "session",
    post,
    path = "/v1/auth/login",
    request_body = Login,
    responses((status = 200, description = "Signed in: the floopy_session cookie is set", body = LoggedIn), crate::openapi::Refusals),
    security(()),
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    JsonBody(body): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    if let Err(message) = floopy_model::validate::check_length(&email, (1, 254)) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "email", message,
        )]));
    }
    let db = state.db().await?;
    let throttle = state.config.throttle;
    let window = throttle.window.as_secs_f64();
    let counts = db
        .query_one(
            "SELECT count(*) FILTER (WHERE email = $1), count(*) FILTER (WHERE client = $2)
               FROM login_failures WHERE at > now() - make_interval(secs => $3)",
            &[&email, &client, &window],
        )
        .await?;
    let (by_account, by_client): (i64, i64) = (counts.get(0), counts.get(1));
    if by_account >= i64::from(throttle.max_failures_per_account)
        || by_client >= i64::from(throttle.max_failures_per_client)
    {
        return Err(ApiError::LoginThrottled {
            retry_after_secs: throttle.window.as_secs(),
        });
    }
    let user = db
        .query_opt(
            "SELECT id, password_hash FROM users WHERE lower(email) = $1",
            &[&email],
        )
        .await?;
    let hash = user
        .as_ref()
        .and_then(|row| row.get::<_, Option<String>>(1));
    // The attempt counts as a failure until the password is verified, so
    // attempts made at the same moment all count against the limit.
    let attempt: i64 = db
        .query_one(
            "INSERT INTO login_failures (email, client) VALUES ($1, $2) RETURNING id",
            &[&email, &client],
        )
        .await?
        .get(0);
    if !verify_password(body.password, hash).await {
        tracing::info!(client = %client, "failed login");
        return Err(ApiError::InvalidCredentials);
    }
    db.execute("DELETE FROM login_failures WHERE id = $1", &[&attempt])
        .await?;
    let Some(user) = user else {
        return Err(ApiError::InvalidCredentials);
    };
    let user_id: Uuid = user.get(0);
    // Expired sessions of this user, and failures older than the window,
    // go as their owner signs in: the tables stay the size of what is live.
    db.execute(
        "DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()",
        &[&user_id],
    )
    .await?;
    db.execute(
        "DELETE FROM login_failures WHERE email = $1 AND at <= now() - make_interval(secs => $2)",
        &[&email, &window],
    )
    .await?;
    let session = new_secret("")?;
    let csrf_token = new_secret("")?;
    let ttl = state.config.session_ttl.as_secs_f64();
    db.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        &[&secret_hash(&session), &user_id, &csrf_token, &ttl],
    )
    .await?;
    let secure = if state.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        state.config.session_ttl.as_secs()
    );
    let mut response = Json(LoggedIn {
        user_id,
        csrf_token,
    })
    .into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// `POST /v1/auth/logout`: ends the session (the cookie is cleared).
#[utoipa::path(
    operation_id = "session_logout",
    tag = "session",
    post,
    path = "/v1/auth/logout",
    responses((status = 204, description = "Signed out"), crate::openapi::Refusals),
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if let Credential::Session { token_hash } = &caller.credential {
        let db = state.db().await?;
        db.execute("DELETE FROM sessions WHERE token_hash = $1", &[token_hash])
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("floopy_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(response)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub orgs: Vec<MyOrg>,
    /// Signed in with the session cookie: the session's CSRF token, so a
    /// page reloaded in the browser can go on changing state.
    pub csrf_token: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyOrg {
    pub id: Uuid,
    pub name: String,
    pub role: String,
}

/// `GET /v1/me`: the caller and their organizations.
#[utoipa::path(
    operation_id = "session_me",
    tag = "session",
    get,
    path = "/v1/me",
    responses((status = 200, body = Me), crate::openapi::Refusals),
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let db = state.db().await?;
    let user = db
        .query_one(
            "SELECT email, name FROM users WHERE id = $1",
            &[&caller.user_id],
        )
        .await?;
    let orgs = db
        .query(
            "SELECT o.id, o.name, m.role::text FROM org_members m
               JOIN organizations o ON o.id = m.org_id
              WHERE m.user_id = $1 ORDER BY o.name, o.id",
            &[&caller.user_id],
        )
        .await?
        .iter()
        .map(|row| MyOrg {
            id: row.get(0),
            name: row.get(1),
            role: row.get(2),
        })
        .collect();
    let csrf_token = match &caller.credential {
        Credential::Session { token_hash } => db
            .query_opt(
                "SELECT csrf_token FROM sessions WHERE token_hash = $1",
                &[token_hash],
            )
            .await?
            .map(|row| row.get(0)),
        Credential::Token { .. } => None,
    };
    Ok(Json(Me {
        id: caller.user_id,
        email: user.get(0),
        name: user.get(1),
        orgs,
        csrf_token,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    /// The first characters, to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// The token itself: shown this once, never again.
    pub token: String,
}

/// `POST /v1/tokens`: a personal access token for the caller.
#[utoipa::path(
    operation_id = "session_create_token",
    tag = "session",
    post,
    path = "/v1/tokens",
    request_body = NewToken,
    responses((status = 201, body = CreatedToken), crate::openapi::Refusals),
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if let Err(message) = floopy_model::validate::check_length(&body.name, (1, 200)) {
        return Err(ApiError::Validation(vec![FieldError::new("name", message)]));
    }
    let token = new_secret(TOKEN_PREFIX)?;
    let prefix = token[..TOKEN_PREFIX.len() + 6].to_string();
    let id = Uuid::now_v7();
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let row = tx
        .query_one(
            concat!(
                "INSERT INTO access_tokens (id, user_id, name, token_hash, prefix)
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
                rfc3339!("created_at")
            ),
            &[
                &id,
                &caller.user_id,
                &body.name,
                &secret_hash(&token),
                &prefix,
            ],
        )
        .await?;
    let view = TokenView {
        id,
        name: body.name,
        prefix,
        created_at: row.get(0),
        last_used_at: None,
        revoked: false,
    };
    audit::record(
        &tx,
        Actor {
            org_id: None,
            user_id: Some(caller.user_id),
        },
        audit::Entry {
            action: "token.create",
            object_type: "access_token",
            object_id: id.to_string(),
            before: None,
            after: audit::snapshot(&view),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { view, token })))
}

/// `GET /v1/tokens`: the caller's tokens (never the secrets).
#[utoipa::path(
    operation_id = "session_list_tokens",
    tag = "session",
    get,
    path = "/v1/tokens",
    params(PageQuery),
    responses((status = 200, body = Page<TokenView>), crate::openapi::Refusals),
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<TokenView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let rows = db
        .query(
            concat!(
                "SELECT id, name, prefix, ",
                rfc3339!("created_at"),
                ", ",
                rfc3339!("last_used_at"),
                ", revoked_at IS NOT NULL FROM access_tokens
                   WHERE user_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
            ),
            &[&caller.user_id, &after, &(limit + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(|row| TokenView {
            id: row.get(0),
            name: row.get(1),
            prefix: row.get(2),
            created_at: row.get(3),
            last_used_at: row.get(4),
            revoked: row.get(5),
        })
        .collect();
    Ok(Json(Page::new(items, limit, |t| t.id)))
}

/// `DELETE /v1/tokens/{token}`: revokes one of the caller's tokens.
#[utoipa::path(
    operation_id = "session_revoke_token",
    tag = "session",
    delete,
    path = "/v1/tokens/{token}",
    params(("token" = Uuid, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"), crate::openapi::Refusals),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Ids(token): Ids<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let revoked = tx
        .execute(
            "UPDATE access_tokens SET revoked_at = now()
              WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            &[&token, &caller.user_id],
        )
        .await?;
    if revoked == 0 {
        return Err(ApiError::NotFound("token"));
    }
    audit::record(
        &tx,
        Actor {
            org_id: None,
            user_id: Some(caller.user_id),
        },
        audit::Entry {
            action: "token.revoke",
            object_type: "access_token",
            object_id: token.to_string(),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
