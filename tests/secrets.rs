//! No secret leaves the gateway: every path a request can take (served,
//! streamed, each refusal, the provider down, a throttled guesser), a
//! reload and a shutdown, then the request log, the process's own log
//! output and `/metrics` are searched for the provider credentials and the
//! client keys. None may appear.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

/// What must never be written anywhere: the provider credentials the test
/// gateway reads from its environment, and every client key string.
const SECRETS: &[&str] = &[
    "sk-test-openai",
    "sk-test-anthropic",
    KEY_FREE,
    KEY_LOCKED,
    KEY_DEFAULT,
    KEY_REVOKED,
    KEY_NO_ENV,
    KEY_OTHER_ORG,
    GUESS,
];

/// A well-formed key no org has.
const GUESS: &str = "fpk_guessedkey0000000000000000000000000042";

/// (path, key, extra headers, body, the status expected).
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
);

async fn send(
    gateway: &Gateway,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> u16 {
    let mut req = client()
        .post(gateway.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_writes_a_credential_or_a_key_anywhere() {
    let provider = start_provider().await;
    let mut gateway = Gateway::start(
        &provider,
        Options {
            max_body: 4096,
            extra_limits: "  max_failed_auth_per_minute: 3".into(),
            ..Options::default()
        },
    )
    .await;
    let chat = |model: &str, stream: bool| chat_body(model, stream, 200);
    let anthropic = serde_json::to_vec(&serde_json::json!({
        "model": "claude-sonnet-4-5", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }))
    .unwrap();
    let cases: Vec<Case> = vec![
        (
            "/v1/chat/completions",
            Some(KEY_FREE),
            vec![],
            chat("gpt-4o", false),
            200,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_LOCKED),
            vec![],
            chat("gpt-4o", true),
            200,
        ),
        ("/v1/messages", Some(KEY_DEFAULT), vec![], anthropic, 200),
        (
            "/v1/chat/completions",
            None,
            vec![],
            chat("gpt-4o", false),
            401,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_REVOKED),
            vec![],
            chat("gpt-4o", false),
            401,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_FREE),
            vec![("floopy-project-id", "not-a-uuid")],
            chat("gpt-4o", false),
            400,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_LOCKED),
            vec![("floopy-project-id", SEARCH)],
            chat("gpt-4o", false),
            403,
        ),
        (
            "/v1/nowhere",
            Some(KEY_NO_ENV),
            vec![],
            chat("gpt-4o", false),
            404,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_OTHER_ORG),
            vec![],
            b"{not json".to_vec(),
            400,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_FREE),
            vec![],
            b"{}".to_vec(),
            400,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_FREE),
            vec![],
            chat("no-such-model", false),
            404,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_FREE),
            vec![],
            chat("gpt-4o", false).repeat(30),
            413,
        ),
        (
            "/v1/chat/completions",
            Some(KEY_FREE),
            vec![],
            chat("dead-model", false),
            502,
        ),
    ];
    for (path, key, headers, body, expected) in cases {
        let status = send(&gateway, path, key, &headers, body).await;
        assert_eq!(status, expected, "{path} with {key:?} {headers:?}");
    }
    // A guesser, until throttled.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            send(
                &gateway,
                "/v1/chat/completions",
                Some(GUESS),
                &[],
                chat("gpt-4o", false),
            )
            .await,
        );
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    gateway.signal("HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let metrics = gateway.metrics().await;
    gateway.wait_records(11).await;
    assert!(gateway.stop().success());

    let log = std::fs::read_to_string(&gateway.log_path).unwrap();
    let stderr = gateway.stderr();
    // What is searched is these requests' output: the keys' ids are there
    // (ids are not secrets), the keys are not.
    assert!(log.lines().count() >= 11, "{log}");
    assert!(
        log.contains(KEY_FREE_ID) && log.contains(KEY_REVOKED_ID),
        "{log}"
    );
    assert!(
        metrics.contains("floopy_auth_throttled_total 2"),
        "{metrics}"
    );
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
    for (name, text) in [
        ("request log", &log),
        ("process log", &stderr),
        ("/metrics", &metrics),
    ] {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in the {name}");
            // Nor a key's secret part without its prefix.
            if let Some(rest) = secret.strip_prefix("fpk_") {
                assert!(
                    !text.contains(&rest[..16]),
                    "part of {secret} in the {name}"
                );
            }
        }
    }
}
