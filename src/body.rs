//! The JSON request body: the few fields the gateway reads (`model`,
//! `stream`, `stream_options`, `user`) and the one change it makes (asking an
//! OpenAI-kind provider for stream usage). The rest of the body (`messages`)
//! is scanned for validity but never copied or re-serialised on the common
//! path.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use crate::error::GatewayError;

/// What the gateway needs from a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFields {
    pub model: String,
    pub stream: bool,
    /// Whether the body has a `stream_options` member at all.
    pub has_stream_options: bool,
    /// `stream_options.include_usage == true`.
    pub include_usage: bool,
    /// The body's `user` string (OpenAI), or Anthropic's `metadata.user_id`.
    pub user: Option<String>,
    /// The most output tokens the request allows (`max_tokens`,
    /// `max_completion_tokens` or `max_output_tokens`).
    pub max_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    stream_options: Option<serde_json::Value>,
    user: Option<serde_json::Value>,
    metadata: Option<serde_json::Value>,
    max_tokens: Option<serde_json::Value>,
    max_completion_tokens: Option<serde_json::Value>,
    max_output_tokens: Option<serde_json::Value>,
}

/// Parses the fields; the body must be one JSON object.
pub fn parse_request(body: &[u8]) -> Result<RequestFields, GatewayError> {
    let fields: Fields =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let model = fields.model.ok_or(GatewayError::MissingModel)?;
    if model.is_empty() {
        return Err(GatewayError::MissingModel);
    }
    let include_usage = fields
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let user = fields
        .user
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .or_else(|| {
            fields
                .metadata
                .as_ref()
                .and_then(|m| m.get("user_id"))
                .and_then(serde_json::Value::as_str)
        })
        .map(str::to_owned);
    let max_tokens = [
        &fields.max_completion_tokens,
        &fields.max_tokens,
        &fields.max_output_tokens,
    ]
    .into_iter()
    .find_map(|v| v.as_ref().and_then(serde_json::Value::as_u64));
    Ok(RequestFields {
        max_tokens,
        model: model.into_owned(),
        stream: fields.stream.unwrap_or(false),
        has_stream_options: fields.stream_options.is_some(),
        include_usage,
        user,
    })
}

/// The body with `stream_options.include_usage` set to true.
///
/// Without a `stream_options` member the member is inserted right after the
/// opening `{`, leaving every other byte as it was; with one (rare), the body
/// is re-serialised with the flag set.
pub fn request_stream_usage(body: &Bytes, fields: &RequestFields) -> Result<Bytes, GatewayError> {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true}"#;
    if !fields.has_stream_options {
        let open = body
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .filter(|&i| body[i] == b'{')
            .ok_or_else(|| GatewayError::InvalidJson("the body is not a JSON object".into()))?;
        let rest = &body[open + 1..];
        let empty_object = rest
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'}');
        let mut out = BytesMut::with_capacity(body.len() + MEMBER.len() + 1);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(MEMBER);
        if !empty_object {
            out.extend_from_slice(b",");
        }
        out.extend_from_slice(rest);
        return Ok(out.freeze());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| GatewayError::InvalidJson("the body is not a JSON object".into()))?;
    let options = object
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    if !options.is_object() {
        *options = serde_json::json!({});
    }
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".into(), serde_json::Value::Bool(true));
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_stream_and_user() {
        let f = parse_request(br#"{"messages":[{"role":"user","content":"hi \"there\""}],"model":"gpt-4o","stream":true,"user":"u-1"}"#).unwrap();
        assert_eq!(f.model, "gpt-4o");
        assert!(f.stream);
        assert!(!f.has_stream_options);
        assert_eq!(f.user.as_deref(), Some("u-1"));
    }

    #[test]
    fn reads_anthropic_metadata_user_and_escaped_model() {
        let f = parse_request(
            br#"{"model":"claude\u002d3","max_tokens":5,"metadata":{"user_id":"u-2"}}"#,
        )
        .unwrap();
        assert_eq!(f.model, "claude-3");
        assert!(!f.stream);
        assert_eq!(f.user.as_deref(), Some("u-2"));
        assert_eq!(f.max_tokens, Some(5));
    }

    #[test]
    fn rejects_bad_bodies_precisely() {
        assert!(matches!(
            parse_request(b"{not json"),
            Err(GatewayError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_request(b"[1,2]"),
            Err(GatewayError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_request(b""),
            Err(GatewayError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_request(br#"{"model":"m","stream":"yes"}"#),
            Err(GatewayError::InvalidJson(_))
        ));
        assert_eq!(
            parse_request(br#"{"messages":[]}"#),
            Err(GatewayError::MissingModel)
        );
        assert_eq!(
            parse_request(br#"{"model":""}"#),
            Err(GatewayError::MissingModel)
        );
    }

    #[test]
    fn inserts_stream_options_keeping_every_other_byte() {
        let body = Bytes::from_static(b"  {\"model\":\"m\", \"stream\":true, \"messages\":[]}");
        let f = parse_request(&body).unwrap();
        let out = request_stream_usage(&body, &f).unwrap();
        assert_eq!(
            &out[..],
            b"  {\"stream_options\":{\"include_usage\":true},\"model\":\"m\", \"stream\":true, \"messages\":[]}"
        );
        let again = parse_request(&out).unwrap();
        assert!(again.include_usage);
    }

    #[test]
    fn sets_the_flag_in_existing_stream_options() {
        let body = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        );
        let f = parse_request(&body).unwrap();
        let out = request_stream_usage(&body, &f).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
        assert_eq!(v["model"], "m");
    }
}
