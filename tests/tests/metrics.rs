//! `openflume serve`'s `/metrics` through the real binary (issue 17): the text parses as the
//! Prometheus exposition format (every sample `name{labels} value`, a `# HELP` and a `# TYPE`
//! before each family's samples, counters named `_total`, histograms cumulative), and the
//! counters move with what happens: events, log appends, a reconnecting source, a hub
//! client's lag, Discord's heartbeat round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_sim::{DiscordSim, DiscordSimConfig};
use openflume_tests::block_on;
use openflume_tests::serve::Serve;
use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "metrics-test-secret";

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: each family's help and type, and the samples in order.
#[derive(Debug, Default)]
struct Exposition {
    help: HashMap<String, String>,
    kinds: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the one sample `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} is ambiguous: {matching:?}"
        );
        matching.first().map(|s| s.value)
    }
}

/// Parses the text strictly; any line that is not a comment, blank, or `name{labels} value`
/// fails the test, as does a sample before its family's `# TYPE`.
fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("# HELP name text");
            assert!(valid_name(name), "{line}");
            assert!(
                exposition.help.insert(name.into(), help.into()).is_none(),
                "a second HELP: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                exposition.help.contains_key(name),
                "HELP before TYPE: {line}"
            );
            assert!(
                exposition.kinds.insert(name.into(), kind.into()).is_none(),
                "a second TYPE: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "an unknown comment: {line}");
        let sample = parse_sample(line);
        let family = family_of(&sample.name, &exposition.kinds)
            .unwrap_or_else(|| panic!("a sample before its family's TYPE: {line}"));
        if exposition.kinds[&family] == "counter" {
            assert!(
                sample.name.ends_with("_total"),
                "a counter without _total: {line}"
            );
        }
        exposition.samples.push(sample);
    }
    exposition
}

/// `name{label="value",…} value`, with the format's escapes in label values.
fn parse_sample(line: &str) -> Sample {
    // No timestamps here, and values hold no space: the value is after the last one.
    let (series, value_text) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line}"));
    let (name, body) = match series.split_once('{') {
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("labels end with }}: {line}"));
            (name, body)
        }
        None => (series, ""),
    };
    assert!(valid_name(name), "a bad metric name: {line}");
    let mut labels = BTreeMap::new();
    let mut chars = body.chars();
    loop {
        let mut label = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            label.push(c);
        }
        if label.is_empty() {
            break;
        }
        assert!(valid_label(&label), "a bad label name {label:?}: {line}");
        assert_eq!(chars.next(), Some('"'), "a quoted label value: {line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("a bad escape {other:?}: {line}"),
                },
                Some('\n') => panic!("a raw newline: {line}"),
                Some(c) => value.push(c),
                None => panic!("an unterminated label value: {line}"),
            }
        }
        assert!(
            labels.insert(label, value).is_none(),
            "a label twice: {line}"
        );
        match chars.next() {
            Some(',') | None => {}
            Some(other) => panic!("{other:?} after a label value: {line}"),
        }
    }
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse()
            .unwrap_or_else(|_| panic!("a bad value {text:?}: {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label(name: &str) -> bool {
    valid_name(name) && !name.contains(':') && !name.starts_with("__")
}

/// The family a sample belongs to: its own name, or for a histogram's series the name
/// without `_bucket`, `_sum` or `_count`.
fn family_of(sample: &str, kinds: &HashMap<String, String>) -> Option<String> {
    if kinds.contains_key(sample) {
        return Some(sample.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = sample.strip_suffix(suffix)?;
        (kinds.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
    })
}

fn scrape(serve: &Serve) -> Exposition {
    let answer = serve.get("/metrics", &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&answer.body)
}

/// Scrapes until `done` holds, within [`WAIT`]; the last scrape.
fn scrape_until(serve: &Serve, what: &str, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + WAIT;
    loop {
        let exposition = scrape(serve);
        if done(&exposition) {
            return exposition;
        }
        assert!(
            Instant::now() < deadline,
            "never: {what}; last scrape: {exposition:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks the histogram `name`: buckets cumulative and ascending, `+Inf` equal to the count.
fn check_histogram(exposition: &Exposition, name: &str) -> f64 {
    let buckets: Vec<(f64, f64)> = exposition
        .samples
        .iter()
        .filter(|s| s.name == format!("{name}_bucket"))
        .map(|s| (s.labels["le"].parse::<f64>().unwrap(), s.value))
        .collect();
    assert!(buckets.len() > 1, "{name} has buckets");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{buckets:?}"
    );
    let count = exposition.value(&format!("{name}_count"), &[]).unwrap();
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
    assert!(exposition.value(&format!("{name}_sum"), &[]).unwrap() >= 0.0);
    count
}

fn post_deploy(serve: &Serve, n: u32) {
    let body = format!(r#"{{"deploy":{n}}}"#);
    assert_eq!(serve.post_custom("deploys", SECRET, &body), 200);
}

/// Webhooks, a Slack source that cannot connect, and a hub client: every family is well
/// formed, and events, appends, reconnects and the client's lag show up.
#[test]
fn the_exposition_parses_and_its_counters_move() {
    // Slack's API on a port nobody listens on: it keeps reconnecting.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/api", closed.local_addr().unwrap());
    drop(closed);
    let serve = Serve::spawn(
        &[
            "--webhook",
            "deploys=DEPLOY_SECRET",
            "--slack-api-url",
            &dead_url,
            "--reconnect-base-ms",
            "250",
        ],
        &[
            ("DEPLOY_SECRET", SECRET),
            ("SLACK_APP_TOKEN", "xapp-1-test"),
        ],
    );
    post_deploy(&serve, 1);
    post_deploy(&serve, 2);
    let before = scrape(&serve);
    for family in [
        "openflume_source_status",
        "openflume_source_events_total",
        "openflume_source_reconnects_total",
        "openflume_source_drops_total",
        "openflume_source_rate_limit_waits_total",
        "openflume_source_heartbeat_rtt_seconds",
        "openflume_log_append_latency_seconds",
        "openflume_log_last_event_id",
        "openflume_hub_subscribers",
        "openflume_hub_subscriber_lag_events",
        "openflume_forward_queue_depth",
    ] {
        assert!(before.help.contains_key(family), "{family} has HELP");
        assert!(before.kinds.contains_key(family), "{family} has TYPE");
    }
    assert_eq!(
        before.value("openflume_source_events_total", &[("source", "custom")]),
        Some(2.0)
    );
    // A state set: exactly one status is 1 for each source.
    for source in ["slack", "webhooks"] {
        let current: Vec<&Sample> = before
            .samples
            .iter()
            .filter(|s| s.name == "openflume_source_status" && s.labels["source"] == source)
            .filter(|s| s.value == 1.0)
            .collect();
        assert_eq!(current.len(), 1, "{source}: {current:?}");
    }
    let appends_before = check_histogram(&before, "openflume_log_append_latency_seconds");
    assert!(appends_before >= 2.0, "the two posts were appended");
    assert_eq!(before.value("openflume_hub_subscribers", &[]), Some(0.0));

    // A durable consumer that reads nothing after its hello: its lag grows with the log.
    let request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/ws",
        serve.addr
    ))
    .unwrap();
    let stream = TcpStream::connect(serve.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (mut socket, _) = tungstenite::client::client(request, stream).unwrap();
    socket
        .send(Message::text(
            r#"{"type":"hello","consumer":"metrics-test","subscriptions":{"sources":[]}}"#,
        ))
        .unwrap();
    let hello_ok = socket.read().unwrap();
    assert!(
        hello_ok.to_text().unwrap().contains("hello_ok"),
        "{hello_ok}"
    );

    for n in 3..=5 {
        post_deploy(&serve, n);
    }
    let after = scrape_until(&serve, "5 custom events and a reconnecting slack", |e| {
        e.value("openflume_source_events_total", &[("source", "custom")]) == Some(5.0)
            && e.value("openflume_source_reconnects_total", &[("source", "slack")])
                .is_some_and(|n| n >= 1.0)
    });
    let appends_after = check_histogram(&after, "openflume_log_append_latency_seconds");
    assert!(
        appends_after >= appends_before + 3.0,
        "{appends_before} → {appends_after}"
    );
    let last_before = before.value("openflume_log_last_event_id", &[]).unwrap();
    let last_after = after.value("openflume_log_last_event_id", &[]).unwrap();
    assert!(
        last_after >= last_before + 3.0,
        "{last_before} → {last_after}"
    );
    assert!(
        after.value("openflume_log_items_total", &[]).unwrap()
            > before.value("openflume_log_items_total", &[]).unwrap()
    );
    assert_eq!(after.value("openflume_hub_subscribers", &[]), Some(1.0));
    // Subscribed to no source, it is sent nothing but passes over everything: it keeps up.
    let lag = scrape_until(&serve, "the consumer's lag series", |e| {
        e.value(
            "openflume_hub_subscriber_lag_events",
            &[("consumer", "metrics-test")],
        )
        .is_some()
    });
    let lag = lag
        .value(
            "openflume_hub_subscriber_lag_events",
            &[("consumer", "metrics-test")],
        )
        .unwrap();
    assert!(lag >= 0.0);
    socket.close(None).unwrap();
    scrape_until(&serve, "the client gone", |e| {
        e.value("openflume_hub_subscribers", &[]) == Some(0.0)
    });
}

/// Discord's heartbeat round trip, from the simulator's quick heartbeats.
#[test]
fn the_discord_heartbeat_round_trip_is_exported() {
    let config = DiscordSimConfig {
        heartbeat_interval: Duration::from_millis(300),
        ..DiscordSimConfig::default()
    };
    let discord = block_on(
        WAIT,
        "start the Discord simulator",
        DiscordSim::start(config),
    )
    .expect("discord sim");
    let serve = Serve::spawn(
        &[
            "--discord-api-url",
            &discord.api_url(),
            "--discord-gateway-url",
            &discord.gateway_url(),
        ],
        &[("DISCORD_BOT_TOKEN", discord.token())],
    );
    let exposition = scrape_until(&serve, "a heartbeat round trip", |e| {
        e.value(
            "openflume_source_heartbeat_rtt_seconds",
            &[("source", "discord")],
        )
        .is_some()
    });
    let rtt = exposition
        .value(
            "openflume_source_heartbeat_rtt_seconds",
            &[("source", "discord")],
        )
        .unwrap();
    assert!((0.0..WAIT.as_secs_f64()).contains(&rtt), "{rtt}");
    assert_eq!(
        exposition.value(
            "openflume_source_status",
            &[("source", "discord"), ("status", "connected")]
        ),
        Some(1.0)
    );
}
