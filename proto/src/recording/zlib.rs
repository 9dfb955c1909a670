//! Discord's zlib-stream, re-encoded: a recorder that drops message contents, and a simulator
//! that serves a recording at another address, must change payloads that travel inside one
//! compressed stream per connection. Each inflates the recorded stream with [`ZlibStream`] and
//! deflates the changed payloads into a stream of its own, one sync-flushed message per payload.
//!
//! A connection recorded with zstd-stream is recognised by its first message (a zstd frame's
//! magic number, which no zlib stream starts with) and re-encoded the same way, as zstd: its
//! payloads are decompressed with [`ZstdStream`] and compressed into a stream of its own, one
//! flushed message per payload, the frame left open as the Gateway leaves it.

use crate::discord::{InflateError, ZlibStream, ZstdStream};
use flate2::{Compress, Compression, FlushCompress};

/// The magic number that starts every zstd frame (RFC 8878 §3.1.1), little-endian 0xFD2FB528.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Largest payload re-encoded; a larger one is refused as the shard refuses it.
const MAX_PAYLOAD: usize = 16 << 20;

/// One connection's outgoing zlib stream: each payload deflated with a sync flush, so it ends
/// with `00 00 ff ff` and inflates as one message.
///
/// ```
/// use openflume_proto::discord::ZlibStream;
/// use openflume_proto::recording::zlib::Deflater;
/// let mut deflater = Deflater::default();
/// let mut inflater = ZlibStream::new(1 << 20);
/// for payload in [&br#"{"op":10}"#[..], br#"{"op":11}"#] {
///     let wire = deflater.deflate(payload);
///     assert_eq!(inflater.push(&wire).unwrap().as_deref(), Some(payload));
/// }
/// ```
pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        Deflater(Compress::new(Compression::default(), true))
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Deflater {
    /// `payload` as the next message of the stream.
    ///
    /// ```
    /// let wire = openflume_proto::recording::zlib::Deflater::default().deflate(b"{}");
    /// assert!(wire.ends_with(&[0, 0, 0xff, 0xff]));
    /// ```
    pub fn deflate(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() / 3 + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.0.total_in();
            let rest = payload.get(consumed..).unwrap_or_default();
            if self
                .0
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .is_err()
            {
                // Only a misuse of the stream fails, and this one is used one way only.
                return out;
            }
            let taken = usize::try_from(self.0.total_in().saturating_sub(before)).unwrap_or(0);
            consumed = consumed.saturating_add(taken);
            if consumed >= payload.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// One recorded connection's stream re-encoded: recorded binary messages in, changed payloads
/// out as messages of a new stream, of the recorded one's kind (zlib-stream, or zstd-stream
/// when its first message is a zstd frame).
///
/// ```
/// use openflume_proto::recording::zlib::{Deflater, Recompress};
/// use openflume_proto::discord::ZlibStream;
/// let mut original = Deflater::default();
/// let wire = original.deflate(br#"{"op":0,"d":{"content":"hi"}}"#);
/// let (head, tail) = wire.split_at(4);
/// let mut recompress = Recompress::default();
/// // Part of a payload: nothing to send yet.
/// assert_eq!(recompress.push(head, |p| p).unwrap(), None);
/// let changed = recompress.push(tail, |p| String::from_utf8(p).unwrap().replace("hi", "").into_bytes()).unwrap().unwrap();
/// let mut client = ZlibStream::new(1 << 20);
/// assert_eq!(client.push(&changed).unwrap().unwrap(), br#"{"op":0,"d":{"content":""}}"#);
/// ```
#[derive(Debug, Default)]
pub struct Recompress {
    /// Chosen by the first message.
    codec: Option<Codec>,
}

#[derive(Debug)]
enum Codec {
    Zlib {
        inflater: ZlibStream,
        deflater: Deflater,
    },
    Zstd {
        decoder: Box<ZstdStream>,
        encoder: Box<ZstdEncoder>,
    },
}

impl Recompress {
    /// The codec for a stream whose first message is `message`.
    fn codec(&mut self, message: &[u8]) -> Result<&mut Codec, InflateError> {
        let codec = match self.codec.take() {
            Some(codec) => codec,
            None if message.starts_with(&ZSTD_MAGIC) => Codec::Zstd {
                decoder: Box::new(
                    ZstdStream::new(MAX_PAYLOAD)
                        .map_err(|e| InflateError::Corrupt(e.to_string()))?,
                ),
                encoder: Box::new(ZstdEncoder::new()?),
            },
            None => Codec::Zlib {
                inflater: ZlibStream::new(MAX_PAYLOAD),
                deflater: Deflater::default(),
            },
        };
        Ok(self.codec.insert(codec))
    }

    /// Adds one recorded binary message; when it completes a payload, returns the payload after
    /// `edit`, compressed into the new stream.
    ///
    /// ```
    /// use openflume_proto::recording::zlib::Recompress;
    /// // Not a zlib stream: refused, as the shard refuses it.
    /// assert!(Recompress::default().push(b"not zlib\0\0\xff\xff", |p| p).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// The recorded stream does not decompress ([`InflateError`]): the stream is unusable after.
    pub fn push(
        &mut self,
        message: &[u8],
        edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> Result<Option<Vec<u8>>, InflateError> {
        match self.codec(message)? {
            Codec::Zlib { inflater, deflater } => Ok(inflater
                .push(message)?
                .map(|payload| deflater.deflate(&edit(payload)))),
            Codec::Zstd { decoder, encoder } => {
                let payload = decoder
                    .push(message)
                    .map_err(|e| InflateError::Corrupt(e.to_string()))?;
                encoder.compress(&edit(payload)).map(Some)
            }
        }
    }

    /// Decompresses one recorded message without re-encoding: the payload when it completes one.
    ///
    /// ```
    /// use openflume_proto::recording::zlib::{Deflater, Recompress};
    /// let wire = Deflater::default().deflate(br#"{"op":11}"#);
    /// assert_eq!(Recompress::default().inflate(&wire).unwrap().unwrap(), br#"{"op":11}"#);
    /// ```
    ///
    /// # Errors
    ///
    /// The recorded stream does not decompress.
    pub fn inflate(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, InflateError> {
        match self.codec(message)? {
            Codec::Zlib { inflater, .. } => inflater.push(message),
            Codec::Zstd { decoder, .. } => decoder
                .push(message)
                .map(Some)
                .map_err(|e| InflateError::Corrupt(e.to_string())),
        }
    }
}

/// One connection's outgoing zstd stream: each payload compressed and flushed, the frame left
/// open, as the Gateway sends zstd-stream.
struct ZstdEncoder(zstd::stream::raw::Encoder<'static>);

impl std::fmt::Debug for ZstdEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZstdEncoder")
    }
}

impl ZstdEncoder {
    fn new() -> Result<ZstdEncoder, InflateError> {
        zstd::stream::raw::Encoder::new(zstd::DEFAULT_COMPRESSION_LEVEL)
            .map(ZstdEncoder)
            .map_err(|e| InflateError::Corrupt(e.to_string()))
    }

    fn compress(&mut self, payload: &[u8]) -> Result<Vec<u8>, InflateError> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let failed = |e: std::io::Error| InflateError::Corrupt(e.to_string());
        let mut out = Vec::with_capacity(payload.len() / 3 + 64);
        let mut input = InBuffer::around(payload);
        while input.pos() < payload.len() {
            out.reserve(out.capacity().max(256));
            let pos = out.len();
            self.0
                .run(&mut input, &mut OutBuffer::around_pos(&mut out, pos))
                .map_err(failed)?;
        }
        loop {
            out.reserve(out.capacity().max(256));
            let pos = out.len();
            let left = self
                .0
                .flush(&mut OutBuffer::around_pos(&mut out, pos))
                .map_err(failed)?;
            if left == 0 {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zstd_stream_is_re_encoded_as_zstd() {
        let mut original = ZstdEncoder::new().unwrap();
        let recorded: Vec<Vec<u8>> = [
            &br#"{"op":10}"#[..],
            br#"{"op":0,"d":{"content":"secret words"}}"#,
        ]
        .iter()
        .map(|payload| original.compress(payload).unwrap())
        .collect();
        let mut recompress = Recompress::default();
        let mut client = ZstdStream::new(1 << 20).unwrap();
        let drop_words = |p: Vec<u8>| {
            String::from_utf8(p)
                .unwrap()
                .replace("secret words", "")
                .into_bytes()
        };
        let hello = recompress.push(&recorded[0], drop_words).unwrap().unwrap();
        assert!(hello.starts_with(&ZSTD_MAGIC), "zstd out, as in");
        assert_eq!(client.push(&hello).unwrap(), br#"{"op":10}"#);
        let message = recompress.push(&recorded[1], drop_words).unwrap().unwrap();
        assert_eq!(
            client.push(&message).unwrap(),
            br#"{"op":0,"d":{"content":""}}"#
        );
        let mut plain = Recompress::default();
        assert_eq!(
            plain.inflate(&recorded[0]).unwrap().unwrap(),
            br#"{"op":10}"#
        );
    }
}
