//! Abusive clients against the real binary: thousands of idle connections
//! and headers trickled byte by byte. Served clients keep being served; the
//! gateway holds no more memory per held connection than the bare Pingora
//! proxy does (measured side by side: about 90 KB each, Pingora's own
//! per-connection task); a header not complete within
//! `server.header_timeout_ms` of its first byte has its connection closed.
//! (How fast they are served meanwhile is measured in
//! load-tests/attack.sh, not here.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections held open.
const IDLE: usize = 2_000;
/// Connections trickling their headers.
const TRICKLING: usize = 200;

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// `n` requests one after another to `url`; every one must be answered 200.
async fn served(url: &str, n: usize) {
    let client = client();
    for i in 0..n {
        let resp = client
            .post(url)
            .header("authorization", format!("Bearer {KEY_FREE}"))
            .timeout(Duration::from_secs(10))
            .body(r#"{"model":"gpt-4o","messages":[]}"#)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} failed while under attack: {e}"));
        assert_eq!(resp.status(), 200, "request {i}");
        resp.bytes().await.unwrap();
    }
}

/// The bare Pingora proxy of the benchmarks (`src/bin/reference-proxy.rs`):
/// what a Pingora connection costs before anything the gateway adds.
struct Reference {
    child: Child,
    addr: SocketAddr,
}

impl Reference {
    async fn start(provider: &floopy_fake_provider::FakeProvider) -> Reference {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let upstream = provider
            .base_url()
            .trim_start_matches("http://")
            .to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_reference-proxy"))
            .args(["--listen", &addr.to_string(), "--upstream", &upstream])
            .args(["--threads", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the reference proxy did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Reference { child, addr }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the attack is made on one connection.
#[derive(Clone, Copy)]
enum Attack {
    /// Connect and send nothing.
    Idle,
    /// Send a header one byte every 20 ms (never complete in the test).
    Trickle,
}

/// Opens `n` attacking connections to `addr` and, while they are held,
/// serves `url` 200 times; returns the resident memory `pid` grew by, per
/// connection. The attack stops when this returns.
async fn under_attack(attack: Attack, n: usize, addr: SocketAddr, pid: u32, url: &str) -> u64 {
    // Warmed up first: what serving costs is not what the attack costs.
    served(url, 200).await;
    let before = resident_bytes(pid);
    let header = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY_FREE}\r\nX-Padding: {}\r\n",
        "a".repeat(400)
    );
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let header = header.clone().into_bytes();
        held.push(tokio::spawn(async move {
            if let Attack::Trickle = attack {
                for byte in header {
                    if tcp.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            // Held open until aborted.
            std::future::pending::<()>().await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    served(url, 200).await;
    let grown = resident_bytes(pid).saturating_sub(before) / n as u64;
    for connection in held {
        connection.abort();
    }
    grown
}

/// The gateway and the bare Pingora proxy under the same attack: both keep
/// serving, and the gateway's memory per held connection is at most a
/// quarter above the bare proxy's (plus 8 KiB for noise). The tests that
/// call it run alone (`.config/nextest.toml`): no other test's load shapes
/// what either process holds.
async fn compare_with_reference(attack: Attack, n: usize, what: &str) {
    let provider = start_provider().await;
    let gateway = Gateway::start(&provider, Options::default()).await;
    let reference = Reference::start(&provider).await;
    let floopy = under_attack(
        attack,
        n,
        gateway.addr,
        gateway.child.id(),
        &gateway.url("/v1/chat/completions"),
    )
    .await;
    let bare = under_attack(
        attack,
        n,
        reference.addr,
        reference.child.id(),
        &format!("http://{}/v1/chat/completions", reference.addr),
    )
    .await;
    eprintln!("{n} {what} connections: {floopy} B per connection for the gateway, {bare} B for the bare Pingora proxy");
    assert!(
        floopy <= bare + bare / 4 + 8 * 1024,
        "the gateway holds {floopy} B per {what} connection, the bare proxy {bare} B"
    );
    served(&gateway.url("/v1/chat/completions"), 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_leave_service_and_memory_bounded() {
    compare_with_reference(Attack::Idle, IDLE, "idle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickled_byte_by_byte_do_not_stop_other_clients() {
    compare_with_reference(Attack::Trickle, TRICKLING, "trickling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_still_trickling_at_its_deadline_is_cut_and_a_slow_but_complete_one_is_served() {
    let provider = start_provider().await;
    let gateway = Gateway::start(
        &provider,
        Options {
            extra_server: "  header_timeout_ms: 1500".into(),
            ..Options::default()
        },
    )
    .await;
    let header = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY_FREE}\r\nContent-Length: 32\r\n\r\n"
    );

    // A byte every 100 ms: the header would take ~12 s; cut at ~1.5 s.
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let started = Instant::now();
    let mut cut = None;
    for byte in header.bytes() {
        if tcp.write_all(&[byte]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut probe)).await
        {
            // Closed (0) or reset: the deadline.
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "the gateway answered a header it never got: {:?}",
                read.map(|n| String::from_utf8_lossy(&probe[..n]).to_string())
            );
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("the trickling connection was never closed");
    eprintln!("trickled header cut after {cut:?}");
    assert!(
        cut >= Duration::from_millis(1400) && cut < Duration::from_secs(5),
        "cut after {cut:?}, the deadline is 1.5 s"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("floopy_header_timeouts_total 1\n"),
        "counted once: {}",
        metrics
            .lines()
            .find(|l| l.starts_with("floopy_header_timeouts_total"))
            .unwrap_or("absent")
    );

    // A header in three parts within the deadline, then its body: served.
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let (a, rest) = header.split_at(20);
    let (b, c) = rest.split_at(40);
    for part in [a, b, c] {
        tcp.write_all(part.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The body may take its time: the deadline is the header's.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_body_served(&mut tcp).await;

    // The same connection, kept alive: its next header is timed afresh,
    // after an idle pause longer than the deadline.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut rest = vec![0u8; 65536];
    let _ = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut rest)).await;
    tcp.write_all(header.as_bytes()).await.unwrap();
    assert_body_served(&mut tcp).await;
}

/// Sends the request's 32-byte body; the answer must be a 200.
async fn assert_body_served(tcp: &mut TcpStream) {
    tcp.write_all(br#"{"model":"gpt-4o","messages":[]}"#)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
