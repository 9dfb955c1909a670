//! Serving a recording: what Discord, Slack and GitHub sent in a recorded session
//! (`openflume listen --record FILE`), played back to a live client, so the whole stack (drivers
//! included) runs against real recorded traffic.
//!
//! The recording holds the inputs of the client's machines, not the server's side. To know what
//! the client asked and when, each section is first replayed (its machine fed its recorded
//! inputs, `openflume_proto::recording`): the replay gives every request the machine made
//! and every frame it sent, interleaved with what came back. From that:
//!
//! - **HTTP** (Discord's `GET /gateway/bot`, Slack's `apps.connections.open` and `auth.test`,
//!   GitHub's notifications): each method and path answers its recorded responses in order (a
//!   request that failed in the recording drops the connection); once they run out, the last
//!   one again.
//! - **WebSockets** (Discord's Gateway, Slack's Socket Mode): the n-th connection the client
//!   opens plays the n-th recorded connection. Its frames are sent at their recorded spacing,
//!   but a frame that came after the client sent one waits for the client's frame of that kind
//!   (Discord's op code; a Slack ack), so a HEARTBEAT_ACK answers a heartbeat and READY an
//!   IDENTIFY. A recorded close by the server is sent with its code; one the client started is
//!   waited for. A recorded connection that failed refuses the upgrade with 503; a connection
//!   beyond the recording is refused the same way.
//! - **Addresses**: every origin the recorded machine connected to or requested (the service's
//!   API, gateway and resume URLs) is rewritten to this simulator's in everything served, inside
//!   zlib-stream too (each payload is inflated and deflated again into the connection's own
//!   stream, or sent as text when the client asks for no compression).
//!
//! What it cannot reproduce: the exact timing of anything that depends on the client's own seed
//! (the live client's heartbeat jitter and backoff differ from the recorded one's, and an answer
//! waits for them); a live client configured differently from the recorded one (other intents,
//! another connection count); and anything the client would ask beyond the recording.

mod playback;
mod serve;

use crate::server::Server;
use openflume_proto::recording::{MachineConfig, MachineKind, Recording};
use playback::Playback;
use serve::ReplayService;
use smol::net::TcpListener;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Why a recording cannot be served.
///
/// ```
/// use openflume_proto::recording::Recording;
/// use openflume_sim::replay::{ReplaySimError, ReplaySims};
/// // A cron recording: nothing a simulator serves.
/// let recording = Recording::parse("{\"source\":\"time\",\"machine\":\"cron\"}\n")?;
/// let refused = smol::block_on(ReplaySims::start(&recording, [127, 0, 0, 1].into())).unwrap_err();
/// assert!(matches!(refused, ReplaySimError::Nothing));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplaySimError {
    /// A section's machine cannot be built from its configuration.
    #[error("{0}")]
    Recording(#[from] openflume_proto::recording::RecordingError),
    /// A machine refuses the recorded configuration.
    #[error("source {source_name}: {reason}")]
    Build {
        /// The section's source.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// Nothing to serve: no Discord, Slack or GitHub section.
    #[error("the recording has no Discord, Slack or GitHub source to serve")]
    Nothing,
    /// Binding failed.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
}

/// The simulators serving one recording: one per recorded Discord, Slack and GitHub source.
/// Stops when dropped.
///
/// ```
/// use openflume_proto::recording::Recording;
/// use openflume_sim::replay::ReplaySims;
///
/// let text = r#"{"format":1,"source":"github","machine":"github","seed":1,"start":{"mono":0,"wall":1764100000000},"config":{"token":"${GITHUB_TOKEN}","api_url":"https://api.github.com"},"auto_confirm":false,"recorded_timers":true}
/// {"at":0,"input":"start"}
/// {"at":80,"input":{"response":{"req":1,"response":{"status":502,"headers":[],"body":"bad gateway"}}}}
/// "#;
/// let recording = Recording::parse(text)?;
/// smol::block_on(async {
///     let sims = ReplaySims::start(&recording, [127, 0, 0, 1].into()).await?;
///     let env = sims.env();
///     let url = &env.iter().find(|(name, _)| *name == "OPENFLUME_GITHUB_API_URL").unwrap().1;
///     assert!(url.starts_with("http://127.0.0.1:"));
///     sims.stop().await;
///     Ok::<(), openflume_sim::replay::ReplaySimError>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReplaySims {
    served: Vec<Served>,
}

#[derive(Debug)]
struct Served {
    source: String,
    config: MachineConfig,
    server: Server,
    playback: Arc<Playback>,
}

impl ReplaySims {
    /// Starts a simulator on a free port of `bind` for each Discord, Slack and GitHub section
    /// of `recording` (the others are not served: cron needs none, webhooks come from senders).
    /// See [`ReplaySims`] for an example.
    ///
    /// # Errors
    ///
    /// A section that cannot be replayed, no section to serve, or a port that cannot be bound.
    pub async fn start(recording: &Recording, bind: IpAddr) -> Result<ReplaySims, ReplaySimError> {
        let mut served = Vec::new();
        for section in &recording.sections {
            let kind = section.header.machine;
            if !matches!(
                kind,
                Some(MachineKind::Discord | MachineKind::Slack | MachineKind::Github)
            ) {
                continue;
            }
            let config = MachineConfig::from_section(section)?;
            let listener = TcpListener::bind(SocketAddr::new(bind, 0)).await?;
            let addr = listener.local_addr()?;
            let playback = Arc::new(Playback::from_section(section, &config, addr)?);
            let server = Server::serve(listener, Arc::new(ReplayService(playback.clone())))?;
            served.push(Served {
                source: section.source().to_owned(),
                config,
                server,
                playback,
            });
        }
        if served.is_empty() {
            return Err(ReplaySimError::Nothing);
        }
        Ok(ReplaySims { served })
    }

    /// Each served source's name and the address it listens on.
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// for (source, addr) in sims.addresses() {
    ///     println!("{source}: {addr}");
    /// }
    /// # }
    /// ```
    pub fn addresses(&self) -> Vec<(&str, SocketAddr)> {
        self.served
            .iter()
            .map(|s| (s.source.as_str(), s.server.local_addr()))
            .collect()
    }

    /// The environment that points `openflume listen` at these simulators, configured as the
    /// recorded sources were (API and gateway URLs, compression, connection count, poll interval)
    /// with stand-in tokens: the simulators accept any.
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// for (name, value) in sims.env() {
    ///     println!("export {name}={value}");
    /// }
    /// # }
    /// ```
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        for served in &self.served {
            let rewrite = |url: &str| served.playback.rewrite(url);
            match &served.config {
                MachineConfig::Discord(config) => {
                    env.push(("DISCORD_BOT_TOKEN", "replayed.discord.token".to_owned()));
                    env.push(("OPENFLUME_DISCORD_API_URL", rewrite(&config.api_base)));
                    if let Some(gateway) = &config.gateway_url {
                        env.push(("OPENFLUME_DISCORD_GATEWAY_URL", rewrite(gateway)));
                    }
                    let compress = if config.compress {
                        "zlib-stream"
                    } else {
                        "none"
                    };
                    env.push(("OPENFLUME_DISCORD_COMPRESS", compress.to_owned()));
                }
                MachineConfig::Slack(config) => {
                    env.push(("SLACK_APP_TOKEN", "xapp-1-REPLAYED-token".to_owned()));
                    if config.bot_token.is_some() {
                        env.push(("SLACK_BOT_TOKEN", "xoxb-REPLAYED-token".to_owned()));
                    }
                    env.push(("OPENFLUME_SLACK_API_URL", rewrite(&config.api_base)));
                    env.push((
                        "OPENFLUME_SLACK_CONNECTIONS",
                        config.connections.to_string(),
                    ));
                    let ping = (config.ping_interval_ms / 1000).max(1);
                    env.push(("OPENFLUME_SLACK_PING_INTERVAL", ping.to_string()));
                }
                MachineConfig::Github(config) => {
                    env.push(("GITHUB_TOKEN", "ghp_REPLAYED_token".to_owned()));
                    env.push(("OPENFLUME_GITHUB_API_URL", rewrite(&config.api_url)));
                    let interval = (config.interval_ms / 1000).max(1);
                    env.push(("OPENFLUME_GITHUB_INTERVAL", interval.to_string()));
                    let bootstrap = match config.bootstrap {
                        openflume_proto::github::Bootstrap::Emit => "emit",
                        _ => "skip",
                    };
                    env.push(("OPENFLUME_GITHUB_BOOTSTRAP", bootstrap.to_owned()));
                    env.push((
                        "OPENFLUME_GITHUB_PARTICIPATING",
                        config.participating.to_string(),
                    ));
                }
                _ => {}
            }
        }
        env
    }

    /// True once every recorded connection was played to its end and every recorded HTTP
    /// answer was given.
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// if sims.played_out() {
    ///     println!("the whole recording was served");
    /// }
    /// # }
    /// ```
    pub fn played_out(&self) -> bool {
        self.served.iter().all(|s| s.playback.played_out())
    }

    /// Stops every simulator (open connections get a close frame first).
    ///
    /// ```no_run
    /// # async fn f(sims: openflume_sim::replay::ReplaySims) {
    /// let addresses: Vec<_> = sims.addresses().into_iter().map(|(_, addr)| addr).collect();
    /// sims.stop().await;
    /// assert!(addresses.iter().all(|addr| std::net::TcpStream::connect(addr).is_err()));
    /// # }
    /// ```
    pub async fn stop(self) {
        for served in self.served {
            served.server.stop().await;
        }
    }
}
