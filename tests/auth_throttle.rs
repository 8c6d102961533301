//! Key guessing against the real binary: a client address that keeps
//! failing to authenticate is refused with 429 before its key is looked up,
//! while other addresses (and the real keys used from them) are served, and
//! failing with a real key's owner's key elsewhere does not lock the owner
//! out. Loopback has a whole /8: 127.0.0.2 and 127.0.0.3 are other clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;

use common::*;

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn chat(
    gateway: &Gateway,
    http: &reqwest::Client,
    key: &str,
) -> (u16, String, Option<String>) {
    let resp = http
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(chat_body("gpt-4o", false, 100))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        retry_after,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessing_address_is_throttled_and_nobody_else_is() {
    let provider = start_provider().await;
    let gateway = Gateway::start(
        &provider,
        Options {
            extra_limits: "  max_failed_auth_per_minute: 5".into(),
            ..Options::default()
        },
    )
    .await;
    let guesser = client_from("127.0.0.2");
    for i in 0..5 {
        let guess = format!("fpk_guess{i:032}");
        let (status, code, _) = chat(&gateway, &guesser, &guess).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_api_key"),
            "guess {i}"
        );
    }
    // The sixth guess, and even a real key, from that address: 429 without
    // a lookup, with Retry-After.
    for key in ["fpk_guess99999999999999999999999999999999", KEY_FREE] {
        let (status, code, retry_after) = chat(&gateway, &guesser, key).await;
        assert_eq!(
            (status, code.as_str(), retry_after.as_deref()),
            (429, "too_many_failed_authentications", Some("60"))
        );
    }
    // Another address: its real key works, its wrong key is a plain 401.
    let owner = client_from("127.0.0.3");
    assert_eq!(chat(&gateway, &owner, KEY_FREE).await.0, 200);
    assert_eq!(
        chat(
            &gateway,
            &owner,
            "fpk_typo0000000000000000000000000000000001"
        )
        .await
        .0,
        401
    );
    // Revoked keys are real keys: they do not count as guesses.
    let revoker = client_from("127.0.0.4");
    for _ in 0..8 {
        assert_eq!(chat(&gateway, &revoker, KEY_REVOKED).await.0, 401);
    }
    assert_eq!(chat(&gateway, &revoker, KEY_FREE).await.0, 200);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("floopy_auth_throttled_total 2\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_the_throttle_off() {
    let provider = start_provider().await;
    let gateway = Gateway::start(
        &provider,
        Options {
            extra_limits: "  max_failed_auth_per_minute: 0".into(),
            ..Options::default()
        },
    )
    .await;
    let http = client_from("127.0.0.5");
    for i in 0..40 {
        let guess = format!("fpk_guess{i:032}");
        assert_eq!(chat(&gateway, &http, &guess).await.0, 401, "guess {i}");
    }
    assert_eq!(chat(&gateway, &http, KEY_FREE).await.0, 200);
}
