//! Request logs: the `RequestLog` record of SPEC section 4, and the
//! `LogSink` trait every sink implements. The request path builds a record
//! and hands it to `LogSink::submit`, which never blocks; writing, batching
//! and retrying are the sink's background work.

pub mod clickhouse;
pub mod config;
pub mod feedback;
pub mod file;
mod json;
pub mod kafka;
pub mod queue;
pub mod spool;
pub mod wal;

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use uuid::Uuid;

/// A UUID written as its hyphenated lowercase string, or `""` when absent;
/// kept as 16 bytes until then (no allocation on the request path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogId(pub Option<Uuid>);

impl Serialize for LogId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(id) => {
                serializer.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
            }
            None => serializer.serialize_str(""),
        }
    }
}

/// One request, as written to the log. Only types every ClickHouse version
/// reads from JSONEachRow: numbers, strings, 0/1 for booleans, arrays.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestLog {
    pub request_id: LogId,
    pub ts_ms: u64,
    pub org_id: LogId,
    /// `""` when the request was refused before its project was known.
    pub project_id: LogId,
    pub api_key_id: LogId,
    /// Empty when the key has no environment.
    pub environment: &'static str,
    pub provider: Arc<str>,
    pub model: String,
    /// The endpoint's own path when the request was routed, else the
    /// request's.
    pub path: Cow<'static, str>,
    pub status: u16,
    /// Empty when the request succeeded.
    pub error_code: &'static str,
    /// 1 for a streamed (SSE) request, else 0.
    pub stream: u8,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    /// Cost in USD (`cost_micro_usd / 1e6`).
    pub cost_usd: f64,
    /// The exact cost in integer micro-USD, for sums without float error.
    pub cost_micro_usd: u64,
    pub latency_ms: u64,
    /// Time to the first byte of the provider's response; 0 when none came.
    pub ttfb_ms: u64,
    pub session_id: String,
    pub user_id: String,
    pub property_keys: Vec<String>,
    pub property_values: Vec<String>,
    pub gateway_id: Arc<str>,
}

/// Where request logs go. `submit` is called on the request path, before
/// the answer's last byte goes out: it must return at once, without waiting
/// on the disk, and once it has returned a crash of the process must not
/// lose the record.
pub trait LogSink: Send + Sync {
    fn submit(&self, record: RequestLog);

    /// A feedback record, on the same terms as `submit`: the sink writes it
    /// where its request logs go (the feedback topic or table, or the same
    /// file).
    fn submit_feedback(&self, feedback: &feedback::Feedback);

    /// Stops accepting records, writes out everything accepted, and returns
    /// when that is durable. Called once, after the server has drained.
    fn shutdown(&self);

    /// Records accepted and not yet written.
    fn queue_depth(&self) -> usize;

    /// `Err` with the reason when the sink cannot currently deliver records
    /// (they are kept, not lost); `/readyz` reports it.
    fn health(&self) -> Result<(), String>;

    /// (bytes, age of the oldest record) of the disk spool, for sinks that
    /// have one.
    fn spool_stats(&self) -> Option<(u64, std::time::Duration)> {
        None
    }
}
