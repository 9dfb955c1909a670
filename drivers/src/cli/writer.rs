//! The thread that writes the firehose to stdout, so that a slow or stalled reader never blocks
//! the executor that runs the sources, their heartbeats and the signal watcher.
//!
//! It reads a back-pressure stream that holds items until commit, and commits after each batch
//! is flushed into stdout: a Slack envelope is acked, a GitHub cursor advanced, only once its
//! line was written. When stdout breaks it stops and drops the stream, so nothing more is
//! acknowledged and the services redeliver the rest to the next run.

use super::filter::EventFilter;
use super::output::{Format, ItemWriter};
use crate::stream::{Detacher, ItemStream};
use futures_lite::StreamExt;
use openflume_proto::Item;
use smol::lock::OnceCell;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

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
                let _ = done_tx.try_send(write_all(stream, &options));
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

fn write_all(mut stream: ItemStream, options: &WriterOptions) -> WriterEnd {
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
        match next_or_reader_gone(&mut stream, &mut reader_check) {
            Waited::Item(item) => batch.push_back(item),
            // Every batch was flushed and committed already.
            Waited::End => return WriterEnd::Drained,
            Waited::ReaderGone => return WriterEnd::BrokenPipe,
        }
        while !batch.is_empty() {
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
                if printed && matches!(item, Item::Event(_)) {
                    events += 1;
                    if reached(events) {
                        if let Err(error) = writer.flush() {
                            return failed(error);
                        }
                        // What was taken but not written is not held.
                        stream.commit_all_but(batch.len());
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
    }
}

enum Waited {
    Item(Item),
    End,
    ReaderGone,
}

/// The next item; while none comes, checks every [`READER_CHECK`] whether stdout's reader went
/// away, so that `listen | head -1` ends soon after `head` does even when the sources are quiet
/// (a write would tell, but there is nothing to write).
fn next_or_reader_gone(stream: &mut ItemStream, reader_check: &mut async_io::Timer) -> Waited {
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
            None => {}
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
