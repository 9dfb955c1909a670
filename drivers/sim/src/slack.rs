//! A local Slack: `apps.connections.open`, `auth.test` and Socket Mode WebSockets, so the Slack
//! machine and driver can be tested and demonstrated without an app, a workspace or a network.
//!
//! What it does as Slack does: Web API errors are HTTP 200 with `{"ok":false,"error":…}`
//! (`not_authed`, `invalid_auth`, `not_allowed_token_type` for a bot token on
//! `apps.connections.open`); every `apps.connections.open` gives a URL with a fresh single-use
//! ticket (a reused one is refused with 409, an unknown one with 401); a connection starts with
//! `hello` (`num_connections`, `debug_info.approximate_connection_time`,
//! `connection_info.app_id`); each envelope goes to one open connection, round robin; acks
//! `{"envelope_id":…}` are tracked (who acked what, when, on which connection); an `events_api`
//! envelope not acked within [`SlackSimConfig::ack_deadline`] is delivered again, possibly on
//! another connection, with a new `envelope_id`, the same `event_id`, `retry_attempt` + 1 and
//! `retry_reason` `"timeout"`, up to [`SlackSimConfig::max_retries`] times (slash commands and
//! interactive payloads are not retried, as on Slack); `disconnect` with a reason on command,
//! the connection closing [`SlackSimConfig::disconnect_close_after`] later for `warning` and
//! `refresh_requested`, at once for `link_disabled` and `too_many_websockets` (also sent to a
//! connection beyond [`SlackSimConfig::max_connections`]); WebSocket pings answered (by
//! tungstenite) and sent every [`SlackSimConfig::ping_interval`].
//!
//! Envelopes produced while no connection is open wait in a bounded queue for the next one.

use super::fake;
use super::records::{CloseRecord, HttpRecord, Records, WaitTimedOut, wait_until};
use super::scenario::{HttpFault, HttpFaults, Pacer, Rate, Scenario, run_schedule};
use super::server::{
    Answer, Reply, Server, Service, Shutdown, Signal, Ws, bearer, query_value, split_target,
};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use fastrand::Rng;
use futures_lite::{AsyncReadExt, StreamExt};
use jiff::Timestamp;
use openflume_proto::http::ReceivedRequest;
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};
use smol::net::TcpListener;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Envelopes waiting for a connection, at most.
const MAX_QUEUED: usize = 10_000;
/// Envelopes tracked for acks, at most.
const MAX_OUTSTANDING: usize = 100_000;
/// Tickets remembered, at most (used ones are forgotten first).
const MAX_TICKETS: usize = 10_000;
/// Messages queued per connection.
const CONN_QUEUE: usize = 256;
/// How long to wait for the client's reply to a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The `debug_info.host` of every connection.
const HOST: &str = "applink-sim-1";

/// How to run a [`SlackSim`].
///
/// ```
/// use openflume_sim::SlackSimConfig;
/// use std::time::Duration;
///
/// let config = SlackSimConfig { ack_deadline: Duration::from_millis(300), ..SlackSimConfig::default() };
/// assert!(config.app_token.starts_with("xapp-"));
/// assert!(!format!("{config:?}").contains(&config.app_token));
/// ```
#[derive(Clone)]
pub struct SlackSimConfig {
    /// Where to listen. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The app-level token for `apps.connections.open`. Default [`SLACK_APP_TOKEN`](crate::SLACK_APP_TOKEN).
    pub app_token: String,
    /// The bot token for `auth.test`. Default [`SLACK_BOT_TOKEN`](crate::SLACK_BOT_TOKEN).
    pub bot_token: String,
    /// `api_app_id` / `connection_info.app_id`. Default `A0SIMAPP01`.
    pub app_id: String,
    /// Workspace id. Default `T0SIMTEAM1`.
    pub team_id: String,
    /// The bot's user id in `auth.test`. Default `U0SIMBOT01`.
    pub bot_user_id: String,
    /// The bot id in `auth.test`. Default `B0SIMBOT01`.
    pub bot_id: String,
    /// How long an envelope may stay unacked before Slack gives up on that delivery. Default 3 s.
    pub ack_deadline: Duration,
    /// Redeliveries of an unacked `events_api` envelope. Default 3.
    pub max_retries: u32,
    /// How long a connection lives after `disconnect` `warning` or `refresh_requested` (Slack
    /// closes it "some seconds" later). Default 10 s.
    pub disconnect_close_after: Duration,
    /// `debug_info.approximate_connection_time` in `hello`, in seconds. Default 18 060.
    pub approximate_connection_time: u64,
    /// Concurrent connections allowed; one more gets `disconnect` `too_many_websockets`. Default 10.
    pub max_connections: usize,
    /// How often the server pings each connection; `None` for never. Default 30 s.
    pub ping_interval: Option<Duration>,
    /// Records kept per log. Default 100 000.
    pub max_records: usize,
    /// Seed for generated texts and ids.
    pub seed: u64,
    /// Event rate (`events_api` messages) and scheduled actions.
    pub scenario: Scenario<SlackAction>,
}

impl Default for SlackSimConfig {
    fn default() -> Self {
        SlackSimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_token: crate::SLACK_APP_TOKEN.to_owned(),
            bot_token: crate::SLACK_BOT_TOKEN.to_owned(),
            app_id: "A0SIMAPP01".to_owned(),
            team_id: "T0SIMTEAM1".to_owned(),
            bot_user_id: "U0SIMBOT01".to_owned(),
            bot_id: "B0SIMBOT01".to_owned(),
            ack_deadline: Duration::from_secs(3),
            max_retries: 3,
            disconnect_close_after: Duration::from_secs(10),
            approximate_connection_time: 18_060,
            max_connections: 10,
            ping_interval: Some(Duration::from_secs(30)),
            max_records: super::records::DEFAULT_MAX_RECORDS,
            seed: 0x5eed,
            scenario: Scenario::manual(),
        }
    }
}

impl fmt::Debug for SlackSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSimConfig")
            .field("bind", &self.bind)
            .field("app_token", &"[redacted]")
            .field("bot_token", &"[redacted]")
            .field("app_id", &self.app_id)
            .field("team_id", &self.team_id)
            .field("bot_user_id", &self.bot_user_id)
            .field("bot_id", &self.bot_id)
            .field("ack_deadline", &self.ack_deadline)
            .field("max_retries", &self.max_retries)
            .field("disconnect_close_after", &self.disconnect_close_after)
            .field(
                "approximate_connection_time",
                &self.approximate_connection_time,
            )
            .field("max_connections", &self.max_connections)
            .field("ping_interval", &self.ping_interval)
            .field("max_records", &self.max_records)
            .field("seed", &self.seed)
            .field("scenario", &self.scenario)
            .finish()
    }
}

/// The three Socket Mode envelope types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvelopeKind {
    /// `events_api`: an Events API `event_callback` (here a `message` event).
    EventsApi,
    /// `slash_commands`.
    SlashCommands,
    /// `interactive` (here a `block_actions` button click).
    Interactive,
}

impl EnvelopeKind {
    /// The envelope `type`.
    ///
    /// ```
    /// use openflume_sim::EnvelopeKind;
    /// assert_eq!(EnvelopeKind::SlashCommands.as_str(), "slash_commands");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            EnvelopeKind::EventsApi => "events_api",
            EnvelopeKind::SlashCommands => "slash_commands",
            EnvelopeKind::Interactive => "interactive",
        }
    }
}

/// The `reason` of a `disconnect` message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Sent some seconds before Slack closes the connection.
    Warning,
    /// A routine refresh, every few hours.
    RefreshRequested,
    /// Socket Mode was turned off for the app.
    LinkDisabled,
    /// More connections than allowed.
    TooManyWebsockets,
    /// Any other reason, as given.
    Other(String),
}

impl DisconnectReason {
    /// The reason as Slack spells it.
    ///
    /// ```
    /// use openflume_sim::DisconnectReason;
    /// assert_eq!(DisconnectReason::RefreshRequested.as_str(), "refresh_requested");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            DisconnectReason::Warning => "warning",
            DisconnectReason::RefreshRequested => "refresh_requested",
            DisconnectReason::LinkDisabled => "link_disabled",
            DisconnectReason::TooManyWebsockets => "too_many_websockets",
            DisconnectReason::Other(reason) => reason,
        }
    }
}

/// Something the Slack simulator does on command ([`SlackSim::inject`]) or on schedule.
/// Connection actions apply to every open Socket Mode connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlackAction {
    /// This many `events_api` message envelopes, now.
    Messages(u32),
    /// One `slash_commands` envelope (`/deploy staging`).
    SlashCommand,
    /// One `interactive` envelope (a `block_actions` button click).
    Interactive,
    /// A `disconnect` message with this reason.
    Disconnect(DisconnectReason),
    /// Drop the TCP connection without a close frame.
    DropConnection,
    /// Go silent: stop answering pings, stop sending, ignore what arrives, keep the TCP
    /// connection open (a half-open connection as the client sees it). Envelopes routed to a
    /// silent connection are lost and, for `events_api`, redelivered after the deadline.
    Silent,
    /// Close with this code and reason.
    Close {
        /// Close code.
        code: u16,
        /// Close reason (cut to 123 bytes).
        reason: String,
    },
    /// A text frame that is not JSON.
    GarbageText,
    /// A binary frame of random bytes.
    GarbageBinary,
    /// A text frame of `bytes` bytes (a valid JSON message of an unknown type).
    Oversized {
        /// Frame size.
        bytes: usize,
    },
    /// Send the last `events_api` envelope again: the same envelope (`new_envelope_id: false`),
    /// or the same event with a new `envelope_id`.
    Duplicate {
        /// Whether the copy gets a new `envelope_id`.
        new_envelope_id: bool,
    },
    /// The next `times` Web API requests show `fault`.
    Http {
        /// The fault.
        fault: HttpFault,
        /// How many requests.
        times: u32,
    },
    /// The next `times` authenticated `apps.connections.open` calls answer HTTP 200
    /// `{"ok":false,"error":error}` (`account_inactive`, `token_revoked`, `ratelimited`…).
    ApiError {
        /// The Slack error code.
        error: String,
        /// How many calls.
        times: u32,
    },
}

/// A Socket Mode connection as it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConnection {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// `num_connections` in its `hello` (none when refused with `too_many_websockets`).
    pub num_connections: Option<usize>,
}

/// An envelope written to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// Its `envelope_id`.
    pub envelope_id: String,
    /// Its `type`.
    pub kind: EnvelopeKind,
    /// `payload.event_id` (events_api only).
    pub event_id: Option<String>,
    /// `retry_attempt` (0 for a first delivery).
    pub retry_attempt: u32,
    /// True for a copy sent by [`SlackAction::Duplicate`].
    pub duplicate: bool,
}

/// An ack received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckRecord {
    /// Connection it arrived on.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The `envelope_id` acknowledged.
    pub envelope_id: String,
    /// The connection the envelope was sent on (`None` for an unknown envelope id).
    pub sent_on: Option<u64>,
    /// Time from sending to the ack.
    pub latency: Option<Duration>,
    /// True when it came after the deadline (the envelope was already redelivered or given up).
    pub late: bool,
    /// True when the ack carried a `payload` (a response to a slash command or an interaction).
    pub with_payload: bool,
}

/// A `disconnect` sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisconnectRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The reason.
    pub reason: String,
}

/// An envelope Slack stopped delivering without an ack: an `events_api` envelope after its last
/// retry, or an unacked slash command or interaction (never retried).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GivenUpRecord {
    /// When, since the simulator started.
    pub at: Duration,
    /// The last `envelope_id` tried.
    pub envelope_id: String,
    /// Its `event_id`, for `events_api`.
    pub event_id: Option<String>,
    /// The envelope type.
    pub kind: EnvelopeKind,
}

/// A connection action the simulator carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The action.
    pub action: SlackAction,
}

/// Everything the Slack simulator saw and sent.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SlackRecords {
    /// Connections opened.
    pub connections: Records<SocketConnection>,
    /// Envelopes written, redeliveries and duplicates included.
    pub envelopes: Records<EnvelopeRecord>,
    /// Acks received.
    pub acks: Records<AckRecord>,
    /// `disconnect` messages sent.
    pub disconnects: Records<DisconnectRecord>,
    /// Envelopes never acked.
    pub given_up: Records<GivenUpRecord>,
    /// Connection actions carried out (disconnects, drops, silence, garbage…).
    pub applied: Records<AppliedRecord>,
    /// How connections ended on the client's side.
    pub client_closes: Records<CloseRecord>,
    /// Web API requests and refused WebSocket handshakes.
    pub http: Records<HttpRecord>,
}

impl SlackRecords {
    fn with_capacity(capacity: usize) -> SlackRecords {
        SlackRecords {
            connections: Records::with_capacity(capacity),
            envelopes: Records::with_capacity(capacity),
            acks: Records::with_capacity(capacity),
            disconnects: Records::with_capacity(capacity),
            given_up: Records::with_capacity(capacity),
            applied: Records::with_capacity(capacity),
            client_closes: Records::with_capacity(capacity),
            http: Records::with_capacity(capacity),
        }
    }

    /// Whether an ack for `envelope_id` arrived.
    pub fn acked(&self, envelope_id: &str) -> bool {
        self.acks.iter().any(|a| a.envelope_id == envelope_id)
    }

    /// Envelopes written and never acked.
    pub fn unacked(&self) -> Vec<&EnvelopeRecord> {
        self.envelopes
            .iter()
            .filter(|e| !self.acked(&e.envelope_id))
            .collect()
    }
}

/// A running Slack simulator. Stops when dropped.
///
/// ```no_run
/// use openflume_sim::{DisconnectReason, SlackAction, SlackSimConfig, SlackSim};
/// use std::time::Duration;
///
/// smol::block_on(async {
///     let slack = SlackSim::start(SlackSimConfig::default()).await?;
///     println!("OPENFLUME_SLACK_API_URL={}", slack.api_url());
///     // … connect a client, then:
///     slack.inject(SlackAction::Messages(3));
///     slack.inject(SlackAction::Disconnect(DisconnectReason::RefreshRequested));
///     slack.wait_for(Duration::from_secs(5), |r| (r.acks.len() == 3).then_some(())).await.ok();
///     Ok::<(), std::io::Error>(())
/// });
/// ```
#[derive(Debug)]
pub struct SlackSim {
    shared: Arc<Slack>,
    server: Server,
    _tasks: Vec<smol::Task<()>>,
}

impl SlackSim {
    /// Starts listening on `config.bind`; returns once the socket listens.
    pub async fn start(config: SlackSimConfig) -> io::Result<SlackSim> {
        config.scenario.rate.validate()?;
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Slack::new(config, addr));
        let server = Server::serve(listener, shared.clone())?;
        let mut tasks = vec![smol::spawn(redeliver(shared.clone()))];
        if shared.config.scenario.rate != Rate::Manual {
            tasks.push(smol::spawn(produce(shared.clone())));
        }
        if !shared.config.scenario.schedule.is_empty() {
            let sim = shared.clone();
            tasks.push(smol::spawn(async move {
                sim.first_client.waiter().wait().await;
                let schedule = sim.config.scenario.schedule.clone();
                run_schedule(Instant::now(), schedule, |action| {
                    sim.inject(action);
                })
                .await;
            }));
        }
        Ok(SlackSim {
            shared,
            server,
            _tasks: tasks,
        })
    }

    /// The Web API base, `http://127.0.0.1:PORT/api` (for `OPENFLUME_SLACK_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.server.local_addr())
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The app-level token it accepts.
    pub fn app_token(&self) -> &str {
        &self.shared.config.app_token
    }

    /// The bot token it accepts.
    pub fn bot_token(&self) -> &str {
        &self.shared.config.bot_token
    }

    /// Does `action` now. Returns how many connections it reached (for envelopes: 1 when one
    /// was produced, delivered or queued; for API faults: 1).
    pub fn inject(&self, action: SlackAction) -> usize {
        self.shared.inject(action)
    }

    /// Like [`inject`](Self::inject), on connection `conn` only. Returns whether it was open.
    pub fn inject_on(&self, conn: u64, action: SlackAction) -> bool {
        let state = self.shared.lock();
        state
            .conns
            .get(&conn)
            .is_some_and(|entry| entry.tx.try_send(Outbound::Act(action)).is_ok())
    }

    /// A copy of the records so far.
    pub fn records(&self) -> SlackRecords {
        self.shared.lock().records.clone()
    }

    /// Waits until `check` finds what it looks for in the records, or `timeout` passes.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&SlackRecords) -> Option<T>,
    ) -> Result<T, WaitTimedOut> {
        wait_until(&self.shared.state, timeout, |state| check(&state.records)).await
    }

    /// Stops: open connections get a close frame (1001), then everything is cancelled.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// An envelope, ready to be written.
#[derive(Clone, Debug)]
struct Envelope {
    envelope_id: String,
    kind: EnvelopeKind,
    event_id: Option<String>,
    payload: Arc<str>,
    retry_attempt: u32,
    retry_reason: &'static str,
    accepts_response_payload: bool,
    duplicate: bool,
}

impl Envelope {
    /// A first delivery of `payload`.
    fn first(
        rng: &mut Rng,
        kind: EnvelopeKind,
        event_id: Option<String>,
        payload: &serde_json::Value,
        accepts_response_payload: bool,
    ) -> Envelope {
        Envelope {
            envelope_id: fake::uuid(rng),
            kind,
            event_id,
            payload: payload.to_string().into(),
            retry_attempt: 0,
            retry_reason: "",
            accepts_response_payload,
            duplicate: false,
        }
    }

    fn to_json(&self) -> String {
        let Envelope {
            envelope_id,
            kind,
            payload,
            accepts_response_payload,
            ..
        } = self;
        let kind = kind.as_str();
        let retry = match self.kind {
            EnvelopeKind::EventsApi => format!(
                r#","retry_attempt":{},"retry_reason":"{}""#,
                self.retry_attempt, self.retry_reason
            ),
            _ => String::new(),
        };
        format!(
            r#"{{"envelope_id":"{envelope_id}","payload":{payload},"type":"{kind}","accepts_response_payload":{accepts_response_payload}{retry}}}"#
        )
    }
}

/// What the shared half asks of a connection task.
#[derive(Debug)]
enum Outbound {
    Envelope(Envelope),
    Act(SlackAction),
}

struct ConnEntry {
    tx: Sender<Outbound>,
    /// `hello` was sent: envelopes may go here.
    ready: bool,
}

struct Outstanding {
    envelope: Envelope,
    conn: u64,
    sent_at: Instant,
    acked: bool,
    /// Redelivered or given up: an ack now is late.
    settled: bool,
}

struct State {
    records: SlackRecords,
    rng: Rng,
    conns: BTreeMap<u64, ConnEntry>,
    next_conn: u64,
    last_conn: u64,
    tickets: HashMap<String, bool>,
    outstanding: HashMap<String, Outstanding>,
    queue: VecDeque<Envelope>,
    api_errors: VecDeque<(String, u32)>,
    last_events_api: Option<Envelope>,
}

impl State {
    /// Picks the next ready connection after the last one used, avoiding `avoid` when another
    /// is open.
    fn pick(&mut self, avoid: Option<u64>) -> Option<u64> {
        let ready: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, e)| e.ready)
            .map(|(id, _)| *id)
            .collect();
        let next_after = |after: u64, skip: Option<u64>| {
            ready
                .iter()
                .copied()
                .filter(|id| Some(*id) != skip)
                .find(|id| *id > after)
                .or_else(|| ready.iter().copied().find(|id| Some(*id) != skip))
        };
        let chosen =
            next_after(self.last_conn, avoid).or_else(|| next_after(self.last_conn, None))?;
        self.last_conn = chosen;
        Some(chosen)
    }

    /// Sends `envelope` to a connection (or queues it when none can take it).
    fn deliver(&mut self, envelope: Envelope, avoid: Option<u64>, now: Instant) {
        if envelope.kind == EnvelopeKind::EventsApi && !envelope.duplicate {
            self.last_events_api = Some(envelope.clone());
        }
        // Behind envelopes that already wait, so a burst larger than a connection's queue keeps
        // its order.
        let Some(conn) = self.pick(avoid).filter(|_| self.queue.is_empty()) else {
            self.enqueue(envelope);
            return;
        };
        let sent = self.conns.get(&conn).is_some_and(|entry| {
            entry
                .tx
                .try_send(Outbound::Envelope(envelope.clone()))
                .is_ok()
        });
        if sent {
            self.track(envelope, conn, now);
        } else {
            self.enqueue(envelope);
        }
    }

    fn enqueue(&mut self, envelope: Envelope) {
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(envelope);
    }

    fn track(&mut self, envelope: Envelope, conn: u64, now: Instant) {
        if self.outstanding.len() >= MAX_OUTSTANDING {
            self.outstanding.retain(|_, o| !o.acked && !o.settled);
        }
        self.outstanding.insert(
            envelope.envelope_id.clone(),
            Outstanding {
                envelope,
                conn,
                sent_at: now,
                acked: false,
                settled: false,
            },
        );
    }
}

/// The simulator's shared half.
struct Slack {
    config: SlackSimConfig,
    started: Instant,
    addr: SocketAddr,
    first_client: Signal,
    http_faults: HttpFaults,
    state: Mutex<State>,
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

const CHANNELS: &[(&str, &str)] = &[("C0SIMGEN01", "general"), ("C0SIMDEP01", "deploys")];
const USERS: &[(&str, &str)] = &[
    ("U0SIMADA01", "ada"),
    ("U0SIMGRC01", "grace"),
    ("U0SIMLIN01", "linus"),
];

/// One of `USERS`, `(id, name)`.
fn random_user(rng: &mut Rng) -> (&'static str, &'static str) {
    USERS
        .get(rng.usize(..USERS.len()))
        .copied()
        .unwrap_or(USERS[0])
}

impl Slack {
    fn new(config: SlackSimConfig, addr: SocketAddr) -> Slack {
        let state = State {
            records: SlackRecords::with_capacity(config.max_records),
            rng: Rng::with_seed(config.seed),
            conns: BTreeMap::new(),
            next_conn: 1,
            last_conn: 0,
            tickets: HashMap::new(),
            outstanding: HashMap::new(),
            queue: VecDeque::new(),
            api_errors: VecDeque::new(),
            last_events_api: None,
        };
        Slack {
            config,
            started: Instant::now(),
            addr,
            first_client: Signal::new(),
            http_faults: HttpFaults::default(),
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    fn inject(&self, action: SlackAction) -> usize {
        let now = Instant::now();
        match action {
            SlackAction::Messages(count) => {
                let mut state = self.lock();
                for _ in 0..count {
                    let envelope = self.events_api(&mut state.rng);
                    state.deliver(envelope, None, now);
                }
                usize::from(count > 0)
            }
            SlackAction::SlashCommand | SlackAction::Interactive => {
                let mut state = self.lock();
                let envelope = if action == SlackAction::SlashCommand {
                    self.slash_command(&mut state.rng)
                } else {
                    self.interactive(&mut state.rng)
                };
                state.deliver(envelope, None, now);
                1
            }
            SlackAction::Duplicate { new_envelope_id } => {
                let mut state = self.lock();
                let Some(mut copy) = state.last_events_api.clone() else {
                    return 0;
                };
                copy.duplicate = true;
                if new_envelope_id {
                    copy.envelope_id = fake::uuid(&mut state.rng);
                }
                state.deliver(copy, None, now);
                1
            }
            SlackAction::Http { fault, times } => {
                self.http_faults.push(fault, times);
                1
            }
            SlackAction::ApiError { error, times } => {
                let mut state = self.lock();
                if times > 0 && state.api_errors.len() < 1024 {
                    state.api_errors.push_back((error, times));
                }
                1
            }
            action => {
                let state = self.lock();
                state
                    .conns
                    .values()
                    .filter(|entry| entry.tx.try_send(Outbound::Act(action.clone())).is_ok())
                    .count()
            }
        }
    }

    /// An `events_api` envelope carrying a `message` event.
    fn events_api(&self, rng: &mut Rng) -> Envelope {
        let now = Timestamp::now();
        let ts = fake::slack_ts(now);
        let (channel, _) = CHANNELS
            .get(rng.usize(..CHANNELS.len()))
            .copied()
            .unwrap_or(CHANNELS[0]);
        let (user, _) = random_user(rng);
        let text = fake::text(rng);
        let event_id = format!("Ev{}", fake::upper_alnum(rng, 9));
        let team = &self.config.team_id;
        let payload = json!({
            "token": "simulatedverificationtoken",
            "team_id": team,
            "context_team_id": team,
            "context_enterprise_id": null,
            "api_app_id": self.config.app_id,
            "event": {
                "user": user, "type": "message", "ts": ts, "client_msg_id": fake::uuid(rng),
                "text": text, "team": team,
                "blocks": [{"type": "rich_text", "block_id": fake::upper_alnum(rng, 5), "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                ]}],
                "channel": channel, "event_ts": ts, "channel_type": "channel"
            },
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now.as_second(),
            "authorizations": [{
                "enterprise_id": null, "team_id": team, "user_id": self.config.bot_user_id,
                "is_bot": true, "is_enterprise_install": false
            }],
            "is_ext_shared_channel": false,
            "event_context": format!("4-{}", fake::hex(rng, 40))
        });
        Envelope::first(
            rng,
            EnvelopeKind::EventsApi,
            Some(event_id),
            &payload,
            false,
        )
    }

    fn slash_command(&self, rng: &mut Rng) -> Envelope {
        let (channel, channel_name) = CHANNELS.get(1).copied().unwrap_or(CHANNELS[0]);
        let (user, user_name) = random_user(rng);
        let team = &self.config.team_id;
        let payload = json!({
            "token": "simulatedverificationtoken",
            "team_id": team,
            "team_domain": "openflume-sim",
            "channel_id": channel,
            "channel_name": channel_name,
            "user_id": user,
            "user_name": user_name,
            "command": "/deploy",
            "text": "staging",
            "api_app_id": self.config.app_id,
            "is_enterprise_install": "false",
            "response_url": format!("https://hooks.slack.com/commands/{team}/{}/{}", rng.u64(1_000_000_000..10_000_000_000), fake::upper_alnum(rng, 24)),
            "trigger_id": format!("{}.{}.{}", rng.u64(1_000_000_000..10_000_000_000), rng.u64(1_000_000_000..10_000_000_000), fake::hex(rng, 32))
        });
        Envelope::first(rng, EnvelopeKind::SlashCommands, None, &payload, true)
    }

    fn interactive(&self, rng: &mut Rng) -> Envelope {
        let (channel, channel_name) = CHANNELS.get(1).copied().unwrap_or(CHANNELS[0]);
        let (user, user_name) = random_user(rng);
        let team = &self.config.team_id;
        let ts = fake::slack_ts(Timestamp::now());
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": team},
            "api_app_id": self.config.app_id,
            "token": "simulatedverificationtoken",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
            "trigger_id": format!("{}.{}.{}", rng.u64(1_000_000_000..10_000_000_000), rng.u64(1_000_000_000..10_000_000_000), fake::hex(rng, 32)),
            "team": {"id": team, "domain": "openflume-sim"},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": channel, "name": channel_name},
            "message": {"type": "message", "user": self.config.bot_user_id, "ts": ts, "bot_id": self.config.bot_id,
                        "text": "Deploy api-gateway 2.14.1 to production?", "team": team},
            "state": {"values": {}},
            "response_url": format!("https://hooks.slack.com/actions/{team}/{}/{}", rng.u64(1_000_000_000..10_000_000_000), fake::upper_alnum(rng, 24)),
            "actions": [{"action_id": "approve", "block_id": fake::upper_alnum(rng, 4),
                         "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                         "value": "approve", "style": "primary", "type": "button", "action_ts": ts}]
        });
        Envelope::first(rng, EnvelopeKind::Interactive, None, &payload, false)
    }

    fn record_http(&self, method: &str, path: &str, status: Option<u16>) {
        let at = self.since_start();
        self.lock().records.http.push(HttpRecord {
            at,
            method: method.to_owned(),
            path: path.to_owned(),
            status,
        });
    }

    /// Slack's answer for a fault status.
    fn error_reply(status: u16, retry_after: Option<u64>) -> Reply {
        let error = match status {
            429 => "ratelimited",
            401 => "invalid_auth",
            500..=599 => "internal_error",
            _ => "request_error",
        };
        let reply = Reply::json(status, format!(r#"{{"ok":false,"error":"{error}"}}"#));
        match retry_after {
            Some(seconds) => reply.header("Retry-After", seconds.to_string()),
            None => reply,
        }
    }

    fn api_error(error: &str) -> Reply {
        Reply::json(200, json!({"ok": false, "error": error}).to_string())
    }

    fn connections_open(&self, request: &ReceivedRequest) -> Reply {
        let Some(token) = bearer(request, &["Bearer"]) else {
            return Slack::api_error("not_authed");
        };
        if token != self.config.app_token {
            return Slack::api_error(
                if token.starts_with("xoxb-") || token.starts_with("xoxp-") {
                    "not_allowed_token_type"
                } else {
                    "invalid_auth"
                },
            );
        }
        let mut state = self.lock();
        if let Some((error, times)) = state.api_errors.front_mut() {
            let error = error.clone();
            *times -= 1;
            if *times == 0 {
                state.api_errors.pop_front();
            }
            return Slack::api_error(&error);
        }
        if state.tickets.len() >= MAX_TICKETS {
            state.tickets.retain(|_, used| !*used);
            if state.tickets.len() >= MAX_TICKETS {
                // A client that asks for URLs it never uses: the old tickets expire.
                state.tickets.clear();
            }
        }
        let ticket = fake::uuid(&mut state.rng);
        state.tickets.insert(ticket.clone(), false);
        let url = format!(
            "ws://{}/link/?ticket={ticket}&app_id={}",
            self.addr, self.config.app_id
        );
        Reply::json(200, json!({"ok": true, "url": url}).to_string())
    }

    fn auth_test(&self, request: &ReceivedRequest) -> Reply {
        match bearer(request, &["Bearer"]) {
            None => Slack::api_error("not_authed"),
            Some(token) if token == self.config.bot_token => Reply::json(
                200,
                json!({
                    "ok": true,
                    "url": "https://openflume-sim.slack.com/",
                    "team": "openflume sim",
                    "user": "openflume",
                    "team_id": self.config.team_id,
                    "user_id": self.config.bot_user_id,
                    "bot_id": self.config.bot_id,
                    "is_enterprise_install": false
                })
                .to_string(),
            ),
            Some(_) => Slack::api_error("invalid_auth"),
        }
    }
}

impl Service for Slack {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        let (path, _) = split_target(&request.target);
        let path = path.to_owned();
        match self.http_faults.take() {
            Some(HttpFault::Status {
                status,
                retry_after,
            }) => {
                self.record_http(&request.method, &path, Some(status));
                return Answer::Reply(Slack::error_reply(status, retry_after));
            }
            Some(HttpFault::Stall(delay)) => {
                async_io::Timer::after(delay).await;
            }
            Some(HttpFault::Drop) => {
                self.record_http(&request.method, &path, None);
                return Answer::Drop;
            }
            None => {}
        }
        let reply = match (request.method.as_str(), path.as_str()) {
            ("GET" | "POST", "/api/apps.connections.open") => self.connections_open(&request),
            ("GET" | "POST", "/api/auth.test") => self.auth_test(&request),
            _ => Reply::json(404, r#"{"ok":false,"error":"unknown_method"}"#),
        };
        let request_id = fake::hex(&mut self.lock().rng, 32);
        let reply = reply.header("x-slack-req-id", request_id);
        self.record_http(&request.method, &path, Some(reply.status));
        Answer::Reply(reply)
    }

    fn check_upgrade(&self, request: &ReceivedRequest) -> Result<(), Reply> {
        let (path, query) = split_target(&request.target);
        let refusal = if path.trim_end_matches('/') != "/link" {
            Some(Reply::json(404, r#"{"ok":false,"error":"not_found"}"#))
        } else {
            let ticket = query_value(&query, "ticket").unwrap_or_default();
            let mut state = self.lock();
            match state.tickets.get_mut(ticket) {
                Some(used) if !*used => {
                    *used = true;
                    None
                }
                Some(_) => Some(Reply::json(
                    409,
                    r#"{"ok":false,"error":"ticket_already_used"}"#,
                )),
                None => Some(Reply::json(401, r#"{"ok":false,"error":"invalid_ticket"}"#)),
            }
        };
        match refusal {
            Some(reply) => {
                self.record_http(&request.method, path, Some(reply.status));
                Err(reply)
            }
            None => Ok(()),
        }
    }

    async fn websocket(&self, _request: ReceivedRequest, ws: Ws, shutdown: Shutdown) {
        self.first_client.fire();
        let (tx, rx) = smol::channel::bounded(CONN_QUEUE);
        let (conn, open) = {
            let mut state = self.lock();
            let conn = state.next_conn;
            state.next_conn += 1;
            state.conns.insert(conn, ConnEntry { tx, ready: false });
            (conn, state.conns.len())
        };
        let mut socket = Socket {
            sim: self,
            conn,
            ws,
            outbound: rx,
            close_at: None,
            shutdown: shutdown.clone(),
        };
        if open > self.config.max_connections {
            self.lock().records.connections.push(SocketConnection {
                conn,
                at: self.since_start(),
                num_connections: None,
            });
            socket
                .disconnect(&DisconnectReason::TooManyWebsockets)
                .await;
            socket.close(1000, "").await;
        } else {
            socket.run(open).await;
        }
        socket.retire();
        self.lock().conns.remove(&conn);
    }
}

/// Produces `events_api` messages at the scenario's rate, from the first client on.
async fn produce(sim: Arc<Slack>) {
    sim.first_client.waiter().wait().await;
    let mut pacer = Pacer::new(sim.config.scenario.rate);
    let blast = matches!(sim.config.scenario.rate, Rate::Blast { .. });
    while let Some(count) = pacer.next().await {
        // A blast waits for the queue to drain instead of overflowing it.
        while blast && sim.lock().queue.len() > MAX_QUEUED / 2 {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        sim.inject(SlackAction::Messages(
            u32::try_from(count).unwrap_or(u32::MAX),
        ));
    }
}

/// Redelivers unacked `events_api` envelopes after the deadline; gives up on the rest.
async fn redeliver(sim: Arc<Slack>) {
    let deadline = sim.config.ack_deadline;
    let tick = (deadline / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    loop {
        async_io::Timer::after(tick).await;
        let now = Instant::now();
        let at = sim.since_start();
        let mut guard = sim.lock();
        let state = &mut *guard;
        let mut due: Vec<(Envelope, u64)> = Vec::new();
        for outstanding in state.outstanding.values_mut() {
            if !outstanding.acked
                && !outstanding.settled
                && now.duration_since(outstanding.sent_at) >= deadline
            {
                outstanding.settled = true;
                due.push((outstanding.envelope.clone(), outstanding.conn));
            }
        }
        let forget = deadline.saturating_mul(10);
        state
            .outstanding
            .retain(|_, o| !(o.acked || o.settled) || now.duration_since(o.sent_at) < forget);
        for (envelope, conn) in due {
            if envelope.kind == EnvelopeKind::EventsApi
                && envelope.retry_attempt < sim.config.max_retries
            {
                let retry = Envelope {
                    envelope_id: fake::uuid(&mut state.rng),
                    retry_attempt: envelope.retry_attempt + 1,
                    retry_reason: "timeout",
                    duplicate: false,
                    ..envelope
                };
                state.deliver(retry, Some(conn), now);
            } else {
                state.records.given_up.push(GivenUpRecord {
                    at,
                    envelope_id: envelope.envelope_id,
                    event_id: envelope.event_id,
                    kind: envelope.kind,
                });
            }
        }
    }
}

enum Flow {
    Continue,
    End,
}

enum Next {
    Inbound(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Outbound(Option<Outbound>),
    Ping,
    CloseDue,
    Shutdown,
}

/// One Socket Mode connection.
struct Socket<'a> {
    sim: &'a Slack,
    conn: u64,
    ws: Ws,
    outbound: Receiver<Outbound>,
    /// When a `disconnect` was sent: the close it announced.
    close_at: Option<Instant>,
    shutdown: Shutdown,
}

impl Socket<'_> {
    async fn run(&mut self, num_connections: usize) {
        let shutdown = self.shutdown.clone();
        let hello = json!({
            "type": "hello",
            "num_connections": num_connections,
            "debug_info": {
                "host": HOST,
                "build_number": 118,
                "approximate_connection_time": self.sim.config.approximate_connection_time
            },
            "connection_info": {"app_id": self.sim.config.app_id}
        });
        if self
            .ws
            .send(Message::text(hello.to_string()))
            .await
            .is_err()
        {
            return;
        }
        let queued: Vec<Envelope> = {
            let now = Instant::now();
            let mut state = self.sim.lock();
            state.records.connections.push(SocketConnection {
                conn: self.conn,
                at: self.sim.since_start(),
                num_connections: Some(num_connections),
            });
            if let Some(entry) = state.conns.get_mut(&self.conn) {
                entry.ready = true;
            }
            let queued: Vec<Envelope> = state.queue.drain(..).collect();
            for envelope in &queued {
                state.track(envelope.clone(), self.conn, now);
            }
            queued
        };
        for envelope in queued {
            if let Flow::End = self.write_envelope(envelope).await {
                return;
            }
        }
        let mut next_ping = self
            .sim
            .config
            .ping_interval
            .and_then(|every| Instant::now().checked_add(every));
        loop {
            let next = {
                let ws = &mut self.ws;
                let outbound = &self.outbound;
                let close_at = self.close_at;
                futures_lite::future::or(async { Next::Inbound(ws.next().await) }, async {
                    futures_lite::future::or(
                        async { Next::Outbound(outbound.recv().await.ok()) },
                        async {
                            futures_lite::future::or(
                                async {
                                    shutdown.wait().await;
                                    Next::Shutdown
                                },
                                async {
                                    match (close_at, next_ping) {
                                        (Some(close), Some(ping)) if ping < close => {
                                            async_io::Timer::at(ping).await;
                                            Next::Ping
                                        }
                                        (Some(close), _) => {
                                            async_io::Timer::at(close).await;
                                            Next::CloseDue
                                        }
                                        (None, Some(ping)) => {
                                            async_io::Timer::at(ping).await;
                                            Next::Ping
                                        }
                                        (None, None) => futures_lite::future::pending().await,
                                    }
                                },
                            )
                            .await
                        },
                    )
                    .await
                })
                .await
            };
            let flow = match next {
                Next::Inbound(Some(Ok(message))) => self.on_message(message).await,
                Next::Inbound(Some(Err(_)) | None) => {
                    self.record_client_close(None, "");
                    Flow::End
                }
                Next::Outbound(Some(Outbound::Envelope(envelope))) => {
                    self.write_envelope(envelope).await
                }
                Next::Outbound(Some(Outbound::Act(action))) => self.act(action).await,
                Next::Outbound(None) => Flow::End,
                Next::Ping => {
                    next_ping = self
                        .sim
                        .config
                        .ping_interval
                        .and_then(|every| Instant::now().checked_add(every));
                    match self
                        .ws
                        .send(Message::Ping(WsBytes::from_static(b"ping")))
                        .await
                    {
                        Ok(()) => Flow::Continue,
                        Err(_) => Flow::End,
                    }
                }
                Next::CloseDue => {
                    self.close(1000, "").await;
                    Flow::End
                }
                Next::Shutdown => {
                    self.close(1001, "").await;
                    Flow::End
                }
            };
            if let Flow::End = flow {
                return;
            }
            if self.outbound.is_empty() {
                if let Flow::End = self.pull_queued().await {
                    return;
                }
            }
        }
    }

    /// Takes envelopes that found no room on any connection, until none is left: a client
    /// that sends nothing must still get a whole burst.
    async fn pull_queued(&mut self) -> Flow {
        loop {
            let batch: Vec<Envelope> = {
                let now = Instant::now();
                let mut state = self.sim.lock();
                let count = state.queue.len().min(64);
                let batch: Vec<Envelope> = state.queue.drain(..count).collect();
                for envelope in &batch {
                    state.track(envelope.clone(), self.conn, now);
                }
                batch
            };
            if batch.is_empty() {
                return Flow::Continue;
            }
            for envelope in batch {
                if let Flow::End = self.write_envelope(envelope).await {
                    return Flow::End;
                }
            }
        }
    }

    async fn write_envelope(&mut self, envelope: Envelope) -> Flow {
        if self
            .ws
            .send(Message::text(envelope.to_json()))
            .await
            .is_err()
        {
            return self.client_gone().await;
        }
        let record = EnvelopeRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            envelope_id: envelope.envelope_id,
            kind: envelope.kind,
            event_id: envelope.event_id,
            retry_attempt: envelope.retry_attempt,
            duplicate: envelope.duplicate,
        };
        self.sim.lock().records.envelopes.push(record);
        Flow::Continue
    }

    async fn on_message(&mut self, message: Message) -> Flow {
        match message {
            Message::Text(text) => {
                self.on_text(text.as_str());
                Flow::Continue
            }
            Message::Close(frame) => {
                let (code, reason) = match &frame {
                    Some(frame) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
                    None => (1005, String::new()),
                };
                self.record_client_close(Some(code), &reason);
                super::server::answer_close(&mut self.ws).await;
                Flow::End
            }
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                Flow::Continue
            }
        }
    }

    /// A text message from the client: an ack, or something Slack ignores.
    fn on_text(&self, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(envelope_id) = value.get("envelope_id").and_then(Value::as_str) {
            self.on_ack(envelope_id, value.get("payload").is_some());
        }
    }

    fn on_ack(&self, envelope_id: &str, with_payload: bool) {
        let now = Instant::now();
        let at = self.sim.since_start();
        let deadline = self.sim.config.ack_deadline;
        let mut state = self.sim.lock();
        let (sent_on, latency, late) = match state.outstanding.get_mut(envelope_id) {
            Some(outstanding) => {
                let latency = now.duration_since(outstanding.sent_at);
                let late = outstanding.settled || latency > deadline;
                outstanding.acked = true;
                (Some(outstanding.conn), Some(latency), late)
            }
            None => (None, None, false),
        };
        state.records.acks.push(AckRecord {
            conn: self.conn,
            at,
            envelope_id: envelope_id.to_owned(),
            sent_on,
            latency,
            late,
            with_payload,
        });
    }

    async fn act(&mut self, action: SlackAction) -> Flow {
        let record = AppliedRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            action: action.clone(),
        };
        self.sim.lock().records.applied.push(record);
        let sent = match action {
            SlackAction::Disconnect(reason) => {
                let flow = self.disconnect(&reason).await;
                if let Flow::End = flow {
                    return Flow::End;
                }
                if matches!(
                    reason,
                    DisconnectReason::LinkDisabled | DisconnectReason::TooManyWebsockets
                ) {
                    self.close(1000, "").await;
                    return Flow::End;
                }
                if let Some(close_at) =
                    Instant::now().checked_add(self.sim.config.disconnect_close_after)
                {
                    self.close_at = Some(self.close_at.map_or(close_at, |at| at.min(close_at)));
                }
                return Flow::Continue;
            }
            SlackAction::DropConnection => return Flow::End,
            SlackAction::Silent => return self.silent().await,
            SlackAction::Close { code, reason } => {
                let mut end = reason.len().min(123);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                self.close(code, reason.get(..end).unwrap_or_default())
                    .await;
                return Flow::End;
            }
            SlackAction::GarbageText => {
                self.ws
                    .send(Message::text("<html>502 Bad Gateway</html>"))
                    .await
            }
            SlackAction::GarbageBinary => {
                let junk: Vec<u8> = {
                    let mut state = self.sim.lock();
                    (0..64).map(|_| state.rng.u8(..)).collect()
                };
                self.ws.send(Message::binary(junk)).await
            }
            SlackAction::Oversized { bytes } => {
                let skeleton = r#"{"type":"oversized","filler":""}"#;
                let filler = "x".repeat(bytes.saturating_sub(skeleton.len()));
                self.ws
                    .send(Message::text(format!(
                        r#"{{"type":"oversized","filler":"{filler}"}}"#
                    )))
                    .await
            }
            SlackAction::Messages(_)
            | SlackAction::SlashCommand
            | SlackAction::Interactive
            | SlackAction::Duplicate { .. }
            | SlackAction::Http { .. }
            | SlackAction::ApiError { .. } => Ok(()),
        };
        if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::End
        }
    }

    async fn disconnect(&mut self, reason: &DisconnectReason) -> Flow {
        let message =
            json!({"type": "disconnect", "reason": reason.as_str(), "debug_info": {"host": HOST}});
        if self
            .ws
            .send(Message::text(message.to_string()))
            .await
            .is_err()
        {
            return Flow::End;
        }
        let record = DisconnectRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            reason: reason.as_str().to_owned(),
        };
        self.sim.lock().records.disconnects.push(record);
        Flow::Continue
    }

    /// Stops talking: no pongs, no envelopes, no close handshake; reads and discards raw bytes
    /// until the client goes away. Envelopes still routed here are dropped unsent.
    async fn silent(&mut self) -> Flow {
        // Slack keeps routing envelopes to a connection it believes alive: it stays registered.
        let mut buf = vec![0u8; 4096];
        loop {
            let tcp = self.ws.get_mut().tcp();
            let outbound = &self.outbound;
            let shutdown = &self.shutdown;
            enum Silent {
                Read(usize),
                Outbound(Option<Outbound>),
                Shutdown,
            }
            let next = futures_lite::future::or(
                async { Silent::Read(tcp.read(&mut buf).await.unwrap_or(0)) },
                futures_lite::future::or(
                    async { Silent::Outbound(outbound.recv().await.ok()) },
                    async {
                        shutdown.wait().await;
                        Silent::Shutdown
                    },
                ),
            )
            .await;
            match next {
                Silent::Read(0) => {
                    self.record_client_close(None, "");
                    return Flow::End;
                }
                Silent::Read(_) | Silent::Outbound(Some(Outbound::Envelope(_))) => {}
                Silent::Outbound(Some(Outbound::Act(SlackAction::DropConnection)))
                | Silent::Outbound(None)
                | Silent::Shutdown => return Flow::End,
                Silent::Outbound(Some(Outbound::Act(_))) => {}
            }
        }
    }

    /// Takes the connection out of the rotation and hands the envelopes still queued for it to
    /// the other connections (or the shared queue): Slack had not sent them yet.
    fn retire(&self) {
        let now = Instant::now();
        let mut state = self.sim.lock();
        if let Some(entry) = state.conns.get_mut(&self.conn) {
            entry.ready = false;
        }
        while let Ok(outbound) = self.outbound.try_recv() {
            if let Outbound::Envelope(envelope) = outbound {
                state.outstanding.remove(&envelope.envelope_id);
                state.deliver(envelope, Some(self.conn), now);
            }
        }
    }

    /// Sends a close frame and waits briefly for the client's reply.
    async fn close(&mut self, code: u16, reason: &str) {
        self.retire();
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        if self.ws.close(Some(frame)).await.is_err() {
            return;
        }
        let ws = &mut self.ws;
        futures_lite::future::or(
            async {
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                }
            },
            async {
                async_io::Timer::after(CLOSE_GRACE).await;
            },
        )
        .await;
    }

    /// The client went away while an envelope was being written: count the acks it sent before
    /// (still in the socket unless it reset the connection) and record how it left.
    async fn client_gone(&mut self) -> Flow {
        let mut left = Vec::new();
        let (ws, messages) = (&mut self.ws, &mut left);
        futures_lite::future::or(
            async {
                while let Some(Ok(message)) = ws.next().await {
                    messages.push(message);
                }
            },
            async {
                async_io::Timer::after(CLOSE_GRACE).await;
            },
        )
        .await;
        let mut close = None;
        for message in left {
            match message {
                Message::Text(text) => self.on_text(text.as_str()),
                Message::Close(frame) => {
                    close = Some(frame.map_or((1005, String::new()), |frame| {
                        (u16::from(frame.code), frame.reason.as_str().to_owned())
                    }));
                }
                _ => {}
            }
        }
        match close {
            Some((code, reason)) => self.record_client_close(Some(code), &reason),
            None => self.record_client_close(None, ""),
        }
        Flow::End
    }

    fn record_client_close(&self, code: Option<u16>, reason: &str) {
        let record = CloseRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            code,
            reason: reason.to_owned(),
        };
        self.sim.lock().records.client_closes.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Ws, http, json, next_json, next_message, send_json, ws_connect};
    use openflume_proto::HttpRequest;

    const WAIT: Duration = Duration::from_secs(5);

    async fn start(config: SlackSimConfig) -> SlackSim {
        SlackSim::start(config).await.unwrap()
    }

    async fn open_url(sim: &SlackSim) -> String {
        let response = http(
            HttpRequest::new("POST", format!("{}/apps.connections.open", sim.api_url()))
                .header("Authorization", format!("Bearer {}", sim.app_token())),
        )
        .await;
        assert_eq!(response.status, 200);
        let body = json(&response);
        assert_eq!(body["ok"], true, "{body}");
        body["url"].as_str().unwrap().to_owned()
    }

    /// Opens a Socket Mode connection and reads its hello.
    async fn connect(sim: &SlackSim) -> (Ws, Value) {
        let mut ws = ws_connect(&open_url(sim).await).await;
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["type"], "hello");
        (ws, hello)
    }

    async fn ack(ws: &mut Ws, envelope: &Value) {
        send_json(ws, json!({"envelope_id": envelope["envelope_id"]})).await;
    }

    #[test]
    fn web_api_checks_tokens() {
        smol::block_on(async {
            let sim = start(SlackSimConfig::default()).await;
            let call = |method: &str, auth: Option<String>| {
                let mut request = HttpRequest::new("POST", format!("{}/{method}", sim.api_url()));
                if let Some(auth) = auth {
                    request = request.header("Authorization", auth);
                }
                async move { json(&http(request).await) }
            };
            let open = "apps.connections.open";
            assert_eq!(call(open, None).await["error"], "not_authed");
            assert_eq!(
                call(open, Some("Bearer xapp-wrong".into())).await["error"],
                "invalid_auth"
            );
            let bot = Some(format!("Bearer {}", sim.bot_token()));
            assert_eq!(
                call(open, bot.clone()).await["error"],
                "not_allowed_token_type"
            );
            let url = call(open, Some(format!("Bearer {}", sim.app_token()))).await["url"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(
                url.starts_with(&format!("ws://{}/link/?ticket=", sim.local_addr())),
                "{url}"
            );
            assert!(url.ends_with("&app_id=A0SIMAPP01"));

            let me = call("auth.test", bot).await;
            assert_eq!(
                (me["ok"].as_bool(), me["team_id"].as_str()),
                (Some(true), Some("T0SIMTEAM1"))
            );
            assert_eq!(
                (me["user_id"].as_str(), me["bot_id"].as_str()),
                (Some("U0SIMBOT01"), Some("B0SIMBOT01"))
            );
            assert_eq!(
                call("auth.test", Some("Bearer xoxb-nope".into())).await["error"],
                "invalid_auth"
            );

            sim.inject(SlackAction::ApiError {
                error: "account_inactive".into(),
                times: 1,
            });
            assert_eq!(
                call(open, Some(format!("Bearer {}", sim.app_token()))).await["error"],
                "account_inactive"
            );
            sim.inject(SlackAction::Http {
                fault: HttpFault::Status {
                    status: 429,
                    retry_after: Some(7),
                },
                times: 1,
            });
            let limited = http(HttpRequest::new(
                "POST",
                format!("{}/{open}", sim.api_url()),
            ))
            .await;
            assert_eq!(
                (limited.status, limited.header("Retry-After")),
                (429, Some("7"))
            );
            assert_eq!(json(&limited)["error"], "ratelimited");
        });
    }

    #[test]
    fn hello_envelopes_and_acks() {
        smol::block_on(async {
            let sim = start(SlackSimConfig::default()).await;
            let (mut ws, hello) = connect(&sim).await;
            assert_eq!(hello["num_connections"], 1);
            assert_eq!(hello["debug_info"]["approximate_connection_time"], 18060);
            assert_eq!(hello["connection_info"]["app_id"], "A0SIMAPP01");

            sim.inject(SlackAction::Messages(1));
            let event = next_json(&mut ws).await;
            assert_eq!(event["type"], "events_api");
            assert_eq!(
                (
                    event["retry_attempt"].as_u64(),
                    event["retry_reason"].as_str()
                ),
                (Some(0), Some(""))
            );
            assert_eq!(event["accepts_response_payload"], false);
            let payload = &event["payload"];
            assert_eq!(payload["type"], "event_callback");
            assert!(payload["event_id"].as_str().unwrap().starts_with("Ev"));
            for field in ["channel", "user", "text", "ts"] {
                assert!(payload["event"][field].is_string(), "{field}");
            }
            assert_eq!(payload["event"]["type"], "message");
            ack(&mut ws, &event).await;

            sim.inject(SlackAction::SlashCommand);
            let command = next_json(&mut ws).await;
            assert_eq!(
                (
                    command["type"].as_str(),
                    command["payload"]["command"].as_str()
                ),
                (Some("slash_commands"), Some("/deploy"))
            );
            assert_eq!(command["accepts_response_payload"], true);
            assert!(command.get("retry_attempt").is_none());
            send_json(
                &mut ws,
                json!({"envelope_id": command["envelope_id"], "payload": {"text": "deploying"}}),
            )
            .await;

            sim.inject(SlackAction::Interactive);
            let click = next_json(&mut ws).await;
            assert_eq!(
                (click["type"].as_str(), click["payload"]["type"].as_str()),
                (Some("interactive"), Some("block_actions"))
            );
            ack(&mut ws, &click).await;

            let records = sim
                .wait_for(WAIT, |r| (r.acks.len() == 3).then(|| r.clone()))
                .await
                .unwrap();
            let conn = records.connections.last().unwrap().conn;
            for (ack, envelope) in records.acks.iter().zip([&event, &command, &click]) {
                assert_eq!(ack.envelope_id, envelope["envelope_id"].as_str().unwrap());
                assert_eq!((ack.conn, ack.sent_on, ack.late), (conn, Some(conn), false));
            }
            assert!(records.acks.iter().nth(1).unwrap().with_payload);
            assert!(records.unacked().is_empty());
            let kinds: Vec<_> = records.envelopes.iter().map(|e| e.kind).collect();
            assert_eq!(
                kinds,
                vec![
                    EnvelopeKind::EventsApi,
                    EnvelopeKind::SlashCommands,
                    EnvelopeKind::Interactive
                ]
            );
        });
    }

    #[test]
    fn unacked_events_are_redelivered_on_another_connection() {
        smol::block_on(async {
            let sim = start(SlackSimConfig {
                ack_deadline: Duration::from_millis(300),
                ..SlackSimConfig::default()
            })
            .await;
            let (mut first, _) = connect(&sim).await;
            let (mut second, hello) = connect(&sim).await;
            assert_eq!(hello["num_connections"], 2);

            sim.inject(SlackAction::Messages(1));
            let original = next_json(&mut first).await;
            let retry = next_json(&mut second).await;
            assert_eq!(
                retry["payload"]["event_id"],
                original["payload"]["event_id"]
            );
            assert_ne!(retry["envelope_id"], original["envelope_id"]);
            assert_eq!(
                (
                    retry["retry_attempt"].as_u64(),
                    retry["retry_reason"].as_str()
                ),
                (Some(1), Some("timeout"))
            );
            ack(&mut second, &retry).await;
            // A late ack of the first delivery is recorded as late.
            ack(&mut first, &original).await;
            let records = sim
                .wait_for(WAIT, |r| (r.acks.len() == 2).then(|| r.clone()))
                .await
                .unwrap();
            let acks: Vec<_> = records
                .acks
                .iter()
                .map(|a| (a.envelope_id.as_str(), a.late))
                .collect();
            assert_eq!(
                acks,
                vec![
                    (retry["envelope_id"].as_str().unwrap(), false),
                    (original["envelope_id"].as_str().unwrap(), true)
                ]
            );
            let attempts: Vec<_> = records
                .envelopes
                .iter()
                .map(|e| (e.conn, e.retry_attempt))
                .collect();
            assert_eq!(attempts, vec![(1, 0), (2, 1)]);
            assert!(records.given_up.is_empty());

            // An unacked slash command is not retried.
            sim.inject(SlackAction::SlashCommand);
            let command = match next_message(&mut first).await {
                Some(Message::Text(t)) => t,
                other => panic!("{other:?}"),
            };
            assert!(command.as_str().contains("slash_commands"));
            let given_up = sim
                .wait_for(WAIT, |r| r.given_up.last().cloned())
                .await
                .unwrap();
            assert_eq!(given_up.kind, EnvelopeKind::SlashCommands);
        });
    }

    #[test]
    fn tickets_are_single_use() {
        smol::block_on(async {
            let sim = start(SlackSimConfig::default()).await;
            let url = open_url(&sim).await;
            let mut ws = ws_connect(&url).await;
            assert_eq!(next_json(&mut ws).await["type"], "hello");
            for (url, status) in [
                (url.clone(), 409),
                (url.replace("ticket=", "ticket=x"), 401),
            ] {
                let parsed = openflume_proto::url::Url::parse(&url).unwrap();
                let tcp = smol::net::TcpStream::connect((parsed.host.as_str(), parsed.port))
                    .await
                    .unwrap();
                match async_tungstenite::client_async(url.as_str(), tcp).await {
                    Err(async_tungstenite::tungstenite::Error::Http(response)) => {
                        assert_eq!(response.status(), status)
                    }
                    other => panic!("expected HTTP {status}, got {:?}", other.map(|_| ())),
                }
            }
            let statuses: Vec<_> = sim.records().http.iter().map(|r| r.status).collect();
            assert_eq!(statuses, vec![Some(200), Some(409), Some(401)]);
        });
    }

    #[test]
    fn disconnects_close_after_the_delay_and_faults_reach_the_client() {
        smol::block_on(async {
            let sim = start(SlackSimConfig {
                disconnect_close_after: Duration::from_millis(200),
                ..SlackSimConfig::default()
            })
            .await;
            let (mut ws, _) = connect(&sim).await;
            sim.inject(SlackAction::Disconnect(DisconnectReason::Warning));
            let warning = next_json(&mut ws).await;
            assert_eq!(
                (warning["type"].as_str(), warning["reason"].as_str()),
                (Some("disconnect"), Some("warning"))
            );
            // Still served until the close.
            sim.inject(SlackAction::Messages(1));
            let event = next_json(&mut ws).await;
            ack(&mut ws, &event).await;
            assert!(
                matches!(next_message(&mut ws).await, Some(Message::Close(Some(f))) if u16::from(f.code) == 1000)
            );

            let (mut ws, _) = connect(&sim).await;
            sim.inject(SlackAction::Messages(1));
            let event = next_json(&mut ws).await;
            sim.inject(SlackAction::Duplicate {
                new_envelope_id: false,
            });
            assert_eq!(next_json(&mut ws).await, event);
            sim.inject(SlackAction::Duplicate {
                new_envelope_id: true,
            });
            let copy = next_json(&mut ws).await;
            assert_eq!(copy["payload"], event["payload"]);
            assert_ne!(copy["envelope_id"], event["envelope_id"]);
            sim.inject(SlackAction::GarbageText);
            assert!(
                matches!(next_message(&mut ws).await, Some(Message::Text(t)) if serde_json::from_str::<Value>(t.as_str()).is_err())
            );
            sim.inject(SlackAction::Disconnect(DisconnectReason::LinkDisabled));
            assert_eq!(next_json(&mut ws).await["reason"], "link_disabled");
            assert!(matches!(
                next_message(&mut ws).await,
                Some(Message::Close(_))
            ));
            let reasons: Vec<_> = sim
                .records()
                .disconnects
                .iter()
                .map(|d| d.reason.clone())
                .collect();
            assert_eq!(reasons, vec!["warning", "link_disabled"]);
        });
    }

    #[test]
    fn a_silent_connection_answers_nothing() {
        smol::block_on(async {
            let sim = start(SlackSimConfig::default()).await;
            let (mut ws, _) = connect(&sim).await;
            sim.inject(SlackAction::Silent);
            sim.wait_for(WAIT, |r| {
                r.applied
                    .last()
                    .filter(|a| a.action == SlackAction::Silent)
                    .map(|_| ())
            })
            .await
            .unwrap();
            sim.inject(SlackAction::Messages(1));
            ws.send(Message::Ping(WsBytes::from_static(b"anyone?")))
                .await
                .unwrap();
            let quiet =
                futures_lite::future::or(async { ws.next().await.map(|m| m.is_ok()) }, async {
                    async_io::Timer::after(Duration::from_millis(300)).await;
                    None
                })
                .await;
            assert_eq!(quiet, None, "no pong, no envelope");
            drop(ws);
            let close = sim
                .wait_for(WAIT, |r| r.client_closes.last().cloned())
                .await
                .unwrap();
            assert_eq!(close.code, None);
        });
    }

    #[test]
    fn one_connection_too_many_is_told_so() {
        smol::block_on(async {
            let sim = start(SlackSimConfig {
                max_connections: 1,
                ..SlackSimConfig::default()
            })
            .await;
            let (_first, _) = connect(&sim).await;
            let mut second = ws_connect(&open_url(&sim).await).await;
            let message = next_json(&mut second).await;
            assert_eq!(
                (message["type"].as_str(), message["reason"].as_str()),
                (Some("disconnect"), Some("too_many_websockets"))
            );
        });
    }

    #[test]
    fn a_burst_beyond_the_connection_queue_arrives_whole_and_in_order() {
        smol::block_on(async {
            let sim = start(SlackSimConfig::default()).await;
            let (mut ws, _) = connect(&sim).await;
            let burst = CONN_QUEUE * 2 + 100;
            sim.inject(SlackAction::Messages(u32::try_from(burst).unwrap()));
            // Nothing is acked or sent meanwhile: the burst must not wait for the client.
            let mut event_ids = Vec::new();
            let mut last_ts = String::new();
            for _ in 0..burst {
                let envelope = next_json(&mut ws).await;
                // Fixed-width `secs.micros`, taken when the envelope was made.
                let ts = envelope["payload"]["event"]["ts"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(ts >= last_ts, "{ts} came after {last_ts}");
                last_ts = ts;
                event_ids.push(envelope["payload"]["event_id"].as_str().unwrap().to_owned());
            }
            event_ids.sort_unstable();
            event_ids.dedup();
            assert_eq!(event_ids.len(), burst, "each envelope once");
        });
    }

    #[test]
    fn envelopes_wait_for_a_connection() {
        smol::block_on(async {
            let sim = start(SlackSimConfig::default()).await;
            assert_eq!(sim.inject(SlackAction::Messages(2)), 1);
            let (mut ws, _) = connect(&sim).await;
            let first = next_json(&mut ws).await;
            let second = next_json(&mut ws).await;
            assert_eq!(
                (first["type"].as_str(), second["type"].as_str()),
                (Some("events_api"), Some("events_api"))
            );
            assert_ne!(first["payload"]["event_id"], second["payload"]["event_id"]);
            ack(&mut ws, &first).await;
            ack(&mut ws, &second).await;
            sim.wait_for(WAIT, |r| {
                (r.acks.len() == 2 && r.acks.iter().all(|a| !a.late)).then_some(())
            })
            .await
            .unwrap();
        });
    }
}
