//! Crash durability of the request log: the gateway is SIGKILLed at random
//! moments under load and restarted, with the file sink and with the Kafka
//! sink (broker up, and broker down); every request whose answer a client
//! received in full has its record in the log or on the topic afterwards.
//!
//! The moments come from a seed printed by each test; `FLOOPY_CRASH_SEED`
//! replays one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;
use serde_json::Value;

/// Kills per test.
const ROUNDS: usize = 4;
/// Clients sending at once.
const CLIENTS: usize = 6;

/// A small deterministic generator (xorshift64*), seeded per test.
struct Moments(u64);

impl Moments {
    fn new(test: &str) -> Moments {
        let seed = std::env::var("FLOOPY_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{test}: FLOOPY_CRASH_SEED={seed}");
        Moments(seed)
    }

    /// A time between `from` and `to` milliseconds.
    fn between(&mut self, from: u64, to: u64) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let n = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        Duration::from_millis(from + n % (to - from))
    }
}

/// Sends requests from `CLIENTS` clients until `stop`, half of them
/// streamed; the id of each answer received in full goes to `answered`.
fn load(
    url: String,
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|n| {
            let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let client = client();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let stream = (i + n as u64).is_multiple_of(2);
                    let sent = client
                        .post(&url)
                        .header("authorization", format!("Bearer {KEY_FREE}"))
                        .timeout(Duration::from_secs(5))
                        .body(format!(
                            r#"{{"model":"gpt-4o","stream":{stream},"messages":[]}}"#
                        ))
                        .send()
                        .await;
                    let Ok(resp) = sent else {
                        // Refused while the gateway is down.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let id = resp
                        .headers()
                        .get("floopy-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let status = resp.status();
                    // Answered: the whole body arrived.
                    if let (Some(id), Ok(_)) = (id, resp.bytes().await) {
                        assert_eq!(status, 200, "request {id}");
                        answered.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect()
}

/// Load, SIGKILL at a random moment, restart; `ROUNDS` times. Returns the
/// ids of the requests answered in full.
async fn kill_under_load(gw: &mut Gateway, moments: &mut Moments) -> Vec<String> {
    let answered = Arc::new(Mutex::new(Vec::new()));
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = load(
            gw.url("/v1/chat/completions"),
            stop.clone(),
            answered.clone(),
        );
        let after = moments.between(300, 1500);
        tokio::time::sleep(after).await;
        gw.kill();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.unwrap();
        }
        eprintln!(
            "round {round}: killed after {after:?}, {} answered so far",
            answered.lock().unwrap().len()
        );
        gw.restart().await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= ROUNDS * 10,
        "the load ran: {} answered",
        answered.len()
    );
    answered
}

fn missing<'a>(answered: &'a [String], got: &HashSet<String>) -> Vec<&'a String> {
    answered.iter().filter(|id| !got.contains(*id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_record_with_the_file_sink() {
    let mut moments = Moments::new("file sink");
    let provider = start_provider().await;
    let mut gw = Gateway::start(&provider, Options::default()).await;
    let answered = kill_under_load(&mut gw, &mut moments).await;
    // The last start recovered what the last kill left; a graceful stop
    // writes the rest.
    assert!(gw.stop().success());
    let records = gw.records();
    let got: HashSet<String> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    let lost = missing(&answered, &got);
    eprintln!(
        "{} answered, {} records ({} distinct)",
        answered.len(),
        records.len(),
        got.len()
    );
    assert!(
        lost.is_empty(),
        "{} of {} answered requests have no record: {lost:?}",
        lost.len(),
        answered.len()
    );
    let wal = std::fs::read_dir(gw.log_path.with_extension("jsonl.wal"))
        .unwrap()
        .count();
    assert_eq!(wal, 0, "a clean stop leaves no write-ahead log segment");
}

async fn kafka_case(broker_down: bool, test: &str) {
    let mut moments = Moments::new(test);
    let broker = Broker::start().await;
    broker.create_topic(TOPIC, 3);
    let provider = start_provider().await;
    let dir = tempfile::tempdir().unwrap();
    let options = kafka_options(&broker.bootstrap, &dir.path().join("spool"), 2_000);
    let mut gw = Gateway::start(&provider, options).await;
    if broker_down {
        broker.proxy.down();
    }
    let answered = kill_under_load(&mut gw, &mut moments).await;
    if broker_down {
        broker.proxy.up();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = HashSet::new();
    let mut messages = 0;
    while Instant::now() < deadline {
        let read = consume(&broker.bootstrap, TOPIC, usize::MAX, Duration::from_secs(5));
        messages = read.len();
        got = read
            .iter()
            .map(|(_, payload)| {
                let v: Value = serde_json::from_slice(payload).unwrap();
                v["request_id"].as_str().unwrap().to_string()
            })
            .collect();
        if missing(&answered, &got).is_empty() {
            break;
        }
    }
    let lost = missing(&answered, &got);
    eprintln!(
        "{} answered, {messages} messages ({} distinct), recovered: {}",
        answered.len(),
        got.len(),
        gw.metrics()
            .await
            .lines()
            .find(|l| l.starts_with("floopy_log_records_recovered_total"))
            .unwrap_or("-")
    );
    assert!(
        lost.is_empty(),
        "{} of {} answered requests never reached the topic: {lost:?}",
        lost.len(),
        answered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_record_with_the_broker_up() {
    kafka_case(false, "kafka, broker up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_record_with_the_broker_down() {
    kafka_case(true, "kafka, broker down").await;
}
