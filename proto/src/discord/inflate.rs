//! Transport compression `zlib-stream`: the whole connection is one zlib stream, so one inflate
//! context lives exactly as long as one connection (a new connection starts a new stream). A
//! payload may span several binary WebSocket messages and is complete when the bytes received so
//! far end with the sync-flush marker `00 00 ff ff`.
//!
//! Both buffers are bounded: the pending compressed bytes and the inflated payload, so a zlib
//! bomb or a server that never flushes costs at most the configured cap, never a panic.

use flate2::{Decompress, FlushDecompress, Status};

/// The Z_SYNC_FLUSH marker that ends every complete payload.
const SYNC_FLUSH: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is grown in steps of this size, so a small payload never allocates the whole cap.
const CHUNK: usize = 32 * 1024;

/// Why a zlib-stream could not be inflated. After any of these the stream is unusable: the
/// connection has to be replaced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The compressed bytes of one payload exceed the cap without a sync flush.
    #[error("{pending} compressed bytes without a sync flush exceed the {limit}-byte cap")]
    PendingTooLarge {
        /// Bytes buffered.
        pending: usize,
        /// The cap.
        limit: usize,
    },
    /// One payload inflates to more than the cap.
    #[error("a payload inflates to more than the {limit}-byte cap")]
    OutputTooLarge {
        /// The cap.
        limit: usize,
    },
    /// The bytes are not a valid zlib stream.
    #[error("invalid zlib stream: {0}")]
    Corrupt(String),
    /// The zlib stream ended; the connection must not send more.
    #[error("the zlib stream ended")]
    Ended,
}

/// One connection's zlib-stream inflater.
///
/// ```
/// use openflume_proto::discord::ZlibStream;
/// use flate2::{Compress, Compression, FlushCompress};
///
/// let mut deflate = Compress::new(Compression::default(), true);
/// let mut wire = Vec::with_capacity(256);
/// deflate.compress_vec(br#"{"op":11}"#, &mut wire, FlushCompress::Sync).unwrap();
/// assert!(wire.ends_with(&[0, 0, 0xff, 0xff]));
///
/// let mut inflate = ZlibStream::new(1 << 20);
/// let (first, second) = wire.split_at(5);
/// assert_eq!(inflate.push(first).unwrap(), None); // not flushed yet
/// assert_eq!(inflate.push(second).unwrap().as_deref(), Some(&br#"{"op":11}"#[..]));
/// ```
pub struct ZlibStream {
    inflate: Decompress,
    pending: Vec<u8>,
    max_bytes: usize,
}

impl std::fmt::Debug for ZlibStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZlibStream")
            .field("pending", &self.pending.len())
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl ZlibStream {
    /// A new stream whose payloads, compressed or inflated, never exceed `max_bytes`.
    pub fn new(max_bytes: usize) -> ZlibStream {
        ZlibStream {
            inflate: Decompress::new(true),
            pending: Vec::new(),
            max_bytes,
        }
    }

    /// Adds one binary WebSocket message. Returns the inflated payload when the message
    /// completed one, `None` while more messages are needed.
    pub fn push(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, InflateError> {
        let pending = self.pending.len().saturating_add(message.len());
        if pending > self.max_bytes {
            self.pending = Vec::new();
            return Err(InflateError::PendingTooLarge {
                pending,
                limit: self.max_bytes,
            });
        }
        self.pending.extend_from_slice(message);
        if !self.pending.ends_with(&SYNC_FLUSH) {
            return Ok(None);
        }
        let input = std::mem::take(&mut self.pending);
        self.inflate_all(&input).map(Some)
    }

    fn inflate_all(&mut self, mut input: &[u8]) -> Result<Vec<u8>, InflateError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            if out.len() == out.capacity() {
                // One byte past the cap is enough to know the cap was exceeded.
                let room = self.max_bytes.saturating_add(1).saturating_sub(out.len());
                if room == 0 {
                    return Err(InflateError::OutputTooLarge {
                        limit: self.max_bytes,
                    });
                }
                out.reserve_exact(room.min(CHUNK));
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            let consumed = usize::try_from(self.inflate.total_in().saturating_sub(in_before))
                .unwrap_or(usize::MAX);
            input = input.get(consumed..).unwrap_or_default();
            if out.len() > self.max_bytes {
                return Err(InflateError::OutputTooLarge {
                    limit: self.max_bytes,
                });
            }
            if status == Status::StreamEnd {
                return if input.is_empty() {
                    Ok(fitted(out))
                } else {
                    Err(InflateError::Ended)
                };
            }
            let progressed = consumed > 0 || out.len() > out_before;
            // Done once all input is in and the inflater stopped short of filling the buffer.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(fitted(out));
            }
            if !progressed && out.len() < out.capacity() {
                return Err(InflateError::Corrupt("no progress".to_owned()));
            }
        }
    }
}

/// `out` without the room left over from growing it in steps (zlib-stream and zstd-stream): an event's data is a span of
/// this buffer and keeps it alive while the event is in flight, so a 1 KB payload must not hold
/// 32 KB (hundreds of events in flight made a compressed stream cost 10 MB more RSS).
pub(super) fn fitted(mut out: Vec<u8>) -> Vec<u8> {
    if out.capacity() - out.len() > 1024 {
        out.shrink_to_fit();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// Compresses each payload as the Gateway does: one stream, a sync flush after each.
    fn deflate_stream(payloads: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut deflate = Compress::new(Compression::default(), true);
        payloads
            .iter()
            .map(|payload| {
                let mut out = Vec::with_capacity(payload.len() + 1024);
                let mut input: &[u8] = payload;
                loop {
                    out.reserve(64 * 1024);
                    let before = deflate.total_in();
                    deflate
                        .compress_vec(input, &mut out, FlushCompress::Sync)
                        .unwrap();
                    input = &input[(deflate.total_in() - before) as usize..];
                    if input.is_empty() && out.ends_with(&SYNC_FLUSH) && out.len() < out.capacity()
                    {
                        break out;
                    }
                }
            })
            .collect()
    }

    #[test]
    fn payloads_share_one_context_and_may_span_messages() {
        let big = format!(
            r#"{{"op":0,"t":"READY","d":{{"x":"{}"}}}}"#,
            "ab".repeat(50_000)
        );
        let payloads: Vec<&[u8]> = vec![br#"{"op":10}"#, big.as_bytes(), br#"{"op":11}"#];
        let wire = deflate_stream(&payloads);
        // Whole messages, then every payload split at every position of its first 64 bytes.
        let mut inflate = ZlibStream::new(1 << 20);
        for (bytes, payload) in wire.iter().zip(&payloads) {
            assert_eq!(inflate.push(bytes).unwrap().as_deref(), Some(*payload));
        }
        for split in 1..64 {
            let mut inflate = ZlibStream::new(1 << 20);
            for (bytes, payload) in wire.iter().zip(&payloads) {
                let (a, b) = bytes.split_at(split.min(bytes.len() - 1));
                assert_eq!(inflate.push(a).unwrap(), None, "split {split}");
                assert_eq!(inflate.push(b).unwrap().as_deref(), Some(*payload));
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let payloads: Vec<&[u8]> = vec![br#"{"op":10,"d":{"heartbeat_interval":41250}}"#];
        let wire = deflate_stream(&payloads);
        let mut inflate = ZlibStream::new(1 << 10);
        let mut got = None;
        for byte in &wire[0] {
            if let Some(payload) = inflate.push(std::slice::from_ref(byte)).unwrap() {
                assert!(got.is_none());
                got = Some(payload);
            }
        }
        assert_eq!(got.as_deref(), Some(payloads[0]));
    }

    #[test]
    fn a_fresh_context_cannot_read_a_stream_midway() {
        let wire = deflate_stream(&[br#"{"op":10}"#, br#"{"op":11}"#]);
        let mut fresh = ZlibStream::new(1 << 10);
        assert!(matches!(
            fresh.push(&wire[1]),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn zlib_bomb_hits_the_output_cap() {
        let zeros = vec![0u8; 8 << 20];
        let wire = deflate_stream(&[&zeros]);
        assert!(wire[0].len() < 64 * 1024, "{} bytes", wire[0].len());
        let mut inflate = ZlibStream::new(1 << 20);
        assert_eq!(
            inflate.push(&wire[0]),
            Err(InflateError::OutputTooLarge { limit: 1 << 20 })
        );
        // Exactly at the cap is fine.
        let exact = vec![b' '; 1 << 20];
        let wire = deflate_stream(&[&exact]);
        let mut inflate = ZlibStream::new(1 << 20);
        assert_eq!(
            inflate.push(&wire[0]).unwrap().map(|p| p.len()),
            Some(1 << 20)
        );
    }

    #[test]
    fn pending_input_is_bounded_and_garbage_is_an_error() {
        let mut inflate = ZlibStream::new(16);
        assert_eq!(inflate.push(&[1; 10]).unwrap(), None);
        assert_eq!(
            inflate.push(&[1; 10]),
            Err(InflateError::PendingTooLarge {
                pending: 20,
                limit: 16
            })
        );
        let mut inflate = ZlibStream::new(1 << 10);
        assert!(matches!(
            inflate.push(b"garbage\x00\x00\xff\xff"),
            Err(InflateError::Corrupt(_))
        ));
        let mut inflate = ZlibStream::new(1 << 10);
        assert!(matches!(
            inflate.push(&[0, 0, 0xff, 0xff]),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn a_finished_stream_is_reported() {
        let mut deflate = Compress::new(Compression::default(), true);
        let mut wire = Vec::with_capacity(256);
        deflate
            .compress_vec(b"{}", &mut wire, FlushCompress::Finish)
            .unwrap();
        wire.extend_from_slice(&SYNC_FLUSH);
        let mut inflate = ZlibStream::new(1 << 10);
        assert_eq!(inflate.push(&wire), Err(InflateError::Ended));
    }
}
