//! The firehose: every source's items reach the callbacks and every stream's bounded buffer,
//! filled by its overflow policy.
//!
//! Sources hand items over with `Hub::deliver`, which does the whole dispatch in the source's own
//! task (no hand-over to another task per item) and waits only while a back-pressure stream is
//! full: that wait is what keeps memory bounded when a consumer is slow. A machine acknowledges
//! an event upstream (Slack ack, GitHub validators) only after `deliver` returned, i.e. after the
//! firehose accepted it; a durable sink would confirm at the same point, after its append.

use crate::clock::wall_now;
use crate::lock::lock;
use openflume_proto::{Item, Level, Log};
use smol::channel::{Receiver, Sender, TrySendError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// What a stream does when its consumer falls behind and its buffer is full.
///
/// ```
/// use openflume::Overflow;
/// assert_eq!(Overflow::default(), Overflow::DropOldest);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Discard the oldest buffered item to make room (fresh data wins).
    #[default]
    DropOldest,
    /// Discard the new item (buffered data wins).
    DropNewest,
    /// Wait for the consumer: slows every source down instead of dropping.
    Backpressure,
}

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
}

struct Shared {
    min_level: Level,
    /// Held while an item is dispatched, so callbacks and streams see one order of items.
    callbacks: Mutex<Callbacks>,
    streams: Arc<Mutex<Vec<StreamSlot>>>,
}

struct Callbacks {
    on_item: Option<ItemCallback>,
    on_error: Option<ErrorCallback>,
}

impl Drop for Shared {
    /// No item can come any more: each stream ends once its reader has drained it.
    fn drop(&mut self) {
        lock(&self.streams).clear();
    }
}

impl Hub {
    /// Hands `item` to the callbacks and the streams, waiting while a back-pressure stream is
    /// full.
    pub(crate) async fn deliver(&self, item: Item) {
        if let Item::Log(log) = &item
            && log.level < self.shared.min_level
        {
            return;
        }
        // Only full back-pressure streams are waited for, after the locks are released.
        for (stream, item) in self.shared.dispatch(item) {
            let _ = stream.send(item).await;
        }
    }
}

/// One stream's buffer, shared by the hub (writer) and the consumer (reader).
struct StreamSlot {
    tx: Sender<Item>,
    /// A reader handle for the hub, to discard the oldest item (`DropOldest` only: any other
    /// policy holds none, so a dropped stream closes its channel and a waiting send ends).
    oldest: Option<Receiver<Item>>,
    policy: Overflow,
    dropped_since_report: u64,
    dropped_total: Arc<std::sync::atomic::AtomicU64>,
}

/// Creates a hub and the handle that adds streams to it.
pub(crate) fn hub(
    min_level: Level,
    on_item: Option<ItemCallback>,
    on_error: Option<ErrorCallback>,
) -> (Hub, Subscribers) {
    let streams = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared {
        min_level,
        callbacks: Mutex::new(Callbacks { on_item, on_error }),
        streams: streams.clone(),
    };
    (
        Hub {
            shared: Arc::new(shared),
        },
        Subscribers { streams },
    )
}

/// Adds streams while the hub runs.
#[derive(Clone)]
pub(crate) struct Subscribers {
    streams: Arc<Mutex<Vec<StreamSlot>>>,
}

impl Subscribers {
    pub(crate) fn subscribe(&self, capacity: usize, policy: Overflow) -> ItemStream {
        self.subscribe_replacing(None, capacity, policy)
    }

    /// A new stream that first yields what `earlier` buffered, then everything after.
    pub(crate) fn subscribe_after(
        &self,
        earlier: ItemStream,
        capacity: usize,
        policy: Overflow,
    ) -> ItemStream {
        self.subscribe_replacing(Some(earlier), capacity, policy)
    }

    /// Adds a stream, and removes `earlier`'s slot in the same critical section, so every item
    /// lands in exactly one of them: none lost, none seen twice.
    fn subscribe_replacing(
        &self,
        earlier: Option<ItemStream>,
        capacity: usize,
        policy: Overflow,
    ) -> ItemStream {
        let (tx, rx) = smol::channel::bounded(capacity.max(1));
        let dropped_total = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let slot = StreamSlot {
            tx,
            oldest: (policy == Overflow::DropOldest).then(|| rx.clone()),
            policy,
            dropped_since_report: 0,
            dropped_total: dropped_total.clone(),
        };
        let mut streams = lock(&self.streams);
        if let Some(earlier) = &earlier {
            streams.retain(|slot| {
                !slot
                    .oldest
                    .as_ref()
                    .is_some_and(|rx| rx.same_channel(&earlier.rx))
            });
        }
        streams.push(slot);
        drop(streams);
        ItemStream {
            prefix: earlier.map(|earlier| earlier.rx),
            rx: Box::pin(rx),
            dropped_total,
        }
    }
}

impl Shared {
    /// Runs the callbacks on `item` and offers it to every stream; answers the full
    /// back-pressure streams and what each of them still has to take.
    fn dispatch(&self, item: Item) -> Vec<(Sender<Item>, Item)> {
        let mut waiting = Vec::new();
        let mut callbacks = lock(&self.callbacks);
        if let Some(callback) = callbacks.on_item.as_mut()
            && catch_unwind(AssertUnwindSafe(|| callback(&item))).is_err()
        {
            let log = callback_panicked("on_item", &item);
            self.fan_out(Item::Log(log), &mut waiting);
        }
        if let (Some(callback), Item::Log(log)) = (callbacks.on_error.as_mut(), &item)
            && log.level == Level::Error
            && catch_unwind(AssertUnwindSafe(|| callback(log))).is_err()
        {
            let log = callback_panicked("on_error", &item);
            self.fan_out(Item::Log(log), &mut waiting);
        }
        self.fan_out(item, &mut waiting);
        waiting
    }

    /// Gives `item` to every stream: a copy to each but the last, which gets the item itself.
    /// Back-pressure streams with room take it at once like the others; a full one is added to
    /// `waiting`.
    fn fan_out(&self, item: Item, waiting: &mut Vec<(Sender<Item>, Item)>) {
        let mut item = Some(item);
        let mut streams = lock(&self.streams);
        // Streams whose consumer is gone (no reader but the slot's own handle) are removed.
        streams.retain(|slot| slot.tx.receiver_count() > usize::from(slot.oldest.is_some()));
        let last = streams.len().saturating_sub(1);
        for (i, slot) in streams.iter_mut().enumerate() {
            slot.report_drops();
            let Some(copy) = (if i == last { item.take() } else { item.clone() }) else {
                break;
            };
            if let Some(full) = slot.offer(copy) {
                waiting.push((slot.tx.clone(), full));
            }
        }
    }
}

impl StreamSlot {
    /// Puts `item` in the buffer without waiting, dropping by the slot's policy when full; a
    /// full back-pressure stream hands the item back, to be waited for.
    fn offer(&mut self, item: Item) -> Option<Item> {
        match self.tx.try_send(item) {
            Err(TrySendError::Full(back)) if self.policy == Overflow::Backpressure => Some(back),
            Err(TrySendError::Full(mut back)) if self.policy == Overflow::DropOldest => {
                // Make room by discarding the oldest, then retry (the consumer may race us).
                while let Some(oldest) = &self.oldest {
                    if oldest.try_recv().is_ok() {
                        self.count_drop();
                    }
                    match self.tx.try_send(back) {
                        Err(TrySendError::Full(again)) => back = again,
                        _ => break,
                    }
                }
                None
            }
            Err(TrySendError::Full(_)) => {
                self.count_drop();
                None
            }
            _ => None,
        }
    }

    /// Tells the consumer, in its own stream, how many items it lost since the last report.
    fn report_drops(&mut self) {
        if self.dropped_since_report > 0
            && self
                .tx
                .try_send(overflow_log(self.dropped_since_report))
                .is_ok()
        {
            self.dropped_since_report = 0;
        }
    }

    fn count_drop(&mut self) {
        self.dropped_since_report += 1;
        self.dropped_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn overflow_log(dropped: u64) -> Item {
    Item::Log(
        Log::new(
            Level::Warn,
            "flume",
            "stream.overflow",
            format!("stream buffer full: {dropped} item(s) dropped"),
            wall_now(),
        )
        .with_detail(serde_json::json!({ "dropped": dropped })),
    )
}

fn callback_panicked(callback: &str, item: &Item) -> Log {
    let (kind, what) = match item {
        Item::Event(e) => ("event", e.event_type.as_str()),
        Item::Log(l) => ("log", l.action.as_str()),
    };
    Log::new(
        Level::Error,
        "flume",
        format!("{callback}.panic"),
        format!("the {callback} callback panicked on a {kind} ({what}) from {}; the source keeps running", item.source()),
        wall_now(),
    )
    .with_detail(serde_json::json!({"callback": callback, "itemKind": kind, "itemSource": item.source()}))
}

/// A pull view of the firehose with its own bounded buffer.
///
/// Ends (yields `None`) once the flume is closed and everything in flight has been read.
///
/// ```no_run
/// # async fn demo(running: &openflume::Running) {
/// use openflume::Overflow;
/// let mut stream = running.stream(1000, Overflow::DropOldest);
/// while let Some(item) = stream.next().await {
///     println!("{}", serde_json::to_string(&item).unwrap());
/// }
/// # }
/// ```
pub struct ItemStream {
    /// Items buffered before this stream existed, yielded first.
    prefix: Option<Pin<Box<Receiver<Item>>>>,
    rx: Pin<Box<Receiver<Item>>>,
    dropped_total: Arc<std::sync::atomic::AtomicU64>,
}

impl ItemStream {
    /// The next item; `None` once the flume is closed and drained.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// let mut items = running.stream(100, Overflow::DropOldest);
    /// running.close().await;
    /// let mut count = 0;
    /// while let Some(_item) = items.next().await {
    ///     count += 1;
    /// }
    /// assert!(count >= 2); // the status logs of opening and closing, at least
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub async fn next(&mut self) -> Option<Item> {
        std::future::poll_fn(|cx| futures_lite::Stream::poll_next(Pin::new(&mut *self), cx)).await
    }

    /// The next item if one is ready now, without waiting.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// # smol::block_on(async {
    /// let running = Flume::builder().source(cron).build().open().await?;
    /// let mut items = running.stream(100, Overflow::DropOldest);
    /// running.close().await;
    /// // Once the flume is closed everything is buffered: read it without waiting.
    /// let buffered: Vec<_> = std::iter::from_fn(|| items.try_next()).collect();
    /// assert!(buffered.len() >= 2); // the status logs of opening and closing, at least
    /// assert!(items.try_next().is_none());
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn try_next(&mut self) -> Option<Item> {
        if let Some(prefix) = &self.prefix {
            match prefix.try_recv() {
                Ok(item) => return Some(item),
                Err(smol::channel::TryRecvError::Empty) => return None,
                Err(smol::channel::TryRecvError::Closed) => self.prefix = None,
            }
        }
        self.rx.try_recv().ok()
    }

    /// Items this stream dropped because its buffer was full.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::{Confluence, Overflow};
    /// # smol::block_on(async {
    /// let confluence = Confluence::new(Flume::builder());
    /// let mut items = confluence.stream(1, Overflow::DropNewest);
    /// confluence.add("clock", vec![cron]).await?;
    /// confluence.close_all().await;
    /// // Nobody read while the source started and stopped: one item fitted, the rest were dropped.
    /// assert!(items.dropped() > 0);
    /// assert!(items.try_next().is_some());
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// # })?;
    /// # Ok::<(), openflume::ConfluenceError>(())
    /// ```
    pub fn dropped(&self) -> u64 {
        self.dropped_total
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl futures_lite::Stream for ItemStream {
    type Item = Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Item>> {
        use std::task::Poll;
        if let Some(prefix) = self.prefix.as_mut() {
            match prefix.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => self.prefix = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.rx.as_mut().poll_next(cx)
    }
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

    fn numbers(stream: &mut ItemStream) -> Vec<String> {
        std::iter::from_fn(|| stream.try_next())
            .map(|item| match item {
                Item::Event(e) => e.data.get().to_owned(),
                Item::Log(l) => l.action,
            })
            .collect()
    }

    /// Sends `0..n` through a hub with one stream of capacity 3 under `policy`, nobody reading.
    fn run(policy: Overflow, n: u64) -> (Vec<String>, u64) {
        smol::block_on(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            let mut stream = subscribers.subscribe(3, policy);
            for i in 0..n {
                hub.deliver(event(i)).await;
            }
            drop(hub);
            let dropped = stream.dropped();
            (numbers(&mut stream), dropped)
        })
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_reports_the_loss() {
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
        smol::block_on(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            let mut stream = subscribers.subscribe(2, Overflow::DropNewest);
            for i in 0..5 {
                hub.deliver(event(i)).await;
            }
            // Delivered means handled: three were dropped already. Make room.
            assert_eq!(stream.dropped(), 3);
            assert_eq!(numbers(&mut stream), ["0", "1"]);
            hub.deliver(event(5)).await;
            drop(hub);
            assert_eq!(numbers(&mut stream), ["stream.overflow", "5"]);
        });
    }

    #[test]
    fn backpressure_waits_for_the_reader_and_loses_nothing() {
        smol::block_on(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            let mut stream = subscribers.subscribe(2, Overflow::Backpressure);
            let sender = smol::spawn(async move {
                for i in 0..50 {
                    hub.deliver(event(i)).await;
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
    fn a_dropped_backpressure_stream_does_not_block_the_firehose() {
        smol::block_on(async {
            let (hub, subscribers) = super::hub(Level::Debug, None, None);
            let stream = subscribers.subscribe(1, Overflow::Backpressure);
            hub.deliver(event(0)).await;
            drop(stream);
            for i in 1..2000 {
                hub.deliver(event(i)).await;
            }
            drop(hub);
        });
    }

    #[test]
    fn a_panicking_callback_is_reported_and_the_items_keep_flowing() {
        smol::block_on(async {
            let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = calls.clone();
            let on_item: ItemCallback = Box::new(move |item| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if matches!(item, Item::Event(e) if e.data.get() == "1") {
                    panic!("consumer bug");
                }
            });
            let (hub, subscribers) = super::hub(Level::Debug, Some(on_item), None);
            let mut stream = subscribers.subscribe(10, Overflow::DropOldest);
            for i in 0..3 {
                hub.deliver(event(i)).await;
            }
            drop(hub);
            assert_eq!(numbers(&mut stream), ["0", "on_item.panic", "1", "2"]);
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn logs_below_the_minimum_level_never_enter() {
        smol::block_on(async {
            let (hub, subscribers) = super::hub(Level::Info, None, None);
            let mut stream = subscribers.subscribe(10, Overflow::DropOldest);
            hub.deliver(Item::Log(Log::new(
                Level::Debug,
                "t",
                "noise",
                "",
                UnixMillis(0),
            )))
            .await;
            hub.deliver(Item::Log(Log::new(
                Level::Warn,
                "t",
                "kept",
                "",
                UnixMillis(0),
            )))
            .await;
            drop(hub);
            assert_eq!(numbers(&mut stream), ["kept"]);
        });
    }
}
