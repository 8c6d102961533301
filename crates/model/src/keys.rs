//! API key strings: their shape (`fpk_` and at least 32 base62 characters),
//! how new ones are made, and the SHA-256 under which they are stored and
//! looked up. The key string itself is never stored.

/// SHA-256 of the full API key string: how keys are stored and looked up.
pub type KeyHash = [u8; 32];

/// The prefix of every gateway API key.
pub const KEY_PREFIX: &str = "fpk_";
/// Fewest base62 characters after the prefix (SPEC section 2).
pub const MIN_KEY_CHARS: usize = 32;
/// Base62 characters after the prefix of a key made by `generate_key`
/// (about 238 bits).
pub const GENERATED_KEY_CHARS: usize = 40;

/// SHA-256 of a key string, as stored by every control source.
// Out of line: load-tests/instructions.sh reports its cost (one call).
#[inline(never)]
pub fn hash_key(key: &[u8]) -> KeyHash {
    use sha2::Digest;
    sha2::Sha256::digest(key).into()
}

/// SPEC: `fpk_<random base62, >= 32 chars>`.
pub fn is_valid_key_string(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() >= MIN_KEY_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// A new key string: `fpk_` and 40 base62 characters from the OS's random
/// source.
pub fn generate_key() -> Result<String, getrandom::Error> {
    random_secret(KEY_PREFIX, GENERATED_KEY_CHARS)
}

/// `prefix` and `chars` base62 characters from the OS's random source: how
/// every secret string is made (API keys, access tokens, sessions,
/// invitations).
pub fn random_secret(prefix: &str, chars: usize) -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let len = prefix.len() + chars;
    let mut secret = String::with_capacity(len);
    secret.push_str(prefix);
    let mut buf = [0u8; 64];
    while secret.len() < len {
        getrandom::fill(&mut buf)?;
        // 248 = 4 * 62: rejecting higher bytes keeps every character equally likely.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if secret.len() == len {
                break;
            }
            secret.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert!(is_valid_key_string(&a), "{a}");
        assert_eq!(a.len(), 44);
        assert_ne!(a, b);
    }

    #[test]
    fn key_strings_follow_the_spec() {
        assert!(is_valid_key_string(&format!("fpk_{}", "a1".repeat(16))));
        assert!(
            !is_valid_key_string(&format!("fpk_{}", "a".repeat(31))),
            "too short"
        );
        assert!(
            !is_valid_key_string(&format!("fpx_{}", "a".repeat(32))),
            "prefix"
        );
        assert!(
            !is_valid_key_string(&format!("fpk_{}-", "a".repeat(32))),
            "base62 only"
        );
    }

    #[test]
    fn hash_is_the_sha256_of_the_whole_string() {
        // sha256("abc")
        assert_eq!(
            hash_key(b"abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "the key is hashed as given, prefix included"
        );
    }
}
