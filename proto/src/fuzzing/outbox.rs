//! The `outbox` target's harness: one forwarding target's outbox against an in-memory log and a
//! receiver that answers anything, with crashes between any two outputs and restarts from the
//! state as stored.
//!
//! The harness performs outputs as `drivers/src/forward.rs` does, in order: a `ReadLog` is
//! answered from the log, a `Send` goes out, a `Persist` is stored (as JSON, so the state
//! round-trips), a `Log` is appended to the log. A crash drops the outputs after the point it
//! hits; the next outbox starts from what was stored. The checks judge every output the
//! machine gave, performed or not.

use super::{FUZZ_TOKEN, MAX_VIRTUAL_TIME, Reader, delay, pick};
use crate::outbox::{
    Outbox, OutboxConfig, OutboxInput, OutboxOutput, Pending, TargetState, WEBHOOK_ID,
};
use crate::{Level, Millis, Misuse, Now, ReqId, UnixMillis};

const SOURCES: [&str; 3] = ["slack", "github", "custom"];
const TYPES: [&str; 3] = ["message", "push", "deploy"];
/// A credential in the target's URL: logs name the target with it redacted.
const URL_TOKEN: &str = "URLTOKEN-51c3a7";
/// The wall clock at monotonic 0.
const WALL: i64 = 1_764_100_000_000;
/// After the last input, timers run this long: past a request's timeout, the longest backoff
/// and the short age limit.
const SETTLE_MS: u64 = 3 * 60_000;

/// Runs one target over the program `data` describes.
pub(super) fn run(data: &[u8]) {
    let mut reader = Reader { data };
    let flags = reader.byte();
    let secret = if flags & 1 == 0 {
        FUZZ_TOKEN.to_owned()
    } else {
        format!(
            "whsec_{}",
            crate::webhook::base64_encode(FUZZ_TOKEN.as_bytes())
        )
    };
    // The URL's own credential must not reach a log either (it is redacted there).
    let url = if flags & 2 == 0 {
        "https://hooks.example/in".to_owned()
    } else {
        format!("https://hooks.example/in?token={URL_TOKEN}")
    };
    let config = OutboxConfig {
        max_age_ms: if flags & 4 == 0 { 60_000 } else { 600_000 },
        retry_base_ms: 100,
        retry_max_ms: 60_000,
        request_timeout_ms: 2_000,
        page: usize::from(flags >> 3 & 3) + 1,
        ..OutboxConfig::new(url, secret.clone())
    };
    let Ok(outbox) = Outbox::new(config.clone(), u64::from(flags)) else {
        panic!("the fuzz configuration is valid");
    };
    let mut run = Run {
        outbox,
        config,
        secret,
        sources: (flags & 0x20 != 0).then_some(&SOURCES[..2]),
        types: (flags & 0x40 != 0).then_some(&TYPES[..2]),
        seed: u64::from(flags),
        now: Millis(0),
        wall_offset: 0,
        rows: Vec::new(),
        top: 0,
        stored: None,
        answers: Vec::new(),
        crash_in: None,
        instance: Instance::default(),
    };
    for _ in 0..reader.byte() % 8 {
        let spec = reader.byte();
        run.append_event(spec);
    }
    // A new target, or one an earlier process stored (any attempts, times, even disabled).
    let shape = reader.byte();
    if shape & 1 == 1 {
        let delivered_through = u64::from(reader.byte()) % (run.top + 2);
        let attempts = u32::from(reader.byte() % 16);
        let state = TargetState {
            delivered_through,
            head: (attempts > 0).then(|| delivered_through + 1 + u64::from(shape >> 6)),
            attempts,
            first_attempt_at: (attempts > 0)
                .then(|| UnixMillis(WALL - i64::from(reader.u16()) * 1000)),
            next_attempt_at: (shape & 2 == 2)
                .then(|| UnixMillis(WALL + i64::from(reader.u16()) * 100 - 60_000)),
            disabled: shape & 0x3c == 0x3c,
        };
        run.store(&state);
    }
    run.start();
    let mut steps = 0;
    while !reader.is_empty() && steps < 256 && run.now < MAX_VIRTUAL_TIME {
        steps += 1;
        let target = run.now + delay(&mut reader);
        run.advance_to(target);
        run.step(&mut reader);
    }
    let settle = run.now + SETTLE_MS;
    run.advance_to(settle);
    run.check_debug();
}

/// One row of the log.
struct Row {
    id: u64,
    /// A log line rather than an event: never forwarded.
    log: bool,
    source: String,
    kind: String,
    body: String,
}

/// The outbox, the log, the store and the driver's part.
struct Run {
    outbox: Outbox,
    config: OutboxConfig,
    secret: String,
    /// The target's `sources=` and `types=` (`None`: all).
    sources: Option<&'static [&'static str]>,
    types: Option<&'static [&'static str]>,
    seed: u64,
    now: Millis,
    /// The wall clock's steps (NTP) since the start.
    wall_offset: i64,
    rows: Vec<Row>,
    top: u64,
    /// The stored state, as read back from the JSON the database holds.
    stored: Option<TargetState>,
    /// Reads the driver owes.
    answers: Vec<OutboxInput>,
    /// Outputs still performed before the process dies.
    crash_in: Option<usize>,
    instance: Instance,
}

/// What one process of the target did, as the machine told it.
#[derive(Default)]
struct Instance {
    /// `delivered_through` as the machine last set it.
    cursor: u64,
    /// Requests sent, oldest first.
    requests: Vec<ReqId>,
    /// The event of the last request.
    last_sent: Option<u64>,
    /// Events answered 2xx.
    delivered: Vec<u64>,
    /// The highest event handed to it in a read.
    handed: u64,
    /// The highest id it was told is committed (or read up to).
    told: u64,
    disabled: bool,
}

/// What one input's outputs held, for the checks after them.
#[derive(Default)]
struct Seen {
    persisted: Vec<TargetState>,
    gave_up: Option<u64>,
    disabled_log: bool,
}

impl Run {
    fn now(&self) -> Now {
        Now {
            mono: self.now,
            wall: UnixMillis(WALL + self.now.0 as i64 + self.wall_offset),
        }
    }

    fn append_event(&mut self, spec: u8) {
        let id = self.top + 1 + u64::from(spec >> 6);
        let source = SOURCES[usize::from(spec & 3) % SOURCES.len()];
        let kind = TYPES[usize::from(spec >> 2 & 3) % TYPES.len()];
        let body = format!(
            r#"{{"event_id":{id},"kind":"event","event":{{"source":"{source}","type":"{kind}"}}}}"#
        );
        self.rows.push(Row {
            id,
            log: false,
            source: source.to_owned(),
            kind: kind.to_owned(),
            body,
        });
        self.top = id;
    }

    fn passes(&self, row: &Row) -> bool {
        self.sources.is_none_or(|list| list.contains(&&*row.source))
            && self.types.is_none_or(|list| list.contains(&&*row.kind))
    }

    /// The event the target must be sent next after `cursor`: in id order, none skipped.
    fn next_event(&self, cursor: u64) -> Option<u64> {
        self.rows
            .iter()
            .find(|row| row.id > cursor && !row.log && self.passes(row))
            .map(|row| row.id)
    }

    /// Starts a process on what was stored.
    fn start(&mut self) {
        let state = self.stored.clone();
        self.instance = Instance {
            cursor: state.as_ref().map_or(self.top, |s| s.delivered_through),
            told: self.top,
            disabled: state.as_ref().is_some_and(|s| s.disabled),
            ..Instance::default()
        };
        let committed = self.top;
        self.feed(OutboxInput::Start { state, committed });
        self.check_debug();
    }

    /// Neither the secret nor its key in `Debug` (the URL, the target's address, may show).
    fn check_debug(&self) {
        let debug = format!("{:?} {:?}", self.outbox, self.config);
        assert!(
            !debug.contains(FUZZ_TOKEN) && !debug.contains(&self.secret),
            "the secret in Debug: {debug}"
        );
    }

    /// A crash, then a new process on the same log and store.
    fn restart(&mut self) {
        self.seed += 1;
        let Ok(outbox) = Outbox::new(self.config.clone(), self.seed) else {
            panic!("the fuzz configuration is valid");
        };
        self.outbox = outbox;
        self.answers.clear();
        self.crash_in = None;
        self.start();
    }

    fn step(&mut self, reader: &mut Reader<'_>) {
        let input = match reader.byte() % 12 {
            0..=2 => {
                for _ in 0..reader.byte() % 4 {
                    let spec = reader.byte();
                    self.append_event(spec);
                }
                // Sometimes a stale notice: the machine keeps the highest.
                let stale = u64::from(reader.byte() % 4);
                OutboxInput::Committed {
                    last_id: self.top.saturating_sub(stale),
                }
            }
            3..=6 => {
                let req = pick(reader, &self.instance.requests, ReqId(1));
                const STATUSES: [u16; 12] =
                    [200, 200, 204, 201, 299, 410, 500, 503, 429, 404, 301, 100];
                let b = reader.byte();
                let status = match STATUSES.get(usize::from(b)) {
                    Some(status) => *status,
                    None if b < 128 => STATUSES[usize::from(b) % STATUSES.len()],
                    None => reader.u16() % 1000,
                };
                OutboxInput::Response { req, status }
            }
            7 => OutboxInput::RequestFailed {
                req: pick(reader, &self.instance.requests, ReqId(1)),
                error: "connection refused".to_owned(),
            },
            // The wall clock steps (NTP), up to two hours either way; the machine sees it with
            // the next input.
            8 => {
                let step = i64::from(reader.u16()) - 32_768;
                self.wall_offset += step * 220;
                OutboxInput::Timer
            }
            // The process dies now, or once the next inputs' first 0 to 2 outputs are
            // performed (0: the input, a 2xx say, came and nothing of it was stored).
            9 => {
                match reader.byte() % 4 {
                    3 => self.restart(),
                    n => self.crash_in = Some(usize::from(n)),
                }
                return;
            }
            // Early or spurious.
            _ => OutboxInput::Timer,
        };
        self.feed(input);
    }

    /// Fires every timer due by `target`, each at its deadline.
    fn advance_to(&mut self, target: Millis) {
        let mut fired = 0;
        while let Some(deadline) = self.outbox.poll_timeout()
            && deadline <= target
        {
            fired += 1;
            assert!(fired < 100_000, "timers keep firing at {deadline:?}");
            self.now = self.now.max(deadline);
            self.feed(OutboxInput::Timer);
            if let Some(next) = self.outbox.poll_timeout() {
                assert!(next > self.now, "a Timer left a deadline due: {next:?}");
            }
        }
        self.now = self.now.max(target);
    }

    /// Feeds one input and what the driver owes after it (reads), checking every output.
    fn feed(&mut self, input: OutboxInput) {
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            self.feed_one(input);
            if self.crash_in == Some(0) {
                return self.restart();
            }
            queue.append(&mut self.answers);
        }
    }

    fn feed_one(&mut self, input: OutboxInput) {
        // The answer to the request in flight, and the event it was for.
        let in_flight = self.outbox.in_flight();
        let status = match &input {
            OutboxInput::Response { req, status } if Some(*req) == in_flight => Some(*status),
            OutboxInput::RequestFailed { req, .. } if Some(*req) == in_flight => Some(0),
            _ => None,
        };
        assert!(
            status.is_none() || self.instance.last_sent.is_some(),
            "a request in flight that was never sent"
        );
        let answered = status.zip(self.instance.last_sent);
        match &input {
            OutboxInput::Read { items, up_to } => {
                let last = items.last().map_or(0, |item| item.event_id);
                self.instance.handed = self.instance.handed.max(last);
                self.instance.told = self.instance.told.max(last).max(*up_to);
            }
            OutboxInput::Committed { last_id } => {
                self.instance.told = self.instance.told.max(*last_id);
            }
            _ => {}
        }
        let now = self.now();
        match self.outbox.handle_input(now, input) {
            Ok(()) => {}
            Err(Misuse::Finished) => {
                assert!(self.instance.disabled, "finished but not disabled");
                return;
            }
            Err(misuse) => panic!("misuse by the harness: {misuse}"),
        }
        let mut seen = Seen::default();
        while let Some(output) = self.outbox.poll_output() {
            self.check(&output, answered, &mut seen);
            match self.crash_in {
                Some(0) => continue,
                Some(n) => self.crash_in = Some(n - 1),
                None => {}
            }
            self.perform(output);
        }
        self.after_input(answered, &seen);
    }

    /// Judges one output, whether or not it is performed.
    fn check(&mut self, output: &OutboxOutput, answered: Option<(u16, u64)>, seen: &mut Seen) {
        let stored_through = self.stored.as_ref().map_or(0, |s| s.delivered_through);
        let instance = &mut self.instance;
        match output {
            OutboxOutput::ReadLog { after, limit } => {
                assert_eq!(*limit, self.config.page, "read of {limit}");
                assert!(
                    *after >= instance.cursor && instance.handed <= instance.cursor,
                    "read after {after} with events up to {} handed, delivered through {}",
                    instance.handed,
                    instance.cursor
                );
            }
            OutboxOutput::Send {
                req,
                event_id,
                request,
            } => {
                assert!(!instance.disabled, "a send to a disabled target");
                assert!(
                    self.stored.as_ref().is_none_or(|s| !s.disabled),
                    "a send after the disabled state was stored"
                );
                let next = self.next_event(self.instance.cursor);
                let instance = &mut self.instance;
                assert_eq!(
                    Some(*event_id),
                    next,
                    "sent {event_id} delivered through {}",
                    instance.cursor
                );
                assert!(
                    *event_id > stored_through,
                    "sent {event_id} again after its delivery was stored ({stored_through})"
                );
                assert!(
                    !instance.delivered.contains(event_id),
                    "sent {event_id} again after its 2xx"
                );
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str())
                };
                assert_eq!(header(WEBHOOK_ID), Some(&*event_id.to_string()));
                for (name, value) in &request.headers {
                    assert!(
                        !value.contains(FUZZ_TOKEN) && !value.contains(&self.secret),
                        "the secret in header {name}"
                    );
                }
                instance.requests.push(*req);
                instance.last_sent = Some(*event_id);
            }
            OutboxOutput::Persist(state) => {
                let json = serde_json::to_string(state).unwrap_or_default();
                assert!(!json.contains(FUZZ_TOKEN), "the secret in a state: {json}");
                let through = state.delivered_through;
                assert!(
                    through >= instance.cursor,
                    "the cursor went back to {through}"
                );
                if through > instance.cursor {
                    let delivered =
                        answered.is_some_and(|(s, e)| (200..300).contains(&s) && e == through);
                    let gave_up =
                        seen.gave_up == Some(through) && instance.last_sent == Some(through);
                    assert!(
                        delivered || gave_up,
                        "moved to {through} without its 2xx or a give-up"
                    );
                }
                if state.disabled {
                    assert!(
                        answered.is_some_and(|(s, _)| s == 410) && seen.disabled_log,
                        "disabled without a logged 410"
                    );
                    instance.disabled = true;
                }
                if let Some(at) = state.next_attempt_at {
                    let wall = WALL + self.now.0 as i64 + self.wall_offset;
                    assert!(at.0 >= wall, "a retry stored in the past: {at:?}");
                }
                instance.cursor = through;
                seen.persisted.push(state.clone());
            }
            OutboxOutput::Log(log) => {
                let text = serde_json::to_string(log).unwrap_or_default();
                assert!(
                    !text.contains(FUZZ_TOKEN)
                        && !text.contains(&self.secret)
                        && !text.contains(URL_TOKEN),
                    "a secret in a log: {text}"
                );
                let event_id = log
                    .detail
                    .as_ref()
                    .and_then(|d| d.get("event_id"))
                    .and_then(serde_json::Value::as_u64);
                match log.action.as_str() {
                    "forward.gave_up" => seen.gave_up = event_id,
                    "forward.disabled" => seen.disabled_log = true,
                    "forward.start" | "forward.stale" | "forward.delivered" | "forward.retry" => {}
                    other => panic!("an unknown log {other}"),
                }
            }
        }
    }

    /// Does what the driver does with an output.
    fn perform(&mut self, output: OutboxOutput) {
        match output {
            OutboxOutput::ReadLog { after, limit } => {
                let answer = self.read(after, limit);
                self.answers.push(answer);
            }
            OutboxOutput::Persist(state) => self.store(&state),
            // The driver appends its logs (Info and above) to the log: rows that are no events.
            OutboxOutput::Log(log) if log.level >= Level::Info => {
                self.top += 1;
                self.rows.push(Row {
                    id: self.top,
                    log: true,
                    source: log.source,
                    kind: log.action,
                    body: String::new(),
                });
            }
            _ => {}
        }
    }

    /// The forward driver's read: up to `limit` rows the target's filter passes, events only
    /// handed over, and how far the read looked (to the log's end when it was not cut short).
    fn read(&self, after: u64, limit: usize) -> OutboxInput {
        let entries: Vec<&Row> = self
            .rows
            .iter()
            .filter(|row| row.id > after && self.passes(row))
            .take(limit)
            .collect();
        let full = entries.len() >= limit;
        let last = entries.last().map_or(after, |row| row.id);
        let up_to = if full { last } else { last.max(self.top) };
        let items = entries
            .into_iter()
            .filter(|row| !row.log)
            .map(|row| Pending {
                event_id: row.id,
                body: row.body.clone(),
            })
            .collect();
        OutboxInput::Read { items, up_to }
    }

    /// Stores `state` as the database does, as JSON, and reads it back as the next start will.
    fn store(&mut self, state: &TargetState) {
        let json = serde_json::to_string(state).unwrap_or_default();
        let back = serde_json::from_str::<TargetState>(&json)
            .unwrap_or_else(|e| panic!("a stored state does not read back: {e}: {json}"));
        assert_eq!(&back, state, "a state that does not round-trip");
        self.stored = Some(back);
    }

    /// Checks after every input: what an answer had to cause, the timer, the queue's bound.
    fn after_input(&mut self, answered: Option<(u16, u64)>, seen: &Seen) {
        let instance = &mut self.instance;
        match answered {
            Some((200..=299, event)) => {
                assert!(
                    seen.persisted.iter().any(|s| s.delivered_through == event),
                    "the 2xx for {event} was not stored"
                );
                instance.delivered.push(event);
            }
            Some((410, _)) => assert!(
                seen.persisted.iter().any(|s| s.disabled),
                "a 410 did not disable the target"
            ),
            // A failure is stored as a retry or a give-up.
            Some(_) => assert!(!seen.persisted.is_empty(), "a failure was not stored"),
            None => {}
        }
        assert_eq!(self.outbox.is_finished(), instance.disabled);
        let now = self.now;
        match self.outbox.poll_timeout() {
            Some(deadline) => assert!(deadline >= now, "timer in the past: {deadline:?}"),
            None => assert!(
                instance.disabled || self.outbox.in_flight().is_none(),
                "a request in flight with no deadline"
            ),
        }
        // At most a page of events read and not delivered, beside the ids not read yet; for a
        // disabled target, every id after its cursor.
        let depth = self.outbox.queue_depth();
        let unread = instance.told.saturating_sub(instance.cursor);
        if instance.disabled {
            assert_eq!(depth, unread, "a disabled target's queue depth");
        } else {
            let bound = unread + self.config.page as u64;
            assert!(depth <= bound, "queue depth {depth} over {bound}");
        }
    }
}
