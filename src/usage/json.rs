//! Usage from a whole (non-streamed) JSON response body.
//!
//! The body is forwarded chunk by chunk as it arrives; `ResponseCapture`
//! keeps a bounded copy (the tail, where both providers put `usage`), and
//! `usage_from_json` finds the top-level `"usage"` object without building a
//! DOM of the whole answer.

use std::sync::LazyLock;

use super::{RawUsage, Usage};
use crate::json_scan::Scanner;
use crate::upstream::ProviderKind;

/// Most bytes of a response body kept for usage extraction. Both providers
/// put `usage` at the end of the object, so a longer body keeps its tail.
pub const CAPTURE_LIMIT: usize = 256 * 1024;

/// A bounded copy of a response body.
#[derive(Debug, Default)]
pub struct ResponseCapture {
    buf: Vec<u8>,
}

impl ResponseCapture {
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= CAPTURE_LIMIT {
            self.buf.clear();
            self.buf
                .extend_from_slice(&chunk[chunk.len() - CAPTURE_LIMIT..]);
            return;
        }
        let overflow = (self.buf.len() + chunk.len()).saturating_sub(CAPTURE_LIMIT);
        if overflow > 0 {
            self.buf.drain(..overflow);
        }
        self.buf.extend_from_slice(chunk);
    }

    pub fn usage(&self, kind: ProviderKind) -> Option<Usage> {
        usage_from_json(kind, &self.buf)
    }
}

/// Reads the last `"usage": {...}` of a JSON body.
///
/// Inside JSON strings a quote is always escaped, so an unescaped `"usage"`
/// followed by `:` is an object key; the last one in the body is the
/// top-level usage in both providers' shapes. `None` when there is none or it
/// does not parse.
// Out of line: load-tests/instructions.sh reports its cost (one call).
#[inline(never)]
pub fn usage_from_json(kind: ProviderKind, body: &[u8]) -> Option<Usage> {
    let value_start = find_last_usage_value(body)?;
    let raw = RawUsage::scan(&mut Scanner::at(body, value_start)).ok()??;
    Some(raw.normalize(kind))
}

/// Offset of the value after the last `"usage"` key, or `None`.
fn find_last_usage_value(body: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"usage\"";
    // Built once: building a searcher costs more than searching a short body.
    static FINDER: LazyLock<memchr::memmem::FinderRev<'static>> =
        LazyLock::new(|| memchr::memmem::FinderRev::new(KEY));
    let mut end = body.len();
    while let Some(at) = FINDER.rfind(&body[..end]) {
        let mut i = at + KEY.len();
        while i < body.len() && body[i].is_ascii_whitespace() {
            i += 1;
        }
        if body.get(i) == Some(&b':') {
            return Some(i + 1);
        }
        end = at;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"the word \"usage\": is here"}}],"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":100}},"system_fingerprint":"fp"}"#;

    const ANTHROPIC: &str = r#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":12,"output_tokens":7,"cache_read_input_tokens":40,"cache_creation_input_tokens":8}}"#;

    #[test]
    fn reads_openai_usage_with_cached_tokens() {
        let usage = usage_from_json(ProviderKind::OpenAi, OPENAI.as_bytes());
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 120,
                completion_tokens: 30,
                cached_tokens: 100
            })
        );
    }

    #[test]
    fn reads_anthropic_usage_adding_cache_tokens_to_input() {
        let usage = usage_from_json(ProviderKind::Anthropic, ANTHROPIC.as_bytes());
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 60,
                completion_tokens: 7,
                cached_tokens: 40
            })
        );
    }

    #[test]
    fn embeddings_usage_has_no_completion() {
        let body = br#"{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let usage = usage_from_json(ProviderKind::OpenAi, body);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 8,
                completion_tokens: 0,
                cached_tokens: 0
            })
        );
    }

    #[test]
    fn missing_null_or_broken_usage_is_none() {
        assert_eq!(usage_from_json(ProviderKind::OpenAi, b"{}"), None);
        assert_eq!(
            usage_from_json(ProviderKind::OpenAi, b"{\"usage\":null}"),
            None
        );
        assert_eq!(
            usage_from_json(ProviderKind::OpenAi, b"{\"usage\":{\"prompt"),
            None
        );
        assert_eq!(usage_from_json(ProviderKind::OpenAi, b"not json"), None);
        assert_eq!(usage_from_json(ProviderKind::OpenAi, b""), None);
    }

    #[test]
    fn capture_keeps_the_tail_of_a_long_body() {
        let mut capture = ResponseCapture::default();
        let filler = vec![b' '; 100 * 1024];
        capture.push(b"{\"choices\":[],\"pad\":\"");
        for _ in 0..5 {
            capture.push(&filler);
        }
        capture.push(br#"","usage":{"prompt_tokens":5,"completion_tokens":6}}"#);
        assert!(capture.buf.len() <= CAPTURE_LIMIT, "capture is bounded");
        assert_eq!(
            capture.usage(ProviderKind::OpenAi),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 6,
                cached_tokens: 0
            })
        );
    }

    #[test]
    fn capture_split_across_chunks() {
        let mut capture = ResponseCapture::default();
        for piece in OPENAI.as_bytes().chunks(7) {
            capture.push(piece);
        }
        assert_eq!(
            capture.usage(ProviderKind::OpenAi).map(|u| u.prompt_tokens),
            Some(120)
        );
    }
}
