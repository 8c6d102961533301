//! Asking for stream usage: for every body the gateway accepts, the body it
//! sends is valid JSON equal to the client's with
//! `stream_options.include_usage` set to true, and nothing else changed.

#![no_main]

use bytes::Bytes;
use floopy_gateway::body::{parse_request, request_stream_usage};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(fields) = parse_request(data) else {
        return;
    };
    // serde_json's own limits (nesting, numbers beyond an f64) are not
    // JSON's: such a body cannot be compared.
    let Ok(mut expected) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let out = match request_stream_usage(&Bytes::copy_from_slice(data), &fields) {
        Ok(out) => out,
        Err(e) => panic!("an accepted body could not be changed: {e:?}"),
    };
    let sent: Value = serde_json::from_slice(&out).expect("the body sent is JSON");
    let object = expected
        .as_object_mut()
        .expect("an accepted body is an object");
    let options = object.entry("stream_options").or_insert_with(|| json!({}));
    if !options.is_object() {
        *options = json!({});
    }
    options["include_usage"] = json!(true);
    assert_eq!(sent, expected);
    let again = parse_request(&out).expect("the body sent is accepted");
    assert!(again.include_usage && again.has_stream_options);
    assert_eq!(
        (again.model, again.stream, again.user),
        (fields.model, fields.stream, fields.user)
    );
});
