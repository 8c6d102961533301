//! A fake LLM provider: the "outside world" for the gateway's integration tests, benchmarks
//! and quick start.
//!
//! It owns nothing of the product: it is a dev-dependency of the gateway (tests, benches)
//! and a separate binary (`fake-provider`) for the quick start, the end-to-end test and the
//! load tests. No production build links it, and it must never depend on the gateway or the
//! control plane (it plays the provider they talk to).
//!
//! It is a small, plain HTTP/1.1 server (hyper 1, keep-alive on, `TCP_NODELAY` on every
//! socket) that speaks just enough of the OpenAI and Anthropic APIs for the gateway to proxy
//! it. Every answer is deterministic and steered by request headers, so a test knows exactly
//! which status, token counts and stream shape the gateway is going to see:
//!
//! | request header              | default | effect                                                   |
//! |-----------------------------|---------|----------------------------------------------------------|
//! | `x-fake-prompt-tokens`      | 10      | prompt / input tokens reported in usage                  |
//! | `x-fake-completion-tokens`  | 20      | completion / output tokens reported in usage             |
//! | `x-fake-cached-tokens`      | 0       | cached prompt tokens reported in usage                   |
//! | `x-fake-status`             | -       | a non-2xx code: answer it with an OpenAI error body      |
//! | `x-fake-latency-ms`         | 0       | sleep before sending the response headers                |
//! | `x-fake-chunks`             | 3       | number of content chunks in a stream                     |
//! | `x-fake-chunk-interval-ms`  | 0       | sleep between two stream events                          |
//! | `x-fake-abort-after-chunks` | -       | cut the stream after that many content chunks            |
//!
//! An unparsable control header is answered with a 400 so a typo in a test fails loudly.
//!
//! Every response, success or error, also reports what the provider received, so a test can
//! check what the gateway forwarded: `x-received-body-sha256`, `x-received-body-length`,
//! `x-received-include-usage`, `x-received-authorization`, `x-received-x-api-key`,
//! `x-received-expect`, `x-received-transfer-encoding` and `x-received-content-length`.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
//! `POST /v1/messages` (Anthropic) and `GET /v1/models`; anything else is a 404.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::iter::Peekable;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;

/// Prompt (input) tokens to report in usage; default 10.
pub const HEADER_PROMPT_TOKENS: &str = "x-fake-prompt-tokens";
/// Completion (output) tokens to report in usage; default 20.
pub const HEADER_COMPLETION_TOKENS: &str = "x-fake-completion-tokens";
/// Cached prompt tokens to report in usage; default 0.
pub const HEADER_CACHED_TOKENS: &str = "x-fake-cached-tokens";
/// A non-2xx status to answer with an OpenAI-shaped error body instead of a normal response.
pub const HEADER_STATUS: &str = "x-fake-status";
/// Milliseconds to wait before sending the response headers; default 0.
pub const HEADER_LATENCY_MS: &str = "x-fake-latency-ms";
/// Number of content chunks in a streamed response; default 3.
pub const HEADER_CHUNKS: &str = "x-fake-chunks";
/// Milliseconds to wait between two events of a streamed response; default 0.
pub const HEADER_CHUNK_INTERVAL_MS: &str = "x-fake-chunk-interval-ms";
/// Cut a streamed response after that many content chunks (capped at `x-fake-chunks`):
/// the body ends with an error, so the connection is closed mid-stream and no usage is sent.
pub const HEADER_ABORT_AFTER_CHUNKS: &str = "x-fake-abort-after-chunks";

/// Hex SHA-256 of the exact request body bytes.
pub const HEADER_RECEIVED_BODY_SHA256: &str = "x-received-body-sha256";
/// Length in bytes of the request body.
pub const HEADER_RECEIVED_BODY_LENGTH: &str = "x-received-body-length";
/// `true` when the JSON body had `stream_options.include_usage == true`, else `false`.
pub const HEADER_RECEIVED_INCLUDE_USAGE: &str = "x-received-include-usage";
/// The request's `authorization` header, or empty.
pub const HEADER_RECEIVED_AUTHORIZATION: &str = "x-received-authorization";
/// The request's `x-api-key` header, or empty.
pub const HEADER_RECEIVED_X_API_KEY: &str = "x-received-x-api-key";
/// The request's `expect` header, or empty.
pub const HEADER_RECEIVED_EXPECT: &str = "x-received-expect";
/// The request's `transfer-encoding` header, or empty.
pub const HEADER_RECEIVED_TRANSFER_ENCODING: &str = "x-received-transfer-encoding";
/// The request's `content-length` header, or empty.
pub const HEADER_RECEIVED_CONTENT_LENGTH: &str = "x-received-content-length";

/// The model named in responses when the request does not name one (and in `GET /v1/models`).
pub const FAKE_MODEL: &str = "fake-model";

/// Message content of non-streamed answers.
const HELLO: &str = "Hello from the fake provider.";

/// Request headers echoed back verbatim, as (request header, response header).
const ECHOED_HEADERS: [(&str, &str); 5] = [
    ("authorization", HEADER_RECEIVED_AUTHORIZATION),
    ("x-api-key", HEADER_RECEIVED_X_API_KEY),
    ("expect", HEADER_RECEIVED_EXPECT),
    ("transfer-encoding", HEADER_RECEIVED_TRANSFER_ENCODING),
    ("content-length", HEADER_RECEIVED_CONTENT_LENGTH),
];

/// Counters shared between a running fake provider and whoever watches it.
#[derive(Debug, Default)]
pub struct FakeProviderStats {
    requests_received: AtomicU64,
}

impl FakeProviderStats {
    /// Number of requests received so far (all paths, including errors).
    pub fn requests_received(&self) -> u64 {
        self.requests_received.load(Ordering::Relaxed)
    }
}

/// A fake provider serving in a background tokio task.
///
/// Dropping it stops accepting and closes the connections it had open.
#[derive(Debug)]
pub struct FakeProvider {
    local_addr: SocketAddr,
    stats: Arc<FakeProviderStats>,
    task: JoinHandle<()>,
}

impl FakeProvider {
    /// Binds `listen` (port 0 allowed) and serves in a spawned tokio task until dropped.
    pub async fn start(listen: SocketAddr) -> io::Result<FakeProvider> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let stats = Arc::new(FakeProviderStats::default());
        let task = tokio::spawn(serve(listener, Arc::clone(&stats)));
        Ok(FakeProvider {
            local_addr,
            stats,
            task,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR`, ready to be used as an upstream base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Number of requests received so far (all paths).
    pub fn requests_received(&self) -> u64 {
        self.stats.requests_received()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        // Aborting the accept task drops the listener and its JoinSet, which aborts every
        // connection task: the provider really goes away, pooled connections included.
        self.task.abort();
    }
}

/// Serves the fake provider on `listener` until the future is dropped or the process ends.
///
/// Used by the `fake-provider` binary and by `FakeProvider`.
/// Connection tasks belong to this future, so dropping it (or aborting its task) also
/// closes every open connection.
pub async fn serve(listener: TcpListener, stats: Arc<FakeProviderStats>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&stats)));
                }
                Err(err) => {
                    // Accept errors are mostly transient (fd exhaustion, aborted handshakes):
                    // back off briefly rather than spin or stop serving.
                    tracing::warn!(error = %err, "fake provider: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set does not grow for ever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, stats: Arc<FakeProviderStats>) {
    // Nagle would hold back small SSE events and skew latency measurements.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "fake provider: cannot set TCP_NODELAY");
    }
    let service = service_fn(move |req| {
        let stats = Arc::clone(&stats);
        async move { Ok::<_, Infallible>(handle(req, &stats).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        // No timer is installed, so say explicitly that there is no header read timeout
        // instead of relying on hyper silently ignoring its default one.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(err) = connection.await {
        // Expected when a stream is aborted on purpose or a client goes away.
        tracing::debug!(error = %err, "fake provider: connection ended with an error");
    }
}

/// What the request headers ask the fake provider to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Controls {
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    status: Option<StatusCode>,
    latency: Duration,
    chunks: u64,
    chunk_interval: Duration,
    abort_after_chunks: Option<u64>,
}

impl Controls {
    fn from_headers(headers: &HeaderMap) -> Result<Controls, String> {
        Ok(Controls {
            prompt_tokens: header_u64(headers, HEADER_PROMPT_TOKENS)?.unwrap_or(10),
            completion_tokens: header_u64(headers, HEADER_COMPLETION_TOKENS)?.unwrap_or(20),
            cached_tokens: header_u64(headers, HEADER_CACHED_TOKENS)?.unwrap_or(0),
            status: header_status(headers)?,
            latency: Duration::from_millis(header_u64(headers, HEADER_LATENCY_MS)?.unwrap_or(0)),
            chunks: header_u64(headers, HEADER_CHUNKS)?.unwrap_or(3),
            chunk_interval: Duration::from_millis(
                header_u64(headers, HEADER_CHUNK_INTERVAL_MS)?.unwrap_or(0),
            ),
            abort_after_chunks: header_u64(headers, HEADER_ABORT_AFTER_CHUNKS)?,
        })
    }

    fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Content chunks to send before cutting the stream, if it must be cut.
    fn abort_point(&self) -> Option<u64> {
        self.abort_after_chunks.map(|k| k.min(self.chunks))
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| format!("invalid {name} header: expected a non-negative integer"))
}

/// A 2xx `x-fake-status` means "answer normally", so only non-2xx codes are kept.
fn header_status(headers: &HeaderMap) -> Result<Option<StatusCode>, String> {
    let Some(code) = header_u64(headers, HEADER_STATUS)? else {
        return Ok(None);
    };
    let status = u16::try_from(code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        // 1xx are not final responses; hyper could not send them as an answer.
        .filter(|status| !status.is_informational())
        .ok_or_else(|| {
            format!("invalid {HEADER_STATUS} header: expected a status from 200 to 999")
        })?;
    Ok((!status.is_success()).then_some(status))
}

/// The endpoints the fake provider knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    ChatCompletions,
    Completions,
    Embeddings,
    Messages,
    Models,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Route::ChatCompletions,
        (&Method::POST, "/v1/completions") => Route::Completions,
        (&Method::POST, "/v1/embeddings") => Route::Embeddings,
        (&Method::POST, "/v1/messages") => Route::Messages,
        (&Method::GET, "/v1/models") => Route::Models,
        _ => Route::NotFound,
    }
}

async fn handle(req: Request<Incoming>, stats: &FakeProviderStats) -> Response<FakeBody> {
    stats.requests_received.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            // The client is most likely gone; answer anyway in case it is still reading.
            let message = format!("cannot read request body: {err}");
            return openai_error(StatusCode::BAD_REQUEST, &message, "invalid_request_error");
        }
    };
    let json = serde_json::from_slice::<Value>(&body).ok();
    let usage_requested = json.as_ref().is_some_and(include_usage);
    let mut response = respond(
        &parts.method,
        parts.uri.path(),
        &parts.headers,
        json.as_ref(),
    )
    .await;
    echo_received(
        response.headers_mut(),
        &parts.headers,
        &body,
        usage_requested,
    );
    response
}

/// `stream_options.include_usage == true` in the request's JSON body.
fn include_usage(json: &Value) -> bool {
    json.pointer("/stream_options/include_usage") == Some(&Value::Bool(true))
}

fn wants_stream(json: &Value) -> bool {
    json.get("stream") == Some(&Value::Bool(true))
}

/// The request's model as a JSON string literal, echoed in every answer.
fn model_of(json: &Value) -> String {
    json_string(
        json.get("model")
            .and_then(Value::as_str)
            .unwrap_or(FAKE_MODEL),
    )
}

async fn respond(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    json: Option<&Value>,
) -> Response<FakeBody> {
    let controls = match Controls::from_headers(headers) {
        Ok(controls) => controls,
        Err(message) => {
            return openai_error(StatusCode::BAD_REQUEST, &message, "invalid_fake_header")
        }
    };
    if !controls.latency.is_zero() {
        tokio::time::sleep(controls.latency).await;
    }
    if let Some(status) = controls.status {
        return json_response(
            status,
            r#"{"error":{"message":"fake provider error","type":"fake_error","code":"fake_error","param":null}}"#.to_owned(),
        );
    }
    match (route(method, path), json) {
        (Route::NotFound, _) => {
            let message = format!("no route for {method} {path}");
            openai_error(StatusCode::NOT_FOUND, &message, "not_found")
        }
        (Route::Models, _) => models_response(),
        (Route::Messages, None) => anthropic_invalid_json(),
        (_, None) => {
            let message = "request body is not valid json";
            openai_error(StatusCode::BAD_REQUEST, message, "invalid_json")
        }
        (Route::ChatCompletions | Route::Completions, Some(json)) => {
            let model = model_of(json);
            if wants_stream(json) {
                event_stream_response(openai_stream(&model, &controls, include_usage(json)))
            } else {
                json_response(StatusCode::OK, openai_completion(&model, &controls))
            }
        }
        (Route::Embeddings, Some(json)) => {
            json_response(StatusCode::OK, embeddings(&model_of(json), &controls))
        }
        (Route::Messages, Some(json)) => {
            let model = model_of(json);
            if wants_stream(json) {
                event_stream_response(anthropic_stream(&model, &controls))
            } else {
                json_response(StatusCode::OK, anthropic_message(&model, &controls))
            }
        }
    }
}

/// Adds the `x-received-*` headers describing the request.
fn echo_received(out: &mut HeaderMap, request: &HeaderMap, body: &[u8], include_usage: bool) {
    let sha256 = hex::encode(Sha256::digest(body));
    out.insert(
        HeaderName::from_static(HEADER_RECEIVED_BODY_SHA256),
        ascii_header_value(sha256),
    );
    out.insert(
        HeaderName::from_static(HEADER_RECEIVED_BODY_LENGTH),
        HeaderValue::from(body.len()),
    );
    out.insert(
        HeaderName::from_static(HEADER_RECEIVED_INCLUDE_USAGE),
        HeaderValue::from_static(if include_usage { "true" } else { "false" }),
    );
    for (request_name, response_name) in ECHOED_HEADERS {
        out.insert(
            HeaderName::from_static(response_name),
            joined_header(request, request_name),
        );
    }
}

/// All values of a request header joined with ", " (a repeated `transfer-encoding` or
/// `content-length` is exactly what a framing test wants to see), or empty.
fn joined_header(headers: &HeaderMap, name: &str) -> HeaderValue {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return HeaderValue::from_static("");
    };
    let mut joined = first.as_bytes().to_vec();
    for value in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(value.as_bytes());
    }
    // Every part was a valid header value, so the join is too; fall back to the first anyway.
    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| first.clone())
}

/// Header value from a string known to be plain ASCII (hex, numbers).
fn ascii_header_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `s` as a JSON string literal, quotes included.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn openai_usage(c: &Controls) -> String {
    format!(
        r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":{}}}}}"#,
        c.prompt_tokens,
        c.completion_tokens,
        c.total_tokens(),
        c.cached_tokens
    )
}

fn openai_completion(model: &str, c: &Controls) -> String {
    format!(
        r#"{{"id":"chatcmpl-fake","object":"chat.completion","created":0,"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{HELLO}"}},"logprobs":null,"finish_reason":"stop"}}],"usage":{}}}"#,
        openai_usage(c)
    )
}

fn embeddings(model: &str, c: &Controls) -> String {
    format!(
        r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}}],"model":{model},"usage":{{"prompt_tokens":{p},"total_tokens":{p}}}}}"#,
        p = c.prompt_tokens
    )
}

fn anthropic_message(model: &str, c: &Controls) -> String {
    format!(
        r#"{{"id":"msg_fake","type":"message","role":"assistant","model":{model},"content":[{{"type":"text","text":"{HELLO}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":{},"output_tokens":{},"cache_read_input_tokens":{},"cache_creation_input_tokens":0}}}}"#,
        c.prompt_tokens, c.completion_tokens, c.cached_tokens
    )
}

fn models_response() -> Response<FakeBody> {
    json_response(
        StatusCode::OK,
        format!(
            r#"{{"object":"list","data":[{{"id":"{FAKE_MODEL}","object":"model","created":0,"owned_by":"fake-provider"}}]}}"#
        ),
    )
}

fn openai_error(status: StatusCode, message: &str, code: &str) -> Response<FakeBody> {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    let body = format!(
        r#"{{"error":{{"message":{},"type":"{kind}","code":{},"param":null}}}}"#,
        json_string(message),
        json_string(code)
    );
    json_response(status, body)
}

fn anthropic_invalid_json() -> Response<FakeBody> {
    json_response(
        StatusCode::BAD_REQUEST,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"request body is not valid json"}}"#.to_owned(),
    )
}

fn json_response(status: StatusCode, body: String) -> Response<FakeBody> {
    let len = body.len();
    let mut response = Response::new(FakeBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn event_stream_response(events: EventBody) -> Response<FakeBody> {
    let mut response = Response::new(FakeBody::Events(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn sse_data(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

fn sse_event(name: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

fn openai_stream(model: &str, c: &Controls, include_usage: bool) -> EventBody {
    let chunk_model = model.to_owned();
    let content = (1..=c.chunks).map(move |i| {
        sse_data(&format!(
            r#"{{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":0,"model":{chunk_model},"choices":[{{"index":0,"delta":{{"content":"tok{i} "}},"finish_reason":null}}]}}"#
        ))
    });
    let mut tail = vec![sse_data(&format!(
        r#"{{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":0,"model":{model},"choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}"#
    ))];
    if include_usage {
        tail.push(sse_data(&format!(
            r#"{{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":0,"model":{model},"choices":[],"usage":{}}}"#,
            openai_usage(c)
        )));
    }
    tail.push(Bytes::from_static(b"data: [DONE]\n\n"));
    // Content chunks come first, so cutting after K events is cutting after K chunks.
    EventBody::new(
        Box::new(content.chain(tail)),
        c.abort_point(),
        c.chunk_interval,
    )
}

fn anthropic_stream(model: &str, c: &Controls) -> EventBody {
    let preamble = vec![
        sse_event(
            "message_start",
            &format!(
                r#"{{"type":"message_start","message":{{"id":"msg_fake","type":"message","role":"assistant","model":{model},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":{},"output_tokens":1,"cache_read_input_tokens":{},"cache_creation_input_tokens":0}}}}}}"#,
                c.prompt_tokens, c.cached_tokens
            ),
        ),
        sse_event("ping", r#"{"type":"ping"}"#),
        sse_event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
    ];
    let preamble_len = preamble.len() as u64;
    let deltas = (1..=c.chunks).map(|i| {
        sse_event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"tok{i} "}}}}"#
            ),
        )
    });
    let tail = vec![
        sse_event(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        sse_event(
            "message_delta",
            &format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{}}}}}"#,
                c.completion_tokens
            ),
        ),
        sse_event("message_stop", r#"{"type":"message_stop"}"#),
    ];
    let events = preamble.into_iter().chain(deltas).chain(tail);
    let abort_after = c.abort_point().map(|k| k.saturating_add(preamble_len));
    EventBody::new(Box::new(events), abort_after, c.chunk_interval)
}

/// Response body: either a complete buffer (sent with Content-Length) or a paced stream of
/// events (sent chunked).
enum FakeBody {
    Full(Option<Bytes>),
    Events(EventBody),
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            FakeBody::Full(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            FakeBody::Events(events) => events.poll_event(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FakeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FakeBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            FakeBody::Events(_) => SizeHint::default(),
        }
    }
}

type Events = Box<dyn Iterator<Item = Bytes> + Send>;

/// A lazily generated stream of events, paced by a timer and optionally cut with an error.
///
/// Generated on demand rather than from a spawned task so nothing outlives the connection
/// and a huge `x-fake-chunks` costs no memory.
struct EventBody {
    events: Peekable<Events>,
    interval: Duration,
    /// End with an error once `events` runs out instead of ending cleanly.
    abort: bool,
    /// At least one event was sent: wait `interval` before the next step.
    started: bool,
    pause: Option<Pin<Box<Sleep>>>,
    /// The error is due on the next poll (see `poll_event`).
    error_due: bool,
    done: bool,
}

impl EventBody {
    fn new(events: Events, abort_after: Option<u64>, interval: Duration) -> EventBody {
        let events: Events = match abort_after {
            Some(count) => Box::new(events.take(usize::try_from(count).unwrap_or(usize::MAX))),
            None => events,
        };
        EventBody {
            events: events.peekable(),
            interval,
            abort: abort_after.is_some(),
            started: false,
            pause: None,
            error_due: false,
            done: false,
        }
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.error_due {
            self.done = true;
            return Poll::Ready(Some(Err(io::Error::other(
                "fake provider aborted the stream on request",
            ))));
        }
        // A clean end needs no pause: the interval is between events, not after the last.
        if !self.abort && self.events.peek().is_none() {
            self.done = true;
            return Poll::Ready(None);
        }
        if self.started && !self.interval.is_zero() {
            let interval = self.interval;
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        self.started = true;
        match self.events.next() {
            Some(event) => Poll::Ready(Some(Ok(Frame::data(event)))),
            None => {
                // hyper drops what it buffered but did not write yet when a body fails, so
                // yield once first: hyper flushes on Pending, and the events already produced
                // reach the client before the connection is cut.
                self.error_due = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TEST_TIMEOUT: Duration = Duration::from_secs(20);

    async fn start() -> FakeProvider {
        FakeProvider::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fake provider starts")
    }

    /// A response read off the wire, framing included.
    #[derive(Debug)]
    struct RawResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// The body's framing was complete (Content-Length reached or last chunk seen).
        complete: bool,
    }

    impl RawResponse {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn body_str(&self) -> &str {
            std::str::from_utf8(&self.body).expect("utf-8 body")
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).expect("json body")
        }
    }

    /// Sends one HTTP/1.1 request on a fresh socket and reads until the server closes it.
    async fn raw_request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write head");
        stream.write_all(body).await.expect("write body");
        let bytes = read_until_closed(&mut stream).await;
        parse_response(&bytes)
    }

    /// Reads until EOF or a reset (an aborted stream may end either way).
    async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let read_all = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(TEST_TIMEOUT, read_all)
            .await
            .expect("server closed the connection in time");
        bytes
    }

    fn parse_response(bytes: &[u8]) -> RawResponse {
        let head_end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete response head");
        let head = std::str::from_utf8(&bytes[..head_end]).expect("ascii head");
        let rest = &bytes[head_end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("header line");
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
            complete: false,
        };
        if response.header("transfer-encoding") == Some("chunked") {
            let (body, complete) = decode_chunked(rest);
            response.body = body;
            response.complete = complete;
        } else {
            let len: usize = response
                .header("content-length")
                .expect("content-length or chunked")
                .parse()
                .expect("numeric content-length");
            response.body = rest[..len.min(rest.len())].to_vec();
            response.complete = rest.len() == len;
        }
        response
    }

    /// Decodes a chunked body; `complete` is false when the terminating chunk never came.
    fn decode_chunked(mut data: &[u8]) -> (Vec<u8>, bool) {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
                return (body, false);
            };
            let size_line = std::str::from_utf8(&data[..line_end]).expect("ascii size");
            let size = usize::from_str_radix(size_line.trim(), 16).expect("hex chunk size");
            data = &data[line_end + 2..];
            if size == 0 {
                return (body, data == b"\r\n");
            }
            if data.len() < size + 2 {
                body.extend_from_slice(&data[..size.min(data.len())]);
                return (body, false);
            }
            body.extend_from_slice(&data[..size]);
            data = &data[size + 2..];
        }
    }

    /// The JSON payloads of the `data:` lines of an SSE body.
    fn sse_data_lines(body: &str) -> Vec<&str> {
        body.lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .collect()
    }

    #[tokio::test]
    async fn non_stream_chat_completion_reports_header_usage_and_body_hash() {
        let provider = start().await;
        let body = br#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
        let response = raw_request(
            provider.local_addr(),
            "POST",
            "/v1/chat/completions",
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer sk-test"),
                (HEADER_PROMPT_TOKENS, "123"),
                (HEADER_COMPLETION_TOKENS, "45"),
                (HEADER_CACHED_TOKENS, "7"),
            ],
            body,
        )
        .await;

        assert_eq!(response.status, 200);
        assert!(response.complete);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(
            response.header("content-length"),
            Some(response.body.len().to_string().as_str())
        );
        let expected_sha = hex::encode(Sha256::digest(body));
        assert_eq!(
            response.header(HEADER_RECEIVED_BODY_SHA256),
            Some(expected_sha.as_str())
        );
        assert_eq!(
            response.header(HEADER_RECEIVED_BODY_LENGTH),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(
            response.header(HEADER_RECEIVED_CONTENT_LENGTH),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(
            response.header(HEADER_RECEIVED_AUTHORIZATION),
            Some("Bearer sk-test")
        );
        assert_eq!(response.header(HEADER_RECEIVED_X_API_KEY), Some(""));
        assert_eq!(response.header(HEADER_RECEIVED_TRANSFER_ENCODING), Some(""));
        assert_eq!(response.header(HEADER_RECEIVED_EXPECT), Some(""));
        assert_eq!(
            response.header(HEADER_RECEIVED_INCLUDE_USAGE),
            Some("false")
        );

        let json = response.json();
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["model"], "gpt-test");
        assert_eq!(json["choices"][0]["message"]["content"], HELLO);
        assert_eq!(json["usage"]["prompt_tokens"], 123);
        assert_eq!(json["usage"]["completion_tokens"], 45);
        assert_eq!(json["usage"]["total_tokens"], 168);
        assert_eq!(json["usage"]["prompt_tokens_details"]["cached_tokens"], 7);
        assert_eq!(provider.requests_received(), 1);
    }

    #[tokio::test]
    async fn openai_stream_sends_usage_only_when_asked() {
        let provider = start().await;
        let with_usage = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let response = raw_request(
            provider.local_addr(),
            "POST",
            "/v1/chat/completions",
            &[
                (HEADER_PROMPT_TOKENS, "11"),
                (HEADER_COMPLETION_TOKENS, "22"),
            ],
            with_usage,
        )
        .await;
        assert_eq!(response.status, 200);
        assert!(response.complete, "stream ends with the last chunk");
        assert_eq!(response.header("content-type"), Some("text/event-stream"));
        assert_eq!(response.header("content-length"), None);
        assert_eq!(response.header(HEADER_RECEIVED_INCLUDE_USAGE), Some("true"));
        let data = sse_data_lines(response.body_str());
        // 3 content chunks, the finish chunk, the usage chunk, [DONE].
        assert_eq!(data.len(), 6, "{data:?}");
        assert_eq!(data[5], "[DONE]");
        let contents: Vec<Value> = data[..3]
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).expect("json chunk"))
            .map(|chunk| chunk["choices"][0]["delta"]["content"].clone())
            .collect();
        assert_eq!(contents, ["tok1 ", "tok2 ", "tok3 "]);
        let finish: Value = serde_json::from_str(data[3]).expect("json chunk");
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage: Value = serde_json::from_str(data[4]).expect("json chunk");
        assert_eq!(usage["model"], "m");
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 11);
        assert_eq!(usage["usage"]["completion_tokens"], 22);
        assert_eq!(usage["usage"]["total_tokens"], 33);
        assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

        let without_usage = br#"{"model":"m","stream":true}"#;
        let response = raw_request(
            provider.local_addr(),
            "POST",
            "/v1/chat/completions",
            &[(HEADER_CHUNKS, "5")],
            without_usage,
        )
        .await;
        assert_eq!(response.status, 200);
        assert!(response.complete);
        assert_eq!(
            response.header(HEADER_RECEIVED_INCLUDE_USAGE),
            Some("false")
        );
        let data = sse_data_lines(response.body_str());
        assert_eq!(data.len(), 7, "{data:?}");
        assert_eq!(data[6], "[DONE]");
        assert!(!response.body_str().contains("\"usage\""));
        assert_eq!(provider.requests_received(), 2);
    }

    #[tokio::test]
    async fn anthropic_stream_reports_usage_in_start_and_delta() {
        let provider = start().await;
        let body = br#"{"model":"claude-test","stream":true,"max_tokens":10,"messages":[]}"#;
        let response = raw_request(
            provider.local_addr(),
            "POST",
            "/v1/messages",
            &[
                ("x-api-key", "sk-ant"),
                (HEADER_PROMPT_TOKENS, "30"),
                (HEADER_COMPLETION_TOKENS, "40"),
                (HEADER_CACHED_TOKENS, "5"),
                (HEADER_CHUNKS, "2"),
            ],
            body,
        )
        .await;
        assert_eq!(response.status, 200);
        assert!(response.complete);
        assert_eq!(response.header(HEADER_RECEIVED_X_API_KEY), Some("sk-ant"));
        let text = response.body_str();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let data: Vec<Value> = sse_data_lines(text)
            .into_iter()
            .map(|d| serde_json::from_str(d).expect("json event"))
            .collect();
        let start_usage = &data[0]["message"]["usage"];
        assert_eq!(data[0]["message"]["model"], "claude-test");
        assert_eq!(start_usage["input_tokens"], 30);
        assert_eq!(start_usage["output_tokens"], 1);
        assert_eq!(start_usage["cache_read_input_tokens"], 5);
        assert_eq!(start_usage["cache_creation_input_tokens"], 0);
        assert_eq!(data[3]["delta"]["text"], "tok1 ");
        assert_eq!(data[6]["type"], "message_delta");
        assert_eq!(data[6]["delta"]["stop_reason"], "end_turn");
        assert_eq!(data[6]["usage"]["output_tokens"], 40);
    }

    #[tokio::test]
    async fn fake_status_answers_an_openai_error() {
        let provider = start().await;
        let body = br#"{"model":"m"}"#;
        let response = raw_request(
            provider.local_addr(),
            "POST",
            "/v1/chat/completions",
            &[(HEADER_STATUS, "500")],
            body,
        )
        .await;
        assert_eq!(response.status, 500);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let expected_sha = hex::encode(Sha256::digest(body));
        assert_eq!(
            response.header(HEADER_RECEIVED_BODY_SHA256),
            Some(expected_sha.as_str())
        );
        assert_eq!(
            response.json(),
            serde_json::json!({"error": {
                "message": "fake provider error",
                "type": "fake_error",
                "code": "fake_error",
                "param": null
            }})
        );
    }

    #[tokio::test]
    async fn aborted_stream_is_cut_without_usage() {
        let provider = start().await;
        let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let response = raw_request(
            provider.local_addr(),
            "POST",
            "/v1/chat/completions",
            &[(HEADER_CHUNKS, "5"), (HEADER_ABORT_AFTER_CHUNKS, "2")],
            body,
        )
        .await;
        assert_eq!(response.status, 200);
        assert!(
            !response.complete,
            "the chunked body must not be terminated"
        );
        let text = response.body_str();
        assert!(text.contains("tok1 ") && text.contains("tok2 "), "{text}");
        assert!(!text.contains("tok3 "), "{text}");
        assert!(
            !text.contains("usage") && !text.contains("[DONE]"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn stream_events_are_paced_by_the_interval() {
        let provider = start().await;
        let started = std::time::Instant::now();
        let response = raw_request(
            provider.local_addr(),
            "POST",
            "/v1/messages",
            &[
                (HEADER_LATENCY_MS, "50"),
                (HEADER_CHUNK_INTERVAL_MS, "20"),
                (HEADER_CHUNKS, "2"),
            ],
            br#"{"stream":true}"#,
        )
        .await;
        // 50 ms before the headers, then 7 pauses between the 8 events.
        assert!(started.elapsed() >= Duration::from_millis(50 + 7 * 20));
        assert!(response.complete);
        assert!(response.body_str().contains("message_stop"));
    }

    #[tokio::test]
    async fn invalid_json_unknown_route_and_bad_control_header() {
        let provider = start().await;
        let addr = provider.local_addr();
        let response = raw_request(addr, "POST", "/v1/chat/completions", &[], b"not json").await;
        assert_eq!(response.status, 400);
        assert_eq!(response.json()["error"]["code"], "invalid_json");
        assert_eq!(response.header(HEADER_RECEIVED_BODY_LENGTH), Some("8"));

        let response = raw_request(addr, "POST", "/v1/messages", &[], b"{").await;
        assert_eq!(response.status, 400);
        assert_eq!(response.json()["type"], "error");

        let response = raw_request(addr, "GET", "/nope", &[], b"").await;
        assert_eq!(response.status, 404);
        assert_eq!(response.json()["error"]["code"], "not_found");

        let response = raw_request(
            addr,
            "POST",
            "/v1/embeddings",
            &[(HEADER_CHUNKS, "x")],
            b"{}",
        )
        .await;
        assert_eq!(response.status, 400);
        assert!(response.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(HEADER_CHUNKS)));

        let response = raw_request(addr, "GET", "/v1/models", &[], b"").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["data"][0]["id"], FAKE_MODEL);
        assert_eq!(provider.requests_received(), 5);
    }

    #[tokio::test]
    async fn expect_continue_is_honoured_and_echoed() {
        let provider = start().await;
        let body = br#"{"model":"e","input":"x"}"#;
        let mut stream = TcpStream::connect(provider.local_addr())
            .await
            .expect("connect");
        let head = format!(
            "POST /v1/embeddings HTTP/1.1\r\nhost: x\r\nconnection: close\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write head");
        let mut interim = [0u8; 25];
        tokio::time::timeout(TEST_TIMEOUT, stream.read_exact(&mut interim))
            .await
            .expect("100 continue in time")
            .expect("read 100 continue");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(body).await.expect("write body");
        let response = parse_response(&read_until_closed(&mut stream).await);
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header(HEADER_RECEIVED_EXPECT),
            Some("100-continue")
        );
        let json = response.json();
        assert_eq!(json["model"], "e");
        assert_eq!(json["usage"]["prompt_tokens"], 10);
        assert_eq!(json["usage"]["total_tokens"], 10);
    }

    #[tokio::test]
    async fn keep_alive_and_large_bodies_through_a_real_client() {
        let provider = start().await;
        let client = reqwest::Client::new();
        let url = format!("{}/v1/chat/completions", provider.base_url());
        // A 16 MiB JSON body: large uploads must be read whole and hashed exactly.
        let padding = "a".repeat(16 * 1024 * 1024);
        let body =
            format!(r#"{{"model":"big","messages":[{{"role":"user","content":"{padding}"}}]}}"#);
        let expected_sha = hex::encode(Sha256::digest(body.as_bytes()));
        for _ in 0..2 {
            let response = client
                .post(&url)
                .body(body.clone())
                .send()
                .await
                .expect("request succeeds");
            assert_eq!(response.status(), 200);
            let sha = response.headers()[HEADER_RECEIVED_BODY_SHA256]
                .to_str()
                .expect("ascii")
                .to_owned();
            assert_eq!(sha, expected_sha);
            let json: Value = response.json().await.expect("json body");
            assert_eq!(json["model"], "big");
        }
        assert_eq!(provider.requests_received(), 2);
    }

    #[tokio::test]
    async fn dropping_the_provider_stops_it() {
        let provider = start().await;
        let addr = provider.local_addr();
        // An idle keep-alive connection must be closed too, not only the listener.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        drop(provider);
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(TEST_TIMEOUT, idle.read(&mut byte))
            .await
            .expect("idle connection closed in time");
        assert!(matches!(read, Ok(0) | Err(_)));
        let deadline = std::time::Instant::now() + TEST_TIMEOUT;
        while TcpStream::connect(addr).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "still accepting");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
