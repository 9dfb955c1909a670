//! A validating JSON scanner over a frame's text: it steps over values without building them
//! and hands out the few strings and integers the envelope reads, as spans of the text.
//!
//! It accepts exactly JSON's grammar, as serde_json reads it: a `RawValue` accepts everything
//! this accepts, and this accepts everything a `serde_json::Value` parses (the `discord_envelope`
//! fuzz target holds it to both). It exists because a dispatch frame is mostly short keys and
//! values, where serde's per-token overhead, not the scan of the bytes, was the cost.

use std::borrow::Cow;

/// Containers open at once before a value is refused as too deeply nested. serde_json refuses a
/// `Value` nested 128 deep, so every document it parses fits.
const MAX_DEPTH: usize = 256;

/// Why a text is not the JSON expected, and where.
///
/// Small enough to come back in a register: the scanner's hot paths return it on every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {fault}")]
pub(crate) struct ScanError {
    /// The byte offset in the text where reading stopped (saturated at `u32::MAX`).
    pub(crate) at: u32,
    pub(crate) fault: Fault,
}

/// What was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Fault {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("a repeated envelope key")]
    RepeatedKey,
    #[error("`t` holds an escape that names no character")]
    UndecodableType,
    #[error("expected a value")]
    ExpectedValue,
    #[error("expected a string")]
    ExpectedString,
    #[error("expected a string key")]
    ExpectedKey,
    #[error("expected `:`")]
    ExpectedColon,
    #[error("expected `,` or `}}`")]
    ExpectedCommaOrBrace,
    #[error("expected `,` or `]`")]
    ExpectedCommaOrBracket,
    #[error("expected an unsigned integer or null")]
    ExpectedUnsigned,
    #[error("control character in a string")]
    ControlCharacter,
    #[error("invalid escape")]
    InvalidEscape,
    #[error("invalid \\u escape")]
    InvalidUnicodeEscape,
    #[error("invalid literal")]
    InvalidLiteral,
    #[error("invalid number")]
    InvalidNumber,
    #[error("leading zero in a number")]
    LeadingZero,
    #[error("nested too deeply")]
    TooDeep,
    #[error("text after the value")]
    TrailingText,
    #[error("the text ends inside a string")]
    EndInString,
    #[error("the text ends inside a value")]
    EndInValue,
    #[error("the text ends where a value should be")]
    EndBeforeValue,
}

impl ScanError {
    pub(crate) fn new(at: usize, fault: Fault) -> ScanError {
        ScanError {
            at: u32::try_from(at).unwrap_or(u32::MAX),
            fault,
        }
    }
}

/// A string as written: the text between its quotes, escapes undecoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Str<'a> {
    /// The text with its quotes.
    quoted: &'a str,
    escaped: bool,
}

impl<'a> Str<'a> {
    /// The string's value, borrowed when it holds no escape; `None` for an escape that names no
    /// character (a lone surrogate, which JSON's grammar allows and a Rust string cannot hold).
    pub(crate) fn decode(self) -> Option<Cow<'a, str>> {
        if self.escaped {
            serde_json::from_str::<String>(self.quoted)
                .ok()
                .map(Cow::Owned)
        } else {
            let inner = self.quoted.get(1..self.quoted.len().saturating_sub(1));
            inner.map(Cow::Borrowed)
        }
    }

    /// True when the string's value is `name`. Cheap for a plain string, the common case: one
    /// length check, then the bytes; an escaped one is decoded first.
    #[inline]
    pub(crate) fn is(self, name: &str) -> bool {
        if self.escaped {
            self.decodes_to(name)
        } else {
            self.quoted.len() == name.len() + 2
                && self.quoted.as_bytes().get(1..=name.len()) == Some(name.as_bytes())
        }
    }

    #[cold]
    fn decodes_to(self, name: &str) -> bool {
        self.decode().is_some_and(|value| value == name)
    }
}

/// A position in a text, moving forward only.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Scanner<'a> {
        Scanner { text, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[cold]
    fn error(&self, fault: Fault) -> ScanError {
        ScanError::new(self.pos, fault)
    }

    pub(crate) fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.whitespace();
        self.bytes().get(self.pos).copied()
    }

    /// Steps over `byte` (after whitespace) if it is next.
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        if next {
            self.pos += 1;
        }
        next
    }

    pub(crate) fn expect(&mut self, byte: u8, fault: Fault) -> Result<(), ScanError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(fault))
        }
    }

    /// Nothing but whitespace may follow.
    pub(crate) fn end(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error(Fault::TrailingText)),
        }
    }

    /// Walks an object, calling `member` with each key; `member` must read or skip the value.
    pub(crate) fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, Str<'a>) -> Result<(), ScanError>,
    ) -> Result<(), ScanError> {
        self.expect(b'{', Fault::NotAnObject)?;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error(Fault::ExpectedCommaOrBrace)),
            }
        }
    }

    /// An object's key and the colon after it.
    #[inline(always)]
    fn key(&mut self) -> Result<Str<'a>, ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.error(Fault::ExpectedKey));
        }
        let key = self.string()?;
        self.expect(b':', Fault::ExpectedColon)?;
        Ok(key)
    }

    /// [`key`](Self::key), when only its validity matters.
    fn skip_key(&mut self) -> Result<(), ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.error(Fault::ExpectedKey));
        }
        self.skip_string()?;
        self.expect(b':', Fault::ExpectedColon)
    }

    /// The string at the cursor (after whitespace).
    // Inlined: returned through memory, the key's `Result` stalled the length check that
    // follows it (perf: a fifth of the envelope's samples on three instructions).
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<Str<'a>, ScanError> {
        let start = self.pos;
        let escaped = self.skip_string()?;
        let quoted = self.text.get(start..self.pos).unwrap_or_default();
        Ok(Str { quoted, escaped })
    }

    /// Steps over the string at the cursor; true when it holds an escape.
    // Inlined: most strings are a few bytes long, so a call's register saves and constant loads
    // cost as much as the scan (callgrind: 6% of an envelope's instructions).
    #[inline(always)]
    fn skip_string(&mut self) -> Result<bool, ScanError> {
        let bytes = self.bytes();
        if bytes.get(self.pos) != Some(&b'"') {
            return Err(self.error(Fault::ExpectedString));
        }
        let mut escaped = false;
        let mut at = self.pos + 1;
        loop {
            at = to_special(bytes, at);
            match bytes.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos = at;
                    self.escape()?;
                    at = self.pos;
                }
                Some(_) => {
                    self.pos = at;
                    return Err(self.error(Fault::ControlCharacter));
                }
                None => {
                    self.pos = at;
                    return Err(self.error(Fault::EndInString));
                }
            }
        }
    }

    /// One escape, at its backslash.
    fn escape(&mut self) -> Result<(), ScanError> {
        self.pos += 1;
        match self.bytes().get(self.pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
            Some(b'u') => {
                let hex = self.bytes().get(self.pos + 1..self.pos + 5);
                if !hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(self.error(Fault::InvalidUnicodeEscape));
                }
                self.pos += 5;
            }
            _ => return Err(self.error(Fault::InvalidEscape)),
        }
        Ok(())
    }

    /// A non-negative integer or `null` (anything else is an error).
    pub(crate) fn u64_or_null(&mut self) -> Result<Option<u64>, ScanError> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b'0'..=b'9') => {
                let start = self.pos;
                self.number()?;
                let digits = self.text.get(start..self.pos).unwrap_or_default();
                match digits.parse() {
                    Ok(n) => Ok(Some(n)),
                    Err(_) => Err(ScanError::new(start, Fault::ExpectedUnsigned)),
                }
            }
            _ => Err(self.error(Fault::ExpectedUnsigned)),
        }
    }

    /// Steps over one value, validating all of it.
    // A string, the most common value in a dispatch, is stepped over right here: a call into the
    // general walk costs more than most strings do.
    #[inline(always)]
    pub(crate) fn skip(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'"') {
            return self.skip_string().map(|_| ());
        }
        self.skip_any()
    }

    /// [`skip`](Self::skip) for any value: containers walked without recursion, to any depth up
    /// to [`MAX_DEPTH`].
    fn skip_any(&mut self) -> Result<(), ScanError> {
        // The open containers, innermost last: a set bit is an object.
        let mut open = [0u64; MAX_DEPTH / 64];
        let mut depth = 0;
        loop {
            // A value.
            let opened = match self.peek() {
                Some(b'"') => self.skip_string().map(|_| None)?,
                Some(b'{') => Some(true),
                Some(b'[') => Some(false),
                Some(b't') => self.literal(b"true").map(|()| None)?,
                Some(b'f') => self.literal(b"false").map(|()| None)?,
                Some(b'n') => self.literal(b"null").map(|()| None)?,
                Some(b'-' | b'0'..=b'9') => self.number().map(|()| None)?,
                Some(_) => return Err(self.error(Fault::ExpectedValue)),
                None => return Err(self.error(Fault::EndBeforeValue)),
            };
            if let Some(object) = opened {
                if depth == MAX_DEPTH {
                    return Err(self.error(Fault::TooDeep));
                }
                let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                if let Some(word) = open.get_mut(word) {
                    *word = if object { *word | bit } else { *word & !bit };
                }
                depth += 1;
                self.pos += 1;
                let close = if object { b'}' } else { b']' };
                if !self.eat(close) {
                    if object {
                        self.skip_key()?;
                    }
                    continue;
                }
                depth -= 1;
            }
            // After a value: close what ends here, then a comma leads to the next value.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let top = depth - 1;
                let object = open
                    .get(top / 64)
                    .is_some_and(|word| word & (1 << (top % 64)) != 0);
                match (self.peek(), object) {
                    (Some(b','), _) => {
                        self.pos += 1;
                        if object {
                            self.skip_key()?;
                        }
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    (None, _) => return Err(self.error(Fault::EndInValue)),
                    (Some(_), true) => return Err(self.error(Fault::ExpectedCommaOrBrace)),
                    (Some(_), false) => return Err(self.error(Fault::ExpectedCommaOrBracket)),
                }
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), ScanError> {
        if self.bytes().get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(Fault::InvalidLiteral))
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), ScanError> {
        self.eat_byte(b'-');
        match self.bytes().get(self.pos) {
            Some(b'0') => {
                self.pos += 1;
                if self.bytes().get(self.pos).is_some_and(u8::is_ascii_digit) {
                    return Err(self.error(Fault::LeadingZero));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error(Fault::InvalidNumber)),
        }
        if self.eat_byte(b'.') {
            self.some_digits()?;
        }
        if self.eat_byte(b'e') || self.eat_byte(b'E') {
            let _sign = self.eat_byte(b'+') || self.eat_byte(b'-');
            self.some_digits()?;
        }
        Ok(())
    }

    fn eat_byte(&mut self, byte: u8) -> bool {
        let next = self.bytes().get(self.pos) == Some(&byte);
        if next {
            self.pos += 1;
        }
        next
    }

    fn digits(&mut self) {
        while self.bytes().get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), ScanError> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(self.error(Fault::InvalidNumber));
        }
        Ok(())
    }
}

/// Where the plain run inside a string that starts at `from` ends: the first quote, backslash
/// or control character at or after it (or the end). Eight bytes at a time.
fn to_special(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set where it is zero (or below 0x20): exact for the lowest such
        // byte, which is all that is read.
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGH;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(text: &str) -> Result<usize, ScanError> {
        let mut scanner = Scanner::new(text);
        scanner.skip()?;
        scanner.end()?;
        Ok(scanner.pos())
    }

    #[test]
    fn skips_exactly_the_json_grammar() {
        for good in [
            "0",
            "-0",
            "12.5e-3",
            "1E+2",
            "true",
            " null ",
            r#""a\"\\\/\b\f\n\r\t\u00e9\ud800 é""#,
            "[]",
            "{}",
            r#"[1,[2,{"a":[{}]}],"x"]"#,
            r#"{"a" : { "b" : [ ] } , "c":null}"#,
            "\"0123456789abcdef0123456789\"",
        ] {
            assert_eq!(skip(good).map(|_| ()), Ok(()), "{good}");
        }
        for bad in [
            "",
            "01",
            "1.",
            "-",
            ".5",
            "1e",
            "+1",
            "tru",
            "nul",
            "\"abc",
            "\"a\u{1}b\"",
            r#""\x""#,
            r#""\u12g4""#,
            "[1,]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "{\"a\":1]",
            "[1}",
            "[[[",
            "1 2",
        ] {
            assert!(skip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nesting_has_a_limit_beyond_what_a_value_allows() {
        let deep = |n| "[".repeat(n) + &"]".repeat(n);
        assert!(skip(&deep(MAX_DEPTH)).is_ok());
        assert!(skip(&deep(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn strings_find_their_end_at_every_offset() {
        for len in 0..40 {
            let body = "é".repeat(len / 2) + &"x".repeat(len % 2);
            for end in ["\"", "\\n\"", "\\u0041\""] {
                let text = format!("\"{body}{end}, 1");
                let mut scanner = Scanner::new(&text);
                let string = scanner.string().unwrap();
                assert_eq!(scanner.pos(), text.len() - 3, "{text}");
                let expected = format!(
                    "{body}{}",
                    &serde_json::from_str::<String>(&format!("\"{end}")).unwrap()
                );
                assert_eq!(string.decode().as_deref(), Some(expected.as_str()));
            }
            let control = format!("\"{}\u{1f}\"", "x".repeat(len));
            assert_eq!(
                Scanner::new(&control).string().map(|_| ()),
                Err(ScanError::new(len + 1, Fault::ControlCharacter))
            );
        }
    }

    #[test]
    fn keys_decode_to_their_value() {
        let mut scanner =
            Scanner::new(r#""channel_id" "channel\u005fid" "\ud800" "a\"b" "channel""#);
        let mut next = || {
            scanner.whitespace();
            scanner.string().unwrap()
        };
        let plain = next();
        assert_eq!(plain.decode(), Some(Cow::Borrowed("channel_id")));
        assert!(plain.is("channel_id"));
        let escaped = next();
        assert_eq!(escaped.decode().as_deref(), Some("channel_id"));
        assert!(escaped.is("channel_id"));
        let lone = next();
        assert_eq!(lone.decode(), None);
        assert!(!lone.is("channel_id"));
        assert_eq!(next().decode().as_deref(), Some("a\"b"));
        let prefix = next();
        assert!(!prefix.is("channel_id") && !prefix.is("chan") && prefix.is("channel"));
    }

    #[test]
    fn unsigned_integers() {
        let read = |text: &str| Scanner::new(text).u64_or_null();
        assert_eq!(read("12"), Ok(Some(12)));
        assert_eq!(read(" null"), Ok(None));
        assert_eq!(read("18446744073709551615"), Ok(Some(u64::MAX)));
        for bad in [
            "18446744073709551616",
            "1.0",
            "1e2",
            "-1",
            "\"1\"",
            "01",
            "[]",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
