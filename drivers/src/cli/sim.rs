//! `openflume sim`: the simulators alone, for manual testing against `openflume listen` or any
//! other client.

use super::UsageError;
use super::args::SimArgs;
use super::sim_control::{self, Command};
use openflume_sim::AllSimConfig;
use std::io::Write;
use std::time::Duration;

/// The most events per second `--rate` asks of each simulator: about what one can serve on one
/// core. Beyond it a simulator would only spin, starving the client it is meant to exercise.
const MAX_RATE: f64 = 20_000.0;

pub(crate) fn run(args: SimArgs) -> Result<i32, UsageError> {
    if let Some(path) = &args.replay {
        return replay(path, args.bind);
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= MAX_RATE) {
        return Err(UsageError::flag(
            "--rate",
            format!("must be a number of events per second above 0 and at most {MAX_RATE}"),
        ));
    }
    smol::block_on(async {
        let sims = openflume_sim::start_all(AllSimConfig::steady(args.bind, args.rate))
            .await
            .map_err(|e| UsageError(format!("cannot start the simulators: {e}")))?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "# Discord API:     {}", sims.discord.api_url());
        let _ = writeln!(out, "# Discord gateway: {}", sims.discord.gateway_url());
        let _ = writeln!(out, "# Slack API:       {}", sims.slack.api_url());
        let _ = writeln!(out, "# GitHub API:      {}", sims.github.api_url());
        let _ = writeln!(
            out,
            "# Point `openflume listen` at them (test tokens, not secrets):"
        );
        for (name, value) in sims.env() {
            let _ = writeln!(out, "export {name}={value}");
        }
        let _ = writeln!(
            out,
            "# Faults on stdin, one a line (`help` lists them), e.g. `discord zombie`, `slack refresh`, `github 502`"
        );
        let _ = out.flush();
        drop(out);
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
                .map_err(|e| UsageError(format!("cannot watch signals: {e}")))?;
        let lines = stdin_lines();
        let mut stdin_open = true;
        let mut seen = Seen::default();
        loop {
            let line = async {
                match lines.recv().await {
                    Ok(line) => Wake::Line(line),
                    Err(_) if stdin_open => Wake::StdinClosed,
                    // stdin ended: serve on until a signal.
                    Err(_) => futures_lite::future::pending().await,
                }
            };
            let signal = async {
                futures_lite::StreamExt::next(&mut signals).await;
                Wake::Signal
            };
            let next = futures_lite::future::or(
                futures_lite::future::or(line, signal),
                seen.next_client(&sims),
            )
            .await;
            match next {
                Wake::Signal => break,
                Wake::StdinClosed => stdin_open = false,
                Wake::Line(line) => apply(&sims, &line),
                Wake::Quiet => {}
                Wake::Client(what) => super::listen::report(format_args!("{what}")),
            }
        }
        sims.stop().await;
        Ok(0)
    })
}

/// What the simulators' loop wakes for.
enum Wake {
    Line(String),
    StdinClosed,
    Signal,
    /// A client connected (or first polled GitHub): what to say on stderr.
    Client(String),
    /// An hour without a new client: wait again.
    Quiet,
}

/// The clients seen so far, to tell a new one.
#[derive(Default)]
struct Seen {
    discord: u64,
    slack: u64,
    github_polled: bool,
}

impl Seen {
    /// Resolves when a new client shows in the records, saying which.
    async fn next_client(&mut self, sims: &openflume_sim::Handles) -> Wake {
        // A wait long enough to be forever here; at its end the loop simply asks again.
        const LONG: Duration = Duration::from_secs(3600);
        let (discord, slack, polled) = (self.discord, self.slack, self.github_polled);
        let found = futures_lite::future::or(
            futures_lite::future::or(
                async {
                    sims.discord
                        .wait_for(LONG, |r| {
                            let total = r.connections.total();
                            (total > discord).then_some(("discord", total))
                        })
                        .await
                },
                async {
                    sims.slack
                        .wait_for(LONG, |r| {
                            let total = r.connections.total();
                            (total > slack).then_some(("slack", total))
                        })
                        .await
                },
            ),
            async {
                sims.github
                    .wait_for(LONG, |r| {
                        (!polled && r.requests.total() > 0).then_some(("github", 1))
                    })
                    .await
            },
        )
        .await;
        match found {
            Ok(("discord", total)) => {
                self.discord = total;
                Wake::Client(format!(
                    "discord: a client connected to the gateway (connection {total})"
                ))
            }
            Ok(("slack", total)) => {
                self.slack = total;
                Wake::Client(format!(
                    "slack: a client connected to Socket Mode (connection {total})"
                ))
            }
            Ok(_) => {
                self.github_polled = true;
                Wake::Client("github: a client polled the notifications".into())
            }
            Err(_) => Wake::Quiet,
        }
    }
}

/// Lines from stdin, read on a thread of their own (stdin has no portable async read).
fn stdin_lines() -> smol::channel::Receiver<String> {
    let (tx, rx) = smol::channel::bounded(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send_blocking(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Carries out one control line, saying on stderr what it did.
fn apply(sims: &openflume_sim::Handles, line: &str) {
    let said = line.trim();
    match sim_control::parse(line) {
        Ok(None) => {}
        Ok(Some(Command::Help)) => {
            for help in sim_control::HELP.lines() {
                super::listen::report(format_args!("{help}"));
            }
        }
        Ok(Some(Command::Discord(action))) => {
            sims.discord.inject(action);
            super::listen::report(format_args!("done: {said}"));
        }
        Ok(Some(Command::Slack(action))) => {
            sims.slack.inject(action);
            super::listen::report(format_args!("done: {said}"));
        }
        Ok(Some(Command::Github(action))) => {
            sims.github.inject(action);
            super::listen::report(format_args!("done: {said}"));
        }
        Err(why) => super::listen::report(format_args!("{why}")),
    }
}

/// `openflume sim --replay FILE`: the recording served until a signal.
fn replay(path: &std::path::Path, bind: std::net::IpAddr) -> Result<i32, UsageError> {
    let recording = match openflume_proto::recording::Recording::load(path) {
        Ok(recording) => recording,
        Err(error) => {
            super::listen::report(format_args!("{}: {error}", path.display()));
            return Ok(1);
        }
    };
    smol::block_on(async {
        let sims = match openflume_sim::replay::ReplaySims::start(&recording, bind).await {
            Ok(sims) => sims,
            Err(error) => {
                super::listen::report(format_args!("{}: {error}", path.display()));
                return Ok(1);
            }
        };
        let mut out = std::io::stdout().lock();
        for (source, addr) in sims.addresses() {
            let _ = writeln!(out, "# {source} replayed on {addr}");
        }
        let _ = writeln!(
            out,
            "# Point `openflume listen` at them (stand-in tokens: the replay accepts any):"
        );
        for (name, value) in sims.env() {
            let _ = writeln!(out, "export {name}={value}");
        }
        let _ = writeln!(out, "# Serving the recording until SIGINT or SIGTERM");
        let _ = out.flush();
        drop(out);
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term])
                .map_err(|e| UsageError(format!("cannot watch signals: {e}")))?;
        let mut told = false;
        loop {
            let signalled = futures_lite::future::or(
                async {
                    futures_lite::StreamExt::next(&mut signals).await;
                    true
                },
                async {
                    async_io::Timer::after(Duration::from_millis(250)).await;
                    false
                },
            )
            .await;
            if signalled {
                break;
            }
            if !told && sims.played_out() {
                told = true;
                super::listen::report(format_args!("the whole recording was served"));
            }
        }
        sims.stop().await;
        Ok(0)
    })
}
