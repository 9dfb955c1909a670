//! Transport compression `zstd-stream`: the whole connection is one zstd stream, so one
//! decompression context lives exactly as long as one connection (a new connection starts a new
//! stream). Unlike zlib-stream, every binary WebSocket message is exactly one Gateway payload,
//! and it does **not** end a zstd frame: Discord's compressor flushes after each payload and keeps
//! the frame open, so the decoder is run until the message's bytes are consumed and whatever it
//! could flush is out, whatever the return value says about the frame.
//!
//! The output is bounded like [`ZlibStream`](super::ZlibStream)'s: it grows in steps and a
//! payload that decompresses past the cap is an error, so a zstd bomb costs at most the cap. The
//! decoder's window is bounded too ([`MAX_WINDOW_LOG`]): a frame header cannot make it allocate
//! more. An error leaves the stream unusable, so the connection is replaced (close 4000, resume).

use super::inflate::fitted;
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

/// Output is grown in steps of this size, so a small payload never allocates the whole cap.
const CHUNK: usize = 32 * 1024;

/// Largest window a frame may ask for, as a power of two: 2²⁷ = 128 MiB, zstd's own default
/// limit for streaming decompression, stated here so that no library default can raise it.
pub const MAX_WINDOW_LOG: u32 = 27;

/// Why a zstd-stream could not be decompressed. After any of these the stream is unusable: the
/// connection has to be replaced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZstdError {
    /// One message is larger than the cap before decompressing.
    #[error("a {bytes}-byte compressed message exceeds the {limit}-byte cap")]
    MessageTooLarge {
        /// Bytes in the message.
        bytes: usize,
        /// The cap.
        limit: usize,
    },
    /// One payload decompresses to more than the cap.
    #[error("a payload decompresses to more than the {limit}-byte cap")]
    OutputTooLarge {
        /// The cap.
        limit: usize,
    },
    /// The bytes are not a valid zstd stream (or the decoder could not be set up).
    #[error("invalid zstd stream: {0}")]
    Corrupt(String),
}

/// One connection's zstd-stream decoder.
///
/// ```
/// use openflume_proto::discord::ZstdStream;
/// use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};
///
/// // The server's side: one stream, flushed (not ended) after each payload.
/// let mut encoder = Encoder::new(3).unwrap();
/// let mut message = |payload: &[u8]| {
///     let mut out = Vec::with_capacity(1024);
///     encoder.run(&mut InBuffer::around(payload), &mut OutBuffer::around(&mut out)).unwrap();
///     let written = out.len();
///     encoder.flush(&mut OutBuffer::around_pos(&mut out, written)).unwrap();
///     out
/// };
/// let hello = message(br#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
/// let ack = message(br#"{"op":11}"#);
///
/// let mut decoder = ZstdStream::new(1 << 20).unwrap();
/// assert_eq!(decoder.push(&hello).unwrap(), br#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
/// assert_eq!(decoder.push(&ack).unwrap(), br#"{"op":11}"#);
/// ```
pub struct ZstdStream {
    decoder: Decoder<'static>,
    max_bytes: usize,
}

impl std::fmt::Debug for ZstdStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdStream")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl ZstdStream {
    /// A new stream whose messages, compressed or decompressed, never exceed `max_bytes`. Fails
    /// only when zstd cannot allocate its context.
    pub fn new(max_bytes: usize) -> Result<ZstdStream, ZstdError> {
        let corrupt = |e: std::io::Error| ZstdError::Corrupt(e.to_string());
        let mut decoder = Decoder::new().map_err(corrupt)?;
        decoder
            .set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .map_err(corrupt)?;
        Ok(ZstdStream { decoder, max_bytes })
    }

    /// Decompresses one binary WebSocket message: one whole Gateway payload. An empty message
    /// is an empty payload, and never reaches the decoder: zstd counts calls that bring no input
    /// and make no progress, and fails the stream after a few.
    pub fn push(&mut self, message: &[u8]) -> Result<Vec<u8>, ZstdError> {
        if message.is_empty() {
            return Ok(Vec::new());
        }
        if message.len() > self.max_bytes {
            return Err(ZstdError::MessageTooLarge {
                bytes: message.len(),
                limit: self.max_bytes,
            });
        }
        let mut input = InBuffer::around(message);
        let mut out: Vec<u8> = Vec::new();
        loop {
            if out.len() == out.capacity() {
                // One byte past the cap is enough to know the cap was exceeded.
                let room = self.max_bytes.saturating_add(1).saturating_sub(out.len());
                if room == 0 {
                    return Err(ZstdError::OutputTooLarge {
                        limit: self.max_bytes,
                    });
                }
                out.reserve_exact(room.min(CHUNK));
            }
            let (in_before, out_before) = (input.pos(), out.len());
            let pos = out.len();
            let mut output = OutBuffer::around_pos(&mut out, pos);
            self.decoder
                .run(&mut input, &mut output)
                .map_err(|e| ZstdError::Corrupt(e.to_string()))?;
            if out.len() > self.max_bytes {
                return Err(ZstdError::OutputTooLarge {
                    limit: self.max_bytes,
                });
            }
            // Done once every byte is in and the decoder stopped short of filling the buffer:
            // then it has flushed all it can (zstd's own rule for `ZSTD_decompressStream`).
            if input.pos() == message.len() && out.len() < out.capacity() {
                return Ok(fitted(out));
            }
            if input.pos() == in_before && out.len() == out_before && out.len() < out.capacity() {
                return Err(ZstdError::Corrupt("no progress".to_owned()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zstd::stream::raw::Encoder;

    /// Compresses each payload as the Gateway does: one stream, flushed after each payload,
    /// the frame never ended.
    fn zstd_stream(payloads: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut encoder = Encoder::new(3).unwrap();
        payloads
            .iter()
            .map(|payload| {
                let mut out = Vec::with_capacity(payload.len() + 1024);
                let mut input = InBuffer::around(payload);
                while input.pos() < payload.len() {
                    out.reserve(64 * 1024);
                    let pos = out.len();
                    encoder
                        .run(&mut input, &mut OutBuffer::around_pos(&mut out, pos))
                        .unwrap();
                }
                loop {
                    out.reserve(64 * 1024);
                    let pos = out.len();
                    let left = encoder
                        .flush(&mut OutBuffer::around_pos(&mut out, pos))
                        .unwrap();
                    if left == 0 {
                        break out;
                    }
                }
            })
            .collect()
    }

    #[test]
    fn payloads_share_one_context() {
        let big = format!(
            r#"{{"op":0,"t":"READY","d":{{"x":"{}"}}}}"#,
            "ab".repeat(100_000)
        );
        let payloads: Vec<&[u8]> = vec![br#"{"op":10}"#, big.as_bytes(), br#"{"op":11}"#];
        let wire = zstd_stream(&payloads);
        let mut decoder = ZstdStream::new(1 << 20).unwrap();
        for (bytes, payload) in wire.iter().zip(&payloads) {
            assert_eq!(decoder.push(bytes).unwrap(), *payload);
        }
        // The second ACK is smaller than the first: the context remembers.
        let again = zstd_stream(&[br#"{"op":11}"#, br#"{"op":11}"#]);
        assert!(again[1].len() <= again[0].len());
    }

    #[test]
    fn a_fresh_context_cannot_read_a_stream_midway() {
        let wire = zstd_stream(&[br#"{"op":10}"#, br#"{"op":11}"#]);
        let mut fresh = ZstdStream::new(1 << 10).unwrap();
        assert!(matches!(fresh.push(&wire[1]), Err(ZstdError::Corrupt(_))));
    }

    #[test]
    fn a_bomb_hits_the_output_cap_and_the_cap_itself_is_fine() {
        let zeros = vec![0u8; 8 << 20];
        let wire = zstd_stream(&[&zeros]);
        assert!(wire[0].len() < 64 * 1024, "{} bytes", wire[0].len());
        let mut decoder = ZstdStream::new(1 << 20).unwrap();
        assert_eq!(
            decoder.push(&wire[0]),
            Err(ZstdError::OutputTooLarge { limit: 1 << 20 })
        );
        let exact = vec![b' '; 1 << 20];
        let wire = zstd_stream(&[&exact]);
        let mut decoder = ZstdStream::new(1 << 20).unwrap();
        assert_eq!(decoder.push(&wire[0]).unwrap().len(), 1 << 20);
    }

    #[test]
    fn garbage_and_oversized_messages_are_errors() {
        let mut decoder = ZstdStream::new(1 << 10).unwrap();
        assert!(matches!(
            decoder.push(b"not zstd at all"),
            Err(ZstdError::Corrupt(_))
        ));
        let mut decoder = ZstdStream::new(16).unwrap();
        assert_eq!(
            decoder.push(&[0; 17]),
            Err(ZstdError::MessageTooLarge {
                bytes: 17,
                limit: 16
            })
        );
        // A truncated message yields what it can and waits for the rest: no panic, no error,
        // and the next message carries on.
        let wire = zstd_stream(&[br#"{"op":10,"d":{"heartbeat_interval":41250}}"#]);
        let mut decoder = ZstdStream::new(1 << 10).unwrap();
        let (head, tail) = wire[0].split_at(wire[0].len() / 2);
        let mut got = decoder.push(head).unwrap();
        got.extend(decoder.push(tail).unwrap());
        assert_eq!(got, br#"{"op":10,"d":{"heartbeat_interval":41250}}"#);
    }

    #[test]
    fn empty_messages_are_empty_payloads_however_many() {
        let wire = zstd_stream(&[br#"{"op":10}"#, br#"{"op":11}"#]);
        let mut decoder = ZstdStream::new(1 << 10).unwrap();
        assert_eq!(decoder.push(&wire[0]).unwrap(), br#"{"op":10}"#);
        for _ in 0..100 {
            assert_eq!(decoder.push(&[]).unwrap(), b"");
        }
        assert_eq!(decoder.push(&wire[1]).unwrap(), br#"{"op":11}"#);
    }

    #[test]
    fn a_huge_window_is_refused() {
        // A frame header asking for a 2^31 window (single segment off, window descriptor 0xa8:
        // exponent 21 + 10 = 31).
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0, 0, 0];
        let mut decoder = ZstdStream::new(1 << 10).unwrap();
        assert!(matches!(decoder.push(&frame), Err(ZstdError::Corrupt(_))));
    }
}
