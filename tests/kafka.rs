//! The Kafka sink against a real broker (tansu): every record arrives, keyed
//! by project, and parses; a broker outage and a SIGTERM mid-load lose
//! nothing (spool, replay); a corrupt spool segment costs only its bad
//! records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;
use serde_json::Value;

/// The fields of SPEC section 4, exactly; every record must have them all
/// with these JSON types, and no other (an old ClickHouse stops at the first
/// message it cannot parse).
fn assert_record_shape(v: &Value) {
    let expected: &[(&str, &str)] = &[
        ("request_id", "string"),
        ("ts_ms", "number"),
        ("org_id", "string"),
        ("project_id", "string"),
        ("api_key_id", "string"),
        ("environment", "string"),
        ("provider", "string"),
        ("model", "string"),
        ("path", "string"),
        ("status", "number"),
        ("error_code", "string"),
        ("stream", "number"),
        ("prompt_tokens", "number"),
        ("completion_tokens", "number"),
        ("cached_tokens", "number"),
        ("cost_usd", "number"),
        ("cost_micro_usd", "number"),
        ("latency_ms", "number"),
        ("ttfb_ms", "number"),
        ("session_id", "string"),
        ("user_id", "string"),
        ("property_keys", "array"),
        ("property_values", "array"),
        ("gateway_id", "string"),
    ];
    let object = v.as_object().expect("a JSON object");
    assert_eq!(
        object.len(),
        expected.len(),
        "exactly the record's fields: {v}"
    );
    for (field, kind) in expected {
        let value = &object[*field];
        let ok = match *kind {
            "string" => value.is_string(),
            "number" => value.is_u64() || value.is_f64(),
            "array" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            _ => false,
        };
        assert!(ok, "{field} is not a {kind}: {v}");
    }
    assert!(v["stream"] == 0 || v["stream"] == 1);
}

async fn send(gw: &Gateway, key: &str, project: Option<&str>, stream: bool) -> Option<String> {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("floopy-property-team", "core")
        .body(format!(
            r#"{{"model":"gpt-4o","stream":{stream},"messages":[]}}"#
        ));
    if let Some(p) = project {
        req = req.header("floopy-project-id", p);
    }
    let resp = req.send().await.ok()?;
    let id = resp
        .headers()
        .get("floopy-request-id")?
        .to_str()
        .ok()?
        .to_string();
    let _ = resp.bytes().await;
    Some(id)
}

fn by_id(messages: &[(Vec<u8>, Vec<u8>)]) -> HashMap<String, (String, Value)> {
    messages
        .iter()
        .map(|(key, payload)| {
            let v: Value = serde_json::from_slice(payload).expect("every message is JSON");
            assert_record_shape(&v);
            (
                v["request_id"].as_str().unwrap().to_string(),
                (String::from_utf8(key.clone()).unwrap(), v),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_the_topic_keyed_by_project_and_parses() {
    let broker = Broker::start().await;
    broker.create_topic(TOPIC, 3);
    let provider = start_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        &provider,
        Options {
            log_sink: Some(kafka_sink(
                &broker.bootstrap,
                &dir.path().join("spool"),
                10_000,
            )),
            ..Options::default()
        },
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let (key, project) = match i % 4 {
            0 => (KEY_FREE, None),
            1 => (KEY_LOCKED, None),
            2 => (KEY_DEFAULT, Some(CHECKOUT)),
            _ => (KEY_FREE, Some("not-a-uuid")), // rejected: 400, logged
        };
        ids.push(send(&gw, key, project, i % 3 == 0).await.unwrap());
    }
    // Unknown keys are not logged.
    assert!(send(
        &gw,
        "fpk_unknownkey0000000000000000000000000000",
        None,
        false
    )
    .await
    .is_some());
    let messages = consume(&broker.bootstrap, TOPIC, ids.len(), Duration::from_secs(30));
    let got = by_id(&messages);
    assert_eq!(messages.len(), ids.len(), "one message per logged request");
    for id in &ids {
        let (key, record) = got
            .get(id)
            .unwrap_or_else(|| panic!("request {id} not in the topic"));
        assert_eq!(
            key,
            record["project_id"].as_str().unwrap(),
            "keyed by project id"
        );
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(&format!("floopy_log_records_acked_total {}\n", ids.len())),
        "{metrics}"
    );
    assert!(
        metrics.contains("floopy_log_records_spooled_total 0\n"),
        "{metrics}"
    );
}

/// Bounded load: sends until `until`, collecting the request ids answered.
fn load(
    gw: Arc<Gateway>,
    until: Instant,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<String>>>) {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let out = ids.clone();
    let task = tokio::spawn(async move {
        let mut i = 0;
        while Instant::now() < until {
            let key = if i % 2 == 0 { KEY_FREE } else { KEY_LOCKED };
            if let Some(id) = send(&gw, key, None, i % 5 == 0).await {
                out.lock().unwrap().push(id);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (task, ids)
}

async fn wait_spool_empty(gw: &Gateway, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let metrics = gw.metrics().await;
        let spooled = metrics
            .lines()
            .find_map(|l| l.strip_prefix("floopy_log_spool_bytes "))
            .unwrap_or("1");
        if spooled == "0" && metrics.contains("floopy_log_queue_depth 0\n") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the spool did not drain:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_no_record() {
    let broker = Broker::start().await;
    broker.create_topic(TOPIC, 3);
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
    let outage = outage();
    let (task, ids) = load(gw.clone(), Instant::now() + outage + Duration::from_secs(6));
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.proxy.down();
    tokio::time::sleep(outage).await;
    let spooled_during = {
        let m = gw.metrics().await;
        m.lines()
            .find_map(|l| l.strip_prefix("floopy_log_records_spooled_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    broker.proxy.up();
    task.await.unwrap();
    wait_spool_empty(&gw, Duration::from_secs(60)).await;
    let ids = ids.lock().unwrap().clone();
    let messages = consume(
        &broker.bootstrap,
        TOPIC,
        usize::MAX,
        Duration::from_secs(15),
    );
    let got = by_id(&messages);
    let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(*id)).collect();
    eprintln!(
        "outage {outage:?}: {} requests, {} messages ({} distinct), {spooled_during} spooled during the outage",
        ids.len(),
        messages.len(),
        got.len()
    );
    if outage >= Duration::from_secs(20) {
        assert!(
            spooled_during > 0,
            "a long outage sent records to the spool"
        );
    }
    assert!(
        missing.is_empty(),
        "{} of {} records lost",
        missing.len(),
        ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_outage_then_restart_loses_no_record() {
    let broker = Broker::start().await;
    broker.create_topic(TOPIC, 3);
    let provider = start_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let options = kafka_options(&broker.bootstrap, &dir.path().join("spool"), 60_000);
    let mut gw = Gateway::start(&provider, options.clone()).await;
    broker.proxy.down();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(send(&gw, KEY_FREE, None, i % 2 == 0).await.unwrap());
    }
    // Undelivered at shutdown: flushed for a few seconds, then spooled.
    assert!(gw.stop().success());
    broker.proxy.up();
    let gw = Gateway::start(&provider, options).await;
    wait_spool_empty(&gw, Duration::from_secs(30)).await;
    let messages = consume(&broker.bootstrap, TOPIC, ids.len(), Duration::from_secs(20));
    let got: HashSet<String> = by_id(&messages).into_keys().collect();
    for id in &ids {
        assert!(
            got.contains(id),
            "record {id} lost across SIGTERM and restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_spool_segment_costs_only_its_bad_records() {
    let broker = Broker::start().await;
    broker.create_topic(TOPIC, 1);
    let provider = start_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let record = |id: &str| {
        let v = serde_json::json!({
            "request_id": id, "ts_ms": 1, "org_id": ORG, "project_id": ZERO, "api_key_id": KEY_FREE_ID,
            "environment": "", "provider": "p", "model": "m", "path": "/v1/chat/completions", "status": 200,
            "error_code": "", "stream": 0, "prompt_tokens": 1, "completion_tokens": 1, "cached_tokens": 0,
            "cost_usd": 0.0, "cost_micro_usd": 0, "latency_ms": 1, "ttfb_ms": 1, "session_id": "",
            "user_id": "", "property_keys": [], "property_values": [], "gateway_id": "g"
        })
        .to_string();
        format!("{:08x} {v}\n", crc32fast::hash(v.as_bytes()))
    };
    let mut content = String::new();
    content.push_str(&record("good-1"));
    content.push_str("00000000 {\"request_id\":\"bad-crc\"}\n");
    content.push_str("garbage without a checksum\n");
    content.push_str(&record("good-2"));
    content.push_str(&record("torn")[..40]);
    std::fs::write(spool.join("spool-00000000000000000001.log"), content).unwrap();

    let gw = Gateway::start(
        &provider,
        Options {
            log_sink: Some(kafka_sink(&broker.bootstrap, &spool, 10_000)),
            ..Options::default()
        },
    )
    .await;
    wait_spool_empty(&gw, Duration::from_secs(30)).await;
    let messages = consume(&broker.bootstrap, TOPIC, 2, Duration::from_secs(15));
    let ids: HashSet<String> = by_id(&messages).into_keys().collect();
    assert_eq!(
        ids,
        HashSet::from(["good-1".to_string(), "good-2".to_string()])
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("floopy_log_spool_corrupt_records_total 3\n"),
        "{metrics}"
    );
    assert!(gw
        .stderr()
        .contains("corrupt records in a spool segment were skipped"));
}
