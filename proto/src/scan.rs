//! A walker over JSON text that serde_json has already validated, for pulling a few routing facts
//! out of a payload without a second full parse.
//!
//! Validating a dispatch once (into a `RawValue`) and then deserializing its routing fields cost
//! two serde passes per event; this walker only looks for quotes and brackets, so the second pass
//! is a cheap byte scan. It trusts its input to be valid JSON: on anything else it never panics,
//! it just finds less (`None`).

use std::borrow::Cow;

/// A cursor over JSON text.
pub(crate) struct Scan<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(text: &'a str) -> Scan<'a> {
        Scan { text, pos: 0 }
    }

    /// Calls `member(key, scan)` for each member of the object at the cursor, in order;
    /// `member` must consume the value (with [`Scan::string`], [`Scan::skip`] or a nested
    /// [`Scan::members`]). `None` if the cursor is not at an object or the text breaks off.
    pub(crate) fn members(
        &mut self,
        mut member: impl FnMut(&str, &mut Scan<'a>) -> Option<()>,
    ) -> Option<()> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(&key, self)?;
            if self.eat(b'}') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// The string value at the cursor, unescaped; `None` (with the value skipped) for any other
    /// JSON value.
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        self.whitespace();
        if self.peek()? != b'"' {
            self.skip()?;
            return None;
        }
        let start = self.pos;
        let escaped = self.skip_string()?;
        let quoted = self.text.get(start..self.pos)?;
        if escaped {
            serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
        } else {
            quoted.get(1..quoted.len() - 1).map(Cow::Borrowed)
        }
    }

    /// Whether an object starts at the cursor.
    pub(crate) fn at_object(&mut self) -> bool {
        self.whitespace();
        self.peek() == Some(b'{')
    }

    /// Steps over the value at the cursor, whatever it is.
    pub(crate) fn skip(&mut self) -> Option<()> {
        self.whitespace();
        match self.peek()? {
            b'"' => self.skip_string().map(drop),
            b'{' | b'[' => self.skip_container(),
            _ => {
                // A number or literal runs to the next delimiter.
                let rest = self.text.as_bytes().get(self.pos..)?;
                let len = rest
                    .iter()
                    .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(rest.len());
                self.pos += len;
                Some(())
            }
        }
    }

    /// Over the string at the cursor; true if it holds an escape.
    fn skip_string(&mut self) -> Option<bool> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            let rest = self.text.as_bytes().get(self.pos..)?;
            let at = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
            self.pos += at + 1;
            if rest[at] == b'"' {
                return Some(escaped);
            }
            // A backslash: the next byte is escaped (`\"` must not end the string).
            escaped = true;
            self.pos += 1;
        }
    }

    /// Over the object or array at the cursor, nested ones included.
    fn skip_container(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            let rest = self.text.as_bytes().get(self.pos..)?;
            let at = rest
                .iter()
                .position(|b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))?;
            self.pos += at;
            match rest[at] {
                b'"' => {
                    self.skip_string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                _ => {
                    depth = depth.checked_sub(1)?;
                    self.pos += 1;
                    if depth == 0 {
                        return Some(());
                    }
                }
            }
        }
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Steps over `byte` (after whitespace) if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.whitespace();
        let next = self.peek() == Some(byte);
        if next {
            self.pos += 1;
        }
        next
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member's key and, for strings, its value.
    fn members(text: &str) -> Option<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        Scan::new(text)
            .members(|key, scan| {
                out.push((key.to_owned(), scan.string().map(Cow::into_owned)));
                Some(())
            })
            .map(|()| out)
    }

    fn pairs(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn walks_members_of_any_shape() {
        let text = r#" { "a" : "x" , "b":{"c":"}\"{","d":[1,{"e":"]"}]}, "f":[[],{}],"g":-1.5e3,
            "h":true,"i":null,"j\u0041":"tab\there \ud83d\ude00","k":"" } "#;
        assert_eq!(
            members(text),
            Some(pairs(&[
                ("a", Some("x")),
                ("b", None),
                ("f", None),
                ("g", None),
                ("h", None),
                ("i", None),
                ("jA", Some("tab\there 😀")),
                ("k", Some("")),
            ]))
        );
        assert_eq!(members("{}"), Some(Vec::new()));
        assert_eq!(members("[1]"), None);
        assert_eq!(members("null"), None);
    }

    /// Agrees with serde_json on the top-level string members of valid documents.
    #[test]
    fn agrees_with_serde_json() {
        let documents = [
            r#"{"a":"1","b":2,"c":{"a":"3"},"d":["4"],"e":"\\","f":"\\\"","g":"é"}"#,
            r#"{"x":[{"y":[{"z":"\"]}"}]}],"w":"ok"}"#,
        ];
        for text in documents {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let expected: Vec<(String, Option<String>)> = value
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
                .collect();
            let mut found = members(text).unwrap();
            found.sort();
            assert_eq!(found, expected, "{text}");
        }
    }

    /// Broken text (every prefix of a document, stray closers) finds less but never panics.
    #[test]
    fn broken_text_never_panics() {
        let text = r#"{"a":"x\"y","b":{"c":[1,2,{"d":"e"}]},"f":"g\\"}"#;
        for end in 0..text.len() {
            if let Some(prefix) = text.get(..end) {
                assert_eq!(members(prefix), None, "{prefix}");
            }
        }
        for broken in [r#"{"a":]}"#, r#"{"a":"\"#, r#"{"a"}"#, "{", r#"{"a":1,}"#, "\"", "}"] {
            let _ = members(broken);
        }
    }
}
