//! Token usage read from provider responses: whole JSON bodies (`json`) and
//! SSE streams parsed incrementally (`sse`). Owns the normalisation of the
//! providers' usage shapes into one `Usage`; pricing it is `pricing`'s job.

pub mod json;
pub mod sse;

use serde::Deserialize;

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
#[derive(Debug, Default, Clone, Copy, Deserialize)]
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

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct RawDetails {
    cached_tokens: Option<u64>,
}

impl RawUsage {
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
