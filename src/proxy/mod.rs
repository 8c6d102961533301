//! `Gateway`, the `ProxyHttp` implementation: a dispatcher. Each phase reads
//! from the session, calls one function of a concern module (`auth`,
//! `project`, `body`, `upstream`, `usage`, `logs`), and keeps the result in
//! the request context. Phase contracts, in order:
//!
//! - `request_filter`: load the snapshot once, authenticate, route, resolve
//!   the project, read the body (the model picks the provider). Answers
//!   itself on any error and for `GET /v1/models`.
//! - `upstream_peer`: the chosen provider's peer.
//! - `upstream_request_filter`: provider credential, path, length headers.
//! - `request_body_filter`: sends the body kept in the context.
//! - `response_filter` / `response_body_filter`: gateway headers; usage from
//!   the stream or the body, stripping the usage chunk the gateway asked for.
//! - `fail_to_proxy`: the OpenAI-shaped 502/504.
//! - `logging`: one request log record, every request that reached auth.

mod body_reader;
pub mod ctx;
mod record;
pub mod route;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use pingora_error::{ErrorSource, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;

use crate::auth::{authenticate, AuthError};
use crate::body::{parse_request, request_stream_usage};
use crate::error::GatewayError;
use crate::limits::{LimitRefusal, Limiter};
use crate::logs::LogSink;
use crate::metrics::Metrics;
use crate::pricing::estimate_cost;
use crate::project::resolve_project;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::usage::json::ResponseCapture;
use crate::usage::sse::SseUsageParser;
use ctx::RequestCtx;
use route::Route;

pub const REQUEST_ID_HEADER: &str = "floopy-request-id";
pub const PROJECT_ID_HEADER: &str = "floopy-project-id";
/// Parsed once: a lookup by `&str` parses the name on every call.
static PROJECT_ID_NAME: http::HeaderName = http::HeaderName::from_static(PROJECT_ID_HEADER);

pub struct Gateway {
    store: Arc<SnapshotStore>,
    limiter: Arc<Limiter>,
    sink: Arc<dyn LogSink>,
    metrics: Arc<Metrics>,
}

/// What `request_filter` decided.
enum Admission {
    /// Go on to the provider.
    Forward,
    /// The gateway answered (`GET /v1/models`).
    Answered,
}

impl Gateway {
    pub fn new(
        store: Arc<SnapshotStore>,
        limiter: Arc<Limiter>,
        sink: Arc<dyn LogSink>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Gateway {
            store,
            limiter,
            sink,
            metrics,
        }
    }

    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> Result<Admission, GatewayError> {
        let authorization = session
            .get_header(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let principal = match authenticate(snapshot, authorization) {
            Ok(principal) => principal,
            Err(AuthError::Revoked(principal)) => {
                ctx.principal = Some(principal.clone());
                return Err(AuthError::Revoked(principal).into());
            }
            Err(e) => return Err(e.into()),
        };
        ctx.principal = Some(principal.clone());

        let req = session.req_header();
        let route = Route::classify(&req.method, req.uri.path()).ok_or_else(|| {
            GatewayError::UnknownPath {
                method: req.method.to_string(),
                path: req.uri.path().to_string(),
            }
        })?;
        ctx.route = Some(route);

        let header = session.get_header(&PROJECT_ID_NAME).map(|v| v.as_bytes());
        ctx.project_id = Some(resolve_project(snapshot, &principal, header)?);

        if route == Route::Models {
            respond(session, ctx, 200, snapshot.config.models_body.clone()).await;
            return Ok(Admission::Answered);
        }

        let body = body_reader::read_body(session, snapshot.settings().max_body_bytes).await?;
        let mut fields = parse_request(&body)?;
        // The model and the user belong to the request's log record from
        // here on, whatever happens next.
        ctx.model = std::mem::take(&mut fields.model);
        ctx.stream = fields.stream;
        ctx.body_user = fields.user.take();
        let provider = snapshot
            .routes()
            .provider_for(&ctx.model)
            .ok_or_else(|| GatewayError::UnknownModel(ctx.model.clone()))?;
        if route.provider_kind() != Some(provider.kind) {
            return Err(GatewayError::ModelPathMismatch {
                model: ctx.model.clone(),
                path: session.req_header().uri.path().to_string(),
            });
        }
        ctx.provider = Some(provider.clone());
        if let Some(environment) = principal.environment {
            let estimate = snapshot.prices().get(&ctx.model).map_or(0, |price| {
                estimate_cost(
                    price,
                    body.len(),
                    fields
                        .max_tokens
                        .unwrap_or(snapshot.settings().default_completion_tokens),
                )
            });
            let limits = snapshot.environment_limits(principal.org_id, environment);
            match self
                .limiter
                .admit(principal.org_id, environment, limits, estimate)
            {
                Ok(admission) => {
                    ctx.rpm = admission.rpm;
                    ctx.admission = Some(admission);
                }
                Err(LimitRefusal::RateLimited(decision)) => {
                    self.metrics.rate_limited.inc();
                    ctx.rpm = Some(decision);
                    return Err(GatewayError::RateLimited {
                        environment: environment.as_str(),
                        limit: decision.limit,
                        retry_after_secs: decision.reset_secs(),
                    });
                }
                Err(LimitRefusal::CostCapReached(_)) => {
                    self.metrics.cost_capped.inc();
                    return Err(GatewayError::CostCapReached {
                        environment: environment.as_str(),
                    });
                }
            }
        }
        // The gateway needs the usage of every stream; when the client did
        // not ask for it, ask on its behalf and strip it from the answer.
        let inject_usage = fields.stream && route.supports_stream_usage() && !fields.include_usage;
        ctx.upstream_body = if inject_usage {
            request_stream_usage(&body, &fields)?
        } else {
            body
        };
        ctx.inject_usage = inject_usage;
        Ok(Admission::Forward)
    }
}

/// Writes a complete JSON response from the gateway itself. A client that
/// went away meanwhile is not an error worth more than a debug line.
async fn respond(session: &mut Session, ctx: &mut RequestCtx, status: u16, body: Bytes) {
    ctx.status = Some(status);
    let written = async {
        let mut resp = ResponseHeader::build_no_case(status, Some(8))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        add_gateway_headers(&mut resp, ctx, Framing::Unchanged)?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    }
    .await;
    if let Err(e) = written {
        tracing::debug!(error = %e, "could not write the gateway's response");
    }
}

/// Names parsed once: `ResponseHeader::insert_header` parses (and, for a
/// name outside the standard set, allocates) the name on every call.
static REQUEST_ID_NAME: http::HeaderName = http::HeaderName::from_static(REQUEST_ID_HEADER);
static RATELIMIT_LIMIT: http::HeaderName =
    http::HeaderName::from_static("x-ratelimit-limit-requests");
static RATELIMIT_REMAINING: http::HeaderName =
    http::HeaderName::from_static("x-ratelimit-remaining-requests");
static RATELIMIT_RESET: http::HeaderName =
    http::HeaderName::from_static("x-ratelimit-reset-requests");

/// How the body of a response is framed once the gateway has seen it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// As the upstream (or the gateway) framed it.
    Unchanged,
    /// The body changes length on its way: no `Content-Length`, chunked.
    Chunked,
}

/// Adds the gateway's headers (request id, project id, OpenAI's
/// `x-ratelimit-*`) to a response, replacing any of the same name.
///
/// The header is rebuilt without Pingora's second, case-preserving name map:
/// `insert_header` parses each name and inserts into both maps, about twice
/// the cost of these inserts. Header names are case-insensitive (RFC 9110,
/// section 5.1); Pingora still writes the common ones in title case. Status,
/// version, reason phrase and extensions are kept.
fn add_gateway_headers(
    resp: &mut ResponseHeader,
    ctx: &RequestCtx,
    framing: Framing,
) -> pingora_error::Result<()> {
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let original = std::mem::replace(resp, placeholder);
    let reason = original.get_reason_phrase();
    let custom_reason = (reason != original.status.canonical_reason())
        .then(|| reason.map(str::to_owned))
        .flatten();
    let mut parts = http::response::Parts::from(original);
    let headers = &mut parts.headers;
    headers.reserve(6);
    headers.insert(REQUEST_ID_NAME.clone(), uuid_header(ctx.request_id));
    if let Some(project) = ctx.project_id {
        headers.insert(PROJECT_ID_NAME.clone(), uuid_header(project));
    }
    if let Some(rpm) = &ctx.rpm {
        // OpenAI's names and formats.
        let reset = rpm.reset_secs();
        headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(rpm.limit));
        headers.insert(
            RATELIMIT_REMAINING.clone(),
            HeaderValue::from(rpm.remaining),
        );
        let mut seconds = itoa::Buffer::new();
        let mut value = [0u8; 24];
        let digits = seconds.format(reset).as_bytes();
        value[..digits.len()].copy_from_slice(digits);
        value[digits.len()] = b's';
        headers.insert(
            RATELIMIT_RESET.clone(),
            HeaderValue::from_bytes(&value[..=digits.len()]).map_err(|e| {
                Error::because(ErrorType::InternalError, "x-ratelimit-reset-requests", e)
            })?,
        );
        if !rpm.allowed {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(reset));
        }
    }
    if framing == Framing::Chunked {
        headers.remove(http::header::CONTENT_LENGTH);
        headers.insert(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let mut rebuilt = ResponseHeader::from(parts);
    if custom_reason.is_some() {
        rebuilt.set_reason_phrase(custom_reason.as_deref())?;
    }
    *resp = rebuilt;
    Ok(())
}

/// A UUID as a header value, hyphenated and lowercase, formatted without
/// going through `Display`.
fn uuid_header(id: uuid::Uuid) -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = id.hyphenated().encode_lower(&mut buf);
    // Hex digits and hyphens are always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The gateway error for a failure while proxying, or `None` when the client
/// is the one that went away.
pub(crate) fn proxy_error(e: &pingora_error::Error) -> Option<GatewayError> {
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

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.store.load();
        ctx.snapshot = Some(snapshot.clone());
        match self.admit(session, ctx, &snapshot).await {
            Ok(Admission::Forward) => Ok(false),
            Ok(Admission::Answered) => Ok(true),
            Err(e) => {
                let body = e.body();
                let status = e.status();
                ctx.error = Some(e);
                respond(session, ctx, status, body).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &ctx.provider {
            Some(provider) => Ok(provider.peer()),
            None => Error::e_explain(ErrorType::InternalError, "no provider chosen"),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(provider) = &ctx.provider {
            provider.prepare_request(upstream_request, ctx.upstream_body.len())?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Pingora replays (the tail of) what `request_filter` read; the
        // whole body, possibly changed, is in the context.
        *body = Some(if end_of_stream {
            ctx.upstream_body.clone()
        } else {
            Bytes::new()
        });
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        ctx.status = Some(status);
        ctx.upstream_status = Some(status);
        ctx.first_byte_at.get_or_insert_with(Instant::now);
        let mut framing = Framing::Unchanged;
        if let Some(provider) = ctx
            .provider
            .as_ref()
            .filter(|_| upstream_response.status.is_success())
        {
            let is_sse = upstream_response
                .headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if is_sse {
                let parser = SseUsageParser::new(provider.kind, ctx.inject_usage);
                if parser.rewrites() {
                    framing = Framing::Chunked;
                }
                ctx.sse = Some(Box::new(parser));
            } else {
                ctx.capture = Some(ResponseCapture::default());
            }
        }
        add_gateway_headers(upstream_response, ctx, framing)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(parser) = ctx.sse.as_mut() {
            if let Some(chunk) = body.as_ref() {
                if let Some(replacement) = parser.filter(chunk) {
                    *body = Some(replacement);
                }
            }
            if end_of_stream {
                if let Some(rest) = parser.finish().filter(|rest| !rest.is_empty()) {
                    *body = Some(match body.take() {
                        Some(chunk) if !chunk.is_empty() => {
                            let mut joined = BytesMut::with_capacity(chunk.len() + rest.len());
                            joined.extend_from_slice(&chunk);
                            joined.extend_from_slice(&rest);
                            joined.freeze()
                        }
                        _ => rest,
                    });
                }
            }
            if body.as_ref().is_some_and(Bytes::is_empty) && !end_of_stream {
                *body = None;
            }
        } else if let (Some(capture), Some(chunk)) = (ctx.capture.as_mut(), body.as_ref()) {
            capture.push(chunk);
        }
        Ok(None)
    }

    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        // Pingora's error lines carry this: make them findable by request id.
        format!(
            "{}, floopy-request-id: {}",
            session.as_ref().request_summary(),
            ctx.request_id.hyphenated()
        )
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // A client hanging up is routine at the edge; it is in the request
        // log, not worth an error line each.
        error.esource() == &ErrorSource::Downstream
            && matches!(
                error.etype(),
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
            )
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        self.metrics.upstream_errors.inc();
        let Some(error) = proxy_error(e) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let status = error.status();
        // Once the answer has begun, its status stands; the log notes the
        // failure from the error itself.
        if session.response_written().is_none() {
            let body = error.body();
            ctx.error = Some(error);
            respond(session, ctx, status, body).await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.metrics.latency.observe(ctx.started.elapsed());
        if let Some(first_byte) = ctx.first_byte_at {
            self.metrics.ttfb.observe(first_byte - ctx.started);
        }
        let Some(record) = record::build(session.req_header(), e, ctx, &self.metrics) else {
            // An unknown key: no org, no record; still counted.
            self.metrics
                .count_request(ctx.status.unwrap_or(499), "", "");
            return;
        };
        self.metrics
            .count_request(record.status, record.environment, &record.provider);
        if let Some(key) = &ctx.principal {
            let cap = ctx
                .snapshot
                .as_ref()
                .zip(key.environment)
                .and_then(|(snapshot, env)| snapshot.environment_limits(key.org_id, env))
                .and_then(|l| l.monthly_cost_micro_usd);
            self.limiter.settle(
                ctx.admission.take().unwrap_or_default(),
                key.org_id,
                ctx.project_id,
                cap,
                record.cost_micro_usd,
            );
        }
        self.sink.submit(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::rpm::RpmDecision;

    fn wire(resp: &ResponseHeader) -> String {
        let mut buf = Vec::new();
        resp.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn gateway_headers_replace_upstream_ones_and_keep_the_rest() -> pingora_error::Result<()> {
        let mut resp = ResponseHeader::build(200, None)?;
        resp.set_reason_phrase(Some("Fine"))?;
        resp.insert_header("X-Upstream-Thing", "kept")?;
        resp.insert_header("Content-Type", "application/json")?;
        resp.insert_header("Content-Length", "10")?;
        resp.insert_header("x-ratelimit-limit-requests", "5000")?;
        resp.insert_header("x-ratelimit-limit-tokens", "800000")?;
        let mut ctx = RequestCtx::new();
        ctx.project_id = Some(uuid::Uuid::from_u128(0xabc));
        ctx.rpm = Some(RpmDecision {
            allowed: false,
            limit: 60,
            remaining: 0,
            reset_ms: 1_500,
        });

        add_gateway_headers(&mut resp, &ctx, Framing::Unchanged)?;

        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(resp.get_reason_phrase(), Some("Fine"));
        let value = |name: &str| {
            let values: Vec<_> = resp.headers.get_all(name).iter().collect();
            assert!(values.len() <= 1, "{name} appears {} times", values.len());
            values
                .first()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = ctx.request_id.hyphenated().to_string();
        assert_eq!(
            value("floopy-request-id").as_deref(),
            Some(request_id.as_str())
        );
        assert_eq!(
            value("floopy-project-id").as_deref(),
            Some("00000000-0000-0000-0000-000000000abc")
        );
        assert_eq!(value("x-ratelimit-limit-requests").as_deref(), Some("60"));
        assert_eq!(
            value("x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        assert_eq!(value("x-ratelimit-reset-requests").as_deref(), Some("2s"));
        assert_eq!(value("retry-after").as_deref(), Some("2"));
        assert_eq!(value("x-ratelimit-limit-tokens").as_deref(), Some("800000"));
        assert_eq!(value("x-upstream-thing").as_deref(), Some("kept"));
        assert_eq!(value("content-length").as_deref(), Some("10"));

        let wire = wire(&resp);
        assert!(
            wire.contains("Content-Type: application/json\r\n"),
            "{wire}"
        );
        assert!(wire.contains("Content-Length: 10\r\n"), "{wire}");
        assert!(wire.contains("x-upstream-thing: kept\r\n"), "{wire}");
        assert!(
            wire.contains(&format!("floopy-request-id: {request_id}\r\n")),
            "{wire}"
        );
        assert_eq!(wire.matches("\r\n").count(), 10, "{wire}");
        Ok(())
    }

    #[test]
    fn chunked_framing_drops_the_length() -> pingora_error::Result<()> {
        let mut resp = ResponseHeader::build(200, None)?;
        resp.insert_header("Content-Type", "text/event-stream")?;
        resp.insert_header("Content-Length", "300")?;
        let ctx = RequestCtx::new();

        add_gateway_headers(&mut resp, &ctx, Framing::Chunked)?;

        assert_eq!(resp.get_reason_phrase(), Some("OK"));
        assert!(resp.headers.get("content-length").is_none());
        assert_eq!(
            resp.headers.get("transfer-encoding").map(|v| v.as_bytes()),
            Some(&b"chunked"[..])
        );
        assert!(resp.headers.get("x-ratelimit-limit-requests").is_none());
        assert!(resp.headers.get("floopy-project-id").is_none());
        assert!(resp.headers.get("floopy-request-id").is_some());
        Ok(())
    }
}
