//! Discord's zlib-stream, re-encoded: a recorder that drops message contents, and a simulator
//! that serves a recording at another address, must change payloads that travel inside one
//! compressed stream per connection. Each inflates the recorded stream with [`ZlibStream`] and
//! deflates the changed payloads into a stream of its own, one sync-flushed message per payload.

use crate::discord::{InflateError, ZlibStream};
use flate2::{Compress, Compression, FlushCompress};

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
/// out as messages of a new stream.
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
#[derive(Debug)]
pub struct Recompress {
    inflater: ZlibStream,
    deflater: Deflater,
}

impl Default for Recompress {
    fn default() -> Self {
        Recompress {
            inflater: ZlibStream::new(MAX_PAYLOAD),
            deflater: Deflater::default(),
        }
    }
}

impl Recompress {
    /// Adds one recorded binary message; when it completes a payload, returns the payload after
    /// `edit`, deflated into the new stream.
    ///
    /// ```
    /// use openflume_proto::recording::zlib::Recompress;
    /// // Not a zlib stream: refused, as the shard refuses it.
    /// assert!(Recompress::default().push(b"not zlib\0\0\xff\xff", |p| p).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// The recorded stream does not inflate ([`InflateError`]): the stream is unusable after.
    pub fn push(
        &mut self,
        message: &[u8],
        edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> Result<Option<Vec<u8>>, InflateError> {
        Ok(self
            .inflater
            .push(message)?
            .map(|payload| self.deflater.deflate(&edit(payload))))
    }

    /// Inflates one recorded message without re-encoding: the payload when it completes one.
    ///
    /// ```
    /// use openflume_proto::recording::zlib::{Deflater, Recompress};
    /// let wire = Deflater::default().deflate(br#"{"op":11}"#);
    /// assert_eq!(Recompress::default().inflate(&wire).unwrap().unwrap(), br#"{"op":11}"#);
    /// ```
    ///
    /// # Errors
    ///
    /// The recorded stream does not inflate.
    pub fn inflate(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, InflateError> {
        self.inflater.push(message)
    }
}
