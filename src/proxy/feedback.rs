//! `POST /v1/feedback`: the body an application sends to score a request
//! it made, read field by field (anything else is a 400 naming the field),
//! and the record it becomes (`logs::feedback`'s) handed to the sink.

use bytes::Bytes;
use serde_json::Value;
use uuid::Uuid;

use super::admission::Admitted;
use crate::error::GatewayError;
use crate::logs::feedback::{Feedback, MAX_COMMENT_CHARS};
use crate::logs::{LogId, LogSink};
use crate::request_id;

/// Accepts a score from the key the header admitted: attributed to its org
/// (and the project it resolved to), for a request of that org only; the
/// answer echoes it with its id.
pub fn accept(
    sink: &dyn LogSink,
    header: &Admitted,
    ts_ms: u64,
    body: &[u8],
) -> Result<Bytes, GatewayError> {
    let fields = parse_body(body)?;
    let key = &header.principal;
    if !request_id::belongs_to(fields.request_id, key.org_id) {
        return Err(GatewayError::UnknownRequest(fields.request_id));
    }
    let feedback_id = Uuid::now_v7();
    sink.submit_feedback(&Feedback {
        feedback_id: LogId(Some(feedback_id)),
        request_id: LogId(Some(fields.request_id)),
        ts_ms,
        org_id: LogId(Some(key.org_id)),
        project_id: LogId(Some(header.project_id)),
        api_key_id: LogId(Some(key.id)),
        user_id: String::new(),
        score: fields.score,
        comment: fields.comment,
    });
    let answer = serde_json::json!({
        "id": feedback_id,
        "object": "feedback",
        "request_id": fields.request_id,
        "score": fields.score,
    });
    Ok(Bytes::from(answer.to_string()))
}

/// The fields of a `POST /v1/feedback` body.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackBody {
    pub request_id: Uuid,
    pub score: f64,
    pub comment: String,
}

fn invalid(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidFeedback {
        param,
        message: message.into(),
    }
}

/// Reads a feedback body: `{"request_id": "<uuid>", "score": 0..=1,
/// "comment"?: "..."}`; anything else is a 400 naming the field.
pub fn parse_body(body: &[u8]) -> Result<FeedbackBody, GatewayError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(invalid("(body)", "the body must be a JSON object"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "request_id" | "score" | "comment"))
    {
        return Err(GatewayError::InvalidFeedback {
            param: "(body)",
            message: format!(
                "unknown field {unknown:?}: expected request_id, score and optionally comment"
            ),
        });
    }
    let request_id = match fields.get("request_id") {
        None => return Err(invalid("request_id", "request_id is required")),
        Some(Value::String(s)) => Uuid::try_parse(s).map_err(|_| {
            invalid(
                "request_id",
                format!("request_id {s:?} is not a request id (the floopy-request-id header of the response)"),
            )
        })?,
        Some(_) => return Err(invalid("request_id", "request_id must be a string")),
    };
    let score = match fields.get("score") {
        None => return Err(invalid("score", "score is required")),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| (0.0..=1.0).contains(s))
            .ok_or_else(|| invalid("score", format!("score {n} is not between 0 and 1")))?,
        Some(_) => return Err(invalid("score", "score must be a number between 0 and 1")),
    };
    let comment = match fields.get("comment") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= MAX_COMMENT_CHARS => s.clone(),
        Some(Value::String(_)) => {
            return Err(invalid(
                "comment",
                format!("comment is longer than {MAX_COMMENT_CHARS} characters"),
            ))
        }
        Some(_) => return Err(invalid("comment", "comment must be a string")),
    };
    Ok(FeedbackBody {
        request_id,
        score,
        comment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(body: &str) -> &'static str {
        match parse_body(body.as_bytes()) {
            Err(GatewayError::InvalidFeedback { param, .. }) => param,
            Err(GatewayError::InvalidJson(_)) => "(json)",
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_valid_body_is_read() {
        let id = Uuid::now_v7();
        let body = format!(r#"{{"request_id":"{id}","score":0.25,"comment":"ok"}}"#);
        assert_eq!(
            parse_body(body.as_bytes()).unwrap(),
            FeedbackBody {
                request_id: id,
                score: 0.25,
                comment: "ok".into()
            }
        );
        let body = format!(r#"{{"request_id":"{id}","score":1}}"#);
        assert_eq!(parse_body(body.as_bytes()).unwrap().score, 1.0);
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let id = Uuid::now_v7();
        assert_eq!(param("[1]"), "(body)");
        assert_eq!(param("{"), "(json)");
        assert_eq!(param(r#"{"score":0.5}"#), "request_id");
        assert_eq!(param(r#"{"request_id":"x","score":0.5}"#), "request_id");
        assert_eq!(param(r#"{"request_id":7,"score":0.5}"#), "request_id");
        assert_eq!(param(&format!(r#"{{"request_id":"{id}"}}"#)), "score");
        assert_eq!(
            param(&format!(r#"{{"request_id":"{id}","score":1.5}}"#)),
            "score"
        );
        assert_eq!(
            param(&format!(r#"{{"request_id":"{id}","score":-0.1}}"#)),
            "score"
        );
        assert_eq!(
            param(&format!(r#"{{"request_id":"{id}","score":"1"}}"#)),
            "score"
        );
        assert_eq!(
            param(&format!(r#"{{"request_id":"{id}","score":1,"comment":3}}"#)),
            "comment"
        );
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert_eq!(
            param(&format!(
                r#"{{"request_id":"{id}","score":1,"comment":"{long}"}}"#
            )),
            "comment"
        );
        assert_eq!(
            param(&format!(r#"{{"request_id":"{id}","score":1,"rating":3}}"#)),
            "(body)"
        );
    }
}
