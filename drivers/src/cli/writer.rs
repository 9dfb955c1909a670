//! The thread that writes the firehose to stdout, so that a slow or stalled reader never blocks
//! the executor that runs the sources, their heartbeats and the signal watcher.
//!
//! It reads a back-pressure stream that holds items until commit, and commits after each batch
//! is flushed into stdout: a Slack envelope is acked, a GitHub cursor advanced, only once its
//! line was written. When stdout breaks it stops and drops the stream, so nothing more is
//! acknowledged and the services redeliver the rest to the next run. With `--sink redis://…` it
//! reads what the Redis sink relays once appended instead: the sink acknowledged those already,
//! and the writer's commits hold nothing upstream.
//!
//! With `--data`, it also keeps the sources' cursors ([`StreamCursors`]): folded from every item
//! it took, and stored (at most once a second, and at the end) only once those items were
//! flushed to stdout. A crash between a flush and the next store repeats at most that second's
//! items on the next start; it never skips one.

use super::filter::EventFilter;
use super::listen::report;
use super::output::{Format, ItemWriter};
use crate::cursors::{StreamCursors, to_stored};
use crate::stream::{Detacher, ItemStream};
use futures_lite::StreamExt;
use openflume_log::{Appended, EventLog};
use openflume_proto::{Checkpoint, Item};
use smol::lock::OnceCell;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

/// Flushed cursors are stored at most this often: each store is a transaction with an fsync.
const STORE_EVERY: Duration = Duration::from_secs(1);

/// How often a writer with nothing to write checks that stdout's reader is still there.
const READER_CHECK: Duration = Duration::from_millis(250);

/// What the writer prints and when it stops by itself.
pub(crate) struct WriterOptions {
    pub(crate) format: Format,
    /// Colour on stdout.
    pub(crate) colour: bool,
    /// Where logs go.
    pub(crate) logs: LogSink,
    /// The events printed; the others are committed with their batch all the same.
    pub(crate) filter: EventFilter,
    /// Stop after this many printed events.
    pub(crate) count: Option<u64>,
    /// `--data`: where the cursors are kept, and the cursors stored there.
    pub(crate) cursors: Option<(EventLog, StreamCursors)>,
}

/// Where the writer sends logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogSink {
    Stdout,
    /// On stderr, coloured or not (pretty format).
    Stderr {
        colour: bool,
    },
    Off,
}

/// Why the writer stopped.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// The stream ended (the flume closed) and everything was written.
    Drained,
    /// `--count` events were written.
    CountReached,
    /// Stdout's reader went away.
    BrokenPipe,
    /// Stdout could not be written (disk full, I/O error).
    Failed(io::Error),
}

/// The running writer thread.
pub(crate) struct Writer {
    detacher: Detacher,
    /// Receives the thread's end once it has stopped.
    done: smol::channel::Receiver<WriterEnd>,
    end: OnceCell<WriterEnd>,
}

impl Writer {
    /// Starts writing `stream` to stdout on a thread of its own.
    pub(crate) fn spawn(stream: ItemStream, options: WriterOptions) -> io::Result<Writer> {
        let detacher = stream.detacher();
        let (done_tx, done) = smol::channel::bounded(1);
        std::thread::Builder::new()
            .name("openflume-stdout".to_owned())
            .spawn(move || {
                let mut options = options;
                let mut store = options.cursors.take().map(CursorStore::new);
                let end = write_all(stream, &options, store.as_mut());
                if let Some(store) = store {
                    store.finish();
                }
                let _ = done_tx.try_send(end);
            })?;
        Ok(Writer {
            detacher,
            done,
            end: OnceCell::new(),
        })
    }

    /// Resolves once the thread has stopped, with why.
    pub(crate) async fn stopped(&self) -> &WriterEnd {
        self.end
            .get_or_init(|| async { self.done.recv().await.unwrap_or(WriterEnd::Drained) })
            .await
    }

    /// Why the thread stopped, if it has and someone waited for it.
    pub(crate) fn end(&self) -> Option<&WriterEnd> {
        self.end.get()
    }

    /// Gives up on the reader: the stream counts as gone, so the sources stop waiting for room
    /// and nothing the writer took but has not committed is ever acknowledged. The thread may
    /// stay blocked in a write; the process exits without it.
    pub(crate) fn detach(&self) {
        self.detacher.detach();
    }
}

/// The cursors of what the writer took, and which of them are flushed and due to be stored.
struct CursorStore {
    log: EventLog,
    cursors: StreamCursors,
    /// Cursors whose items are all flushed, not stored yet.
    flushed: BTreeMap<String, Checkpoint>,
    last_store: Instant,
    storing: Option<Appended>,
}

impl CursorStore {
    fn new((log, cursors): (EventLog, StreamCursors)) -> CursorStore {
        CursorStore {
            log,
            cursors,
            flushed: BTreeMap::new(),
            last_store: Instant::now(),
            storing: None,
        }
    }

    /// Everything folded so far is flushed: store it, if the last store is long enough ago.
    fn flushed(&mut self) {
        self.flushed.extend(self.cursors.take_changed());
        self.store_if_due();
    }

    fn store_if_due(&mut self) {
        if self.last_store.elapsed() >= STORE_EVERY {
            self.store();
        }
    }

    fn store(&mut self) {
        if self.flushed.is_empty() {
            return;
        }
        self.last_store = Instant::now();
        let changed = std::mem::take(&mut self.flushed).into_iter().collect();
        match self.log.append(Vec::new(), to_stored(changed)) {
            Ok(appended) => self.storing = Some(appended),
            Err(error) => report(format_args!("cannot store the cursors: {error}")),
        }
    }

    /// Stores what is flushed and waits for it.
    fn finish(mut self) {
        self.store();
        if let Some(Err(error)) = self.storing.take().map(Appended::wait) {
            report(format_args!("cannot store the cursors: {error}"));
        }
        self.log.close();
    }
}

fn write_all(
    mut stream: ItemStream,
    options: &WriterOptions,
    mut store: Option<&mut CursorStore>,
) -> WriterEnd {
    // The pipe keeps the kernel's size: enlarging it to 1 MiB (F_SETPIPE_SZ) measured no less
    // CPU per event, only more memory touched (README, performance).
    let stdout = io::stdout();
    let zone = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    let mut writer =
        ItemWriter::new(stdout.lock(), options.format, options.colour).in_zone(zone.clone());
    // Logs on stderr are diagnostics: a failed write there never stops the firehose.
    let mut log_writer = match options.logs {
        LogSink::Stderr { colour } => {
            Some(ItemWriter::new(io::stderr(), options.format, colour).in_zone(zone))
        }
        LogSink::Stdout | LogSink::Off => None,
    };
    let mut events = 0u64;
    let reached = |events: u64| options.count.is_some_and(|count| events >= count);
    // One timer for the whole run: registering a new one per wait would wake the reactor thread.
    let mut reader_check = async_io::Timer::interval(READER_CHECK);
    let mut batch = VecDeque::new();
    loop {
        // Wait for the first item of a batch, then take what is ready without waiting.
        match next_or_reader_gone(&mut stream, &mut reader_check, store.as_deref_mut()) {
            Waited::Item(item) => batch.push_back(item),
            // Every batch was flushed and committed already.
            Waited::End => return WriterEnd::Drained,
            Waited::ReaderGone => return WriterEnd::BrokenPipe,
        }
        while !batch.is_empty() {
            if let Some(store) = store.as_deref_mut() {
                store.cursors.take_checkpoints(&mut stream);
            }
            while let Some(item) = batch.pop_front() {
                // A filtered-out event is committed with this batch: acknowledged, not held.
                let printed = match &item {
                    Item::Event(event) => options.filter.wants(event),
                    // Logs, and kinds of item newer than this writer (`Item` is
                    // `#[non_exhaustive]`): they go where the logs go, so stdout stays events
                    // alone when the logs are routed elsewhere.
                    _ => {
                        if let Some(log_writer) = &mut log_writer {
                            let _ = log_writer.write(&item);
                        }
                        options.logs == LogSink::Stdout
                    }
                };
                if printed && let Err(error) = writer.write(&item) {
                    return failed(error);
                }
                if let Some(store) = store.as_deref_mut() {
                    store.cursors.held(&item);
                }
                if printed && matches!(item, Item::Event(_)) {
                    events += 1;
                    if reached(events) {
                        if let Err(error) = writer.flush() {
                            return failed(error);
                        }
                        // What was taken but not written is not held.
                        stream.commit_all_but(batch.len());
                        if let Some(store) = store {
                            store.flushed();
                        }
                        return WriterEnd::CountReached;
                    }
                }
            }
            stream.take_ready(&mut batch);
        }
        if let Some(log_writer) = &mut log_writer {
            let _ = log_writer.flush();
        }
        if let Err(error) = writer.flush() {
            return failed(error);
        }
        stream.commit();
        if let Some(store) = store.as_deref_mut() {
            store.flushed();
        }
    }
}

enum Waited {
    Item(Item),
    End,
    ReaderGone,
}

/// The next item; while none comes, checks every [`READER_CHECK`] whether stdout's reader went
/// away, so that `listen | head -1` ends soon after `head` does even when the sources are quiet
/// (a write would tell, but there is nothing to write); and stores flushed cursors that are due,
/// so a quiet stream stores them too.
fn next_or_reader_gone(
    stream: &mut ItemStream,
    reader_check: &mut async_io::Timer,
    mut store: Option<&mut CursorStore>,
) -> Waited {
    loop {
        // A plain parker: `smol::block_on` would make this thread drive the reactor while it
        // waits, moving the sources' socket wake-ups across threads.
        let waited = futures_lite::future::block_on(futures_lite::future::or(
            async { Some(stream.next().await) },
            async {
                reader_check.next().await;
                None
            },
        ));
        match waited {
            Some(Some(item)) => return Waited::Item(item),
            Some(None) => return Waited::End,
            None if stdout_reader_gone() => return Waited::ReaderGone,
            None => {
                if let Some(store) = store.as_deref_mut() {
                    store.store_if_due();
                }
            }
        }
    }
}

/// True when stdout is a pipe or socket whose other end is closed (poll reports an error or a
/// hang-up without writing anything).
#[cfg(target_os = "linux")]
pub(crate) fn stdout_reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let stdout = io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&now))
        .is_ok_and(|_| fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn stdout_reader_gone() -> bool {
    false
}

fn failed(error: io::Error) -> WriterEnd {
    if error.kind() == io::ErrorKind::BrokenPipe {
        WriterEnd::BrokenPipe
    } else {
        WriterEnd::Failed(error)
    }
}
