//! Alert delivery from the outbox (`alerts`, filled by the evaluator in
//! `budgets`): every replica polls for alerts due, claims a few with
//! `FOR UPDATE SKIP LOCKED` (so two replicas never hold the same one) by
//! moving their next attempt past the delivery timeout, and POSTs each to its
//! webhook. A 2xx marks it delivered; anything else is retried with
//! exponential backoff until `retry_for` after it fired, then marked
//! failed. A replica that dies mid-delivery leaves its claim to expire, and
//! the alert is sent again: delivery is at least once, and the alert's id (in
//! the body and in `floopy-alert-id`) lets the receiver drop a repeat.
//!
//! Each request is signed: `floopy-signature: t=<unix seconds>,v1=<hex>`,
//! the HMAC-SHA256 of `"<t>.<body>"` under the webhook's secret; `verify`
//! is the receiver's side of it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_postgres::Client;

use floopy_control_db::tables::alerts::{self, Claimed};

use crate::config::Delivery;
use crate::jobs::JobError;

/// Alerts one replica claims per poll.
const CLAIM_BATCH: i64 = 16;

/// The longest error text kept with an alert.
const ERROR_CHARS: usize = 500;

/// The `floopy-signature` value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let digest = keyed(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// The HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`, not finalized.
fn keyed(secret: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Whether `header` is a valid `floopy-signature` of `body` under `secret`
/// (compared in constant time); the receiver should also refuse an old `t`.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => signature = hex::decode(v).ok(),
            _ => {}
        }
    }
    match (timestamp, signature) {
        (Some(t), Some(signature)) => keyed(secret, t, body).verify_slice(&signature).is_ok(),
        _ => false,
    }
}

/// The delay before attempt `attempts + 1`: `retry_base` doubled per
/// attempt made, at most `retry_max`, less up to a tenth at random so
/// alerts that failed together do not all come back together.
pub fn backoff(delivery: &Delivery, attempts: i32, jitter: u8) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(40);
    let delay = delivery
        .retry_base
        .saturating_mul(1u32 << doublings.min(31))
        .min(delivery.retry_max);
    delay.saturating_sub(delay / 10 * u32::from(jitter) / 255)
}

/// The HTTP client deliveries use: the delivery timeout, no redirects (a
/// webhook answers where it was registered).
pub fn client(delivery: &Delivery) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(delivery.timeout)
        .connect_timeout(delivery.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("floopy-control/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// How one attempt ended.
enum Outcome {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

/// Claims the alerts due (at most a batch), delivers them concurrently and
/// records each outcome; how many were attempted.
pub async fn deliver_due(
    db: &Client,
    http: &reqwest::Client,
    delivery: &Delivery,
) -> Result<usize, JobError> {
    // Past the timeout, a claim is free again: the sender died.
    let lease = delivery.timeout.as_secs_f64() + 2.0;
    let retry_for = delivery.retry_for.as_secs_f64();
    let claimed = alerts::claim_due(db, CLAIM_BATCH, lease, retry_for).await?;
    let mut sends = tokio::task::JoinSet::new();
    for alert in claimed {
        let http = http.clone();
        sends.spawn(async move {
            let outcome = match &alert.target {
                Some((url, secret)) => send(&http, url, secret, &alert).await,
                None => Outcome::Failed {
                    status: None,
                    error: "the budget or alert rule has no webhook any more".into(),
                },
            };
            (alert, outcome)
        });
    }
    let mut attempted = 0;
    while let Some(done) = sends.join_next().await {
        let Ok((alert, outcome)) = done else { continue };
        attempted += 1;
        let url = alert.target.as_ref().map(|t| t.0.as_str());
        match outcome {
            Outcome::Delivered(status) => {
                alerts::delivered(db, alert.id, i32::from(status), url).await?;
            }
            Outcome::Failed { status, error } => {
                let give_up = alert.last_chance || alert.target.is_none();
                let mut jitter = [0u8; 1];
                let _ = getrandom::fill(&mut jitter);
                let delay = backoff(delivery, alert.attempts, jitter[0]).as_secs_f64();
                let error: String = error.chars().take(ERROR_CHARS).collect();
                tracing::warn!(alert = %alert.id, attempts = alert.attempts, %error, give_up, "webhook delivery failed");
                let failure = alerts::Failure {
                    give_up,
                    retry_in_secs: delay,
                    status: status.map(i32::from),
                    error: &error,
                    url,
                };
                alerts::failed(db, alert.id, &failure).await?;
            }
        }
    }
    Ok(attempted)
}

async fn send(http: &reqwest::Client, url: &str, secret: &str, alert: &Claimed) -> Outcome {
    let timestamp = crate::budgets::now_ms() / 1000;
    let result = http
        .post(url)
        .header("content-type", "application/json")
        .header("floopy-alert-id", alert.id.to_string())
        .header(
            "floopy-signature",
            sign(secret, timestamp, alert.body.as_bytes()),
        )
        .body(alert.body.clone())
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered(response.status().as_u16())
        }
        Ok(response) => Outcome::Failed {
            status: Some(response.status().as_u16()),
            error: format!("the webhook answered {}", response.status()),
        },
        Err(e) => Outcome::Failed {
            status: None,
            error: error_chain(&e),
        },
    }
}

/// The error and its causes (reqwest's own message is often only "error
/// sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Delivers alerts every `poll` until the process ends, on a connection of
/// its own.
pub async fn run(db: floopy_control_db::DbConfig, delivery: Delivery) {
    let poll = delivery.poll;
    let http = match client(&delivery) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; alerts are not delivered");
            return;
        }
    };
    crate::jobs::every_tick(db, "floopy-control-webhooks", poll, |db| {
        let http = http.clone();
        Box::pin(async move {
            // A full batch: more may be due at once.
            while deliver_due(db, &http, &delivery).await? == CLAIM_BATCH as usize {}
            Ok(())
        })
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // Computed apart from this code, with
        // printf '%s' '<t>.<body>' | openssl dgst -sha256 -hmac '<secret>'
        // (and Python's hmac, which agrees).
        let body = br#"{"id":"01a24e4a-ecaf-7564-9a6a-5e4309141d7f","type":"budget.threshold","spent_usd":"1.000000"}"#;
        let expected =
            "t=1796601600,v1=8c133f89ceff32cf148d81b5596e78381e6d6989986c17260cd96dbf04ef11f4";
        assert_eq!(
            sign("whsec_the_receivers_secret", 1_796_601_600, body),
            expected
        );
        assert!(verify("whsec_the_receivers_secret", expected, body));
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let body = br#"{"id":"a","spent_usd":"1.00"}"#;
        let header = sign("whsec_test_secret_0123", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="), "{header}");
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert!(verify("whsec_test_secret_0123", &header, body));
        assert!(!verify("whsec_other_secret_012", &header, body));
        assert!(!verify("whsec_test_secret_0123", &header, b"{}"));
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert!(!verify("whsec_test_secret_0123", &moved, body));
        assert!(!verify("whsec_test_secret_0123", "v1=00", body));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let d = Delivery {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            retry_for: Duration::from_secs(86_400),
            poll: Duration::from_millis(250),
        };
        assert_eq!(backoff(&d, 1, 0), Duration::from_secs(1));
        assert_eq!(backoff(&d, 2, 0), Duration::from_secs(2));
        assert_eq!(backoff(&d, 5, 0), Duration::from_secs(16));
        assert_eq!(backoff(&d, 13, 0), Duration::from_secs(3600));
        assert_eq!(backoff(&d, 1000, 0), Duration::from_secs(3600));
        assert_eq!(
            backoff(&d, 13, 255),
            Duration::from_secs(3240),
            "a tenth less"
        );
        // Retried for 24 h: 12 doublings, then hourly, about 33 attempts.
        let mut at = Duration::ZERO;
        let mut attempts = 0;
        while at < d.retry_for {
            attempts += 1;
            at += backoff(&d, attempts, 0);
        }
        assert!((30..40).contains(&attempts), "{attempts}");
    }
}
