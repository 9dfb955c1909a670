//! The hub's feed: live items read from the log once, rendered once, and shared by every hub
//! session.
//!
//! Without it each session read the log itself after every commit, parsed each item and
//! rendered its frame, so N subscribers cost N reads, parses and renders of every event, on up
//! to 500 blocking threads with a SQLite connection each (issue 17). Now one task
//! ([`HubFeed::follow`]) waits for commits ([`EventLog::committed_beyond`]), reads the new rows
//! once, parses each once and renders its `item` frame once ([`RenderedItem::render`]), and keeps
//! the most recent ones in a bounded [`Ring`]. A session's [`HubOutput::ReadLog`] that falls
//! inside the ring is answered from memory ([`HubInput::ReadRendered`]: the items share their
//! text, nothing is copied); one older than the ring (a replay, a client that fell behind it)
//! reads the log as before, at most [`LOG_READS`] at once, so a reconnect storm cannot open
//! hundreds of connections.
//!
//! The session stays the single source of truth: it asks for `after < id ≤ until`, filters what
//! it gets with its own subscriptions, and decides the seam between replay and live, acks and
//! back-pressure exactly as for a log read. The ring only answers for ids it holds every
//! committed item of, so an answer from memory is the answer the log would give.
//!
//! Who holds an item: the log, durably, from its commit (the source of truth); the ring holds
//! a shared copy of the newest [`RING_ITEMS`] (at most [`RING_BYTES`]) and may forget
//! any of them at any time, since a session that needs an older one reads the log. Sessions are
//! woken by the feed ([`HubFeed::covered_beyond`]), not by the log, so a live read almost
//! always finds its items in the ring.
//!
//! [`HubOutput::ReadLog`]: openflume_proto::hub::HubOutput::ReadLog

use super::listen::report;
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message, Utf8Bytes};
use openflume_log::{Entry, EventId, EventLog, Filter as LogFilter, LogError};
use openflume_proto::Item;
use openflume_proto::hub::{Filter, HubInput, RenderedItem, StoredItem};
use smol::lock::Semaphore;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Items the ring keeps: sixteen seconds at 1 000 events/s, so a session that a loaded machine
/// holds back for a few seconds still reads from memory (a session behind the ring reads the
/// log, parsing and rendering for itself, which costs the more CPU the more are behind).
pub(crate) const RING_ITEMS: usize = 16 * 1024;
/// Bytes the ring keeps at most (frames and their keys), whatever their number: shared by all
/// sessions, so it does not grow with them.
pub(crate) const RING_BYTES: usize = 8 << 20;
/// Log reads for sessions behind the ring, at once; the others wait their turn.
pub(crate) const LOG_READS: usize = 8;
/// Rows the feed asks of the log at once.
const FEED_PAGE: usize = 1024;
/// After a failed read the feed tries again after this long, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// What a ring entry costs besides its frame (the keys, the entry itself), for the byte bound.
const ENTRY_OVERHEAD: usize = 128;

/// The newest committed items, rendered, with the range of ids they stand for: every committed
/// item with `floor < id ≤ top` is in `items` (rows that do not parse as items are left out, as
/// a log read leaves them out), so a read inside that range needs no log.
#[derive(Debug)]
pub(crate) struct Ring {
    floor: u64,
    top: u64,
    items: VecDeque<RenderedItem>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
}

impl Ring {
    /// An empty ring that will hold what is committed after `start`.
    pub(crate) fn new(start: u64, max_items: usize, max_bytes: usize) -> Ring {
        Ring {
            floor: start,
            top: start,
            items: VecDeque::new(),
            bytes: 0,
            max_items: max_items.max(1),
            max_bytes,
        }
    }

    /// Appends the items read after `top` up to `up_to` (ids ascending), then forgets the
    /// oldest while over either bound.
    pub(crate) fn extend(&mut self, items: Vec<RenderedItem>, up_to: u64) {
        for item in items {
            if item.event_id <= self.top || item.event_id > up_to {
                continue;
            }
            self.bytes += item.frame.len() + ENTRY_OVERHEAD;
            self.top = item.event_id;
            self.items.push_back(item);
        }
        self.top = self.top.max(up_to);
        while self.items.len() > self.max_items || self.bytes > self.max_bytes {
            let Some(oldest) = self.items.pop_front() else {
                break;
            };
            self.bytes -= oldest.frame.len() + ENTRY_OVERHEAD;
            self.floor = oldest.event_id;
        }
    }

    /// Forgets everything and starts again after `start`: what was committed between `top` and
    /// `start` is not read (a burst larger than the ring; those who need it read the log).
    pub(crate) fn skip_to(&mut self, start: u64) {
        if start > self.top {
            *self = Ring::new(start, self.max_items, self.max_bytes);
        }
    }

    /// The last id the ring covers.
    pub(crate) fn top(&self) -> u64 {
        self.top
    }

    /// The answer to a session's `ReadLog { after, until, limit, filter }`, or `None` when the
    /// ring does not cover `after < id ≤ until` (the log must answer). As a log read answers:
    /// at most `limit` matching items, and `up_to` the last of them when the limit cut the read
    /// short, `until` otherwise.
    pub(crate) fn answer(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        filter: &Filter,
    ) -> Option<HubInput> {
        if after < self.floor || until > self.top {
            return None;
        }
        let limit = limit.max(1);
        let first = self.items.partition_point(|item| item.event_id <= after);
        let mut items = Vec::new();
        for item in self.items.range(first..) {
            if item.event_id > until {
                break;
            }
            let key = item.conversation_key.as_deref();
            if filter.matches_keys(&item.source, &item.kind, key) {
                items.push(item.clone());
                if items.len() >= limit {
                    break;
                }
            }
        }
        let up_to = match items.last() {
            Some(last) if items.len() >= limit => last.event_id,
            _ => until,
        };
        Some(HubInput::ReadRendered { items, up_to })
    }
}

/// The shared feed of one `serve`: see the module docs.
pub(crate) struct HubFeed {
    ring: Mutex<Ring>,
    /// The ring's `top`, read without the lock by sessions waiting for more.
    covered: AtomicU64,
    /// Notified whenever `covered` grows.
    advanced: event_listener::Event,
    /// Permits for log reads of sessions behind the ring.
    log_reads: Semaphore,
    /// Sessions attached ([`Attached`]): the feed reads only while there is one.
    attached: AtomicUsize,
}

/// A session's hold on the feed: while any is held, the feed reads and renders each commit.
pub(crate) struct Attached<'a>(&'a HubFeed);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.0.attached.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HubFeed {
    /// A feed whose ring starts after `start` (the log's last committed id); it grows once
    /// [`follow`](Self::follow) runs.
    pub(crate) fn new(start: u64) -> HubFeed {
        HubFeed {
            ring: Mutex::new(Ring::new(start, RING_ITEMS, RING_BYTES)),
            covered: AtomicU64::new(start),
            advanced: event_listener::Event::new(),
            log_reads: Semaphore::new(LOG_READS),
            attached: AtomicUsize::new(0),
        }
    }

    /// Makes the feed read from the next commit on, until the hold is dropped.
    pub(crate) fn attach(&self) -> Attached<'_> {
        self.attached.fetch_add(1, Ordering::AcqRel);
        Attached(self)
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last id the feed has read: sessions are told the log committed up to here.
    pub(crate) fn covered(&self) -> u64 {
        self.covered.load(Ordering::Acquire)
    }

    /// Resolves once the feed has read beyond `after` (a condition, so a read between the
    /// caller's check and its wait is never missed).
    pub(crate) async fn covered_beyond(&self, after: u64) {
        loop {
            let listener = self.advanced.listen();
            if self.covered() > after {
                return;
            }
            listener.await;
        }
    }

    /// Follows the log for as long as the task runs: after each commit, reads the new rows
    /// once, renders them into the ring and wakes the sessions. A failed read is reported and
    /// tried again later; meanwhile sessions are not woken (what they have is still right).
    /// With no session attached, the commit is skipped unread.
    pub(crate) async fn follow(self: Arc<Self>, log: EventLog) {
        let mut retry = RETRY_MIN;
        loop {
            let top = self.covered();
            log.committed_beyond(EventId(top)).await;
            let committed = log.committed_id().0;
            if self.attached.load(Ordering::Acquire) == 0 {
                let mut ring = self.ring();
                ring.skip_to(committed);
                self.covered.store(ring.top(), Ordering::Release);
                drop(ring);
                self.advanced.notify(usize::MAX);
                continue;
            }
            // Only the newest RING_ITEMS can stay in the ring: a longer burst is not read whole.
            let from = top.max(committed.saturating_sub(RING_ITEMS as u64));
            let reader = log.clone();
            match smol::unblock(move || read_rendered(&reader, from, committed)).await {
                Ok(items) => {
                    let mut ring = self.ring();
                    ring.skip_to(from);
                    ring.extend(items, committed);
                    self.covered.store(ring.top(), Ordering::Release);
                    drop(ring);
                    self.advanced.notify(usize::MAX);
                    retry = RETRY_MIN;
                }
                Err(error) => {
                    report(format_args!("hub feed: cannot read the log: {error}"));
                    async_io::Timer::after(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Answers a session's `ReadLog`: from the ring when it covers the range, otherwise from
    /// the log (waiting for one of [`LOG_READS`] permits).
    pub(crate) async fn answer(
        &self,
        log: &EventLog,
        after: u64,
        until: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<HubInput, LogError> {
        if let Some(answer) = self.ring().answer(after, until, limit, filter) {
            return Ok(answer);
        }
        let _permit = self.log_reads.acquire().await;
        let log_filter = LogFilter {
            sources: filter.sources.clone(),
            types: None,
        };
        let reader = log.clone();
        let entries =
            smol::unblock(move || reader.read_after(EventId(after), limit, &log_filter)).await?;
        Ok(read_answer(entries, until, limit))
    }
}

/// Every committed row with `after < id ≤ until`, parsed and rendered.
fn read_rendered(log: &EventLog, after: u64, until: u64) -> Result<Vec<RenderedItem>, LogError> {
    let mut items = Vec::new();
    let mut last = after;
    while last < until {
        let entries = log.read_after(EventId(last), FEED_PAGE, &LogFilter::default())?;
        let full = entries.len() >= FEED_PAGE;
        for entry in entries {
            if entry.event_id.0 > until {
                return Ok(items);
            }
            last = entry.event_id.0;
            // The stored line is an item `listen` printed: it parses back.
            if let Ok(item) = serde_json::from_str::<Item>(&entry.record.json) {
                items.push(RenderedItem::render(last, &item));
            }
        }
        if !full {
            break;
        }
    }
    Ok(items)
}

/// The session's [`HubInput::Read`] for what the log returned for `ReadLog { until, limit }`.
fn read_answer(entries: Vec<Entry>, until: u64, limit: usize) -> HubInput {
    let full = entries.len() >= limit;
    let mut items = Vec::with_capacity(entries.len());
    let mut cut = false;
    for entry in entries {
        if entry.event_id.0 > until {
            cut = true;
            break;
        }
        // The stored line is an item `listen` printed: it parses back.
        if let Ok(item) = serde_json::from_str::<Item>(&entry.record.json) {
            items.push(StoredItem {
                event_id: entry.event_id.0,
                item,
            });
        }
    }
    let up_to = match items.last() {
        Some(last) if full && !cut => last.event_id,
        _ => until,
    };
    HubInput::Read { items, up_to }
}

/// A shared frame as a WebSocket text message, without copying it.
pub(crate) fn text_message(text: Arc<str>) -> Message {
    /// Lends the shared text's bytes to the message.
    struct Shared(Arc<str>);
    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    let bytes = WsBytes::from_owner(Shared(text.clone()));
    // A `str` is UTF-8: the check passes (and costs a pass over the frame, not a copy).
    let text = Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from(&*text));
    Message::Text(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::{Event, RawJson, UnixMillis};

    fn item(event_id: u64, source: &'static str) -> RenderedItem {
        let event = Event::new(source, "tick", RawJson::null(), UnixMillis(0));
        RenderedItem::render(event_id, &Item::Event(event))
    }

    fn ids(answer: Option<HubInput>) -> Option<(Vec<u64>, u64)> {
        match answer? {
            HubInput::ReadRendered { items, up_to } => {
                Some((items.iter().map(|i| i.event_id).collect(), up_to))
            }
            other => panic!("not a rendered read: {other:?}"),
        }
    }

    #[test]
    fn a_read_inside_the_ring_is_answered_from_it() {
        let mut ring = Ring::new(10, 100, usize::MAX);
        // 13 is not an item (a row that does not parse): the ring still covers it.
        ring.extend(vec![item(11, "a"), item(12, "b"), item(14, "a")], 15);
        let all = Filter::default();
        assert_eq!(
            ids(ring.answer(10, 15, 256, &all)),
            Some((vec![11, 12, 14], 15))
        );
        assert_eq!(ids(ring.answer(11, 13, 256, &all)), Some((vec![12], 13)));
        assert_eq!(ids(ring.answer(14, 15, 256, &all)), Some((vec![], 15)));
        // The limit counts matching items, and the answer covers up to the last one sent.
        assert_eq!(ids(ring.answer(10, 15, 2, &all)), Some((vec![11, 12], 12)));
        let only_a = Filter {
            sources: Some(vec!["a".into()]),
            ..Filter::default()
        };
        assert_eq!(ids(ring.answer(10, 15, 1, &only_a)), Some((vec![11], 11)));
        assert_eq!(ids(ring.answer(11, 15, 1, &only_a)), Some((vec![14], 14)));
        assert_eq!(
            ids(ring.answer(10, 15, 5, &only_a)),
            Some((vec![11, 14], 15))
        );
    }

    #[test]
    fn a_read_outside_the_ring_goes_to_the_log() {
        let mut ring = Ring::new(10, 100, usize::MAX);
        ring.extend(vec![item(11, "a"), item(12, "a")], 12);
        let all = Filter::default();
        assert_eq!(ids(ring.answer(9, 12, 256, &all)), None, "before the ring");
        assert_eq!(
            ids(ring.answer(10, 13, 256, &all)),
            None,
            "beyond what it read"
        );
        // A burst too long to keep: the ring starts again after it.
        ring.skip_to(500);
        assert_eq!(ids(ring.answer(11, 12, 256, &all)), None);
        ring.extend(vec![item(501, "a")], 501);
        assert_eq!(
            ids(ring.answer(500, 501, 256, &all)),
            Some((vec![501], 501))
        );
    }

    #[test]
    fn the_ring_is_bounded_by_items_and_bytes() {
        let mut ring = Ring::new(0, 4, usize::MAX);
        ring.extend((1..=10).map(|id| item(id, "a")).collect(), 10);
        let all = Filter::default();
        assert_eq!(ring.items.len(), 4);
        assert_eq!(
            ids(ring.answer(6, 10, 256, &all)),
            Some((vec![7, 8, 9, 10], 10))
        );
        assert_eq!(ids(ring.answer(5, 10, 256, &all)), None, "6 was forgotten");

        // The largest of the ten (two digits of id).
        let one = item(10, "a").frame.len() + ENTRY_OVERHEAD;
        let mut ring = Ring::new(0, 100, 3 * one);
        ring.extend((1..=10).map(|id| item(id, "a")).collect(), 10);
        assert_eq!(ring.items.len(), 3);
        assert!(ring.bytes <= 3 * one);
        assert_eq!(
            ids(ring.answer(7, 10, 256, &all)),
            Some((vec![8, 9, 10], 10))
        );
        assert_eq!(ids(ring.answer(6, 10, 256, &all)), None);
    }

    #[test]
    fn a_shared_frame_is_sent_as_its_text() {
        let frame: Arc<str> = Arc::from(r#"{"type":"item","event_id":1,"item":{"é":1}}"#);
        match text_message(frame.clone()) {
            Message::Text(text) => assert_eq!(text.as_str(), &*frame),
            other => panic!("not text: {other:?}"),
        }
    }

    /// Waits (with a deadline) until the feed has covered `id`.
    fn wait_covered(feed: &HubFeed, id: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        smol::block_on(async {
            let covered = feed.covered_beyond(id - 1);
            let late = async {
                async_io::Timer::at(deadline).await;
                panic!("the feed did not reach {id} (at {})", feed.covered());
            };
            futures_lite::future::or(covered, late).await;
        });
    }

    fn append(log: &EventLog, source: &'static str) {
        let records = vec![openflume_log::Record::from_item(&Item::Event(Event::new(
            source,
            "tick",
            RawJson::null(),
            UnixMillis(0),
        )))];
        log.append(records, Vec::new())
            .expect("append")
            .wait()
            .expect("committed");
    }

    #[test]
    fn the_feed_reads_only_while_a_session_is_attached() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = EventLog::open(dir.path(), openflume_log::LogOptions::default()).expect("log");
        let feed = Arc::new(HubFeed::new(0));
        let _task = smol::spawn(feed.clone().follow(log.clone()));
        append(&log, "a");
        wait_covered(&feed, 1);
        // Skipped unread: the ring does not answer for it, so a session would read the log.
        assert_eq!(ids(feed.ring().answer(0, 1, 10, &Filter::default())), None);
        let attached = feed.attach();
        append(&log, "b");
        wait_covered(&feed, 2);
        assert_eq!(
            ids(feed.ring().answer(1, 2, 10, &Filter::default())),
            Some((vec![2], 2))
        );
        drop(attached);
        append(&log, "c");
        wait_covered(&feed, 3);
        assert_eq!(ids(feed.ring().answer(2, 3, 10, &Filter::default())), None);
    }
}
