//! Checking caller-supplied fields before they are written, so no value can start a new line or
//! smuggle a second message (CR, LF, NUL), and writing them in one format for both sides.

use super::HttpError;

/// RFC 9110 `token`: methods and field names.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 `field-value` (also the reason phrase): visible characters, space, tab and obs-text;
/// no other control character.
pub(crate) fn is_field_value(text: &str) -> bool {
    text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Writes `name: value` and CRLF. The caller has checked both.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Checks and writes the caller's fields; `reserved` names are refused because the codec writes
/// them itself and two copies would make the framing ambiguous.
pub(crate) fn write_fields<'a>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    reserved: &[&str],
) -> Result<(), HttpError> {
    for (index, (name, value)) in fields.into_iter().enumerate() {
        if !is_token(name) {
            return Err(HttpError::InvalidHeaderName { index });
        }
        if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(HttpError::ReservedHeader {
                name: name.to_owned(),
            });
        }
        if !is_field_value(value) {
            return Err(HttpError::InvalidHeaderValue {
                name: name.to_owned(),
            });
        }
        write_field(out, name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        for ok in ["GET", "X-Custom_1", "a!#$%&'*+-.^_`|~z"] {
            assert!(is_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a:b", "a\r", "é", "a\"", "(x)", "a\0"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn field_values() {
        for ok in ["", "Bot abc", "a\tb", "caf\u{e9}", "\"q\""] {
            assert!(is_field_value(ok), "{ok:?}");
        }
        for bad in ["a\r\nX: y", "a\nb", "a\rb", "a\0b", "a\x7fb", "\x1b[0m"] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn write_fields_refuses_before_writing_the_bad_field() {
        let mut out = Vec::new();
        let fields = [("Accept", "*/*"), ("content-length", "5")];
        assert_eq!(
            write_fields(&mut out, fields, &["Content-Length"]),
            Err(HttpError::ReservedHeader {
                name: "content-length".into()
            })
        );
        assert_eq!(out, b"Accept: */*\r\n");
        assert_eq!(
            write_fields(&mut Vec::new(), [("Ok", "1"), ("B@d", "1")], &[]),
            Err(HttpError::InvalidHeaderName { index: 1 })
        );
    }
}
