//! The health listener (on `admin_listen`): `GET /healthz` (the process is
//! up), `GET /readyz` (a snapshot is loaded and the log sink accepts
//! records), `GET /metrics` (Prometheus text), and with
//! `FLOOPY_TIMELINE=1` `GET /debug/timeline` (the slowest requests' phase
//! timelines, see `timeline`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::logs::LogSink;
use crate::metrics::{Metrics, SnapshotGauges};
use crate::snapshot::SnapshotStore;

pub struct HealthApp {
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    sink: Arc<dyn LogSink>,
    /// With a control database: how long without a confirmed sync is still
    /// ready.
    max_staleness: Option<Duration>,
}

impl HealthApp {
    pub fn new(
        store: Arc<SnapshotStore>,
        metrics: Arc<Metrics>,
        sink: Arc<dyn LogSink>,
        max_staleness: Option<Duration>,
    ) -> Self {
        HealthApp {
            store,
            metrics,
            sink,
            max_staleness,
        }
    }

    fn readiness(&self) -> Response<Vec<u8>> {
        let staleness = self.store.staleness_seconds();
        match self.max_staleness {
            Some(max) if staleness > max.as_secs_f64() => reply(
                503,
                "text/plain",
                format!(
                    "not ready: control data last synced {staleness:.1} s ago (more than {} s); serving the last snapshot\n",
                    max.as_secs()
                ),
            ),
            _ => match self.sink.health() {
                Err(reason) => reply(503, "text/plain", format!("not ready: {reason}\n")),
                Ok(()) => reply(200, "text/plain", "ready\n".into()),
            },
        }
    }

    fn metrics_text(&self) -> String {
        let snapshot = self.store.load();
        let mut text = self.metrics.render(SnapshotGauges {
            age_seconds: snapshot.age_seconds(),
            staleness_seconds: self.store.staleness_seconds(),
            keys: snapshot.key_count,
        });
        text.push_str(&format!(
            "# HELP floopy_log_queue_depth Request log records accepted and not yet written.\n# TYPE floopy_log_queue_depth gauge\nfloopy_log_queue_depth {}\n",
            self.sink.queue_depth()
        ));
        if let Some((bytes, age)) = self.sink.spool_stats() {
            text.push_str(&format!(
                "# HELP floopy_log_spool_bytes Request logs waiting in the disk spool.\n# TYPE floopy_log_spool_bytes gauge\nfloopy_log_spool_bytes {bytes}\n# HELP floopy_log_spool_age_seconds Age of the oldest spooled request log.\n# TYPE floopy_log_spool_age_seconds gauge\nfloopy_log_spool_age_seconds {:.3}\n",
                age.as_secs_f64()
            ));
        }
        text
    }
}

fn reply(status: u16, content_type: &str, body: String) -> Response<Vec<u8>> {
    let body = body.into_bytes();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for HealthApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET {
            return reply(405, "text/plain", "only GET is served here\n".into());
        }
        match req.uri.path() {
            "/healthz" => reply(200, "text/plain", "ok\n".into()),
            // A snapshot is loaded before the listener opens, and the file
            // sink never refuses a record; what can go stale is the control
            // data of a database.
            "/readyz" => self.readiness(),
            "/metrics" => reply(200, "text/plain; version=0.0.4", self.metrics_text()),
            // The slowest requests' phase timelines since the last read.
            "/debug/timeline" if crate::timeline::enabled() => reply(
                200,
                "application/json",
                serde_json::to_string(&crate::timeline::take()).unwrap_or_default(),
            ),
            "/debug/timeline" => reply(
                404,
                "text/plain",
                "the timeline is off: start the gateway with FLOOPY_TIMELINE=1\n".into(),
            ),
            path => reply(404, "text/plain", format!("no admin endpoint {path}\n")),
        }
    }
}
