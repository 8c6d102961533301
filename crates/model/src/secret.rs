//! `Secret`: every password, token and credential either plane holds (a
//! provider's credential, the ClickHouse password, a webhook's signing
//! secret). Its `Debug` and `Display` print `***`, so a configuration or a
//! value printed whole never shows one; the value is read only through
//! `expose`, at the one place it is sent.

use std::fmt;

/// A secret string. Deserializes from a plain string; never serializes.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printing_a_secret_never_shows_it() {
        let secret = Secret::new("sk-live-0123456789");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "sk-live-0123456789");
    }

    #[test]
    fn a_secret_reads_from_a_plain_string() {
        let secret: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(secret.expose(), "hunter2");
    }
}
