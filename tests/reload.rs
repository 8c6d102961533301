//! SIGHUP under load: a good file is swapped in, a bad one is rejected with
//! its error logged, and no request in flight (streams included) fails; a
//! file that changes a field read at start only is refused whole, naming it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

const KEY_NEW: &str = "fpk_newkeyaddedbyreload00000000000000007";
const NEW_KEY_ENTRY: &str = r#"        - { id: "0190a000-0000-7000-8000-0000000000a7", name: new, environment: development, secret: "fpk_newkeyaddedbyreload00000000000000007" }"#;

async fn status_with(gw_url: &str, key: &str) -> u16 {
    client()
        .post(gw_url)
        .header("authorization", format!("Bearer {key}"))
        .body(r#"{"model":"gpt-4o","messages":[]}"#)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn wait_for_status(url: &str, key: &str, expected: u16) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let status = status_with(url, key).await;
        if status == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "key {key} still gets {status}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn metric(gw: &Gateway, name: &str) -> u64 {
    metric_value(&gw.metrics().await, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_good_files_rejects_bad_ones_and_fails_no_request() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let url = gw.url("/v1/chat/completions");

    // Load: two workers sending requests back to back for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let status = c
                    .post(&url)
                    .header("authorization", format!("Bearer {KEY_FREE}"))
                    .body(r#"{"model":"gpt-4o","messages":[]}"#)
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                match status {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("request failed during reload: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    // A slow stream that spans every reload below.
    let stream_url = url.clone();
    let slow_stream = tokio::spawn(async move {
        let resp = client()
            .post(&stream_url)
            .header("authorization", format!("Bearer {KEY_FREE}"))
            .header("x-fake-chunks", "8")
            .header("x-fake-chunk-interval-ms", "250")
            .body(r#"{"model":"gpt-4o","stream":true,"messages":[]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.expect("the stream survives the reloads"));
        }
        String::from_utf8(body).unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(status_with(&url, KEY_NEW).await, 401);
    let base = std::fs::read_to_string(&gw.config_path).unwrap();

    // 1. A good file with a new key.
    let with_key = render_config(
        &gw.upstream,
        gw.addr,
        gw.admin,
        &gw.log_path,
        gw.dead_port,
        &Options {
            extra_keys: NEW_KEY_ENTRY.to_string(),
            ..Options::default()
        },
    );
    std::fs::write(&gw.config_path, &with_key).unwrap();
    gw.signal("HUP");
    wait_for_status(&url, KEY_NEW, 200).await;
    assert_eq!(metric(&gw, "floopy_config_reloads_total").await, 1);

    // 2. A bad file: rejected, logged with the field path, old one serves.
    let bad = with_key.replace("max_body_bytes:", "max_body_bytez:");
    std::fs::write(&gw.config_path, &bad).unwrap();
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(3);
    while metric(&gw, "floopy_config_reload_failures_total").await == 0 {
        assert!(Instant::now() < deadline, "the bad file was not rejected");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        gw.stderr()
            .contains("limits.max_body_bytez: unknown field `max_body_bytez`"),
        "the rejection names the field:\n{}",
        gw.stderr()
    );
    assert_eq!(
        status_with(&url, KEY_NEW).await,
        200,
        "the running config stays"
    );

    // 3. A good file without the key: it is gone.
    std::fs::write(&gw.config_path, &base).unwrap();
    gw.signal("HUP");
    wait_for_status(&url, KEY_NEW, 401).await;

    let body = slow_stream.await.unwrap();
    assert_eq!(
        body.matches("tok").count(),
        8,
        "the stream in flight finished whole"
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    assert!(ok.load(Ordering::Relaxed) > 50, "the load really ran");
    assert_eq!(metric(&gw, "floopy_config_reloads_total").await, 2);
    assert_eq!(metric(&gw, "floopy_config_reload_failures_total").await, 1);
}

/// Waits until the gateway has rejected `n` reloads.
async fn wait_for_failures(gw: &Gateway, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(gw, "floopy_config_reload_failures_total").await < n {
        assert!(Instant::now() < deadline, "reload {n} was not rejected");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_that_changes_a_start_only_field_is_refused_whole() {
    let provider = start_provider().await;
    let gw = Gateway::start(&provider, Options::default()).await;
    let url = gw.url("/v1/chat/completions");
    let with_key = render_config(
        &gw.upstream,
        gw.addr,
        gw.admin,
        &gw.log_path,
        gw.dead_port,
        &Options {
            extra_keys: NEW_KEY_ENTRY.to_string(),
            ..Options::default()
        },
    );
    let log_path = gw.log_path.display().to_string();
    // Each file adds a key (a change a reload applies) and changes one
    // field read at start only: none of the file is applied.
    let changes = [
        ("  threads: 2", "  threads: 3", "server.threads"),
        (
            "  grace_period_seconds: 1",
            "  grace_period_seconds: 2",
            "server.grace_period_seconds",
        ),
        (
            "  state_file:",
            "  exchange_interval_ms: 500\n  state_file:",
            "limits.exchange_interval_ms",
        ),
        (
            log_path.as_str(),
            "/tmp/floopy-another-request-log.jsonl",
            "log_sink",
        ),
    ];
    for (n, (from, to, field)) in changes.iter().enumerate() {
        assert!(with_key.contains(from), "the test config has {from:?}");
        std::fs::write(&gw.config_path, with_key.replacen(from, to, 1)).unwrap();
        gw.signal("HUP");
        wait_for_failures(&gw, n as u64 + 1).await;
        let stderr = gw.stderr();
        assert!(
            stderr.contains(&format!("{field}: ")) && stderr.contains("read at start only"),
            "the refusal names {field}:\n{stderr}"
        );
        assert_eq!(
            status_with(&url, KEY_NEW).await,
            401,
            "nothing of a refused file is applied ({field})"
        );
    }
    assert_eq!(metric(&gw, "floopy_config_reloads_total").await, 0);
    // The same file without the start-only change is applied.
    std::fs::write(&gw.config_path, &with_key).unwrap();
    gw.signal("HUP");
    wait_for_status(&url, KEY_NEW, 200).await;
    assert_eq!(metric(&gw, "floopy_config_reloads_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_errors_with_paths_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "server:\n  listen: \"nowhere\"\n  admin_listen: \"127.0.0.1:9\"\ncontrol: {source: file}\nlog_sink: {kind: file, path: x}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.listen: invalid socket address syntax"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("--config")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a missing config is fatal at start");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"));
}
