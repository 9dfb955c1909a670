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
//! from one zlib stream per connection, sync-flushed so each ends with `00 00 ff ff`; with
//! `compress=zstd-stream` every payload is a binary frame of one zstd stream per connection,
//! flushed and the frame left open.
//!
//! Simplifications: JSON encoding only (another `encoding` is closed with 4002), payload
//! compression (`identify.compress`) is not applied, the daily session-start budget is only
//! reported by `/gateway/bot`, and the server never closes a connection for missed heartbeats.

mod faults;
mod gateway;
mod handshake;
mod payloads;
mod records;
mod rest;
mod session;
#[cfg(test)]
mod tests;

pub use records::{
    Control, ControlRecord, DiscordRecords, DispatchRecord, GatewayConnection, HeartbeatRecord,
    IdentifyOutcome, IdentifyRecord, ResumeOutcome, ResumeRecord,
};

use crate::fake;
use crate::host::{Core, Host, Simulator, broadcast};
use crate::scenario::{HttpFault, Pacer, Rate, Scenario, SocketFault};
use crate::server::{Answer, Reply, Service, Shutdown, Signal, Ws, split_target};
use fastrand::Rng;
use jiff::Timestamp;
use openflume_proto::http::ReceivedRequest;
use payloads::Guild;
use session::Session;
use smol::channel::Sender;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// GUILD_MEMBERS, GUILD_PRESENCES and MESSAGE_CONTENT.
const PRIVILEGED_INTENTS: u64 = (1 << 1) | (1 << 8) | (1 << 15);
/// Commands queued per connection.
const COMMAND_QUEUE: usize = 256;

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
/// assert!(!format!("{config:?}").contains(config.token.expose()));
/// ```
#[derive(Clone, Debug)]
pub struct DiscordSimConfig {
    /// Where to listen. Default `127.0.0.1:0` (a free port on loopback).
    pub bind: SocketAddr,
    /// The bot token clients must present. Default [`DISCORD_TOKEN`](crate::DISCORD_TOKEN).
    pub token: openflume_proto::Secret,
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
    /// Accept IDENTIFY and then say nothing: no READY, no GUILD_CREATE (a gateway that stalls
    /// mid-handshake). Heartbeats are still acknowledged. Default false.
    pub withhold_ready: bool,
    /// Distinct MESSAGE_CREATE bodies a [`Scenario::blast`] cycles through, made as it goes.
    /// Default 1024: the blast outpaces the client it measures. A pool as large as the blast
    /// makes every body distinct, which a measure of transport compression needs (zstd's
    /// window would find the repeats of a small pool).
    pub blast_pool: usize,
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
            token: crate::DISCORD_TOKEN.into(),
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
            withhold_ready: false,
            blast_pool: session::BLAST_POOL,
            max_records: super::records::DEFAULT_MAX_RECORDS,
            seed: 0x5eed,
            scenario: Scenario::manual(),
        }
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
    /// A close or a bad frame. A close with 4003, 4004, 4007, 4009 or 4010–4014 ends the
    /// session.
    Fault(SocketFault),
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
    host: Host<Discord>,
}

impl DiscordSim {
    /// Starts listening on `config.bind`; returns once the socket listens.
    pub async fn start(config: DiscordSimConfig) -> io::Result<DiscordSim> {
        let scenario = config.scenario.clone();
        let mut host =
            Host::start(config.bind, &scenario, |addr| Discord::new(config, addr)).await?;
        if let Rate::Steady { .. } = scenario.rate {
            host.spawn(produce_steadily);
        }
        Ok(DiscordSim { host })
    }

    /// The REST base, `http://127.0.0.1:PORT/api/v10` (for `OPENFLUME_DISCORD_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10", self.host.local_addr())
    }

    /// The Gateway URL `/gateway/bot` returns, `ws://127.0.0.1:PORT` (no query, as Discord's).
    pub fn gateway_url(&self) -> String {
        self.host.shared().gateway_url.clone()
    }

    /// The `resume_gateway_url` READY gives out, `ws://127.0.0.1:PORT/resume`.
    pub fn resume_url(&self) -> String {
        self.host.shared().resume_url.clone()
    }

    /// The bot token it accepts.
    pub fn token(&self) -> &str {
        self.host.shared().config.token.expose()
    }

    /// Does `action` now. Returns how many connections (or, for [`DiscordAction::Messages`],
    /// sessions) it reached; REST and resume faults return 1.
    pub fn inject(&self, action: DiscordAction) -> usize {
        self.host.shared().inject(action)
    }

    /// Bytes of the Gateway messages written so far, as sent (compressed when the connection
    /// asked for it), without the WebSocket framing: what transport compression saves.
    pub fn bytes_sent(&self) -> u64 {
        self.host
            .shared()
            .bytes_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time since the simulator started: now, on the clock of the records' `at` fields (to
    /// measure the silence after the last heartbeat, say).
    pub fn elapsed(&self) -> Duration {
        self.host.shared().since_start()
    }
}

crate::host::handle_methods!(DiscordSim, DiscordRecords);

/// The simulator's shared half: configuration, URLs, state.
struct Discord {
    config: DiscordSimConfig,
    gateway_url: String,
    resume_url: String,
    guilds: Vec<Guild>,
    bot_user_id: u64,
    application_id: u64,
    author_ids: [u64; 4],
    joined_at: Timestamp,
    /// Fired by the first READY: the steady rate starts then, so no event is produced before a
    /// session exists to receive it.
    first_session: Signal,
    /// Bytes of the Gateway messages written (payloads as sent, compressed or not; without the
    /// WebSocket framing).
    bytes_sent: std::sync::atomic::AtomicU64,
    core: Core<State>,
}

impl fmt::Debug for Discord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discord")
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
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

/// What the shared half asks of a connection task.
#[derive(Debug)]
enum Command {
    /// New dispatches are buffered.
    Wake,
    /// Another connection resumed this one's session.
    Superseded,
    Act(DiscordAction),
}

impl Discord {
    fn new(config: DiscordSimConfig, addr: SocketAddr) -> Discord {
        let now = Timestamp::now();
        let mut increment = 0;
        let mut flake = || {
            increment += 1;
            fake::snowflake(now, increment)
        };
        // Each guild created a millisecond apart: a guild's shard is `(id >> 22) % shards`, the
        // id's timestamp, so guilds of one instant would all land on one shard.
        let guilds = (0..config.guilds.min(100))
            .map(|i| Guild {
                id: fake::snowflake(
                    now - jiff::SignedDuration::from_millis(i64::from(i)),
                    u64::from(i),
                ),
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
            guilds,
            bot_user_id,
            application_id,
            author_ids,
            joined_at: now,
            first_session: Signal::new(),
            bytes_sent: std::sync::atomic::AtomicU64::new(0),
            core: Core::new(state),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.core.lock()
    }

    fn since_start(&self) -> Duration {
        self.core.since_start()
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
            if let Some(conn) = state.sessions.get(id).and_then(|s| s.attached)
                && let Some(tx) = state.connections.get(&conn)
            {
                // A full queue already holds a wake-up or commands after which the
                // connection flushes anyway.
                let _ = tx.try_send(Command::Wake);
            }
        }
        reached.len()
    }
}

impl Simulator for Discord {
    type State = State;
    type Action = DiscordAction;

    fn core(&self) -> &Core<State> {
        &self.core
    }

    fn inject(&self, action: DiscordAction) -> usize {
        match action {
            DiscordAction::Messages(count) => self.produce(u64::from(count)),
            DiscordAction::Http { fault, times } => {
                self.core.push_fault(fault, times);
                1
            }
            DiscordAction::RefuseResume { times } => {
                let mut state = self.lock();
                state.refuse_resume = state.refuse_resume.saturating_add(times);
                1
            }
            action => broadcast(self.lock().connections.values(), || {
                Command::Act(action.clone())
            }),
        }
    }
}

crate::host::conn_logs!(State, DiscordRecords);

impl Service for Discord {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        self.rest(request).await
    }

    fn check_upgrade(&self, request: &ReceivedRequest) -> Result<(), Reply> {
        let (path, _) = split_target(&request.target);
        if path.starts_with("/resume") {
            let mut state = self.lock();
            if state.refuse_resume > 0 {
                state.refuse_resume -= 1;
                drop(state);
                self.core.record_http(&request.method, path, Some(503));
                return Err(Discord::error_reply(503, None));
            }
        }
        Ok(())
    }

    async fn websocket(&self, request: ReceivedRequest, ws: Ws, shutdown: Shutdown) {
        gateway::serve(self, request, ws, shutdown).await;
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
