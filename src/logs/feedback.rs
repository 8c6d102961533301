//! The feedback record: a score in [0, 1] an application gives a request it
//! made (`POST /v1/feedback` with its own API key), written by the log sink
//! beside the request logs, one JSON object per line, to ClickHouse's
//! `feedback` table. Its first member is `feedback_id`, which is how a
//! sink tells it from a request log (whose first is `request_id`).

use serde::Serialize;

use super::LogId;

/// The longest comment kept, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// What starts every feedback line, and no request log line.
pub const FEEDBACK_PREFIX: &[u8] = b"{\"feedback_id\":";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub feedback_id: LogId,
    pub request_id: LogId,
    pub ts_ms: u64,
    pub org_id: LogId,
    /// The project the scoring key resolved to; queries attribute a score
    /// to the project of the request it scores.
    pub project_id: LogId,
    pub api_key_id: LogId,
    /// The control plane's user who scored it (empty from the gateway).
    pub user_id: String,
    pub score: f64,
    pub comment: String,
}

impl Feedback {
    /// Appends the record as one JSON object (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // A struct of strings, UUIDs and finite numbers always serialises.
        if let Err(e) = serde_json::to_writer(&mut *out, self) {
            tracing::error!(error = %e, "cannot serialise a feedback record");
        }
    }
}

/// Whether a log line is a feedback record (else a request log).
pub fn is_feedback(json: &[u8]) -> bool {
    json.starts_with(FEEDBACK_PREFIX)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_record_starts_with_its_own_prefix() {
        let mut json = Vec::new();
        Feedback {
            feedback_id: LogId(Some(Uuid::now_v7())),
            request_id: LogId(Some(Uuid::now_v7())),
            ts_ms: 1,
            org_id: LogId(Some(Uuid::now_v7())),
            project_id: LogId(None),
            api_key_id: LogId(None),
            user_id: String::new(),
            score: 0.5,
            comment: "a \"quoted\" comment".into(),
        }
        .write_json(&mut json);
        assert!(is_feedback(&json));
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["score"], 0.5);
        assert_eq!(value["project_id"], "");
        let mut log = Vec::new();
        super::super::RequestLog::default().write_json(&mut log);
        assert!(!is_feedback(&log));
    }
}
