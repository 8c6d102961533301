//! Incremental usage parser for SSE streams, fed one response chunk at a time
//! from `response_body_filter` (synchronous, arbitrary chunk boundaries).
//!
//! It splits the byte stream into events (ended by a blank line, `\n\n` or
//! `\r\n\r\n`), looks only at events that mention `"usage"`, and records the
//! usage they carry: OpenAI's final usage chunk, Anthropic's
//! `message_start` and `message_delta`. When the gateway itself asked an
//! OpenAI-kind provider for usage, it also removes that usage-only chunk from
//! what the client receives. An incomplete event is carried to the next
//! chunk; the carry is capped so a malformed stream cannot grow it forever.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::{RawUsage, Usage};
use crate::upstream::ProviderKind;

/// Largest event kept while waiting for its end. Usage events are tiny; a
/// larger event is passed on without being parsed.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub struct SseUsageParser {
    kind: ProviderKind,
    strip_usage_chunk: bool,
    carry: Vec<u8>,
    usage: Option<RawUsage>,
}

impl SseUsageParser {
    /// `strip_usage_chunk`: remove OpenAI's usage-only chunk (`choices`
    /// empty, `usage` set) from the forwarded stream, because the gateway and
    /// not the client asked for it.
    pub fn new(kind: ProviderKind, strip_usage_chunk: bool) -> Self {
        SseUsageParser {
            kind,
            strip_usage_chunk,
            carry: Vec::new(),
            usage: None,
        }
    }

    /// Whether this parser changes the stream (then the response length
    /// changes and `filter` must replace every chunk).
    pub fn rewrites(&self) -> bool {
        self.strip_usage_chunk
    }

    /// Usage seen so far, normalised.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.map(|raw| raw.normalize(self.kind))
    }

    /// Feeds one chunk. Returns what to send to the client in its place when
    /// the parser rewrites the stream (complete events only; a partial event
    /// waits for the next chunk), `None` when the chunk goes on unchanged.
    pub fn filter(&mut self, chunk: &[u8]) -> Option<Bytes> {
        let mut out = self.strip_usage_chunk.then(BytesMut::new);
        if self.carry.is_empty() {
            let consumed = self.scan(chunk, out.as_mut());
            self.keep_tail(&chunk[consumed..], out.as_mut());
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(chunk);
            let consumed = self.scan(&buf, out.as_mut());
            buf.drain(..consumed);
            self.carry = buf;
            self.cap_carry(out.as_mut());
        }
        out.map(BytesMut::freeze)
    }

    /// One `response_body_filter` call: reads `body` and, when rewriting,
    /// replaces it with what the client gets: the chunk's complete events
    /// and, at the end of the stream, the carried rest joined to it. A
    /// chunk that becomes empty mid-stream is sent as nothing.
    pub fn rewrite(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if let Some(chunk) = body.as_ref() {
            if let Some(replacement) = self.filter(chunk) {
                *body = Some(replacement);
            }
        }
        if end_of_stream {
            if let Some(rest) = self.finish().filter(|rest| !rest.is_empty()) {
                *body = Some(match body.take() {
                    Some(chunk) if !chunk.is_empty() => {
                        let mut joined = BytesMut::with_capacity(chunk.len() + rest.len());
                        joined.extend_from_slice(&chunk);
                        joined.extend_from_slice(&rest);
                        joined.freeze()
                    }
                    _ => rest,
                });
            }
        }
        if body.as_ref().is_some_and(Bytes::is_empty) && !end_of_stream {
            *body = None;
        }
    }

    /// Ends the stream: a last event without its blank line is still read.
    /// Returns the bytes still owed to the client when rewriting.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = std::mem::take(&mut self.carry);
        if rest.is_empty() {
            return self.strip_usage_chunk.then(Bytes::new);
        }
        let keep = self.on_event(&rest);
        if !self.strip_usage_chunk {
            return None;
        }
        Some(if keep {
            Bytes::from(rest)
        } else {
            Bytes::new()
        })
    }

    /// Handles every complete event at the start of `data`; returns how many
    /// bytes they span.
    fn scan(&mut self, data: &[u8], mut out: Option<&mut BytesMut>) -> usize {
        let mut pos = 0;
        while let Some(len) = event_len(&data[pos..]) {
            let event = &data[pos..pos + len];
            let keep = self.on_event(event);
            if let Some(out) = out.as_deref_mut() {
                if keep {
                    out.extend_from_slice(event);
                }
            }
            pos += len;
        }
        pos
    }

    fn keep_tail(&mut self, tail: &[u8], out: Option<&mut BytesMut>) {
        self.carry.extend_from_slice(tail);
        self.cap_carry(out);
    }

    /// An event longer than the cap is not a usage event: pass it on.
    fn cap_carry(&mut self, out: Option<&mut BytesMut>) {
        if self.carry.len() > MAX_EVENT_BYTES {
            if let Some(out) = out {
                out.extend_from_slice(&self.carry);
            }
            self.carry.clear();
        }
    }

    /// Records the usage an event carries; returns whether to forward it.
    fn on_event(&mut self, event: &[u8]) -> bool {
        let Some(at) = memchr::memmem::find(event, KEY) else {
            return true;
        };
        // A stream that asked for usage carries `"usage":null` in every
        // content chunk: skip those without parsing.
        let rest = &event[at + KEY.len()..];
        if is_null_value(rest) && memchr::memmem::find(rest, KEY).is_none() {
            return true;
        }
        let Some(data) = event_data(event) else {
            return true;
        };
        match self.kind {
            ProviderKind::OpenAi => self.on_openai_chunk(&data),
            ProviderKind::Anthropic => {
                self.on_anthropic_event(&data);
                true
            }
        }
    }

    fn on_openai_chunk(&mut self, data: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Chunk {
            #[serde(default)]
            choices: Option<Vec<serde::de::IgnoredAny>>,
            usage: Option<RawUsage>,
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(data) else {
            return true;
        };
        let Some(usage) = chunk.usage else {
            return true;
        };
        self.record(usage);
        let usage_only = chunk.choices.is_none_or(|c| c.is_empty());
        !(self.strip_usage_chunk && usage_only)
    }

    fn on_anthropic_event(&mut self, data: &[u8]) {
        #[derive(Deserialize)]
        struct Message {
            usage: Option<RawUsage>,
        }
        #[derive(Deserialize)]
        struct Event {
            message: Option<Message>,
            usage: Option<RawUsage>,
        }
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            return;
        };
        if let Some(usage) = event.message.and_then(|m| m.usage) {
            self.record(usage);
        }
        if let Some(usage) = event.usage {
            self.record(usage);
        }
    }

    fn record(&mut self, usage: RawUsage) {
        match &mut self.usage {
            Some(seen) => seen.merge(usage),
            None => self.usage = Some(usage),
        }
    }
}

const KEY: &[u8] = b"\"usage\"";

/// Whether `rest` (what follows a key) is `: null`.
fn is_null_value(rest: &[u8]) -> bool {
    let rest = rest.trim_ascii_start();
    rest.strip_prefix(b":")
        .is_some_and(|v| v.trim_ascii_start().starts_with(b"null"))
}

/// Length of the first complete event in `data` (through its blank line).
fn event_len(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(nl) = memchr::memchr(b'\n', &data[from..]) {
        let at = from + nl;
        match data.get(at + 1) {
            Some(b'\n') => return Some(at + 2),
            Some(b'\r') if data.get(at + 2) == Some(&b'\n') => return Some(at + 3),
            _ => from = at + 1,
        }
    }
    None
}

/// The event's `data:` payload; several data lines are joined by `\n` as
/// the SSE spec says.
fn event_data(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut lines = event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|payload| payload.strip_prefix(b" ").unwrap_or(payload));
    let first = lines.next()?;
    match lines.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = first.to_vec();
            for line in std::iter::once(second).chain(lines) {
                joined.push(b'\n');
                joined.extend_from_slice(line);
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_STREAM: &str = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n",
        "data: [DONE]\n\n",
    );

    const ANTHROPIC_STREAM: &str = concat!(
        "event: message_start\r\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":5}}}\r\n\r\n",
        "event: content_block_delta\r\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\r\n\r\n",
        "event: message_delta\r\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\r\n\r\n",
        "event: message_stop\r\n",
        "data: {\"type\":\"message_stop\"}\r\n\r\n",
    );

    /// Feeds `stream` in pieces of `size` bytes; returns what the client got.
    fn run(parser: &mut SseUsageParser, stream: &[u8], size: usize) -> Vec<u8> {
        let mut client = Vec::new();
        for piece in stream.chunks(size) {
            match parser.filter(piece) {
                Some(out) => client.extend_from_slice(&out),
                None => client.extend_from_slice(piece),
            }
        }
        if let Some(rest) = parser.finish() {
            client.extend_from_slice(&rest);
        }
        client
    }

    #[test]
    fn openai_usage_chunk_is_read_and_kept_when_client_asked() {
        for size in [1, 2, 3, 7, 64, 4096] {
            let mut parser = SseUsageParser::new(ProviderKind::OpenAi, false);
            let client = run(&mut parser, OPENAI_STREAM.as_bytes(), size);
            assert_eq!(client, OPENAI_STREAM.as_bytes(), "chunk size {size}");
            assert_eq!(
                parser.usage(),
                Some(Usage {
                    prompt_tokens: 11,
                    completion_tokens: 2,
                    cached_tokens: 3
                }),
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn injected_openai_usage_chunk_is_stripped_at_any_chunk_boundary() {
        let expected = OPENAI_STREAM.replace(
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n",
            "",
        );
        for size in [1, 2, 5, 13, 100, 4096] {
            let mut parser = SseUsageParser::new(ProviderKind::OpenAi, true);
            let client = run(&mut parser, OPENAI_STREAM.as_bytes(), size);
            assert_eq!(
                String::from_utf8_lossy(&client),
                expected,
                "chunk size {size}"
            );
            assert_eq!(parser.usage().map(|u| u.prompt_tokens), Some(11));
        }
    }

    #[test]
    fn a_content_chunk_that_also_has_usage_is_never_stripped() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n";
        let mut parser = SseUsageParser::new(ProviderKind::OpenAi, true);
        let client = run(&mut parser, stream.as_bytes(), 10);
        assert_eq!(client, stream.as_bytes());
        assert_eq!(parser.usage().map(|u| u.completion_tokens), Some(1));
    }

    #[test]
    fn anthropic_usage_combines_message_start_and_delta() {
        for size in [1, 9, 50, 4096] {
            let mut parser = SseUsageParser::new(ProviderKind::Anthropic, false);
            let client = run(&mut parser, ANTHROPIC_STREAM.as_bytes(), size);
            assert_eq!(client, ANTHROPIC_STREAM.as_bytes());
            assert_eq!(
                parser.usage(),
                Some(Usage {
                    prompt_tokens: 30,
                    completion_tokens: 15,
                    cached_tokens: 5
                }),
                "chunk size {size}"
            );
        }
    }

    #[test]
    fn stream_cut_before_usage_has_none() {
        let cut = &OPENAI_STREAM.as_bytes()[..120];
        let mut parser = SseUsageParser::new(ProviderKind::OpenAi, true);
        let client = run(&mut parser, cut, 16);
        assert_eq!(parser.usage(), None);
        assert_eq!(client, cut, "everything received is passed on");
    }

    #[test]
    fn last_event_without_blank_line_is_read_at_finish() {
        let stream =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5}}";
        let mut parser = SseUsageParser::new(ProviderKind::OpenAi, false);
        run(&mut parser, stream.as_bytes(), 8);
        assert_eq!(parser.usage().map(|u| u.completion_tokens), Some(5));
    }

    #[test]
    fn garbage_and_oversized_events_pass_through_without_growing_the_carry() {
        let mut parser = SseUsageParser::new(ProviderKind::OpenAi, true);
        let big = vec![b'x'; MAX_EVENT_BYTES + 10];
        let client = run(&mut parser, &big, 64 * 1024);
        assert_eq!(client.len(), big.len(), "oversized event passed on whole");
        assert!(parser.carry.len() <= MAX_EVENT_BYTES);
        let junk = b"data: {\"usage\": nope}\n\n";
        let client = run(&mut parser, junk, 3);
        assert_eq!(client, junk, "unparseable usage event is forwarded");
        assert_eq!(parser.usage(), None);
    }

    #[test]
    fn null_usage_on_content_chunks_is_skipped_and_the_real_one_read() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\" : null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n",
        );
        let mut parser = SseUsageParser::new(ProviderKind::OpenAi, true);
        let client = run(&mut parser, stream.as_bytes(), 7);
        assert_eq!(parser.usage().map(|u| u.completion_tokens), Some(4));
        assert_eq!(
            client.windows(7).filter(|w| w == b"\"usage\"").count(),
            2,
            "content chunks kept, usage chunk stripped"
        );
        assert!(is_null_value(b" : null}"));
        assert!(!is_null_value(b":{\"a\":null}"));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let stream = "data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\n";
        let mut parser = SseUsageParser::new(ProviderKind::OpenAi, false);
        run(&mut parser, stream.as_bytes(), 4096);
        assert_eq!(parser.usage().map(|u| u.prompt_tokens), Some(2));
    }
}
