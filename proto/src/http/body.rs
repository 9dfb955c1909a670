//! Message bodies, decoded incrementally from arbitrary chunks: Content-Length, chunked transfer
//! coding (extensions skipped, trailers kept) and close-delimited. Shared by both readers.
//!
//! The chunk framing itself (size line CRLF, CRLF after the data) must be CRLF, as in h11: a
//! lenient reading of chunk boundaries is how request smuggling starts. The trailer section is
//! header fields and is parsed like a head.

use super::head::{ends_with_blank_line, head_error, owned_fields};
use super::{HttpError, Limits};

/// How the body of one message is delimited, once status and method rules are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (0 for none).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// Decodes one body, bounded by the limits.
#[derive(Debug)]
pub(crate) struct BodyReader {
    state: State,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
    limits: Limits,
}

#[derive(Debug)]
enum State {
    Length { remaining: u64 },
    UntilClose,
    Chunked(Chunk),
    Complete,
}

#[derive(Debug)]
enum Chunk {
    /// Collecting a chunk-size line; holds the bytes before its LF.
    SizeLine(Vec<u8>),
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// Collecting the trailer section after the last chunk.
    Trailers(Vec<u8>),
}

impl BodyReader {
    /// Starts a body; a declared length over the limit is refused before any byte is read.
    pub(crate) fn new(framing: Framing, limits: Limits) -> Result<BodyReader, HttpError> {
        let state = match framing {
            Framing::Length(0) => State::Complete,
            Framing::Length(length) => {
                check_body_size(length, &limits)?;
                State::Length { remaining: length }
            }
            Framing::Chunked => State::Chunked(Chunk::SizeLine(Vec::new())),
            Framing::UntilClose => State::UntilClose,
        };
        Ok(BodyReader {
            state,
            body: Vec::new(),
            trailers: Vec::new(),
            limits,
        })
    }

    /// Lowers the limit: a declared length or a body so far over it is refused.
    pub(crate) fn limit(&mut self, max_body_bytes: usize) -> Result<(), HttpError> {
        self.limits.max_body_bytes = max_body_bytes;
        let promised = match self.state {
            State::Length { remaining } => remaining,
            _ => 0,
        };
        check_body_size(
            (self.body.len() as u64).saturating_add(promised),
            &self.limits,
        )
    }

    /// True once the whole body (and any trailers) has been read.
    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// Bytes held: the body so far and any partial chunk line or trailer section.
    pub(crate) fn buffered(&self) -> usize {
        let partial = match &self.state {
            State::Chunked(Chunk::SizeLine(line)) => line.len(),
            State::Chunked(Chunk::Trailers(section)) => section.len(),
            _ => 0,
        };
        self.body.len() + partial
    }

    /// Consumes body bytes from `input`; returns how many. Stops at the end of the body, so the
    /// rest of `input` belongs to the next message.
    pub(crate) fn read(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        let mut used = 0;
        while !self.is_complete() {
            let rest = input.get(used..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            used += self.step(rest)?;
        }
        Ok(used)
    }

    /// The connection closed: that ends a close-delimited body and truncates any other.
    pub(crate) fn eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::UntilClose | State::Complete => {
                self.state = State::Complete;
                Ok(())
            }
            State::Length { .. } | State::Chunked(_) => Err(HttpError::ClosedInBody),
        }
    }

    /// The decoded body and the trailer fields.
    pub(crate) fn into_parts(self) -> (Vec<u8>, Vec<(String, String)>) {
        (self.body, self.trailers)
    }

    /// Makes progress on a non-empty `rest`; returns the bytes used (at least one unless complete).
    fn step(&mut self, rest: &[u8]) -> Result<usize, HttpError> {
        let limits = self.limits;
        match &mut self.state {
            State::Complete => Ok(0),
            State::Length { remaining } => {
                let used = take_data(rest, remaining, &mut self.body);
                if *remaining == 0 {
                    self.state = State::Complete;
                }
                Ok(used)
            }
            State::UntilClose => {
                let total = self
                    .body
                    .len()
                    .checked_add(rest.len())
                    .ok_or(HttpError::SizeOverflow)?;
                check_body_size(total as u64, &limits)?;
                self.body.extend_from_slice(rest);
                Ok(rest.len())
            }
            State::Chunked(chunk) => {
                let Some((&byte, _)) = rest.split_first() else {
                    return Ok(0);
                };
                match chunk {
                    Chunk::SizeLine(line) if byte == b'\n' => {
                        let size = parse_chunk_size_line(line)?;
                        *chunk = if size == 0 {
                            Chunk::Trailers(Vec::new())
                        } else {
                            let total = (self.body.len() as u64)
                                .checked_add(size)
                                .ok_or(HttpError::SizeOverflow)?;
                            check_body_size(total, &limits)?;
                            Chunk::Data { remaining: size }
                        };
                        Ok(1)
                    }
                    Chunk::SizeLine(line) => {
                        // Room must stay for this byte and the LF.
                        if line.len() + 2 > limits.max_chunk_line_bytes {
                            return Err(HttpError::ChunkLineTooLong {
                                limit: limits.max_chunk_line_bytes,
                            });
                        }
                        line.push(byte);
                        Ok(1)
                    }
                    Chunk::Data { remaining } => {
                        let used = take_data(rest, remaining, &mut self.body);
                        if *remaining == 0 {
                            *chunk = Chunk::DataCr;
                        }
                        Ok(used)
                    }
                    Chunk::DataCr if byte == b'\r' => {
                        *chunk = Chunk::DataLf;
                        Ok(1)
                    }
                    Chunk::DataLf if byte == b'\n' => {
                        *chunk = Chunk::SizeLine(Vec::new());
                        Ok(1)
                    }
                    Chunk::DataCr | Chunk::DataLf => Err(HttpError::MalformedChunk),
                    Chunk::Trailers(section) => {
                        section.push(byte);
                        if ends_with_blank_line(section) {
                            self.trailers = parse_trailers(section, &limits)?;
                            self.state = State::Complete;
                        } else if section.len() >= limits.max_head_bytes {
                            return Err(HttpError::TrailersTooLarge {
                                limit: limits.max_head_bytes,
                            });
                        }
                        Ok(1)
                    }
                }
            }
        }
    }
}

/// Moves up to `remaining` bytes of `rest` into `body`.
fn take_data(rest: &[u8], remaining: &mut u64, body: &mut Vec<u8>) -> usize {
    let used = usize::try_from(*remaining).map_or(rest.len(), |r| r.min(rest.len()));
    body.extend_from_slice(rest.get(..used).unwrap_or_default());
    *remaining = remaining.saturating_sub(used as u64);
    used
}

fn check_body_size(size: u64, limits: &Limits) -> Result<(), HttpError> {
    if size > limits.max_body_bytes as u64 {
        return Err(HttpError::BodyTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    Ok(())
}

/// Parses `chunk-size [ BWS ; chunk-ext ] CR` (the line without its LF). Extensions are checked
/// for control characters and otherwise ignored: no API this client calls defines any.
fn parse_chunk_size_line(line: &[u8]) -> Result<u64, HttpError> {
    let line = line.strip_suffix(b"\r").ok_or(HttpError::MalformedChunk)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, extensions) = line.split_at_checked(digits).unwrap_or_default();
    if hex.is_empty() {
        return Err(HttpError::InvalidChunkSize);
    }
    let size = hex.iter().try_fold(0u64, |size, &digit| {
        let value = char::from(digit).to_digit(16).map(u64::from).unwrap_or(0);
        size.checked_mul(16)
            .and_then(|s| s.checked_add(value))
            .ok_or(HttpError::SizeOverflow)
    })?;
    let whitespace = extensions
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match extensions
        .get(whitespace..)
        .unwrap_or_default()
        .split_first()
    {
        None => Ok(size),
        Some((b';', ext)) if ext.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)) => {
            Ok(size)
        }
        Some(_) => Err(HttpError::InvalidChunkSize),
    }
}

fn parse_trailers(section: &[u8], limits: &Limits) -> Result<Vec<(String, String)>, HttpError> {
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((_, fields))) => Ok(owned_fields(fields)),
        Ok(httparse::Status::Partial) => Err(HttpError::MalformedTrailers),
        Err(httparse::Error::TooManyHeaders) => {
            Err(head_error(httparse::Error::TooManyHeaders, limits))
        }
        Err(_) => Err(HttpError::MalformedTrailers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        let cases: &[(&[u8], Result<u64, HttpError>)] = &[
            (b"0\r", Ok(0)),
            (b"1a\r", Ok(26)),
            (b"FF\r", Ok(255)),
            (b"000010\r", Ok(16)),
            (b"5;name=value\r", Ok(5)),
            (b"5 ;name=\"quoted; value\"\r", Ok(5)),
            (b"5\t; a ; b=c\r", Ok(5)),
            (b"5  \r", Ok(5)),
            (b"ffffffffffffffff\r", Ok(u64::MAX)),
            (b"10000000000000000\r", Err(HttpError::SizeOverflow)),
            (b"00000000000000000000000001\r", Ok(1)),
            (b"5", Err(HttpError::MalformedChunk)),
            (b"\r", Err(HttpError::InvalidChunkSize)),
            (b" 5\r", Err(HttpError::InvalidChunkSize)),
            (b"-5\r", Err(HttpError::InvalidChunkSize)),
            (b"0x5\r", Err(HttpError::InvalidChunkSize)),
            (b"5 5\r", Err(HttpError::InvalidChunkSize)),
            (b"5;a\x00b\r", Err(HttpError::InvalidChunkSize)),
            (b"5;a\rb\r", Err(HttpError::InvalidChunkSize)),
            (b"5\r\r", Err(HttpError::InvalidChunkSize)),
        ];
        for (line, expected) in cases {
            assert_eq!(
                &parse_chunk_size_line(line),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let mut body = BodyReader::new(Framing::Length(3), Limits::default()).unwrap();
        assert_eq!(body.read(b"ab").unwrap(), 2);
        assert_eq!(body.read(b"cdef").unwrap(), 1);
        assert!(body.is_complete());
        assert_eq!(body.into_parts().0, b"abc");

        let mut body = BodyReader::new(Framing::Chunked, Limits::default()).unwrap();
        assert_eq!(body.read(b"2\r\nhi\r\n0\r\nX: y\r\n\r\nNEXT").unwrap(), 18);
        assert_eq!(
            body.into_parts(),
            (b"hi".to_vec(), vec![("X".into(), "y".into())])
        );
    }

    #[test]
    fn eof_ends_only_close_delimited_bodies() {
        let mut body = BodyReader::new(Framing::UntilClose, Limits::default()).unwrap();
        body.read(b"partial").unwrap();
        assert_eq!(body.eof(), Ok(()));
        assert_eq!(body.into_parts().0, b"partial");
        let mut body = BodyReader::new(Framing::Length(9), Limits::default()).unwrap();
        body.read(b"partial").unwrap();
        assert_eq!(body.eof(), Err(HttpError::ClosedInBody));
    }
}
