//! TLS end to end: the drivers' `https://` and `wss://` paths against the simulators behind a
//! local TLS-terminating proxy whose certificate comes from a CA made at test time. A flume that
//! trusts that CA (`FlumeBuilder::add_root_certificate`) connects; one that does not fails with a
//! readable certificate error, without panicking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, FlumeBuilder, Running, Source, StartError, TlsError};
use openflume_proto::discord::{DiscordConfig, DiscordShard};
use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
use openflume_proto::{Item, Level, ReconnectPolicy};
use openflume_sim::{DiscordAction, DiscordSim, DiscordSimConfig, GithubSim, GithubSimConfig};
use openflume_tests::tls::{Pki, TlsRelay};
use openflume_tests::{Collector, block_on, events_of};
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(10);

fn builder(on_item: impl FnMut(&Item) + Send + 'static) -> FlumeBuilder {
    Flume::builder()
        .on_item(on_item)
        .start_timeout(Some(WAIT))
        .shutdown_grace(Duration::from_secs(3))
}

fn open(builder: FlumeBuilder) -> Result<Running, StartError> {
    block_on(
        WAIT + Duration::from_secs(1),
        "open",
        builder.build().open(),
    )
}

fn close(running: &Running, items: &mut Collector) {
    block_on(WAIT, "close", running.close());
    items.drain_to_end(WAIT);
}

fn start_github() -> GithubSim {
    let config = GithubSimConfig {
        poll_interval: 1,
        initial_notifications: 2,
        ..GithubSimConfig::default()
    };
    block_on(WAIT, "start the GitHub simulator", GithubSim::start(config)).unwrap()
}

fn github_source(sim: &GithubSim, api_url: String, reconnect: ReconnectPolicy) -> Source {
    let config = GithubConfig {
        api_url,
        interval_ms: 1000,
        bootstrap: Bootstrap::Emit,
        reconnect,
        ..GithubConfig::new(sim.token())
    };
    Source::custom("github", move |seed| GithubMachine::new(config, seed))
}

fn start_discord() -> DiscordSim {
    let config = DiscordSimConfig {
        heartbeat_interval: Duration::from_secs(5),
        identify_spacing: Duration::ZERO,
        ..DiscordSimConfig::default()
    };
    block_on(
        WAIT,
        "start the Discord simulator",
        DiscordSim::start(config),
    )
    .unwrap()
}

#[test]
fn github_over_https_with_a_trusted_root() {
    let pki = Pki::new();
    let sim = start_github();
    let proxy = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let (mut items, on_item) = Collector::callback(&[sim.token()]);
    let source = github_source(&sim, proxy.url("https"), ReconnectPolicy::default());
    let running = open(
        builder(on_item)
            .add_root_certificate(pki.ca_der)
            .unwrap()
            .source(source),
    )
    .expect("opens over TLS");
    items.wait(WAIT, "the bootstrap notifications over TLS", |items| {
        let n = events_of(items, "github")
            .iter()
            .filter(|e| e.event_type == "notification")
            .count();
        (n == 2).then_some(())
    });
    let id = sim.add_notification();
    items.wait(WAIT, "a new notification over TLS", |items| {
        events_of(items, "github")
            .iter()
            .any(|e| e.event_type == "notification" && e.meta["thread_id"] == id)
            .then_some(())
    });
    close(&running, &mut items);
}

#[test]
fn discord_over_wss_with_a_trusted_root() {
    let pki = Pki::new();
    let sim = start_discord();
    let proxy = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let (mut items, on_item) = Collector::callback(&[sim.token()]);
    let config = DiscordConfig {
        api_base: sim.api_url(),
        gateway_url: Some(format!("{}/", proxy.url("wss"))),
        compress: true,
        ..DiscordConfig::new(sim.token())
    };
    let source = Source::custom("discord", move |seed| DiscordShard::new(config, seed));
    let running = open(
        builder(on_item)
            .add_root_certificate(pki.ca_der)
            .unwrap()
            .source(source),
    )
    .expect("opens over TLS");
    items.wait(WAIT, "READY over wss", |items| {
        events_of(items, "discord")
            .iter()
            .any(|e| e.event_type == "READY")
            .then_some(())
    });
    assert_eq!(sim.inject(DiscordAction::Messages(1)), 1);
    items.wait(WAIT, "a MESSAGE_CREATE over wss", |items| {
        events_of(items, "discord")
            .iter()
            .any(|e| e.event_type == "MESSAGE_CREATE")
            .then_some(())
    });
    close(&running, &mut items);
}

#[test]
fn an_untrusted_certificate_fails_with_a_readable_error() {
    let pki = Pki::new();
    let sim = start_github();
    let proxy = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let (mut items, on_item) = Collector::callback(&[sim.token()]);
    // One retry: the machine logs each failed attempt's error (`poll.retry`), then gives up.
    let one_retry = ReconnectPolicy {
        max_attempts: Some(1),
        base_ms: 50,
        max_ms: 100,
    };
    let source = github_source(&sim, proxy.url("https"), one_retry);
    let error = open(builder(on_item).source(source)).expect_err("does not open");
    assert_eq!(error.failures.len(), 1, "{error}");
    assert_eq!(error.failures[0].source, "github");
    // The start error itself names the cause.
    assert!(
        error.failures[0].reason.contains("UnknownIssuer"),
        "{error}"
    );
    items.drain_to_end(WAIT);
    let tls_error = items.items.iter().find_map(|item| match item {
        Item::Log(log) if log.level >= Level::Warn => log.error.clone(),
        _ => None,
    });
    let tls_error = tls_error.unwrap_or_else(|| panic!("no error logged:\n{}", items.dump()));
    assert!(
        tls_error.contains("TLS handshake with localhost")
            && tls_error.contains("certificate")
            && tls_error.contains("UnknownIssuer"),
        "unreadable TLS error: {tls_error}"
    );
    assert!(sim.records().requests.is_empty(), "a request got through");
}

#[test]
fn invalid_der_is_refused_by_the_builder() {
    let refused = Flume::builder().add_root_certificate(b"not a certificate".to_vec());
    let Err(TlsError::InvalidRootCertificate { reason }) = refused else {
        panic!("garbage accepted as a root");
    };
    assert!(!reason.is_empty());
}
