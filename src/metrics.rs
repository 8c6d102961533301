//! Process metrics: plain atomic counters, bumped on the request path with a
//! relaxed add, rendered in Prometheus text format by the admin listener.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

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

/// Status codes 100..=599, one counter each.
const STATUSES: usize = 500;

#[derive(Debug)]
pub struct Metrics {
    requests_by_status: Vec<Counter>,
    pub upstream_errors: Counter,
    pub unpriced_model_requests: Counter,
    pub rate_limited: Counter,
    pub cost_capped: Counter,
    pub log_records_submitted: Counter,
    pub log_records_written: Counter,
    pub log_queue_overflow: Counter,
    pub log_write_errors: Counter,
    pub reloads_ok: Counter,
    pub control_loads: Counter,
    pub usage_exchanges: Counter,
    pub usage_exchange_errors: Counter,
    pub control_errors: Counter,
    pub reloads_failed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests_by_status: (0..STATUSES).map(|_| Counter::default()).collect(),
            upstream_errors: Counter::default(),
            unpriced_model_requests: Counter::default(),
            rate_limited: Counter::default(),
            cost_capped: Counter::default(),
            log_records_submitted: Counter::default(),
            log_records_written: Counter::default(),
            log_queue_overflow: Counter::default(),
            log_write_errors: Counter::default(),
            reloads_ok: Counter::default(),
            control_loads: Counter::default(),
            usage_exchanges: Counter::default(),
            usage_exchange_errors: Counter::default(),
            control_errors: Counter::default(),
            reloads_failed: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, status: u16) {
        if let Some(counter) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| self.requests_by_status.get(i))
        {
            counter.inc();
        }
    }

    /// Prometheus text exposition. `snapshot_age_seconds` and
    /// `snapshot_keys` describe the snapshot being served.
    pub fn render(&self, snapshot_age_seconds: f64, snapshot_keys: usize) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP floopy_requests_total Requests answered, by HTTP status.\n");
        out.push_str("# TYPE floopy_requests_total counter\n");
        for (i, counter) in self.requests_by_status.iter().enumerate() {
            let n = counter.get();
            if n > 0 {
                let _ = writeln!(out, "floopy_requests_total{{status=\"{}\"}} {n}", i + 100);
            }
        }
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
            "# HELP floopy_snapshot_age_seconds Age of the snapshot being served.\n# TYPE floopy_snapshot_age_seconds gauge\nfloopy_snapshot_age_seconds {snapshot_age_seconds:.3}"
        );
        let _ = writeln!(
            out,
            "# HELP floopy_snapshot_keys API keys in the snapshot being served.\n# TYPE floopy_snapshot_keys gauge\nfloopy_snapshot_keys {snapshot_keys}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_statuses_and_counters() {
        let m = Metrics::default();
        m.count_request(200);
        m.count_request(200);
        m.count_request(429);
        m.count_request(42); // out of range: ignored, no panic
        m.unpriced_model_requests.inc();
        let text = m.render(1.5, 3);
        assert!(
            text.contains("floopy_requests_total{status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("floopy_requests_total{status=\"429\"} 1\n"));
        assert!(!text.contains("status=\"404\""));
        assert!(text.contains("floopy_unpriced_model_requests_total 1\n"));
        assert!(text.contains("floopy_snapshot_age_seconds 1.500\n"));
        assert!(text.contains("floopy_snapshot_keys 3\n"));
    }
}
