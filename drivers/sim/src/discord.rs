//! A local Discord: `GET /api/v10/gateway/bot` and a Gateway v10 WebSocket that speaks the real
//! protocol, so the Discord machine and driver can be tested, demonstrated and benchmarked without
//! a bot token or a network.
//!
//! What it does as Discord does: HELLO first; IDENTIFY checked (token → 4004, intents → 4013/4014,
//! shard → 4010, a second IDENTIFY → 4005, anything before it → 4003, identifies closer than the
//! bucket's spacing → op 9 `false`); READY (`s` = 1) with a fresh `session_id` and a
//! `resume_gateway_url` on a distinct path of the same port, then one GUILD_CREATE per guild;
//! dispatches with a sequence that increases per session; HEARTBEAT_ACK for every heartbeat;
//! RESUME replays every dispatch after the given `seq`, then RESUMED, or answers op 9 `false`
//! (unknown or expired session, replay no longer buffered) or closes 4007 (a `seq` from the
//! future); client payloads over 4096 bytes → 4002, more than 120 in 60 s → 4008; a client close
//! with 1000/1001 ends the session, any other close or a dropped socket keeps it resumable for
//! [`DiscordSimConfig::resume_window`]. With `compress=zlib-stream` every payload is a binary frame
//! from one zlib stream per connection, sync-flushed so each ends with `00 00 ff ff`.
//!
//! Simplifications: JSON encoding only (another `encoding` is closed with 4002), payload
//! compression (`identify.compress`) is not applied, the daily session-start budget is only
//! reported by `/gateway/bot`, and the server never closes a connection for missed heartbeats.

use super::fake;
use super::records::{CloseRecord, HttpRecord, Records, WaitTimedOut, wait_until};
use super::scenario::{HttpFault, HttpFaults, Pacer, Rate, Scenario, run_schedule};
use super::server::{
    Answer, Cork, Reply, Server, Service, Shutdown, Signal, SimStream, Ws, bearer, query_value,
    split_target,
};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message, Utf8Bytes};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use fastrand::Rng;
use flate2::{Compress, Compression, FlushCompress};
use futures_lite::StreamExt;
use jiff::Timestamp;
use openflume_proto::http::ReceivedRequest;
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};
use smol::net::TcpListener;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Intent bits Discord knows (Gateway page, "List of Intents").
const KNOWN_INTENTS: u64 = 0b11_0011_0001_1111_1111_1111_1111;
/// GUILD_MEMBERS, GUILD_PRESENCES and MESSAGE_CONTENT.
const PRIVILEGED_INTENTS: u64 = (1 << 1) | (1 << 8) | (1 << 15);
/// Largest payload a client may send.
const MAX_CLIENT_PAYLOAD: usize = 4096;
/// Client payloads allowed per [`RATE_WINDOW`] on one connection.
const RATE_LIMIT: usize = 120;
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Live sessions kept at most; the oldest detached ones go first.
const MAX_SESSIONS: usize = 1000;
/// Commands queued per connection.
const COMMAND_QUEUE: usize = 256;
/// Dispatches sent per batch (one corked write).
const FLUSH_BATCH: usize = 256;
/// How long to wait for the client's reply to a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How to run a [`DiscordSim`].
///
/// ```
/// use openflume_sim::{DiscordSimConfig, Scenario};
/// use std::time::Duration;
///
/// let config = DiscordSimConfig {
///     heartbeat_interval: Duration::from_secs(5),
///     scenario: Scenario::steady(1.0),
///     ..DiscordSimConfig::default()
/// };
/// assert_eq!(config.bind.ip().to_string(), "127.0.0.1");
/// assert!(!format!("{config:?}").contains(&config.token));
/// ```
#[derive(Clone)]
pub struct DiscordSimConfig {
    /// Where to listen. Default `127.0.0.1:0` (a free port on loopback).
    pub bind: SocketAddr,
    /// The bot token clients must present. Default [`DISCORD_TOKEN`](crate::DISCORD_TOKEN).
    pub token: String,
    /// `heartbeat_interval` in HELLO. Default 41.25 s, Discord's usual value.
    pub heartbeat_interval: Duration,
    /// Recommended shard count in `/gateway/bot`. Default 1.
    pub shards: u32,
    /// `session_start_limit.max_concurrency`: identify buckets. Default 1.
    pub max_concurrency: u32,
    /// Least time between two IDENTIFYs of one bucket; a closer one gets op 9 `false`.
    /// Default 5 s, as Discord; zero turns the check off.
    pub identify_spacing: Duration,
    /// `session_start_limit.total`. Default 1000.
    pub session_start_total: u32,
    /// `session_start_limit.remaining` at start; each IDENTIFY uses one. Default 1000.
    pub session_start_remaining: u32,
    /// Dispatches kept per session for RESUME replay. Default 10 000.
    pub resume_buffer: usize,
    /// How long a session without a connection stays resumable. Default 120 s.
    pub resume_window: Duration,
    /// Privileged intents the application may use (GUILD_MEMBERS 1 << 1, GUILD_PRESENCES
    /// 1 << 8, MESSAGE_CONTENT 1 << 15); asking for another one closes with 4014. Default: all
    /// three.
    pub privileged_intents: u64,
    /// Guilds in READY (as unavailable) and then as GUILD_CREATE dispatches. Default 1.
    pub guilds: u32,
    /// MESSAGE_CREATE dispatches queued right behind READY and the GUILD_CREATEs of every new
    /// session, so they go out in the same writes: a burst that meets the client at the moment
    /// it becomes ready, whatever the test's own timing. Default 0.
    pub messages_after_ready: u32,
    /// Records kept per log. Default 100 000.
    pub max_records: usize,
    /// Seed for generated texts and ids.
    pub seed: u64,
    /// Event rate and scheduled actions.
    pub scenario: Scenario<DiscordAction>,
}

impl Default for DiscordSimConfig {
    fn default() -> Self {
        DiscordSimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: crate::DISCORD_TOKEN.to_owned(),
            heartbeat_interval: Duration::from_millis(41_250),
            shards: 1,
            max_concurrency: 1,
            identify_spacing: Duration::from_secs(5),
            session_start_total: 1000,
            session_start_remaining: 1000,
            resume_buffer: 10_000,
            resume_window: Duration::from_secs(120),
            privileged_intents: PRIVILEGED_INTENTS,
            guilds: 1,
            messages_after_ready: 0,
            max_records: super::records::DEFAULT_MAX_RECORDS,
            seed: 0x5eed,
            scenario: Scenario::manual(),
        }
    }
}

impl fmt::Debug for DiscordSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordSimConfig")
            .field("bind", &self.bind)
            .field("token", &"[redacted]")
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("shards", &self.shards)
            .field("max_concurrency", &self.max_concurrency)
            .field("identify_spacing", &self.identify_spacing)
            .field("session_start_total", &self.session_start_total)
            .field("session_start_remaining", &self.session_start_remaining)
            .field("resume_buffer", &self.resume_buffer)
            .field("resume_window", &self.resume_window)
            .field("privileged_intents", &self.privileged_intents)
            .field("guilds", &self.guilds)
            .field("messages_after_ready", &self.messages_after_ready)
            .field("max_records", &self.max_records)
            .field("seed", &self.seed)
            .field("scenario", &self.scenario)
            .finish()
    }
}

/// Something the Discord simulator does on command ([`DiscordSim::inject`]) or on schedule.
/// Connection actions apply to every open Gateway connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscordAction {
    /// Dispatch this many MESSAGE_CREATE events (~1.2 KB each) to every live session now; sessions
    /// without a connection buffer them for RESUME.
    Messages(u32),
    /// Drop the TCP connection without a close frame (the session stays resumable).
    DropConnection,
    /// Stop answering heartbeats with HEARTBEAT_ACK on the connections open now (a zombie).
    StopHeartbeatAcks,
    /// Ask for a heartbeat now (op 1 from the server).
    RequestHeartbeat,
    /// op 7 RECONNECT: the session stops receiving dispatches here and waits for a RESUME.
    Reconnect,
    /// op 9 INVALID_SESSION with `d` = `resumable`; `false` ends the session.
    InvalidSession {
        /// The `d` field.
        resumable: bool,
    },
    /// Close with this code and reason. 4003, 4004, 4007, 4009 and 4010–4014 end the session.
    Close {
        /// Close code.
        code: u16,
        /// Close reason (cut to 123 bytes).
        reason: String,
    },
    /// A text frame that is not JSON.
    GarbageText,
    /// A binary frame of random bytes (with zlib-stream it corrupts the client's inflate stream).
    GarbageBinary,
    /// A payload of `bytes` bytes (a HEARTBEAT_ACK with a huge `d`), compressed when the connection
    /// uses zlib-stream.
    Oversized {
        /// Payload size.
        bytes: usize,
    },
    /// The next `times` REST requests show `fault`.
    Http {
        /// The fault.
        fault: HttpFault,
        /// How many requests.
        times: u32,
    },
    /// Refuse the next `times` WebSocket connections to the resume URL with 503 (the resume
    /// host is unreachable; clients should fall back to the main URL).
    RefuseResume {
        /// How many connections.
        times: u32,
    },
}

/// A Gateway WebSocket connection as it was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConnection {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// Request path (`/` for the main URL, `/resume` for the resume URL).
    pub path: String,
    /// The `v` query parameter.
    pub version: Option<String>,
    /// The `encoding` query parameter.
    pub encoding: Option<String>,
    /// The `compress` query parameter.
    pub compress: Option<String>,
}

/// What an IDENTIFY led to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentifyOutcome {
    /// READY with this session.
    Ready {
        /// The new session id.
        session_id: String,
    },
    /// op 9 `false` (identify spacing not respected).
    InvalidSession,
    /// Closed with this code (4004 bad token, 4013/4014 intents, 4010 shard, 4005 twice, 4002).
    Closed {
        /// Close code.
        code: u16,
    },
}

/// An IDENTIFY received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// `d.intents`.
    pub intents: Option<u64>,
    /// `d.shard`.
    pub shard: Option<[u64; 2]>,
    /// What followed.
    pub outcome: IdentifyOutcome,
}

/// What a RESUME led to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeOutcome {
    /// Replayed `replayed` dispatches, then RESUMED.
    Resumed {
        /// Dispatches replayed.
        replayed: u64,
    },
    /// op 9 `false`: unknown or expired session, or the replay is no longer buffered.
    InvalidSession,
    /// Closed with this code (4004 bad token, 4007 seq from the future, 4005, 4002).
    Closed {
        /// Close code.
        code: u16,
    },
}

/// A RESUME received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// `d.session_id`.
    pub session_id: String,
    /// `d.seq`.
    pub seq: u64,
    /// What followed.
    pub outcome: ResumeOutcome,
}

/// A heartbeat (op 1) received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// Its `d`: the client's last sequence number.
    pub seq: Option<u64>,
    /// Whether a HEARTBEAT_ACK was sent.
    pub acked: bool,
}

/// A dispatch (op 0) written to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// The session it belongs to.
    pub session_id: Arc<str>,
    /// Its `s`.
    pub seq: u64,
    /// Its `t`.
    pub event: &'static str,
    /// True when sent again by a RESUME.
    pub replayed: bool,
}

/// A control payload or fault the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// op 10.
    Hello,
    /// op 1 from the server.
    HeartbeatRequest,
    /// op 7.
    Reconnect,
    /// op 9 with its `d`.
    InvalidSession(bool),
    /// A close frame with this code.
    Close(u16),
    /// The TCP connection was dropped without a close frame.
    Dropped,
    /// A text frame that is not JSON.
    GarbageText,
    /// A binary junk frame.
    GarbageBinary,
    /// An oversized payload of this many bytes.
    Oversized(usize),
}

/// A control payload sent on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    /// Connection number.
    pub conn: u64,
    /// When, since the simulator started.
    pub at: Duration,
    /// What.
    pub control: Control,
}

/// Everything the Discord simulator saw and sent.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DiscordRecords {
    /// Gateway connections opened.
    pub connections: Records<GatewayConnection>,
    /// IDENTIFY payloads.
    pub identifies: Records<IdentifyRecord>,
    /// RESUME payloads.
    pub resumes: Records<ResumeRecord>,
    /// Heartbeats received.
    pub heartbeats: Records<HeartbeatRecord>,
    /// Dispatches sent, replays included.
    pub dispatches: Records<DispatchRecord>,
    /// HELLO, op 1/7/9, close frames and faults sent.
    pub controls: Records<ControlRecord>,
    /// How connections ended on the client's side.
    pub client_closes: Records<CloseRecord>,
    /// REST requests.
    pub http: Records<HttpRecord>,
}

impl DiscordRecords {
    fn with_capacity(capacity: usize) -> DiscordRecords {
        DiscordRecords {
            connections: Records::with_capacity(capacity),
            identifies: Records::with_capacity(capacity),
            resumes: Records::with_capacity(capacity),
            heartbeats: Records::with_capacity(capacity),
            dispatches: Records::with_capacity(capacity),
            controls: Records::with_capacity(capacity),
            client_closes: Records::with_capacity(capacity),
            http: Records::with_capacity(capacity),
        }
    }

    /// The sequence numbers written for `session_id`, in the order they were written (a replayed
    /// dispatch appears again).
    pub fn seqs(&self, session_id: &str) -> Vec<u64> {
        self.dispatches
            .iter()
            .filter(|d| &*d.session_id == session_id)
            .map(|d| d.seq)
            .collect()
    }

    /// The session ids READY gave out, oldest first.
    pub fn sessions(&self) -> Vec<String> {
        self.identifies
            .iter()
            .filter_map(|i| match &i.outcome {
                IdentifyOutcome::Ready { session_id } => Some(session_id.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A running Discord simulator. Stops when dropped.
///
/// ```no_run
/// use openflume_sim::{DiscordSimConfig, DiscordSim, DiscordAction};
/// use std::time::Duration;
///
/// smol::block_on(async {
///     let discord = DiscordSim::start(DiscordSimConfig::default()).await?;
///     println!("API {} gateway {}", discord.api_url(), discord.gateway_url());
///     // … point a client at it, then:
///     discord.wait_for(Duration::from_secs(5), |r| r.sessions().first().cloned()).await.ok();
///     discord.inject(DiscordAction::Reconnect);
///     discord.stop().await;
///     Ok::<(), std::io::Error>(())
/// });
/// ```
#[derive(Debug)]
pub struct DiscordSim {
    shared: Arc<Discord>,
    server: Server,
    _tasks: Vec<smol::Task<()>>,
}

impl DiscordSim {
    /// Starts listening on `config.bind`; returns once the socket listens.
    pub async fn start(config: DiscordSimConfig) -> io::Result<DiscordSim> {
        config.scenario.rate.validate()?;
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Discord::new(config, addr));
        let server = Server::serve(listener, shared.clone())?;
        let mut tasks = Vec::new();
        if let Rate::Steady { .. } = shared.config.scenario.rate {
            tasks.push(smol::spawn(produce_steadily(shared.clone())));
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
        Ok(DiscordSim {
            shared,
            server,
            _tasks: tasks,
        })
    }

    /// The REST base, `http://127.0.0.1:PORT/api/v10` (for `OPENFLUME_DISCORD_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10", self.server.local_addr())
    }

    /// The Gateway URL `/gateway/bot` returns, `ws://127.0.0.1:PORT` (no query, as Discord's).
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url.clone()
    }

    /// The `resume_gateway_url` READY gives out, `ws://127.0.0.1:PORT/resume`.
    pub fn resume_url(&self) -> String {
        self.shared.resume_url.clone()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The bot token it accepts.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Does `action` now. Returns how many connections (or, for [`DiscordAction::Messages`],
    /// sessions) it reached; REST and resume faults return 1.
    pub fn inject(&self, action: DiscordAction) -> usize {
        self.shared.inject(action)
    }

    /// A copy of the records so far.
    pub fn records(&self) -> DiscordRecords {
        self.shared.lock().records.clone()
    }

    /// Time since the simulator started: now, on the clock of the records' `at` fields (to
    /// measure the silence after the last heartbeat, say).
    pub fn elapsed(&self) -> Duration {
        self.shared.since_start()
    }

    /// Waits until `check` finds what it looks for in the records, or `timeout` passes.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&DiscordRecords) -> Option<T>,
    ) -> Result<T, WaitTimedOut> {
        wait_until(&self.shared.state, timeout, |state| check(&state.records)).await
    }

    /// Stops: open connections get a close frame (1001), then everything is cancelled.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// The simulator's shared half: configuration, URLs, state.
struct Discord {
    config: DiscordSimConfig,
    started: Instant,
    gateway_url: String,
    resume_url: String,
    guilds: Vec<Guild>,
    bot_user_id: u64,
    application_id: u64,
    author_ids: [u64; 4],
    joined_at: Timestamp,
    first_client: Signal,
    /// Fired by the first READY: the steady rate starts then, so no event is produced before a
    /// session exists to receive it.
    first_session: Signal,
    http_faults: HttpFaults,
    state: Mutex<State>,
}

impl fmt::Debug for Discord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discord")
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
}

struct Guild {
    id: u64,
    channels: [u64; 2],
    role: u64,
}

struct State {
    records: DiscordRecords,
    rng: Rng,
    increment: u64,
    /// The last message id given out: ids grow strictly, as Discord's from one worker do, even
    /// past 4096 in a millisecond (where the increment field wraps), so tests can check order.
    last_message_id: u64,
    sessions: HashMap<Arc<str>, Session>,
    connections: HashMap<u64, Sender<Command>>,
    next_conn: u64,
    session_start_remaining: u32,
    last_identify: HashMap<u64, Instant>,
    blast_left: u64,
    /// The blast's message bodies, made as it goes until there are `BLAST_POOL`, then reused.
    blast_pool: Vec<String>,
    refuse_resume: u32,
}

/// Distinct MESSAGE_CREATE bodies a blast cycles through. Making each body costs the simulator
/// more than a fast client spends reading it; reusing them keeps the simulator ahead, so a
/// benchmark measures the client's own cost per event, not its waits for the next frame.
const BLAST_POOL: usize = 1024;

/// A Gateway session: its sequence, its replay buffer, and the connection it is attached to.
struct Session {
    shard: Option<[u64; 2]>,
    last_seq: u64,
    log: VecDeque<Logged>,
    attached: Option<u64>,
    detached_at: Option<Instant>,
}

struct Logged {
    seq: u64,
    event: &'static str,
    payload: Utf8Bytes,
}

impl Session {
    /// Appends a dispatch built for the next sequence number.
    fn push(&mut self, event: &'static str, data: &str, capacity: usize) {
        self.last_seq += 1;
        let payload = dispatch(event, self.last_seq, data);
        if self.log.len() >= capacity.max(1) {
            self.log.pop_front();
        }
        self.log.push_back(Logged {
            seq: self.last_seq,
            event,
            payload: payload.into(),
        });
    }

    fn expired(&self, now: Instant, window: Duration) -> bool {
        self.detached_at
            .is_some_and(|at| now.duration_since(at) > window)
    }

    /// Whether a message in `guild` goes to this session's shard.
    fn receives(&self, guild: u64) -> bool {
        match self.shard {
            Some([id, count]) if count > 0 => (guild >> 22) % count == id,
            _ => true,
        }
    }
}

/// What the shared half asks of a connection task.
#[derive(Debug)]
enum Command {
    /// New dispatches are buffered.
    Wake,
    /// Another connection resumed this one's session.
    Superseded,
    Act(DiscordAction),
}

/// A Gateway envelope for a dispatch, keys in Discord's order.
fn dispatch(event: &str, seq: u64, data: &str) -> String {
    format!(r#"{{"t":"{event}","s":{seq},"op":0,"d":{data}}}"#)
}

/// RESUMED's `d`.
const RESUMED_DATA: &str = r#"{"_trace":["[\"gateway-sim-1\",{\"micros\":900}]"]}"#;

/// A non-dispatch envelope.
fn control(op: u8, data: &str) -> String {
    format!(r#"{{"t":null,"s":null,"op":{op},"d":{data}}}"#)
}

impl Discord {
    fn new(config: DiscordSimConfig, addr: SocketAddr) -> Discord {
        let now = Timestamp::now();
        let mut increment = 0;
        let mut flake = || {
            increment += 1;
            fake::snowflake(now, increment)
        };
        let guilds = (0..config.guilds.min(100))
            .map(|_| Guild {
                id: flake(),
                channels: [flake(), flake()],
                role: flake(),
            })
            .collect();
        let bot_user_id = flake();
        let application_id = flake();
        let author_ids = [flake(), flake(), flake(), flake()];
        let records = DiscordRecords::with_capacity(config.max_records);
        let state = State {
            records,
            rng: Rng::with_seed(config.seed),
            increment,
            last_message_id: 0,
            sessions: HashMap::new(),
            connections: HashMap::new(),
            next_conn: 1,
            session_start_remaining: config.session_start_remaining,
            last_identify: HashMap::new(),
            blast_left: match config.scenario.rate {
                Rate::Blast { count } => count,
                _ => 0,
            },
            blast_pool: Vec::new(),
            refuse_resume: 0,
        };
        Discord {
            gateway_url: format!("ws://{addr}"),
            resume_url: format!("ws://{addr}/resume"),
            started: Instant::now(),
            guilds,
            bot_user_id,
            application_id,
            author_ids,
            joined_at: now,
            first_client: Signal::new(),
            first_session: Signal::new(),
            http_faults: HttpFaults::default(),
            state: Mutex::new(state),
            config,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    fn inject(&self, action: DiscordAction) -> usize {
        match action {
            DiscordAction::Messages(count) => self.produce(u64::from(count)),
            DiscordAction::Http { fault, times } => {
                self.http_faults.push(fault, times);
                1
            }
            DiscordAction::RefuseResume { times } => {
                let mut state = self.lock();
                state.refuse_resume = state.refuse_resume.saturating_add(times);
                1
            }
            action => {
                let state = self.lock();
                state
                    .connections
                    .values()
                    .filter(|tx| tx.try_send(Command::Act(action.clone())).is_ok())
                    .count()
            }
        }
    }

    /// Appends `count` MESSAGE_CREATE dispatches to every live session and wakes the attached
    /// connections. Returns how many sessions got at least one.
    fn produce(&self, count: u64) -> usize {
        let now = Instant::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let window = self.config.resume_window;
        state.sessions.retain(|_, s| !s.expired(now, window));
        if state.sessions.is_empty() {
            return 0;
        }
        let mut reached: Vec<Arc<str>> = Vec::new();
        for _ in 0..count {
            let (guild, data) = self.message_create(state);
            for (id, session) in state.sessions.iter_mut() {
                if session.receives(guild) {
                    session.push("MESSAGE_CREATE", &data, self.config.resume_buffer);
                    if !reached.contains(id) {
                        reached.push(id.clone());
                    }
                }
            }
        }
        for id in &reached {
            if let Some(conn) = state.sessions.get(id).and_then(|s| s.attached) {
                if let Some(tx) = state.connections.get(&conn) {
                    // A full queue already holds a wake-up or commands after which the
                    // connection flushes anyway.
                    let _ = tx.try_send(Command::Wake);
                }
            }
        }
        reached.len()
    }

    /// A realistic MESSAGE_CREATE `d` (~1.2 KB) and the guild it belongs to.
    fn message_create(&self, state: &mut State) -> (u64, String) {
        const AUTHORS: &[(&str, &str)] = &[
            ("ada", "Ada"),
            ("grace.h", "Grace"),
            ("linus_t", "Linus"),
            ("margaret", "Margaret H."),
        ];
        let now = Timestamp::now();
        state.increment += 1;
        let id = fake::snowflake(now, state.increment).max(state.last_message_id + 1);
        state.last_message_id = id;
        let rng = &mut state.rng;
        let guild = self.guilds.get(rng.usize(..self.guilds.len().max(1)));
        let (guild_id, channel_id, role_id) = match guild {
            Some(g) => (
                g.id,
                g.channels.get(rng.usize(..2)).copied().unwrap_or(g.id),
                g.role,
            ),
            None => (0, id, 0),
        };
        let (username, global_name) = AUTHORS
            .get(rng.usize(..AUTHORS.len()))
            .copied()
            .unwrap_or(("ada", "Ada"));
        let author_id = self
            .author_ids
            .get(rng.usize(..self.author_ids.len()))
            .copied()
            .unwrap_or(id);
        let content = serde_json::to_string(fake::text(rng)).unwrap_or_else(|_| "\"\"".to_owned());
        let embed = serde_json::to_string(fake::text(rng)).unwrap_or_else(|_| "\"\"".to_owned());
        let avatar = fake::hex(rng, 32);
        let nonce = id.wrapping_sub(rng.u64(..1_000_000));
        let timestamp = fake::discord_time(now);
        let guild_field = if guild_id == 0 {
            String::new()
        } else {
            format!(r#","guild_id":"{guild_id}""#)
        };
        let data = format!(
            concat!(
                r#"{{"type":0,"tts":false,"timestamp":"{timestamp}","pinned":false,"nonce":"{nonce}","#,
                r#""mentions":[],"mention_roles":[],"mention_everyone":false,"#,
                r#""member":{{"roles":["{role_id}"],"premium_since":null,"pending":false,"nick":null,"mute":false,"#,
                r#""joined_at":"2024-03-02T10:11:12.123000+00:00","flags":0,"deaf":false,"#,
                r#""communication_disabled_until":null,"banner":null,"avatar":null}},"#,
                r#""id":"{id}","flags":0,"embeds":[{{"type":"rich","title":"Build report","description":{embed},"#,
                r#""color":5793266,"fields":[{{"name":"Status","value":"passed","inline":true}},"#,
                r#"{{"name":"Duration","value":"3m 12s","inline":true}}],"footer":{{"text":"openflume sim"}}}}],"#,
                r#""edited_timestamp":null,"content":{content},"components":[],"channel_type":0,"#,
                r#""channel_id":"{channel_id}","author":{{"username":"{username}","public_flags":0,"#,
                r#""primary_guild":null,"id":"{author_id}","global_name":"{global_name}","discriminator":"0","#,
                r#""collectibles":null,"clan":null,"avatar_decoration_data":null,"avatar":"{avatar}"}},"#,
                r#""attachments":[]{guild_field}}}"#
            ),
            timestamp = timestamp,
            nonce = nonce,
            role_id = role_id,
            id = id,
            embed = embed,
            content = content,
            channel_id = channel_id,
            username = username,
            author_id = author_id,
            global_name = global_name,
            avatar = avatar,
            guild_field = guild_field,
        );
        (guild_id, data)
    }

    fn ready_data(&self, session_id: &str, shard: Option<[u64; 2]>) -> String {
        let mut data = json!({
            "v": 10,
            "user_settings": {},
            "user": {
                "verified": true, "username": "openflume-sim", "mfa_enabled": false,
                "id": self.bot_user_id.to_string(), "global_name": null, "flags": 0, "email": null,
                "discriminator": "0", "bot": true, "avatar": null
            },
            "session_type": "normal",
            "session_id": session_id,
            "resume_gateway_url": self.resume_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": self.guilds.iter().map(|g| json!({"unavailable": true, "id": g.id.to_string()})).collect::<Vec<_>>(),
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam", "madrid", "milan", "bucharest", "stockholm"],
            "auth": {},
            "application": {"id": self.application_id.to_string(), "flags": 8_953_856},
            "_trace": ["[\"gateway-sim-1\",{\"micros\":1200,\"calls\":[\"id_created\",{\"micros\":400}]}]"]
        });
        if let (Some(shard), Some(object)) = (shard, data.as_object_mut()) {
            object.insert("shard".to_owned(), json!(shard));
        }
        data.to_string()
    }

    fn guild_create_data(&self, guild: &Guild) -> String {
        let joined = fake::discord_time(self.joined_at);
        json!({
            "id": guild.id.to_string(), "name": "openflume sim", "icon": null, "description": null,
            "unavailable": false, "member_count": 42, "large": false, "joined_at": joined,
            "owner_id": self.bot_user_id.to_string(), "preferred_locale": "en-US", "premium_tier": 0,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "mfa_level": 0, "nsfw_level": 0, "afk_channel_id": null, "afk_timeout": 300,
            "system_channel_id": guild.channels[0].to_string(), "features": [],
            "channels": [
                {"id": guild.channels[0].to_string(), "type": 0, "name": "general", "position": 0,
                 "topic": null, "nsfw": false, "last_message_id": null, "permission_overwrites": [],
                 "rate_limit_per_user": 0, "parent_id": null, "flags": 0},
                {"id": guild.channels[1].to_string(), "type": 0, "name": "deploys", "position": 1,
                 "topic": "CI and deploy reports", "nsfw": false, "last_message_id": null,
                 "permission_overwrites": [], "rate_limit_per_user": 0, "parent_id": null, "flags": 0}
            ],
            "roles": [{"id": guild.role.to_string(), "name": "@everyone", "permissions": "2248473465835073",
                       "position": 0, "color": 0, "hoist": false, "managed": false, "mentionable": false,
                       "icon": null, "unicode_emoji": null, "flags": 0}],
            "members": [], "presences": [], "voice_states": [], "threads": [], "stage_instances": [],
            "guild_scheduled_events": [], "emojis": [], "stickers": [], "soundboard_sounds": []
        })
        .to_string()
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

    /// Discord's error body for `status`.
    fn error_reply(status: u16, retry_after: Option<u64>) -> Reply {
        let reply = if status == 429 {
            let after = retry_after.unwrap_or(1);
            Reply::json(
                429,
                format!(r#"{{"message": "You are being rate limited.", "retry_after": {after}.0, "global": false}}"#),
            )
            .header("X-RateLimit-Limit", "1")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset-After", format!("{after}.000"))
            .header("X-RateLimit-Scope", "user")
        } else {
            let reason = super::server::reason_phrase(status);
            Reply::json(
                status,
                format!(r#"{{"message": "{status}: {reason}", "code": 0}}"#),
            )
        };
        match retry_after {
            Some(seconds) => reply.header("Retry-After", seconds.to_string()),
            None => reply,
        }
    }

    fn gateway_bot(&self) -> Reply {
        let state = self.lock();
        let day = Duration::from_secs(86_400);
        let reset_after = day.saturating_sub(self.started.elapsed()).as_millis();
        Reply::json(
            200,
            json!({
                "url": self.gateway_url,
                "shards": self.config.shards,
                "session_start_limit": {
                    "total": self.config.session_start_total,
                    "remaining": state.session_start_remaining,
                    "reset_after": u64::try_from(reset_after).unwrap_or(u64::MAX),
                    "max_concurrency": self.config.max_concurrency,
                }
            })
            .to_string(),
        )
    }
}

impl Service for Discord {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        let (path, _) = split_target(&request.target);
        let path = path.trim_end_matches('/').to_owned();
        match self.http_faults.take() {
            Some(HttpFault::Status {
                status,
                retry_after,
            }) => {
                self.record_http(&request.method, &path, Some(status));
                return Answer::Reply(Discord::error_reply(status, retry_after));
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
        let route = path
            .strip_prefix("/api/v10")
            .or_else(|| path.strip_prefix("/api/v9"))
            .or_else(|| path.strip_prefix("/api"));
        let reply = match (request.method.as_str(), route) {
            ("GET", Some("/gateway")) => {
                Reply::json(200, json!({ "url": self.gateway_url }).to_string())
            }
            ("GET", Some("/gateway/bot")) => {
                let token = bearer(&request, &["Bot"]);
                if token == Some(self.config.token.as_str()) {
                    self.gateway_bot()
                } else {
                    Discord::error_reply(401, None)
                }
            }
            (_, Some("/gateway" | "/gateway/bot")) => Discord::error_reply(405, None),
            _ => Discord::error_reply(404, None),
        };
        self.record_http(&request.method, &path, Some(reply.status));
        Answer::Reply(reply)
    }

    fn check_upgrade(&self, request: &ReceivedRequest) -> Result<(), Reply> {
        let (path, _) = split_target(&request.target);
        if path.starts_with("/resume") {
            let mut state = self.lock();
            if state.refuse_resume > 0 {
                state.refuse_resume -= 1;
                drop(state);
                self.record_http(&request.method, path, Some(503));
                return Err(Discord::error_reply(503, None));
            }
        }
        Ok(())
    }

    async fn websocket(&self, request: ReceivedRequest, ws: Ws, shutdown: Shutdown) {
        self.first_client.fire();
        let (path, query) = split_target(&request.target);
        let (tx, rx) = smol::channel::bounded(COMMAND_QUEUE);
        let conn = {
            let mut state = self.lock();
            let conn = state.next_conn;
            state.next_conn += 1;
            state.connections.insert(conn, tx);
            state.records.connections.push(GatewayConnection {
                conn,
                at: self.since_start(),
                path: path.to_owned(),
                version: query_value(&query, "v").map(str::to_owned),
                encoding: query_value(&query, "encoding").map(str::to_owned),
                compress: query_value(&query, "compress").map(str::to_owned),
            });
            conn
        };
        let compress = query_value(&query, "compress") == Some("zlib-stream");
        let cork = ws.get_ref().cork();
        let (sender, receiver) = ws.split();
        let mut gateway = Gateway {
            sim: self,
            conn,
            sender,
            receiver,
            cork,
            arrived: VecDeque::new(),
            commands: rx,
            compressor: compress.then(|| Compress::new(Compression::default(), true)),
            session: None,
            sent_seq: 0,
            replay_until: 0,
            acks: true,
            received: VecDeque::new(),
        };
        let version = query_value(&query, "v");
        let encoding = query_value(&query, "encoding");
        if version.is_some_and(|v| v != "10" && v != "9") {
            gateway.close(4012, "Invalid API version.").await;
        } else if encoding.is_some_and(|e| e != "json") {
            gateway
                .close(4002, "The simulator speaks encoding=json only.")
                .await;
        } else {
            gateway.run(shutdown).await;
        }
        gateway.finish();
    }
}

/// Steady rate: MESSAGE_CREATE to every live session, from the first READY on.
async fn produce_steadily(sim: Arc<Discord>) {
    sim.first_session.waiter().wait().await;
    let mut pacer = Pacer::new(sim.config.scenario.rate);
    while let Some(count) = pacer.next().await {
        sim.produce(count);
    }
}

/// Whether the rest of the loop goes on.
enum Flow {
    Continue,
    End,
}

/// One Gateway connection. Its WebSocket is split so that what the client sends is read even
/// while a write waits for the client to read: Discord sees a heartbeat when it arrives.
struct Gateway<'a> {
    sim: &'a Discord,
    conn: u64,
    sender: WebSocketSender<SimStream>,
    receiver: WebSocketReceiver<SimStream>,
    cork: Cork,
    /// Messages read while a write waited, with when they arrived, to handle in order.
    arrived: VecDeque<(Duration, Message)>,
    commands: Receiver<Command>,
    compressor: Option<Compress>,
    /// The session attached to this connection, once IDENTIFY or RESUME succeeded.
    session: Option<Arc<str>>,
    /// Last sequence number written here.
    sent_seq: u64,
    /// Dispatches up to this sequence number are replays.
    replay_until: u64,
    acks: bool,
    /// When recent client payloads arrived, for the 120-per-60-s limit.
    received: VecDeque<Instant>,
}

enum Next {
    Inbound(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Command(Option<Command>),
    Shutdown,
    Blast,
}

impl Gateway<'_> {
    async fn run(&mut self, shutdown: Shutdown) {
        let interval = self.sim.config.heartbeat_interval.as_millis();
        let hello = control(
            10,
            &format!(
                r#"{{"heartbeat_interval":{interval},"_trace":["[\"gateway-sim-1\",{{\"micros\":0.0}}]"]}}"#
            ),
        );
        if self.send_text(hello).await.is_err() {
            return;
        }
        self.record_control(Control::Hello);
        loop {
            if self.flush().await.is_err() {
                self.record_control(Control::Dropped);
                return;
            }
            if let Some((at, message)) = self.arrived.pop_front() {
                if let Flow::End = self.on_message(message, at).await {
                    return;
                }
                continue;
            }
            let blast = self.blast_due();
            let next = {
                let receiver = &mut self.receiver;
                let commands = &self.commands;
                futures_lite::future::or(async { Next::Inbound(receiver.next().await) }, async {
                    futures_lite::future::or(
                        async { Next::Command(commands.recv().await.ok()) },
                        async {
                            futures_lite::future::or(
                                async {
                                    shutdown.wait().await;
                                    Next::Shutdown
                                },
                                async {
                                    if !blast {
                                        futures_lite::future::pending::<()>().await;
                                    }
                                    Next::Blast
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
                Next::Inbound(Some(Ok(message))) => {
                    self.on_message(message, self.sim.since_start()).await
                }
                Next::Inbound(Some(Err(_)) | None) => {
                    self.record_client_close(None, "");
                    Flow::End
                }
                Next::Command(Some(command)) => self.on_command(command).await,
                Next::Command(None) => Flow::End,
                Next::Shutdown => {
                    self.close(1001, "The simulator is stopping.").await;
                    Flow::End
                }
                Next::Blast => {
                    self.blast();
                    Flow::Continue
                }
            };
            if let Flow::End = flow {
                return;
            }
        }
    }

    /// Unregisters the connection and leaves its session resumable.
    fn finish(&mut self) {
        let now = Instant::now();
        let mut state = self.sim.lock();
        state.connections.remove(&self.conn);
        if let Some(id) = self.session.take() {
            if let Some(session) = state.sessions.get_mut(&id) {
                if session.attached == Some(self.conn) {
                    session.attached = None;
                    session.detached_at = Some(now);
                }
            }
        }
    }

    /// Handles a message from the client that arrived `at` (since the simulator started).
    async fn on_message(&mut self, message: Message, at: Duration) -> Flow {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return self.close_flow(4002, "Error while decoding payload.").await;
            }
            Message::Close(frame) => {
                let (code, reason) = match &frame {
                    Some(frame) => (
                        Some(u16::from(frame.code)),
                        frame.reason.as_str().to_owned(),
                    ),
                    None => (None, String::new()),
                };
                self.record_client_close(code.or(Some(1005)), &reason);
                if matches!(code, Some(1000 | 1001)) {
                    self.end_session();
                }
                super::server::answer_close(&mut self.receiver).await;
                return Flow::End;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Flow::Continue,
        };
        let now = Instant::now();
        while self
            .received
            .front()
            .is_some_and(|at| now.duration_since(*at) >= RATE_WINDOW)
        {
            self.received.pop_front();
        }
        self.received.push_back(now);
        if self.received.len() > RATE_LIMIT {
            return self.close_flow(4008, "Rate limited.").await;
        }
        if text.len() > MAX_CLIENT_PAYLOAD {
            return self.close_flow(4002, "Error while decoding payload.").await;
        }
        let payload: Value = match serde_json::from_str(text.as_str()) {
            Ok(value @ Value::Object(_)) => value,
            _ => return self.close_flow(4002, "Error while decoding payload.").await,
        };
        let Some(op) = payload.get("op").and_then(Value::as_u64) else {
            return self.close_flow(4002, "Error while decoding payload.").await;
        };
        let data = payload.get("d").unwrap_or(&Value::Null);
        match op {
            1 => self.on_heartbeat(data, at).await,
            2 => self.on_identify(data).await,
            6 => self.on_resume(data).await,
            3 | 4 | 8 | 31 | 43 if self.session.is_none() => {
                self.close_flow(4003, "Not authenticated.").await
            }
            3 | 4 | 8 | 31 | 43 => Flow::Continue,
            _ => self.close_flow(4001, "Unknown opcode.").await,
        }
    }

    async fn on_heartbeat(&mut self, data: &Value, at: Duration) -> Flow {
        let acked = self.acks;
        let record = HeartbeatRecord {
            conn: self.conn,
            at,
            seq: data.as_u64(),
            acked,
        };
        self.sim.lock().records.heartbeats.push(record);
        if acked && self.send_text(control(11, "null")).await.is_err() {
            return Flow::End;
        }
        Flow::Continue
    }

    fn token_ok(&self, data: &Value) -> bool {
        let token = data
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let token = token.strip_prefix("Bot ").unwrap_or(token);
        token == self.sim.config.token
    }

    async fn on_identify(&mut self, data: &Value) -> Flow {
        let intents = data.get("intents").and_then(Value::as_u64);
        let shard = data.get("shard").map(|s| {
            let id = s.get(0).and_then(Value::as_u64);
            let count = s.get(1).and_then(Value::as_u64);
            match (id, count) {
                (Some(id), Some(count)) if count > 0 && id < count => Some([id, count]),
                _ => None,
            }
        });
        let mut record = IdentifyRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            intents,
            shard: shard.flatten(),
            outcome: IdentifyOutcome::InvalidSession,
        };
        let refusal = if self.session.is_some() {
            Some((4005, "Already authenticated."))
        } else if !data.is_object() {
            Some((4002, "Error while decoding payload."))
        } else if !self.token_ok(data) {
            Some((4004, "Authentication failed."))
        } else if intents.is_none_or(|bits| bits & !KNOWN_INTENTS != 0) {
            Some((4013, "Invalid intent(s)."))
        } else if intents.is_some_and(|bits| {
            bits & PRIVILEGED_INTENTS & !self.sim.config.privileged_intents != 0
        }) {
            Some((4014, "Disallowed intent(s)."))
        } else if matches!(shard, Some(None)) {
            Some((4010, "Invalid shard."))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            record.outcome = IdentifyOutcome::Closed { code };
            self.sim.lock().records.identifies.push(record);
            return self.close_flow(code, reason).await;
        }
        let shard = shard.flatten();
        let now = Instant::now();
        let session_id: Option<Arc<str>> = {
            let mut guard = self.sim.lock();
            let state = &mut *guard;
            let buckets = u64::from(self.sim.config.max_concurrency.max(1));
            let bucket = shard.map_or(0, |[id, _]| id % buckets);
            let spacing = self.sim.config.identify_spacing;
            let too_soon = !spacing.is_zero()
                && state
                    .last_identify
                    .get(&bucket)
                    .is_some_and(|at| now.duration_since(*at) < spacing);
            if too_soon {
                state.records.identifies.push(record);
                None
            } else {
                state.last_identify.insert(bucket, now);
                state.session_start_remaining = state.session_start_remaining.saturating_sub(1);
                let id: Arc<str> = fake::hex(&mut state.rng, 32).into();
                let window = self.sim.config.resume_window;
                state.sessions.retain(|_, s| !s.expired(now, window));
                evict_sessions(&mut state.sessions);
                let mut session = Session {
                    shard,
                    last_seq: 0,
                    log: VecDeque::new(),
                    attached: Some(self.conn),
                    detached_at: None,
                };
                let capacity = self.sim.config.resume_buffer;
                session.push("READY", &self.sim.ready_data(&id, shard), capacity);
                for guild in &self.sim.guilds {
                    if session.receives(guild.id) {
                        session.push("GUILD_CREATE", &self.sim.guild_create_data(guild), capacity);
                    }
                }
                for _ in 0..self.sim.config.messages_after_ready {
                    let (guild, data) = self.sim.message_create(state);
                    if session.receives(guild) {
                        session.push("MESSAGE_CREATE", &data, capacity);
                    }
                }
                state.sessions.insert(id.clone(), session);
                record.outcome = IdentifyOutcome::Ready {
                    session_id: id.to_string(),
                };
                state.records.identifies.push(record);
                Some(id)
            }
        };
        let Some(session_id) = session_id else {
            return self
                .send_control(control(9, "false"), Control::InvalidSession(false))
                .await;
        };
        self.session = Some(session_id);
        self.sent_seq = 0;
        self.replay_until = 0;
        self.sim.first_session.fire();
        Flow::Continue
    }

    async fn on_resume(&mut self, data: &Value) -> Flow {
        let session_id = data
            .get("session_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let seq = data.get("seq").and_then(Value::as_u64);
        let mut record = ResumeRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            session_id: session_id.clone(),
            seq: seq.unwrap_or(0),
            outcome: ResumeOutcome::InvalidSession,
        };
        let refusal = if self.session.is_some() {
            Some((4005, "Already authenticated."))
        } else if !self.token_ok(data) {
            Some((4004, "Authentication failed."))
        } else if seq.is_none() || session_id.is_empty() {
            Some((4002, "Error while decoding payload."))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            record.outcome = ResumeOutcome::Closed { code };
            self.sim.lock().records.resumes.push(record);
            return self.close_flow(code, reason).await;
        }
        let seq = seq.unwrap_or(0);
        let now = Instant::now();
        enum Verdict {
            Resumed { id: Arc<str>, last: u64 },
            Invalid,
            FutureSeq,
        }
        let verdict = {
            let mut guard = self.sim.lock();
            let state = &mut *guard;
            let window = self.sim.config.resume_window;
            state.sessions.retain(|_, s| !s.expired(now, window));
            let key = state
                .sessions
                .get_key_value(session_id.as_str())
                .map(|(k, _)| k.clone());
            let verdict = match key.as_ref().and_then(|k| state.sessions.get_mut(k)) {
                None => Verdict::Invalid,
                Some(session) if seq > session.last_seq => Verdict::FutureSeq,
                Some(session)
                    if seq + 1 < session.log.front().map_or(session.last_seq + 1, |l| l.seq) =>
                {
                    Verdict::Invalid
                }
                Some(session) => {
                    let previous = session.attached.replace(self.conn);
                    session.detached_at = None;
                    let last = session.last_seq;
                    session.push("RESUMED", RESUMED_DATA, self.sim.config.resume_buffer);
                    if let Some(tx) = previous
                        .filter(|c| *c != self.conn)
                        .and_then(|c| state.connections.get(&c))
                    {
                        let _ = tx.try_send(Command::Superseded);
                    }
                    match key.clone() {
                        Some(id) => Verdict::Resumed { id, last },
                        None => Verdict::Invalid,
                    }
                }
            };
            record.outcome = match &verdict {
                Verdict::Resumed { last, .. } => ResumeOutcome::Resumed {
                    replayed: last - seq,
                },
                Verdict::Invalid => ResumeOutcome::InvalidSession,
                Verdict::FutureSeq => ResumeOutcome::Closed { code: 4007 },
            };
            if !matches!(verdict, Verdict::Resumed { .. }) {
                // Either way the client must start a new session.
                if let Some(key) = key {
                    state.sessions.remove(&key);
                }
            }
            state.records.resumes.push(record);
            verdict
        };
        match verdict {
            Verdict::Resumed { id, last } => {
                self.session = Some(id);
                self.sent_seq = seq;
                self.replay_until = last;
                Flow::Continue
            }
            Verdict::Invalid => {
                self.send_control(control(9, "false"), Control::InvalidSession(false))
                    .await
            }
            Verdict::FutureSeq => self.close_flow(4007, "Invalid seq.").await,
        }
    }

    async fn on_command(&mut self, command: Command) -> Flow {
        let action = match command {
            Command::Wake => return Flow::Continue,
            Command::Superseded => {
                // The session moved to another connection; this one is a zombie to Discord.
                self.session = None;
                self.record_control(Control::Dropped);
                return Flow::End;
            }
            Command::Act(action) => action,
        };
        match action {
            DiscordAction::DropConnection => {
                self.record_control(Control::Dropped);
                Flow::End
            }
            DiscordAction::StopHeartbeatAcks => {
                self.acks = false;
                Flow::Continue
            }
            DiscordAction::RequestHeartbeat => {
                self.send_control(control(1, "null"), Control::HeartbeatRequest)
                    .await
            }
            DiscordAction::Reconnect => {
                self.detach();
                self.send_control(control(7, "null"), Control::Reconnect)
                    .await
            }
            DiscordAction::InvalidSession { resumable } => {
                if resumable {
                    self.detach();
                } else {
                    self.end_session();
                }
                let data = if resumable { "true" } else { "false" };
                self.send_control(control(9, data), Control::InvalidSession(resumable))
                    .await
            }
            DiscordAction::Close { code, reason } => {
                let mut end = reason.len().min(123);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                self.close_flow(code, reason.get(..end).unwrap_or_default())
                    .await
            }
            DiscordAction::GarbageText => {
                let sent = self
                    .sender
                    .send(Message::text("this is not json {\"op\":"))
                    .await;
                self.record_control(Control::GarbageText);
                if sent.is_ok() {
                    Flow::Continue
                } else {
                    Flow::End
                }
            }
            DiscordAction::GarbageBinary => {
                let junk: Vec<u8> = {
                    let mut state = self.sim.lock();
                    (0..64).map(|_| state.rng.u8(..)).collect()
                };
                let sent = self.sender.send(Message::binary(junk)).await;
                self.record_control(Control::GarbageBinary);
                if sent.is_ok() {
                    Flow::Continue
                } else {
                    Flow::End
                }
            }
            DiscordAction::Oversized { bytes } => {
                let filler = bytes.saturating_sub(control(11, "\"\"").len());
                let payload = control(11, &format!("\"{}\"", "x".repeat(filler)));
                self.send_control(payload, Control::Oversized(bytes)).await
            }
            DiscordAction::Messages(_)
            | DiscordAction::Http { .. }
            | DiscordAction::RefuseResume { .. } => Flow::Continue,
        }
    }

    /// Stops dispatching the session here; it stays resumable.
    fn detach(&mut self) {
        if let Some(id) = self.session.take() {
            let mut state = self.sim.lock();
            if let Some(session) = state.sessions.get_mut(&id) {
                if session.attached == Some(self.conn) {
                    session.attached = None;
                    session.detached_at = Some(Instant::now());
                }
            }
        }
    }

    /// Ends the session for good.
    fn end_session(&mut self) {
        if let Some(id) = self.session.take() {
            self.sim.lock().sessions.remove(&id);
        }
    }

    /// Whether the benchmark blast should produce more now: a session is attached, everything
    /// buffered was written, and events are left.
    fn blast_due(&self) -> bool {
        let Some(id) = &self.session else {
            return false;
        };
        let state = self.sim.lock();
        state.blast_left > 0
            && state
                .sessions
                .get(id)
                .is_some_and(|s| s.last_seq == self.sent_seq)
    }

    fn blast(&mut self) {
        let Some(id) = self.session.clone() else {
            return;
        };
        let mut guard = self.sim.lock();
        let state = &mut *guard;
        for _ in 0..state.blast_left.min(64) {
            state.blast_left -= 1;
            let reused = state.blast_left as usize % BLAST_POOL;
            let data = match state.blast_pool.get(reused) {
                Some(data) if state.blast_pool.len() == BLAST_POOL => data.clone(),
                _ => {
                    let (_, data) = self.sim.message_create(state);
                    state.blast_pool.push(data.clone());
                    data
                }
            };
            if let Some(session) = state.sessions.get_mut(&id) {
                session.push("MESSAGE_CREATE", &data, self.sim.config.resume_buffer);
            }
        }
    }

    /// Writes every buffered dispatch of the attached session not yet written here.
    async fn flush(&mut self) -> Result<(), ()> {
        loop {
            let Some(id) = self.session.clone() else {
                return Ok(());
            };
            let batch: Vec<(u64, &'static str, Utf8Bytes)> = {
                let state = self.sim.lock();
                let Some(session) = state
                    .sessions
                    .get(&id)
                    .filter(|s| s.attached == Some(self.conn))
                else {
                    drop(state);
                    self.session = None;
                    return Ok(());
                };
                if session.last_seq <= self.sent_seq {
                    return Ok(());
                }
                let oldest = session.log.front().map_or(session.last_seq + 1, |l| l.seq);
                if self.sent_seq + 1 < oldest {
                    // The client fell so far behind that the buffer lost dispatches: Discord
                    // would drop it too. Its RESUME will be refused.
                    return Err(());
                }
                let skip = usize::try_from(self.sent_seq + 1 - oldest).unwrap_or(usize::MAX);
                session
                    .log
                    .iter()
                    .skip(skip)
                    .take(FLUSH_BATCH)
                    .map(|l| (l.seq, l.event, l.payload.clone()))
                    .collect()
            };
            let last = batch.len().saturating_sub(1);
            for (index, (seq, event, payload)) in batch.into_iter().enumerate() {
                self.cork.set(index < last);
                let sent = self.send_text(payload).await;
                self.cork.set(false);
                sent?;
                self.sent_seq = seq;
                let record = DispatchRecord {
                    conn: self.conn,
                    at: self.sim.since_start(),
                    session_id: id.clone(),
                    seq,
                    event,
                    replayed: seq <= self.replay_until,
                };
                self.sim.lock().records.dispatches.push(record);
            }
        }
    }

    /// Sends a payload as text, or as a zlib-stream binary frame when compression is on. While
    /// the write waits for the client to read, what the client sends is read and kept for later.
    async fn send_text(&mut self, payload: impl Into<Utf8Bytes>) -> Result<(), ()> {
        let payload: Utf8Bytes = payload.into();
        let message = match &mut self.compressor {
            Some(compressor) => Message::Binary(WsBytes::from(
                deflate_sync(compressor, payload.as_bytes()).ok_or(())?,
            )),
            None => Message::Text(payload),
        };
        let send = self.sender.send(message);
        let (receiver, arrived, sim) = (&mut self.receiver, &mut self.arrived, self.sim);
        let read_meanwhile = async {
            while let Some(Ok(message)) = receiver.next().await {
                arrived.push_back((sim.since_start(), message));
            }
            // The client is gone; the write finds out by itself.
            futures_lite::future::pending().await
        };
        futures_lite::future::or(send, read_meanwhile)
            .await
            .map_err(|_| ())
    }

    async fn send_control(&mut self, payload: String, what: Control) -> Flow {
        let sent = self.send_text(payload).await;
        self.record_control(what);
        if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::End
        }
    }

    async fn close_flow(&mut self, code: u16, reason: &str) -> Flow {
        self.close(code, reason).await;
        Flow::End
    }

    /// Sends a close frame, applies what the code means for the session, and waits briefly for
    /// the client's reply.
    async fn close(&mut self, code: u16, reason: &str) {
        if matches!(code, 4003 | 4004 | 4007 | 4009 | 4010..=4014) {
            self.end_session();
        } else {
            self.detach();
        }
        self.record_control(Control::Close(code));
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        if self.sender.close(Some(frame)).await.is_err() {
            return;
        }
        let receiver = &mut self.receiver;
        futures_lite::future::or(
            async {
                while let Some(Ok(message)) = receiver.next().await {
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

    fn record_control(&self, control: Control) {
        let record = ControlRecord {
            conn: self.conn,
            at: self.sim.since_start(),
            control,
        };
        self.sim.lock().records.controls.push(record);
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

/// Keeps at most [`MAX_SESSIONS`] sessions, dropping the longest-detached ones first.
fn evict_sessions(sessions: &mut HashMap<Arc<str>, Session>) {
    while sessions.len() >= MAX_SESSIONS {
        let oldest = sessions
            .iter()
            .filter_map(|(id, s)| s.detached_at.map(|at| (at, id.clone())))
            .min_by_key(|(at, _)| *at)
            .map(|(_, id)| id);
        match oldest {
            Some(id) => {
                sessions.remove(&id);
            }
            None => return,
        }
    }
}

/// Compresses `input` into the connection's zlib stream with a sync flush, so the output ends
/// with `00 00 ff ff` and the client can inflate it as one message.
fn deflate_sync(compressor: &mut Compress, input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 3 + 64);
    let mut consumed = 0usize;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let before = compressor.total_in();
        compressor
            .compress_vec(input.get(consumed..)?, &mut out, FlushCompress::Sync)
            .ok()?;
        consumed += usize::try_from(compressor.total_in() - before).ok()?;
        if consumed >= input.len() && out.len() < out.capacity() {
            return Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{http, json, next_json, next_message, send_json, within, ws_connect};
    use openflume_proto::HttpRequest;

    async fn start(config: DiscordSimConfig) -> DiscordSim {
        DiscordSim::start(DiscordSimConfig {
            heartbeat_interval: Duration::from_millis(1000),
            identify_spacing: Duration::ZERO,
            ..config
        })
        .await
        .unwrap()
    }

    fn identify(token: &str) -> Value {
        json!({"op": 2, "d": {
            "token": token, "intents": 37377, "shard": [0, 1],
            "properties": {"os": "linux", "browser": "openflume", "device": "openflume"}
        }})
    }

    /// Connects, reads HELLO, identifies; returns the socket, READY's `d`, and GUILD_CREATE.
    async fn ready(sim: &DiscordSim) -> (crate::testkit::Ws, Value) {
        let mut ws = ws_connect(&format!("{}/?v=10&encoding=json", sim.gateway_url())).await;
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["op"], 10);
        assert_eq!(hello["d"]["heartbeat_interval"], 1000);
        send_json(&mut ws, identify(sim.token())).await;
        let ready = next_json(&mut ws).await;
        assert_eq!(
            (
                ready["op"].as_u64(),
                ready["t"].as_str(),
                ready["s"].as_u64()
            ),
            (Some(0), Some("READY"), Some(1))
        );
        let guild = next_json(&mut ws).await;
        assert_eq!(
            (guild["t"].as_str(), guild["s"].as_u64()),
            (Some("GUILD_CREATE"), Some(2))
        );
        (ws, ready["d"].clone())
    }

    #[test]
    fn gateway_bot_checks_the_token() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig::default()).await;
            let url = format!("{}/gateway/bot", sim.api_url());
            let ok = http(
                HttpRequest::new("GET", &url)
                    .header("Authorization", format!("Bot {}", sim.token())),
            )
            .await;
            assert_eq!(ok.status, 200);
            let body = json(&ok);
            assert_eq!(body["url"], sim.gateway_url());
            assert_eq!(body["shards"], 1);
            assert_eq!(body["session_start_limit"]["total"], 1000);
            assert_eq!(body["session_start_limit"]["max_concurrency"], 1);
            assert!(body["session_start_limit"]["reset_after"].as_u64().unwrap() > 86_000_000);
            for auth in ["Bot wrong", "Bearer sim-discord-bot-token.openflume", ""] {
                let refused =
                    http(HttpRequest::new("GET", &url).header("Authorization", auth)).await;
                assert_eq!(refused.status, 401, "{auth}");
                assert_eq!(json(&refused)["message"], "401: Unauthorized");
            }
            let statuses: Vec<_> = sim.records().http.iter().map(|r| r.status).collect();
            assert_eq!(statuses, vec![Some(200), Some(401), Some(401), Some(401)]);
        });
    }

    #[test]
    fn identify_ready_dispatch_and_heartbeat_ack() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig::default()).await;
            let (mut ws, ready) = ready(&sim).await;
            let session_id = ready["session_id"].as_str().unwrap().to_owned();
            assert_eq!(session_id.len(), 32);
            assert_eq!(ready["resume_gateway_url"], sim.resume_url());
            assert_ne!(sim.resume_url(), sim.gateway_url());
            assert_eq!(ready["shard"], json!([0, 1]));
            assert_eq!(ready["v"], 10);

            assert_eq!(sim.inject(DiscordAction::Messages(1)), 1);
            let message = next_json(&mut ws).await;
            assert_eq!(
                (message["t"].as_str(), message["s"].as_u64()),
                (Some("MESSAGE_CREATE"), Some(3))
            );
            let d = &message["d"];
            for field in ["id", "channel_id", "guild_id", "content", "timestamp"] {
                assert!(d[field].is_string(), "{field} in {d}");
            }
            assert!(d["author"]["id"].is_string() && d["author"]["username"].is_string());
            assert_eq!(d["embeds"][0]["type"], "rich");
            let size = message.to_string().len();
            assert!(
                (1000..1500).contains(&size),
                "MESSAGE_CREATE is {size} bytes"
            );

            send_json(&mut ws, json!({"op": 1, "d": 3})).await;
            let ack = next_json(&mut ws).await;
            assert_eq!(ack["op"], 11);
            let records = sim.records();
            assert_eq!(records.seqs(&session_id), vec![1, 2, 3]);
            let beat = records.heartbeats.last().unwrap();
            assert_eq!((beat.seq, beat.acked), (Some(3), true));
            assert_eq!(records.sessions(), vec![session_id]);
            assert_eq!(
                records.controls.iter().next().map(|c| &c.control),
                Some(&Control::Hello)
            );

            // A zombie: heartbeats are no longer acknowledged on this connection.
            sim.inject(DiscordAction::StopHeartbeatAcks);
            sim.inject(DiscordAction::RequestHeartbeat);
            assert_eq!(next_json(&mut ws).await["op"], 1);
            send_json(&mut ws, json!({"op": 1, "d": 3})).await;
            sim.wait_for(STEP_WAIT, |r| {
                r.heartbeats.iter().find(|h| !h.acked).map(|_| ())
            })
            .await
            .unwrap();
            sim.inject(DiscordAction::Messages(1));
            assert_eq!(next_json(&mut ws).await["s"], 4, "the dispatch, not an ACK");
        });
    }

    #[test]
    fn messages_after_ready_follow_ready_unasked() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig {
                messages_after_ready: 3,
                ..DiscordSimConfig::default()
            })
            .await;
            let (mut ws, _) = ready(&sim).await;
            let mut ids = Vec::new();
            for seq in 3..=5 {
                let message = next_json(&mut ws).await;
                assert_eq!(
                    (message["t"].as_str(), message["s"].as_u64()),
                    (Some("MESSAGE_CREATE"), Some(seq))
                );
                ids.push(message["d"]["id"].as_str().unwrap().to_owned());
            }
            ids.dedup();
            assert_eq!(ids.len(), 3, "each message has its own id");
            let last = sim.records().dispatches.last().unwrap().at;
            assert!(sim.elapsed() >= last);
        });
    }

    #[test]
    fn a_heartbeat_is_seen_while_dispatches_wait_for_the_client() {
        smol::block_on(async {
            // About 7 MB: more than the socket buffers take while the client reads nothing.
            let sim = start(DiscordSimConfig {
                messages_after_ready: 5000,
                ..DiscordSimConfig::default()
            })
            .await;
            let (mut ws, _) = ready(&sim).await;
            send_json(&mut ws, json!({"op": 1, "d": 2})).await;
            // Its ACK follows the dispatches written before it was handled.
            let mut dispatches = 0;
            loop {
                let message = next_json(&mut ws).await;
                if message["op"] == 11 {
                    break;
                }
                dispatches += 1;
            }
            assert!(dispatches > 0);
            let records = sim.records();
            let beat = records.heartbeats.last().unwrap();
            assert_eq!(beat.seq, Some(2));
            let last_write = records.dispatches.last().unwrap().at;
            assert!(
                beat.at < last_write,
                "the heartbeat arrived at {:?}, while the backlog was written until {last_write:?}",
                beat.at
            );
        });
    }

    const STEP_WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn resume_replays_the_missed_dispatches() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig::default()).await;
            let (mut ws, ready) = ready(&sim).await;
            let session_id = ready["session_id"].as_str().unwrap().to_owned();
            // The client leaves with a resumable close code; three messages arrive meanwhile.
            ws.close(Some(CloseFrame {
                code: CloseCode::from(4000),
                reason: "zombie".into(),
            }))
            .await
            .unwrap();
            sim.wait_for(STEP_WAIT, |r| r.client_closes.last().and_then(|c| c.code))
                .await
                .unwrap();
            assert_eq!(sim.records().client_closes.last().unwrap().code, Some(4000));
            assert_eq!(sim.inject(DiscordAction::Messages(3)), 1);

            let mut ws = ws_connect(&format!(
                "{}?v=10&encoding=json",
                ready["resume_gateway_url"].as_str().unwrap()
            ))
            .await;
            assert_eq!(next_json(&mut ws).await["op"], 10);
            send_json(
                &mut ws,
                json!({"op": 6, "d": {"token": sim.token(), "session_id": session_id, "seq": 2}}),
            )
            .await;
            for seq in 3..=5 {
                let replayed = next_json(&mut ws).await;
                assert_eq!(
                    (replayed["t"].as_str(), replayed["s"].as_u64()),
                    (Some("MESSAGE_CREATE"), Some(seq))
                );
            }
            let resumed = next_json(&mut ws).await;
            assert_eq!(
                (resumed["t"].as_str(), resumed["s"].as_u64()),
                (Some("RESUMED"), Some(6))
            );
            sim.inject(DiscordAction::Messages(1));
            assert_eq!(next_json(&mut ws).await["s"], 7);

            // A dispatch is recorded once written, which may be just after the client read it.
            let records = sim
                .wait_for(STEP_WAIT, |r| {
                    (r.seqs(&session_id).len() == 7).then(|| r.clone())
                })
                .await
                .unwrap();
            assert_eq!(
                records.resumes.last().unwrap().outcome,
                ResumeOutcome::Resumed { replayed: 3 }
            );
            assert_eq!(records.connections.last().unwrap().path, "/resume");
            assert_eq!(records.seqs(&session_id), vec![1, 2, 3, 4, 5, 6, 7]);
            let replayed: Vec<_> = records
                .dispatches
                .iter()
                .filter(|d| d.replayed)
                .map(|d| d.seq)
                .collect();
            assert_eq!(replayed, vec![3, 4, 5]);

            // A RESUME of an unknown session gets op 9 false; a seq from the future 4007.
            let mut other = ws_connect(&sim.gateway_url()).await;
            next_json(&mut other).await;
            send_json(
                &mut other,
                json!({"op": 6, "d": {"token": sim.token(), "session_id": "nope", "seq": 1}}),
            )
            .await;
            assert_eq!(
                next_json(&mut other).await,
                json!({"t": null, "s": null, "op": 9, "d": false})
            );
            send_json(&mut ws, json!({"op": 1, "d": 7})).await;
            assert_eq!(next_json(&mut ws).await["op"], 11);
            drop(ws);
            sim.wait_for(STEP_WAIT, |r| (r.client_closes.len() == 2).then_some(()))
                .await
                .unwrap();
            send_json(
                &mut other,
                json!({"op": 6, "d": {"token": sim.token(), "session_id": session_id, "seq": 99}}),
            )
            .await;
            match next_message(&mut other).await {
                Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4007),
                other => panic!("expected close 4007, got {other:?}"),
            }
        });
    }

    #[test]
    fn a_bad_token_is_closed_with_4004() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig::default()).await;
            let mut ws = ws_connect(&format!("{}/?v=10&encoding=json", sim.gateway_url())).await;
            next_json(&mut ws).await;
            send_json(&mut ws, identify("not-the-token")).await;
            match next_message(&mut ws).await {
                Some(Message::Close(Some(frame))) => {
                    assert_eq!(u16::from(frame.code), 4004);
                    assert_eq!(frame.reason.as_str(), "Authentication failed.");
                }
                other => panic!("expected close 4004, got {other:?}"),
            }
            let records = sim.records();
            assert_eq!(
                records.identifies.last().unwrap().outcome,
                IdentifyOutcome::Closed { code: 4004 }
            );
            assert!(records.sessions().is_empty());
        });
    }

    #[test]
    fn identify_checks_intents_shard_and_order() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig {
                privileged_intents: 0,
                ..DiscordSimConfig::default()
            })
            .await;
            let cases = [
                (json!({"op": 8, "d": {"guild_id": "1"}}), 4003),
                (json!({"op": 99, "d": null}), 4001),
                (
                    json!({"op": 2, "d": {"token": sim.token(), "intents": 1u64 << 40}}),
                    4013,
                ),
                (
                    json!({"op": 2, "d": {"token": sim.token(), "intents": 1 << 15}}),
                    4014,
                ),
                (
                    json!({"op": 2, "d": {"token": sim.token(), "intents": 1, "shard": [2, 2]}}),
                    4010,
                ),
            ];
            for (payload, code) in cases {
                let mut ws = ws_connect(&sim.gateway_url()).await;
                next_json(&mut ws).await;
                send_json(&mut ws, payload.clone()).await;
                match next_message(&mut ws).await {
                    Some(Message::Close(Some(frame))) => {
                        assert_eq!(u16::from(frame.code), code, "{payload}")
                    }
                    other => panic!("{payload}: expected close {code}, got {other:?}"),
                }
            }
            let mut ws = ws_connect(&sim.gateway_url()).await;
            next_json(&mut ws).await;
            ws.send(Message::text("{not json")).await.unwrap();
            assert!(
                matches!(next_message(&mut ws).await, Some(Message::Close(Some(f))) if u16::from(f.code) == 4002)
            );
        });
    }

    #[test]
    fn zlib_stream_frames_inflate_to_the_payloads() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig::default()).await;
            let mut ws = ws_connect(&format!(
                "{}/?v=10&encoding=json&compress=zlib-stream",
                sim.gateway_url()
            ))
            .await;
            let mut inflate = flate2::Decompress::new(true);
            let mut next = async |ws: &mut crate::testkit::Ws| -> Value {
                let Some(Message::Binary(bytes)) = next_message(ws).await else {
                    panic!("expected a binary frame")
                };
                assert!(
                    bytes.ends_with(&[0, 0, 0xff, 0xff]),
                    "each message ends with a sync flush"
                );
                let mut out = Vec::with_capacity(bytes.len() * 8 + 1024);
                inflate
                    .decompress_vec(&bytes, &mut out, flate2::FlushDecompress::Sync)
                    .unwrap();
                serde_json::from_slice(&out).unwrap()
            };
            assert_eq!(next(&mut ws).await["op"], 10);
            send_json(&mut ws, identify(sim.token())).await;
            assert_eq!(next(&mut ws).await["t"], "READY");
            assert_eq!(next(&mut ws).await["t"], "GUILD_CREATE");
            sim.inject(DiscordAction::Messages(2));
            for seq in [3, 4] {
                let message = next(&mut ws).await;
                assert_eq!(
                    (message["t"].as_str(), message["s"].as_u64()),
                    (Some("MESSAGE_CREATE"), Some(seq))
                );
            }
            send_json(&mut ws, json!({"op": 1, "d": 4})).await;
            assert_eq!(next(&mut ws).await["op"], 11);
            assert_eq!(
                sim.records()
                    .connections
                    .last()
                    .unwrap()
                    .compress
                    .as_deref(),
                Some("zlib-stream")
            );
        });
    }

    #[test]
    fn faults_reach_the_connection() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig::default()).await;
            let (mut ws, _) = ready(&sim).await;
            sim.inject(DiscordAction::Reconnect);
            assert_eq!(
                next_json(&mut ws).await,
                json!({"t": null, "s": null, "op": 7, "d": null})
            );
            sim.inject(DiscordAction::GarbageText);
            assert!(
                matches!(next_message(&mut ws).await, Some(Message::Text(t)) if serde_json::from_str::<Value>(t.as_str()).is_err())
            );
            sim.inject(DiscordAction::Oversized { bytes: 100_000 });
            let Some(Message::Text(big)) = next_message(&mut ws).await else {
                panic!("expected text")
            };
            assert_eq!(big.len(), 100_000);
            sim.inject(DiscordAction::Close {
                code: 4009,
                reason: "Session timed out.".into(),
            });
            assert!(
                matches!(next_message(&mut ws).await, Some(Message::Close(Some(f))) if u16::from(f.code) == 4009)
            );
            let records = sim.records();
            let controls: Vec<_> = records.controls.iter().map(|c| c.control.clone()).collect();
            assert_eq!(
                controls,
                vec![
                    Control::Hello,
                    Control::Reconnect,
                    Control::GarbageText,
                    Control::Oversized(100_000),
                    Control::Close(4009)
                ]
            );

            let (mut ws, _) = ready(&sim).await;
            sim.inject(DiscordAction::DropConnection);
            assert!(
                within("the drop", next_message(&mut ws)).await.is_none(),
                "no close frame"
            );
            sim.inject(DiscordAction::Http {
                fault: HttpFault::Status {
                    status: 429,
                    retry_after: Some(3),
                },
                times: 1,
            });
            let limited = http(HttpRequest::new(
                "GET",
                format!("{}/gateway", sim.api_url()),
            ))
            .await;
            assert_eq!(
                (limited.status, limited.header("retry-after")),
                (429, Some("3"))
            );
            assert_eq!(json(&limited)["retry_after"], 3.0);
            sim.inject(DiscordAction::RefuseResume { times: 1 });
            let parsed = openflume_proto::url::Url::parse(&sim.resume_url()).unwrap();
            let tcp = smol::net::TcpStream::connect((parsed.host.as_str(), parsed.port))
                .await
                .unwrap();
            assert!(
                async_tungstenite::client_async(sim.resume_url(), tcp)
                    .await
                    .is_err()
            );
        });
    }

    #[test]
    fn blast_sends_exactly_the_count_as_fast_as_read() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig {
                scenario: Scenario::blast(3000),
                ..DiscordSimConfig::default()
            })
            .await;
            let (mut ws, ready) = ready(&sim).await;
            let session_id = ready["session_id"].as_str().unwrap().to_owned();
            for seq in 3..3003 {
                let message = next_json(&mut ws).await;
                assert_eq!(
                    (message["t"].as_str(), message["s"].as_u64()),
                    (Some("MESSAGE_CREATE"), Some(seq))
                );
            }
            // Heartbeats are still read and answered after the blast.
            send_json(&mut ws, json!({"op": 1, "d": 3002})).await;
            assert_eq!(next_json(&mut ws).await["op"], 11);
            let seqs = sim.records().seqs(&session_id);
            assert_eq!(seqs, (1..3003).collect::<Vec<_>>());
        });
    }

    #[test]
    fn scenario_rate_and_schedule_start_with_the_first_client() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig {
                scenario: Scenario {
                    rate: Rate::Steady {
                        per_second: 50.0,
                        limit: Some(5),
                    },
                    schedule: Vec::new(),
                }
                .at(Duration::from_secs(1), DiscordAction::Reconnect),
                ..DiscordSimConfig::default()
            })
            .await;
            let (mut ws, _) = ready(&sim).await;
            let mut seen = Vec::new();
            loop {
                let payload = next_json(&mut ws).await;
                if payload["op"] == 7 {
                    break;
                }
                seen.push(payload["s"].as_u64().unwrap());
            }
            assert_eq!(seen, vec![3, 4, 5, 6, 7], "five messages, then op 7");
        });
    }

    #[test]
    fn stopping_closes_with_1001_and_dropping_cuts_the_connection() {
        smol::block_on(async {
            let sim = start(DiscordSimConfig::default()).await;
            let (mut ws, _) = ready(&sim).await;
            let stopping = smol::spawn(sim.stop());
            match next_message(&mut ws).await {
                Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
                other => panic!("expected close 1001, got {other:?}"),
            }
            drop(ws);
            within("stop", stopping).await;

            let sim = start(DiscordSimConfig::default()).await;
            let addr = sim.local_addr();
            let (mut ws, _) = ready(&sim).await;
            drop(sim);
            assert!(
                next_message(&mut ws).await.is_none(),
                "no close frame after a drop"
            );
            assert!(
                smol::net::TcpStream::connect(addr).await.is_err(),
                "no longer listening"
            );
        });
    }
}
