//! The request path through the real binary: authentication, the project
//! fallback chain, bodies, forwarding, streaming, usage, cost and the request
//! log record of each case.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn post_chat(gw: &Gateway, key: &str, project: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(key))
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#);
    if let Some(project) = project {
        req = req.header("floopy-project-id", project);
    }
    req.send().await.unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("response has no {name} header"))
        .to_str()
        .unwrap()
}

fn request_id(resp: &reqwest::Response) -> String {
    let id = header(resp, "floopy-request-id").to_string();
    let uuid = uuid::Uuid::parse_str(&id).expect("floopy-request-id is a UUID");
    assert_eq!(uuid.get_version_num(), 7, "floopy-request-id is a UUID v7");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_fallback_chain_every_branch() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let upper_checkout = CHECKOUT.to_uppercase();

    // (key, header, expected status, expected project or error code)
    let cases: Vec<(&str, Option<&str>, u16, &str)> = vec![
        // 1. hard lock
        (KEY_LOCKED, None, 200, CHECKOUT),
        (KEY_LOCKED, Some(CHECKOUT), 200, CHECKOUT),
        (KEY_LOCKED, Some(upper_checkout.as_str()), 200, CHECKOUT),
        (KEY_LOCKED, Some(SEARCH), 403, "project_mismatch"),
        (KEY_LOCKED, Some(ZERO), 403, "project_mismatch"),
        (KEY_LOCKED, Some("not-a-uuid"), 400, "invalid_project_id"),
        // 2. header
        (KEY_FREE, Some(SEARCH), 200, SEARCH),
        (KEY_DEFAULT, Some(CHECKOUT), 200, CHECKOUT),
        (KEY_FREE, Some(ZERO), 200, ZERO),
        (KEY_FREE, Some(ARCHIVED), 404, "project_not_found"),
        (KEY_FREE, Some(FOREIGN), 404, "project_not_found"),
        (
            KEY_FREE,
            Some("0190a000-0000-7000-8000-0000000000ee"),
            404,
            "project_not_found",
        ),
        (
            KEY_FREE,
            Some("{0190a000-0000-7000-8000-0000000000c1}"),
            400,
            "invalid_project_id",
        ),
        (
            KEY_FREE,
            Some("0190a0000000700080000000000000c1"),
            400,
            "invalid_project_id",
        ),
        (KEY_FREE, Some(""), 400, "invalid_project_id"),
        // 3. key default
        (KEY_DEFAULT, None, 200, SEARCH),
        // 4. org default
        (KEY_FREE, None, 200, ZERO),
        (KEY_NO_ENV, None, 200, ZERO),
        // a key of another org cannot name this org's project
        (KEY_OTHER_ORG, Some(CHECKOUT), 404, "project_not_found"),
    ];
    for (key, project, status, expected) in cases {
        let resp = post_chat(&gw, key, project).await;
        let what = format!("key {key} header {project:?}");
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let id = request_id(&resp);
        let record = gw.record(&id).await;
        assert_eq!(record["status"], status, "{what}: log status");
        if status == 200 {
            assert_eq!(header(&resp, "floopy-project-id"), expected, "{what}");
            assert_eq!(record["project_id"], expected, "{what}: log project");
            assert_eq!(record["error_code"], "", "{what}");
        } else {
            assert_eq!(
                resp.headers().get("content-type").unwrap(),
                "application/json"
            );
            assert_eq!(error_code(resp).await, expected, "{what}");
            assert_eq!(record["error_code"], expected, "{what}: log error code");
            // A refusal belongs to the project the key is locked to, else
            // its default project, so that project's Security page has it.
            let attributed = match key {
                KEY_LOCKED => CHECKOUT,
                KEY_DEFAULT => SEARCH,
                _ => "",
            };
            assert_eq!(record["project_id"], attributed, "{what}: log project");
        }
    }
}

/// A revoked key locked to CHECKOUT.
const REVOKED_LOCKED: &str = "fpk_revokedlocked000000000000000000000007";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failures() {
    let provider = start_provider().await;
    let gw = Gateway::start(
        &provider,
        Options {
            extra_keys: format!(
                "        - {{ id: \"0190a000-0000-7000-8000-000000000017\", name: revoked-locked, revoked: true, project_id: \"{CHECKOUT}\", secret: \"{REVOKED_LOCKED}\" }}"
            ),
            ..Options::default()
        },
    )
    .await;

    for auth in [
        None,
        Some("Bearer fpk_unknown00000000000000000000000000000"),
        Some("Basic abc"),
        Some("Bearer "),
    ] {
        let mut req = client()
            .post(gw.url("/v1/chat/completions"))
            .body(r#"{"model":"gpt-4o"}"#);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let code = error_code(resp).await;
        assert!(
            code == "invalid_api_key" || code == "missing_api_key",
            "{auth:?}: {code}"
        );
    }

    let resp = post_chat(&gw, KEY_REVOKED, None).await;
    assert_eq!(resp.status(), 401);
    let id = request_id(&resp);
    assert_eq!(error_code(resp).await, "api_key_revoked");
    let record = gw.record(&id).await;
    assert_eq!(record["api_key_id"], KEY_REVOKED_ID);
    assert_eq!(record["org_id"], ORG);
    assert_eq!(record["error_code"], "api_key_revoked");
    assert_eq!(record["status"], 401);
    assert_eq!(record["project_id"], "", "a revoked key of no project");

    // A revoked key locked to a project: its refusal is that project's.
    let resp = post_chat(&gw, REVOKED_LOCKED, None).await;
    assert_eq!(resp.status(), 401);
    let id = request_id(&resp);
    assert_eq!(error_code(resp).await, "api_key_revoked");
    assert_eq!(gw.record(&id).await["project_id"], CHECKOUT);

    // Unknown and missing keys have no org: no record. The revoked ones have.
    let records = gw.wait_records(2).await;
    assert_eq!(
        records.len(),
        2,
        "only the revoked keys are logged: {records:#?}"
    );
    assert_eq!(
        provider.requests_received(),
        0,
        "nothing reached the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_response_usage_cost_and_record_fields() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_LOCKED))
        .header("x-fake-prompt-tokens", "1000")
        .header("x-fake-completion-tokens", "500")
        .header("x-fake-cached-tokens", "400")
        .header("floopy-session-id", "sess-1")
        .header("floopy-property-team", "payments")
        .header("floopy-property-feature", "refunds")
        .body(r#"{"model":"gpt-4o","user":"body-user","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The provider saw its own credential, not the gateway key.
    assert_eq!(
        header(&resp, "x-received-authorization"),
        "Bearer sk-test-openai"
    );
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["usage"]["prompt_tokens"], 1000,
        "the body is passed through"
    );

    let r = gw.record(&id).await;
    let expected = json!({
        "request_id": id,
        "org_id": ORG,
        "project_id": CHECKOUT,
        "api_key_id": KEY_LOCKED_ID,
        "environment": "production",
        "provider": "fake-openai",
        "model": "gpt-4o",
        "path": "/v1/chat/completions",
        "status": 200,
        "error_code": "",
        "stream": 0,
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "cached_tokens": 400,
        // 600 * 2.50 + 400 * 1.25 + 500 * 10.00 micro-USD
        "cost_micro_usd": 7000,
        "session_id": "sess-1",
        "user_id": "body-user",
        "gateway_id": "test-gw",
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&r[field], value, "field {field} of {r:#}");
    }
    assert!((r["cost_usd"].as_f64().unwrap() - 0.007).abs() < 1e-12);
    let keys: Vec<&str> = r["property_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let values: Vec<&str> = r["property_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut pairs: Vec<(&str, &str)> = keys.into_iter().zip(values).collect();
    pairs.sort();
    assert_eq!(pairs, vec![("feature", "refunds"), ("team", "payments")]);
    assert!(r["ts_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(r["latency_ms"].as_u64().unwrap() >= r["ttfb_ms"].as_u64().unwrap());

    // floopy-user-id wins over the body's user; no environment is "".
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .header("authorization", bearer(KEY_NO_ENV))
        .header("floopy-user-id", "header-user")
        .header("x-fake-prompt-tokens", "50000")
        .body(r#"{"model":"text-embedding-3-small","input":"hello","user":"body-user"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = gw.record(&request_id(&resp)).await;
    assert_eq!(r["user_id"], "header-user");
    assert_eq!(r["environment"], "");
    assert_eq!(r["prompt_tokens"], 50000);
    assert_eq!(r["completion_tokens"], 0);
    assert_eq!(r["cost_micro_usd"], 1000, "50k tokens at $0.02/M");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_json_and_unpriced_model() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;

    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("authorization", bearer(KEY_FREE))
        .header("x-fake-prompt-tokens", "100")
        .header("x-fake-completion-tokens", "10")
        .header("x-fake-cached-tokens", "1000")
        .body(r#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[],"metadata":{"user_id":"anthropic-user"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-received-x-api-key"), "sk-test-anthropic");
    assert_eq!(
        header(&resp, "x-received-authorization"),
        "",
        "gateway key not forwarded"
    );
    let r = gw.record(&request_id(&resp)).await;
    assert_eq!(r["prompt_tokens"], 1100, "input + cache reads");
    assert_eq!(r["cached_tokens"], 1000);
    assert_eq!(r["completion_tokens"], 10);
    // 100 * 3.00 + 1000 * 0.30 + 10 * 15.00 micro-USD
    assert_eq!(r["cost_micro_usd"], 750);
    assert_eq!(r["user_id"], "anthropic-user");
    assert_eq!(r["provider"], "fake-anthropic");

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_FREE))
        .body(r#"{"model":"unpriced-model","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = gw.record(&request_id(&resp)).await;
    assert_eq!(r["cost_micro_usd"], 0);
    assert_eq!(r["prompt_tokens"], 10, "usage is still recorded");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("floopy_unpriced_model_requests_total 1\n"),
        "{metrics}"
    );
}

/// Reads an SSE response chunk by chunk; returns the body and the arrival
/// time of the first and last chunk.
async fn read_stream(resp: reqwest::Response) -> (String, Instant, Instant) {
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    let mut first = None;
    let mut last = Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("the stream completes cleanly");
        first.get_or_insert_with(Instant::now);
        last = Instant::now();
        body.extend_from_slice(&chunk);
    }
    (String::from_utf8(body).unwrap(), first.unwrap(), last)
}

fn stream_request(gw: &Gateway, path: &str, body: Value) -> reqwest::RequestBuilder {
    client()
        .post(gw.url(path))
        .header("authorization", bearer(KEY_DEFAULT))
        .header("x-fake-prompt-tokens", "30")
        .header("x-fake-completion-tokens", "7")
        .header("x-fake-cached-tokens", "10")
        .header("x-fake-chunks", "3")
        .header("x-fake-chunk-interval-ms", "300")
        .json(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_injected_usage_is_stripped_and_recorded() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;

    let resp = stream_request(
        &gw,
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "stream": true, "messages": []}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-received-include-usage"),
        "true",
        "the gateway asked for usage"
    );
    let id = request_id(&resp);
    let (body, first, last) = read_stream(resp).await;
    assert!(
        last - first >= Duration::from_millis(600),
        "chunks arrive as the provider sends them, not at the end ({:?})",
        last - first
    );
    assert!(
        !body.contains("\"usage\""),
        "the injected usage chunk is stripped:\n{body}"
    );
    assert_eq!(
        body.matches("tok").count(),
        3,
        "every content chunk arrives:\n{body}"
    );
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");

    let r = gw.record(&id).await;
    assert_eq!(r["stream"], 1);
    assert_eq!(r["prompt_tokens"], 30);
    assert_eq!(r["completion_tokens"], 7);
    assert_eq!(r["cached_tokens"], 10);
    // 20 * 2.5 + 10 * 1.25 + 7 * 10 = 132.5 -> 133 micro-USD
    assert_eq!(r["cost_micro_usd"], 133);
    assert_eq!(r["project_id"], SEARCH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_stream_client_requested_usage_is_kept() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;

    let request = json!({
        "model": "gpt-4o",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": []
    });
    let sent = serde_json::to_vec(&request).unwrap();
    let resp = stream_request(&gw, "/v1/chat/completions", request)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-received-body-sha256"),
        sha256_hex(&sent),
        "the client's body is forwarded unchanged"
    );
    let id = request_id(&resp);
    let (body, _, _) = read_stream(resp).await;
    assert_eq!(body.matches("\"usage\"").count(), 1, "{body}");
    assert!(body.contains("\"prompt_tokens\":30"), "{body}");
    let r = gw.record(&id).await;
    assert_eq!(r["completion_tokens"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_usage_from_message_start_and_delta() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;

    let resp = stream_request(
        &gw,
        "/v1/messages",
        json!({"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 10, "messages": []}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-received-include-usage"),
        "false",
        "anthropic bodies are not changed"
    );
    let id = request_id(&resp);
    let (body, first, last) = read_stream(resp).await;
    assert!(
        last - first >= Duration::from_millis(600),
        "{:?}",
        last - first
    );
    assert!(body.contains("event: message_start"));
    assert!(
        body.contains("event: message_delta"),
        "usage events are kept for the client"
    );
    let r = gw.record(&id).await;
    assert_eq!(r["prompt_tokens"], 40, "30 input + 10 cache reads");
    assert_eq!(r["cached_tokens"], 10);
    assert_eq!(r["completion_tokens"], 7);
    // 30 * 3.00 + 10 * 0.30 + 7 * 15.00 micro-USD
    assert_eq!(r["cost_micro_usd"], 198);
    assert_eq!(r["stream"], 1);
}

/// A chat stream steered by the fake provider's `controls`; its response
/// (status checked) and request id.
async fn start_fake_stream(gw: &Gateway, controls: &[(&str, &str)]) -> (reqwest::Response, String) {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_FREE));
    for (name, value) in controls {
        req = req.header(*name, *value);
    }
    let resp = req
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    (resp, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_by_the_provider_is_logged_with_what_is_known() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let (resp, id) = start_fake_stream(
        &gw,
        &[("x-fake-chunks", "5"), ("x-fake-abort-after-chunks", "2")],
    )
    .await;
    let mut stream = resp.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        if chunk.is_err() {
            failed = true;
        }
    }
    assert!(failed, "the client sees the stream cut, not a clean end");
    let r = gw.record(&id).await;
    assert_eq!(r["status"], 200);
    assert_eq!(r["error_code"], "upstream_disconnected");
    assert_eq!(r["prompt_tokens"], 0, "no usage arrived");
    assert_eq!(r["cost_micro_usd"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_is_not_an_upstream_error() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let (resp, id) = start_fake_stream(
        &gw,
        &[("x-fake-chunks", "20"), ("x-fake-chunk-interval-ms", "100")],
    )
    .await;
    let mut stream = resp.bytes_stream();
    assert!(stream.next().await.is_some_and(|c| c.is_ok()));
    drop(stream); // the client hangs up mid-stream
    let r = gw.record(&id).await;
    assert_eq!(r["error_code"], "client_disconnected");
    let upstream_errors = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("floopy_upstream_errors_total "))
            .map(str::to_owned)
    };
    let metrics = gw.metrics().await;
    assert_eq!(upstream_errors(&metrics).as_deref(), Some("0"), "{metrics}");

    // A provider that cannot be reached is one.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_FREE))
        .body(r#"{"model":"dead-model"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let metrics = gw.metrics().await;
    assert_eq!(upstream_errors(&metrics).as_deref(), Some("1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mib_bodies_arrive_byte_exact() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let size = 2 * 1024 * 1024;

    // Not streamed, and streamed with client-requested usage: unchanged.
    for stream in [false, true] {
        let mut body: Value = serde_json::from_slice(&chat_body("gpt-4o", stream, size)).unwrap();
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", bearer(KEY_FREE))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "stream={stream}");
        assert_eq!(
            header(&resp, "x-received-body-length"),
            bytes.len().to_string()
        );
        assert_eq!(
            header(&resp, "x-received-body-sha256"),
            sha256_hex(&bytes),
            "stream={stream}"
        );
        assert_eq!(
            header(&resp, "x-received-content-length"),
            bytes.len().to_string()
        );
        let id = request_id(&resp);
        let _ = resp.bytes().await.unwrap();
        assert_eq!(gw.record(&id).await["status"], 200);
    }

    // Streamed without usage: the gateway inserts stream_options and the
    // provider gets exactly the client's bytes plus that member.
    let bytes = chat_body("gpt-4o", true, size);
    let mut expected = b"{\"stream_options\":{\"include_usage\":true},".to_vec();
    expected.extend_from_slice(&bytes[1..]);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_FREE))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-received-body-sha256"),
        sha256_hex(&expected)
    );
    assert_eq!(
        header(&resp, "x-received-content-length"),
        expected.len().to_string()
    );
}

/// A raw HTTP/1.1 exchange, for what reqwest will not send.
async fn raw_exchange(
    gw: &Gateway,
    head: &str,
    body_parts: &[&[u8]],
    wait_continue: bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    if wait_continue {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("100 Continue arrives before the body is sent")
            .unwrap();
        let interim = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    }
    for part in body_parts {
        stream.write_all(part).await.unwrap();
    }
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 65536];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&response);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end].lines().find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        });
                        if let Some(length) = length {
                            if response.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&response).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_and_chunked_uploads() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let body = chat_body("gpt-4o", false, 1_500_000);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_FREE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let response = raw_exchange(&gw, &head, &[&body], true).await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{}",
        &response[..response.len().min(400)]
    );
    assert!(response.contains(&format!("x-received-body-sha256: {}", sha256_hex(&body))));
    assert!(
        response.contains("x-received-expect: \r\n"),
        "Expect is not forwarded"
    );

    // A small chunked body is forwarded with a Content-Length.
    let small = chat_body("gpt-4o", false, 2_000);
    let chunk = |part: &[u8]| {
        let mut c = format!("{:x}\r\n", part.len()).into_bytes();
        c.extend_from_slice(part);
        c.extend_from_slice(b"\r\n");
        c
    };
    let (a, b) = small.split_at(700);
    let (ca, cb) = (chunk(a), chunk(b));
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_FREE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let response = raw_exchange(&gw, &head, &[&ca, &cb, b"0\r\n\r\n"], false).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(&format!("x-received-body-sha256: {}", sha256_hex(&small))),
        "{response}"
    );
    assert!(
        response.contains(&format!("x-received-content-length: {}", small.len())),
        "{response}"
    );

    // A chunked body over 64 KiB is refused with a clear 411.
    let big = chat_body("gpt-4o", false, 100_000);
    let parts: Vec<Vec<u8>> = big.chunks(16 * 1024).map(chunk).collect();
    let mut refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    refs.push(b"0\r\n\r\n");
    let response = raw_exchange(&gw, &head, &refs, false).await;
    assert!(response.starts_with("HTTP/1.1 411"), "{response}");
    assert!(
        response.contains("\"code\":\"length_required\""),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_paths_get_precise_errors() {
    let provider = start_provider().await;
    let options = Options {
        max_body: 100_000,
        ..Options::default()
    };
    let gw = Gateway::start(&provider, options).await;
    let post = |path: &str, body: Vec<u8>| {
        client()
            .post(gw.url(path))
            .header("authorization", bearer(KEY_FREE))
            .body(body)
    };

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/chat/completions",
            b"{not json".to_vec(),
            400,
            "invalid_json",
        ),
        ("/v1/chat/completions", b"".to_vec(), 400, "invalid_json"),
        ("/v1/chat/completions", b"[1]".to_vec(), 400, "invalid_json"),
        (
            "/v1/chat/completions",
            br#"{"model":"gpt-4o","stream":"yes"}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "/v1/chat/completions",
            br#"{"messages":[]}"#.to_vec(),
            400,
            "missing_model",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"gpt-9"}"#.to_vec(),
            404,
            "model_not_found",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"claude-sonnet-4-5"}"#.to_vec(),
            400,
            "model_path_mismatch",
        ),
        (
            "/v1/messages",
            br#"{"model":"gpt-4o"}"#.to_vec(),
            400,
            "model_path_mismatch",
        ),
        (
            "/v1/nothing",
            br#"{"model":"gpt-4o"}"#.to_vec(),
            404,
            "unknown_url",
        ),
        (
            "/v1/chat/completions",
            chat_body("gpt-4o", false, 150_000),
            413,
            "request_too_large",
        ),
    ];
    for (path, body, status, code) in cases {
        let resp = post(path, body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path} {code}");
        let id = request_id(&resp);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let r = gw.record(&id).await;
        assert_eq!(r["status"], status);
        assert_eq!(r["error_code"], code);
    }
    assert_eq!(
        provider.requests_received(),
        0,
        "no bad request reached the provider"
    );

    // The gateway still serves after all of that.
    assert_eq!(post_chat(&gw, KEY_FREE, None).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_502_504_and_errors_pass_through() {
    let provider = start_provider().await;
    let options = Options {
        read_ms: 500,
        ..Options::default()
    };
    let gw = Gateway::start(&provider, options).await;

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_FREE))
        .body(r#"{"model":"dead-model"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let id = request_id(&resp);
    assert_eq!(error_code(resp).await, "upstream_unreachable");
    assert_eq!(gw.record(&id).await["error_code"], "upstream_unreachable");

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_FREE))
        .header("x-fake-latency-ms", "3000")
        .body(r#"{"model":"gpt-4o"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let id = request_id(&resp);
    assert_eq!(error_code(resp).await, "upstream_timeout");
    let r = gw.record(&id).await;
    assert_eq!(r["status"], 504);
    assert_eq!(r["error_code"], "upstream_timeout");

    // A provider error is passed through unchanged.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", bearer(KEY_FREE))
        .header("x-fake-status", "429")
        .body(r#"{"model":"gpt-4o"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let id = request_id(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "fake_error",
        "the provider's body, unchanged"
    );
    let r = gw.record(&id).await;
    assert_eq!(r["status"], 429);
    assert_eq!(r["error_code"], "upstream_error");
}

/// Sends `n` chat requests one after another on one TCP connection, reading
/// each answer whole (by its Content-Length, or to its last chunk) before
/// the next: every one must be a 200 that keeps the connection open.
async fn keep_alive_exchanges(gw: &Gateway, n: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY_FREE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65536];
    for i in 0..n {
        stream.write_all(request.as_bytes()).await.unwrap();
        // One whole answer out of `pending`, reading more as needed.
        let answer = loop {
            let text = String::from_utf8_lossy(&pending).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = text[..end].to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map(|v| v.trim().parse::<usize>().unwrap());
                let whole = match length {
                    Some(length) => (pending.len() >= end + 4 + length).then_some(end + 4 + length),
                    None => text[end..].find("\r\n0\r\n\r\n").map(|at| end + at + 7),
                };
                if let Some(whole) = whole {
                    let answer = String::from_utf8_lossy(&pending[..whole]).to_string();
                    pending.drain(..whole);
                    break (head, answer);
                }
            }
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("request {i}: no whole answer within 10 s"))
                .unwrap();
            assert!(
                read > 0,
                "request {i}: the gateway closed the kept-alive connection"
            );
            pending.extend_from_slice(&buf[..read]);
        };
        let (head, text) = answer;
        assert!(head.starts_with("http/1.1 200 "), "request {i}: {text}");
        assert!(!head.contains("connection: close"), "request {i}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_admin_and_keepalive() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let c = client();
    let resp = c
        .get(gw.url("/v1/models"))
        .header("authorization", bearer(KEY_FREE))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gpt-4o",
            "gpt-4o-mini",
            "text-embedding-3-small",
            "unpriced-model",
            "claude-sonnet-4-5",
            "dead-model"
        ]
    );
    assert_eq!(
        c.get(gw.url("/v1/models")).send().await.unwrap().status(),
        401,
        "the model list needs a key"
    );
    for path in ["/healthz", "/readyz", "/metrics"] {
        let resp = reqwest::get(format!("http://{}{path}", gw.admin))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    // Fifty requests one after another on one kept-alive connection: each
    // answered 200 on the same socket, which the gateway never closes.
    keep_alive_exchanges(&gw, 50).await;
    let metrics = gw.metrics().await;
    let count = |status: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("floopy_requests_total{{status=\"{status}\",")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(count("200"), 51, "{metrics}");
    assert_eq!(count("401"), 1, "{metrics}");
    assert!(
        metrics.contains("floopy_requests_total{status=\"200\",environment=\"development\",provider=\"fake-openai\"} 50\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floopy_request_duration_seconds_count 52\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floopy_upstream_ttfb_seconds_count 50\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_every_record() {
    let provider = start_provider().await;
    let mut gw = Gateway::start(&provider, Options::default()).await;
    let mut ids = Vec::new();
    for _ in 0..200 {
        let resp = post_chat(&gw, KEY_FREE, None).await;
        assert_eq!(resp.status(), 200);
        ids.push(request_id(&resp));
    }
    let status = gw.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let records = gw.records();
    for id in &ids {
        assert!(
            records.iter().any(|r| r["request_id"] == id.as_str()),
            "record {id} is in the log after shutdown"
        );
    }
    assert_eq!(records.len(), ids.len());
}

/// A Prometheus text exposition: every sample line is `name{labels} value`
/// with a declared TYPE; returns (name with labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.is_empty() && !line.starts_with('#'),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
            .unwrap_or(name);
        assert!(typed.contains(base), "{name} has no TYPE");
        samples.push((series.to_string(), value));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let scrape = || async {
        let text = gw.metrics().await;
        parse_prometheus(&text)
            .into_iter()
            .collect::<std::collections::HashMap<String, f64>>()
    };
    let before = scrape().await;
    for _ in 0..5 {
        assert_eq!(post_chat(&gw, KEY_LOCKED, None).await.status(), 200);
    }
    assert_eq!(post_chat(&gw, KEY_FREE, Some("bad")).await.status(), 400);
    gw.wait_records(6).await;
    let after = scrape().await;
    let ok =
        "floopy_requests_total{status=\"200\",environment=\"production\",provider=\"fake-openai\"}";
    assert_eq!(after[ok] - before.get(ok).copied().unwrap_or(0.0), 5.0);
    let bad = "floopy_requests_total{status=\"400\",environment=\"development\",provider=\"\"}";
    assert_eq!(after[bad], 1.0);
    let count = "floopy_request_duration_seconds_count";
    assert_eq!(after[count] - before[count], 6.0);
    assert_eq!(after["floopy_log_records_written_total"], 6.0);
    assert_eq!(after["floopy_log_queue_depth"], 0.0);
    assert_eq!(after["floopy_snapshot_keys"], 6.0);
    let ready = reqwest::get(format!("http://{}/readyz", gw.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// With `FLOOPY_TIMELINE=1` the admin listener serves the slowest requests'
/// phase timelines, their marks in the order the phases run, and a read
/// starts the list over; without it, the endpoint says how to turn it on.
#[tokio::test]
async fn the_phase_timeline_orders_each_requests_phases() {
    let provider = start_provider().await;
    let gw = Gateway::start(
        &provider,
        Options {
            timeline: true,
            ..Options::default()
        },
    )
    .await;
    for _ in 0..5 {
        assert_eq!(post_chat(&gw, KEY_FREE, None).await.status(), 200);
    }
    let url = format!("http://{}/debug/timeline", gw.admin);
    let rows: Vec<Value> = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    let mark = |r: &Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    for r in &rows {
        assert_eq!(r["status"], 200);
        let order = [
            "request_filter_in_us",
            "request_filter_out_us",
            "response_header_us",
            "body_end_us",
            "record_in_us",
            "record_out_us",
            "total_us",
        ];
        for pair in order.windows(2) {
            assert!(mark(r, pair[0]) <= mark(r, pair[1]), "{pair:?} in {r}");
        }
        assert!(mark(r, "record_in_us") > 0, "{r}");
    }
    let totals: Vec<u64> = rows.iter().map(|r| mark(r, "total_us")).collect();
    assert!(
        totals.windows(2).all(|w| w[0] >= w[1]),
        "slowest first: {totals:?}"
    );
    let again: Vec<Value> = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert!(again.is_empty(), "a read starts the list over: {again:?}");

    let off = Gateway::start(&provider, Options::default()).await;
    let resp = reqwest::get(format!("http://{}/debug/timeline", off.admin))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("FLOOPY_TIMELINE=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_score_for_a_request_of_another_org_or_none_is_not_found() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let resp = post_chat(&gw, KEY_FREE, None).await;
    assert_eq!(resp.status(), 200);
    let ours = request_id(&resp);
    let score = |key: &'static str, id: String| {
        let url = gw.url("/v1/feedback");
        async move {
            let resp = client()
                .post(url)
                .header("authorization", bearer(key))
                .header("content-type", "application/json")
                .body(format!(r#"{{"request_id":"{id}","score":0.5}}"#))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        }
    };
    let (status, body) = score(KEY_OTHER_ORG, ours.clone()).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "request_not_found", "{body}");
    assert_eq!(body["error"]["param"], "request_id", "{body}");
    let (status, body) = score(KEY_FREE, uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("request_not_found")),
        "made up: {body}"
    );
    // Another key of the same org scores it.
    let (status, body) = score(KEY_DEFAULT, ours.clone()).await;
    assert_eq!((status, &body["request_id"]), (200, &json!(ours)), "{body}");
}
