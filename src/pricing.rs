//! Pure pricing: (model, usage) -> cost in integer micro-USD. Owns the price
//! table; knows nothing of providers or requests.

use rustc_hash::FxHashMap;

use crate::usage::Usage;

/// Prices of one model, in micro-USD per million tokens (so $2.50 per
/// million tokens is 2_500_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

/// Model name -> price. Built once per snapshot.
#[derive(Debug, Default)]
pub struct PriceTable {
    prices: FxHashMap<String, Price>,
}

impl PriceTable {
    pub fn new(prices: impl IntoIterator<Item = (String, Price)>) -> Self {
        PriceTable {
            prices: prices.into_iter().collect(),
        }
    }

    pub fn get(&self, model: &str) -> Option<&Price> {
        self.prices.get(model)
    }

    /// Cost of `usage` on `model`, or `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<u64> {
        self.get(model).map(|price| cost_micro_usd(price, usage))
    }
}

/// Cost in micro-USD, rounded up to the next whole micro-USD so that many
/// small requests never add up to less than they cost.
///
/// `usage.prompt_tokens` includes the cached tokens (OpenAI's convention);
/// those are priced at the cached rate, the rest at the input rate.
pub fn cost_micro_usd(price: &Price, usage: &Usage) -> u64 {
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let uncached = usage.prompt_tokens - cached;
    let part = |tokens: u64, price: u64| u128::from(tokens) * u128::from(price);
    let pico = part(uncached, price.input)
        .saturating_add(part(cached, price.cached_input))
        .saturating_add(part(usage.completion_tokens, price.output));
    let micro = pico.div_ceil(1_000_000);
    u64::try_from(micro).unwrap_or(u64::MAX)
}

/// A request's cost reserved at admission: every byte of the body counted
/// as a fraction of a prompt token (about four bytes a token, rounded up,
/// which over-counts JSON) and `output_tokens` at the output price.
pub fn estimate_cost(price: &Price, body_bytes: usize, output_tokens: u64) -> u64 {
    let usage = Usage {
        prompt_tokens: (body_bytes as u64).div_ceil(4),
        completion_tokens: output_tokens,
        cached_tokens: 0,
    };
    cost_micro_usd(price, &usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt4o() -> Price {
        Price {
            input: 2_500_000,
            output: 10_000_000,
            cached_input: 1_250_000,
        }
    }

    #[test]
    fn prices_input_output_and_cached_tokens() {
        let usage = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 500,
            cached_tokens: 400,
        };
        // 600 * 2.5 + 400 * 1.25 + 500 * 10 = 1500 + 500 + 5000 micro-USD
        assert_eq!(cost_micro_usd(&gpt4o(), &usage), 7_000);
    }

    #[test]
    fn rounds_fractions_of_a_micro_usd_up() {
        let price = Price {
            input: 150_000,
            output: 600_000,
            cached_input: 75_000,
        };
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 0,
            cached_tokens: 0,
        };
        assert_eq!(cost_micro_usd(&price, &usage), 1, "0.15 micro-USD is 1");
        let zero = Usage::default();
        assert_eq!(cost_micro_usd(&price, &zero), 0);
    }

    #[test]
    fn cached_tokens_above_prompt_tokens_are_clamped() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 0,
            cached_tokens: 50,
        };
        assert_eq!(
            cost_micro_usd(&gpt4o(), &usage),
            13,
            "10 * 1.25 = 12.5 -> 13"
        );
    }

    #[test]
    fn huge_usage_saturates_instead_of_wrapping() {
        let usage = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            cached_tokens: 0,
        };
        let price = Price {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: 0,
        };
        assert_eq!(cost_micro_usd(&price, &usage), u64::MAX);
    }

    #[test]
    fn estimates_from_body_size_and_max_tokens() {
        // 4000 bytes -> 1000 tokens * 2.5 + 500 * 10 micro-USD
        assert_eq!(estimate_cost(&gpt4o(), 4_000, 500), 7_500);
        assert_eq!(
            estimate_cost(&gpt4o(), 1, 0),
            3,
            "one byte is a whole token"
        );
    }

    #[test]
    fn table_knows_unpriced_models() {
        let table = PriceTable::new([("gpt-4o".to_string(), gpt4o())]);
        let usage = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
            cached_tokens: 0,
        };
        assert_eq!(table.cost("gpt-4o", &usage), Some(2_500_000));
        assert_eq!(table.cost("unknown", &usage), None);
    }
}
