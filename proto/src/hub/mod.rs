//! # The replaying hub's protocol, sans-IO: one subscriber's session
//!
//! An agent connects to `serve`'s `/ws` (authenticated before the upgrade, by the driver) and
//! talks JSON text frames:
//!
//! ```text
//! → {"type":"hello","after_event_id":120,"subscriptions":{"sources":["slack"]}}
//! ← {"type":"hello_ok","replay_until":180,"instance_id":"…"}
//! ← {"type":"item","event_id":121,"item":{…}}        121 ≤ id ≤ 180: replay from the log
//! ← {"type":"item","event_id":181,"item":{…}}        live, in order, no gap at the seam
//! → {"type":"ack","event_id":181}                    named consumers: cumulative
//! → {"type":"subscribe","subscriptions":{…},"since":181}
//! ← {"type":"subscribed","effective_after":181}
//! ```
//!
//! The log is the source of truth for replay and live alike: the session asks the driver for the
//! items after the last one it sent ([`HubOutput::ReadLog`]) whenever the log has committed more
//! and the client's send queue has room, so the seam between replay and live is the same read,
//! a slow subscriber reads from the log (never from memory), and nothing is skipped or repeated.
//!
//! A hello names either a position (`after_event_id`, default: the end of the log, so only new
//! items) or a durable consumer (`consumer`, whose cursor the log keeps: a reconnect under the
//! same name resumes after its last `ack`, so a crashed agent needs to remember nothing; a new
//! consumer starts at `after_event_id`, or at the end). Omitted subscriptions mean everything;
//! an empty list means nothing. `subscribe`/`unsubscribe` add or remove values from the lists;
//! a change applies to items after `since`, or after the last item sent (or asked of the log
//! already), whichever is later, so order is kept (a client that wants older items says hello
//! again); `subscribed` names that point.
//!
//! **Positions.** A hub over the SQLite log counts in its integer ids (above). A hub over a
//! Redis Stream (`serve --sink redis://…`) counts in the stream's entry ids, written as strings
//! (`"event_id":"1764100000000-0"`, and the same in `after_event_id`, `ack`, `since`,
//! `replay_until` and `effective_after`); there an integer `N` in a client frame reads as
//! `"N-0"`, so `"after_event_id":0` still means everything. The session is generic over the
//! position ([`HubPosition`]): its rules compare positions and never count them.
//!
//! A driver that serves many sessions can read and render each live item once and share it:
//! [`RenderedItem::render`] makes the frame and takes out what filters look at, and
//! [`HubInput::ReadRendered`] answers a [`HubOutput::ReadLog`] with such items. The session
//! still filters, orders and counts them itself, exactly as it does a [`HubInput::Read`].
//!
//! **Bounds.** A client cannot make a session hold more than its configuration says, whatever
//! it sends: at most [`HubConfig::send_queue`] item frames queued, plus
//! [`MAX_QUEUED_ANSWERS`] answers (`hello_ok`, `subscribed`) for a client that asks without
//! reading; subscriptions of at most [`HubConfig::max_frame_bytes`] (what a hello can carry);
//! at most [`MAX_WAITING_CHANGES`] changes waiting for a `since` ahead of what was sent.
//!
//! Closes: 1003 when the first frame is not a hello, for invalid JSON or a binary frame; 1008 for
//! an ack beyond what was sent or without a consumer, for a client past one of the bounds
//! above, and for a client whose send queue stayed
//! full for [`HubConfig::stall_timeout_ms`] (it resumes later from its last id, named in the
//! reason); 1009 for a frame over [`HubConfig::max_frame_bytes`] (or one the transport refused,
//! [`HubInput::Oversized`]); 1001 at shutdown and when
//! no pong came for two ping intervals; 1002 for a hello that does not come in time.

mod filter;
mod position;

pub use filter::Filter;
pub use position::{BadStreamId, HubPosition, StreamId};

use crate::{Item, Millis, Now};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// Bounds and timing of a session.
///
/// ```
/// use openflume_proto::hub::HubConfig;
/// let config = HubConfig::new("instance-1");
/// assert_eq!(config.send_queue, 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HubConfig {
    /// Names this server in `hello_ok`, so a client behind a load balancer knows whose ids it has.
    pub instance_id: String,
    /// Frames queued for the client before the session stops reading the log. Default 1024.
    /// Answers to the client's own requests may queue up to [`MAX_QUEUED_ANSWERS`] more.
    pub send_queue: usize,
    /// A send queue full this long closes the session with 1008. Default 10 s.
    pub stall_timeout_ms: u64,
    /// Items asked of the log at once. Default 256.
    pub page: usize,
    /// Largest client frame, and largest subscriptions (a `subscribe` cannot grow them past
    /// what one frame carries). Default 64 KiB.
    pub max_frame_bytes: usize,
    /// The hello must come this soon after the upgrade. Default 10 s.
    pub hello_timeout_ms: u64,
    /// A ping this often; no pong for two intervals closes. Default 30 s.
    pub ping_interval_ms: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            instance_id: String::new(),
            send_queue: 1024,
            stall_timeout_ms: 10_000,
            page: 256,
            max_frame_bytes: 64 * 1024,
            hello_timeout_ms: 10_000,
            ping_interval_ms: 30_000,
        }
    }
}

impl HubConfig {
    /// Defaults, for a server named `instance_id`.
    pub fn new(instance_id: impl Into<String>) -> HubConfig {
        HubConfig {
            instance_id: instance_id.into(),
            ..HubConfig::default()
        }
    }
}

/// Subscription changes a session keeps waiting for their point (a `since` ahead of what was
/// sent): each holds a copy of the subscriptions, so a client that names points ahead again and
/// again is closed with 1008 past this many rather than kept in memory.
///
/// ```
/// assert_eq!(openflume_proto::hub::MAX_WAITING_CHANGES, 16);
/// ```
pub const MAX_WAITING_CHANGES: usize = 16;

/// Answers (`hello_ok`, `subscribed`) a session queues beyond [`HubConfig::send_queue`] item
/// frames: a client that keeps asking without reading what it is sent is closed with 1008 past
/// this many rather than buffered for, so a session never queues more than `send_queue +
/// MAX_QUEUED_ANSWERS` text frames.
///
/// ```
/// assert_eq!(openflume_proto::hub::MAX_QUEUED_ANSWERS, 16);
/// ```
pub const MAX_QUEUED_ANSWERS: usize = 16;

/// An item as the log stores it, with its position `P` (the SQLite log's integer id, or a
/// Redis Stream's [`StreamId`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredItem<P = u64> {
    /// The log's id for it.
    pub event_id: P,
    /// The item.
    pub item: Item,
}

/// An item rendered once, to be shared by every session it goes to: its `item` frame and what
/// subscriptions filter on. Cloning it copies no text.
///
/// ```
/// use openflume_proto::hub::RenderedItem;
/// use openflume_proto::{Event, Item, RawJson, UnixMillis};
/// let mut event = Event::new("slack", "events_api", RawJson::null(), UnixMillis(0));
/// event.meta.insert("conversation_key".into(), "slack:v1:T:C:1.2".into());
/// let rendered = RenderedItem::render(7, &Item::Event(event));
/// assert!(rendered.frame.starts_with(r#"{"type":"item","event_id":7,"item":{"#));
/// assert_eq!(&*rendered.source, "slack");
/// assert_eq!(&*rendered.kind, "events_api");
/// assert_eq!(rendered.conversation_key.as_deref(), Some("slack:v1:T:C:1.2"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedItem<P = u64> {
    /// The log's id for it.
    pub event_id: P,
    /// The item's source.
    #[serde(with = "shared_text")]
    pub source: Arc<str>,
    /// The event's type, or `log` for a log (as [`Filter::types`] names it).
    #[serde(rename = "type", with = "shared_text")]
    pub kind: Arc<str>,
    /// An event's `meta.conversation_key`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "shared_text::optional"
    )]
    pub conversation_key: Option<Arc<str>>,
    /// The whole `item` frame, as the session would write it.
    #[serde(with = "shared_text")]
    pub frame: Arc<str>,
}

impl<P: Serialize + Copy> RenderedItem<P> {
    /// Renders the frame of `item` (stored as `event_id`) and takes out its filter keys.
    pub fn render(event_id: P, item: &Item) -> RenderedItem<P> {
        let (kind, key) = filter::keys(item);
        RenderedItem {
            event_id,
            source: item.source().into(),
            kind: kind.into(),
            conversation_key: key.map(Arc::from),
            frame: frame(&ItemFrame {
                kind: "item",
                event_id,
                item,
            })
            .into(),
        }
    }
}

/// What the driver tells a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HubInput<P = u64> {
    /// The connection was upgraded; `committed` is the log's last committed id.
    Start {
        /// The last committed id.
        committed: P,
    },
    /// The log committed up to this id.
    Committed {
        /// The last committed id.
        last_id: P,
    },
    /// A text frame from the client.
    Text(String),
    /// A binary frame from the client (refused).
    Binary,
    /// A client frame the transport would not read whole: larger than its own limit (which a
    /// driver sets near [`HubConfig::max_frame_bytes`], so a client cannot make it buffer more).
    /// Closed with 1009, as a [`HubInput::Text`] over the limit is.
    Oversized {
        /// The size the frame announced, in bytes.
        size: usize,
    },
    /// A pong from the client.
    Pong,
    /// The answer to [`HubOutput::ReadLog`]: the matching items, and the highest id the read
    /// covered (beyond the last item when the rest did not match).
    Read {
        /// Matching items, ids ascending.
        items: Vec<StoredItem<P>>,
        /// Every id up to this one was looked at.
        up_to: P,
    },
    /// [`HubInput::Read`] with items already rendered (see [`RenderedItem`]): the matching items,
    /// and the highest id the read covered.
    ReadRendered {
        /// Matching items, ids ascending.
        items: Vec<RenderedItem<P>>,
        /// Every id up to this one was looked at.
        up_to: P,
    },
    /// The answer to [`HubOutput::LookupConsumer`].
    Consumer {
        /// The consumer's last acked id, `None` for a new consumer.
        acked: Option<P>,
    },
    /// The transport wrote this many queued frames to the client.
    Sent {
        /// Frames written.
        frames: usize,
    },
    /// A deadline from [`HubSession::poll_timeout`] passed.
    Timer,
    /// The server is shutting down.
    Shutdown,
}

/// What a session asks of the driver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HubOutput<P = u64> {
    /// Send this text frame (shared: an item's frame is rendered once for every session).
    Send(#[serde(with = "shared_text")] Arc<str>),
    /// Send a ping.
    Ping,
    /// Close with this code; the session is over.
    Close {
        /// Close code.
        code: u16,
        /// Close reason (short, safe).
        reason: String,
    },
    /// Read up to `limit` items with `after < id ≤ until` that `filter` matches, and answer with
    /// [`HubInput::Read`].
    ReadLog {
        /// Exclusive lower bound.
        after: P,
        /// Inclusive upper bound: what is committed.
        until: P,
        /// Most items.
        limit: usize,
        /// Which items.
        filter: Filter,
    },
    /// Look up a named consumer's cursor and answer with [`HubInput::Consumer`].
    LookupConsumer {
        /// The name.
        name: String,
    },
    /// Store a named consumer's cumulative ack.
    AckConsumer {
        /// The name.
        name: String,
        /// Everything up to this id is acknowledged.
        event_id: P,
    },
}

/// Where the session is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase<P> {
    AwaitingHello,
    /// A consumer's cursor was asked for; the hello's position and filter wait for it.
    AwaitingConsumer {
        after: Option<P>,
    },
    Streaming,
    Closed,
}

/// A client message.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[serde(bound = "P: HubPosition")]
enum ClientMessage<P> {
    Hello {
        #[serde(default)]
        after_event_id: Option<P>,
        #[serde(default)]
        consumer: Option<String>,
        #[serde(default)]
        subscriptions: Filter,
    },
    Ack {
        event_id: P,
    },
    Subscribe {
        subscriptions: Filter,
        #[serde(default)]
        since: P,
    },
    Unsubscribe {
        subscriptions: Filter,
        #[serde(default)]
        since: P,
    },
}

/// One subscriber's session. Feed [`HubInput`]s with the time, then drain
/// [`poll_output`](Self::poll_output) and arm [`poll_timeout`](Self::poll_timeout).
///
/// ```
/// use openflume_proto::hub::{HubConfig, HubInput, HubOutput, HubSession, StoredItem};
/// use openflume_proto::{Event, Item, Millis, Now, RawJson, UnixMillis};
///
/// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
/// let mut session = HubSession::new(HubConfig::new("i-1"));
/// session.handle_input(now, HubInput::Start { committed: 2 });
/// session.handle_input(now, HubInput::Text(r#"{"type":"hello","after_event_id":0}"#.into()));
/// let out: Vec<HubOutput> = std::iter::from_fn(|| session.poll_output()).collect();
/// assert!(matches!(&out[0], HubOutput::Send(text) if text.contains("\"replay_until\":2")));
/// assert!(matches!(&out[1], HubOutput::ReadLog { after: 0, until: 2, .. }));
/// let item = Item::Event(Event::new("time", "tick", RawJson::null(), UnixMillis(0)));
/// session.handle_input(now, HubInput::Read { items: vec![StoredItem { event_id: 1, item }], up_to: 2 });
/// let Some(HubOutput::Send(frame)) = session.poll_output() else { panic!() };
/// assert!(frame.starts_with(r#"{"type":"item","event_id":1,"#));
/// ```
#[derive(Debug)]
pub struct HubSession<P = u64> {
    config: HubConfig,
    phase: Phase<P>,
    filter: Filter,
    /// Subscription changes not in force yet: each applies to ids after its point.
    changes: VecDeque<(P, Filter)>,
    consumer: Option<String>,
    /// The last id the client was sent or passed over (everything up to it is done).
    sent_up_to: P,
    /// The highest id acked by the consumer.
    acked: P,
    committed: P,
    /// The upper bound of the read in flight.
    reading: Option<P>,
    /// The room the read in flight holds in the send queue: its limit.
    reserved: usize,
    /// Frames handed to the transport and not yet written.
    queued: usize,
    /// Since when the send queue has been full.
    full_since: Option<Millis>,
    hello_deadline: Option<Millis>,
    next_ping: Option<Millis>,
    /// A pong is owed since this ping.
    ping_outstanding: Option<Millis>,
    out: VecDeque<HubOutput<P>>,
}

impl HubSession {
    /// A session before the upgrade, counting in the SQLite log's integer ids.
    pub fn new(config: HubConfig) -> HubSession {
        HubSession::counting(config)
    }

    /// How far behind the log the client is: committed ids not yet sent or passed over.
    pub fn lag(&self) -> u64 {
        self.committed.saturating_sub(self.sent_up_to)
    }
}

impl<P: HubPosition> HubSession<P> {
    /// A session before the upgrade, counting in positions `P`: `u64` for the SQLite log (as
    /// [`new`](HubSession::new)), [`StreamId`] for a Redis Stream, whose ids the frames then
    /// carry as strings (`"event_id":"1764100000000-0"`).
    ///
    /// ```
    /// use openflume_proto::hub::{HubConfig, HubInput, HubOutput, HubSession, StreamId};
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
    /// let mut session = HubSession::<StreamId>::counting(HubConfig::new("i-1"));
    /// let committed = "1764100000000-4".parse().unwrap();
    /// session.handle_input(now, HubInput::Start { committed });
    /// session.handle_input(now, HubInput::Text(r#"{"type":"hello","after_event_id":"1764100000000-1"}"#.into()));
    /// let Some(HubOutput::Send(hello_ok)) = session.poll_output() else { panic!() };
    /// assert!(hello_ok.contains(r#""replay_until":"1764100000000-4""#));
    /// ```
    pub fn counting(config: HubConfig) -> HubSession<P> {
        HubSession {
            config,
            phase: Phase::AwaitingHello,
            filter: Filter::default(),
            changes: VecDeque::new(),
            consumer: None,
            sent_up_to: P::default(),
            acked: P::default(),
            committed: P::default(),
            reading: None,
            reserved: 0,
            queued: 0,
            full_since: None,
            hello_deadline: None,
            next_ping: None,
            ping_outstanding: None,
            out: VecDeque::new(),
        }
    }

    /// The next thing to do, until `None`.
    pub fn poll_output(&mut self) -> Option<HubOutput<P>> {
        self.out.pop_front()
    }

    /// When to feed [`HubInput::Timer`].
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.phase == Phase::Closed {
            return None;
        }
        let stall = self
            .full_since
            .map(|since| since + self.config.stall_timeout_ms);
        let pong = self
            .ping_outstanding
            .map(|since| since + 2 * self.config.ping_interval_ms);
        [self.hello_deadline, self.next_ping, stall, pong]
            .into_iter()
            .flatten()
            .min()
    }

    /// True once the session closed.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The last id the client was sent or passed over (its subscriptions did not match), once
    /// the hello is answered: a driver compares it with the log's last id to report the
    /// client's lag (`/metrics`) without waiting for the session to be told of each commit.
    ///
    /// ```
    /// use openflume_proto::hub::{HubConfig, HubInput, HubSession};
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
    /// let mut session = HubSession::new(HubConfig::new("i-1"));
    /// session.handle_input(now, HubInput::Start { committed: 9 });
    /// assert_eq!(session.position(), None);
    /// session.handle_input(now, HubInput::Text(r#"{"type":"hello","after_event_id":4}"#.into()));
    /// assert_eq!(session.position(), Some(4));
    /// ```
    pub fn position(&self) -> Option<P> {
        (self.phase == Phase::Streaming).then_some(self.sent_up_to)
    }

    /// The durable consumer the hello named, if any.
    ///
    /// ```
    /// use openflume_proto::hub::{HubConfig, HubInput, HubSession};
    /// use openflume_proto::{Millis, Now, UnixMillis};
    /// let now = Now { mono: Millis(0), wall: UnixMillis(0) };
    /// let mut session = HubSession::new(HubConfig::new("i-1"));
    /// session.handle_input(now, HubInput::Start { committed: 0 });
    /// session.handle_input(now, HubInput::Text(r#"{"type":"hello","consumer":"triage"}"#.into()));
    /// assert_eq!(session.consumer(), Some("triage"));
    /// ```
    pub fn consumer(&self) -> Option<&str> {
        self.consumer.as_deref()
    }

    /// Handles one input at `now`. Input after the close is ignored.
    pub fn handle_input(&mut self, now: Now, input: HubInput<P>) {
        if self.phase == Phase::Closed {
            return;
        }
        match input {
            HubInput::Start { committed } => {
                self.committed = committed;
                self.hello_deadline = Some(now.mono + self.config.hello_timeout_ms);
            }
            HubInput::Committed { last_id } => self.committed = self.committed.max(last_id),
            HubInput::Text(text) => self.on_text(now, &text),
            HubInput::Binary => self.close(1003, "binary frames are not supported".into()),
            HubInput::Oversized { .. } => self.close(
                1009,
                format!("frame larger than {} bytes", self.config.max_frame_bytes),
            ),
            HubInput::Pong => self.ping_outstanding = None,
            HubInput::Read { items, up_to } => {
                // Rendered only when sent, as before: a passed-over item costs no frame.
                let after = self.sent_up_to;
                let wanted = items
                    .into_iter()
                    .filter(|stored| stored.event_id > after && self.filter.matches(&stored.item))
                    .map(|stored| RenderedItem::render(stored.event_id, &stored.item))
                    .collect();
                self.on_read(now, wanted, up_to);
            }
            HubInput::ReadRendered { items, up_to } => self.on_read(now, items, up_to),
            HubInput::Consumer { acked } => self.on_consumer(acked),
            HubInput::Sent { frames } => {
                self.queued = self.queued.saturating_sub(frames);
                if self.queued < self.config.send_queue {
                    self.full_since = None;
                }
            }
            HubInput::Timer => self.on_timer(now),
            HubInput::Shutdown => {
                let reason = format!(
                    "server shutting down; resume after event {}",
                    self.sent_up_to
                );
                self.close(1001, reason);
            }
        }
        self.read_more();
    }

    fn on_text(&mut self, now: Now, text: &str) {
        if text.len() > self.config.max_frame_bytes {
            return self.close(
                1009,
                format!("frame larger than {} bytes", self.config.max_frame_bytes),
            );
        }
        let message = match serde_json::from_str::<ClientMessage<P>>(text) {
            Ok(message) => message,
            Err(error) => {
                let what = if self.phase == Phase::AwaitingHello {
                    "the first frame must be a hello"
                } else {
                    "invalid message"
                };
                return self.close(1003, format!("{what}: {}", short(&error.to_string())));
            }
        };
        match (message, &self.phase) {
            (
                ClientMessage::Hello {
                    after_event_id,
                    consumer,
                    subscriptions,
                },
                Phase::AwaitingHello,
            ) => {
                self.hello_deadline = None;
                self.filter = subscriptions;
                self.next_ping = Some(now.mono + self.config.ping_interval_ms);
                match consumer {
                    Some(name) if !name.is_empty() && name.len() <= 128 => {
                        self.out
                            .push_back(HubOutput::LookupConsumer { name: name.clone() });
                        self.consumer = Some(name);
                        self.phase = Phase::AwaitingConsumer {
                            after: after_event_id,
                        };
                    }
                    Some(_) => self.close(1008, "a consumer name is 1 to 128 bytes".into()),
                    None => self.stream_from(after_event_id.unwrap_or(self.committed)),
                }
            }
            (_, Phase::AwaitingHello) => self.close(1003, "the first frame must be a hello".into()),
            (ClientMessage::Hello { .. }, _) => self.close(1008, "a second hello".into()),
            (ClientMessage::Ack { event_id }, Phase::Streaming) => self.on_ack(event_id),
            (
                ClientMessage::Subscribe {
                    subscriptions,
                    since,
                },
                Phase::Streaming,
            ) => {
                let mut next = self.latest_filter().clone();
                next.extend(subscriptions);
                let max = self.config.max_frame_bytes;
                if next.size() > max {
                    return self.close(1008, format!("subscriptions larger than {max} bytes"));
                }
                self.change(since, next);
            }
            (
                ClientMessage::Unsubscribe {
                    subscriptions,
                    since,
                },
                Phase::Streaming,
            ) => {
                let mut next = self.latest_filter().clone();
                match next.cannot_remove(&subscriptions) {
                    Some(list) => self.close(
                        1008,
                        format!("cannot unsubscribe from {list}: it is not a list (everything)"),
                    ),
                    None => {
                        next.remove(&subscriptions);
                        self.change(since, next);
                    }
                }
            }
            // Waiting for the consumer's cursor: the client should wait for hello_ok.
            (_, _) => self.close(1008, "a message before hello_ok".into()),
        }
    }

    fn on_consumer(&mut self, acked: Option<P>) {
        if let Phase::AwaitingConsumer { after } = self.phase {
            self.acked = acked.unwrap_or_default();
            self.stream_from(acked.or(after).unwrap_or(self.committed));
        }
    }

    /// Answers the hello and starts reading after `after`.
    fn stream_from(&mut self, after: P) {
        self.phase = Phase::Streaming;
        self.sent_up_to = after;
        let hello_ok = frame(&HelloOk {
            kind: "hello_ok",
            replay_until: self.committed,
            instance_id: &self.config.instance_id,
        });
        self.send(hello_ok);
    }

    fn on_ack(&mut self, event_id: P) {
        let Some(name) = self.consumer.clone() else {
            return self.close(1008, "ack without a consumer".into());
        };
        if event_id > self.sent_up_to {
            return self.close(
                1008,
                format!(
                    "ack of event {event_id}, beyond the last sent ({})",
                    self.sent_up_to
                ),
            );
        }
        // Cumulative: an older ack changes nothing.
        if event_id > self.acked {
            self.acked = event_id;
            self.out
                .push_back(HubOutput::AckConsumer { name, event_id });
        }
    }

    /// The filter that will be in force once every pending change is.
    fn latest_filter(&self) -> &Filter {
        self.changes
            .back()
            .map_or(&self.filter, |(_, filter)| filter)
    }

    /// Puts `next` in force for ids after `since`, or after the last one sent, or after the end
    /// of the read in flight, whichever is latest: that read was asked of the log with the old
    /// filter, so it cannot hold what the new one adds.
    fn change(&mut self, since: P, next: Filter) {
        let point = since
            .max(self.sent_up_to)
            .max(self.reading.unwrap_or_default())
            .max(self.changes.back().map_or(P::default(), |(at, _)| *at));
        if point > self.sent_up_to && self.changes.len() >= MAX_WAITING_CHANGES {
            return self.close(
                1008,
                format!("more than {MAX_WAITING_CHANGES} subscription changes waiting"),
            );
        }
        // A read in flight may still fill its room: count it, so the bound holds after it too.
        if self.queued + self.reserved >= self.config.send_queue + MAX_QUEUED_ANSWERS {
            let reason = format!(
                "more than {MAX_QUEUED_ANSWERS} answers unread; resume after event {}",
                self.sent_up_to
            );
            return self.close(1008, reason);
        }
        self.changes.push_back((point, next));
        self.promote_changes();
        let subscribed = frame(&Subscribed {
            kind: "subscribed",
            effective_after: point,
        });
        self.send(subscribed);
    }

    fn promote_changes(&mut self) {
        while let Some((at, _)) = self.changes.front()
            && *at <= self.sent_up_to
        {
            if let Some((_, filter)) = self.changes.pop_front() {
                self.filter = filter;
            }
        }
    }

    fn on_read(&mut self, now: Now, items: Vec<RenderedItem<P>>, up_to: P) {
        let Some(until) = self.reading.take() else {
            // No read was asked for: a driver bug, nothing to send.
            return;
        };
        self.reserved = 0;
        for item in items {
            let keys = (&*item.source, &*item.kind, item.conversation_key.as_deref());
            if item.event_id <= self.sent_up_to || !self.filter.matches_keys(keys.0, keys.1, keys.2)
            {
                continue;
            }
            self.queued += 1;
            self.out.push_back(HubOutput::Send(item.frame));
            self.sent_up_to = item.event_id;
        }
        self.sent_up_to = self.sent_up_to.max(up_to.min(until));
        self.promote_changes();
        if self.queued >= self.config.send_queue {
            self.full_since.get_or_insert(now.mono);
        }
    }

    fn read_more(&mut self) {
        // One filter per read: stop at the next subscription change.
        let until = self
            .changes
            .front()
            .map_or(self.committed, |(at, _)| self.committed.min(*at));
        if self.phase != Phase::Streaming
            || self.reading.is_some()
            || until <= self.sent_up_to
            || self.queued >= self.config.send_queue
        {
            return;
        }
        let limit = self
            .config
            .page
            .min(self.config.send_queue - self.queued)
            .max(1);
        self.reading = Some(until);
        self.reserved = limit;
        self.out.push_back(HubOutput::ReadLog {
            after: self.sent_up_to,
            until,
            limit,
            filter: self.filter.clone(),
        });
    }

    fn on_timer(&mut self, now: Now) {
        if self.hello_deadline.is_some_and(|at| at <= now.mono) {
            return self.close(1002, "no hello in time".into());
        }
        if let Some(since) = self.full_since
            && since + self.config.stall_timeout_ms <= now.mono
        {
            let reason = format!(
                "send queue full for {} ms; resume after event {}",
                self.config.stall_timeout_ms, self.sent_up_to
            );
            return self.close(1008, reason);
        }
        if let Some(since) = self.ping_outstanding
            && since + 2 * self.config.ping_interval_ms <= now.mono
        {
            return self.close(1001, "no pong in time".into());
        }
        if let Some(at) = self.next_ping
            && at <= now.mono
        {
            self.out.push_back(HubOutput::Ping);
            self.ping_outstanding.get_or_insert(now.mono);
            self.next_ping = Some(now.mono + self.config.ping_interval_ms);
        }
    }

    fn send(&mut self, frame: String) {
        self.queued += 1;
        self.out.push_back(HubOutput::Send(frame.into()));
    }

    fn close(&mut self, code: u16, mut reason: String) {
        // A reason can quote the client (a parse error names an unknown field): cut by bytes,
        // on a character boundary, not by characters.
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        self.out.push_back(HubOutput::Close { code, reason });
        self.phase = Phase::Closed;
    }
}

/// `hello_ok`, fields in the documented order.
#[derive(Serialize)]
struct HelloOk<'a, P> {
    #[serde(rename = "type")]
    kind: &'static str,
    replay_until: P,
    instance_id: &'a str,
}

/// `subscribed`.
#[derive(Serialize)]
struct Subscribed<P> {
    #[serde(rename = "type")]
    kind: &'static str,
    effective_after: P,
}

/// `item`: the item exactly as the JSON Lines output prints it.
#[derive(Serialize)]
struct ItemFrame<'a, P> {
    #[serde(rename = "type")]
    kind: &'static str,
    event_id: P,
    item: &'a Item,
}

/// A frame's text; the frames are plain structs of strings and numbers, so this cannot fail.
fn frame(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Shared text (`Arc<str>`) as a JSON string, without serde's `rc` feature for the whole
/// workspace.
mod shared_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub(super) fn serialize<S: Serializer>(text: &Arc<str>, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_str(text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(from).map(Arc::from)
    }

    pub(super) mod optional {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            text: &Option<Arc<str>>,
            to: S,
        ) -> Result<S::Ok, S::Error> {
            match text {
                Some(text) => to.serialize_some(&**text),
                None => to.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            from: D,
        ) -> Result<Option<Arc<str>>, D::Error> {
            Option::<String>::deserialize(from).map(|text| text.map(Arc::from))
        }
    }
}

/// A parse error cut short for a close reason (which [`HubSession::close`] then cuts to
/// [`MAX_REASON_BYTES`]).
fn short(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The longest close reason: a close frame's payload is at most 125 bytes, 2 of them the code
/// (RFC 6455 §5.5), so a longer one is a frame peers refuse.
const MAX_REASON_BYTES: usize = 123;

#[cfg(test)]
mod tests;
