//! Builds the one request log record of a request from its context, at the
//! end of the request (Pingora's `logging` phase).

use std::borrow::Cow;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pingora_error::Error;
use pingora_http::RequestHeader;

use super::ctx::RequestCtx;
use crate::error::GatewayError;
use std::sync::Arc;

use crate::logs::{LogId, RequestLog};
use crate::metrics::Metrics;
use crate::usage::Usage;

/// The record, or `None` for a request with no known key (it has no org).
/// Called once, at the end of the request: what the record keeps is taken
/// from the context.
// Out of line: load-tests/instructions.sh reports its cost (one call).
#[inline(never)]
pub fn build(
    req: &RequestHeader,
    e: Option<&Error>,
    ctx: &mut RequestCtx,
    metrics: &Metrics,
) -> Option<RequestLog> {
    let key = ctx.principal.as_ref()?;
    let (org_id, api_key_id, environment) = (key.org_id, key.id, key.environment);
    let (status, error_code) = outcome(e, ctx);
    let usage = match (&ctx.provider, &ctx.sse, &ctx.capture) {
        (_, Some(parser), _) => parser.usage(),
        (Some(provider), None, Some(capture)) => capture.usage(provider.kind),
        _ => None,
    }
    .unwrap_or_default();
    let cost_micro_usd = cost(ctx, &usage, metrics);
    let tags = Tags::of(req);
    let now = Instant::now();
    Some(RequestLog {
        request_id: LogId(Some(ctx.request_id)),
        ts_ms: epoch_ms(ctx.started, now),
        org_id: LogId(Some(org_id)),
        // A refusal before the project was resolved (a revoked key, a
        // project mismatch) belongs to the project the key is locked to,
        // else its default project, so that project's Security page has it.
        project_id: LogId(ctx.project_id.or(key.project_id).or(key.default_project_id)),
        api_key_id: LogId(Some(api_key_id)),
        environment: environment.map_or("", |e| e.as_str()),
        provider: ctx
            .provider
            .as_ref()
            .map_or_else(|| Arc::from(""), |p| p.name.clone()),
        model: std::mem::take(&mut ctx.model),
        path: match ctx.route {
            Some(route) => Cow::Borrowed(route.path()),
            None => Cow::Owned(req.uri.path().to_owned()),
        },
        status,
        error_code,
        stream: u8::from(ctx.stream),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens,
        cost_usd: cost_micro_usd as f64 / 1_000_000.0,
        cost_micro_usd,
        latency_ms: millis(now - ctx.started),
        ttfb_ms: ctx
            .first_byte_at
            .map_or(0, |t| millis(t.saturating_duration_since(ctx.started))),
        session_id: tags.session_id.unwrap_or_default(),
        user_id: tags
            .user_id
            .or_else(|| ctx.body_user.take())
            .unwrap_or_default(),
        property_keys: tags.property_keys,
        property_values: tags.property_values,
        gateway_id: ctx
            .snapshot
            .as_ref()
            .map(|s| s.settings().gateway_id.clone())
            .unwrap_or_else(|| Arc::from("")),
    })
}

/// Status and error code for the log.
fn outcome(e: Option<&Error>, ctx: &RequestCtx) -> (u16, &'static str) {
    if let Some(error) = &ctx.error {
        return (error.status(), error.code());
    }
    match (ctx.status, e) {
        (Some(status), None) if status >= 400 => (status, "upstream_error"),
        (Some(status), None) => (status, ""),
        // The answer had begun when the request failed: its status stands.
        (Some(status), Some(e)) => match GatewayError::from_proxy_failure(e) {
            None => (status, "client_disconnected"),
            Some(GatewayError::UpstreamTimeout) => (status, "upstream_timeout"),
            Some(_) => (status, "upstream_disconnected"),
        },
        // nginx's convention for a client that left before any answer.
        (None, _) => (499, "client_disconnected"),
    }
}

/// Cost in micro-USD; an unpriced model with usage is counted in a metric.
fn cost(ctx: &RequestCtx, usage: &Usage, metrics: &Metrics) -> u64 {
    let Some(snapshot) = &ctx.snapshot else {
        return 0;
    };
    if ctx.provider.is_none() {
        return 0;
    }
    match snapshot.prices().cost(&ctx.model, usage) {
        Some(cost) => cost,
        None => {
            metrics.unpriced_model_requests.inc();
            0
        }
    }
}

/// What the client's `floopy-*` headers say about the request, read in one
/// pass (a lookup by name hashes it, even when it is absent).
#[derive(Default)]
struct Tags {
    session_id: Option<String>,
    user_id: Option<String>,
    property_keys: Vec<String>,
    property_values: Vec<String>,
}

impl Tags {
    fn of(req: &RequestHeader) -> Tags {
        let mut tags = Tags::default();
        for (name, value) in &req.headers {
            let Some(rest) = name.as_str().strip_prefix("floopy-") else {
                continue;
            };
            let Ok(value) = value.to_str() else {
                continue;
            };
            if let Some(key) = rest.strip_prefix("property-") {
                tags.property_keys.push(key.to_string());
                tags.property_values.push(value.to_string());
            } else if rest == "session-id" && tags.session_id.is_none() {
                tags.session_id = Some(value.to_owned());
            } else if rest == "user-id" && tags.user_id.is_none() {
                tags.user_id = Some(value.to_owned());
            }
        }
        tags
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Wall-clock time of `started`, in epoch milliseconds.
pub(super) fn epoch_ms(started: Instant, now: Instant) -> u64 {
    let wall = SystemTime::now()
        .checked_sub(now - started)
        .unwrap_or_else(SystemTime::now);
    wall.duration_since(UNIX_EPOCH).map_or(0, millis)
}
