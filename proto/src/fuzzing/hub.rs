//! The `hub_session` target's harness: one subscriber's session driven against an in-memory log,
//! answered as `serve`'s drivers answer it, and checked against a model of what the client must
//! be sent.
//!
//! The model reads every client text as a `serde_json::Value`, apart from the session's typed
//! parse, and keeps subscriptions as sets. From the hello it knows where the client starts;
//! from each `subscribed` frame, the point after which a change is in force. An item frame must
//! then be the next item of the log, after the last one sent or passed over, that the
//! subscriptions in force for its id match: so ids rise, each matches, and none is skipped.

use super::{MAX_VIRTUAL_TIME, Reader, delay};
use crate::hub::{
    Filter, HubConfig, HubInput, HubOutput, HubSession, MAX_QUEUED_ANSWERS, MAX_WAITING_CHANGES,
    RenderedItem, StoredItem,
};
use crate::{Event, Item, Level, Log, Millis, Now, RawJson, UnixMillis};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};

const SOURCES: [&str; 4] = ["slack", "discord", "github", "cron"];
/// An item's type; `log` makes the item a log, as filters name every log.
const TYPES: [&str; 4] = ["message", "reaction", "push", "log"];
const KEYS: [&str; 3] = ["k1", "k2", "k3"];
/// The three lists of a `subscriptions` object, in [`Subs::lists`] order.
const FIELDS: [&str; 3] = ["sources", "types", "conversation_keys"];
/// The longest close reason: a close frame's payload is at most 125 bytes, 2 of them the code.
const MAX_REASON_BYTES: usize = 123;
/// After the last input, timers run this long: past the hello, stall and pong deadlines.
const SETTLE_MS: u64 = 20_000;

/// Runs one session over the program `data` describes.
pub(super) fn run(data: &[u8]) {
    let mut reader = Reader { data };
    let flags = reader.byte();
    let config = HubConfig {
        instance_id: "fuzz".to_owned(),
        send_queue: usize::from(flags & 3) + 1,
        page: usize::from(flags >> 2 & 3) + 1,
        max_frame_bytes: 512,
        stall_timeout_ms: 4_000,
        hello_timeout_ms: 2_000,
        ping_interval_ms: 3_000,
    };
    let mut run = Run {
        session: HubSession::new(config.clone()),
        config,
        now: Millis(0),
        rows: Vec::new(),
        top: 0,
        told: 0,
        consumers: HashMap::new(),
        answers: VecDeque::new(),
        rendered: false,
        late_timers: false,
        model: Model::default(),
    };
    for _ in 0..reader.byte() % 8 {
        let spec = reader.byte();
        run.append(spec);
    }
    // Consumer "a" may have acked anything, even past the log's end; "b" is new.
    let acked = reader.byte();
    if acked != 0 {
        run.consumers
            .insert("a".to_owned(), u64::from(acked) % (run.top + 8));
    }
    run.told = run.top;
    run.feed(HubInput::Start { committed: run.top });
    let mut steps = 0;
    while !reader.is_empty() && steps < 256 && run.now < MAX_VIRTUAL_TIME {
        steps += 1;
        let target = run.now + delay(&mut reader);
        let mode = reader.byte();
        run.rendered = mode & 1 == 1;
        run.late_timers = mode & 2 == 2;
        run.advance_to(target);
        let input = run.input(&mut reader);
        run.feed(input);
        // One step in eight leaves the driver's answers for later (a slow log read).
        if mode >> 5 != 7 {
            run.answer_all();
        }
        if steps % 32 == 0 {
            run.check_size();
        }
    }
    run.answer_all();
    run.advance_to(run.now + SETTLE_MS);
    run.check_size();
}

/// The session, the log it reads and the driver's part.
struct Run {
    session: HubSession,
    config: HubConfig,
    now: Millis,
    /// The log: ids ascending, with gaps.
    rows: Vec<Row>,
    /// The log's last id (rows or not).
    top: u64,
    /// The highest committed id the session was told.
    told: u64,
    /// Durable consumers' acks, as the log stores them.
    consumers: HashMap<String, u64>,
    /// Reads and lookups the driver owes, in order.
    answers: VecDeque<HubInput>,
    /// Answer reads as the shared feed does (rendered, fully filtered), or as the log does.
    rendered: bool,
    /// Fire due timers late, all at once, rather than each at its deadline.
    late_timers: bool,
    model: Model,
}

/// One item of the log, and what filters look at, picked apart from the session's code.
struct Row {
    id: u64,
    source: &'static str,
    kind: &'static str,
    key: Option<&'static str>,
    item: Item,
    rendered: RenderedItem,
}

/// What the client must see, and what the session was asked.
#[derive(Default)]
struct Model {
    phase: Phase,
    /// The hello's `after_event_id`, for a consumer's start.
    hello_after: Option<u64>,
    /// The hello's subscriptions, in force from the start.
    hello_subs: Subs,
    consumer: Option<String>,
    /// Where the client starts: every id up to here is not its to get.
    start: u64,
    /// Subscription changes, each in force for ids after its point; points never fall.
    changes: Vec<(u64, Subs)>,
    /// Every matching item up to here was sent.
    checked_through: u64,
    acked: u64,
    /// Text frames handed to the transport and not yet written.
    outstanding: usize,
    /// The upper bound of the read the driver owes an answer to.
    reading: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    AwaitingHello,
    AwaitingConsumer,
    Streaming,
    Closed,
}

/// A list of subscriptions as the model keeps them: `None` is everything.
type List = Option<BTreeSet<String>>;

/// Subscriptions as sets: sources, types, conversation keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Subs {
    lists: [List; 3],
}

impl Subs {
    /// A `subscriptions` object the session accepts, or `None`.
    fn read(value: &Value) -> Option<Subs> {
        let map = value.as_object()?;
        if map.keys().any(|key| !FIELDS.contains(&key.as_str())) {
            return None;
        }
        let mut subs = Subs::default();
        for (list, field) in subs.lists.iter_mut().zip(FIELDS) {
            *list = match map.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::Array(values)) => Some(
                    values
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<Option<_>>()?,
                ),
                Some(_) => return None,
            };
        }
        Some(subs)
    }

    fn of(filter: &Filter) -> Subs {
        let set = |list: &Option<Vec<String>>| list.as_ref().map(|l| l.iter().cloned().collect());
        Subs {
            lists: [
                set(&filter.sources),
                set(&filter.types),
                set(&filter.conversation_keys),
            ],
        }
    }

    /// `subscribe`: values join the lists there are; "everything" stays everything.
    fn extend(&self, more: &Subs) -> Subs {
        let mut next = self.clone();
        for (mine, theirs) in next.lists.iter_mut().zip(&more.lists) {
            if let (Some(mine), Some(theirs)) = (mine.as_mut(), theirs) {
                mine.extend(theirs.iter().cloned());
            }
        }
        next
    }

    /// `unsubscribe`: values leave the lists; `None` when it names a list that is everything.
    fn remove(&self, less: &Subs) -> Option<Subs> {
        let mut next = self.clone();
        for (mine, theirs) in next.lists.iter_mut().zip(&less.lists) {
            match (mine.as_mut(), theirs) {
                (Some(mine), Some(theirs)) => mine.retain(|v| !theirs.contains(v)),
                (None, Some(_)) => return None,
                _ => {}
            }
        }
        Some(next)
    }

    /// As JSON carries the values at least: each, its quotes and a comma.
    fn size(&self) -> usize {
        let lists = self.lists.iter().flatten();
        lists.flatten().map(|value| value.len() + 3).sum()
    }

    fn matches(&self, row: &Row) -> bool {
        let passes = |list: &List, value: Option<&str>| {
            list.as_ref()
                .is_none_or(|set| value.is_some_and(|v| set.contains(v)))
        };
        passes(&self.lists[0], Some(row.source))
            && passes(&self.lists[1], Some(row.kind))
            && passes(&self.lists[2], row.key)
    }
}

/// A client message as the model reads it.
#[derive(Clone, Debug)]
enum Message {
    Hello {
        after: Option<u64>,
        consumer: Option<String>,
        subs: Subs,
    },
    Ack(u64),
    Change {
        add: bool,
        subs: Subs,
        since: u64,
    },
}

impl Message {
    /// The message `text` is, when the protocol accepts it in some phase.
    fn read(text: &str) -> Option<Message> {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let kind = map.get("type")?.as_str()?;
        let allowed: &[&str] = match kind {
            "hello" => &["type", "after_event_id", "consumer", "subscriptions"],
            "ack" => &["type", "event_id"],
            "subscribe" | "unsubscribe" => &["type", "subscriptions", "since"],
            _ => return None,
        };
        if map.keys().any(|key| !allowed.contains(&key.as_str())) {
            return None;
        }
        match kind {
            "hello" => Some(Message::Hello {
                after: match map.get("after_event_id") {
                    None | Some(Value::Null) => None,
                    Some(value) => Some(value.as_u64()?),
                },
                consumer: match map.get("consumer") {
                    None | Some(Value::Null) => None,
                    Some(value) => Some(value.as_str()?.to_owned()),
                },
                subs: match map.get("subscriptions") {
                    None => Subs::default(),
                    Some(value) => Subs::read(value)?,
                },
            }),
            "ack" => Some(Message::Ack(map.get("event_id")?.as_u64()?)),
            _ => Some(Message::Change {
                add: kind == "subscribe",
                subs: Subs::read(map.get("subscriptions")?)?,
                since: match map.get("since") {
                    None => 0,
                    Some(value) => value.as_u64()?,
                },
            }),
        }
    }
}

/// What an input was, for judging what it caused.
enum Cause {
    Text {
        message: Option<Message>,
        too_long: bool,
    },
    Timer,
    Binary,
    Oversized,
    Shutdown,
    Consumer(Option<u64>),
    /// Inputs that never close: commits, reads, writes, pongs, the start.
    Quiet,
}

/// What one input's outputs held, for the checks after them.
#[derive(Default)]
struct Seen {
    hello_ok: bool,
    subscribed: bool,
    lookup: bool,
    closed: Option<u16>,
    read_after: Option<u64>,
}

impl Run {
    fn now(&self) -> Now {
        Now {
            mono: self.now,
            wall: UnixMillis(1_764_100_000_000 + self.now.0 as i64),
        }
    }

    /// Commits one row after the log's end; `spec` picks its gap, source, type and key.
    fn append(&mut self, spec: u8) {
        let id = self.top + 1 + u64::from(spec >> 6);
        let source = SOURCES[usize::from(spec & 3)];
        let kind = TYPES[usize::from(spec >> 2 & 3)];
        let key = match spec >> 4 & 3 {
            0 => None,
            k => Some(KEYS[usize::from(k - 1)]),
        };
        let (item, key) = if kind == "log" {
            let log = Log::new(Level::Info, source, "status", "up", UnixMillis(0));
            (Item::Log(log), None)
        } else {
            let mut event = Event::new(source, kind, RawJson::null(), UnixMillis(0));
            if let Some(key) = key {
                event.meta.insert("conversation_key".into(), key.to_owned());
            }
            (Item::Event(event), key)
        };
        let rendered = RenderedItem::render(id, &item);
        self.rows.push(Row {
            id,
            source,
            kind,
            key,
            item,
            rendered,
        });
        self.top = id;
    }

    /// The next input the program names.
    fn input(&mut self, reader: &mut Reader<'_>) -> HubInput {
        match reader.byte() % 16 {
            0..=5 | 15 => HubInput::Text(self.message(reader).to_string()),
            6 => {
                let bytes = reader.bytes(2 * self.config.max_frame_bytes);
                HubInput::Text(String::from_utf8_lossy(bytes).into_owned())
            }
            7 | 8 => {
                for _ in 0..reader.byte() % 5 {
                    let spec = reader.byte();
                    self.append(spec);
                }
                let how = reader.byte();
                let last_id = match how % 8 {
                    // Ids with no row (a rolled-back transaction's).
                    5 => {
                        self.top += 1 + u64::from(how >> 3 & 3);
                        self.top
                    }
                    // A stale notice.
                    6 => self.told.saturating_sub(u64::from(how >> 3 & 3)),
                    7 => self.told,
                    _ => self.top,
                };
                self.told = self.told.max(last_id);
                HubInput::Committed { last_id }
            }
            9 | 10 | 14 => HubInput::Sent {
                frames: usize::from(reader.byte()) % (self.model.outstanding + 1),
            },
            11 => HubInput::Pong,
            // Early or spurious: the session must tolerate it.
            12 => HubInput::Timer,
            _ => match reader.byte() % 8 {
                0 => HubInput::Binary,
                1 => HubInput::Oversized {
                    size: 1 << reader.byte().min(40),
                },
                2 => HubInput::Shutdown,
                // A lookup's answer nobody asked for, or a second one.
                3 => HubInput::Consumer { acked: None },
                4 => HubInput::Consumer {
                    acked: Some(u64::from(reader.byte()) % (self.top + 8)),
                },
                _ => HubInput::Pong,
            },
        }
    }

    /// A client message: mostly well formed, with fuzzed values of every kind.
    fn message(&self, reader: &mut Reader<'_>) -> Value {
        let kind = reader.byte();
        let mut map = Map::new();
        // The low nibble picks the message, the high one what it carries.
        match (kind & 0x0f) % 5 {
            0 => {
                map.insert("type".into(), "hello".into());
                if kind & 0x10 != 0 {
                    map.insert("after_event_id".into(), self.position_value(reader));
                }
                if kind & 0x20 != 0 {
                    map.insert("consumer".into(), name_value(reader));
                }
                if kind & 0x40 != 0 {
                    map.insert("subscriptions".into(), subs_value(reader));
                }
            }
            1 => {
                map.insert("type".into(), "ack".into());
                map.insert("event_id".into(), self.position_value(reader));
            }
            2 | 3 => {
                let kind_name = if (kind & 0x0f) % 5 == 2 {
                    "subscribe"
                } else {
                    "unsubscribe"
                };
                map.insert("type".into(), kind_name.into());
                map.insert("subscriptions".into(), subs_value(reader));
                if kind & 0x10 != 0 {
                    map.insert("since".into(), self.position_value(reader));
                }
            }
            _ => {
                let name = match reader.byte() % 6 {
                    0 => json!("hello"),
                    1 => json!("ack"),
                    2 => json!("bogus"),
                    // An unknown variant named in non-ASCII: the parse error quotes it.
                    3 => json!("é".repeat(60)),
                    4 => json!(7),
                    _ => Value::Null,
                };
                map.insert("type".into(), name);
                if kind & 0x10 != 0 {
                    map.insert("ünknöwn-fïeld-ünknöwn-fïeld-ünknöwn-fïeld".into(), json!(1));
                }
            }
        }
        Value::Object(map)
    }

    /// An id, or something that is not one.
    fn position_value(&self, reader: &mut Reader<'_>) -> Value {
        let b = reader.byte();
        match b {
            0..=159 => json!(u64::from(b) % (self.top + 4)),
            160..=175 => json!(u64::MAX - u64::from(b & 1)),
            176..=191 => json!(self.top + 1 + u64::from(b & 7)),
            192..=207 => json!(-1 - i64::from(b & 3)),
            208..=215 => json!(1.5),
            // Past u64: a float to serde_json.
            216..=223 => json!(18_446_744_073_709_551_616.0),
            224..=239 => json!((b & 7).to_string()),
            240..=247 => Value::Null,
            _ => json!({ "id": 1 }),
        }
    }

    /// Fires every timer due by `target` (each at its deadline, or all late at `target`), then
    /// moves the clock there.
    fn advance_to(&mut self, target: Millis) {
        let mut fired = 0;
        while let Some(deadline) = self.session.poll_timeout()
            && deadline <= target
        {
            fired += 1;
            assert!(fired < 10_000, "timers keep firing at {deadline:?}");
            let at = if self.late_timers { target } else { deadline };
            self.now = self.now.max(at);
            self.feed(HubInput::Timer);
            if let Some(next) = self.session.poll_timeout() {
                assert!(
                    next > self.now,
                    "a timer fed at {:?} left a deadline due: {next:?}",
                    self.now
                );
            }
        }
        self.now = self.now.max(target);
    }

    /// Performs what the driver owes: log reads and consumer lookups, in order, and those
    /// their answers cause.
    fn answer_all(&mut self) {
        let mut answered = 0;
        while let Some(answer) = self.answers.pop_front() {
            answered += 1;
            assert!(answered < 100_000, "the session keeps reading");
            self.feed(answer);
        }
    }

    /// The answer to a `ReadLog`, as `serve` gives it: from the shared feed (rendered items the
    /// whole filter passes, `hub_feed::Ring::answer`) or from the log (items its sources pass,
    /// `hub_feed::read_answer`).
    fn read(&self, after: u64, until: u64, limit: usize, filter: &Filter) -> HubInput {
        if self.rendered {
            let limit = limit.max(1);
            let items: Vec<RenderedItem> = self
                .rows_after(after)
                .iter()
                .take_while(|row| row.id <= until)
                .filter(|row| {
                    let item = &row.rendered;
                    let key = item.conversation_key.as_deref();
                    filter.matches_keys(&item.source, &item.kind, key)
                })
                .take(limit)
                .map(|row| row.rendered.clone())
                .collect();
            let up_to = match items.last() {
                Some(last) if items.len() >= limit => last.event_id,
                _ => until,
            };
            return HubInput::ReadRendered { items, up_to };
        }
        let source_passes = |row: &&Row| {
            filter
                .sources
                .as_ref()
                .is_none_or(|list| list.iter().any(|s| s == row.item.source()))
        };
        let entries: Vec<&Row> = if limit == 0 {
            Vec::new()
        } else {
            self.rows_after(after)
                .iter()
                .filter(source_passes)
                .take(limit)
                .collect()
        };
        let full = entries.len() >= limit;
        let mut items = Vec::new();
        let mut cut = false;
        for row in entries {
            if row.id > until {
                cut = true;
                break;
            }
            items.push(StoredItem {
                event_id: row.id,
                item: row.item.clone(),
            });
        }
        let up_to = match items.last() {
            Some(last) if full && !cut => last.event_id,
            _ => until,
        };
        HubInput::Read { items, up_to }
    }

    /// Feeds one input, drains every output and checks them.
    fn feed(&mut self, input: HubInput) {
        let cause = match &input {
            HubInput::Text(text) => Cause::Text {
                message: Message::read(text),
                too_long: text.len() > self.config.max_frame_bytes,
            },
            HubInput::Timer => Cause::Timer,
            HubInput::Binary => Cause::Binary,
            HubInput::Oversized { .. } => Cause::Oversized,
            HubInput::Shutdown => Cause::Shutdown,
            HubInput::Consumer { acked } => Cause::Consumer(*acked),
            _ => Cause::Quiet,
        };
        match &input {
            HubInput::Read { .. } | HubInput::ReadRendered { .. } => self.model.reading = None,
            HubInput::Sent { frames } => self.model.outstanding -= frames,
            _ => {}
        }
        let position_before = self.session.position();
        let phase_before = self.model.phase;
        let now = self.now();
        self.session.handle_input(now, input);
        let mut seen = Seen::default();
        while let Some(output) = self.session.poll_output() {
            assert_ne!(
                self.model.phase,
                Phase::Closed,
                "output after the close: {output:?}"
            );
            self.output(output, &cause, position_before, &mut seen);
        }
        self.after_input(&cause, phase_before, &seen);
    }

    fn output(
        &mut self,
        output: HubOutput,
        cause: &Cause,
        position_before: Option<u64>,
        seen: &mut Seen,
    ) {
        match output {
            HubOutput::Send(text) => {
                self.model.outstanding += 1;
                self.frame(&text, cause, position_before, seen);
            }
            HubOutput::Ping => assert_ne!(self.model.phase, Phase::AwaitingHello, "ping"),
            HubOutput::Close { code, reason } => {
                assert!(
                    reason.len() <= MAX_REASON_BYTES,
                    "a close reason of {} bytes: {reason}",
                    reason.len()
                );
                check_close_code(code, cause, self.model.phase);
                self.model.phase = Phase::Closed;
                seen.closed = Some(code);
            }
            HubOutput::ReadLog {
                after,
                until,
                limit,
                filter,
            } => {
                let model = &self.model;
                assert_eq!(model.phase, Phase::Streaming, "a read before hello_ok");
                assert_eq!(model.reading, None, "a second read in flight");
                assert!(
                    after < until && until <= self.told,
                    "read {after}..={until}"
                );
                assert!(
                    model.outstanding < self.config.send_queue
                        && (1..=self.config.page).contains(&limit)
                        && limit <= self.config.send_queue - model.outstanding,
                    "read of {limit} with {} frames queued",
                    model.outstanding
                );
                // One filter per read: it stops at the next change's point.
                let next_point = model.changes.iter().map(|(p, _)| *p).find(|p| *p > after);
                assert!(
                    next_point.is_none_or(|p| until <= p),
                    "read to {until} across a change at {next_point:?}"
                );
                assert_eq!(
                    Subs::of(&filter),
                    *self.model.subs_for(after + 1),
                    "read with another filter than the one in force"
                );
                self.model.reading = Some(until);
                seen.read_after = Some(after);
                let answer = self.read(after, until, limit, &filter);
                self.answers.push_back(answer);
            }
            HubOutput::LookupConsumer { name } => {
                assert!(
                    matches!(cause, Cause::Text { message: Some(Message::Hello { consumer: Some(c), .. }), .. } if *c == name),
                    "a lookup of {name:?} not asked for"
                );
                assert!((1..=128).contains(&name.len()), "a lookup of {name:?}");
                self.model.phase = Phase::AwaitingConsumer;
                seen.lookup = true;
                let acked = self.consumers.get(&name).copied();
                self.answers.push_back(HubInput::Consumer { acked });
            }
            HubOutput::AckConsumer { name, event_id } => {
                assert_eq!(self.model.consumer.as_ref(), Some(&name), "ack for another");
                assert!(
                    matches!(cause, Cause::Text { message: Some(Message::Ack(id)), .. } if *id == event_id),
                    "an ack the client did not send"
                );
                assert!(
                    event_id > self.model.acked && Some(event_id) <= position_before,
                    "ack of {event_id}: acked {}, sent up to {position_before:?}",
                    self.model.acked
                );
                self.model.acked = event_id;
                self.consumers.insert(name, event_id);
            }
        }
    }

    /// A text frame: an item, `hello_ok` or `subscribed`.
    fn frame(&mut self, text: &str, cause: &Cause, position_before: Option<u64>, seen: &mut Seen) {
        if let Some(rest) = text.strip_prefix(r#"{"type":"item","event_id":"#) {
            let digits = rest.split(',').next().unwrap_or_default();
            let Ok(id) = digits.parse::<u64>() else {
                panic!("an item frame without an id: {text}");
            };
            return self.item(id, text);
        }
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            panic!("a frame that is not JSON: {text}");
        };
        match value["type"].as_str() {
            Some("hello_ok") => {
                assert!(!seen.hello_ok, "two hello_ok");
                assert_eq!(value["replay_until"], json!(self.told), "{text}");
                assert_eq!(value["instance_id"], json!("fuzz"), "{text}");
                let start = match (cause, self.model.phase) {
                    (
                        Cause::Text {
                            message:
                                Some(Message::Hello {
                                    after,
                                    consumer: None,
                                    subs,
                                }),
                            ..
                        },
                        Phase::AwaitingHello,
                    ) => {
                        self.model.hello_subs = subs.clone();
                        after.unwrap_or(self.told)
                    }
                    (Cause::Consumer(acked), Phase::AwaitingConsumer) => {
                        acked.or(self.model.hello_after).unwrap_or(self.told)
                    }
                    _ => panic!("hello_ok out of turn: {text}"),
                };
                self.model.phase = Phase::Streaming;
                self.model.start = start;
                self.model.checked_through = start;
                seen.hello_ok = true;
            }
            Some("subscribed") => {
                let Cause::Text {
                    message: Some(Message::Change { add, subs, since }),
                    ..
                } = cause
                else {
                    panic!("subscribed without a change: {text}");
                };
                assert!(!seen.subscribed, "two subscribed for one change");
                let model = &mut self.model;
                let last = model.changes.last().map_or(0, |(p, _)| *p);
                let expected = (*since)
                    .max(position_before.unwrap_or_default())
                    .max(model.reading.unwrap_or_default())
                    .max(last);
                assert_eq!(value["effective_after"], json!(expected), "{text}");
                let latest = model.latest();
                let next = if *add {
                    latest.extend(subs)
                } else {
                    let Some(next) = latest.remove(subs) else {
                        panic!("unsubscribed from a list that is everything: {text}");
                    };
                    next
                };
                model.changes.push((expected, next));
                seen.subscribed = true;
            }
            _ => panic!("an unknown frame: {text}"),
        }
    }

    /// An item frame: the next matching item of the log, as rendered.
    fn item(&mut self, id: u64, text: &str) {
        let model = &self.model;
        assert_eq!(model.phase, Phase::Streaming, "an item before hello_ok");
        assert!(
            id > model.checked_through,
            "item {id} after {} was passed",
            model.checked_through
        );
        assert!(id <= self.told, "item {id} beyond the commit {}", self.told);
        let Some(row) = self.rows_after(id - 1).first().filter(|row| row.id == id) else {
            panic!("item {id} is not in the log");
        };
        assert_eq!(text, &*row.rendered.frame, "item {id} rendered otherwise");
        assert!(
            model.subs_for(id).matches(row),
            "item {id} does not match the subscriptions in force"
        );
        self.check_passed_over(id - 1);
        self.model.checked_through = id;
    }

    /// Every row after what was checked and up to `through` was not the client's.
    fn check_passed_over(&self, through: u64) {
        let model = &self.model;
        let rows = self.rows_after(model.checked_through);
        for row in rows.iter().take_while(|row| row.id <= through) {
            assert!(
                !model.subs_for(row.id).matches(row),
                "item {} matches and was skipped (checked through {}, now {through})",
                row.id,
                model.checked_through
            );
        }
    }

    /// The rows with ids above `id`.
    fn rows_after(&self, id: u64) -> &[Row] {
        let first = self.rows.partition_point(|row| row.id <= id);
        self.rows.get(first..).unwrap_or_default()
    }

    /// Checks after every input: what it had to cause, the session's position and timer, the
    /// send queue's bound.
    fn after_input(&mut self, cause: &Cause, phase_before: Phase, seen: &Seen) {
        if let Cause::Text { message, too_long } = cause
            && phase_before != Phase::Closed
        {
            if *too_long {
                assert_eq!(seen.closed, Some(1009), "a frame over the limit");
            }
            match (message, seen.closed) {
                (None, None) => panic!("the session took a message the protocol does not have"),
                (Some(Message::Hello { consumer: None, .. }), None) => {
                    assert!(seen.hello_ok, "a hello without hello_ok")
                }
                (Some(Message::Hello { after, .. }), None) => {
                    assert!(seen.lookup, "a consumer's hello without a lookup");
                    self.model.hello_after = *after;
                    if let Some(Message::Hello { consumer, subs, .. }) = message {
                        self.model.consumer.clone_from(consumer);
                        self.model.hello_subs = subs.clone();
                    }
                }
                (Some(Message::Change { .. }), None) => {
                    assert!(seen.subscribed, "a change without subscribed");
                }
                _ => {}
            }
        }
        if let Cause::Consumer(acked) = cause
            && seen.hello_ok
        {
            self.model.acked = acked.unwrap_or_default();
        }
        if let Some(after) = seen.read_after {
            assert_eq!(self.session.position(), Some(after), "read after elsewhere");
        }
        let closed = self.model.phase == Phase::Closed;
        assert_eq!(self.session.is_closed(), closed, "closed without a close");
        match self.session.poll_timeout() {
            Some(deadline) => assert!(
                !closed && deadline >= self.now,
                "timer at {deadline:?} at {:?} (closed: {closed})",
                self.now
            ),
            None => assert!(closed, "no timer in {:?}", self.model.phase),
        }
        if self.model.phase == Phase::Streaming {
            let Some(position) = self.session.position() else {
                panic!("streaming without a position");
            };
            assert!(
                position >= self.model.checked_through,
                "the position went back"
            );
            assert!(
                position <= self.told.max(self.model.start),
                "position {position} beyond the commit {}",
                self.told
            );
            self.check_passed_over(position);
            self.model.checked_through = position;
            let waiting = self.model.changes.iter().filter(|(p, _)| *p > position);
            assert!(
                waiting.count() <= MAX_WAITING_CHANGES,
                "more than {MAX_WAITING_CHANGES} changes waiting"
            );
            let size = self.model.latest().size();
            assert!(
                size <= self.config.max_frame_bytes,
                "subscriptions of {size} bytes"
            );
        }
        assert!(
            self.model.outstanding <= self.config.send_queue + MAX_QUEUED_ANSWERS,
            "{} frames queued, over {} + {MAX_QUEUED_ANSWERS}",
            self.model.outstanding,
            self.config.send_queue
        );
    }

    /// The session's whole state stays within what its bounds allow: its subscriptions (at
    /// most a frame's worth) and the changes waiting (each a copy of them).
    fn check_size(&self) {
        let size = format!("{:?}", self.session).len();
        // Debug writes a byte of a value as at most 8 (an escape), and adds its quotes.
        let bound = (MAX_WAITING_CHANGES + 2) * (8 * self.config.max_frame_bytes + 256) + 4096;
        assert!(size <= bound, "the session holds {size} bytes of state");
    }
}

impl Model {
    /// The subscriptions in force for `id`.
    fn subs_for(&self, id: u64) -> &Subs {
        self.changes
            .iter()
            .rev()
            .find(|(point, _)| *point < id)
            .map_or(&self.hello_subs, |(_, subs)| subs)
    }

    /// The subscriptions once every change is in force.
    fn latest(&self) -> &Subs {
        self.changes
            .last()
            .map_or(&self.hello_subs, |(_, subs)| subs)
    }
}

/// The close codes a session sends, each for what the protocol (README, `hub` docs) gives it:
/// 1001 "going away" at shutdown and when no pong came (the peer is gone); 1002 "protocol
/// error" when no hello came in time; 1003 "unsupported data" for a binary frame, text that is
/// not a message, or a first message that is not a hello; 1008 "policy violation" for a
/// message the protocol has but not now or not so (a second hello, an ack beyond what was sent
/// or without a consumer, a bad consumer name, unsubscribing from everything, too many
/// changes waiting or answers unread, subscriptions too large) and for a client whose queue
/// stayed full; 1009 "message too big". 1011 is the driver's (the log failed), 1000 nobody's.
fn check_close_code(code: u16, cause: &Cause, phase: Phase) {
    let fits = match cause {
        Cause::Text { too_long: true, .. } | Cause::Oversized => code == 1009,
        Cause::Text { message, .. } => match (message, code) {
            (None, 1003) => true,
            // A second hello, a bad consumer name, a hello while the cursor is looked up.
            (Some(Message::Hello { .. }), 1008) => true,
            (Some(Message::Hello { .. }), _) => false,
            (Some(_), 1003) => phase == Phase::AwaitingHello,
            (Some(_), 1008) => phase != Phase::AwaitingHello,
            _ => false,
        },
        Cause::Timer => match code {
            1002 => phase == Phase::AwaitingHello,
            1001 | 1008 => phase != Phase::AwaitingHello,
            _ => false,
        },
        Cause::Binary => code == 1003,
        Cause::Shutdown => code == 1001,
        Cause::Consumer(_) | Cause::Quiet => false,
    };
    assert!(fits, "close {code} in {phase:?}");
}

/// A consumer name: known, new, empty, too long, not a string, or 128 bytes of two-byte chars.
fn name_value(reader: &mut Reader<'_>) -> Value {
    match reader.byte() % 8 {
        0..=2 => json!("a"),
        3 => json!("b"),
        4 => json!(""),
        5 => json!("n".repeat(129)),
        6 => json!(5),
        _ => json!("é".repeat(64)),
    }
}

/// A `subscriptions` object with lists from the log's vocabulary (and beyond it), or something
/// that is not one.
fn subs_value(reader: &mut Reader<'_>) -> Value {
    let present = reader.byte();
    if present >> 4 == 0xf {
        return match present & 3 {
            0 => json!("slack"),
            1 => json!({ "sources": [1] }),
            2 => json!({ "sources": ["slack"], "extra": [] }),
            _ => Value::Null,
        };
    }
    let mut map = Map::new();
    for (i, field) in FIELDS.iter().enumerate() {
        if present >> i & 1 == 0 {
            continue;
        }
        let shape = reader.byte();
        if shape == 255 {
            map.insert((*field).into(), Value::Null);
            continue;
        }
        let values = (0..shape % 4)
            .map(|_| {
                let v = reader.byte();
                match v % 8 {
                    6 => "nope".to_owned(),
                    7 => format!("long-{}", "x".repeat(usize::from(v))),
                    n => {
                        let vocabulary: &[&str] = match i {
                            0 => &SOURCES,
                            1 => &TYPES,
                            _ => &KEYS,
                        };
                        vocabulary[usize::from(n) % vocabulary.len()].to_owned()
                    }
                }
            })
            .collect::<Vec<_>>();
        map.insert((*field).into(), json!(values));
    }
    Value::Object(map)
}
