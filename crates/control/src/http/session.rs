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
use crate::auth::{
    client_address, new_secret, secret_hash, verify_password, Caller, Credential, SESSION_COOKIE,
    TOKEN_PREFIX,
};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use floopy_control_db::tables::orgs;
use floopy_control_db::tables::sessions::{self, TokenRow};
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
    responses((status = 200, description = "Signed in: the floopy_session cookie is set", body = LoggedIn), crate::http::schema::Refusals),
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
    let (by_account, by_client) = sessions::recent_failures(&db, &email, &client, window).await?;
    if by_account >= i64::from(throttle.max_failures_per_account)
        || by_client >= i64::from(throttle.max_failures_per_client)
    {
        return Err(ApiError::LoginThrottled {
            retry_after_secs: throttle.window.as_secs(),
        });
    }
    let user = sessions::user_by_email(&db, &email).await?;
    let hash = user.as_ref().and_then(|(_, hash)| hash.clone());
    // The attempt counts as a failure until the password is verified, so
    // attempts made at the same moment all count against the limit.
    let attempt = sessions::count_attempt(&db, &email, &client).await?;
    if !verify_password(body.password, hash).await {
        tracing::info!(client = %client, "failed login");
        return Err(ApiError::InvalidCredentials);
    }
    // Failures older than the window go as their owner signs in, and
    // expired sessions as a new one opens: the tables stay the size of
    // what is live.
    sessions::succeeded(&db, attempt, &email, window).await?;
    let Some((user_id, _)) = user else {
        return Err(ApiError::InvalidCredentials);
    };
    let session = new_secret("")?;
    let csrf_token = new_secret("")?;
    let ttl = state.config.session_ttl.as_secs_f64();
    sessions::open(&db, user_id, &secret_hash(&session), &csrf_token, ttl).await?;
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
    responses((status = 204, description = "Signed out"), crate::http::schema::Refusals),
)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if let Credential::Session { token_hash } = &caller.credential {
        let db = state.db().await?;
        sessions::close(&db, token_hash).await?;
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
    responses((status = 200, body = Me), crate::http::schema::Refusals),
)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let db = state.db().await?;
    let (email, name) = sessions::user(&db, caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let orgs = orgs::memberships(&db, caller.user_id)
        .await?
        .into_iter()
        .map(|(id, name, role)| MyOrg { id, name, role })
        .collect();
    let csrf_token = match &caller.credential {
        Credential::Session { token_hash } => {
            sessions::live(&db, token_hash).await?.map(|(_, csrf)| csrf)
        }
        Credential::Token { .. } => None,
    };
    Ok(Json(Me {
        id: caller.user_id,
        email,
        name,
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
    responses((status = 201, body = CreatedToken), crate::http::schema::Refusals),
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
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let actor = Actor {
        org_id: None,
        user_id: Some(caller.user_id),
    };
    let hash = secret_hash(&token);
    let row =
        sessions::insert_token(&tx, actor, caller.user_id, &body.name, &hash, &prefix).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            view: row.into(),
            token,
        }),
    ))
}

impl From<TokenRow> for TokenView {
    fn from(t: TokenRow) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked: t.revoked,
        }
    }
}

/// `GET /v1/tokens`: the caller's tokens (never the secrets).
#[utoipa::path(
    operation_id = "session_list_tokens",
    tag = "session",
    get,
    path = "/v1/tokens",
    params(PageQuery),
    responses((status = 200, body = Page<TokenView>), crate::http::schema::Refusals),
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(page): QueryParams<PageQuery>,
) -> Result<Json<Page<TokenView>>, ApiError> {
    let (limit, after) = page.parse()?;
    let db = state.db().await?;
    let rows = sessions::list_tokens(&db, caller.user_id, after, limit + 1).await?;
    let items = rows.into_iter().map(TokenView::from).collect();
    Ok(Json(Page::new(items, limit, |t| t.id)))
}

/// `DELETE /v1/tokens/{token}`: revokes one of the caller's tokens.
#[utoipa::path(
    operation_id = "session_revoke_token",
    tag = "session",
    delete,
    path = "/v1/tokens/{token}",
    params(("token" = Uuid, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"), crate::http::schema::Refusals),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Ids(token): Ids<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut db = state.db().await?;
    let tx = db.transaction().await?;
    let actor = Actor {
        org_id: None,
        user_id: Some(caller.user_id),
    };
    if !sessions::revoke_token(&tx, actor, caller.user_id, token).await? {
        return Err(ApiError::NotFound("token"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
