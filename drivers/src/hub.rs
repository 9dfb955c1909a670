//! The firehose: every source's items reach the callbacks and every stream's bounded buffer.
//!
//! Who holds an item at each step, and who may forget it:
//! 1. A source's driver offers the item ([`Hub::offer`]) in the source's own task: the callbacks
//!    run on it, and every stream takes it into its buffer. A full drop-policy stream forgets an
//!    item (counted and reported in that stream). A full back-pressure stream does not take it:
//!    the offer comes back [`Offer::Blocked`], and the driver stops reading that source until
//!    the stream has room, then offers the item to the streams that still lack it.
//! 2. A back-pressure consumer holds an item once it has taken it from its stream, or, for a
//!    stream that [holds until commit](crate::ItemStream::holds_until_commit), once it has
//!    committed it (the CLI commits after the line is written to stdout).
//! 3. An event that asks for confirmation (`Output::Emit { confirm }`) gets a [`Receipt`]. It is
//!    settled once every back-pressure stream that took the event holds it; only then does the
//!    driver feed `Input::Delivered`, and only then does the machine acknowledge upstream (a
//!    Slack ack, GitHub validators). A stream whose consumer went away before holding the event
//!    abandons the receipt: nothing is acknowledged, and the service redelivers.
//!
//! 4. A confirmed event whose key another lane already offered (the same Slack `event_id` by
//!    Socket Mode and by the Events API, see [`twins`](crate::twins)) is not offered again: its
//!    confirmation waits for the first copy's receipt instead.
//!
//! A callback holds an item once it returned. Without any back-pressure stream, an event is
//! confirmed as soon as the callbacks returned.

use crate::clock::wall_now;
use crate::lock::lock;
use crate::metrics::Meters;
use crate::stream::{Buffer, ItemStream, Overflow, Pushed};
use crate::twins::Twins;
use openflume_proto::{Checkpoint, Item, Level, Log};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// A callback that receives every item.
///
/// [`FlumeBuilder::on_item`](crate::FlumeBuilder::on_item) takes one boxed like this, as well as
/// any closure: handy when the callback is chosen at run time.
///
/// ```
/// use openflume::{Flume, ItemCallback};
/// let verbose = std::env::var_os("VERBOSE").is_some();
/// let callback: ItemCallback = if verbose {
///     Box::new(|item| println!("{item:?}"))
/// } else {
///     Box::new(|item| println!("{}", item.source()))
/// };
/// let flume = Flume::builder().on_item(callback).build();
/// ```
pub type ItemCallback = Box<dyn FnMut(&Item) + Send>;
/// A callback that receives every error-level log.
///
/// [`FlumeBuilder::on_error`](crate::FlumeBuilder::on_error) takes one boxed like this, as well
/// as any closure.
///
/// ```
/// use openflume::{ErrorCallback, Flume};
/// let report: ErrorCallback = Box::new(|log| eprintln!("{} failed: {}", log.source, log.message));
/// let flume = Flume::builder().on_error(report).build();
/// ```
pub type ErrorCallback = Box<dyn FnMut(&Log) + Send>;

/// The sending side, cloned into every source's driver. The last clone to go ends every stream.
#[derive(Clone)]
pub(crate) struct Hub {
    shared: Arc<Shared>,
    /// The confluence group whose sources offer through this clone: stamped on their events as
    /// `meta.groupId`. `None` for a flume's own sources.
    group: Option<Arc<str>>,
}

struct Shared {
    min_level: Level,
    /// Held while an item is dispatched, so callbacks and streams see one order of items.
    callbacks: Mutex<Callbacks>,
    streams: Arc<Mutex<Streams>>,
    /// Recent keyed events, so a second transport's copy is not offered again.
    twins: Twins,
    /// Every source's counters.
    meters: Arc<Meters>,
}

struct Callbacks {
    on_item: Option<ItemCallback>,
    on_error: Option<ErrorCallback>,
}

#[derive(Default)]
struct Streams {
    buffers: Vec<Arc<Buffer>>,
    /// The hub is gone: a stream added now ends at once.
    closed: bool,
    /// Every back-pressure consumer there was went away and none has come since: nobody holds
    /// what comes now, so nothing may be acknowledged (a CLI whose stdout broke).
    orphaned: bool,
}

impl Streams {
    /// Drops the streams whose consumer went away, noting when the last back-pressure one did.
    fn forget_gone(&mut self) {
        let before = self.buffers.len();
        let had_backpressure = self.buffers.iter().any(|b| b.is_backpressure());
        self.buffers.retain(|buffer| !buffer.reader_gone());
        if self.buffers.len() < before
            && had_backpressure
            && !self.buffers.iter().any(|b| b.is_backpressure())
        {
            self.orphaned = true;
        }
    }
}

impl Drop for Shared {
    /// No item can come any more: each stream ends once its reader has drained it.
    fn drop(&mut self) {
        let mut streams = lock(&self.streams);
        streams.closed = true;
        for buffer in streams.buffers.drain(..) {
            buffer.close();
        }
    }
}

/// Creates a hub and the handle that adds streams to it.
pub(crate) fn hub(
    min_level: Level,
    on_item: Option<ItemCallback>,
    on_error: Option<ErrorCallback>,
) -> (Hub, Subscribers) {
    let streams = Arc::new(Mutex::new(Streams::default()));
    let shared = Shared {
        min_level,
        callbacks: Mutex::new(Callbacks { on_item, on_error }),
        streams: streams.clone(),
        twins: Twins::default(),
        meters: Arc::default(),
    };
    (
        Hub {
            shared: Arc::new(shared),
            group: None,
        },
        Subscribers { streams },
    )
}

/// Adds streams, before the sources start or while they run. Does not keep the hub alive.
#[derive(Clone)]
pub(crate) struct Subscribers {
    streams: Arc<Mutex<Streams>>,
}

impl Subscribers {
    /// A stream that receives every item offered from now on.
    pub(crate) fn subscribe(&self, capacity: usize, policy: Overflow) -> ItemStream {
        let mut streams = lock(&self.streams);
        let buffer = Arc::new(Buffer::new(capacity, policy, streams.closed));
        if !streams.closed {
            streams.orphaned &= policy != Overflow::Backpressure;
            streams.buffers.push(buffer.clone());
        }
        ItemStream::new(buffer)
    }
}

/// What became of an offered item.
pub(crate) enum Offer {
    /// Every stream took it (or dropped it by its policy).
    Taken(Receipt),
    /// Some back-pressure streams were full: offer it to them again once they have room.
    Blocked(Blocked),
}

/// The consumers an item must reach before it may be acknowledged upstream: each back-pressure
/// stream that took it, with the item's number in that stream. Empty when nobody waits.
#[derive(Default)]
pub(crate) struct Receipt {
    marks: Vec<(Arc<Buffer>, u64)>,
    /// A back-pressure consumer that should have held the item went away before taking it, and
    /// no other one took it.
    abandoned: bool,
}

/// Where a receipt stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Every consumer holds the item.
    Held,
    /// Some consumer has not taken it yet.
    Pending,
    /// A consumer went away without holding it: it must not be acknowledged.
    Abandoned,
}

impl Receipt {
    pub(crate) fn state(&self) -> Settled {
        if self.abandoned {
            return Settled::Abandoned;
        }
        let mut state = Settled::Held;
        for (buffer, seq) in &self.marks {
            if buffer.holds(*seq) {
                continue;
            }
            if buffer.reader_gone() {
                return Settled::Abandoned;
            }
            state = Settled::Pending;
        }
        state
    }

    /// Resolves once [`state`](Self::state) may have changed.
    pub(crate) async fn progressed(&self) {
        let waiting = self
            .marks
            .iter()
            .find(|(buffer, seq)| !buffer.holds(*seq) && !buffer.reader_gone());
        if let Some((buffer, seq)) = waiting {
            buffer.progressed_to(*seq).await;
        }
    }
}

/// An item that full back-pressure streams have yet to take.
pub(crate) struct Blocked {
    item: Item,
    full: Vec<Arc<Buffer>>,
    receipt: Option<Receipt>,
}

impl Blocked {
    /// The item waiting for room.
    pub(crate) fn item(&self) -> &Item {
        &self.item
    }

    /// Resolves once the first full stream has room (or lost its reader): time to [`retry`](Self::retry).
    pub(crate) async fn writable(&self) {
        if let Some(buffer) = self.full.first() {
            buffer.writable().await;
        }
    }

    /// Offers the item again to the streams that were full.
    pub(crate) fn retry(mut self) -> Offer {
        let mut still_full = Vec::new();
        let mut left = false;
        for buffer in std::mem::take(&mut self.full) {
            if buffer.reader_gone() {
                left = true;
                continue;
            }
            match buffer.push(self.item.clone()) {
                Pushed::Tracked(seq) => {
                    if let Some(receipt) = &mut self.receipt {
                        receipt.marks.push((buffer, seq));
                    }
                }
                Pushed::Untracked => {}
                // Only back-pressure streams are retried, and they never drop.
                Pushed::Dropped(_) => {}
                Pushed::Full(_) => still_full.push(buffer),
            }
        }
        if let Some(receipt) = &mut self.receipt {
            // The consumer it waited for left; unless another one took it, nobody holds it.
            receipt.abandoned |= left && receipt.marks.is_empty() && still_full.is_empty();
        }
        if still_full.is_empty() {
            Offer::Taken(self.receipt.unwrap_or_default())
        } else {
            self.full = still_full;
            Offer::Blocked(self)
        }
    }
}

impl Hub {
    /// The keys of recent confirmed events, shared by every source's lane.
    pub(crate) fn twins(&self) -> &Twins {
        &self.shared.twins
    }

    /// Every source's counters, shared by the lanes and the flume.
    pub(crate) fn meters(&self) -> &Arc<Meters> {
        &self.shared.meters
    }

    /// Wakes every stream's reader that has items it was not woken for: a source calls this
    /// before it waits (see [`Buffer::announce`]).
    pub(crate) fn announce(&self) {
        for buffer in &lock(&self.shared.streams).buffers {
            buffer.announce();
        }
    }

    /// Puts `source`'s checkpoint after everything offered so far, in every stream that wants
    /// checkpoints. The lane calls it only once every item before it was placed.
    pub(crate) fn offer_checkpoint(&self, source: &str, checkpoint: &Checkpoint) {
        for buffer in &lock(&self.shared.streams).buffers {
            buffer.push_checkpoint(source, checkpoint);
        }
    }

    /// This hub for the sources of confluence group `name`: their events carry
    /// `meta.groupId = name` (the key open-flume uses), stamped before any consumer sees them.
    pub(crate) fn in_group(&self, name: &str) -> Hub {
        Hub {
            shared: self.shared.clone(),
            group: Some(name.into()),
        }
    }

    /// Runs the callbacks on `item` and puts it in every stream without waiting. With `confirm`,
    /// the answer carries the receipt to wait on before acknowledging the item upstream.
    pub(crate) fn offer(&self, mut item: Item, confirm: bool) -> Offer {
        if let Item::Log(log) = &item
            && log.level < self.shared.min_level
        {
            return Offer::Taken(Receipt::default());
        }
        if let Some(group) = &self.group {
            stamp_group(&mut item, group);
        }
        let shared = &self.shared;
        let mut callbacks = lock(&shared.callbacks);
        let mut panicked = Vec::new();
        if let Some(callback) = callbacks.on_item.as_mut()
            && catch_unwind(AssertUnwindSafe(|| callback(&item))).is_err()
        {
            panicked.push(callback_panicked("on_item", &item));
        }
        if let (Some(callback), Item::Log(log)) = (callbacks.on_error.as_mut(), &item)
            && log.level == Level::Error
            && catch_unwind(AssertUnwindSafe(|| callback(log))).is_err()
        {
            panicked.push(callback_panicked("on_error", &item));
        }
        let mut streams = lock(&shared.streams);
        // Streams whose consumer is gone take nothing more.
        streams.forget_gone();
        for log in panicked {
            for buffer in &streams.buffers {
                buffer.force(log.clone());
            }
        }
        let mut offer = fan_out(&streams.buffers, item, confirm, &shared.meters);
        if streams.orphaned
            && let Offer::Taken(receipt) = &mut offer
        {
            receipt.abandoned |= receipt.marks.is_empty();
        }
        offer
    }
}

/// Names the confluence group on an item: `meta.groupId` on an event, `detail.groupId` on a log
/// (a log's detail that is not an object is kept under `detail.detail`).
fn stamp_group(item: &mut Item, group: &str) {
    match item {
        Item::Event(event) => {
            event.meta.insert("groupId".into(), group.to_owned());
        }
        Item::Log(log) => {
            let mut detail = match log.detail.take() {
                Some(serde_json::Value::Object(map)) => map,
                Some(other) => serde_json::Map::from_iter([("detail".to_owned(), other)]),
                None => serde_json::Map::new(),
            };
            detail.insert("groupId".to_owned(), group.into());
            log.detail = Some(serde_json::Value::Object(detail));
        }
        // An item kind added later carries no group until it has a place for one.
        _ => {}
    }
}

/// Gives `item` to every buffer: a copy to each but the last, which gets the item itself. An
/// item a full drop-policy buffer loses is counted for its source.
fn fan_out(buffers: &[Arc<Buffer>], item: Item, confirm: bool, meters: &Meters) -> Offer {
    let mut receipt = confirm.then(Receipt::default);
    let mut full = Vec::new();
    let mut returned = None;
    let mut item = Some(item);
    let last = buffers.len().saturating_sub(1);
    for (i, buffer) in buffers.iter().enumerate() {
        let copy = if i == last { item.take() } else { item.clone() };
        let Some(copy) = copy else { break };
        match buffer.push(copy) {
            Pushed::Tracked(seq) => {
                if let Some(receipt) = &mut receipt {
                    receipt.marks.push((buffer.clone(), seq));
                }
            }
            Pushed::Untracked => {}
            // Off the way of an item: only a drop-policy stream that is full gets here.
            Pushed::Dropped(lost) => meters.source(lost.source()).dropped(1),
            Pushed::Full(back) => {
                full.push(buffer.clone());
                returned.get_or_insert(back);
            }
        }
    }
    match returned {
        None => Offer::Taken(receipt.unwrap_or_default()),
        Some(item) => Offer::Blocked(Blocked {
            item,
            full,
            receipt,
        }),
    }
}

fn callback_panicked(callback: &str, item: &Item) -> Item {
    let (kind, what) = match item {
        Item::Event(e) => ("event", e.event_type.as_str()),
        Item::Log(l) => ("log", l.action.as_str()),
        // A kind newer than this crate (`Item` is `#[non_exhaustive]`).
        _ => ("item", "unknown"),
    };
    Item::Log(Log::new(
        Level::Error,
        "flume",
        format!("{callback}.panic"),
        format!("the {callback} callback panicked on a {kind} ({what}) from {}; the source keeps running", item.source()),
        wall_now(),
    )
    .with_detail(serde_json::json!({"callback": callback, "itemKind": kind, "itemSource": item.source()})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::{Event, RawJson, UnixMillis};

    fn event(n: u64) -> Item {
        Item::Event(Event::new(
            "test",
            "n",
            RawJson::from_str(&n.to_string()).unwrap(),
            UnixMillis(0),
        ))
    }

    /// Runs `future` to its end, failing the test if that takes more than five seconds: a hub
    /// bug shows as a failure, not a hang.
    fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        smol::block_on(futures_lite::future::or(future, async {
            smol::Timer::after(std::time::Duration::from_secs(5)).await;
            panic!("the hub did not get there within 5 s");
        }))
    }

    fn numbers(stream: &mut ItemStream) -> Vec<String> {
        std::iter::from_fn(|| stream.try_next())
            .map(|item| match item {
                Item::Event(e) => e.data.get().to_owned(),
                Item::Log(l) => l.action,
                other => panic!("an item this test does not send: {other:?}"),
            })
            .collect()
    }

    /// Offers `item` and waits for room as a driver does, returning the receipt.
    async fn deliver(hub: &Hub, item: Item, confirm: bool) -> Receipt {
        let mut offer = hub.offer(item, confirm);
        loop {
            match offer {
                Offer::Taken(receipt) => return receipt,
                Offer::Blocked(blocked) => {
                    blocked.writable().await;
                    offer = blocked.retry();
                }
            }
        }
    }

    /// Sends `0..n` through a hub with one stream of capacity 3 under `policy`, nobody reading.
    fn run(policy: Overflow, n: u64) -> (Vec<String>, u64) {
        within(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            let mut stream = subscribers.subscribe(3, policy);
            for i in 0..n {
                deliver(&hub, event(i), false).await;
            }
            drop(hub);
            let dropped = stream.dropped();
            (numbers(&mut stream), dropped)
        })
    }

    /// A group's clone stamps its name on its items (`meta.groupId` on events, `detail.groupId`
    /// on logs); the flume's own hub leaves them as they are, and every clone feeds the same
    /// streams.
    #[test]
    fn group_clones_stamp_their_events() {
        let (hub, subscribers) = super::hub(Level::Debug, None, None);
        let mut stream = subscribers.subscribe(10, Overflow::DropNewest);
        let ops = hub.in_group("ops");
        ops.offer(event(1), false);
        hub.offer(event(2), false);
        let log = Log::new(Level::Info, "x", "status", "up", UnixMillis(0));
        ops.offer(Item::Log(log.clone()), false);
        let items: Vec<Item> = std::iter::from_fn(|| stream.try_next()).collect();
        let Item::Event(first) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(first.meta.get("groupId").map(String::as_str), Some("ops"));
        let Item::Event(second) = &items[1] else {
            panic!("{items:?}")
        };
        assert!(!second.meta.contains_key("groupId"));
        let Item::Log(stamped) = &items[2] else {
            panic!("{items:?}")
        };
        assert_eq!(
            stamped.detail,
            Some(serde_json::json!({ "groupId": "ops" }))
        );
        assert_eq!(stamped.message, log.message);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts_the_loss() {
        let (items, dropped) = run(Overflow::DropOldest, 10);
        assert_eq!(items, ["7", "8", "9"]);
        assert_eq!(dropped, 7);
    }

    #[test]
    fn drop_newest_keeps_the_first() {
        let (items, dropped) = run(Overflow::DropNewest, 10);
        assert_eq!(items, ["0", "1", "2"]);
        assert_eq!(dropped, 7);
    }

    #[test]
    fn overflow_is_reported_in_the_stream_once_there_is_room() {
        let (hub, subscribers) = super::hub(Level::Debug, None, None);
        let mut stream = subscribers.subscribe(3, Overflow::DropNewest);
        for i in 0..5 {
            assert!(matches!(hub.offer(event(i), false), Offer::Taken(_)));
        }
        assert_eq!(stream.dropped(), 2);
        assert_eq!(numbers(&mut stream), ["0", "1", "2"]);
        assert!(matches!(hub.offer(event(5), false), Offer::Taken(_)));
        // A second loss within the report interval is counted, and told in the next report.
        for i in 6..10 {
            hub.offer(event(i), false);
        }
        drop(hub);
        assert_eq!(numbers(&mut stream), ["stream.overflow", "5", "6"]);
        assert_eq!(stream.dropped(), 5);
    }

    #[test]
    fn a_full_backpressure_stream_blocks_the_offer_until_there_is_room() {
        let (hub, subscribers) = super::hub(Level::Debug, None, None);
        let mut stream = subscribers.subscribe(2, Overflow::Backpressure);
        let mut display = subscribers.subscribe(1, Overflow::DropOldest);
        assert!(matches!(hub.offer(event(0), false), Offer::Taken(_)));
        assert!(matches!(hub.offer(event(1), false), Offer::Taken(_)));
        let Offer::Blocked(blocked) = hub.offer(event(2), false) else {
            panic!("a full back-pressure stream must block the offer");
        };
        // The drop-policy stream got the item at once; the full one waits for room.
        assert_eq!(numbers(&mut display), ["2"]);
        let Offer::Blocked(blocked) = blocked.retry() else {
            panic!("still full");
        };
        assert_eq!(stream.try_next().map(|_| ()), Some(()));
        within(blocked.writable());
        assert!(matches!(blocked.retry(), Offer::Taken(_)));
        drop(hub);
        assert_eq!(numbers(&mut stream), ["1", "2"]);
    }

    #[test]
    fn backpressure_waits_for_the_reader_and_loses_nothing() {
        within(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            let mut stream = subscribers.subscribe(2, Overflow::Backpressure);
            let sender = smol::spawn(async move {
                for i in 0..50 {
                    deliver(&hub, event(i), false).await;
                }
            });
            let mut got = Vec::new();
            while let Some(Item::Event(e)) = stream.next().await {
                got.push(e.data.get().parse::<u64>().unwrap());
            }
            sender.await;
            assert_eq!(got, (0..50).collect::<Vec<_>>());
            assert_eq!(stream.dropped(), 0);
        });
    }

    #[test]
    fn a_receipt_settles_once_the_consumer_holds_the_item() {
        let (hub, subscribers) = super::hub(Level::Debug, None, None);
        let mut taking = subscribers.subscribe(4, Overflow::Backpressure);
        let mut committing = subscribers
            .subscribe(4, Overflow::Backpressure)
            .holds_until_commit();
        let _display = subscribers.subscribe(1, Overflow::DropNewest);
        let Offer::Taken(receipt) = hub.offer(event(0), true) else {
            panic!("room for it");
        };
        assert_eq!(receipt.state(), Settled::Pending);
        assert!(taking.try_next().is_some());
        assert_eq!(
            receipt.state(),
            Settled::Pending,
            "one consumer still lacks it"
        );
        assert!(committing.try_next().is_some());
        assert_eq!(receipt.state(), Settled::Pending, "taken but not committed");
        committing.commit();
        assert_eq!(receipt.state(), Settled::Held);
    }

    #[test]
    fn a_consumer_gone_before_holding_abandons_the_receipt() {
        let (hub, subscribers) = super::hub(Level::Debug, None, None);
        let stream = subscribers
            .subscribe(4, Overflow::Backpressure)
            .holds_until_commit();
        let Offer::Taken(receipt) = hub.offer(event(0), true) else {
            panic!("room for it");
        };
        drop(stream);
        assert_eq!(receipt.state(), Settled::Abandoned);
        // Its consumer left: what comes now has nobody to hold it, and is never acknowledged.
        let Offer::Taken(receipt) = hub.offer(event(1), true) else {
            panic!("no stream left");
        };
        assert_eq!(receipt.state(), Settled::Abandoned);
        // A new back-pressure consumer holds what comes from then on.
        let mut late = subscribers.subscribe(4, Overflow::Backpressure);
        let Offer::Taken(receipt) = hub.offer(event(2), true) else {
            panic!("room for it");
        };
        assert!(late.try_next().is_some());
        assert_eq!(receipt.state(), Settled::Held);
    }

    #[test]
    fn without_backpressure_consumers_the_callbacks_hold_the_item() {
        let (hub, subscribers) = super::hub(Level::Debug, Some(Box::new(|_| {})), None);
        let _display = subscribers.subscribe(1, Overflow::DropNewest);
        let Offer::Taken(receipt) = hub.offer(event(0), true) else {
            panic!("nothing waits");
        };
        assert_eq!(receipt.state(), Settled::Held);
    }

    #[test]
    fn a_consumer_leaving_while_the_item_waits_for_its_room_abandons_it() {
        let (hub, subscribers) = super::hub(Level::Debug, None, None);
        let stream = subscribers.subscribe(1, Overflow::Backpressure);
        assert!(matches!(hub.offer(event(0), true), Offer::Taken(_)));
        let Offer::Blocked(blocked) = hub.offer(event(1), true) else {
            panic!("full");
        };
        drop(stream);
        let Offer::Taken(receipt) = blocked.retry() else {
            panic!("nobody left to wait for");
        };
        assert_eq!(receipt.state(), Settled::Abandoned);
    }

    #[test]
    fn a_dropped_backpressure_stream_does_not_block_the_firehose() {
        within(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            let stream = subscribers.subscribe(1, Overflow::Backpressure);
            deliver(&hub, event(0), false).await;
            let Offer::Blocked(blocked) = hub.offer(event(1), false) else {
                panic!("full");
            };
            drop(stream);
            blocked.writable().await;
            assert!(matches!(blocked.retry(), Offer::Taken(_)));
            for i in 2..2000 {
                deliver(&hub, event(i), false).await;
            }
        });
    }

    #[test]
    fn a_panicking_callback_is_reported_and_the_items_keep_flowing() {
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = calls.clone();
        let on_item: ItemCallback = Box::new(move |item| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if matches!(item, Item::Event(e) if e.data.get() == "1") {
                panic!("consumer bug");
            }
        });
        let (hub, subscribers) = super::hub(Level::Debug, Some(on_item), None);
        let mut stream = subscribers.subscribe(10, Overflow::Backpressure);
        for i in 0..3 {
            hub.offer(event(i), false);
        }
        drop(hub);
        assert_eq!(numbers(&mut stream), ["0", "on_item.panic", "1", "2"]);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn logs_below_the_minimum_level_never_enter() {
        let (hub, subscribers) = super::hub(Level::Info, None, None);
        let mut stream = subscribers.subscribe(10, Overflow::Backpressure);
        hub.offer(
            Item::Log(Log::new(Level::Debug, "t", "noise", "", UnixMillis(0))),
            false,
        );
        hub.offer(
            Item::Log(Log::new(Level::Warn, "t", "kept", "", UnixMillis(0))),
            false,
        );
        drop(hub);
        assert_eq!(numbers(&mut stream), ["kept"]);
    }

    #[test]
    fn a_drop_is_counted_for_the_source_of_the_item_lost() {
        let (hub, subscribers) = super::hub(Level::Debug, None, None);
        let _display = subscribers.subscribe(2, Overflow::DropOldest);
        for i in 0..5 {
            hub.offer(event(i), false);
        }
        // Two fit; each of the next three evicts the oldest.
        let metrics = hub.meters().snapshot(&[]);
        assert_eq!(metrics.source("test").map(|s| s.drops), Some(3));
    }

    #[test]
    fn a_stream_added_after_the_hub_closed_ends_at_once() {
        within(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            drop(hub);
            let mut late = subscribers.subscribe(4, Overflow::Backpressure);
            assert!(late.next().await.is_none());
        });
    }
}
