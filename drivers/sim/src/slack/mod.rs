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

mod delivery;
mod envelopes;
mod records;
mod rest;
mod socket;
#[cfg(test)]
mod tests;

pub use rest::OpenAnswer;

pub use records::{
    AckRecord, AppliedRecord, DisconnectRecord, EnvelopeRecord, GivenUpRecord, SlackRecords,
    SocketConnection,
};

use crate::fake;
use crate::host::{Core, Host, Simulator, broadcast};
use crate::scenario::{HttpFault, Pacer, Rate, Scenario, SocketFault};
use crate::server::{Answer, Reply, Service, Shutdown, Ws};
use envelopes::Envelope;
use fastrand::Rng;
use openflume_proto::http::ReceivedRequest;
use smol::channel::Sender;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// Envelopes waiting for a connection, at most.
const MAX_QUEUED: usize = 10_000;
/// Messages queued per connection.
const CONN_QUEUE: usize = 256;

/// How to run a [`SlackSim`].
///
/// ```
/// use openflume_sim::SlackSimConfig;
/// use std::time::Duration;
///
/// let config = SlackSimConfig { ack_deadline: Duration::from_millis(300), ..SlackSimConfig::default() };
/// assert!(config.app_token.expose().starts_with("xapp-"));
/// assert!(!format!("{config:?}").contains(config.app_token.expose()));
/// ```
#[derive(Clone, Debug)]
pub struct SlackSimConfig {
    /// Where to listen. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The app-level token for `apps.connections.open`. Default [`SLACK_APP_TOKEN`](crate::SLACK_APP_TOKEN).
    pub app_token: openflume_proto::Secret,
    /// The bot token for `auth.test`. Default [`SLACK_BOT_TOKEN`](crate::SLACK_BOT_TOKEN).
    pub bot_token: openflume_proto::Secret,
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
            app_token: crate::SLACK_APP_TOKEN.into(),
            bot_token: crate::SLACK_BOT_TOKEN.into(),
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
    /// This many `events_api` message envelopes, now: each a top-level message in a random
    /// channel, so each starts a conversation of its own.
    Messages(u32),
    /// `count` `events_api` message envelopes replying in one thread, now: each `message` event
    /// is in `channel` and carries `thread_ts` (the parent message's `ts`) besides its own fresh
    /// `ts`, so they all share the conversation key
    /// `slack:v1:<team>:<channel>:<thread_ts>`. The parent need not have been sent.
    ThreadReplies {
        /// The channel id, e.g. `C0SIMGEN01` (any id is accepted).
        channel: String,
        /// The thread's parent `ts`, e.g. `1764100001.000100`.
        thread_ts: String,
        /// How many replies.
        count: u32,
    },
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
    /// A close or a bad frame.
    Fault(SocketFault),
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
    /// The next `times` authenticated `apps.connections.open` calls answer `answer` instead of a
    /// URL with a ticket.
    ConnectionsOpen {
        /// The answer.
        answer: OpenAnswer,
        /// How many calls.
        times: u32,
    },
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
    host: Host<Slack>,
}

impl SlackSim {
    /// Starts listening on `config.bind`; returns once the socket listens.
    pub async fn start(config: SlackSimConfig) -> io::Result<SlackSim> {
        let scenario = config.scenario.clone();
        let mut host = Host::start(config.bind, &scenario, |addr| Slack::new(config, addr)).await?;
        host.spawn(delivery::redeliver);
        if scenario.rate != Rate::Manual {
            host.spawn(produce);
        }
        Ok(SlackSim { host })
    }

    /// The Web API base, `http://127.0.0.1:PORT/api` (for `OPENFLUME_SLACK_API_URL`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.host.local_addr())
    }

    /// The app-level token it accepts.
    pub fn app_token(&self) -> &str {
        self.host.shared().config.app_token.expose()
    }

    /// The bot token it accepts.
    pub fn bot_token(&self) -> &str {
        self.host.shared().config.bot_token.expose()
    }

    /// Does `action` now. Returns how many connections it reached (for envelopes: 1 when one
    /// was produced, delivered or queued; for API faults: 1).
    pub fn inject(&self, action: SlackAction) -> usize {
        self.host.shared().inject(action)
    }

    /// Like [`inject`](Self::inject), on connection `conn` only. Returns whether it was open.
    pub fn inject_on(&self, conn: u64, action: SlackAction) -> bool {
        let state = self.host.shared().lock();
        state
            .conns
            .get(&conn)
            .is_some_and(|entry| entry.tx.try_send(Outbound::Act(action)).is_ok())
    }
}

crate::host::handle_methods!(SlackSim, SlackRecords);

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
    open_answers: VecDeque<(OpenAnswer, u32)>,
    last_events_api: Option<Envelope>,
}

/// The simulator's shared half.
struct Slack {
    config: SlackSimConfig,
    addr: SocketAddr,
    core: Core<State>,
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
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
            open_answers: VecDeque::new(),
            last_events_api: None,
        };
        Slack {
            config,
            addr,
            core: Core::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.core.lock()
    }

    fn since_start(&self) -> Duration {
        self.core.since_start()
    }
}

impl Simulator for Slack {
    type State = State;
    type Action = SlackAction;

    fn core(&self) -> &Core<State> {
        &self.core
    }

    fn inject(&self, action: SlackAction) -> usize {
        let now = Instant::now();
        match action {
            SlackAction::Messages(count) => {
                let mut state = self.lock();
                for _ in 0..count {
                    let envelope = self.events_api(&mut state.rng, None);
                    state.deliver(envelope, None, now);
                }
                usize::from(count > 0)
            }
            SlackAction::ThreadReplies {
                channel,
                thread_ts,
                count,
            } => {
                let mut state = self.lock();
                for _ in 0..count {
                    let envelope = self.events_api(&mut state.rng, Some((&channel, &thread_ts)));
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
                self.core.push_fault(fault, times);
                1
            }
            SlackAction::ApiError { error, times } => {
                let mut state = self.lock();
                if times > 0 && state.api_errors.len() < 1024 {
                    state.api_errors.push_back((error, times));
                }
                1
            }
            SlackAction::ConnectionsOpen { answer, times } => {
                let mut state = self.lock();
                if times > 0 && state.open_answers.len() < 1024 {
                    state.open_answers.push_back((answer, times));
                }
                1
            }
            action => {
                let state = self.lock();
                let senders = state.conns.values().map(|entry| &entry.tx);
                broadcast(senders, || Outbound::Act(action.clone()))
            }
        }
    }
}

crate::host::conn_logs!(State, SlackRecords);

impl Service for Slack {
    async fn http(&self, request: ReceivedRequest) -> Answer {
        self.rest(request).await
    }

    fn check_upgrade(&self, request: &ReceivedRequest) -> Result<(), Reply> {
        self.check_ticket(request)
    }

    async fn websocket(&self, _request: ReceivedRequest, ws: Ws, shutdown: Shutdown) {
        socket::serve(self, ws, shutdown).await;
    }
}

/// Produces `events_api` messages at the scenario's rate, from the first client on.
async fn produce(sim: Arc<Slack>) {
    sim.core.first_client.waiter().wait().await;
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
