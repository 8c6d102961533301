//! The request-body scanner against serde_json: it accepts exactly the
//! JSON objects a strict parser accepts (beyond the gateway's own rules:
//! a member it reads appears once, `model` is a string and `stream` a
//! boolean, or null), and the fields it reads are the ones serde_json reads.

#![no_main]

use floopy_gateway::body::{parse_request, RequestFields};
use floopy_gateway::error::GatewayError;
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The members the gateway reads; each may appear once.
const READ: [&str; 8] = [
    "model",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
];

/// A top-level object's member names, duplicates kept.
struct Names(Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some((name, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    names.push(name);
                }
                Ok(Names(names))
            }
        }
        d.deserialize_map(V)
    }
}

/// serde_json's own limits, which are not JSON's: its nesting limit and
/// numbers beyond an f64.
fn beyond_serde(e: &serde_json::Error) -> bool {
    let m = e.to_string();
    m.contains("recursion limit") || m.contains("number out of range")
}

/// Whether the body escapes a UTF-16 surrogate (`\uD800` to `\uDFFF`)
/// anywhere. RFC 8259 8.2 allows an unpaired one; serde_json refuses it
/// everywhere, the scanner where it decodes (the members it reads) and not
/// in what it forwards untouched, so such bodies are compared only on the
/// members read.
fn escapes_a_surrogate(data: &[u8]) -> bool {
    data.windows(4).any(|w| {
        w[0] == b'\\'
            && w[1] == b'u'
            && matches!(w[2], b'd' | b'D')
            && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}

fn refused(ours: &Result<RequestFields, GatewayError>) -> bool {
    matches!(ours, Err(GatewayError::InvalidJson(_)))
}

fn too_deep(ours: &Result<RequestFields, GatewayError>) -> bool {
    matches!(ours, Err(GatewayError::InvalidJson(m)) if m.contains("nesting deeper"))
}

fuzz_target!(|data: &[u8]| {
    let ours = parse_request(data);
    let value: Value = match serde_json::from_slice(data) {
        Ok(value) => value,
        Err(e) if beyond_serde(&e) || escapes_a_surrogate(data) => return,
        Err(e) => {
            assert!(
                refused(&ours),
                "accepted what serde_json refuses ({e}): {ours:?}"
            );
            return;
        }
    };
    if too_deep(&ours) {
        return;
    }
    let Some(object) = value.as_object() else {
        assert!(
            refused(&ours),
            "accepted a body that is not an object: {ours:?}"
        );
        return;
    };
    let names = serde_json::from_slice::<Names>(data).expect("an object").0;
    let duplicate = READ
        .iter()
        .any(|read| names.iter().filter(|n| n == read).count() > 1);
    let model_ok = matches!(
        object.get("model"),
        None | Some(Value::Null | Value::String(_))
    );
    let stream_ok = matches!(
        object.get("stream"),
        None | Some(Value::Null | Value::Bool(_))
    );
    if duplicate || !model_ok || !stream_ok {
        assert!(
            refused(&ours),
            "accepted a duplicate read member or a mistyped model/stream: {ours:?}"
        );
        return;
    }
    let model = object.get("model").and_then(Value::as_str).unwrap_or("");
    if model.is_empty() {
        assert!(
            matches!(ours, Err(GatewayError::MissingModel)),
            "no model, yet {ours:?}"
        );
        return;
    }
    let fields = ours.unwrap_or_else(|e| panic!("refused valid JSON: {e:?}"));
    let user = object
        .get("user")
        .and_then(Value::as_str)
        .or_else(|| {
            object
                .get("metadata")
                .and_then(|m| m.get("user_id"))
                .and_then(Value::as_str)
        })
        .map(str::to_owned);
    let expected = RequestFields {
        model: model.to_owned(),
        stream: object
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        has_stream_options: object.contains_key("stream_options"),
        include_usage: object
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            == Some(&Value::Bool(true)),
        user,
        max_tokens: ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|k| object.get(*k).and_then(Value::as_u64)),
    };
    assert_eq!(fields, expected);
});
