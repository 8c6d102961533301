//! Pingora's graceful upgrade under load: a new process takes the listening
//! sockets, the old one drains and exits; every answered request has its log
//! record, and the only requests that fail are ones a client sent on an idle
//! kept-alive connection as the old process closed it: at most one per
//! connection. That is HTTP/1.1's keep-alive race (RFC 9112 section 9.3.1:
//! a client may send a request on a connection the server is closing, and
//! should retry it on a new one); such a request never reached the gateway
//! past its socket, so it has no record, no spend and no provider call,
//! which the test checks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_under_load_loses_no_record_and_at_most_one_request_per_kept_alive_connection(
) {
    let provider = start_provider().await;
    let mut old = Gateway::start(&provider, Options::default()).await;
    let url = old.url("/v1/chat/completions");

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (stop, failed, ids, url) = (stop.clone(), failed.clone(), ids.clone(), url.clone());
            tokio::spawn(async move {
                // One client each: keep-alive connections that live across
                // the upgrade.
                let c = client();
                let deadline = Instant::now() + Duration::from_secs(40);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let resp = c
                        .post(&url)
                        .header("authorization", format!("Bearer {KEY_FREE}"))
                        .header("x-fake-latency-ms", "5")
                        .body(r#"{"model":"gpt-4o","messages":[]}"#)
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 200 => {
                            let id = r.headers()["floopy-request-id"]
                                .to_str()
                                .unwrap()
                                .to_string();
                            let _ = r.bytes().await;
                            ids.lock().unwrap().push(id);
                        }
                        Ok(r) => panic!("the gateway answered {} during the upgrade", r.status()),
                        Err(e) => {
                            eprintln!("request failed during the upgrade: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    // Load running before the upgrade: waited for, not assumed after a
    // fixed time (a debug build on a loaded machine starts slowly).
    let warm_until = Instant::now() + Duration::from_secs(10);
    while ids.lock().unwrap().len() <= 10 && Instant::now() < warm_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = ids.lock().unwrap().len();
    let mut new = old.spawn_upgrade();
    tokio::time::sleep(Duration::from_millis(300)).await;
    old.signal("QUIT");
    // The old process drains for grace_period_seconds (1 s) and exits.
    let deadline = Instant::now() + Duration::from_secs(15);
    let old_status = loop {
        if let Some(status) = old.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the old process did not exit after SIGQUIT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        new.try_wait().unwrap().is_none(),
        "the new process is serving"
    );
    let at_switch = ids.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let answered = ids.lock().unwrap().clone();
    assert!(
        old_status.success(),
        "the old process exited cleanly: {old_status}"
    );
    assert!(before > 10, "load ran before the upgrade");
    assert!(
        answered.len() > at_switch + 10,
        "the new process served after the switch"
    );

    // Stop the new process cleanly too, then every answered request must be
    // in the shared request log, once.
    send_signal(&new, "TERM");
    let exited = new.wait().unwrap();
    assert!(exited.success(), "the new process stopped cleanly");
    let records = old.records();
    let logged: std::collections::HashSet<String> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged.len(), records.len(), "no record written twice");
    let missing: Vec<&String> = answered.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} answered requests have no log record",
        missing.len()
    );
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "graceful upgrade: {} requests answered, {failed} failed on keep-alive connections closed by the old process",
        answered.len()
    );
    // At most one request per client connection can meet its connection
    // being closed by the old process, and none of those reached the
    // provider: every request the provider saw was answered.
    assert!(failed <= 6, "{failed} requests failed");
    assert_eq!(
        provider.requests_received() as usize,
        answered.len(),
        "a failed request reached the provider"
    );
}

fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
