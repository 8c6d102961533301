//! The SSE usage parser under arbitrary chunk boundaries: the usage it
//! reads and the bytes it passes to the client are the same however the
//! stream is cut, a stream it does not rewrite passes unchanged, and the
//! only events it ever removes are OpenAI usage-only chunks (when the
//! gateway itself asked for usage).
//!
//! Input: one byte of flags (provider kind, whether to strip), four bytes
//! of cut points, then the stream.

#![no_main]

use std::collections::HashMap;

use floopy_gateway::upstream::ProviderKind;
use floopy_gateway::usage::sse::SseUsageParser;
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

/// What the client receives, and the usage read, for `chunks` in order.
fn run(
    kind: ProviderKind,
    strip: bool,
    chunks: &[&[u8]],
) -> (Vec<u8>, Option<floopy_gateway::usage::Usage>) {
    let mut parser = SseUsageParser::new(kind, strip);
    let mut out = Vec::new();
    for chunk in chunks {
        match parser.filter(chunk) {
            Some(replacement) => out.extend_from_slice(&replacement),
            None => {
                assert!(
                    !parser.rewrites(),
                    "a rewriting parser replaces every chunk"
                );
                out.extend_from_slice(chunk);
            }
        }
    }
    if let Some(rest) = parser.finish() {
        out.extend_from_slice(&rest);
    }
    (out, parser.usage())
}

/// The stream's events, each through the blank line that ends it (`\n\n`
/// or `\n\r\n`, both within the event; the last event may have none).
fn events(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..stream.len() {
        if stream[i] != b'\n' || i == start {
            continue;
        }
        let after_lf = stream[i - 1] == b'\n';
        let after_crlf = i >= start + 2 && stream[i - 1] == b'\r' && stream[i - 2] == b'\n';
        if after_lf || after_crlf {
            out.push(&stream[start..=i]);
            start = i + 1;
        }
    }
    if start < stream.len() {
        out.push(&stream[start..]);
    }
    out
}

/// Whether `event` is an OpenAI usage-only chunk: its data is an object
/// with a `usage` object and no choices. Read leniently, as any reader of
/// the fields it needs: what is in a member nobody reads (bytes that are
/// not UTF-8, a number beyond an f64) does not make it something else.
fn usage_only(event: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Option<Vec<IgnoredAny>>,
        usage: Option<HashMap<String, IgnoredAny>>,
    }
    let data: Vec<&[u8]> = event
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter_map(|l| l.strip_prefix(b"data:"))
        .map(|p| p.strip_prefix(b" ").unwrap_or(p))
        .collect();
    let data = String::from_utf8_lossy(&data.join(&b'\n')).into_owned();
    match serde_json::from_str::<Chunk>(&data) {
        Ok(chunk) => chunk.usage.is_some() && chunk.choices.is_none_or(|c| c.is_empty()),
        Err(_) => false,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let kind = if data[0] & 1 == 0 {
        ProviderKind::OpenAi
    } else {
        ProviderKind::Anthropic
    };
    let strip = data[0] & 2 != 0;
    let stream = &data[5..];
    let mut cuts: Vec<usize> = data[1..5]
        .iter()
        .map(|b| usize::from(*b) * stream.len() / 255)
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for cut in cuts {
        chunks.push(&stream[from..cut]);
        from = cut;
    }
    chunks.push(&stream[from..]);

    let whole = run(kind, strip, &[stream]);
    let cut = run(kind, strip, &chunks);
    assert_eq!(
        whole.1, cut.1,
        "the usage depends on where the stream was cut"
    );
    assert_eq!(
        whole.0, cut.0,
        "the bytes sent depend on where the stream was cut"
    );
    if !strip {
        assert_eq!(whole.0, stream, "a stream not rewritten passes unchanged");
        return;
    }
    // Every event is passed on whole, or is a removed usage-only chunk.
    let mut sent = &whole.0[..];
    for event in events(stream) {
        if let Some(rest) = sent.strip_prefix(event) {
            sent = rest;
        } else {
            assert!(
                kind == ProviderKind::OpenAi && usage_only(event),
                "removed an event that is not an OpenAI usage-only chunk: {:?}",
                String::from_utf8_lossy(event)
            );
        }
    }
    assert!(sent.is_empty(), "sent bytes that were not in the stream");
});
