//! A validating JSON scanner for the few fields the gateway reads from
//! request and response bodies.
//!
//! The gateway reads a handful of members (`model`, `stream`, `usage`, ...)
//! and passes everything else through untouched, so it needs to check that
//! a body is JSON and find those members, not to build values. The scanner
//! walks the bytes once: short strings are checked eight bytes at a time and
//! long ones searched with `memchr`, nested values are skipped without
//! recursion, and only the members asked for are decoded.
//!
//! It accepts and rejects what `serde_json::from_slice` does for the same
//! shapes (the tests of `body` and `usage` compare the two on generated
//! inputs): the grammar of RFC 8259; decoded strings (keys and the values
//! read) valid UTF-8 with paired surrogates; skipped strings checked for
//! escapes and control characters only; a nesting limit of 127 where
//! `serde_json` builds values (`decoding`), none where it skips them. A
//! request body is also checked to be UTF-8 as a whole (`body`), as RFC 8259
//! requires of JSON exchanged between systems.

use std::borrow::Cow;

/// Deepest nesting accepted, as `serde_json`'s recursion limit.
const MAX_DEPTH: u32 = 127;

/// Why a body is not the JSON expected, with where: "expected `:` at line 1
/// column 12".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub String);

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type ScanResult<T> = Result<T, ScanError>;

pub struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Objects and arrays open around the current position.
    depth: u32,
    /// Skipped values are checked as built ones are (see `decoding`).
    decode_skipped: bool,
}

/// The members of one object, read with `next_key`.
pub struct Members {
    first: bool,
    /// The members read so far that may appear once (`once`), a bit each.
    seen: u32,
}

impl<'a> Scanner<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Scanner {
            bytes,
            pos: 0,
            depth: 0,
            decode_skipped: false,
        }
    }

    /// A scanner starting at `pos` (a value inside `bytes`).
    pub fn at(bytes: &'a [u8], pos: usize) -> Self {
        Scanner {
            bytes,
            pos,
            depth: 0,
            decode_skipped: false,
        }
    }

    /// Runs `read` with what it skips checked as a value `serde_json` builds
    /// (strings valid UTF-8 with paired surrogates, finite numbers, the
    /// nesting limit): for a member the gateway reads whatever its type.
    pub fn decoding<T>(&mut self, read: impl FnOnce(&mut Self) -> ScanResult<T>) -> ScanResult<T> {
        let outer = std::mem::replace(&mut self.decode_skipped, true);
        let result = read(self);
        self.decode_skipped = outer;
        result
    }

    /// An error at the current position.
    pub fn error(&self, what: &str) -> ScanError {
        let before = &self.bytes[..self.pos.min(self.bytes.len())];
        let line = 1 + memchr::memchr_iter(b'\n', before).count();
        let line_start = memchr::memrchr(b'\n', before).map_or(0, |i| i + 1);
        ScanError(format!(
            "{what} at line {line} column {}",
            before.len() - line_start + 1
        ))
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Where the scanner is: after `peek`, the start of the next value.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next byte that is not whitespace, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8, what: &str) -> ScanResult<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.eof_or(what))
        }
    }

    fn eof_or(&self, what: &str) -> ScanError {
        if self.pos >= self.bytes.len() {
            self.error("unexpected end of input")
        } else {
            self.error(what)
        }
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> ScanResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    fn enter(&mut self) -> ScanResult<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nesting deeper than 127 levels"));
        }
        self.depth += 1;
        Ok(())
    }

    /// Consumes the `{` of an object.
    pub fn begin_object(&mut self) -> ScanResult<Members> {
        self.expect(b'{', "expected a JSON object")?;
        self.enter()?;
        Ok(Members {
            first: true,
            seen: 0,
        })
    }

    /// Calls `member` with each key of the object at the scanner (`member`
    /// consumes the value); any other value is skipped.
    pub fn each_member(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8]) -> ScanResult<()>,
    ) -> ScanResult<()> {
        if self.peek() != Some(b'{') {
            return self.skip_value();
        }
        let mut members = self.begin_object()?;
        while let Some(key) = members.next_key(self)? {
            member(self, &key)?;
        }
        Ok(())
    }

    /// Consumes a `null`, if that is the next value.
    pub fn null(&mut self) -> ScanResult<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &[u8]) -> ScanResult<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.eof_or("expected value"))
        }
    }

    /// `true` or `false`, or `Err(what)` for any other value.
    pub fn boolean(&mut self, what: &str) -> ScanResult<bool> {
        match self.peek() {
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| false),
            _ => Err(self.eof_or(what)),
        }
    }

    /// A string, decoded, or `Err(what)` for any other value.
    pub fn string(&mut self, what: &str) -> ScanResult<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.eof_or(what));
        }
        self.pos += 1;
        let start = self.pos;
        let end = plain_run(self.bytes, start);
        if self.bytes.get(end) == Some(&b'"') {
            self.pos = end + 1;
            return std::str::from_utf8(&self.bytes[start..end])
                .map(Cow::Borrowed)
                .map_err(|_| self.error("invalid UTF-8 in a string"));
        }
        let mut out = self.bytes[start..end].to_vec();
        self.pos = end;
        loop {
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unexpected end of input in a string")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.unescape(&mut out)?;
                }
                Some(_) if self.bytes[self.pos] < 0x20 => {
                    return Err(self.error("control character in a string"))
                }
                Some(_) => {
                    let end = plain_run(self.bytes, self.pos);
                    out.extend_from_slice(&self.bytes[self.pos..end]);
                    self.pos = end;
                }
            }
        }
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| self.error("invalid UTF-8 in a string"))
    }

    /// A key: a string's bytes, checked as `string` checks them. Keys are
    /// compared with the few the gateway reads, so ASCII ones (all of those)
    /// skip UTF-8 validation.
    fn key(&mut self) -> ScanResult<Cow<'a, [u8]>> {
        if self.peek() != Some(b'"') {
            return Err(self.eof_or("expected a key"));
        }
        let start = self.pos + 1;
        let end = plain_run(self.bytes, start);
        if self.bytes.get(end) == Some(&b'"') {
            let key = &self.bytes[start..end];
            if !key.is_ascii() && std::str::from_utf8(key).is_err() {
                self.pos = start;
                return Err(self.error("invalid UTF-8 in a string"));
            }
            self.pos = end + 1;
            return Ok(Cow::Borrowed(key));
        }
        match self.string("expected a key")? {
            Cow::Borrowed(key) => Ok(Cow::Borrowed(key.as_bytes())),
            Cow::Owned(key) => Ok(Cow::Owned(key.into_bytes())),
        }
    }

    /// One escape after its `\`, appended to `out` as UTF-8.
    fn unescape(&mut self, out: &mut Vec<u8>) -> ScanResult<()> {
        let Some(&c) = self.bytes.get(self.pos) else {
            return Err(self.error("unexpected end of input in a string"));
        };
        self.pos += 1;
        let plain = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        if !self.bytes[self.pos..].starts_with(b"\\u") {
                            return Err(self.error("lone leading surrogate in a hex escape"));
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error("lone leading surrogate in a hex escape"));
                        }
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error("lone trailing surrogate in a hex escape"))
                    }
                    unit => u32::from(unit),
                };
                let ch = char::from_u32(code).ok_or_else(|| self.error("invalid hex escape"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        out.push(plain);
        Ok(())
    }

    fn hex4(&mut self) -> ScanResult<u16> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            self.pos = self.bytes.len();
            return Err(self.error("unexpected end of input in a string"));
        };
        let mut unit = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid hex escape")),
            };
            unit = unit << 4 | u16::from(v);
        }
        self.pos += 4;
        Ok(unit)
    }

    /// Skips a string (the `"` is next), checking escapes and control
    /// characters.
    fn skip_string(&mut self) -> ScanResult<()> {
        self.pos += 1;
        loop {
            self.pos = plain_run(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unexpected end of input in a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.bytes.get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            self.hex4()?;
                        }
                        None => return Err(self.error("unexpected end of input in a string")),
                        Some(_) => return Err(self.error("invalid escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// Skips a number; its value when it is a non-negative integer that fits
    /// a `u64` (what `serde_json::Value::as_u64` would give).
    fn number(&mut self) -> ScanResult<Option<u64>> {
        let negative = self.bytes.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.eof_or("invalid number")),
        }
        let int_end = self.pos;
        let mut integer = true;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            integer = false;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        let mut value = Some(0u64);
        if !negative && integer {
            for &d in &self.bytes[int_start..int_end] {
                value = value
                    .and_then(|v| v.checked_mul(10))
                    .and_then(|v| v.checked_add(u64::from(d - b'0')));
            }
        } else {
            value = None;
        }
        if value.is_none() && self.decode_skipped {
            // A decoded number that is not an integer is a finite float.
            let start = int_start - usize::from(negative);
            let finite = std::str::from_utf8(&self.bytes[start..self.pos])
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
                .is_some_and(f64::is_finite);
            if !finite {
                return Err(self.error("number out of range"));
            }
        }
        Ok(value)
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> ScanResult<()> {
        if !matches!(self.bytes.get(self.pos), Some(b'0'..=b'9')) {
            return Err(self.eof_or("invalid number"));
        }
        self.digits();
        Ok(())
    }

    /// A value: its `u64` when it is a non-negative integer that fits one,
    /// skipped otherwise.
    pub fn u64_or_skip(&mut self) -> ScanResult<Option<u64>> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.skip_value().map(|()| None),
        }
    }

    /// `null`, or a non-negative integer that fits a `u64`; `Err(what)` for
    /// anything else (as `Option<u64>` deserializes).
    pub fn u64_or_null(&mut self, what: &str) -> ScanResult<Option<u64>> {
        if self.null()? {
            return Ok(None);
        }
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(self.eof_or(what));
        }
        let start = self.pos;
        // The usual case: a few digits, no leading zero, no fraction.
        let mut end = start;
        let mut value = 0u64;
        while let Some(&d @ b'0'..=b'9') = self.bytes.get(end) {
            if end - start == 19 {
                break;
            }
            value = value * 10 + u64::from(d - b'0');
            end += 1;
        }
        let plain = end > start
            && (self.bytes[start] != b'0' || end == start + 1)
            && !matches!(self.bytes.get(end), Some(b'0'..=b'9' | b'.' | b'e' | b'E'));
        if plain {
            self.pos = end;
            return Ok(Some(value));
        }
        match self.number()? {
            Some(value) => Ok(Some(value)),
            None => {
                self.pos = start;
                Err(self.error(what))
            }
        }
    }

    /// A value: decoded when it is a string, skipped otherwise.
    pub fn string_or_skip(&mut self) -> ScanResult<Option<Cow<'a, str>>> {
        if self.peek() == Some(b'"') {
            return self.string("expected a string").map(Some);
        }
        self.skip_value().map(|()| None)
    }

    /// Skips one value of any kind, nested ones included, checking it.
    /// Nesting is unlimited, as in `serde_json`'s skipping, except where
    /// strings are decoded (`decoding`), which builds values.
    pub fn skip_value(&mut self) -> ScanResult<()> {
        // Whether each container open inside this value is an object: the
        // first 128 levels as bits, deeper ones on the heap.
        let mut open = Nesting::default();
        'value: loop {
            match self.peek() {
                Some(bracket @ (b'{' | b'[')) => {
                    let object = bracket == b'{';
                    self.pos += 1;
                    self.check_depth(open.level)?;
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.pos += 1;
                    } else {
                        open.push(object);
                        if object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') if self.decode_skipped => {
                    self.string("expected value")?;
                }
                Some(b'"') => self.skip_string()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                _ => return Err(self.eof_or("expected value")),
            }
            // A value ended: close what it ended, or go on to the next one.
            loop {
                let Some(object) = open.innermost() else {
                    return Ok(());
                };
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        open.pop();
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ if object => return Err(self.eof_or("expected `,` or `}`")),
                    _ => return Err(self.eof_or("expected `,` or `]`")),
                }
            }
        }
    }

    /// Whether one more container may open `level` levels inside the value.
    fn check_depth(&self, level: usize) -> ScanResult<()> {
        if self.decode_skipped && self.depth as usize + level >= MAX_DEPTH as usize {
            return Err(self.error("nesting deeper than 127 levels"));
        }
        Ok(())
    }

    /// A member's key and `:`, skipped.
    fn member_key(&mut self) -> ScanResult<()> {
        if self.peek() != Some(b'"') {
            return Err(self.eof_or("expected a key"));
        }
        if self.decode_skipped {
            self.key()?;
        } else {
            self.skip_string()?;
        }
        self.expect(b':', "expected `:`")
    }
}

impl Members {
    /// Refuses a member given twice in this object: `bit` (below 32) stands
    /// for `name`.
    pub fn once(&mut self, s: &Scanner<'_>, bit: u32, name: &str) -> ScanResult<()> {
        if self.seen & 1 << bit != 0 {
            return Err(s.error(&format!("duplicate field `{name}`")));
        }
        self.seen |= 1 << bit;
        Ok(())
    }

    /// The next member's key (its bytes, escapes decoded), its `:`
    /// consumed, or `None` after the `}`.
    pub fn next_key<'a>(&mut self, s: &mut Scanner<'a>) -> ScanResult<Option<Cow<'a, [u8]>>> {
        match s.peek() {
            Some(b'}') => {
                s.pos += 1;
                s.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !self.first => s.pos += 1,
            _ if !self.first => return Err(s.eof_or("expected `,` or `}`")),
            _ => {}
        }
        if !self.first && s.peek() == Some(b'}') {
            return Err(s.error("trailing comma"));
        }
        self.first = false;
        let key = s.key()?;
        s.expect(b':', "expected `:`")?;
        Ok(Some(key))
    }
}

/// The containers open inside a skipped value, innermost last: whether each
/// is an object.
#[derive(Default)]
struct Nesting {
    level: usize,
    /// Levels 0 to 127, a bit each.
    near: u128,
    /// Levels from 128 on.
    deep: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.level < 128 {
            let bit = 1u128 << self.level;
            self.near = if object {
                self.near | bit
            } else {
                self.near & !bit
            };
        } else {
            self.deep.push(object);
        }
        self.level += 1;
    }

    fn pop(&mut self) {
        self.level -= 1;
        if self.level >= 128 {
            self.deep.pop();
        }
    }

    /// Whether the innermost open container is an object; `None` at the top.
    fn innermost(&self) -> Option<bool> {
        match self.level {
            0 => None,
            level @ 1..=128 => Some(self.near >> (level - 1) & 1 == 1),
            _ => self.deep.last().copied(),
        }
    }
}

/// Index of the first `"`, `\` or control character at or after `from`, or
/// the length.
///
/// The first 16 bytes are checked eight at a time in a register: keys and
/// most values end there. A longer run (message content) is searched with
/// `memchr` (SIMD) for the quote or backslash, and checked for control
/// characters with a minimum over its bytes, which the compiler vectorises.
fn plain_run(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    for _ in 0..2 {
        let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) else {
            break;
        };
        let word = u64::from_le_bytes(*chunk);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set in each mask where it is below 0x20, a
        // quote, or a backslash; the lowest one found is exact.
        let found = (word.wrapping_sub(ONES * 0x20)
            | quote.wrapping_sub(ONES)
            | backslash.wrapping_sub(ONES))
            & !word
            & HIGH;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = bytes.get(at..).unwrap_or_default();
    let end = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
    let span = &rest[..end];
    if span.iter().fold(u8::MAX, |low, &b| low.min(b)) < 0x20 {
        return at + span.iter().position(|&b| b < 0x20).unwrap_or(end);
    }
    at + end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_run_finds_the_first_special_byte_anywhere() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    // Bytes that look close to the specials must not stop it.
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b = [b'a', 0x20, b'#', b']', 0xc3, 0x7f, 0xff][i % 7];
                    }
                    if at < len {
                        bytes[at] = special;
                        assert_eq!(plain_run(&bytes, 0), at, "len {len} at {at}");
                    } else {
                        assert_eq!(plain_run(&bytes, 0), len, "len {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_decode_escapes_and_surrogate_pairs() {
        let mut s = Scanner::new(br#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00""#);
        assert_eq!(s.string("string").unwrap(), "a\"b\\c/d\u{8}\u{c}\n\r\té😀");
        for bad in [
            &br#""\ud83d""#[..],
            br#""\ude00""#,
            br#""\ud83d\u0041""#,
            br#""\x""#,
            br#""\u12g4""#,
            b"\"a\x01\"",
            b"\"\xff\"",
            b"\"abc",
        ] {
            assert!(
                Scanner::new(bad).string("string").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn skip_value_checks_what_it_skips() {
        for good in [
            &br#"{"a":[1,-2.5e+3,{"b":null}],"c":"\u0041\n","d":{}}"#[..],
            b"[]",
            b"[[[]]]",
            b"0",
            b"-0.0E1",
            b"true",
            b"\"\xff\"",
        ] {
            let mut s = Scanner::new(good);
            assert_eq!(s.skip_value(), Ok(()), "{}", String::from_utf8_lossy(good));
            assert_eq!(s.end(), Ok(()));
        }
        for bad in [
            &b"{"[..],
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1 2]",
            b"01",
            b"1.",
            b"1e",
            b"-",
            b"tru",
            b"nul",
            b"[\"\\q\"]",
            b"]",
        ] {
            let mut s = Scanner::new(bad);
            let result = s.skip_value().and_then(|()| s.end());
            assert!(result.is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn nesting_is_limited_like_serde_json() {
        for depth in [1, 126, 127, 128, 129, 200, 100_000] {
            let mut body = String::new();
            for i in 0..depth {
                body.push_str(if i % 3 == 0 { "{\"k\":" } else { "[" });
            }
            body.push('1');
            for i in (0..depth).rev() {
                body.push(if i % 3 == 0 { '}' } else { ']' });
            }
            // Skipped: any depth, as serde_json skips.
            let mut s = Scanner::new(body.as_bytes());
            assert_eq!(
                s.skip_value().and_then(|()| s.end()),
                Ok(()),
                "depth {depth}"
            );
            // Decoded: serde_json's recursion limit.
            let decoded = Scanner::new(body.as_bytes())
                .decoding(|s| s.skip_value().and_then(|()| s.end()))
                .is_ok();
            let serde = serde_json::from_str::<serde_json::Value>(&body).is_ok();
            assert_eq!(decoded, serde, "depth {depth}");
        }
    }

    #[test]
    fn errors_say_where() {
        let mut s = Scanner::new(b"{\n  \"a\" 1}");
        let mut members = s.begin_object().unwrap();
        let err = members.next_key(&mut s).unwrap_err();
        assert_eq!(err.0, "expected `:` at line 2 column 7");
    }
}
