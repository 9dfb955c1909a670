//! One consumer's view of the firehose: a bounded buffer filled by the hub, drained by an
//! [`ItemStream`], with the consumer's progress (what it holds) visible to the hub's receipts.
//!
//! A consumer *holds* an item once it has taken it from the stream, or, for a stream that
//! [`holds_until_commit`](ItemStream::holds_until_commit), once it called
//! [`commit`](ItemStream::commit) after taking it. Upstream acknowledgements wait for that (see
//! the [hub](crate::hub) for the chain).

use crate::clock::wall_now;
use crate::lock::lock;
use event_listener::{Event, EventListener, IntoNotification};
use openflume_proto::{Checkpoint, Item, Level, Log};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What a stream does when its consumer falls behind and its buffer is full.
///
/// ```
/// use openflume::Overflow;
/// // Nothing is lost unless a consumer asks for it.
/// assert_eq!(Overflow::default(), Overflow::Backpressure);
/// ```
///
/// `#[non_exhaustive]`: a match outside this crate ends in a wildcard arm.
///
/// ```compile_fail,E0004
/// # use openflume::Overflow;
/// fn lossless(o: Overflow) -> bool {
///     match o { Overflow::Backpressure => true, Overflow::DropOldest | Overflow::DropNewest => false }
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Wait for the consumer: the sources that deliver to a full stream stop reading until it
    /// has room (their heartbeats and acks still go out), and upstream acknowledgements wait
    /// until this consumer holds the item. Nothing is lost.
    #[default]
    Backpressure,
    /// Discard the oldest buffered item to make room (fresh data wins). For display-like
    /// consumers: items can be missed; each drop is counted and reported.
    DropOldest,
    /// Discard the new item (buffered data wins). Items can be missed; each drop is counted and
    /// reported.
    DropNewest,
}

/// At most one overflow report per stream this often: a consumer that keeps losing items gets
/// a running count, not a warning per item.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The buffer between the hub (writer) and one [`ItemStream`] (reader).
pub(crate) struct Buffer {
    capacity: usize,
    /// Wake the reader once this many items wait, without waiting for an announcement.
    wake_batch: usize,
    policy: Overflow,
    state: Mutex<State>,
    /// Items the consumer holds: the first `holds` ever pushed. Read by receipts without the lock.
    holds: AtomicU64,
    /// The `ItemStream` was dropped: nothing pushed from now on can be held.
    reader_gone: AtomicBool,
    dropped_total: AtomicU64,
    /// An item arrived or the buffer closed.
    readable: Event,
    /// Room appeared, or the reader went away.
    writable: Event,
    /// `holds` grew, or the reader went away.
    progressed: Event,
}

struct State {
    items: VecDeque<Item>,
    /// Items ever pushed (drops included): the n-th has sequence number n.
    pushed: u64,
    /// Items the reader has taken.
    taken: u64,
    holds_on_commit: bool,
    /// Items came since the reader was last woken.
    unannounced: bool,
    /// No item will come any more (the hub is gone).
    closed: bool,
    dropped_unreported: u64,
    last_report: Option<Instant>,
    /// The reader asked for the sources' checkpoints ([`ItemStream::with_checkpoints`]).
    wants_checkpoints: bool,
    /// Checkpoints not taken yet, each after the item count it follows, in order.
    checkpoints: VecDeque<StreamCheckpoint>,
}

/// What [`Buffer::push`] did with an item.
pub(crate) enum Pushed {
    /// In the buffer as item number `seq`, which the consumer must hold before an ack.
    Tracked(u64),
    /// In the buffer of a drop-policy stream: nobody waits for this consumer.
    Untracked,
    /// A drop-policy buffer was full: this item (the new one, or the oldest it evicted) is
    /// lost to this consumer, to be counted for its source.
    Dropped(Item),
    /// A back-pressure buffer was full: the item comes back, to offer again once there is room.
    Full(Item),
}

impl Buffer {
    pub(crate) fn new(capacity: usize, policy: Overflow, closed: bool) -> Buffer {
        let capacity = capacity.max(1);
        Buffer {
            capacity,
            wake_batch: (capacity / 4).clamp(1, 64),
            policy,
            state: Mutex::new(State {
                items: VecDeque::new(),
                pushed: 0,
                taken: 0,
                holds_on_commit: false,
                unannounced: false,
                closed,
                dropped_unreported: 0,
                last_report: None,
                wants_checkpoints: false,
                checkpoints: VecDeque::new(),
            }),
            holds: AtomicU64::new(0),
            reader_gone: AtomicBool::new(false),
            dropped_total: AtomicU64::new(0),
            readable: Event::new(),
            writable: Event::new(),
            progressed: Event::new(),
        }
    }

    pub(crate) fn is_backpressure(&self) -> bool {
        self.policy == Overflow::Backpressure
    }

    pub(crate) fn reader_gone(&self) -> bool {
        self.reader_gone.load(Ordering::Acquire)
    }

    /// True once the consumer holds item number `seq`.
    pub(crate) fn holds(&self, seq: u64) -> bool {
        self.holds.load(Ordering::Acquire) >= seq
    }

    /// Puts `item` in the buffer without waiting, by the buffer's policy.
    pub(crate) fn push(&self, item: Item) -> Pushed {
        let mut state = lock(&self.state);
        state.unannounced = true;
        let outcome = if state.items.len() < self.capacity {
            self.report_drops(&mut state);
            state.items.push_back(item);
            state.pushed += 1;
            if self.is_backpressure() {
                Pushed::Tracked(state.pushed)
            } else {
                Pushed::Untracked
            }
        } else {
            let lost = match self.policy {
                Overflow::Backpressure => return Pushed::Full(item),
                Overflow::DropOldest => {
                    state.items.push_back(item);
                    // Full before this push: the front is the oldest item, never the new one.
                    state.items.pop_front()
                }
                Overflow::DropNewest => Some(item),
            };
            state.pushed += 1;
            state.dropped_unreported += 1;
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            lost.map_or(Pushed::Untracked, Pushed::Dropped)
        };
        let wake = state.items.len() >= self.wake_batch && std::mem::take(&mut state.unannounced);
        drop(state);
        if wake {
            self.readable.notify(1);
        }
        outcome
    }

    /// Wakes the reader if items came since it last looked. A pusher calls this before it goes
    /// idle: waking the reader for every item that finds it waiting costs a cross-thread wake-up
    /// each (a reader on another thread catches up after every item), so during a burst the
    /// reader is woken once per [`wake_batch`](Self::wake_batch) items, and at the end of it.
    pub(crate) fn announce(&self) {
        let wake = std::mem::take(&mut lock(&self.state).unannounced);
        if wake {
            self.readable.notify(1);
        }
    }

    /// Puts `item` in even when full: for the few items the hub itself adds (a callback's panic
    /// report), which must not wait and may overshoot the capacity by one.
    pub(crate) fn force(&self, item: Item) {
        let mut state = lock(&self.state);
        state.items.push_back(item);
        state.pushed += 1;
        state.unannounced = true;
    }

    /// Tells the consumer, in its own stream and at most once per [`REPORT_EVERY`], how many
    /// items it lost since the last report. Called with room for one more item.
    fn report_drops(&self, state: &mut State) {
        if state.dropped_unreported == 0
            || state.items.len() + 1 >= self.capacity
            || state
                .last_report
                .is_some_and(|at| at.elapsed() < REPORT_EVERY)
        {
            return;
        }
        let dropped = state.dropped_unreported;
        state.dropped_unreported = 0;
        state.last_report = Some(Instant::now());
        state.items.push_back(overflow_log(dropped, self.policy));
        state.pushed += 1;
    }

    /// Puts a source's checkpoint after the items pushed so far, for a reader that wants them.
    /// Never waits and never blocks: a checkpoint is small, and one that follows another of the
    /// same source with no item between replaces it, so they are at most one per item.
    pub(crate) fn push_checkpoint(&self, source: &str, checkpoint: &Checkpoint) {
        let mut state = lock(&self.state);
        if !state.wants_checkpoints {
            return;
        }
        let after = state.pushed;
        if let Some(last) = state
            .checkpoints
            .iter_mut()
            .rev()
            .take_while(|c| c.after == after)
            .find(|c| c.source == source)
        {
            last.checkpoint = checkpoint.clone();
            return;
        }
        state.checkpoints.push_back(StreamCheckpoint {
            after,
            source: source.to_owned(),
            checkpoint: checkpoint.clone(),
        });
    }

    /// Waits until a push could succeed: room, or the reader went away.
    pub(crate) async fn writable(&self) {
        wait_until(&self.writable, || {
            self.reader_gone() || lock(&self.state).items.len() < self.capacity
        })
        .await;
    }

    /// Waits until the consumer holds item `seq`, or went away.
    pub(crate) async fn progressed_to(&self, seq: u64) {
        wait_until(&self.progressed, || self.holds(seq) || self.reader_gone()).await;
    }

    /// No item will come any more: the reader ends once it has drained the buffer.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.readable.notify(usize::MAX);
    }

    /// Takes the oldest item, or says why there is none.
    fn pop(&self) -> Result<Item, Empty> {
        let mut state = lock(&self.state);
        let was_full = state.items.len() >= self.capacity;
        let Some(item) = state.items.pop_front() else {
            return Err(if state.closed {
                Empty::Closed
            } else {
                Empty::Waiting
            });
        };
        state.taken += 1;
        let held = (!state.holds_on_commit).then_some(state.taken);
        drop(state);
        if let Some(held) = held {
            self.set_holds(held);
        }
        if was_full {
            // One more writer than those already woken: each pop makes room for one.
            self.writable.notify(1.additional());
        }
        Ok(item)
    }

    /// Moves every buffered item to `out` at once: one lock for a whole batch.
    fn take_all(&self, out: &mut VecDeque<Item>) {
        let mut state = lock(&self.state);
        let was_full = state.items.len() >= self.capacity;
        let taken = state.items.len();
        out.append(&mut state.items);
        state.taken += taken as u64;
        let held = (!state.holds_on_commit).then_some(state.taken);
        drop(state);
        if let Some(held) = held {
            self.set_holds(held);
        }
        if was_full {
            self.writable.notify(taken.additional());
        }
    }

    fn set_holds(&self, held: u64) {
        self.holds.fetch_max(held, Ordering::AcqRel);
        self.progressed.notify(usize::MAX);
    }
}

/// Resolves once `done` holds, checking it again each time `event` fires. Listening before each
/// check means a change between the check and the wait is never missed.
async fn wait_until(event: &Event, done: impl Fn() -> bool) {
    loop {
        let listener = event.listen();
        if done() {
            return;
        }
        listener.await;
    }
}

enum Empty {
    Waiting,
    Closed,
}

fn overflow_log(dropped: u64, policy: Overflow) -> Item {
    let which = match policy {
        Overflow::DropNewest => "newest",
        _ => "oldest",
    };
    Item::Log(
        Log::new(
            Level::Warn,
            "flume",
            "stream.overflow",
            format!("stream buffer full: {dropped} item(s) dropped ({which} first)"),
            wall_now(),
        )
        .with_detail(serde_json::json!({ "dropped": dropped })),
    )
}

/// A source's checkpoint (`Output::Checkpoint`) in a stream that asked for them
/// ([`ItemStream::with_checkpoints`]): it holds once the stream's first `after` items are held,
/// and it replaces the source's cursor at that place among the items (see
/// [`Cursors`](openflume_proto::Cursors)).
///
/// ```
/// use openflume::StreamCheckpoint;
/// use openflume_proto::{Checkpoint, GithubCursor};
/// let pinned = StreamCheckpoint {
///     after: 12,
///     source: "github".into(),
///     checkpoint: Checkpoint::Github(GithubCursor::default()),
/// };
/// assert_eq!(pinned.after, 12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct StreamCheckpoint {
    /// How many of the stream's items come before it (counted from the first item ever taken).
    pub after: u64,
    /// Whose checkpoint.
    pub source: String,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

/// A pull view of the firehose with its own bounded buffer.
///
/// Ends (yields `None`) once the flume is closed and everything in flight has been read. Take
/// streams from the [`Flume`](crate::Flume) before it starts to see every item from the first
/// status log on; a stream taken from a [`Running`](crate::Running) flume sees what comes after.
///
/// ```no_run
/// # async fn demo(flume: openflume::Flume) -> Result<(), openflume::StartError> {
/// use openflume::Overflow;
/// let mut stream = flume.stream(1000, Overflow::Backpressure);
/// let running = flume.start()?;
/// while let Some(item) = stream.next().await {
///     println!("{}", serde_json::to_string(&item).unwrap());
/// }
/// # Ok(()) }
/// ```
pub struct ItemStream {
    buffer: Arc<Buffer>,
    listener: Option<Pin<Box<EventListener>>>,
}

impl ItemStream {
    pub(crate) fn new(buffer: Arc<Buffer>) -> ItemStream {
        ItemStream {
            buffer,
            listener: None,
        }
    }

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
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure);
    /// flume.open().await?.close().await;
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
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure);
    /// flume.open().await?.close().await;
    /// // Once the flume is closed everything is buffered: read it without waiting.
    /// let buffered: Vec<_> = std::iter::from_fn(|| items.try_next()).collect();
    /// assert!(buffered.len() >= 2); // the status logs of opening and closing, at least
    /// assert!(items.try_next().is_none());
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn try_next(&mut self) -> Option<Item> {
        self.buffer.pop().ok()
    }

    /// Moves every item ready now to the end of `out` under one lock, without waiting: for a
    /// consumer that works in batches (the CLI's stdout writer takes each write's worth so).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure);
    /// flume.open().await?.close().await;
    /// let mut batch = std::collections::VecDeque::new();
    /// items.take_ready(&mut batch);
    /// assert!(batch.len() >= 2); // the status logs of opening and closing, at least
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn take_ready(&mut self, out: &mut VecDeque<Item>) {
        self.buffer.take_all(out);
    }

    /// From now on the stream also carries the sources' checkpoints (`Output::Checkpoint`),
    /// each in its place among the items: take them with
    /// [`take_checkpoints`](Self::take_checkpoints). For a consumer that stores cursors beside
    /// the items (the durable log, `listen --data`).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure).with_checkpoints();
    /// flume.open().await?.close().await;
    /// let (mut batch, mut checkpoints) = (Default::default(), Vec::new());
    /// items.take_ready(&mut batch);
    /// items.take_checkpoints(&mut checkpoints);
    /// assert!(checkpoints.is_empty()); // cron has nothing but its ticks to go by
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    #[must_use]
    pub fn with_checkpoints(self) -> ItemStream {
        lock(&self.buffer.state).wants_checkpoints = true;
        self
    }

    /// Moves to `out` the checkpoints among the items taken so far (each with its place:
    /// [`StreamCheckpoint::after`]), in order.
    pub fn take_checkpoints(&mut self, out: &mut Vec<StreamCheckpoint>) {
        let mut state = lock(&self.buffer.state);
        while state
            .checkpoints
            .front()
            .is_some_and(|c| c.after <= state.taken)
        {
            out.extend(state.checkpoints.pop_front());
        }
    }

    /// How many items were taken from this stream so far: the count
    /// [`StreamCheckpoint::after`] is measured in.
    pub fn taken(&self) -> u64 {
        lock(&self.buffer.state).taken
    }

    /// Declares every item taken so far held except the last `unwritten` ones (see
    /// [`holds_until_commit`](Self::holds_until_commit)).
    pub(crate) fn commit_all_but(&self, unwritten: usize) {
        let taken = lock(&self.buffer.state).taken;
        self.buffer
            .set_holds(taken.saturating_sub(unwritten as u64));
    }

    /// From now on an item counts as held only once [`commit`](Self::commit) is called after
    /// taking it, not as soon as it is taken. For a consumer that must finish something first
    /// (write a line, store a row) before the upstream service may forget the event: Slack acks
    /// and GitHub cursor advances wait for the commit.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure).holds_until_commit();
    /// flume.open().await?.close().await;
    /// let mut out = Vec::new();
    /// while let Some(item) = items.next().await {
    ///     serde_json::to_writer(&mut out, &item).unwrap();
    ///     items.commit(); // written: the upstream may forget it now
    /// }
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    #[must_use]
    pub fn holds_until_commit(self) -> ItemStream {
        lock(&self.buffer.state).holds_on_commit = true;
        self
    }

    /// Declares every item taken so far held (see [`holds_until_commit`](Self::holds_until_commit));
    /// does nothing for a stream that holds items as soon as they are taken.
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(100, Overflow::Backpressure).holds_until_commit();
    /// flume.open().await?.close().await;
    /// let batch: Vec<_> = std::iter::from_fn(|| items.try_next()).collect();
    /// // … store the batch somewhere safe, then:
    /// items.commit();
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn commit(&self) {
        self.commit_all_but(0);
    }

    /// Items this stream dropped because its buffer was full (drop policies only).
    ///
    /// ```
    /// # use openflume::{Flume, Source};
    /// # use openflume_proto::cron::{CronConfig, CronMachine};
    /// # let cron = Source::custom("time", |seed| {
    /// #     CronMachine::new(CronConfig::new("@hourly"), jiff::tz::TimeZone::UTC, seed)
    /// # });
    /// use openflume::Overflow;
    /// # smol::block_on(async {
    /// let flume = Flume::builder().source(cron).build();
    /// let mut items = flume.stream(1, Overflow::DropNewest);
    /// flume.open().await?.close().await;
    /// // Nobody read while the source started and stopped: one item fitted, the rest were dropped.
    /// assert!(items.dropped() > 0);
    /// assert!(items.try_next().is_some());
    /// # Ok::<(), openflume::StartError>(())
    /// # })?;
    /// # Ok::<(), openflume::StartError>(())
    /// ```
    pub fn dropped(&self) -> u64 {
        self.buffer.dropped_total.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for ItemStream {
    /// The policy, how full the buffer is, and what was dropped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buffered = lock(&self.buffer.state).items.len();
        f.debug_struct("ItemStream")
            .field("policy", &self.buffer.policy)
            .field("capacity", &self.buffer.capacity)
            .field("buffered", &buffered)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl futures_lite::Stream for ItemStream {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        loop {
            match self.buffer.pop() {
                Ok(item) => {
                    self.listener = None;
                    return Poll::Ready(Some(item));
                }
                Err(Empty::Closed) => {
                    self.listener = None;
                    return Poll::Ready(None);
                }
                Err(Empty::Waiting) => {}
            }
            match self.listener.as_mut() {
                // Listening before the next look, so an item pushed in between wakes us.
                None => self.listener = Some(Box::pin(self.buffer.readable.listen())),
                Some(listener) => {
                    if listener.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }
}

impl Drop for ItemStream {
    /// What was not held can never be: receipts waiting on it give up, and a source waiting for
    /// room goes on without this stream.
    fn drop(&mut self) {
        self.buffer.leave();
    }
}

#[cfg(feature = "cli")]
impl ItemStream {
    /// A handle that gives up on this stream from elsewhere, as dropping it would: for a reader
    /// stuck where it cannot drop it (a thread blocked writing to a stalled pipe).
    pub(crate) fn detacher(&self) -> Detacher {
        Detacher {
            buffer: self.buffer.clone(),
        }
    }
}

/// See [`ItemStream::detacher`].
#[cfg(feature = "cli")]
pub(crate) struct Detacher {
    buffer: Arc<Buffer>,
}

#[cfg(feature = "cli")]
impl Detacher {
    pub(crate) fn detach(&self) {
        self.buffer.leave();
    }
}

impl Buffer {
    fn leave(&self) {
        self.reader_gone.store(true, Ordering::Release);
        self.writable.notify(usize::MAX);
        self.progressed.notify(usize::MAX);
    }
}

/// A stream fed by a consumer instead of the hub: the Redis sink of `listen --sink` hands each
/// item on once Redis has it, and the stdout writer reads them from the [`ItemStream`] this
/// feeds, in order and with back-pressure (a reader that does not keep up holds the sink, and so
/// the sources). Dropping the relay ends the stream once it is drained.
#[cfg(feature = "redis")]
pub(crate) struct Relay {
    buffer: Arc<Buffer>,
}

#[cfg(feature = "redis")]
impl Relay {
    /// A relay and the stream it feeds, holding at most `capacity` items.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn new(capacity: usize) -> (Relay, ItemStream) {
        let buffer = Arc::new(Buffer::new(capacity, Overflow::Backpressure, false));
        (
            Relay {
                buffer: buffer.clone(),
            },
            ItemStream::new(buffer),
        )
    }

    /// Hands `items` on in order, each once there is room; once the reader went away the rest
    /// are dropped (nobody is left to read them, and they are in Redis).
    pub(crate) async fn send(&self, items: impl IntoIterator<Item = Item>) {
        for mut item in items {
            loop {
                if self.buffer.reader_gone() {
                    return;
                }
                match self.buffer.push(item) {
                    Pushed::Full(back) => {
                        // Whatever was pushed so far, the reader may take now.
                        self.buffer.announce();
                        self.buffer.writable().await;
                        item = back;
                    }
                    _ => break,
                }
            }
        }
        self.buffer.announce();
    }
}

#[cfg(feature = "redis")]
impl Drop for Relay {
    fn drop(&mut self) {
        self.buffer.close();
    }
}

#[cfg(all(test, feature = "redis"))]
mod relay_tests {
    use super::*;
    use openflume_proto::{Level, Log, UnixMillis};

    fn item(n: u64) -> Item {
        Item::Log(Log::new(
            Level::Info,
            "t",
            "n",
            n.to_string(),
            UnixMillis(0),
        ))
    }

    /// In order, past a full buffer (the reader takes as the relay waits), then the end.
    #[test]
    fn items_go_on_in_order_with_back_pressure_and_the_stream_ends_with_the_relay() {
        let (relay, mut stream) = Relay::new(2);
        let sender = std::thread::spawn(move || {
            futures_lite::future::block_on(relay.send((0..10).map(item)));
        });
        let mut got = Vec::new();
        while let Some(item) = futures_lite::future::block_on(stream.next()) {
            got.push(item);
        }
        sender.join().unwrap();
        assert_eq!(got, (0..10).map(item).collect::<Vec<_>>());
    }

    #[test]
    fn a_gone_reader_drops_the_rest() {
        let (relay, stream) = Relay::new(1);
        drop(stream);
        futures_lite::future::block_on(relay.send((0..5).map(item)));
    }
}
