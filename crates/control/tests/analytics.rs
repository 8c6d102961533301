//! The analytics API on known data: a generated but fixed data set (two
//! orgs, projects, environments, cached tokens, streams, errors, sessions,
//! users, properties, feedback given more than once and by another org, and
//! records delivered twice) loaded into a real ClickHouse 18.16; every
//! endpoint's numbers are checked against values computed here from the
//! records, for an org owner (all projects, and one), for a member of one
//! project (who must see nothing of the others), and for another org. The
//! same SQL then runs on the current engine (chdb) with the same answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::clickhouse::*;
use common::*;
use floopy_control::analytics::{self as sql, Filters, Range, Scope};
use serde_json::Value;
use uuid::Uuid;

/// splitmix64: the data set is the same at every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
struct Rec {
    request_id: Uuid,
    ts_ms: u64,
    org: Uuid,
    project: Option<Uuid>,
    key: Uuid,
    environment: &'static str,
    provider: &'static str,
    model: &'static str,
    status: u16,
    error_code: &'static str,
    stream: u8,
    prompt: u64,
    completion: u64,
    cached: u64,
    cost: u64,
    latency: u64,
    session: String,
    user: String,
    props: Vec<(String, String)>,
}

impl Rec {
    fn json(&self) -> String {
        serde_json::json!({
            "request_id": self.request_id.to_string(),
            "ts_ms": self.ts_ms,
            "org_id": self.org.to_string(),
            "project_id": self.project.map(|p| p.to_string()).unwrap_or_default(),
            "api_key_id": self.key.to_string(),
            "environment": self.environment,
            "provider": self.provider,
            "model": self.model,
            "path": "/v1/chat/completions",
            "status": self.status,
            "error_code": self.error_code,
            "stream": self.stream,
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "cached_tokens": self.cached,
            "cost_usd": self.cost as f64 / 1e6,
            "cost_micro_usd": self.cost,
            "latency_ms": self.latency,
            "ttfb_ms": self.latency / 2,
            "session_id": self.session,
            "user_id": self.user,
            "property_keys": self.props.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
            "property_values": self.props.iter().map(|p| p.1.clone()).collect::<Vec<_>>(),
            "gateway_id": "g1",
        })
        .to_string()
    }

    fn tokens(&self) -> u64 {
        self.prompt + self.completion
    }
}

#[derive(Debug, Clone)]
struct Score {
    feedback_id: Uuid,
    request_id: Uuid,
    ts_ms: u64,
    org: Uuid,
    score: f64,
    comment: String,
}

impl Score {
    fn json(&self) -> String {
        serde_json::json!({
            "feedback_id": self.feedback_id.to_string(),
            "request_id": self.request_id.to_string(),
            "ts_ms": self.ts_ms,
            "org_id": self.org.to_string(),
            "project_id": "",
            "api_key_id": "",
            "user_id": "",
            "score": self.score,
            "comment": self.comment,
        })
        .to_string()
    }
}

const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;

struct DataSet {
    recs: Vec<Rec>,
    scores: Vec<Score>,
    /// Records delivered twice.
    replayed: Vec<Rec>,
    from_ms: u64,
    to_ms: u64,
}

fn generate(org_a: Uuid, projects_a: &[Uuid], org_b: Uuid, project_b: Uuid, now: u64) -> DataSet {
    let mut rng = Rng(0x5EED);
    // Whole hours, so hourly and daily buckets are the same on both sides.
    let to_ms = now / HOUR * HOUR;
    let from_ms = to_ms - 6 * DAY;
    let keys_a: Vec<Uuid> = (0..4).map(|i| Uuid::from_u128(0xA000 + i)).collect();
    let key_b = Uuid::from_u128(0xB000);
    let models = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("openai", "unpriced-model"),
    ];
    let mut recs = Vec::new();
    for i in 0..3_000u64 {
        let in_a = rng.below(10) < 8;
        let (org, project) = if in_a {
            // One in 40 refused before its project was known.
            let project = if rng.below(40) == 0 {
                None
            } else {
                Some(rng.pick(projects_a))
            };
            (org_a, project)
        } else {
            (org_b, Some(project_b))
        };
        let (provider, model) = rng.pick(&models);
        let (status, error_code) = match rng.below(100) {
            0..=79 => (200, ""),
            80..=84 => (429, "rate_limit_exceeded"),
            85..=87 => (402, "environment_cost_cap_exceeded"),
            88..=90 => (401, "api_key_revoked"),
            91..=92 => (403, "project_mismatch"),
            _ => (502, "upstream_error"),
        };
        let (project, status, error_code) = if status == 403 {
            (None, status, error_code)
        } else {
            (project, status, error_code)
        };
        let ok = status == 200;
        let prompt = if ok { 10 + rng.below(5_000) } else { 0 };
        let cached = if ok && rng.below(3) == 0 {
            rng.below(prompt + 1)
        } else {
            0
        };
        let completion = if ok { rng.below(2_000) } else { 0 };
        let cost = if ok {
            prompt * 2 + completion * 10 + rng.below(7)
        } else {
            0
        };
        let mut props = Vec::new();
        if rng.below(2) == 0 {
            props.push((
                "team".to_string(),
                rng.pick(&["core", "growth"]).to_string(),
            ));
        }
        if rng.below(3) == 0 {
            props.push((
                "feature".to_string(),
                rng.pick(&["chat", "search", "it's \"quoted\""]).to_string(),
            ));
        }
        recs.push(Rec {
            request_id: Uuid::from_u128(u128::from(rng.next()) << 64 | u128::from(i)),
            ts_ms: from_ms + rng.below(to_ms - from_ms),
            org,
            project,
            key: if org == org_a {
                rng.pick(&keys_a)
            } else {
                key_b
            },
            environment: rng.pick(&["production", "staging", "development", ""]),
            provider,
            model,
            status,
            error_code,
            stream: u8::from(rng.below(2) == 0),
            prompt,
            completion,
            cached,
            cost,
            latency: 1 + rng.below(3_000),
            session: if rng.below(3) == 0 {
                String::new()
            } else {
                format!("s-{}", rng.below(25))
            },
            user: if rng.below(4) == 0 {
                String::new()
            } else {
                format!("u-{}", rng.below(15))
            },
            props,
        });
    }
    // Outside the range: must never be counted.
    for (i, ts) in [from_ms - 1, to_ms, to_ms + HOUR].into_iter().enumerate() {
        let mut r = recs[i].clone();
        r.request_id = Uuid::from_u128(0xFFFF_0000 + i as u128);
        r.ts_ms = ts;
        recs.push(r);
    }
    let replayed: Vec<Rec> = recs.iter().step_by(17).cloned().collect();
    let mut scores = Vec::new();
    for r in recs.iter().filter(|r| r.org == org_a).step_by(7) {
        for k in 0..=rng.below(3) {
            scores.push(Score {
                feedback_id: Uuid::from_u128(u128::from(rng.next())),
                request_id: r.request_id,
                ts_ms: r.ts_ms + 1_000 * (k + 1),
                org: org_a,
                score: rng.below(101) as f64 / 100.0,
                comment: format!("c{k}"),
            });
        }
    }
    // Another org scoring org A's requests: counts for nobody.
    for r in recs.iter().filter(|r| r.org == org_a).step_by(11).take(30) {
        scores.push(Score {
            feedback_id: Uuid::from_u128(u128::from(rng.next())),
            request_id: r.request_id,
            ts_ms: r.ts_ms + 99_000,
            org: org_b,
            score: 0.0,
            comment: "not yours".into(),
        });
    }
    DataSet {
        recs,
        scores,
        replayed,
        from_ms,
        to_ms,
    }
}

/// What a caller sees: an org and optionally a set of projects.
#[derive(Clone)]
struct View {
    org: Uuid,
    projects: Option<Vec<Uuid>>,
}

impl View {
    fn sees(&self, r: &Rec) -> bool {
        r.org == self.org
            && match &self.projects {
                None => true,
                Some(ps) => r.project.is_some_and(|p| ps.contains(&p)),
            }
    }
}

struct Expect<'a> {
    data: &'a DataSet,
}

impl<'a> Expect<'a> {
    fn in_range(&self, view: &View) -> Vec<&'a Rec> {
        self.data
            .recs
            .iter()
            .filter(|r| view.sees(r) && r.ts_ms >= self.data.from_ms && r.ts_ms < self.data.to_ms)
            .collect()
    }

    /// Each request's last score of its own org.
    fn last_scores(&self) -> HashMap<Uuid, f64> {
        let org_of: HashMap<Uuid, Uuid> = self
            .data
            .recs
            .iter()
            .map(|r| (r.request_id, r.org))
            .collect();
        let mut last: HashMap<Uuid, (u64, f64)> = HashMap::new();
        for s in &self.data.scores {
            if org_of.get(&s.request_id) != Some(&s.org) {
                continue;
            }
            let e = last.entry(s.request_id).or_insert((0, 0.0));
            if s.ts_ms >= e.0 {
                *e = (s.ts_ms, s.score);
            }
        }
        last.into_iter().map(|(k, (_, v))| (k, v)).collect()
    }
}

/// ClickHouse's quantileExact: the element at floor(level * n) of the
/// sorted values.
fn quantile_exact(values: &[u64], level: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = ((level * v.len() as f64) as usize).min(v.len() - 1);
    v[n] as f64
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

struct Api<'a> {
    http: reqwest::Client,
    control: &'a Control,
    org: Uuid,
    token: String,
    range: String,
}

impl Api<'_> {
    async fn get(&self, path: &str, query: &str) -> Value {
        let url = self.control.url(&format!(
            "/v1/orgs/{}/analytics/{path}?{}{query}",
            self.org, self.range
        ));
        let (status, body) = call(&self.http, "GET", &url, Some(&self.token), None).await;
        assert_eq!(status, 200, "{url}: {body}");
        body
    }

    async fn status(&self, path: &str, query: &str) -> u16 {
        let url = self.control.url(&format!(
            "/v1/orgs/{}/analytics/{path}?{}{query}",
            self.org, self.range
        ));
        call(&self.http, "GET", &url, Some(&self.token), None)
            .await
            .0
    }
}

/// Every endpoint's figures for `view` (with `project` selected, if any).
async fn check_everything(api: &Api<'_>, expect: &Expect<'_>, view: &View, project: Option<Uuid>) {
    let q = project.map(|p| format!("&project={p}")).unwrap_or_default();
    let selected = match project {
        Some(p) => View {
            org: view.org,
            projects: Some(vec![p]),
        },
        None => view.clone(),
    };
    let recs = expect.in_range(&selected);
    let label = format!("{:?} {project:?}", view.projects);

    // The request list, every page, newest first.
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = api.get("requests", &format!("{q}&limit=500{cursor}")).await;
        for r in page["data"].as_array().unwrap() {
            listed.push((
                u(&r["ts_ms"]),
                r["request_id"].as_str().unwrap().to_string(),
                u(&r["cost_micro_usd"]),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let mut want: Vec<(u64, String, u64)> = recs
        .iter()
        .map(|r| (r.ts_ms, r.request_id.to_string(), r.cost))
        .collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(listed.len(), want.len(), "{label}: requests listed");
    assert_eq!(listed, want, "{label}: the request list, newest first");

    // Filters.
    let by = |pred: &dyn Fn(&Rec) -> bool| recs.iter().filter(|r| pred(r)).count();
    let filtered = api
        .get(
            "requests",
            &format!("{q}&limit=500&model=gpt-4o&environment=production"),
        )
        .await;
    assert_eq!(
        filtered["data"].as_array().unwrap().len(),
        by(&|r| r.model == "gpt-4o" && r.environment == "production"),
        "{label}: model and environment filter"
    );
    let filtered = api
        .get(
            "requests",
            &format!("{q}&limit=500&property=feature&property_value=it%27s%20%22quoted%22"),
        )
        .await;
    assert_eq!(
        filtered["data"].as_array().unwrap().len(),
        by(&|r| r
            .props
            .iter()
            .any(|(k, v)| k == "feature" && v == "it's \"quoted\"")),
        "{label}: property filter"
    );
    let filtered = api
        .get("requests", &format!("{q}&limit=500&status=429"))
        .await;
    assert_eq!(
        filtered["data"].as_array().unwrap().len(),
        by(&|r| r.status == 429),
        "{label}: status filter"
    );

    // The series, daily.
    let series = api.get("timeseries", &format!("{q}&interval=day")).await;
    let mut days: BTreeMap<u64, Vec<&Rec>> = BTreeMap::new();
    for r in &recs {
        days.entry(r.ts_ms / DAY * DAY).or_default().push(r);
    }
    let points = series["data"].as_array().unwrap();
    assert_eq!(points.len(), days.len(), "{label}: days");
    for (p, (day, rs)) in points.iter().zip(&days) {
        assert_eq!(p["time"], floopy_model::calendar::rfc3339(*day));
        assert_eq!(u(&p["requests"]), rs.len() as u64);
        assert_eq!(
            u(&p["cost_micro_usd"]),
            rs.iter().map(|r| r.cost).sum::<u64>()
        );
        assert_eq!(
            u(&p["prompt_tokens"]),
            rs.iter().map(|r| r.prompt).sum::<u64>()
        );
        assert_eq!(
            u(&p["errors"]),
            rs.iter().filter(|r| r.status >= 400).count() as u64
        );
        let lat: Vec<u64> = rs.iter().map(|r| r.latency).collect();
        for (field, level) in [
            ("p50_latency_ms", 0.5),
            ("p95_latency_ms", 0.95),
            ("p99_latency_ms", 0.99),
        ] {
            assert_eq!(
                f(&p[field]),
                quantile_exact(&lat, level),
                "{label}: {field}"
            );
        }
    }

    // Sessions and users.
    for (path, key) in [("sessions", 0), ("users", 1)] {
        let page = api.get(path, &format!("{q}&limit=500")).await;
        let mut want: HashMap<String, (u64, u64, u64)> = HashMap::new();
        for r in &recs {
            let id = if key == 0 { &r.session } else { &r.user };
            if id.is_empty() {
                continue;
            }
            let e = want.entry(id.clone()).or_default();
            e.0 += 1;
            e.1 += r.cost;
            e.2 += r.tokens();
        }
        let got: HashMap<String, (u64, u64, u64)> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().unwrap().to_string(),
                    (u(&g["requests"]), u(&g["cost_micro_usd"]), u(&g["tokens"])),
                )
            })
            .collect();
        assert_eq!(got, want, "{label}: {path}");
    }

    // Properties.
    let page = api.get("properties", &format!("{q}&limit=500")).await;
    let mut want: HashMap<(String, String), (u64, u64)> = HashMap::new();
    for r in &recs {
        for (k, v) in &r.props {
            let e = want.entry((k.clone(), v.clone())).or_default();
            e.0 += 1;
            e.1 += r.cost;
        }
    }
    let got: HashMap<(String, String), (u64, u64)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["value"].as_str().unwrap().to_string(),
                ),
                (u(&p["requests"]), u(&p["cost_micro_usd"])),
            )
        })
        .collect();
    assert_eq!(got, want, "{label}: properties");

    // Cache, with the configured prices (gpt-4o: 2.50 / 1.25 per Mtok).
    let cache = api.get("cache", &q).await;
    let mut saved = 0u64;
    for m in cache["data"].as_array().unwrap() {
        let model = m["model"].as_str().unwrap();
        let rs: Vec<&&Rec> = recs.iter().filter(|r| r.model == model).collect();
        let prompt: u64 = rs.iter().map(|r| r.prompt).sum();
        let cached: u64 = rs.iter().map(|r| r.cached).sum();
        assert_eq!(u(&m["prompt_tokens"]), prompt, "{label}: {model}");
        assert_eq!(u(&m["cached_tokens"]), cached, "{label}: {model}");
        let per_mtok = match model {
            "gpt-4o" => Some(2_500_000 - 1_250_000),
            "gpt-4o-mini" => Some(150_000 - 75_000),
            "claude-sonnet-4-5" => Some(3_000_000 - 300_000),
            _ => None,
        };
        let want = per_mtok.map(|p: u64| (cached * p + 500_000) / 1_000_000);
        assert_eq!(
            m["saved_micro_usd"].as_u64(),
            want,
            "{label}: {model} saving"
        );
        saved += want.unwrap_or(0);
    }
    assert_eq!(u(&cache["saved_micro_usd"]), saved);
    // And the models listed are every model of the view's requests.
    let listed: BTreeSet<&str> = cache["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    let want_models: BTreeSet<&str> = recs
        .iter()
        .map(|r| r.model)
        .filter(|m| !m.is_empty())
        .collect();
    assert_eq!(listed, want_models, "{label}: the cache's models");

    // Rate limits and security, hourly.
    let limited = api.get("rate-limits", &format!("{q}&interval=hour")).await;
    let mut want: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.status == 429 || r.status == 402) {
        let e = want
            .entry((r.ts_ms / HOUR * HOUR, r.environment.to_string()))
            .or_default();
        if r.status == 429 {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let got: Vec<((u64, String), (u64, u64))> = limited["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (
                    floopy_model::calendar::parse_time(p["time"].as_str().unwrap()).unwrap(),
                    p["environment"].as_str().unwrap().to_string(),
                ),
                (u(&p["rate_limited"]), u(&p["cost_capped"])),
            )
        })
        .collect();
    assert_eq!(
        got,
        want.into_iter().collect::<Vec<_>>(),
        "{label}: rate limits"
    );
    let security = api.get("security", &format!("{q}&interval=day")).await;
    let mut want: BTreeMap<(u64, String, u64, String), u64> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.status == 401 || r.status == 403) {
        *want
            .entry((
                r.ts_ms / DAY * DAY,
                r.key.to_string(),
                u64::from(r.status),
                r.error_code.to_string(),
            ))
            .or_default() += 1;
    }
    let got: Vec<((u64, String, u64, String), u64)> = security["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (
                    floopy_model::calendar::parse_time(p["time"].as_str().unwrap()).unwrap(),
                    p["api_key_id"].as_str().unwrap().to_string(),
                    u(&p["status"]),
                    p["error_code"].as_str().unwrap().to_string(),
                ),
                u(&p["requests"]),
            )
        })
        .collect();
    assert_eq!(
        got,
        want.into_iter().collect::<Vec<_>>(),
        "{label}: security"
    );

    // Evaluations: each request's last score of its own org.
    let last = expect.last_scores();
    let scored: Vec<(Option<Uuid>, f64)> = recs
        .iter()
        .filter_map(|r| last.get(&r.request_id).map(|s| (r.project, *s)))
        .collect();
    let evals = api.get("evaluations", &q).await;
    assert_eq!(
        u(&evals["ratings"]),
        scored.len() as u64,
        "{label}: ratings"
    );
    if !scored.is_empty() {
        let avg = scored.iter().map(|s| s.1).sum::<f64>() / scored.len() as f64;
        assert!(close(f(&evals["avg_score"]), avg), "{label}: average score");
    }
    let mut histogram = vec![0u64; 10];
    for (_, s) in &scored {
        histogram[((s * 10.0).floor() as usize).min(9)] += 1;
    }
    let got: Vec<u64> = evals["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect();
    assert_eq!(got, histogram, "{label}: histogram");
    for r in evals["recent"].as_array().unwrap() {
        let id = Uuid::parse_str(r["request_id"].as_str().unwrap()).unwrap();
        assert!(close(f(&r["score"]), last[&id]), "{label}: recent score");
        assert!(
            recs.iter().any(|x| x.request_id == id),
            "{label}: a recent score of a request not in view"
        );
    }

    // The breakdown table: every project of the view.
    let peers = expect.in_range(view);
    let total_cost: u64 = peers
        .iter()
        .filter(|r| r.project.is_some())
        .map(|r| r.cost)
        .sum();
    let table = api.get("projects", &q).await;
    let mut projects_seen = BTreeSet::new();
    for row in table["data"].as_array().unwrap() {
        let p = Uuid::parse_str(row["project_id"].as_str().unwrap()).unwrap();
        projects_seen.insert(p);
        let rs: Vec<&&Rec> = peers.iter().filter(|r| r.project == Some(p)).collect();
        let cost: u64 = rs.iter().map(|r| r.cost).sum();
        let tokens: u64 = rs.iter().map(|r| r.tokens()).sum();
        assert_eq!(
            u(&row["requests"]),
            rs.len() as u64,
            "{label}: {p} requests"
        );
        assert_eq!(u(&row["cost_micro_usd"]), cost, "{label}: {p} cost");
        assert_eq!(u(&row["tokens"]), tokens, "{label}: {p} tokens");
        assert!(close(f(&row["cost_per_mtok"]), cost as f64 / tokens as f64));
        assert!(close(
            f(&row["cost_share"]),
            cost as f64 / total_cost as f64
        ));
        let lat: Vec<u64> = rs.iter().map(|r| r.latency).collect();
        assert_eq!(f(&row["p95_latency_ms"]), quantile_exact(&lat, 0.95));
        let errors = rs.iter().filter(|r| r.status >= 400).count();
        assert!(close(
            f(&row["error_rate"]),
            errors as f64 / rs.len() as f64
        ));
        let ps: Vec<f64> = rs
            .iter()
            .filter_map(|r| last.get(&r.request_id).copied())
            .collect();
        assert_eq!(u(&row["ratings"]), ps.len() as u64);
        if !ps.is_empty() {
            let avg = ps.iter().sum::<f64>() / ps.len() as f64;
            assert!(
                close(f(&row["feedback_score"]), avg),
                "{label}: {p} quality"
            );
        }
    }
    let want_projects: BTreeSet<Uuid> = expect
        .in_range(&selected)
        .iter()
        .filter_map(|r| r.project)
        .collect();
    assert_eq!(
        projects_seen, want_projects,
        "{label}: projects in the table"
    );

    // The single-project widgets, against the view's average.
    let Some(p) = project else { return };
    let mine: Vec<&&Rec> = peers.iter().filter(|r| r.project == Some(p)).collect();
    let with_project: Vec<&&Rec> = peers.iter().filter(|r| r.project.is_some()).collect();
    let ratio = |rs: &[&&Rec], num: &dyn Fn(&Rec) -> u64, den: &dyn Fn(&Rec) -> u64| {
        rs.iter().map(|r| num(r)).sum::<u64>() as f64
            / rs.iter().map(|r| den(r)).sum::<u64>() as f64
    };
    let w = api.get("widgets/cost-per-mtok", &q).await;
    assert!(close(
        f(&w["project"]),
        ratio(&mine, &|r| r.cost, &|r| r.tokens())
    ));
    assert!(close(
        f(&w["org_average"]),
        ratio(&with_project, &|r| r.cost, &|r| r.tokens())
    ));
    let w = api.get("widgets/latency", &q).await;
    assert!(close(
        f(&w["project"]),
        ratio(&mine, &|r| r.latency, &|_| 1)
    ));
    assert!(close(
        f(&w["org_average"]),
        ratio(&with_project, &|r| r.latency, &|_| 1)
    ));
    let w = api.get("widgets/quality", &q).await;
    let scores_of = |rs: &[&&Rec]| -> Vec<f64> {
        rs.iter()
            .filter_map(|r| last.get(&r.request_id).copied())
            .collect()
    };
    let (m, o) = (scores_of(&mine), scores_of(&with_project));
    assert!(close(
        f(&w["project"]),
        m.iter().sum::<f64>() / m.len() as f64
    ));
    assert!(close(
        f(&w["org_average"]),
        o.iter().sum::<f64>() / o.len() as f64
    ));
    // Rank by requests: the share of the other projects with fewer.
    let mut counts: HashMap<Uuid, u64> = HashMap::new();
    for r in &with_project {
        *counts.entry(r.project.unwrap()).or_default() += 1;
    }
    let w = api
        .get("widgets/rank", &format!("{q}&metric=requests"))
        .await;
    let me = counts[&p];
    let lower = counts.values().filter(|c| **c < me).count();
    let higher = counts.values().filter(|c| **c > me).count();
    assert_eq!(
        u(&w["projects"]),
        counts.len() as u64,
        "{label}: ranked projects"
    );
    assert_eq!(u(&w["rank"]), higher as u64 + 1, "{label}: rank");
    let want = if counts.len() <= 1 {
        100.0
    } else {
        100.0 * lower as f64 / (counts.len() - 1) as f64
    };
    assert!(close(f(&w["percentile"]), want), "{label}: percentile");
    // The other metrics: each project's figure from the test's own records
    // (a project with no tokens, or no score, has none and is not ranked),
    // the rank one more than the projects with a higher one.
    #[derive(Default)]
    struct Sums {
        cost: u64,
        tokens: u64,
        latency: u64,
        requests: u64,
        score: f64,
        ratings: u64,
    }
    let mut sums: HashMap<Uuid, Sums> = HashMap::new();
    for r in &with_project {
        let s = sums.entry(r.project.unwrap()).or_default();
        s.cost += r.cost;
        s.tokens += r.tokens();
        s.latency += r.latency;
        s.requests += 1;
        if let Some(score) = last.get(&r.request_id) {
            s.score += score;
            s.ratings += 1;
        }
    }
    let per = |n: f64, d: u64| (d > 0).then(|| n / d as f64);
    for (metric, figure) in [
        (
            "cost",
            &(|s: &Sums| Some(s.cost as f64)) as &dyn Fn(&Sums) -> Option<f64>,
        ),
        ("cost_per_mtok", &|s: &Sums| per(s.cost as f64, s.tokens)),
        ("latency", &|s: &Sums| per(s.latency as f64, s.requests)),
        ("quality", &|s: &Sums| per(s.score, s.ratings)),
    ] {
        let w = api
            .get("widgets/rank", &format!("{q}&metric={metric}"))
            .await;
        let values: Vec<f64> = sums.values().filter_map(figure).collect();
        match sums.get(&p).and_then(figure) {
            Some(mine) => {
                // Scores are summed as floats in either order: equal
                // within rounding counts as equal.
                let higher = values
                    .iter()
                    .filter(|v| **v > mine && !close(**v, mine))
                    .count();
                assert_eq!(
                    u(&w["rank"]),
                    higher as u64 + 1,
                    "{label}: rank by {metric}: {w}"
                );
                assert_eq!(
                    u(&w["projects"]),
                    values.len() as u64,
                    "{label}: ranked by {metric}"
                );
            }
            None => assert!(w["rank"].is_null(), "{label}: no {metric} to rank: {w}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_is_exact_and_scoped_on_known_data_in_clickhouse_18_16_and_chdb() {
    let ch = ClickHouse::start_with_tables().await;
    let db = TestDb::create().await;
    let control = Control::start(
        &db,
        &format!(
            "clickhouse:\n  url: \"{}\"\n  rollup_interval_ms: 200\n  prices:\n    - {{model: gpt-4o, input_per_mtok_usd: 2.50, cached_input_per_mtok_usd: 1.25}}\n    - {{model: gpt-4o-mini, input_per_mtok_usd: 0.15, cached_input_per_mtok_usd: 0.075}}\n    - {{model: claude-sonnet-4-5, input_per_mtok_usd: 3.00, cached_input_per_mtok_usd: 0.30}}\n",
            ch.http.trim_end_matches('/')
        ),
    )
    .await;
    let (org_a, owner_a) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let (org_b, owner_b) = control.bootstrap("Other", "pro", "owner@other.test");
    let http = reqwest::Client::new();
    let token_a = token_for(&db, owner_a).await;
    let mut projects_a = Vec::new();
    for slug in ["alpha", "beta", "gamma"] {
        let (status, p) = call(
            &http,
            "POST",
            &control.url(&format!("/v1/orgs/{org_a}/projects")),
            Some(&token_a),
            Some(serde_json::json!({"name": slug, "slug": slug})),
        )
        .await;
        assert_eq!(status, 201, "{p}");
        projects_a.push(Uuid::parse_str(p["id"].as_str().unwrap()).unwrap());
    }
    let (status, p) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org_b}/projects")),
        Some(&token_for(&db, owner_b).await),
        Some(serde_json::json!({"name": "q", "slug": "q"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let project_b = Uuid::parse_str(p["id"].as_str().unwrap()).unwrap();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let data = generate(org_a, &projects_a, org_b, project_b, now);
    // Loaded as the direct sink writes them (the Null table and its view),
    // the replays in a later insert, as a replay would arrive.
    let rows: Vec<String> = data.recs.iter().map(Rec::json).collect();
    ch.query(&format!(
        "INSERT INTO request_logs_direct FORMAT JSONEachRow\n{}",
        rows.join("\n")
    ))
    .await;
    let replays: Vec<String> = data.replayed.iter().map(Rec::json).collect();
    ch.query(&format!(
        "INSERT INTO request_logs_direct FORMAT JSONEachRow\n{}",
        replays.join("\n")
    ))
    .await;
    let scores: Vec<String> = data.scores.iter().map(Score::json).collect();
    ch.query(&format!(
        "INSERT INTO feedback_direct FORMAT JSONEachRow\n{}",
        scores.join("\n")
    ))
    .await;
    wait_for_rollup(&ch).await;
    let stored: u64 = ch
        .query("SELECT count() FROM request_logs")
        .await
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        stored,
        (data.recs.len() + data.replayed.len()) as u64,
        "the replays are stored twice (the queries must count them once)"
    );

    let expect = Expect { data: &data };
    let range = format!("from={}&to={}", data.from_ms, data.to_ms);
    let owner = Api {
        http: http.clone(),
        control: &control,
        org: org_a,
        token: token_a.clone(),
        range: range.clone(),
    };
    let all_a = View {
        org: org_a,
        projects: None,
    };
    check_everything(&owner, &expect, &all_a, None).await;
    check_everything(&owner, &expect, &all_a, Some(projects_a[1])).await;

    // A member of alpha only: nothing of beta or gamma, anywhere.
    let member = user_in(&db, org_a, "member", &[(projects_a[0], "member")]).await;
    let member_api = Api {
        token: token_for(&db, member).await,
        ..owner_clone(&owner)
    };
    let alpha_only = View {
        org: org_a,
        projects: Some(vec![projects_a[0]]),
    };
    check_everything(&member_api, &expect, &alpha_only, None).await;
    check_everything(&member_api, &expect, &alpha_only, Some(projects_a[0])).await;
    assert_eq!(
        member_api
            .status("requests", &format!("&project={}", projects_a[1]))
            .await,
        404,
        "another project is not the member's to know"
    );
    let beta_request = data
        .recs
        .iter()
        .find(|r| r.project == Some(projects_a[1]))
        .unwrap();
    assert_eq!(
        member_api
            .status(&format!("requests/{}", beta_request.request_id), "")
            .await,
        404
    );
    let w = member_api
        .get(
            "widgets/cost-per-mtok",
            &format!("&project={}", projects_a[0]),
        )
        .await;
    assert!(
        close(f(&w["project"]), f(&w["org_average"])),
        "the member's average is their own projects': {w}"
    );

    // Another org sees only its own.
    let other = Api {
        org: org_b,
        token: token_for(&db, owner_b).await,
        ..owner_clone(&owner)
    };
    check_everything(
        &other,
        &expect,
        &View {
            org: org_b,
            projects: None,
        },
        None,
    )
    .await;
    assert_eq!(
        other
            .status(&format!("requests/{}", beta_request.request_id), "")
            .await,
        404
    );
    let (status, _) = call(
        &http,
        "GET",
        &control.url(&format!("/v1/orgs/{org_a}/analytics/requests")),
        Some(&other.token),
        None,
    )
    .await;
    assert_eq!(status, 404, "another org's analytics do not exist");

    // The same SQL on the current engine (chdb), with the same answers
    // (before anything is written to the server that chdb was not given).
    let ch_range = Range {
        from_ms: data.from_ms,
        to_ms: data.to_ms,
    };
    let none = Filters::default();
    let filters = Filters {
        environment: Some("production".into()),
        property: Some("team".into()),
        property_value: Some("core".into()),
        ..Filters::default()
    };
    let mut queries = Vec::new();
    for scope in [
        Scope {
            org: org_a,
            projects: None,
        },
        Scope {
            org: org_a,
            projects: Some(vec![projects_a[0], projects_a[2]]),
        },
    ] {
        for f in [&none, &filters] {
            queries.push(sql::requests_page(&scope, &ch_range, f, None, 100));
            queries.push(sql::timeseries(&scope, &ch_range, f, 3_600));
            queries.push(sql::groups("session_id", &scope, &ch_range, f, 0, 50));
            queries.push(sql::properties(&scope, &ch_range, f, 0, 50));
            queries.push(sql::cache(&scope, &ch_range, f));
            queries.push(sql::rate_limits(&scope, &ch_range, f, 86_400));
            queries.push(sql::security(&scope, &ch_range, f, 86_400));
            queries.push(sql::quality_by_project(&scope, &ch_range, f));
            queries.push(sql::score_histogram(&scope, &ch_range, f));
            queries.push(sql::recent_scores(&scope, &ch_range, f, 20));
            queries.push(sql::by_project(&scope, &ch_range, f));
            queries.push(sql::by_environment(&scope, &ch_range));
            // The rollup's readers, over whole hours and partial ones.
            let env = f.environment.as_deref();
            let partial = Range {
                from_ms: data.from_ms + 1_234_567,
                to_ms: data.to_ms - 2_345_678,
            };
            for r in [&ch_range, &partial] {
                queries.push(sql::by_project_rolled(&scope, r, env, true));
                queries.push(sql::by_project_rolled(&scope, r, env, false));
                queries.push(sql::by_environment_rolled(&scope, r));
                queries.push(sql::timeseries_rolled(&scope, r, env, 3_600));
                queries.push(sql::timeseries_rolled(&scope, r, env, 86_400));
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = serde_json::json!({
        "clickhouse": ch.http,
        "sql": sql_files("conf/clickhouse")
            .iter()
            .filter(|p| !p.to_string_lossy().contains("kafka"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<Vec<_>>(),
        "inserts": [
            ("request_logs_direct", rows),
            ("request_logs_direct", replays),
            ("feedback_direct", scores),
        ],
        // The rollup, computed on chdb as the job computes it on the server.
        "statements": [floopy_control::rollup::recompute(None, 1, 1)],
        "queries": queries,
    });
    let input_path = dir.path().join("input.json");
    std::fs::write(&input_path, input.to_string()).unwrap();
    let python = std::env::var("FLOOPY_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/floopy/venv/bin/python")
    });
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("tests/clickhouse/compare_engines.py"))
        .arg(&input_path)
        .output()
        .unwrap_or_else(|e| panic!("{python} (scripts/install-kafka-tools.sh installs chdb): {e}"));
    assert!(
        out.status.success(),
        "the engines disagree:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(
        report.contains(&format!("{} queries agree", queries.len())),
        "{report}"
    );

    // One request's detail: its last score, not another org's.
    let last = expect.last_scores();
    let (scored_id, score) = last
        .iter()
        .find(|(id, _)| {
            data.recs.iter().any(|r| {
                r.request_id == **id && r.project == Some(projects_a[0]) && r.ts_ms < data.to_ms
            })
        })
        .unwrap();
    let detail = owner.get(&format!("requests/{scored_id}"), "").await;
    assert!(close(f(&detail["feedback"]["score"]), *score), "{detail}");

    // Scoring from the control plane: the member scores an alpha request;
    // the last score counts; a beta request is not theirs.
    let (status, body) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org_a}/feedback")),
        Some(&member_api.token),
        Some(serde_json::json!({"request_id": scored_id, "score": 0.125, "comment": "from the dashboard"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let detail = owner.get(&format!("requests/{scored_id}"), "").await;
    assert_eq!(f(&detail["feedback"]["score"]), 0.125, "{detail}");
    assert_eq!(detail["feedback"]["comment"], "from the dashboard");
    let (status, _) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org_a}/feedback")),
        Some(&member_api.token),
        Some(serde_json::json!({"request_id": beta_request.request_id, "score": 1})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org_a}/feedback")),
        Some(&member_api.token),
        Some(serde_json::json!({"request_id": scored_id, "score": 1.5})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["param"], "score");

    // Bad parameters are 422s naming them.
    for (query, param) in [
        ("&interval=week", "interval"),
        ("&from=yesterday", "from"),
        ("&environment=prod", "environment"),
        ("&limit=0", "limit"),
        ("&cursor=nonsense", "cursor"),
        ("&property_value=x", "property_value"),
    ] {
        let path = if param == "interval" {
            "timeseries"
        } else {
            "requests"
        };
        // A parameter given twice is an error of its own.
        let range = if param == "from" { "" } else { range.as_str() };
        let url = control.url(&format!("/v1/orgs/{org_a}/analytics/{path}?{range}{query}"));
        let (status, body) = call(&http, "GET", &url, Some(&token_a), None).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["error"]["param"], param, "{query}");
    }

    db.drop_db().await;
}

/// Waits for a run of the hourly rollup that started after everything
/// inserted so far.
async fn wait_for_rollup(ch: &ClickHouse) {
    let now: u64 = ch
        .query("SELECT toUInt32(now())")
        .await
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let last: u64 = ch
            .query("SELECT toUInt32(max(computed_at)) FROM request_rollup")
            .await
            .trim()
            .parse()
            .unwrap();
        if last > now {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rollup did not run (last {last}, now {now})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn owner_clone<'a>(api: &Api<'a>) -> Api<'a> {
    Api {
        http: api.http.clone(),
        control: api.control,
        org: api.org,
        token: api.token.clone(),
        range: api.range.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clickhouse_the_analytics_answer_503_naming_it() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let token = token_for(&db, owner).await;
    let (status, body) = call(
        &reqwest::Client::new(),
        "GET",
        &control.url(&format!("/v1/orgs/{org}/analytics/requests")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "analytics_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clickhouse"),
        "{body}"
    );
    db.drop_db().await;
}

/// End to end: requests through the real gateway with its direct ClickHouse
/// sink show up in the request list and the widgets, their cost equal to
/// the gateway's enforced spend (exchanged through the control database) to
/// the micro-dollar; feedback posted to the gateway with the application's
/// key shows in the quality widget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_the_gateway_show_in_the_analytics_at_the_enforced_cost() {
    let ch = ClickHouse::start_with_tables().await;
    let db = TestDb::create().await;
    let control = Control::start(
        &db,
        &format!(
            "clickhouse: {{url: \"{}\", rollup_interval_ms: 200}}\n",
            ch.http.trim_end_matches('/')
        ),
    )
    .await;
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let token = token_for(&db, owner).await;
    let http = reqwest::Client::new();
    let (status, p) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/projects")),
        Some(&token),
        Some(serde_json::json!({"name": "chat", "slug": "chat"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let project = p["id"].as_str().unwrap().to_string();
    let (status, created) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/keys")),
        Some(&token),
        Some(
            serde_json::json!({"name": "app", "environment": "production", "project_id": project}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();

    let provider = floopy_fake_provider::FakeProvider::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gateway = Gateway::start_into_clickhouse(&db, &provider, &ch).await;
    // The key reaches the gateway within a second.
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    while ids.len() < 30 {
        let resp = http
            .post(&gateway.chat)
            .bearer_auth(&key)
            .header("x-fake-prompt-tokens", format!("{}", 100 + ids.len()))
            .header("x-fake-completion-tokens", "37")
            .header("floopy-session-id", format!("s{}", ids.len() % 3))
            .json(&serde_json::json!({"model": "gpt-4o", "stream": ids.len() % 2 == 0, "messages": []}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let id = resp
            .headers()
            .get("floopy-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let _ = resp.bytes().await;
        if status == 200 {
            ids.push(id.unwrap());
        } else {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "the key was not served: {status}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Feedback with the application's key.
    for (i, id) in ids.iter().take(4).enumerate() {
        let resp = http
            .post(gateway.chat.replace("/v1/chat/completions", "/v1/feedback"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"request_id": id, "score": 0.25 * i as f64}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["request_id"], id.as_str());
    }
    let resp = http
        .post(gateway.chat.replace("/v1/chat/completions", "/v1/feedback"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"request_id": ids[0], "score": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "score", "{body}");

    // The enforced spend, as the gateway exchanges it.
    let month = floopy_model::calendar::month_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    ) as i32;
    let project_id = Uuid::parse_str(&project).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (listed, cost, enforced) = loop {
        let api = |path: &str| control.url(&format!("/v1/orgs/{org}/analytics/{path}"));
        let count = |kind: &'static str| {
            let (http, token) = (http.clone(), token.clone());
            let url = api(&format!("requests?project={project}&limit=500{kind}"));
            async move {
                let (status, page) = call(&http, "GET", &url, Some(&token), None).await;
                assert_eq!(status, 200, "{page}");
                page["data"].as_array().map_or(0, |d| d.len())
            }
        };
        // By default the calls to a model; the five feedback posts, which
        // are requests of the project too, with `kind`.
        let listed = (
            count("").await,
            count("&kind=feedback").await,
            count("&kind=all").await,
        );
        let (status, table) = call(
            &http,
            "GET",
            &api(&format!("projects?project={project}")),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{table}");
        let cost = table["data"][0]["cost_micro_usd"].as_u64().unwrap_or(0);
        // The all-projects table counts the calls to a model, not the scores.
        let counted = table["data"][0]["requests"].as_u64().unwrap_or(0);
        let enforced: i64 = db
            .client
            .query_one(
                "SELECT COALESCE(sum(settled_micro_usd), 0)::bigint FROM replica_project_usage
                  WHERE org_id = $1 AND project_id = $2 AND month = $3",
                &[&org, &project_id, &month],
            )
            .await
            .unwrap()
            .get(0);
        let expected = (ids.len(), 5, ids.len() + 5);
        if listed == expected && counted == ids.len() as u64 && cost > 0 && cost as i64 == enforced
        {
            break (listed.0, cost, enforced);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "listed {listed:?} of {expected:?}, counted {counted}, cost {cost}, enforced {enforced}",
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    // Per request: (100 + i) x 2.50 + 37 x 10.00 micro-USD, rounded up.
    let want: u64 = (0..ids.len() as u64)
        .map(|i| ((100 + i) * 250 + 37 * 1000).div_ceil(100))
        .sum();
    assert_eq!(cost, want, "the cost of what was served");
    eprintln!("{listed} requests, {cost} micro-USD in the analytics = {enforced} enforced");

    // The quality widget: the scores posted with the key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, w) = call(
            &http,
            "GET",
            &control.url(&format!(
                "/v1/orgs/{org}/analytics/widgets/quality?project={project}"
            )),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{w}");
        if w["project"].as_f64() == Some((0.0 + 0.25 + 0.5 + 0.75) / 4.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{w}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (_, detail) = call(
        &http,
        "GET",
        &control.url(&format!("/v1/orgs/{org}/analytics/requests/{}", ids[3])),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(detail["feedback"]["score"], 0.75, "{detail}");
    assert_eq!(detail["project_id"], project.as_str());
    // The key by its name and prefix, as the key list shows it.
    assert_eq!(detail["api_key_name"], "app", "{detail}");
    assert_eq!(detail["api_key_prefix"], &key[..12], "{detail}");
    assert_eq!(
        (&detail["kind"], &detail["path"]),
        (
            &serde_json::json!("llm"),
            &serde_json::json!("/v1/chat/completions")
        ),
        "{detail}"
    );
    drop(gateway);
    db.drop_db().await;
}
