//! Two gateway processes sharing one control database hold one cost cap and
//! one RPM limit, not two, under load spread across both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::*;
use common::*;
use floopy_fake_provider::FakeProvider;

async fn start_pair(url: &str) -> (Arc<Gateway>, Arc<Gateway>, FakeProvider) {
    let provider = start_provider().await;
    let options = Options {
        control: Some(postgres_control(url, "")),
        ..Options::default()
    };
    let a = Gateway::start(&provider, options.clone()).await;
    let b = Gateway::start(&provider, options).await;
    // Replicas learn of each other at their next exchange (every second).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    (Arc::new(a), Arc::new(b), provider)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_hold_one_cost_cap() {
    let db = TestDb::create().await;
    let url = db.url();
    let org = admin(&url, &["create-org", "--name", "Acme", "--plan", "pro"])
        .trim()
        .to_string();
    let (_, key) = create_key(
        &url,
        &[
            "--org",
            &org,
            "--name",
            "prod",
            "--environment",
            "production",
        ],
    );
    // $1: about 100 requests of 10,058 micro-USD.
    admin(
        &url,
        &[
            "set-limits",
            "--org",
            &org,
            "--environment",
            "production",
            "--monthly-cost-usd",
            "1",
        ],
    );
    let cap: u64 = 1_000_000;
    let (a, b, _provider) = start_pair(&url).await;

    let body = r#"{"model":"gpt-4o","max_tokens":1000,"messages":[{"role":"user","content":"hello there"}]}"#;
    // Rounds of 16 clients, 8 per replica, each sending until its first
    // 402. A replica refuses once its own claim (with the reservations of
    // its 8 requests in flight) is used, and can do so before the next
    // exchange hands it what the other replica left; clients that come back
    // after an exchange get that rest. The rounds stop when one ends
    // without a single 200: the cap is used up.
    for round in 0..6 {
        let clients: Vec<_> = (0..16)
            .map(|i| {
                let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(send_until_capped(gw, key.clone(), body, 1000, 200))
            })
            .collect();
        let admitted = admitted_until_capped(clients).await;
        eprintln!("round {round}: {admitted} requests admitted");
        if admitted == 0 {
            break;
        }
        // Past the next exchange (every second).
        tokio::time::sleep(Duration::from_millis(2_200)).await;
    }
    let spent = |gw: &Gateway| -> (u64, usize) {
        let records = gw.records();
        let ok: Vec<_> = records.iter().filter(|r| r["status"] == 200).collect();
        (
            ok.iter()
                .map(|r| r["cost_micro_usd"].as_u64().unwrap())
                .sum(),
            ok.len(),
        )
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ((spent_a, n_a), (spent_b, n_b)) = (spent(&a), spent(&b));
    let total = spent_a + spent_b;
    eprintln!(
        "cap {cap}: replica a {spent_a} ({n_a} requests), b {spent_b} ({n_b}), total {total}"
    );
    assert!(n_a > 10 && n_b > 10, "the load was spread: {n_a} / {n_b}");
    assert!(
        total <= cap + cap / 10,
        "two replicas overshot one cap: {total} > {cap} + 10%"
    );
    assert!(
        total >= cap - cap / 10,
        "the cap was used, not halved: {total}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_hold_one_rpm_limit() {
    let db = TestDb::create().await;
    let url = db.url();
    let org = admin(&url, &["create-org", "--name", "Acme", "--plan", "pro"])
        .trim()
        .to_string();
    let (_, key) = create_key(
        &url,
        &["--org", &org, "--name", "stg", "--environment", "staging"],
    );
    admin(
        &url,
        &[
            "set-limits",
            "--org",
            &org,
            "--environment",
            "staging",
            "--rpm",
            "60",
        ],
    );
    let (a, b, _provider) = start_pair(&url).await;
    early_in_a_minute().await;

    // 8 clients, half on each replica, for 4 seconds (within one minute).
    let until = Instant::now() + Duration::from_secs(4);
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tokio::spawn(async move {
                let c = client();
                let (mut ok, mut limited) = (0u64, 0u64);
                while Instant::now() < until {
                    let status = c
                        .post(gw.url("/v1/chat/completions"))
                        .header("authorization", format!("Bearer {key}"))
                        .body(r#"{"model":"gpt-4o","messages":[]}"#)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    match status {
                        200 => ok += 1,
                        429 => limited += 1,
                        other => panic!("unexpected status {other}"),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (ok, limited)
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for c in clients {
        let (o, l) = c.await.unwrap();
        ok += o;
        limited += l;
    }
    eprintln!("rpm 60 across two replicas: {ok} admitted, {limited} limited");
    assert!(limited > 0, "the load exceeded the limit");
    assert!(
        ok <= 66,
        "two replicas admitted {ok} of an RPM of 60 (more than 10% over)"
    );
    assert!(ok >= 54, "the limit was shared, not halved: {ok}");
    db.drop_db().await;
}
