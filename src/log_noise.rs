//! What the gateway's own log keeps short: a failed TLS handshake (a load
//! balancer's health check or a port scan that connects and closes, plain
//! HTTP sent to the TLS port) is an ERROR line from Pingora's listener each
//! time. Every one is counted in `floopy_tls_handshake_failures_total`, and
//! one a minute is logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::metrics::TLS_HANDSHAKE_FAILURES;

/// Pingora's listener, which logs the failed handshakes (through `log`).
const LISTENER_TARGET: &str = "pingora_core::services::listening";

/// Its message for one.
const HANDSHAKE_ERROR: &str = "Downstream handshake error";

/// A layer that counts failed handshakes and lets one a minute through.
#[derive(Default)]
pub struct HandshakeFailures {
    /// The minute (since the epoch) of the last one logged, plus one.
    logged_minute: AtomicU64,
}

impl<S: Subscriber> Layer<S> for HandshakeFailures {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let target = event.metadata().target();
        // Events bridged from `log` carry their target as a field.
        if target != "log" && !target.starts_with(LISTENER_TARGET) {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let from_listener =
            target.starts_with(LISTENER_TARGET) || fields.log_target.starts_with(LISTENER_TARGET);
        if !(from_listener && fields.message.starts_with(HANDSHAKE_ERROR)) {
            return true;
        }
        TLS_HANDSHAKE_FAILURES.inc();
        self.first_this_minute(minute_now())
    }
}

impl HandshakeFailures {
    /// Whether nothing was logged yet in `minute`; then this one is.
    fn first_this_minute(&self, minute: u64) -> bool {
        self.logged_minute.swap(minute + 1, Ordering::Relaxed) != minute + 1
    }
}

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

#[derive(Default)]
struct Fields {
    message: String,
    log_target: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "log.target" => self.log_target = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_a_minute_is_logged() {
        let layer = HandshakeFailures::default();
        assert!(layer.first_this_minute(100));
        assert!(!layer.first_this_minute(100));
        assert!(!layer.first_this_minute(100));
        assert!(layer.first_this_minute(101));
        assert!(!layer.first_this_minute(101));
    }
}
