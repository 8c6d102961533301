//! `Gateway`, the `ProxyHttp` implementation: a dispatcher. Each phase reads
//! from the session, calls plain functions of a concern module
//! (`admission`, `headers`, `upstream`, `usage`, `record`), and keeps the
//! result in the request context. Phase contracts, in order:
//!
//! - `request_filter`: load the snapshot once; `admission::admit_header`
//!   (key, route, project) decides an `Admitted`; answer `GET /v1/models`;
//!   read the body; answer `POST /v1/feedback` (`feedback::accept`);
//!   `admission::admit_body` takes the `Admitted` (model, provider, limits,
//!   usage injection). The context keeps what each step learned, refused
//!   or not. Answers itself on any error.
//! - `upstream_peer`: the chosen provider's peer.
//! - `upstream_request_filter`: provider credential, path, length headers.
//! - `request_body_filter`: sends the body kept in the context.
//! - `response_filter` / `response_body_filter`: gateway headers
//!   (`headers`); usage from the stream (`SseUsageParser::rewrite`, which
//!   strips the usage chunk the gateway asked for) or the body.
//! - `fail_to_proxy`: the OpenAI-shaped 502/504 (`GatewayError::from_proxy_failure`).
//! - `logging`: one request log record, every request that reached auth
//!   (`complete`: the record built and counted, the spend settled, the
//!   record submitted; for an answered request, before its last byte).

pub mod admission;
mod body_reader;
pub mod ctx;
mod feedback;
pub mod headers;
mod record;
pub mod route;
pub mod throttle;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;
use pingora_error::{ErrorSource, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;

use crate::auth::AuthError;
use crate::error::GatewayError;
use crate::limits::Limiter;
use crate::logs::LogSink;
use crate::metrics::Metrics;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::timeline;
use crate::usage::json::ResponseCapture;
use crate::usage::sse::SseUsageParser;
use ctx::RequestCtx;
use headers::{add_gateway_headers, Framing};
use route::Route;

pub const REQUEST_ID_HEADER: &str = "floopy-request-id";
pub const PROJECT_ID_HEADER: &str = "floopy-project-id";
/// Parsed once: a lookup by `&str` parses the name on every call.
pub(crate) static PROJECT_ID_NAME: http::HeaderName =
    http::HeaderName::from_static(PROJECT_ID_HEADER);

pub struct Gateway {
    store: Arc<SnapshotStore>,
    limiter: Arc<Limiter>,
    sink: Arc<dyn LogSink>,
    metrics: Arc<Metrics>,
    auth_throttle: throttle::AuthThrottle,
}

/// How long a refused HTTP/2 request's body may take to be read before the
/// answer goes out anyway.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
            auth_throttle: throttle::AuthThrottle::default(),
        }
    }

    /// Admission: the decisions are `admission`'s; here only the session
    /// I/O between them (reading the body, answering `GET /v1/models`).
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> Result<Admission, GatewayError> {
        let raw = session.as_http1().map(|h1| h1.get_headers_raw_bytes());
        admission::check_framing(session.req_header(), raw.as_deref()).inspect_err(|_| {
            // Where this request ends is unclear: nothing after it on this
            // connection can be trusted.
            session.set_keepalive(None);
        })?;
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let max_failures = snapshot.settings().max_failed_auth_per_minute;
        if let Some(ip) = client.filter(|ip| self.auth_throttle.is_throttled(*ip, max_failures)) {
            self.metrics.auth_throttled.inc();
            tracing::debug!(client = %ip, "failed authentications throttled");
            return Err(GatewayError::AuthThrottled);
        }
        let header = ctx
            .learn_header(admission::admit_header(snapshot, session.req_header()))
            .inspect_err(|e| {
                if let (GatewayError::Auth(AuthError::UnknownKey), Some(ip)) = (e, client) {
                    self.auth_throttle.failed(ip);
                }
            })?;
        if header.route == Route::Models {
            self.respond(session, ctx, 200, snapshot.config.models_body.clone())
                .await;
            return Ok(Admission::Answered);
        }
        let body = body_reader::read_body(session, snapshot.settings().max_body_bytes).await?;
        if header.route == Route::Feedback {
            let ts_ms = record::epoch_ms(ctx.started, Instant::now());
            let answer = feedback::accept(self.sink.as_ref(), &header, ts_ms, &body)?;
            self.respond(session, ctx, 200, answer).await;
            return Ok(Admission::Answered);
        }
        let path = session.req_header().uri.path();
        let (facts, forward) = admission::admit_body(snapshot, &self.limiter, &header, path, body);
        ctx.learn_body(facts);
        let forward = forward.inspect_err(|e| match e {
            GatewayError::RateLimited { .. } => self.metrics.rate_limited.inc(),
            GatewayError::CostCapReached { .. } => self.metrics.cost_capped.inc(),
            _ => {}
        })?;
        ctx.forward(forward);
        Ok(Admission::Forward)
    }

    /// Writes a complete JSON response from the gateway itself, its record
    /// submitted first. A client that went away meanwhile is not an error
    /// worth more than a debug line.
    async fn respond(&self, session: &mut Session, ctx: &mut RequestCtx, status: u16, body: Bytes) {
        ctx.status = Some(status);
        self.complete(session.req_header(), None, ctx);
        respond(session, ctx, status, body).await;
    }

    /// `request_filter`'s work: admission, or the gateway's own answer.
    async fn filter_request(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.store.load();
        ctx.snapshot = Some(snapshot.clone());
        match self.admit(session, ctx, &snapshot).await {
            Ok(Admission::Forward) => Ok(false),
            Ok(Admission::Answered) => Ok(true),
            Err(e) => {
                let body = e.body();
                let status = e.status();
                ctx.error = Some(e);
                if session.is_http2() && !session.is_body_done() {
                    // Over HTTP/2 an answer that ends the stream before the
                    // request body is read makes the stream reset, which
                    // clients report as a failure instead of this answer:
                    // read the rest first, for a bounded time.
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, session.drain_request_body()).await;
                }
                self.respond(session, ctx, status, body).await;
                Ok(true)
            }
        }
    }

    /// The end of a request, once: its record built and counted, its spend
    /// settled, the record submitted. Called before the answer's last byte goes to
    /// the client, so that an answered request's record outlives a crash
    /// (the sink's write-ahead log holds it from here); `logging` calls it
    /// for the requests that ended otherwise (a failure, a client gone).
    // Out of line: load-tests/instructions.sh reports its cost (one call).
    #[inline(never)]
    fn complete(&self, req: &RequestHeader, e: Option<&Error>, ctx: &mut RequestCtx) {
        if std::mem::replace(&mut ctx.logged, true) {
            return;
        }
        if let Some(marks) = ctx.timeline.as_mut() {
            marks.record_in_us = timeline::since(ctx.started);
        }
        match record::build(req, e, ctx, &self.metrics) {
            Some(record) => {
                self.metrics
                    .count_request(record.status, record.environment, &record.provider);
                self.settle(ctx, record.cost_micro_usd);
                self.sink.submit(record);
            }
            // An unknown key: no org, no record, nothing to settle; still
            // counted.
            None => self
                .metrics
                .count_request(ctx.status.unwrap_or(499), "", ""),
        }
        if let Some(marks) = ctx.timeline.as_mut() {
            marks.record_out_us = timeline::since(ctx.started);
        }
    }

    /// The request's spend: its reservation (if the limits made one)
    /// replaced by what it cost, against its org, environment and project.
    fn settle(&self, ctx: &mut RequestCtx, cost_micro_usd: u64) {
        let Some(key) = &ctx.principal else {
            return;
        };
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
            cost_micro_usd,
        );
    }
}

/// Writes a complete JSON response from the gateway itself.
async fn respond(session: &mut Session, ctx: &mut RequestCtx, status: u16, body: Bytes) {
    let written = async {
        let mut resp = ResponseHeader::build_no_case(status, Some(8))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        if matches!(ctx.error, Some(GatewayError::AuthThrottled)) {
            // The throttle's window: a minute at most.
            resp.insert_header(http::header::RETRY_AFTER, "60")?;
        }
        add_gateway_headers(&mut resp, ctx, Framing::Unchanged)?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    }
    .await;
    if let Err(e) = written {
        tracing::debug!(error = %e, "could not write the gateway's response");
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Some(marks) = ctx.timeline.as_mut() {
            marks.request_filter_in_us = timeline::since(ctx.started);
        }
        let answered = self.filter_request(session, ctx).await;
        if let Some(marks) = ctx.timeline.as_mut() {
            marks.request_filter_out_us = timeline::since(ctx.started);
        }
        answered
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
        ctx.first_byte_at.get_or_insert_with(Instant::now);
        if let Some(marks) = ctx.timeline.as_mut() {
            marks.response_header_us = timeline::since(ctx.started);
        }
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
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(parser) = ctx.sse.as_mut() {
            parser.rewrite(body, end_of_stream);
        } else if let (Some(capture), Some(chunk)) = (ctx.capture.as_mut(), body.as_ref()) {
            capture.push(chunk);
        }
        if end_of_stream {
            if let Some(marks) = ctx.timeline.as_mut() {
                marks.body_end_us = timeline::since(ctx.started);
            }
            // The last bytes go to the client after this returns.
            self.complete(session.req_header(), None, ctx);
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
        let Some(error) = GatewayError::from_proxy_failure(e) else {
            // The client went away: nothing to answer, nobody upstream to blame.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        self.metrics.upstream_errors.inc();
        let status = error.status();
        // Once the answer has begun, its status stands; the log notes the
        // failure from the error itself.
        if session.response_written().is_none() {
            let body = error.body();
            ctx.error = Some(error);
            self.respond(session, ctx, status, body).await;
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
        self.complete(session.req_header(), e, ctx);
        if let Some(marks) = ctx.timeline.take() {
            let status = ctx.status.unwrap_or(0);
            timeline::finish(*marks, ctx.started, ctx.request_id, status, ctx.stream);
        }
    }
}
