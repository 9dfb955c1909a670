//! One connection's transport decompressor: zlib-stream or zstd-stream, new for every
//! connection (each connection is one compressed stream).

use super::{TransportCompression, ZlibStream, ZstdStream};

/// The decompression context of one connection.
#[derive(Debug)]
pub(crate) enum Decompressor {
    Zlib(ZlibStream),
    /// Made at the first binary message: zstd allocates its context then, and a failure to is
    /// an error of that message like any other.
    Zstd(Option<Box<ZstdStream>>),
}

impl Decompressor {
    /// A context for `kind` whose payloads never exceed `max_bytes`.
    pub(crate) fn new(kind: TransportCompression, max_bytes: usize) -> Decompressor {
        match kind {
            TransportCompression::ZlibStream => Decompressor::Zlib(ZlibStream::new(max_bytes)),
            TransportCompression::ZstdStream => Decompressor::Zstd(None),
        }
    }

    /// The stream's name, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Decompressor::Zlib(_) => TransportCompression::ZlibStream.as_str(),
            Decompressor::Zstd(_) => TransportCompression::ZstdStream.as_str(),
        }
    }

    /// Adds one binary message: the payload it completed, `None` while a zlib payload needs more
    /// messages, or why the stream broke (the connection must be replaced).
    pub(crate) fn push(
        &mut self,
        message: &[u8],
        max_bytes: usize,
    ) -> Result<Option<Vec<u8>>, String> {
        match self {
            Decompressor::Zlib(inflate) => inflate.push(message).map_err(|e| e.to_string()),
            Decompressor::Zstd(slot) => {
                let decoder = match slot {
                    Some(decoder) => decoder,
                    None => slot.insert(Box::new(
                        ZstdStream::new(max_bytes).map_err(|e| e.to_string())?,
                    )),
                };
                decoder.push(message).map(Some).map_err(|e| e.to_string())
            }
        }
    }
}
