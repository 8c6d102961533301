//! `GatewayError`: every error the gateway itself answers, and the single
//! mapping to an HTTP status and an OpenAI-shaped JSON body
//! (`{"error": {"message", "type", "code", "param"}}`); also which Pingora
//! proxying failures are the provider's (502/504) and which the client's
//! (no answer, no upstream error). Errors a provider answers are not here:
//! they are passed through unchanged.

use bytes::Bytes;
use pingora_error::{ErrorSource, ErrorType};

use crate::auth::AuthError;
use crate::project::ProjectError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("no route for {method} {path}")]
    UnknownPath { method: String, path: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request bodies over {limit} bytes must be sent with Content-Length")]
    LengthRequired { limit: usize },
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body has no \"model\"")]
    MissingModel,
    /// A feedback body's field is missing or out of range.
    #[error("{message}")]
    InvalidFeedback {
        param: &'static str,
        message: String,
    },
    /// A feedback body's `request_id` is no request of the key's org.
    #[error("request {0} is not a request of this API key's organization")]
    UnknownRequest(uuid::Uuid),
    #[error("the model {0:?} does not exist or is not served by this gateway")]
    UnknownModel(String),
    #[error("the model {model:?} is not served on {path}")]
    ModelPathMismatch { model: String, path: String },
    #[error("rate limit of {limit} requests per minute reached for the {environment} environment; retry in {retry_after_secs} s")]
    RateLimited {
        environment: &'static str,
        limit: u32,
        retry_after_secs: u64,
    },
    #[error("the request's header block exceeds {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("the request's framing is ambiguous: {0}")]
    AmbiguousFraming(&'static str),
    #[error("too many failed authentications from this address; retry in a minute")]
    AuthThrottled,
    #[error("the monthly cost cap of the {environment} environment is reached")]
    CostCapReached { environment: &'static str },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the provider could not be reached")]
    UpstreamUnreachable,
    #[error("the provider did not answer in time")]
    UpstreamTimeout,
    #[error("the provider connection failed: {0}")]
    UpstreamFailed(String),
    #[error("internal gateway error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::Auth(_) => 401,
            GatewayError::Project(ProjectError::InvalidProjectId) => 400,
            GatewayError::Project(ProjectError::ProjectMismatch { .. }) => 403,
            GatewayError::Project(ProjectError::ProjectNotFound(_)) => 404,
            GatewayError::UnknownPath { .. } => 404,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::LengthRequired { .. } => 411,
            GatewayError::InvalidJson(_) => 400,
            GatewayError::AmbiguousFraming(_) => 400,
            GatewayError::HeadersTooLarge { .. } => 431,
            GatewayError::MissingModel => 400,
            GatewayError::InvalidFeedback { .. } => 400,
            GatewayError::UnknownRequest(_) => 404,
            GatewayError::UnknownModel(_) => 404,
            GatewayError::ModelPathMismatch { .. } => 400,
            GatewayError::RateLimited { .. } | GatewayError::AuthThrottled => 429,
            GatewayError::CostCapReached { .. } => 402,
            GatewayError::BodyRead(_) => 400,
            GatewayError::UpstreamUnreachable => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::UpstreamFailed(_) => 502,
            GatewayError::Internal(_) => 500,
        }
    }

    /// The `code` of the error body; also the log record's `error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Auth(AuthError::MissingKey) => "missing_api_key",
            GatewayError::Auth(AuthError::UnknownKey) => "invalid_api_key",
            GatewayError::Auth(AuthError::Revoked(_)) => "api_key_revoked",
            GatewayError::Project(ProjectError::InvalidProjectId) => "invalid_project_id",
            GatewayError::Project(ProjectError::ProjectMismatch { .. }) => "project_mismatch",
            GatewayError::Project(ProjectError::ProjectNotFound(_)) => "project_not_found",
            GatewayError::UnknownPath { .. } => "unknown_url",
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::LengthRequired { .. } => "length_required",
            GatewayError::InvalidJson(_) => "invalid_json",
            GatewayError::AmbiguousFraming(_) => "invalid_request_framing",
            GatewayError::HeadersTooLarge { .. } => "request_headers_too_large",
            GatewayError::MissingModel => "missing_model",
            GatewayError::InvalidFeedback { .. } => "invalid_feedback",
            GatewayError::UnknownRequest(_) => "request_not_found",
            GatewayError::UnknownModel(_) => "model_not_found",
            GatewayError::ModelPathMismatch { .. } => "model_path_mismatch",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            GatewayError::AuthThrottled => "too_many_failed_authentications",
            GatewayError::CostCapReached { .. } => "environment_cost_cap_exceeded",
            GatewayError::BodyRead(_) => "body_read_error",
            GatewayError::UpstreamUnreachable => "upstream_unreachable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamFailed(_) => "upstream_error",
            GatewayError::Internal(_) => "internal_error",
        }
    }

    /// OpenAI's error `type`.
    fn kind(&self) -> &'static str {
        match self {
            GatewayError::Auth(_) => "authentication_error",
            GatewayError::Project(ProjectError::ProjectMismatch { .. }) => "permission_error",
            GatewayError::Project(_)
            | GatewayError::UnknownPath { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::LengthRequired { .. }
            | GatewayError::InvalidJson(_)
            | GatewayError::AmbiguousFraming(_)
            | GatewayError::HeadersTooLarge { .. }
            | GatewayError::MissingModel
            | GatewayError::InvalidFeedback { .. }
            | GatewayError::UnknownRequest(_)
            | GatewayError::UnknownModel(_)
            | GatewayError::ModelPathMismatch { .. }
            | GatewayError::BodyRead(_) => "invalid_request_error",
            GatewayError::RateLimited { .. } | GatewayError::AuthThrottled => "requests",
            GatewayError::CostCapReached { .. } => "insufficient_quota",
            GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamTimeout
            | GatewayError::UpstreamFailed(_) => "upstream_error",
            GatewayError::Internal(_) => "server_error",
        }
    }

    /// The request field the error is about, if any (OpenAI's `param`).
    fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::Project(ProjectError::InvalidProjectId) => Some("floopy-project-id"),
            GatewayError::InvalidFeedback { param, .. } => Some(param),
            GatewayError::UnknownRequest(_) => Some("request_id"),
            GatewayError::MissingModel
            | GatewayError::UnknownModel(_)
            | GatewayError::ModelPathMismatch { .. } => Some("model"),
            GatewayError::Auth(_)
            | GatewayError::Project(ProjectError::ProjectMismatch { .. })
            | GatewayError::Project(ProjectError::ProjectNotFound(_))
            | GatewayError::UnknownPath { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::LengthRequired { .. }
            | GatewayError::InvalidJson(_)
            | GatewayError::AmbiguousFraming(_)
            | GatewayError::HeadersTooLarge { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::AuthThrottled
            | GatewayError::CostCapReached { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamTimeout
            | GatewayError::UpstreamFailed(_)
            | GatewayError::Internal(_) => None,
        }
    }

    /// The error to answer for a failure while proxying, or `None` when the
    /// client is the one that went away (nothing to answer, and not the
    /// provider's fault).
    pub fn from_proxy_failure(e: &pingora_error::Error) -> Option<GatewayError> {
        use ErrorType::*;
        match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                Some(GatewayError::UpstreamTimeout)
            }
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
            | TLSHandshakeFailure | InvalidCert | HandshakeError | BindError | SocketError => {
                Some(GatewayError::UpstreamUnreachable)
            }
            _ => match e.esource() {
                ErrorSource::Downstream => None,
                ErrorSource::Upstream => Some(GatewayError::UpstreamFailed(e.to_string())),
                ErrorSource::Internal | ErrorSource::Unset => {
                    Some(GatewayError::Internal(e.to_string()))
                }
            },
        }
    }

    /// The JSON error body.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.kind(),
                "code": self.code(),
                "param": self.param(),
            }
        });
        Bytes::from(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn body_is_openai_shaped() {
        let e = GatewayError::Project(ProjectError::ProjectNotFound(Uuid::nil()));
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 404);
        assert_eq!(v["error"]["code"], "project_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["param"].is_null());
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("00000000-0000-0000-0000-000000000000"));
    }

    #[test]
    fn a_client_hanging_up_is_nobody_s_error_to_answer() {
        let hang_up =
            pingora_error::Error::explain(ErrorType::WriteError, "client gone").into_down();
        assert_eq!(GatewayError::from_proxy_failure(&hang_up), None);
        let refused = pingora_error::Error::explain(ErrorType::ConnectRefused, "refused");
        assert_eq!(
            GatewayError::from_proxy_failure(&refused),
            Some(GatewayError::UpstreamUnreachable)
        );
        let cut = pingora_error::Error::explain(ErrorType::ReadError, "reset").into_up();
        assert!(matches!(
            GatewayError::from_proxy_failure(&cut),
            Some(GatewayError::UpstreamFailed(_))
        ));
        let slow = pingora_error::Error::explain(ErrorType::ReadTimedout, "slow").into_up();
        assert_eq!(
            GatewayError::from_proxy_failure(&slow),
            Some(GatewayError::UpstreamTimeout)
        );
    }

    #[test]
    fn statuses_follow_the_spec() {
        assert_eq!(GatewayError::Auth(AuthError::UnknownKey).status(), 401);
        assert_eq!(
            GatewayError::Project(ProjectError::InvalidProjectId).status(),
            400
        );
        assert_eq!(
            GatewayError::Project(ProjectError::ProjectMismatch {
                locked: Uuid::nil(),
                requested: Uuid::nil()
            })
            .status(),
            403
        );
        assert_eq!(GatewayError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(GatewayError::InvalidJson(String::new()).status(), 400);
        assert_eq!(GatewayError::UpstreamUnreachable.status(), 502);
        assert_eq!(GatewayError::UpstreamTimeout.status(), 504);
    }
}
