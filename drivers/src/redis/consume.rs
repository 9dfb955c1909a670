//! `openflume consume`: one member of a Redis consumer group, printing the group's items as JSON
//! Lines, so a shell pipeline can be a worker.
//!
//! Who holds an entry: Redis, in the group's pending list, from `XREADGROUP` until `XACK`. This
//! consumer prints a batch, flushes stdout, and only then `XACK`s it; a crash (or SIGKILL) in
//! between leaves the batch pending under this consumer's name. Delivery is at least once: after
//! `--claim-idle`, another member claims those entries (`XAUTOCLAIM`) and prints them again, and
//! a restart under the same `--consumer` name prints its own pending entries first. A reader that
//! must not act twice keys on `event_id`.
//!
//! The order of each loop: this consumer's own pending entries (once, at start), then entries of
//! dead members idle for `--claim-idle` (at start and every half of it), then new entries
//! (`XREADGROUP … >`, blocking until the next claim is due).

use super::entries::{Entry, parse_entries, parse_read, text};
use super::{Backoff, RedisError, RedisTarget};
use ::redis::Value;
use ::redis::aio::MultiplexedConnection;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Entries read at once.
const PAGE: usize = 256;
/// The longest `BLOCK` of a read: the loop comes round this often to claim and to notice a
/// broken connection. Below the connection's response timeout.
const MAX_BLOCK: Duration = Duration::from_secs(2);
/// Redis failing this long in a row ends the command with exit code 1.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// What `consume` was asked to do.
#[derive(Debug)]
pub(crate) struct ConsumeOptions {
    pub(crate) target: RedisTarget,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) claim_idle: Duration,
}

/// Why `consume` stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// stdout's reader went away, or a write failed.
    Stdout(io::Error),
    /// Redis kept failing for [`GIVE_UP_AFTER`].
    Redis(RedisError),
}

/// The default consumer name: the host's name and this process's id, so each run is a new
/// member and a dead one's entries are claimed by the others.
pub(crate) fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "openflume".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Runs until stdout closes or Redis fails for good; a signal is handled by the caller.
pub(crate) async fn run(options: &ConsumeOptions) -> Stop {
    let mut member = Member {
        options,
        client: match options.target.client() {
            Ok(client) => client,
            Err(error) => return Stop::Redis(error),
        },
        conn: None,
        own_pending: true,
        claim_cursor: "0-0".to_owned(),
        next_claim: Instant::now(),
        trimmed: 0,
    };
    let mut backoff = Backoff::new();
    let mut failing_since: Option<Instant> = None;
    loop {
        match member.step().await {
            Ok(()) => {
                failing_since = None;
                backoff.reset();
            }
            Err(Failure::Stdout(error)) => return Stop::Stdout(error),
            Err(Failure::Redis(error)) => {
                member.conn = None;
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP_AFTER {
                    return Stop::Redis(error);
                }
                crate::cli::report(format_args!("{error}; retrying"));
                async_io::Timer::after(backoff.next_wait()).await;
            }
        }
    }
}

enum Failure {
    Stdout(io::Error),
    Redis(RedisError),
}

struct Member<'a> {
    options: &'a ConsumeOptions,
    client: ::redis::Client,
    conn: Option<MultiplexedConnection>,
    /// This consumer's own pending entries are still to be read (a restart under its name).
    own_pending: bool,
    /// Where the current `XAUTOCLAIM` scan is.
    claim_cursor: String,
    next_claim: Instant,
    /// Entries trimmed away while pending: acknowledged, not printed.
    trimmed: u64,
}

impl Member<'_> {
    /// One read and what follows it: print, flush, acknowledge.
    async fn step(&mut self) -> Result<(), Failure> {
        if self.conn.is_none() {
            let mut conn = super::connect(&self.client).await.map_err(Failure::Redis)?;
            create_group(&mut conn, self.options).await?;
            self.conn = Some(conn);
        }
        let options = self.options;
        let stream = options.target.stream();
        let entries = if self.own_pending {
            let reply = self
                .query("XREADGROUP", &read_group(options, None, "0"))
                .await?;
            let entries = parse_read(&reply);
            self.own_pending = !entries.is_empty();
            entries
        } else if Instant::now() >= self.next_claim {
            let reply = self
                .query(
                    "XAUTOCLAIM",
                    ::redis::cmd("XAUTOCLAIM")
                        .arg(stream)
                        .arg(&options.group)
                        .arg(&options.consumer)
                        .arg(millis(options.claim_idle))
                        .arg(&self.claim_cursor)
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await?;
            let (next, entries, deleted) = parse_autoclaim(&reply);
            // Entries deleted while pending leave the pending list with this reply.
            self.note_trimmed(deleted);
            if next == "0-0" {
                self.next_claim = Instant::now() + (options.claim_idle / 2).max(ms(100));
            }
            self.claim_cursor = next;
            entries
        } else {
            let block = self
                .next_claim
                .saturating_duration_since(Instant::now())
                .clamp(ms(1), MAX_BLOCK);
            let reply = self
                .query("XREADGROUP", &read_group(options, Some(block), ">"))
                .await?;
            parse_read(&reply)
        };
        if entries.is_empty() {
            return Ok(());
        }
        self.print_and_ack(entries).await
    }

    async fn print_and_ack(&mut self, entries: Vec<Entry>) -> Result<(), Failure> {
        let mut text = String::new();
        let mut trimmed = 0;
        for entry in &entries {
            match entry.line() {
                Some(line) => {
                    text.push_str(&line);
                    text.push('\n');
                }
                None => trimmed += 1,
            }
        }
        // On a thread of its own: a reader that stalls blocks the write, not the signals.
        smol::unblock(move || {
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        })
        .await
        .map_err(Failure::Stdout)?;
        self.note_trimmed(trimmed);
        let mut ack = ::redis::cmd("XACK");
        ack.arg(self.options.target.stream())
            .arg(&self.options.group);
        for entry in &entries {
            ack.arg(entry.id.to_string());
        }
        self.query("XACK", &ack).await?;
        Ok(())
    }

    fn note_trimmed(&mut self, count: u64) {
        if count > 0 {
            self.trimmed += count;
            crate::cli::report(format_args!(
                "{count} pending entries were trimmed (MAXLEN) before they were delivered; {} \
                 in all",
                self.trimmed
            ));
        }
    }

    async fn query(&mut self, doing: &'static str, cmd: &::redis::Cmd) -> Result<Value, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Redis(RedisError::Command {
                doing,
                reason: "not connected".to_owned(),
            }));
        };
        cmd.query_async(conn)
            .await
            .map_err(|error| Failure::Redis(RedisError::command(doing, &error)))
    }
}

/// Creates the group at the stream's first entry (and the stream, if there is none yet); an
/// existing group is left as it is.
async fn create_group(
    conn: &mut MultiplexedConnection,
    options: &ConsumeOptions,
) -> Result<(), Failure> {
    let created: Result<Value, _> = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(options.target.stream())
        .arg(&options.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        Err(error) => Err(Failure::Redis(RedisError::command("XGROUP CREATE", &error))),
    }
}

/// `XAUTOCLAIM`'s reply: the cursor to go on from, the claimed entries, and how many ids were
/// deleted from the stream while pending (Redis 7 drops those from the pending list).
fn parse_autoclaim(reply: &Value) -> (String, Vec<Entry>, u64) {
    let Value::Array(parts) = reply else {
        return ("0-0".to_owned(), Vec::new(), 0);
    };
    let next = parts
        .first()
        .and_then(text)
        .unwrap_or_else(|| "0-0".to_owned());
    let entries = parts.get(1).map(parse_entries).unwrap_or_default();
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.len() as u64,
        _ => 0,
    };
    (next, entries, deleted)
}

/// `XREADGROUP` for this consumer, a page from `from` (`0`: its own pending entries, `>`: new
/// ones), blocking for `block` when given.
fn read_group(options: &ConsumeOptions, block: Option<Duration>, from: &str) -> ::redis::Cmd {
    let mut cmd = ::redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&options.group)
        .arg(&options.consumer)
        .arg("COUNT")
        .arg(PAGE);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(millis(block));
    }
    cmd.arg("STREAMS").arg(options.target.stream()).arg(from);
    cmd
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}
