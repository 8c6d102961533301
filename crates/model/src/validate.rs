//! The rules of the data model's text fields (SPEC section 2), one function
//! each, so the YAML loader, the admin command and the management API refuse
//! the same values with the same words. The control database enforces the
//! same rules again in its constraints (`floopy-control-db`'s migrations).

use uuid::Uuid;

/// Longest project slug.
pub const MAX_SLUG_CHARS: usize = 63;
/// Project names: 1 to 100 characters.
pub const PROJECT_NAME_CHARS: (usize, usize) = (1, 100);
/// Org and key names: 1 to 200 characters.
pub const NAME_CHARS: (usize, usize) = (1, 200);
/// Project descriptions: at most 500 characters.
pub const DESCRIPTION_CHARS: (usize, usize) = (0, 500);
/// Project icons: a short identifier, 1 to 32 characters.
pub const ICON_CHARS: (usize, usize) = (1, 32);

/// SPEC: `^[a-z0-9]+(-[a-z0-9]+)*$`, 1..=63 characters.
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_SLUG_CHARS
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && !slug.contains("--")
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What `is_valid_slug` refuses, in words.
pub fn slug_error(slug: &str) -> String {
    format!(
        "{slug:?} is not a slug (lowercase letters, digits and single hyphens, 1 to {MAX_SLUG_CHARS} characters)"
    )
}

/// SPEC: `#rrggbb`.
pub fn is_valid_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `Err` with the message when `value` is not `min..=max` characters long
/// (characters, not bytes), or holds a control character other than a tab
/// or a line break (a NUL cannot even be stored).
pub fn check_length(value: &str, (min, max): (usize, usize)) -> Result<(), String> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(format!("must be {min} to {max} characters long (is {n})"));
    }
    check_text(value)
}

/// `Err` when `value` holds a control character other than a tab or a line
/// break.
pub fn check_text(value: &str) -> Result<(), String> {
    match value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => Err(format!("must not contain control characters (found {c:?})")),
        None => Ok(()),
    }
}

/// A UUID written in its hyphenated form (any case): how ids appear in
/// configuration, headers and URLs.
pub fn parse_hyphenated_uuid(value: &str) -> Option<Uuid> {
    match Uuid::try_parse(value) {
        Ok(id) if value.len() == 36 => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_spec_pattern() {
        for good in ["a", "checkout", "a-b-c", "0-9", &"a".repeat(63)] {
            assert!(is_valid_slug(good), "{good:?} should be valid");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a b", &"a".repeat(64)] {
            assert!(!is_valid_slug(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn colors_are_hash_and_six_hex_digits() {
        assert!(is_valid_color("#0aF9c3"));
        for bad in ["0af9c3", "#0af9c", "#0af9c3f", "#0ag9c3", "#ééé"] {
            assert!(!is_valid_color(bad), "{bad:?}");
        }
    }

    #[test]
    fn lengths_count_characters() {
        assert!(
            check_length("é", (1, 1)).is_ok(),
            "one character, two bytes"
        );
        assert_eq!(
            check_length("", PROJECT_NAME_CHARS).unwrap_err(),
            "must be 1 to 100 characters long (is 0)"
        );
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(check_length("a\0b", (1, 10)).is_err(), "NUL");
        assert!(check_length("a\u{1b}b", (1, 10)).is_err(), "escape");
        assert!(check_length("line\nline\ttab", (1, 20)).is_ok());
    }

    #[test]
    fn ids_must_be_hyphenated() {
        let id = "0190a000-0000-7000-8000-0000000000C1";
        assert!(parse_hyphenated_uuid(id).is_some(), "any case");
        assert!(parse_hyphenated_uuid(&id.replace('-', "")).is_none());
        assert!(parse_hyphenated_uuid("x").is_none());
    }
}
