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

/// How far one feed reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// To the end of the message.
    AtEnd,
    /// To the end of the head, leaving the body unread.
    AfterHead,
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
        self.feed_up_to(input, Stop::AtEnd)
            .map(|(_, message)| message)
    }

    /// Feeds received bytes up to the end of the head and no further; returns how many were
    /// used. Once the head is in, [`head`](Self::head) shows it and the body is still unread, so
    /// the caller can judge the head (and [`limit_body`](Self::limit_body)) before reading on.
    pub(crate) fn feed_head(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        self.feed_up_to(input, Stop::AfterHead)
            .map(|(used, _)| used)
    }

    /// The parsed head, once it is in and until the message is handed over.
    pub(crate) fn head(&self) -> Option<&R::Head> {
        match &self.state {
            State::Body { head, .. } => Some(head),
            _ => None,
        }
    }

    /// Lowers the body limit for this message, as the head's target requires. A declared length
    /// over the new limit, or a body already past it, is refused at once.
    pub(crate) fn limit_body(&mut self, max_body_bytes: usize) -> Result<(), HttpError> {
        self.limits.max_body_bytes = max_body_bytes;
        let result = match &mut self.state {
            State::Body { body, .. } => body.limit(max_body_bytes),
            _ => Ok(()),
        };
        if let Err(error) = &result {
            self.state = State::Failed(error.clone());
        }
        result
    }

    fn feed_up_to(
        &mut self,
        input: &[u8],
        stop: Stop,
    ) -> Result<(usize, Option<R::Message>), HttpError> {
        let result = self.advance(input, stop);
        match &result {
            Err(error) => self.state = State::Failed(error.clone()),
            Ok((_, Some(_))) => self.state = State::Finished,
            Ok((_, None)) => {}
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

    fn advance(
        &mut self,
        whole: &[u8],
        stop: Stop,
    ) -> Result<(usize, Option<R::Message>), HttpError> {
        let mut input = whole;
        let consumed = |rest: &[u8]| whole.len() - rest.len();
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
                        return Ok((consumed(input), None));
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
                    if stop == Stop::AfterHead && matches!(self.state, State::Body { .. }) {
                        return Ok((consumed(input), None));
                    }
                }
                State::Body { body, .. } => {
                    let read = body.read(input)?;
                    input = input.get(read..).unwrap_or_default();
                    if !body.is_complete() {
                        return Ok((consumed(input), None));
                    }
                    let State::Body {
                        head,
                        persistence,
                        body,
                    } = std::mem::replace(&mut self.state, State::Finished)
                    else {
                        return Err(HttpError::ReaderFinished);
                    };
                    let message = R::complete(head, persistence, body.into_parts(), input);
                    return Ok((whole.len(), Some(message)));
                }
            }
        }
    }
}
