//! The ClickHouse side: the shipped SQL on ClickHouse 18.16 and on the
//! current engine (chdb), and requests through the gateway arriving in
//! `request_logs` through the real broker and the Kafka engine, also across
//! a broker outage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clickhouse::*;
use common::kafka::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_runs_on_clickhouse_18_16() {
    let ch = ClickHouse::start().await;
    assert!(
        ch.query("SELECT version()").await.starts_with("18.16"),
        "the old server"
    );
    for (path, sql) in shipped_sql("127.0.0.1:9", TOPIC, "check") {
        eprintln!("{}", path.display());
        ch.run_file(&sql).await;
    }
    ch.query(
        r#"INSERT INTO request_logs FORMAT JSONEachRow {"request_id":"r1","ts_ms":1795792752434,"ts":"2026-11-27 10:00:00","org_id":"o","project_id":"p","api_key_id":"k","environment":"","provider":"x","model":"m","path":"/v1","status":200,"error_code":"","stream":0,"prompt_tokens":10,"completion_tokens":20,"cached_tokens":0,"cost_usd":0.000225,"cost_micro_usd":225,"latency_ms":2,"ttfb_ms":2,"session_id":"","user_id":"","property_keys":["a"],"property_values":["b"],"gateway_id":"g"}"#,
    )
    .await;
    for (path, sql) in shipped_queries("o") {
        eprintln!("{}", path.display());
        ch.run_file(&sql).await;
    }
    let tables = ch.query("SHOW TABLES").await;
    for table in [
        "request_logs",
        "request_logs_kafka",
        "request_logs_mv",
        "feedback",
    ] {
        assert!(tables.lines().any(|t| t == table), "{table} in {tables}");
    }
}

#[test]
fn the_sql_runs_on_the_current_clickhouse_in_chdb() {
    let python = std::env::var("FLOOPY_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/floopy/venv/bin/python")
    });
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clickhouse/chdb_check.py"
        ))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/clickhouse"))
        .output()
        .unwrap_or_else(|e| panic!("{python} (scripts/install-kafka-tools.sh installs chdb): {e}"));
    assert!(
        out.status.success(),
        "chdb rejected the SQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn count(ch: &ClickHouse, sql: &str) -> u64 {
    ch.query(sql).await.trim().parse().unwrap_or(0)
}

/// Each scored request's last score.
async fn last_scores(ch: &ClickHouse) -> HashMap<String, f64> {
    ch.query("SELECT request_id, argMax(score, ts_ms) FROM feedback GROUP BY request_id FORMAT TSV")
        .await
        .lines()
        .map(|l| {
            let (id, s) = l.split_once('\t').unwrap();
            (id.to_string(), s.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arrive_in_clickhouse_through_kafka_across_an_outage() {
    let broker = Broker::start().await;
    broker.create_topic(TOPIC, 1);
    broker.create_topic(&feedback_topic(TOPIC), 1);
    let ch = ClickHouse::start().await;
    for (_, sql) in shipped_sql(&broker.bootstrap, TOPIC, "clickhouse-e2e") {
        ch.run_file(&sql).await;
    }
    let provider = start_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Arc::new(
        Gateway::start(
            &provider,
            Options {
                log_sink: Some(kafka_sink(
                    &broker.bootstrap,
                    &dir.path().join("spool"),
                    3_000,
                )),
                ..Options::default()
            },
        )
        .await,
    );

    // Mixed traffic: projects, environments, streamed or not, rejected ones;
    // the broker is unreachable for a while in the middle.
    let outage = outage();
    let mut served: HashMap<String, (String, u64)> = HashMap::new();
    let mut scored: HashMap<String, f64> = HashMap::new();
    let started = Instant::now();
    let mut i = 0u64;
    let mut outage_started = None;
    while started.elapsed() < outage + Duration::from_secs(8) {
        if outage_started.is_none() && started.elapsed() > Duration::from_secs(3) {
            broker.proxy.down();
            outage_started = Some(Instant::now());
        }
        if outage_started.is_some_and(|t| t.elapsed() > outage) {
            broker.proxy.up();
        }
        let (key, project) = match i % 4 {
            0 => (KEY_FREE, None),
            1 => (KEY_LOCKED, None),
            2 => (KEY_DEFAULT, Some(CHECKOUT)),
            _ => (KEY_FREE, Some("not-a-uuid")),
        };
        let mut req = client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {key}"))
            .body(format!(
                r#"{{"model":"gpt-4o","stream":{},"messages":[]}}"#,
                i.is_multiple_of(3)
            ));
        if let Some(p) = project {
            req = req.header("floopy-project-id", p);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let id = resp.headers()["floopy-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let project = resp
            .headers()
            .get("floopy-project-id")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let _ = resp.bytes().await;
        // The fake provider reports 10 prompt and 20 completion tokens:
        // 10 x 2.50 + 20 x 10.00 micro-USD for gpt-4o.
        served.insert(id.clone(), (project, if status == 200 { 225 } else { 0 }));
        if i.is_multiple_of(10) {
            // Feedback through its own topic; the post is a request too.
            let score = (i % 11) as f64 / 10.0;
            let resp = client()
                .post(gw.url("/v1/feedback"))
                .header("authorization", format!("Bearer {KEY_FREE}"))
                .body(format!(r#"{{"request_id":"{id}","score":{score}}}"#))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let post = resp.headers()["floopy-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            let project = resp
                .headers()
                .get("floopy-project-id")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            served.insert(post, (project, 0));
            scored.insert(id, score);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.proxy.up();

    let n = served.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = count(&ch, "SELECT uniqExact(request_id) FROM request_logs").await;
        if rows >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} of {n} requests in ClickHouse:\n{}",
            ch.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rows = count(&ch, "SELECT count() FROM request_logs FINAL").await;
    assert_eq!(
        rows, n,
        "one row per request after deduplication by request id"
    );
    let mut expected: HashMap<String, u64> = HashMap::new();
    for (project, cost) in served.values() {
        *expected.entry(project.clone()).or_default() += cost;
    }
    let by_project = ch
        .query("SELECT project_id, sum(cost_micro_usd) FROM request_logs FINAL GROUP BY project_id FORMAT TSV")
        .await;
    let got: HashMap<String, u64> = by_project
        .lines()
        .map(|l| {
            let (p, c) = l.split_once('\t').unwrap();
            (p.to_string(), c.parse().unwrap())
        })
        .collect();
    assert_eq!(
        got, expected,
        "cost per project in ClickHouse = what the gateway served"
    );
    let cost_usd_ok = count(
        &ch,
        "SELECT countIf(abs(cost_usd * 1000000 - cost_micro_usd) > 0.5) FROM request_logs",
    )
    .await;
    assert_eq!(cost_usd_ok, 0, "cost_usd agrees with cost_micro_usd");
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let last = last_scores(&ch).await;
        if last.len() >= scored.len() || Instant::now() > deadline {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(last, scored, "every score, through the feedback topic");
    eprintln!("{n} requests, all in ClickHouse after a {outage:?} broker outage");
}

/// The direct sink: requests (and feedback) through the gateway inserted
/// straight into ClickHouse 18.16, with ClickHouse stopped for the outage
/// (30 s) under load and started again: every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_sink_loses_nothing_across_a_clickhouse_outage() {
    let mut ch = ClickHouse::start_with_tables().await;
    let provider = start_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        &provider,
        Options {
            log_sink: Some(format!(
                "log_sink:\n  kind: clickhouse\n  url: \"{}\"\n  spool_dir: \"{}\"",
                ch.http.trim_end_matches('/'),
                dir.path().join("spool").display()
            )),
            ..Options::default()
        },
    )
    .await;

    let outage = outage();
    let mut served: HashMap<String, u64> = HashMap::new();
    let mut scored: HashMap<String, f64> = HashMap::new();
    let started = Instant::now();
    let mut outage_started = None;
    let mut restarted = false;
    let mut i = 0u64;
    while started.elapsed() < outage + Duration::from_secs(8) {
        if outage_started.is_none() && started.elapsed() > Duration::from_secs(3) {
            ch.stop();
            outage_started = Some(Instant::now());
        }
        if !restarted && outage_started.is_some_and(|t| t.elapsed() > outage) {
            ch.restart().await;
            restarted = true;
        }
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {KEY_FREE}"))
            .body(format!(
                r#"{{"model":"gpt-4o","stream":{},"messages":[]}}"#,
                i.is_multiple_of(3)
            ))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let id = resp.headers()["floopy-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        let _ = resp.bytes().await;
        served.insert(id.clone(), if status == 200 { 225 } else { 0 });
        if i.is_multiple_of(10) {
            // Scored twice: the second score counts.
            for score in [0.0, (i % 7) as f64 / 10.0] {
                let resp = client()
                    .post(gw.url("/v1/feedback"))
                    .header("authorization", format!("Bearer {KEY_FREE}"))
                    .body(format!(r#"{{"request_id":"{id}","score":{score}}}"#))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
                scored.insert(id.clone(), score);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !restarted {
        ch.restart().await;
    }

    // Every request, and every feedback post, is one record.
    let n = (served.len() + 2 * scored.len()) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = count(&ch, "SELECT uniqExact(request_id) FROM request_logs").await;
        let scores = count(&ch, "SELECT uniqExact(feedback_id) FROM feedback").await;
        if rows >= n && scores >= 2 * scored.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{rows} of {n} requests and {scores} of {} scores in ClickHouse:\n{}",
            2 * scored.len(),
            ch.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        count(&ch, "SELECT count() FROM request_logs FINAL").await,
        n,
        "one row per request after deduplication"
    );
    let chat = count(
        &ch,
        "SELECT sum(cost_micro_usd) FROM request_logs FINAL WHERE path = '/v1/chat/completions'",
    )
    .await;
    assert_eq!(chat, served.values().sum::<u64>(), "the served cost");
    let ids = ch
        .query("SELECT request_id FROM request_logs FINAL WHERE path = '/v1/chat/completions' FORMAT TSV")
        .await;
    let ids: std::collections::HashSet<&str> = ids.lines().collect();
    for id in served.keys() {
        assert!(ids.contains(id.as_str()), "request {id} is missing");
    }
    assert_eq!(last_scores(&ch).await, scored, "each request's last score");
    let spool_left = || {
        std::fs::read_dir(dir.path().join("spool"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("spool-")
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool_left() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(spool_left(), 0, "the spool is replayed and emptied");
    eprintln!(
        "{n} requests and {} scores in ClickHouse after a {outage:?} outage",
        2 * scored.len()
    );
}
