//! Token usage read from provider responses: whole JSON bodies (`json`) and
//! SSE streams parsed incrementally (`sse`). Owns the normalisation of the
//! providers' usage shapes into one `Usage`; pricing it is `pricing`'s job.

pub mod json;
pub mod sse;

use serde::Deserialize;

use crate::json_scan::{ScanResult, Scanner};
use crate::upstream::ProviderKind;

/// Tokens of one request. `prompt_tokens` counts every input token, cached
/// ones included; `cached_tokens` says how many of them were cache reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// The union of the usage objects OpenAI-kind and Anthropic providers send.
/// Every field is optional: providers omit or null them freely.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct RawUsage {
    // OpenAI chat/completions/embeddings
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<RawDetails>,
    // Anthropic, and OpenAI's newer responses API
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<RawDetails>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct RawDetails {
    cached_tokens: Option<u64>,
}

impl RawDetails {
    fn scan(s: &mut Scanner<'_>) -> ScanResult<Option<RawDetails>> {
        if s.null()? {
            return Ok(None);
        }
        let mut details = RawDetails::default();
        let mut members = s.begin_object()?;
        while let Some(key) = members.next_key(s)? {
            if *key == *b"cached_tokens" {
                members.once(s, 0, "cached_tokens")?;
                details.cached_tokens =
                    s.u64_or_null("a token count must be a non-negative integer")?;
            } else {
                s.skip_value()?;
            }
        }
        Ok(Some(details))
    }
}

impl RawUsage {
    /// The usage object (or `null`) at the scanner, read as `serde` reads an
    /// `Option<RawUsage>`: a count that is not a `u64`, or a field given
    /// twice, makes the whole object unreadable.
    pub(crate) fn scan(s: &mut Scanner<'_>) -> ScanResult<Option<RawUsage>> {
        if s.null()? {
            return Ok(None);
        }
        let mut raw = RawUsage::default();
        let mut members = s.begin_object()?;
        while let Some(key) = members.next_key(s)? {
            let (bit, name, count) = match &*key {
                b"prompt_tokens" => (0, "prompt_tokens", &mut raw.prompt_tokens),
                b"completion_tokens" => (1, "completion_tokens", &mut raw.completion_tokens),
                b"input_tokens" => (2, "input_tokens", &mut raw.input_tokens),
                b"output_tokens" => (3, "output_tokens", &mut raw.output_tokens),
                b"cache_read_input_tokens" => (
                    4,
                    "cache_read_input_tokens",
                    &mut raw.cache_read_input_tokens,
                ),
                b"cache_creation_input_tokens" => (
                    5,
                    "cache_creation_input_tokens",
                    &mut raw.cache_creation_input_tokens,
                ),
                b"prompt_tokens_details" => {
                    members.once(s, 6, "prompt_tokens_details")?;
                    raw.prompt_tokens_details = RawDetails::scan(s)?;
                    continue;
                }
                b"input_tokens_details" => {
                    members.once(s, 7, "input_tokens_details")?;
                    raw.input_tokens_details = RawDetails::scan(s)?;
                    continue;
                }
                _ => {
                    s.skip_value()?;
                    continue;
                }
            };
            members.once(s, bit, name)?;
            *count = s.u64_or_null("a token count must be a non-negative integer")?;
        }
        Ok(Some(raw))
    }

    /// Later values win field by field: Anthropic's `message_delta` carries
    /// the final output count after `message_start` gave the input.
    pub(crate) fn merge(&mut self, later: RawUsage) {
        fn take(slot: &mut Option<u64>, v: Option<u64>) {
            if v.is_some() {
                *slot = v;
            }
        }
        take(&mut self.prompt_tokens, later.prompt_tokens);
        take(&mut self.completion_tokens, later.completion_tokens);
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
        take(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        take(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        if later.prompt_tokens_details.is_some() {
            self.prompt_tokens_details = later.prompt_tokens_details;
        }
        if later.input_tokens_details.is_some() {
            self.input_tokens_details = later.input_tokens_details;
        }
    }

    pub(crate) fn normalize(&self, kind: ProviderKind) -> Usage {
        match kind {
            ProviderKind::OpenAi => Usage {
                prompt_tokens: self.prompt_tokens.or(self.input_tokens).unwrap_or(0),
                completion_tokens: self.completion_tokens.or(self.output_tokens).unwrap_or(0),
                cached_tokens: self
                    .prompt_tokens_details
                    .or(self.input_tokens_details)
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0),
            },
            // Anthropic's input_tokens excludes cache reads and cache writes;
            // cache writes are priced as input here.
            ProviderKind::Anthropic => {
                let cache_read = self.cache_read_input_tokens.unwrap_or(0);
                let input = self.input_tokens.unwrap_or(0)
                    + cache_read
                    + self.cache_creation_input_tokens.unwrap_or(0);
                Usage {
                    prompt_tokens: input,
                    completion_tokens: self.output_tokens.unwrap_or(0),
                    cached_tokens: cache_read,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_scan(text: &str) -> Option<RawUsage> {
        let mut de = serde_json::Deserializer::from_str(text);
        Option::<RawUsage>::deserialize(&mut de).ok().flatten()
    }

    #[test]
    fn scan_reads_usage_as_serde_does() {
        let keys = [
            "prompt_tokens",
            "completion_tokens",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "total_tokens",
            "cached_tokens",
        ];
        let values = [
            "12",
            "0",
            "null",
            "-1",
            "1.5",
            "1e2",
            "\"7\"",
            "18446744073709551615",
            "18446744073709551616",
            "{}",
            "[3]",
            "true",
        ];
        let details = [
            "null",
            "{}",
            r#"{"cached_tokens":40}"#,
            r#"{"cached_tokens":null,"audio_tokens":2}"#,
            r#"{"cached_tokens":-4}"#,
            r#"{"cached_tokens":1,"cached_tokens":2}"#,
            "[]",
            "5",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut read = 0;
        for _ in 0..20_000 {
            let mut text = String::from("{");
            for i in 0..next(5) {
                if i > 0 {
                    text.push(',');
                }
                if next(4) == 0 {
                    let key = ["prompt_tokens_details", "input_tokens_details"][next(2)];
                    text.push_str(&format!("\"{key}\":{}", details[next(details.len())]));
                } else {
                    let key = keys[next(keys.len())];
                    text.push_str(&format!("\"{key}\":{}", values[next(values.len())]));
                }
            }
            text.push('}');
            if next(10) == 0 {
                text = String::from(["null", "[]", "7", "{\"prompt_tokens\":1"][next(4)]);
            }
            let ours = RawUsage::scan(&mut Scanner::new(text.as_bytes()))
                .ok()
                .flatten();
            assert_eq!(ours, serde_scan(&text), "{text}");
            read += usize::from(ours.is_some());
        }
        assert!(read > 2_000, "only {read} readable objects generated");
    }
}
