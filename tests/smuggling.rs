//! Request shapes that proxies and servers have read differently (request
//! smuggling), sent over raw sockets to the real binary: each is refused
//! and none reaches the provider. HTTP/1.0 is served; of pipelined
//! requests the first is served and the connection closed, so the client
//! sends the rest again (Pingora does not serve a pipeline).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Sends `raw` on a new connection; everything the gateway answers until it
/// closes the connection or goes quiet for a second.
fn exchange(gateway: &Gateway, raw: &[u8]) -> String {
    let mut tcp = TcpStream::connect(gateway.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    tcp.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).to_string()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

fn request(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {KEY_FREE}\r\nContent-Type: application/json\r\n{headers}\r\n{body}"
    )
    .into_bytes()
}

const BODY: &str = r#"{"model":"gpt-4o","messages":[]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_and_never_forwarded() {
    let provider = start_provider().await;
    let gateway = Gateway::start(&provider, Options::default()).await;
    let chunked = format!("{:x}\r\n{BODY}\r\n0\r\n\r\n", BODY.len());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Content-Length with Transfer-Encoding",
            request(
                &format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", BODY.len()),
                &chunked,
            ),
        ),
        (
            "two different Content-Lengths",
            request(
                &format!("Content-Length: {}\r\nContent-Length: 5\r\n", BODY.len()),
                BODY,
            ),
        ),
        (
            "obsolete line folding",
            request(
                &format!("Content-Length: {}\r\nX-Folded: a\r\n b\r\n", BODY.len()),
                BODY,
            ),
        ),
        (
            "a bare LF",
            format!(
                "POST /v1/chat/completions HTTP/1.1\nHost: gateway\nAuthorization: Bearer {KEY_FREE}\nContent-Length: {}\n\n{BODY}",
                BODY.len()
            )
            .into_bytes(),
        ),
    ];
    let before = provider.requests_received();
    let mut failures = Vec::new();
    for (name, raw) in &cases {
        let answer = tokio::task::block_in_place(|| exchange(&gateway, raw));
        let status = status_line(&answer).to_string();
        // Refused: a 4xx, or the connection closed without an answer.
        if !(status.is_empty() || status.contains(" 400 ") || status.contains(" 411 ")) {
            failures.push(format!("{name}: {status:?}"));
        }
    }
    assert!(failures.is_empty(), "not refused: {failures:#?}");
    assert_eq!(
        provider.requests_received(),
        before,
        "none of them reached the provider"
    );
    // The gateway still serves.
    let answer = tokio::task::block_in_place(|| {
        exchange(
            &gateway,
            &request(
                &format!("Content-Length: {}\r\nConnection: close\r\n", BODY.len()),
                BODY,
            ),
        )
    });
    assert!(status_line(&answer).contains(" 200 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_is_served_and_a_pipeline_is_answered_once_then_closed() {
    let provider = start_provider().await;
    let gateway = Gateway::start(&provider, Options::default()).await;
    let http10 = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer {KEY_FREE}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let answer = tokio::task::block_in_place(|| exchange(&gateway, http10.as_bytes()));
    assert!(status_line(&answer).contains(" 200 "), "{answer}");

    // Two requests in one write: the first is answered, then the
    // connection is closed (RFC 9112 section 9.3.2: the client sends the
    // second again on a new connection); the second is never half-read
    // into the first or forwarded.
    let first = request(&format!("Content-Length: {}\r\n", BODY.len()), BODY);
    let mini = BODY.replace("gpt-4o", "gpt-4o-mini");
    let second = request(&format!("Content-Length: {}\r\n", mini.len()), &mini);
    let both = [first, second].concat();
    let before = provider.requests_received();
    let (answer, closed) = tokio::task::block_in_place(|| {
        let mut tcp = TcpStream::connect(gateway.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(&both).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        let closed = loop {
            match tcp.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        (String::from_utf8_lossy(&answer).to_string(), closed)
    });
    assert!(
        closed,
        "the connection is closed, not left hanging: {answer}"
    );
    let statuses: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .collect();
    assert_eq!(statuses, ["HTTP/1.1 200 OK"], "{answer}");
    assert!(answer.contains("\"model\":\"gpt-4o\""), "{answer}");
    assert_eq!(provider.requests_received(), before + 1);
}
