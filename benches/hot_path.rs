//! Hot-path micro-benchmarks. Every group puts the design the gateway uses
//! next to a plain alternative, so the report reads as a ratio.
//!
//! Run with `cargo bench --bench hot_path`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use serde_json::Value;
use uuid::Uuid;

use floopy_gateway::auth::authenticate;
use floopy_gateway::body::{parse_request, request_stream_usage};
use floopy_gateway::logs::{LogId, RequestLog};
use floopy_gateway::pricing::{cost_micro_usd, Price, PriceTable};
use floopy_gateway::project::resolve_project;
use floopy_gateway::snapshot::{ConfigParts, Settings, Snapshot};
use floopy_gateway::upstream::{ProviderKind, Routes};
use floopy_gateway::usage::json::usage_from_json;
use floopy_gateway::usage::sse::SseUsageParser;
use floopy_gateway::usage::Usage;
use floopy_model::{hash_key, ApiKey, ControlData, KeyHash, Project, DEFAULT_PROJECT_ID};

/// Short, uniform settings so the whole suite stays within a few minutes.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30);
    g
}

fn snapshot_of(data: &ControlData) -> Snapshot {
    Snapshot::build(
        data,
        std::sync::Arc::new(ConfigParts::new(
            Routes::default(),
            PriceTable::default(),
            Settings {
                max_body_bytes: 1 << 20,
                max_failed_auth_per_minute: 0,
                default_completion_tokens: 4096,
                gateway_id: "bench".into(),
            },
        )),
    )
}

fn api_key(org_id: Uuid, hash: KeyHash) -> ApiKey {
    ApiKey {
        id: Uuid::now_v7(),
        org_id,
        name: "bench".into(),
        hash,
        environment: None,
        project_id: None,
        default_project_id: None,
        revoked: false,
    }
}

// ---------------------------------------------------------------- key_lookup

const KEYS: usize = 100_000;
/// Lookups rotate over this many distinct present keys (power of two), so the
/// probe does not hit the same cache lines every iteration.
const PROBES: usize = 4096;

fn secret(i: usize) -> String {
    format!("fpk_{i:036}")
}

fn key_lookup(c: &mut Criterion) {
    let data = ControlData {
        api_keys: (0..KEYS)
            .map(|i| {
                Arc::new(api_key(
                    Uuid::from_u128(i as u128 % 1000),
                    hash_key(secret(i).as_bytes()),
                ))
            })
            .collect(),
        ..Default::default()
    };
    let snapshot = snapshot_of(&data);
    let sip: HashMap<KeyHash, Arc<ApiKey>> =
        data.api_keys.iter().map(|k| (k.hash, k.clone())).collect();
    // A fixed, scattered set of present keys.
    let picks: Vec<usize> = (0..PROBES).map(|i| (i * 7919 + 13) % KEYS).collect();
    let hashes: Vec<KeyHash> = picks
        .iter()
        .map(|&i| hash_key(secret(i).as_bytes()))
        .collect();
    let headers: Vec<Vec<u8>> = picks
        .iter()
        .map(|&i| format!("Bearer {}", secret(i)).into_bytes())
        .collect();

    let mut g = group(c, "key_lookup");
    g.bench_function("snapshot_key_passthrough", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(snapshot.key(black_box(&hashes[i])))
        })
    });
    g.bench_function("std_hashmap_siphash", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(sip.get(black_box(&hashes[i])))
        })
    });
    g.bench_function("authenticate_incl_sha256", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & (PROBES - 1);
            black_box(authenticate(&snapshot, Some(black_box(&headers[i][..]))).is_ok())
        })
    });
    g.finish();
}

// -------------------------------------------------------- project_resolution

/// The same fallback chain as `resolve_project`, written plainly: the header
/// as `&str` parsed by `Uuid::parse_str`, projects in a SipHash `HashMap`.
fn plain_resolve(
    projects: &HashMap<(Uuid, Uuid), bool>,
    key: &ApiKey,
    header: Option<&[u8]>,
) -> Result<Uuid, ()> {
    let requested = match header {
        Some(h) => {
            let s = std::str::from_utf8(h).map_err(|_| ())?;
            Some(Uuid::parse_str(s).map_err(|_| ())?)
        }
        None => None,
    };
    let active = |p: Uuid| projects.get(&(key.org_id, p)) == Some(&false);
    if let Some(locked) = key.project_id {
        if requested.is_some_and(|r| r != locked) || !active(locked) {
            return Err(());
        }
        return Ok(locked);
    }
    if let Some(requested) = requested {
        return if requested == DEFAULT_PROJECT_ID || active(requested) {
            Ok(requested)
        } else {
            Err(())
        };
    }
    if let Some(default) = key.default_project_id {
        if active(default) {
            return Ok(default);
        }
    }
    Ok(DEFAULT_PROJECT_ID)
}

fn project_resolution(c: &mut Criterion) {
    const ORGS: u128 = 2_000;
    const PER_ORG: u128 = 5;
    let mut projects = Vec::new();
    for org in 0..ORGS {
        let org_id = Uuid::from_u128(0xA000_0000 + org);
        projects.push(Project {
            org_id,
            id: DEFAULT_PROJECT_ID,
            name: "Default".into(),
            slug: "default".into(),
            archived: false,
        });
        for p in 1..=PER_ORG {
            projects.push(Project {
                org_id,
                id: Uuid::from_u128((org << 64) | p | 0x0190_0000_0000_7000_8000_0000_0000_0000),
                name: format!("p{p}"),
                slug: format!("p{p}"),
                archived: p == PER_ORG,
            });
        }
    }
    let data = ControlData {
        projects: projects.clone(),
        ..Default::default()
    };
    let snapshot = snapshot_of(&data);
    let sip: HashMap<(Uuid, Uuid), bool> = projects
        .iter()
        .map(|p| ((p.org_id, p.id), p.archived))
        .collect();

    let org = 1234u128;
    let org_id = Uuid::from_u128(0xA000_0000 + org);
    let project =
        |p: u128| Uuid::from_u128((org << 64) | p | 0x0190_0000_0000_7000_8000_0000_0000_0000);
    let mut open = api_key(org_id, hash_key(b"open"));
    open.default_project_id = None;
    let mut locked = api_key(org_id, hash_key(b"locked"));
    locked.project_id = Some(project(1));
    let mut with_default = api_key(org_id, hash_key(b"default"));
    with_default.default_project_id = Some(project(2));
    let mut archived_default = api_key(org_id, hash_key(b"archived"));
    archived_default.default_project_id = Some(project(PER_ORG));
    let header = project(3).hyphenated().to_string();

    let cases: [(&str, &ApiKey, Option<&[u8]>); 5] = [
        ("header", &open, Some(header.as_bytes())),
        ("locked_key", &locked, None),
        ("key_default", &with_default, None),
        ("org_default_no_key_default", &open, None),
        ("org_default_archived_key_default", &archived_default, None),
    ];
    let mut g = group(c, "project_resolution");
    for (name, key, header) in cases {
        assert_eq!(
            resolve_project(&snapshot, key, header).ok(),
            plain_resolve(&sip, key, header).ok(),
            "{name}: both resolve the same project"
        );
        g.bench_with_input(BenchmarkId::new("resolve_project", name), &(), |b, _| {
            b.iter(|| {
                black_box(resolve_project(
                    &snapshot,
                    black_box(key),
                    black_box(header),
                ))
            })
        });
        g.bench_with_input(BenchmarkId::new("plain_str_siphash", name), &(), |b, _| {
            b.iter(|| black_box(plain_resolve(&sip, black_box(key), black_box(header))))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------- usage_json

const PROSE: &str = "Here is the plan, step by step:\n1. Read the \"config\" file.\n2. Validate every field; reject unknown keys.\n3. Build the index once, then serve lookups without locks. ";

/// Text of about `len` bytes once JSON-escaped.
fn prose(len: usize) -> String {
    let mut s = String::with_capacity(len + PROSE.len());
    while serde_json::to_string(&s).unwrap().len() < len {
        s.push_str(PROSE);
    }
    s
}

/// An OpenAI chat.completion body of roughly `size` bytes.
fn chat_completion(size: usize) -> Vec<u8> {
    let envelope = |content: &str| {
        serde_json::to_vec(&serde_json::json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1_727_000_000,
            "model": "gpt-4o-2024-08-06",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": 1_117,
                "completion_tokens": 446,
                "total_tokens": 1_563,
                "prompt_tokens_details": {"cached_tokens": 1_024, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0
                }
            },
            "system_fingerprint": "fp_b2ffeb16ee"
        }))
        .unwrap()
    };
    let overhead = envelope("").len();
    envelope(&prose(size.saturating_sub(overhead)))
}

fn usage_via_value(body: &[u8]) -> Option<Usage> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let u = v.get("usage")?;
    Some(Usage {
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        cached_tokens: u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
    })
}

fn usage_json(c: &mut Criterion) {
    let mut g = group(c, "usage_json");
    for (label, size) in [("2KB", 2 * 1024), ("64KB", 64 * 1024)] {
        let body = chat_completion(size);
        let expected = usage_via_value(&body);
        assert!(expected.is_some());
        assert_eq!(usage_from_json(ProviderKind::OpenAi, &body), expected);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("usage_from_json", label),
            &body,
            |b, body| b.iter(|| black_box(usage_from_json(ProviderKind::OpenAi, black_box(body)))),
        );
        g.bench_with_input(
            BenchmarkId::new("serde_value_whole", label),
            &body,
            |b, body| b.iter(|| black_box(usage_via_value(black_box(body)))),
        );
    }
    g.finish();
}

// ----------------------------------------------------------------- usage_sse

const CONTENT_CHUNKS: usize = 200;
const PIECE: usize = 1024;

/// An OpenAI chat.completion.chunk stream: 200 content chunks, a finish
/// chunk, the usage-only chunk and `[DONE]`. With `usage_null`, every chunk
/// carries `"usage":null`, which is what OpenAI sends once
/// `stream_options.include_usage` is set.
fn openai_stream(usage_null: bool) -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b2ffeb16ee","choices":"#;
    let tail = if usage_null { r#","usage":null}"# } else { "}" };
    let words = [
        " the", " gateway", " reads", " usage", " from", " each", " stream", ",", " then",
        " prices", " it", ".\\n",
    ];
    let mut out = Vec::new();
    for i in 0..CONTENT_CHUNKS {
        let delta = if i == 0 {
            r#"{"role":"assistant","content":"","refusal":null}"#.to_string()
        } else {
            format!(r#"{{"content":"{}"}}"#, words[i % words.len()])
        };
        out.extend_from_slice(
            format!(
                "data: {head}[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":null}}]{tail}\n\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!("data: {head}[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}]{tail}\n\n")
            .as_bytes(),
    );
    out.extend_from_slice(
        format!("data: {head}[],\"usage\":{{\"prompt_tokens\":1117,\"completion_tokens\":200,\"total_tokens\":1317,\"prompt_tokens_details\":{{\"cached_tokens\":1024,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n")
            .as_bytes(),
    );
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// Feeds the stream in network-sized pieces, as `response_body_filter` does;
/// returns the usage and how many bytes the client would get.
fn run_parser(stream: &[u8], strip: bool) -> (Option<Usage>, usize) {
    let mut parser = SseUsageParser::new(ProviderKind::OpenAi, strip);
    let mut sent = 0;
    for piece in stream.chunks(PIECE) {
        sent += match parser.filter(black_box(piece)) {
            Some(out) => black_box(out).len(),
            None => piece.len(),
        };
    }
    if let Some(rest) = parser.finish() {
        sent += rest.len();
    }
    (parser.usage(), sent)
}

/// Accumulate everything, split on blank lines, parse every `data:` line.
fn run_naive(stream: &[u8]) -> (Option<Usage>, usize) {
    let mut all = Vec::new();
    for piece in stream.chunks(PIECE) {
        all.extend_from_slice(black_box(piece));
    }
    let text = std::str::from_utf8(&all).ok();
    let mut usage = None;
    for event in text.into_iter().flat_map(|t| t.split("\n\n")) {
        for line in event.lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                usage = Some(Usage {
                    prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
                    completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
                    cached_tokens: u["prompt_tokens_details"]["cached_tokens"]
                        .as_u64()
                        .unwrap_or(0),
                });
            }
        }
    }
    (usage, all.len())
}

fn usage_sse(c: &mut Criterion) {
    let mut g = group(c, "usage_sse");
    for (label, usage_null) in [
        ("usage_null_in_chunks", true),
        ("no_usage_in_chunks", false),
    ] {
        let stream = openai_stream(usage_null);
        let (expected, _) = run_naive(&stream);
        assert_eq!(expected.map(|u| u.prompt_tokens), Some(1117));
        assert_eq!(run_parser(&stream, true).0, expected);
        assert_eq!(run_parser(&stream, false), (expected, stream.len()));
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_with_input(BenchmarkId::new("parser_strip", label), &stream, |b, s| {
            b.iter(|| black_box(run_parser(s, true)))
        });
        g.bench_with_input(
            BenchmarkId::new("parser_passthrough", label),
            &stream,
            |b, s| b.iter(|| black_box(run_parser(s, false))),
        );
        g.bench_with_input(
            BenchmarkId::new("naive_accumulate_value", label),
            &stream,
            |b, s| b.iter(|| black_box(run_naive(s))),
        );
    }
    g.finish();
}

// ------------------------------------------------------------------ pricing

fn cost_f64(price_per_mtok_usd: (f64, f64, f64), usage: &Usage) -> f64 {
    let (input, output, cached_input) = price_per_mtok_usd;
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    (uncached as f64 * input
        + cached as f64 * cached_input
        + usage.completion_tokens as f64 * output)
        / 1e6
}

fn pricing(c: &mut Criterion) {
    let price = Price {
        input: 2_500_000,
        output: 10_000_000,
        cached_input: 1_250_000,
    };
    let price_f64 = (2.5, 10.0, 1.25);
    let usage = Usage {
        prompt_tokens: 1_117,
        completion_tokens: 446,
        cached_tokens: 1_024,
    };
    let mut g = group(c, "pricing");
    g.bench_function("cost_micro_usd_u128", |b| {
        b.iter(|| black_box(cost_micro_usd(black_box(&price), black_box(&usage))))
    });
    g.bench_function("f64_per_mtok", |b| {
        b.iter(|| black_box(cost_f64(black_box(price_f64), black_box(&usage))))
    });
    g.finish();
}

// ------------------------------------------------------------- request_body

/// An OpenAI chat request of roughly `size` bytes, `messages` first (as the
/// official SDKs send it), without `stream_options`.
fn chat_request(size: usize) -> Bytes {
    let turn = prose(600);
    let mut messages = vec![serde_json::json!({
        "role": "system",
        "content": "You are a careful assistant. Answer in plain English."
    })];
    loop {
        let body = serde_json::to_vec(&serde_json::json!({
            "messages": messages,
            "model": "gpt-4o",
            "temperature": 0.7,
            "max_tokens": 1024,
            "stream": true,
            "user": "user-8f14e45f"
        }))
        .unwrap();
        if body.len() >= size {
            return Bytes::from(body);
        }
        let role = if messages.len() % 2 == 1 {
            "user"
        } else {
            "assistant"
        };
        messages.push(serde_json::json!({"role": role, "content": turn}));
    }
}

struct ValueFields {
    model: String,
    stream: bool,
    include_usage: bool,
    user: Option<String>,
}

fn parse_via_value(body: &[u8]) -> Option<ValueFields> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(ValueFields {
        model: v.get("model")?.as_str()?.to_owned(),
        stream: v["stream"].as_bool().unwrap_or(false),
        include_usage: v["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
        user: v["user"].as_str().map(str::to_owned),
    })
}

fn insert_via_value(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?.insert(
        "stream_options".into(),
        serde_json::json!({"include_usage": true}),
    );
    serde_json::to_vec(&v).ok()
}

fn request_body(c: &mut Criterion) {
    let mut g = group(c, "request_body");
    for (label, size) in [("4KB", 4 * 1024), ("256KB", 256 * 1024)] {
        let body = chat_request(size);
        let fields = parse_request(&body).unwrap();
        let plain = parse_via_value(&body).unwrap();
        assert_eq!(
            (
                &fields.model,
                fields.stream,
                fields.include_usage,
                &fields.user
            ),
            (&plain.model, plain.stream, plain.include_usage, &plain.user)
        );
        assert!(
            parse_request(&request_stream_usage(&body, &fields).unwrap())
                .unwrap()
                .include_usage
        );
        assert!(
            parse_request(&insert_via_value(&body).unwrap())
                .unwrap()
                .include_usage
        );
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("parse/parse_request", label),
            &body,
            |b, body| b.iter(|| black_box(parse_request(black_box(body)))),
        );
        g.bench_with_input(
            BenchmarkId::new("parse/serde_value", label),
            &body,
            |b, body| b.iter(|| black_box(parse_via_value(black_box(body)))),
        );
        g.bench_with_input(
            BenchmarkId::new("insert/request_stream_usage", label),
            &body,
            |b, body| b.iter(|| black_box(request_stream_usage(black_box(body), &fields))),
        );
        g.bench_with_input(
            BenchmarkId::new("insert/serde_value_to_vec", label),
            &body,
            |b, body| b.iter(|| black_box(insert_via_value(black_box(body)))),
        );
    }
    g.finish();
}

/// The per-request limit check: RPM count plus cost reservation at
/// admission, settlement at the end; next to the same bookkeeping in one
/// mutex-guarded map.
fn limits(c: &mut Criterion) {
    use floopy_gateway::limits::clock::SystemClock;
    use floopy_gateway::limits::Limiter;
    use floopy_model::{Environment, EnvironmentLimits};
    use std::sync::Mutex;

    let mut group = group(c, "limits");
    let orgs: Vec<Uuid> = (0..1000u128).map(Uuid::from_u128).collect();
    let limits: Vec<EnvironmentLimits> = orgs
        .iter()
        .map(|&org_id| EnvironmentLimits {
            org_id,
            environment: Environment::Production,
            rpm: Some(u32::MAX),
            monthly_cost_micro_usd: Some(u64::MAX / 2),
        })
        .collect();
    let limiter = Limiter::new(Arc::new(SystemClock));
    let mut i = 0usize;
    group.bench_function("admit_and_settle", |b| {
        b.iter(|| {
            i = (i + 1) % orgs.len();
            let admission = limiter
                .admit(orgs[i], Environment::Production, Some(&limits[i]), 10_000)
                .unwrap();
            limiter.settle(
                admission,
                orgs[i],
                Some(DEFAULT_PROJECT_ID),
                limits[i].monthly_cost_micro_usd,
                9_000,
            );
        })
    });
    // (org, env) -> (minute, count, settled, reserved) under one mutex.
    type Counters = (u64, u64, u64, u64);
    let plain: Mutex<HashMap<(Uuid, Environment), Counters>> = Mutex::new(HashMap::new());
    let mut j = 0usize;
    group.bench_function("plain_mutex_map", |b| {
        b.iter(|| {
            j = (j + 1) % orgs.len();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let key = (orgs[j], Environment::Production);
            {
                let mut map = plain.lock().unwrap();
                let e = map.entry(key).or_default();
                if e.0 != now / 60_000 {
                    *e = (now / 60_000, 0, e.2, e.3);
                }
                e.1 += 1;
                e.3 += 10_000;
            }
            let mut map = plain.lock().unwrap();
            let e = map.entry(key).or_default();
            e.3 -= 10_000;
            e.2 += 9_000;
            black_box(e.2);
        })
    });
    group.finish();
}

/// A typical record: a priced chat completion with two properties.
fn log_record() -> RequestLog {
    RequestLog {
        request_id: LogId(Some(Uuid::now_v7())),
        ts_ms: 1_764_000_000_123,
        org_id: LogId(Some(Uuid::now_v7())),
        project_id: LogId(Some(Uuid::now_v7())),
        api_key_id: LogId(Some(Uuid::now_v7())),
        environment: "production",
        provider: "openai".into(),
        model: "gpt-4o".into(),
        path: "/v1/chat/completions".into(),
        status: 200,
        error_code: "",
        stream: 0,
        prompt_tokens: 812,
        completion_tokens: 164,
        cached_tokens: 512,
        cost_usd: 0.004_27,
        cost_micro_usd: 4_270,
        latency_ms: 912,
        ttfb_ms: 840,
        session_id: "sess-42".into(),
        user_id: "user-1234".into(),
        property_keys: vec!["team".into(), "feature".into()],
        property_values: vec!["search".into(), "summary".into()],
        gateway_id: Arc::from("gw-eu-1"),
    }
}

/// The request log record as JSON: written field by field against the
/// derived `Serialize` through `serde_json` (same bytes; tested).
fn log_json(c: &mut Criterion) {
    let record = log_record();
    let mut g = group(c, "log_record_json");
    let mut buf = Vec::with_capacity(1024);
    g.bench_function("write_json", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&record).write_json(&mut buf);
            black_box(buf.len())
        })
    });
    g.bench_function("serde_json_derived", |b| {
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&record)).unwrap();
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    limits,
    key_lookup,
    project_resolution,
    usage_json,
    usage_sse,
    pricing,
    request_body,
    log_json
);
criterion_main!(benches);
