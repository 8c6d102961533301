//! The request log record as one JSON object, written field by field.
//!
//! Every record is serialised once, on the sink's thread, at the gateway's
//! request rate: the derived `Serialize` through `serde_json` spends most of
//! its time escaping the 27 constant keys and the UUIDs, which never need
//! it. Here keys are literals, UUIDs and numbers are written as they are,
//! and a string is scanned once and copied when it has nothing to escape
//! (the common case); one that has goes through `serde_json`, so the bytes
//! are exactly `serde_json::to_vec(&record)` (a test holds both to it).

use super::{LogId, RequestLog};

impl RequestLog {
    /// Appends the record as one JSON object (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(640);
        out.extend_from_slice(b"{\"request_id\":");
        id(out, self.request_id);
        out.extend_from_slice(b",\"ts_ms\":");
        int(out, self.ts_ms);
        out.extend_from_slice(b",\"org_id\":");
        id(out, self.org_id);
        out.extend_from_slice(b",\"project_id\":");
        id(out, self.project_id);
        out.extend_from_slice(b",\"api_key_id\":");
        id(out, self.api_key_id);
        out.extend_from_slice(b",\"environment\":");
        string(out, self.environment);
        out.extend_from_slice(b",\"provider\":");
        string(out, &self.provider);
        out.extend_from_slice(b",\"model\":");
        string(out, &self.model);
        out.extend_from_slice(b",\"path\":");
        string(out, &self.path);
        out.extend_from_slice(b",\"status\":");
        int(out, self.status);
        out.extend_from_slice(b",\"error_code\":");
        string(out, self.error_code);
        out.extend_from_slice(b",\"stream\":");
        int(out, self.stream);
        out.extend_from_slice(b",\"prompt_tokens\":");
        int(out, self.prompt_tokens);
        out.extend_from_slice(b",\"completion_tokens\":");
        int(out, self.completion_tokens);
        out.extend_from_slice(b",\"cached_tokens\":");
        int(out, self.cached_tokens);
        out.extend_from_slice(b",\"cost_usd\":");
        float(out, self.cost_usd);
        out.extend_from_slice(b",\"cost_micro_usd\":");
        int(out, self.cost_micro_usd);
        out.extend_from_slice(b",\"latency_ms\":");
        int(out, self.latency_ms);
        out.extend_from_slice(b",\"ttfb_ms\":");
        int(out, self.ttfb_ms);
        out.extend_from_slice(b",\"session_id\":");
        string(out, &self.session_id);
        out.extend_from_slice(b",\"user_id\":");
        string(out, &self.user_id);
        out.extend_from_slice(b",\"property_keys\":");
        strings(out, &self.property_keys);
        out.extend_from_slice(b",\"property_values\":");
        strings(out, &self.property_values);
        out.extend_from_slice(b",\"gateway_id\":");
        string(out, &self.gateway_id);
        out.push(b'}');
    }
}

fn id(out: &mut Vec<u8>, id: LogId) {
    out.push(b'"');
    if let Some(id) = id.0 {
        let mut buf = uuid::Uuid::encode_buffer();
        out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    }
    out.push(b'"');
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Through `serde_json`, whose float format (`1e+21`, `null` when not
/// finite) ClickHouse and the tests already read.
fn float(out: &mut Vec<u8>, x: f64) {
    if serde_json::to_writer(&mut *out, &x).is_err() {
        // Writing into a `Vec` cannot fail; keep the JSON whole.
        out.extend_from_slice(b"null");
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    // JSON escapes `"`, `\` and the control characters below 0x20.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a `str` into a `Vec` cannot fail; keep the JSON whole.
        out.extend_from_slice(b"\"\"");
    }
}

fn strings(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    fn written(record: &RequestLog) -> String {
        let mut out = Vec::new();
        record.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn derived(record: &RequestLog) -> String {
        serde_json::to_string(record).unwrap()
    }

    fn full() -> RequestLog {
        RequestLog {
            request_id: LogId(Some(Uuid::from_u128(
                0x019ac0de_7a11_7000_8000_0123456789ab,
            ))),
            ts_ms: 1_764_000_000_123,
            org_id: LogId(Some(Uuid::from_u128(
                0x0190b000_0000_7000_8000_000000000001,
            ))),
            project_id: LogId(Some(Uuid::from_u128(u128::MAX))),
            api_key_id: LogId(Some(Uuid::nil())),
            environment: "production",
            provider: "openai".into(),
            model: "gpt-4o".into(),
            path: "/v1/chat/completions".into(),
            status: 200,
            error_code: "",
            stream: 1,
            prompt_tokens: 1234,
            completion_tokens: u64::MAX,
            cached_tokens: 0,
            cost_usd: 0.012345,
            cost_micro_usd: 12_345,
            latency_ms: 812,
            ttfb_ms: 95,
            session_id: "sess-1".into(),
            user_id: "user@example.com".into(),
            property_keys: vec!["team".into(), "feature".into()],
            property_values: vec!["search".into(), "summary".into()],
            gateway_id: Arc::from("gw-eu-1"),
        }
    }

    #[test]
    fn matches_the_derived_serialisation() {
        assert_eq!(written(&full()), derived(&full()));
        let empty = RequestLog::default();
        assert_eq!(written(&empty), derived(&empty));
        assert!(written(&empty).contains(r#""project_id":"","#));
    }

    #[test]
    fn escapes_what_json_requires() {
        let mut record = full();
        record.model = "quote \" backslash \\ newline \n tab \t nul \u{0} del \u{7f}".into();
        record.user_id = "ünïcødé ✓ 🚀 \u{2028}".into();
        record.session_id = "\u{1f}".into();
        record.property_keys = vec!["a\"b".into(), String::new()];
        record.property_values = vec!["c\\d".into(), "e\r\n".into()];
        let json = written(&record);
        assert_eq!(json, derived(&record));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["model"], record.model.as_str());
        assert_eq!(back["user_id"], record.user_id.as_str());
        assert_eq!(back["property_values"][1], "e\r\n");
    }

    #[test]
    fn costs_are_written_as_serde_json_writes_floats() {
        for cost in [
            0.0,
            1e-6,
            0.000_001_5,
            0.1 + 0.2,
            12_345.678_9,
            1e21,
            f64::MAX,
        ] {
            let mut record = full();
            record.cost_usd = cost;
            assert_eq!(written(&record), derived(&record), "cost {cost}");
        }
        let mut record = full();
        record.cost_usd = f64::NAN;
        assert_eq!(written(&record), derived(&record));
        assert!(written(&record).contains(r#""cost_usd":null"#));
    }
}
