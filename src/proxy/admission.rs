//! Admission as pure decisions: whether a request goes to a provider, and
//! how, decided from the snapshot, the request header and the body alone.
//! `request_filter` does the session I/O (reading the body, answering) and
//! calls these two in order; unit tests call them without a server.
//!
//! The data flows one way: `admit_header` returns what it decided
//! (`Admitted`) for `admit_body` to take, and neither touches the request
//! context. A refusal carries what was learned before it (the key, the
//! route, the model, the RPM state), which the dispatcher keeps in the
//! context, so the request log and the response headers have it even when
//! a later step refuses the request.

use std::sync::Arc;

use bytes::Bytes;
use pingora_http::RequestHeader;
use uuid::Uuid;

use super::route::Route;
use super::PROJECT_ID_NAME;
use crate::auth::{authenticate, AuthError, Principal};
use crate::body::{parse_request, request_stream_usage};
use crate::error::GatewayError;
use crate::limits::rpm::RpmDecision;
use crate::limits::{Admission, LimitRefusal, Limiter};
use crate::pricing::estimate_cost;
use crate::project::resolve_project;
use crate::snapshot::Snapshot;
use crate::upstream::Provider;

/// The largest request header block accepted (HTTP/1.x): an API client
/// sends a few hundred bytes; 64 KiB leaves room for long cookies and
/// tracing headers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Step 0, before anything else: a header block over `MAX_HEADER_BYTES` is
/// refused with 431, and a request whose framing two HTTP parsers
/// could read differently (request smuggling) is refused. `raw` is the
/// header block as received (HTTP/1.x). Refused: `Content-Length` together
/// with `Transfer-Encoding`, and a line ended by a bare LF. Two different
/// `Content-Length`s and obsolete line folding the HTTP parser refuses
/// itself.
pub fn check_framing(req: &RequestHeader, raw: Option<&[u8]>) -> Result<(), GatewayError> {
    let Some(raw) = raw else {
        return Ok(());
    };
    if raw.len() > MAX_HEADER_BYTES {
        return Err(GatewayError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
        });
    }
    // A dozen lines a request: the LFs are found by memchr, each checked
    // for its CR.
    if memchr::memchr_iter(b'\n', raw).any(|i| i == 0 || raw[i - 1] != b'\r') {
        return Err(GatewayError::AmbiguousFraming(
            "a header line ends with a bare LF instead of CRLF",
        ));
    }
    // Only a chunked request can carry both; the parsed header may have
    // dropped its Content-Length, so the lines are looked at as they came.
    if req.headers.contains_key(http::header::TRANSFER_ENCODING)
        && raw
            .split(|b| *b == b'\n')
            .any(|line| starts_with_ignore_case(line, b"content-length:"))
    {
        return Err(GatewayError::AmbiguousFraming(
            "Content-Length together with Transfer-Encoding",
        ));
    }
    Ok(())
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// What the request header decided: whose key, which operation, for which
/// project. `admit_body` takes it.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub principal: Principal,
    pub route: Route,
    pub project_id: Uuid,
}

/// A refusal of the header, with what was learned before it: a known key
/// (a revoked one too) and the route belong to the request's log record.
#[derive(Debug)]
pub struct HeaderRefusal {
    pub error: GatewayError,
    pub principal: Option<Principal>,
    pub route: Option<Route>,
}

/// Step 1, from the request header: the key (401), the route (404), the
/// project (400/403/404), in that order.
// Out of line: load-tests/instructions.sh reports its cost (one call).
#[inline(never)]
pub fn admit_header(snapshot: &Snapshot, req: &RequestHeader) -> Result<Admitted, HeaderRefusal> {
    let refused =
        |error: GatewayError, principal: Option<Principal>, route: Option<Route>| HeaderRefusal {
            error,
            principal,
            route,
        };
    let authorization = req
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let principal = match authenticate(snapshot, authorization) {
        Ok(principal) => principal,
        Err(AuthError::Revoked(principal)) => {
            let known = Some(principal.clone());
            return Err(refused(AuthError::Revoked(principal).into(), known, None));
        }
        Err(e) => return Err(refused(e.into(), None, None)),
    };
    let Some(route) = Route::classify(&req.method, req.uri.path()) else {
        let error = GatewayError::UnknownPath {
            method: req.method.to_string(),
            path: req.uri.path().to_string(),
        };
        return Err(refused(error, Some(principal), None));
    };
    let header = req.headers.get(&PROJECT_ID_NAME).map(|v| v.as_bytes());
    match resolve_project(snapshot, &principal, header) {
        Ok(project_id) => Ok(Admitted {
            principal,
            route,
            project_id,
        }),
        Err(e) => Err(refused(e.into(), Some(principal), Some(route))),
    }
}

/// What the body told, kept for the request's log record whatever step 2
/// decides: the model, stream and user as sent, the provider once chosen,
/// the RPM state once counted.
#[derive(Debug, Default)]
pub struct BodyFacts {
    pub model: String,
    pub stream: bool,
    pub user: Option<String>,
    pub provider: Option<Arc<Provider>>,
    pub rpm: Option<RpmDecision>,
}

/// How an admitted request goes to its provider.
#[derive(Debug)]
pub struct Forward {
    /// What the limits reserved (none for a key without an environment);
    /// settled once the request ends.
    pub admission: Option<Admission>,
    /// The body to send (with `stream_options` added when the gateway
    /// needs a stream's usage the client did not ask for).
    pub upstream_body: Bytes,
    pub inject_usage: bool,
}

/// Step 2, once the body is read: its fields (400), the model's provider
/// (404, or 400 on the other kind's path), the environment's limits (429,
/// 402), and the body to send.
pub fn admit_body(
    snapshot: &Snapshot,
    limiter: &Limiter,
    header: &Admitted,
    path: &str,
    body: Bytes,
) -> (BodyFacts, Result<Forward, GatewayError>) {
    let mut facts = BodyFacts::default();
    let forward = decide_body(snapshot, limiter, header, path, body, &mut facts);
    (facts, forward)
}

fn decide_body(
    snapshot: &Snapshot,
    limiter: &Limiter,
    header: &Admitted,
    path: &str,
    body: Bytes,
    facts: &mut BodyFacts,
) -> Result<Forward, GatewayError> {
    let mut fields = parse_request(&body)?;
    facts.model = std::mem::take(&mut fields.model);
    facts.stream = fields.stream;
    facts.user = fields.user.take();
    let provider = snapshot
        .routes()
        .provider_for(&facts.model)
        .ok_or_else(|| GatewayError::UnknownModel(facts.model.clone()))?;
    if header.route.provider_kind() != Some(provider.kind) {
        return Err(GatewayError::ModelPathMismatch {
            model: facts.model.clone(),
            path: path.to_string(),
        });
    }
    facts.provider = Some(provider.clone());

    let mut admission = None;
    if let Some(environment) = header.principal.environment {
        let org = header.principal.org_id;
        let estimate = snapshot.prices().get(&facts.model).map_or(0, |price| {
            let output = fields
                .max_tokens
                .unwrap_or(snapshot.settings().default_completion_tokens);
            estimate_cost(price, body.len(), output)
        });
        let limits = snapshot.environment_limits(org, environment);
        match limiter.admit(org, environment, limits, estimate) {
            Ok(admitted) => {
                facts.rpm = admitted.rpm;
                admission = Some(admitted);
            }
            Err(LimitRefusal::RateLimited(decision)) => {
                facts.rpm = Some(decision);
                return Err(GatewayError::RateLimited {
                    environment: environment.as_str(),
                    limit: decision.limit,
                    retry_after_secs: decision.reset_secs(),
                });
            }
            Err(LimitRefusal::CostCapReached(_)) => {
                return Err(GatewayError::CostCapReached {
                    environment: environment.as_str(),
                });
            }
        }
    }

    // The gateway needs the usage of every stream; when the client did not
    // ask for it, ask on its behalf (and strip it from the answer).
    let inject_usage =
        fields.stream && header.route.supports_stream_usage() && !fields.include_usage;
    let upstream_body = if inject_usage {
        request_stream_usage(&body, &fields)?
    } else {
        body
    };
    Ok(Forward {
        admission,
        upstream_body,
        inject_usage,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{parse_with, ControlSource, Resolve};
    use crate::limits::clock::{month_start_ms, FakeClock};
    use crate::proxy::ctx::RequestCtx;
    use crate::snapshot::ConfigParts;

    #[test]
    fn ambiguous_framing_is_refused_from_the_raw_header() {
        let req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        let ok = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n";
        assert!(check_framing(&req, Some(ok)).is_ok());
        let both = b"POST / HTTP/1.1\r\ncontent-LENGTH: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut chunked = req.clone();
        chunked
            .insert_header("transfer-encoding", "chunked")
            .unwrap();
        let chunked_alone = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(check_framing(&chunked, Some(chunked_alone)).is_ok());
        assert!(matches!(
            check_framing(&chunked, Some(both)),
            Err(GatewayError::AmbiguousFraming(m)) if m.contains("Transfer-Encoding")
        ));
        let bare = b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            check_framing(&req, Some(bare)),
            Err(GatewayError::AmbiguousFraming(m)) if m.contains("bare LF")
        ));
        // HTTP/2 has no raw header block (and no Transfer-Encoding).
        assert!(check_framing(&req, None).is_ok());
    }

    const DEV_KEY: &str = "fpk_developmentkey00000000000000000000001";
    const LOCKED_KEY: &str = "fpk_lockedkey000000000000000000000000000002";
    const REVOKED_KEY: &str = "fpk_revokedkey00000000000000000000000000003";
    const CHECKOUT: &str = "0190a000-0000-7000-8000-0000000000c1";

    fn snapshot() -> Snapshot {
        let text = format!(
            r#"
server: {{listen: "127.0.0.1:1", admin_listen: "127.0.0.1:2"}}
providers:
  - {{name: oai, kind: openai, base_url: "http://127.0.0.1:3", models: [gpt-4o]}}
  - {{name: ant, kind: anthropic, base_url: "http://127.0.0.1:4", models: [claude]}}
pricing:
  - {{model: gpt-4o, input_per_mtok_usd: 2.5, output_per_mtok_usd: 10}}
control:
  source: file
  orgs:
    - id: "0190a000-0000-7000-8000-000000000001"
      name: Org
      plan: starter
      projects:
        - {{id: "{CHECKOUT}", name: Checkout, slug: checkout}}
      api_keys:
        - {{id: "0190a000-0000-7000-8000-00000000000a", name: dev, environment: development, secret: "{DEV_KEY}"}}
        - {{id: "0190a000-0000-7000-8000-00000000000b", name: locked, project_id: "{CHECKOUT}", secret: "{LOCKED_KEY}"}}
        - {{id: "0190a000-0000-7000-8000-00000000000c", name: old, revoked: true, secret: "{REVOKED_KEY}"}}
      environment_limits:
        - {{environment: development, rpm: 2, monthly_cost_usd: 1}}
log_sink: {{kind: file, path: x}}
"#
        );
        let config = parse_with(&text, Resolve::Skip).unwrap();
        let ControlSource::File(data) = &config.control else {
            panic!("file control source");
        };
        Snapshot::build(data, Arc::new(ConfigParts::from_config(&config)))
    }

    fn limiter() -> Limiter {
        Limiter::new(Arc::new(FakeClock::at(month_start_ms(2026, 11) + 1_000)))
    }

    fn request(path: &str, key: Option<&str>, project: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
        if let Some(key) = key {
            req.insert_header("authorization", format!("Bearer {key}"))
                .unwrap();
        }
        if let Some(project) = project {
            req.insert_header("floopy-project-id", project).unwrap();
        }
        req
    }

    /// Both steps, as `request_filter` runs them, the context keeping what
    /// each learned.
    fn admit(
        snapshot: &Snapshot,
        limiter: &Limiter,
        req: &RequestHeader,
        body: &str,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let header = ctx.learn_header(admit_header(snapshot, req))?;
        let body = Bytes::copy_from_slice(body.as_bytes());
        let (facts, forward) = admit_body(snapshot, limiter, &header, req.uri.path(), body);
        ctx.learn_body(facts);
        ctx.forward(forward?);
        Ok(())
    }

    fn code(result: Result<(), GatewayError>) -> &'static str {
        result.err().map_or("admitted", |e| e.code())
    }

    #[test]
    fn the_header_decides_key_route_and_project_in_that_order() {
        let snapshot = snapshot();
        let decide = |req: RequestHeader| {
            let mut ctx = RequestCtx::new();
            let result = ctx.learn_header(admit_header(&snapshot, &req)).map(drop);
            (code(result), ctx)
        };
        let chat = "/v1/chat/completions";
        assert_eq!(decide(request(chat, None, None)).0, "missing_api_key");
        let unknown = "fpk_unknownkey000000000000000000000000009";
        assert_eq!(
            decide(request(chat, Some(unknown), None)).0,
            "invalid_api_key"
        );
        let (code, ctx) = decide(request(chat, Some(REVOKED_KEY), None));
        assert_eq!(code, "api_key_revoked");
        assert!(
            ctx.principal.is_some(),
            "a revoked key is known for the log"
        );
        let (code, ctx) = decide(request("/v2/nothing", Some(DEV_KEY), None));
        assert_eq!(code, "unknown_url");
        assert!(ctx.principal.is_some() && ctx.project_id.is_none());
        let other = "0190a000-0000-7000-8000-0000000000ff";
        assert_eq!(
            decide(request(chat, Some(LOCKED_KEY), Some(other))).0,
            "project_mismatch"
        );
        assert_eq!(
            decide(request(chat, Some(DEV_KEY), Some("nope"))).0,
            "invalid_project_id"
        );
        let (code, ctx) = decide(request(chat, Some(LOCKED_KEY), None));
        assert_eq!(code, "admitted");
        assert_eq!(ctx.route, Some(Route::ChatCompletions));
        assert_eq!(
            ctx.project_id.map(|p| p.to_string()).as_deref(),
            Some(CHECKOUT)
        );
    }

    #[test]
    fn the_body_decides_provider_limits_and_what_is_sent() {
        let snapshot = snapshot();
        let limiter = limiter();
        let chat = request("/v1/chat/completions", Some(DEV_KEY), None);

        let mut ctx = RequestCtx::new();
        assert_eq!(
            code(admit(&snapshot, &limiter, &chat, "[1]", &mut ctx)),
            "invalid_json"
        );
        let mut ctx = RequestCtx::new();
        let result = admit(
            &snapshot,
            &limiter,
            &chat,
            r#"{"model":"nope","user":"u1"}"#,
            &mut ctx,
        );
        assert_eq!(code(result), "model_not_found");
        assert_eq!(
            (ctx.model.as_str(), ctx.body_user.as_deref()),
            ("nope", Some("u1")),
            "the model and user are kept for the log"
        );
        let mut ctx = RequestCtx::new();
        let result = admit(
            &snapshot,
            &limiter,
            &chat,
            r#"{"model":"claude"}"#,
            &mut ctx,
        );
        assert_eq!(code(result), "model_path_mismatch");

        // A stream without usage asked: the gateway asks for it.
        let mut ctx = RequestCtx::new();
        let body = r#"{"model":"gpt-4o","stream":true}"#;
        assert_eq!(
            code(admit(&snapshot, &limiter, &chat, body, &mut ctx)),
            "admitted"
        );
        assert!(ctx.inject_usage);
        let sent: serde_json::Value = serde_json::from_slice(&ctx.upstream_body).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert_eq!(ctx.rpm.map(|r| r.remaining), Some(1));
        // Asked by the client: sent as it came.
        let mut ctx = RequestCtx::new();
        let body = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(
            code(admit(&snapshot, &limiter, &chat, body, &mut ctx)),
            "admitted"
        );
        assert!(!ctx.inject_usage);
        assert_eq!(&ctx.upstream_body[..], body.as_bytes());

        // The RPM of 2 is spent: 429 with the state for the headers.
        let mut ctx = RequestCtx::new();
        let result = admit(
            &snapshot,
            &limiter,
            &chat,
            r#"{"model":"gpt-4o"}"#,
            &mut ctx,
        );
        assert_eq!(code(result), "rate_limit_exceeded");
        assert_eq!(ctx.rpm.map(|r| r.allowed), Some(false));
    }

    #[test]
    fn reservations_in_flight_count_against_the_cost_cap() {
        let snapshot = snapshot();
        let limiter = limiter();
        let chat = request("/v1/chat/completions", Some(DEV_KEY), None);
        // $1 cap; 100,000 output tokens at $10 per million reserve $1: the
        // first is admitted (nothing spent or reserved yet) and holds it.
        let big = r#"{"model":"gpt-4o","max_tokens":100000}"#;
        let mut first = RequestCtx::new();
        assert_eq!(
            code(admit(&snapshot, &limiter, &chat, big, &mut first)),
            "admitted"
        );
        assert!(
            first.admission.is_some(),
            "the reservation is kept for settlement"
        );
        let small = r#"{"model":"gpt-4o","max_tokens":10}"#;
        let mut second = RequestCtx::new();
        let result = admit(&snapshot, &limiter, &chat, small, &mut second);
        assert_eq!(code(result), "environment_cost_cap_exceeded");
    }
}
