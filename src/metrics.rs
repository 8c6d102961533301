//! Process metrics: plain atomic counters, bumped on the request path with a
//! relaxed add, rendered in Prometheus text format by the admin listener.
//! Labelled request counts live in a map read under a shared lock (a write
//! lock only the first time a label set is seen).

use std::fmt::Write;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHasher};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

/// TLS handshakes that failed, counted by the log layer that sees them
/// (`log_noise`), which runs before `Metrics` exists.
pub static TLS_HANDSHAKE_FAILURES: Counter = Counter(AtomicU64::new(0));

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A Prometheus histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; BUCKETS.len()],
    count: Counter,
    sum_micros: Counter,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].inc();
        }
        self.count.inc();
        self.sum_micros
            .add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.get();
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.get();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {:.6}\n{name}_count {count}",
            self.sum_micros.get() as f64 / 1e6
        );
    }
}

/// (status, environment, hash of the provider name).
type RequestLabels = (u16, &'static str, u64);

/// Requests by (status, environment, provider).
#[derive(Debug, Default)]
struct RequestCounts(RwLock<FxHashMap<RequestLabels, (Box<str>, Counter)>>);

impl RequestCounts {
    fn inc(&self, status: u16, environment: &'static str, provider: &str) {
        let mut h = FxHasher::default();
        provider.hash(&mut h);
        let key = (status, environment, h.finish());
        if let Some((_, counter)) = self.0.read().ok().as_ref().and_then(|m| m.get(&key)) {
            counter.inc();
            return;
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| (provider.into(), Counter::default()))
            .1
            .inc();
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP floopy_requests_total Requests answered, by HTTP status, environment and provider.\n");
        out.push_str("# TYPE floopy_requests_total counter\n");
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut lines: Vec<String> = map
            .iter()
            .map(|((status, env, _), (provider, counter))| {
                format!(
                    "floopy_requests_total{{status=\"{status}\",environment=\"{env}\",provider=\"{provider}\"}} {}",
                    counter.get()
                )
            })
            .collect();
        lines.sort();
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
}

/// What `/metrics` says of the snapshot being served.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotGauges {
    /// Since the snapshot was built.
    pub age_seconds: f64,
    /// Since the control data was last confirmed current: a snapshot can be
    /// old and fresh (nothing changed), or young and stale (the database is
    /// unreachable and a reload rebuilt it from the last data).
    pub staleness_seconds: f64,
    pub keys: usize,
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: RequestCounts,
    /// Whole request, first byte in to last byte out.
    pub latency: Histogram,
    /// Request start to the provider's response header.
    pub ttfb: Histogram,
    pub upstream_errors: Counter,
    pub unpriced_model_requests: Counter,
    pub rate_limited: Counter,
    pub auth_throttled: Counter,
    pub header_timeouts: Counter,
    pub cost_capped: Counter,
    pub log_records_submitted: Counter,
    pub log_records_produced: Counter,
    pub log_records_acked: Counter,
    pub log_records_spooled: Counter,
    pub log_records_replayed: Counter,
    pub log_delivery_errors: Counter,
    pub log_spool_corrupt_records: Counter,
    pub log_records_recovered: Counter,
    pub log_producer_replacements: Counter,
    pub log_records_written: Counter,
    pub log_queue_overflow: Counter,
    pub log_write_errors: Counter,
    pub reloads_ok: Counter,
    pub control_loads: Counter,
    pub usage_exchanges: Counter,
    pub usage_exchange_errors: Counter,
    pub control_errors: Counter,
    pub reloads_failed: Counter,
    pub tls_reloads_ok: Counter,
    pub tls_reloads_failed: Counter,
    /// (certificate file, expiry in Unix seconds) of the serving
    /// certificates.
    certificate_expiry: std::sync::Mutex<Vec<(String, i64)>>,
}

impl Metrics {
    /// The serving certificates' expiry (after a start or a reload).
    pub fn set_certificate_expiry(&self, expiry: Vec<(String, i64)>) {
        *crate::locks::lock(&self.certificate_expiry) = expiry;
    }

    fn render_certificate_expiry(&self, out: &mut String) {
        use std::fmt::Write;
        let expiry = crate::locks::lock(&self.certificate_expiry).clone();
        if expiry.is_empty() {
            return;
        }
        out.push_str("# HELP floopy_tls_certificate_expiry_seconds Seconds until a serving TLS certificate expires.\n");
        out.push_str("# TYPE floopy_tls_certificate_expiry_seconds gauge\n");
        let now = i64::try_from(floopy_model::calendar::now_ms() / 1000).unwrap_or(i64::MAX);
        for (path, not_after) in expiry {
            let path = path.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "floopy_tls_certificate_expiry_seconds{{certificate=\"{path}\"}} {}",
                not_after - now
            );
        }
    }

    /// Counts one answered request. `environment` and `provider` are ""
    /// when there are none.
    pub fn count_request(&self, status: u16, environment: &'static str, provider: &str) {
        self.requests.inc(status, environment, provider);
    }

    /// Prometheus text exposition, with the gauges of the snapshot being
    /// served.
    pub fn render(&self, snapshot: SnapshotGauges) -> String {
        let SnapshotGauges {
            age_seconds,
            staleness_seconds,
            keys,
        } = snapshot;
        let mut out = String::with_capacity(4096);
        self.requests.render(&mut out);
        self.latency.render(
            &mut out,
            "floopy_request_duration_seconds",
            "Request latency, first byte in to last byte out.",
        );
        self.ttfb.render(
            &mut out,
            "floopy_upstream_ttfb_seconds",
            "Time from the request's arrival to the provider's response header.",
        );
        let counters = [
            (
                "floopy_upstream_errors_total",
                "Requests that failed to reach or read the provider.",
                &self.upstream_errors,
            ),
            (
                "floopy_unpriced_model_requests_total",
                "Requests for a model without a price, logged with cost 0.",
                &self.unpriced_model_requests,
            ),
            (
                "floopy_control_loads_total",
                "Control data loads from the control database.",
                &self.control_loads,
            ),
            (
                "floopy_control_errors_total",
                "Control database sessions that failed (the last snapshot keeps serving).",
                &self.control_errors,
            ),
            (
                "floopy_usage_exchanges_total",
                "Exchanges of spend and request counts with the other replicas.",
                &self.usage_exchanges,
            ),
            (
                "floopy_usage_exchange_errors_total",
                "Failed usage exchanges (limits hold with the last known totals).",
                &self.usage_exchange_errors,
            ),
            (
                "floopy_rate_limited_total",
                "Requests refused by an environment's RPM limit (429).",
                &self.rate_limited,
            ),
            (
                "floopy_auth_throttled_total",
                "Requests refused (429) because their client address failed to authenticate too often.",
                &self.auth_throttled,
            ),
            (
                "floopy_header_timeouts_total",
                "Connections closed because a request header did not arrive within server.header_timeout_ms.",
                &self.header_timeouts,
            ),
            (
                "floopy_cost_capped_total",
                "Requests refused by an environment's monthly cost cap (402).",
                &self.cost_capped,
            ),
            (
                "floopy_log_records_submitted_total",
                "Request log records handed to the sink.",
                &self.log_records_submitted,
            ),
            (
                "floopy_log_records_produced_total",
                "Request log records handed to the Kafka producer.",
                &self.log_records_produced,
            ),
            (
                "floopy_log_records_acked_total",
                "Request log records acknowledged by the broker.",
                &self.log_records_acked,
            ),
            (
                "floopy_log_records_spooled_total",
                "Request log records written to the disk spool.",
                &self.log_records_spooled,
            ),
            (
                "floopy_log_records_replayed_total",
                "Spooled request log records sent again.",
                &self.log_records_replayed,
            ),
            (
                "floopy_log_delivery_errors_total",
                "Request log records the broker did not take (spooled).",
                &self.log_delivery_errors,
            ),
            (
                "floopy_log_producer_replacements_total",
                "Kafka producers replaced after failing while the broker answered.",
                &self.log_producer_replacements,
            ),
            (
                "floopy_log_spool_corrupt_records_total",
                "Corrupt spool records skipped.",
                &self.log_spool_corrupt_records,
            ),
            (
                "floopy_log_records_recovered_total",
                "Request log records a stopped process left in the write-ahead log, delivered again.",
                &self.log_records_recovered,
            ),
            (
                "floopy_log_records_written_total",
                "Request log records written by the sink.",
                &self.log_records_written,
            ),
            (
                "floopy_log_queue_overflow_total",
                "Records that found the log queue full and went to the overflow list.",
                &self.log_queue_overflow,
            ),
            (
                "floopy_log_write_errors_total",
                "Failed writes of the log sink (retried).",
                &self.log_write_errors,
            ),
            (
                "floopy_config_reloads_total",
                "Configuration reloads applied.",
                &self.reloads_ok,
            ),
            (
                "floopy_config_reload_failures_total",
                "Configuration reloads rejected; the running one stayed.",
                &self.reloads_failed,
            ),
            (
                "floopy_tls_reloads_total",
                "TLS certificate sets swapped in (SIGHUP or a file changed).",
                &self.tls_reloads_ok,
            ),
            (
                "floopy_tls_reload_failures_total",
                "TLS certificate reloads refused (once per change of the files); the running certificates stayed.",
                &self.tls_reloads_failed,
            ),
            (
                "floopy_tls_handshake_failures_total",
                "TLS handshakes that failed: a client that closed before or during one (a health check, a port scan) or spoke plain HTTP; one a minute is logged.",
                &TLS_HANDSHAKE_FAILURES,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let _ = writeln!(
            out,
            "# HELP floopy_snapshot_age_seconds Age of the snapshot being served (since it was built).\n# TYPE floopy_snapshot_age_seconds gauge\nfloopy_snapshot_age_seconds {age_seconds:.3}"
        );
        let _ = writeln!(
            out,
            "# HELP floopy_control_staleness_seconds Time since the control data was last confirmed current (the control database polled or notified, the file reloaded).\n# TYPE floopy_control_staleness_seconds gauge\nfloopy_control_staleness_seconds {staleness_seconds:.3}"
        );
        let _ = writeln!(
            out,
            "# HELP floopy_snapshot_keys API keys in the snapshot being served.\n# TYPE floopy_snapshot_keys gauge\nfloopy_snapshot_keys {keys}"
        );
        self.render_certificate_expiry(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_statuses_and_counters() {
        let m = Metrics::default();
        m.count_request(200, "production", "openai");
        m.count_request(200, "production", "openai");
        m.count_request(429, "", "");
        m.latency.observe(Duration::from_millis(3));
        m.latency.observe(Duration::from_secs(1000));
        m.unpriced_model_requests.inc();
        let text = m.render(SnapshotGauges {
            age_seconds: 1.5,
            staleness_seconds: 0.25,
            keys: 3,
        });
        assert!(
            text.contains("floopy_requests_total{status=\"200\",environment=\"production\",provider=\"openai\"} 2\n"),
            "{text}"
        );
        assert!(text
            .contains("floopy_requests_total{status=\"429\",environment=\"\",provider=\"\"} 1\n"));
        assert!(!text.contains("status=\"404\""));
        assert!(
            text.contains("floopy_request_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("floopy_request_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("floopy_request_duration_seconds_count 2\n"));
        assert!(text.contains("floopy_unpriced_model_requests_total 1\n"));
        assert!(text.contains("floopy_snapshot_age_seconds 1.500\n"));
        assert!(text.contains("floopy_control_staleness_seconds 0.250\n"));
        assert!(text.contains("floopy_snapshot_keys 3\n"));
    }
}
