//! Money: integer micro-USD everywhere; a float only where a person writes
//! an amount (YAML, a command-line flag, a JSON field), converted here, once,
//! with one bound.

/// The largest USD amount accepted anywhere (caps, budgets, prices per
/// million tokens): a trillion dollars. Its micro-USD value (1e18) fits a
/// Postgres `bigint` and leaves sums of many such amounts room in `u128`.
pub const MAX_USD: f64 = 1.0e12;

const MICROS_PER_USD: f64 = 1_000_000.0;

/// Why an amount is not money.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0} is not an amount in USD (a number from 0 to 1e12)")]
    OutOfRange(f64),
}

/// USD as a person wrote it -> micro-USD, rounded to the nearest micro-USD.
/// Negative, NaN, infinite and amounts above `MAX_USD` are errors.
pub fn usd_to_micro(usd: f64) -> Result<u64, MoneyError> {
    if !usd.is_finite() || !(0.0..=MAX_USD).contains(&usd) {
        return Err(MoneyError::OutOfRange(usd));
    }
    // In range, so the product is at most 1e18 < u64::MAX: the cast is exact
    // up to the float's own precision.
    Ok((usd * MICROS_PER_USD).round() as u64)
}

/// Formats micro-USD as a decimal USD amount with six decimals, exactly
/// (no float rounding): 1_234_567 -> "1.234567".
pub fn format_usd(micro: u64) -> String {
    format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_convert_to_the_nearest_micro_usd() {
        assert_eq!(usd_to_micro(0.0), Ok(0));
        assert_eq!(usd_to_micro(2.5), Ok(2_500_000));
        assert_eq!(usd_to_micro(0.075), Ok(75_000));
        assert_eq!(usd_to_micro(0.0000004), Ok(0));
        assert_eq!(usd_to_micro(0.0000006), Ok(1));
        assert_eq!(usd_to_micro(MAX_USD), Ok(1_000_000_000_000_000_000));
    }

    #[test]
    fn non_amounts_are_errors() {
        for bad in [-0.01, f64::NAN, f64::INFINITY, MAX_USD * 1.0001] {
            assert!(usd_to_micro(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_largest_amount_fits_a_postgres_bigint() {
        let micro = usd_to_micro(MAX_USD).unwrap();
        assert!(i64::try_from(micro).is_ok());
    }

    #[test]
    fn format_is_exact() {
        assert_eq!(format_usd(1_234_567), "1.234567");
        assert_eq!(format_usd(5), "0.000005");
    }
}
