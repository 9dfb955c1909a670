//! The message head, shared by requests and responses: collecting it from arbitrary chunks within
//! the size limit, handing complete candidates to httparse, and reading the framing and connection
//! headers the same way on both sides.

use super::{HttpError, Limits, Persistence};

/// Collects a head across `advance` calls.
///
/// httparse is not resumable, so the buffer is only parsed at points where the answer can change:
/// at the first line end (to refuse a peer that does not speak HTTP at all without waiting for the
/// limit) and at every line end that closes a blank line. Scanning is linear in the bytes fed.
#[derive(Debug, Default)]
pub(crate) struct HeadBuffer {
    buf: Vec<u8>,
    /// Everything before this offset has been scanned for line ends.
    scanned: usize,
    first_line_checked: bool,
}

/// What a parse function says about a candidate head: `None` if httparse wants more, or the head's
/// length and the owned, parsed head.
pub(crate) type ParseOutcome<T> = Result<Option<(usize, T)>, HttpError>;

impl HeadBuffer {
    /// True when no byte of a head is held (blank lines before a start line do not count).
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Takes bytes from `input` until the head is complete. Returns how many bytes were consumed
    /// and the parsed head; bytes after the head are left in `input` for the body. Blank lines
    /// before the start line are skipped (RFC 9112 §2.2).
    pub(crate) fn advance<T>(
        &mut self,
        input: &[u8],
        limits: &Limits,
        mut parse: impl FnMut(&[u8]) -> ParseOutcome<T>,
    ) -> Result<(usize, Option<T>), HttpError> {
        let limit = limits.max_head_bytes;
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            if rest.is_empty() {
                return Ok((consumed, None));
            }
            let pending_cr = self.buf == b"\r";
            if self.buf.is_empty() || pending_cr {
                let blank = leading_blank_lines(pending_cr, rest);
                if blank > 0 {
                    self.buf.clear();
                    self.scanned = 0;
                    consumed += blank;
                    continue;
                }
            }
            let take = limit.saturating_sub(self.buf.len()).min(rest.len());
            if take == 0 {
                return Err(HttpError::HeadTooLarge { limit });
            }
            self.buf
                .extend_from_slice(rest.get(..take).unwrap_or_default());
            while let Some(offset) = self
                .buf
                .get(self.scanned..)
                .and_then(|unscanned| unscanned.iter().position(|&b| b == b'\n'))
            {
                let line_end = self.scanned + offset + 1;
                self.scanned = line_end;
                let candidate = self.buf.get(..line_end).unwrap_or_default();
                if self.first_line_checked && !ends_with_blank_line(candidate) {
                    continue;
                }
                self.first_line_checked = true;
                if let Some((len, head)) = parse(candidate)? {
                    // The head ends inside the bytes just taken: everything before them had
                    // been scanned without finding its end.
                    let unused = self.buf.len().saturating_sub(len);
                    return Ok((consumed + take.saturating_sub(unused), Some(head)));
                }
            }
            consumed += take;
            if self.buf.len() >= limit {
                return Err(HttpError::HeadTooLarge { limit });
            }
        }
    }
}

/// Length of the run of blank lines (`\n` or `\r\n`) at the start of `rest`; `pending_cr` means a
/// lone `\r` was already received and is waiting for its `\n`.
fn leading_blank_lines(pending_cr: bool, rest: &[u8]) -> usize {
    let mut len = 0;
    if pending_cr {
        if rest.first() != Some(&b'\n') {
            return 0;
        }
        len = 1;
    }
    loop {
        match (rest.get(len), rest.get(len + 1)) {
            (Some(b'\n'), _) => len += 1,
            (Some(b'\r'), Some(b'\n')) => len += 2,
            _ => return len,
        }
    }
}

/// True when `bytes` (a head or trailer section collected so far) ends with an empty line.
pub(crate) fn ends_with_blank_line(bytes: &[u8]) -> bool {
    matches!(bytes, b"\n" | b"\r\n") || bytes.ends_with(b"\n\n") || bytes.ends_with(b"\n\r\n")
}

/// httparse's answer on a candidate head: its length once complete, `None` while partial.
pub(crate) fn head_len(
    parsed: httparse::Result<usize>,
    limits: &Limits,
) -> Result<Option<usize>, HttpError> {
    match parsed {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(error) => Err(head_error(error, limits)),
    }
}

/// Maps httparse's error, giving the header-count limit its own variant.
pub(crate) fn head_error(error: httparse::Error, limits: &Limits) -> HttpError {
    match error {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders {
            limit: limits.max_headers,
        },
        other => HttpError::MalformedHead(other),
    }
}

/// Header fields as owned pairs, in order. Values that are not UTF-8 (obs-text) are kept lossily:
/// the APIs this client talks to send ASCII.
pub(crate) fn owned_fields(fields: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|field| {
            (
                field.name.to_owned(),
                String::from_utf8_lossy(field.value).into_owned(),
            )
        })
        .collect()
}

/// The body a head declares through its framing headers, before status or method rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeclaredBody {
    /// Neither `Content-Length` nor `Transfer-Encoding`.
    Unspecified,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the framing and `Connection` headers of a head say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadSemantics {
    pub(crate) body: DeclaredBody,
    pub(crate) persistence: Persistence,
    /// `Connection: upgrade` together with an `Upgrade` field.
    pub(crate) upgrade: bool,
}

/// Reads the framing and connection headers of an HTTP/1.`minor_version` head.
///
/// Like h11, several `Content-Length` values must agree, `Content-Length` with
/// `Transfer-Encoding` is refused, and the only transfer coding accepted is a single `chunked`.
pub(crate) fn interpret(
    minor_version: u8,
    fields: &[(String, String)],
) -> Result<HeadSemantics, HttpError> {
    let mut content_length = None;
    let mut transfer_codings: Option<Vec<&str>> = None;
    let mut close = false;
    let mut keep_alive = false;
    let mut connection_upgrade = false;
    let mut upgrade_field = false;
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("content-length") {
            for item in value.split(',') {
                let length = parse_content_length(item)?;
                if content_length.is_some_and(|seen| seen != length) {
                    return Err(HttpError::ConflictingContentLength);
                }
                content_length = Some(length);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_codings
                .get_or_insert_with(Vec::new)
                .extend(list_items(value));
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_items(value) {
                close |= option.eq_ignore_ascii_case("close");
                keep_alive |= option.eq_ignore_ascii_case("keep-alive");
                connection_upgrade |= option.eq_ignore_ascii_case("upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_field |= list_items(value).next().is_some();
        }
    }
    let body = match (transfer_codings.as_deref(), content_length) {
        (Some(_), Some(_)) => return Err(HttpError::ContentLengthWithTransferEncoding),
        (Some([coding]), None) if coding.eq_ignore_ascii_case("chunked") => DeclaredBody::Chunked,
        (Some(_), None) => return Err(HttpError::UnsupportedTransferEncoding),
        (None, Some(length)) => DeclaredBody::Length(length),
        (None, None) => DeclaredBody::Unspecified,
    };
    // HTTP/1.0 closes unless asked not to, and an HTTP/1.0 message with Transfer-Encoding has
    // faulty framing: read it, then close (RFC 9112 §6.1).
    let persistence =
        if close || (minor_version == 0 && (!keep_alive || transfer_codings.is_some())) {
            Persistence::Close
        } else {
            Persistence::KeepAlive
        };
    Ok(HeadSemantics {
        body,
        persistence,
        upgrade: connection_upgrade && upgrade_field && minor_version >= 1,
    })
}

/// Non-empty, trimmed elements of a comma-separated field value.
pub(crate) fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(|item| item.trim_matches([' ', '\t']))
        .filter(|item| !item.is_empty())
}

fn parse_content_length(item: &str) -> Result<u64, HttpError> {
    let digits = item.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::InvalidContentLength);
    }
    digits.bytes().try_fold(0u64, |length, digit| {
        length
            .checked_mul(10)
            .and_then(|l| l.checked_add(u64::from(digit - b'0')))
            .ok_or(HttpError::SizeOverflow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn framing_and_connection_table() {
        use DeclaredBody::*;
        use Persistence::*;
        type Expected = Result<(DeclaredBody, Persistence, bool), HttpError>;
        type Fields = &'static [(&'static str, &'static str)];
        let cases: &[(u8, Fields, Expected)] = &[
            (1, &[], Ok((Unspecified, KeepAlive, false))),
            (0, &[], Ok((Unspecified, Close, false))),
            (
                0,
                &[("Connection", "Keep-Alive")],
                Ok((Unspecified, KeepAlive, false)),
            ),
            (
                1,
                &[("connection", "keep-alive, close")],
                Ok((Unspecified, Close, false)),
            ),
            (
                1,
                &[("Content-Length", "42")],
                Ok((Length(42), KeepAlive, false)),
            ),
            (
                1,
                &[("Content-Length", " 7 ")],
                Ok((Length(7), KeepAlive, false)),
            ),
            (
                1,
                &[("Content-Length", "7, 7"), ("content-length", "7")],
                Ok((Length(7), KeepAlive, false)),
            ),
            (
                1,
                &[("Content-Length", "7"), ("Content-Length", "8")],
                Err(HttpError::ConflictingContentLength),
            ),
            (
                1,
                &[("Content-Length", "7,8")],
                Err(HttpError::ConflictingContentLength),
            ),
            (
                1,
                &[("Content-Length", "")],
                Err(HttpError::InvalidContentLength),
            ),
            (
                1,
                &[("Content-Length", "+5")],
                Err(HttpError::InvalidContentLength),
            ),
            (
                1,
                &[("Content-Length", "-1")],
                Err(HttpError::InvalidContentLength),
            ),
            (
                1,
                &[("Content-Length", "0x10")],
                Err(HttpError::InvalidContentLength),
            ),
            (
                1,
                &[("Content-Length", "18446744073709551615")],
                Ok((Length(u64::MAX), KeepAlive, false)),
            ),
            (
                1,
                &[("Content-Length", "18446744073709551616")],
                Err(HttpError::SizeOverflow),
            ),
            (
                1,
                &[("Transfer-Encoding", "Chunked")],
                Ok((Chunked, KeepAlive, false)),
            ),
            (
                1,
                &[("Transfer-Encoding", ", chunked ,")],
                Ok((Chunked, KeepAlive, false)),
            ),
            (
                0,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Connection", "keep-alive"),
                ],
                Ok((Chunked, Close, false)),
            ),
            (
                1,
                &[("Transfer-Encoding", "gzip, chunked")],
                Err(HttpError::UnsupportedTransferEncoding),
            ),
            (
                1,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Err(HttpError::UnsupportedTransferEncoding),
            ),
            (
                1,
                &[("Transfer-Encoding", "")],
                Err(HttpError::UnsupportedTransferEncoding),
            ),
            (
                1,
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "3")],
                Err(HttpError::ContentLengthWithTransferEncoding),
            ),
            (
                1,
                &[("Connection", "Upgrade"), ("Upgrade", "websocket")],
                Ok((Unspecified, KeepAlive, true)),
            ),
            (
                1,
                &[("Upgrade", "websocket")],
                Ok((Unspecified, KeepAlive, false)),
            ),
            (
                1,
                &[("Connection", "upgrade")],
                Ok((Unspecified, KeepAlive, false)),
            ),
            (
                0,
                &[
                    ("Connection", "upgrade, keep-alive"),
                    ("Upgrade", "websocket"),
                ],
                Ok((Unspecified, KeepAlive, false)),
            ),
        ];
        for (version, pairs, expected) in cases {
            let got =
                interpret(*version, &fields(pairs)).map(|s| (s.body, s.persistence, s.upgrade));
            assert_eq!(&got, expected, "HTTP/1.{version} {pairs:?}");
        }
    }

    #[test]
    fn blank_line_detection() {
        assert_eq!(leading_blank_lines(false, b"\r\n\n\r\nGET"), 5);
        assert_eq!(leading_blank_lines(false, b"\r\n\r"), 2);
        assert_eq!(leading_blank_lines(true, b"\n\r\nX"), 3);
        assert_eq!(leading_blank_lines(true, b"X"), 0);
        assert_eq!(leading_blank_lines(false, b"\rX"), 0);
        for yes in [
            &b"\r\n"[..],
            b"\n",
            b"A: b\r\n\r\n",
            b"A: b\n\n",
            b"A\n\r\n",
        ] {
            assert!(ends_with_blank_line(yes), "{yes:?}");
        }
        for no in [&b""[..], b"A: b\r\n", b"\r", b"A\r\n\r"] {
            assert!(!ends_with_blank_line(no), "{no:?}");
        }
    }
}
