//! The incremental reading state machine, written once for both sides: collect a head, let the
//! role decide what follows it, read the body, hand over the message and the bytes after it.
//!
//! As in h11, what differs between client and server is a small table, here the [`Role`] trait:
//! how the start line parses, which body rules apply (a response to `HEAD` has none, a request
//! without framing headers has none, an upgrade request ends at its head), and what the finished
//! message looks like. Everything else (limits, chunking, leftovers, the sticky error) is here.

use super::body::{BodyReader, Framing};
use super::head::{HeadBuffer, ParseOutcome};
use super::{HttpError, Limits, Persistence};

/// What one side of a connection reads: responses on the client, requests on the server.
pub(crate) trait Role {
    /// The parsed start line and header fields.
    type Head;
    /// The complete message handed to the caller.
    type Message;

    /// Parses a candidate head; `Ok(None)` while httparse wants more.
    fn parse_head(bytes: &[u8], limits: &Limits) -> ParseOutcome<Self::Head>;

    /// Decides what follows a complete head.
    fn after_head(&self, head: Self::Head) -> Result<AfterHead<Self::Head>, HttpError>;

    /// Builds the message from its head and decoded body.
    fn complete(
        head: Self::Head,
        persistence: Persistence,
        body: Body,
        leftover: &[u8],
    ) -> Self::Message;
}

/// A decoded body and its trailer fields.
pub(crate) type Body = (Vec<u8>, Vec<(String, String)>);

/// The role's verdict on a head.
pub(crate) enum AfterHead<H> {
    /// An interim (1xx) response: the real head comes next.
    Interim,
    /// The message body follows, framed like this (`Length(0)` for none).
    Body {
        head: H,
        persistence: Persistence,
        framing: Framing,
    },
}

/// Reads one message of role `R` from arbitrary chunks. After a result or an error it is spent:
/// later calls return [`HttpError::ReaderFinished`] or the same error again.
#[derive(Debug)]
pub(crate) struct Reader<R: Role> {
    role: R,
    limits: Limits,
    /// An interim response was read, so a close now cuts a message short.
    interim_seen: bool,
    state: State<R::Head>,
}

#[derive(Debug)]
enum State<H> {
    Head(HeadBuffer),
    Body {
        head: H,
        persistence: Persistence,
        body: BodyReader,
    },
    Finished,
    Failed(HttpError),
}

impl<R: Role> Reader<R> {
    pub(crate) fn new(role: R, limits: Limits) -> Reader<R> {
        Reader {
            role,
            limits,
            interim_seen: false,
            state: State::Head(HeadBuffer::default()),
        }
    }

    /// Feeds received bytes; the message once complete, with the bytes after it as leftover.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<Option<R::Message>, HttpError> {
        let result = self.advance(input);
        match &result {
            Err(error) => self.state = State::Failed(error.clone()),
            Ok(Some(_)) => self.state = State::Finished,
            Ok(None) => {}
        }
        result
    }

    /// End of stream. `Ok(None)` when it came between messages (nothing but blank lines
    /// received, no interim response); a close-delimited body completes; anything else was cut
    /// short.
    pub(crate) fn eof(&mut self) -> Result<Option<R::Message>, HttpError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        let result = match state {
            State::Head(buffer) if buffer.is_empty() && !self.interim_seen => Ok(None),
            State::Head(_) => Err(HttpError::ClosedInHead),
            State::Body {
                head,
                persistence,
                mut body,
            } => body
                .eof()
                .map(|()| Some(R::complete(head, persistence, body.into_parts(), &[]))),
            State::Finished => Err(HttpError::ReaderFinished),
            State::Failed(error) => Err(error),
        };
        if let Err(error) = &result {
            self.state = State::Failed(error.clone());
        }
        result
    }

    /// Bytes held right now (partial head, body so far); never more than the limits allow.
    pub(crate) fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Head(buffer) => buffer.len(),
            State::Body { body, .. } => body.buffered(),
            State::Finished | State::Failed(_) => 0,
        }
    }

    fn advance(&mut self, mut input: &[u8]) -> Result<Option<R::Message>, HttpError> {
        loop {
            match &mut self.state {
                State::Finished => return Err(HttpError::ReaderFinished),
                State::Failed(error) => return Err(error.clone()),
                State::Head(buffer) => {
                    let limits = self.limits;
                    let (used, head) =
                        buffer.advance(input, &limits, |bytes| R::parse_head(bytes, &limits))?;
                    input = input.get(used..).unwrap_or_default();
                    let Some(head) = head else {
                        return Ok(None);
                    };
                    self.state = match self.role.after_head(head)? {
                        AfterHead::Interim => {
                            self.interim_seen = true;
                            State::Head(HeadBuffer::default())
                        }
                        AfterHead::Body {
                            head,
                            persistence,
                            framing,
                        } => State::Body {
                            head,
                            persistence,
                            body: BodyReader::new(framing, limits)?,
                        },
                    };
                }
                State::Body { body, .. } => {
                    let used = body.read(input)?;
                    input = input.get(used..).unwrap_or_default();
                    if !body.is_complete() {
                        return Ok(None);
                    }
                    let State::Body {
                        head,
                        persistence,
                        body,
                    } = std::mem::replace(&mut self.state, State::Finished)
                    else {
                        return Err(HttpError::ReaderFinished);
                    };
                    return Ok(Some(R::complete(
                        head,
                        persistence,
                        body.into_parts(),
                        input,
                    )));
                }
            }
        }
    }
}
