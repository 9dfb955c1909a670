//! `/metrics`: a [`Snapshot`] in the Prometheus text exposition format, version 0.0.4.
//!
//! Every family has its `# HELP` and `# TYPE` lines (also when it has no sample yet, so the set
//! of names does not depend on what happened), counters end in `_total`, label values are
//! escaped (`\\`, `\"`, `\n`), and times are in seconds. The names are listed in the README.
//!
//! A source's status is a state set: one `openflume_source_status` series per known status, 1
//! for the current one and 0 for the others, so `openflume_source_status{status="connected"}
//! == 0` alerts on any source that is not connected, whatever it is doing instead.

use super::ops::Snapshot;
use openflume_proto::Status;
use std::fmt::Write;

/// The `Content-Type` of the answer.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The statuses listed for every source, in this order.
const STATUSES: [Status; 6] = [
    Status::Idle,
    Status::Connecting,
    Status::Connected,
    Status::Reconnecting,
    Status::Disconnected,
    Status::Failed,
];

/// Reads one counter of a source.
type Counter = fn(&crate::SourceMetrics) -> u64;

/// The text of `/metrics`.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition::default();
    out.family(
        "openflume_build_info",
        "gauge",
        "Always 1; the version of the running openflume.",
    );
    out.sample(
        "openflume_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out.family(
        "openflume_uptime_seconds",
        "gauge",
        "Seconds since this serve process started.",
    );
    out.sample_f64(
        "openflume_uptime_seconds",
        &[],
        snapshot.uptime.as_secs_f64(),
    );

    sources(&mut out, snapshot);
    log(&mut out, snapshot);

    out.family(
        "openflume_hub_subscribers",
        "gauge",
        "Hub (/ws) clients connected now.",
    );
    out.sample(
        "openflume_hub_subscribers",
        &[],
        snapshot.subscribers.len() as u64,
    );
    out.family(
        "openflume_hub_subscriber_lag_events",
        "gauge",
        "Ids committed to the log that a hub client has not been sent or passed over yet, by \
         connection number (and consumer name for a durable consumer).",
    );
    for subscriber in &snapshot.subscribers {
        let Some(lag) = subscriber.lag else { continue };
        let connection = subscriber.connection.to_string();
        let mut labels = vec![("connection", connection.as_str())];
        if let Some(consumer) = &subscriber.consumer {
            labels.push(("consumer", consumer.as_str()));
        }
        out.sample("openflume_hub_subscriber_lag_events", &labels, lag);
    }

    out.family(
        "openflume_forward_queue_depth",
        "gauge",
        "Deliveries waiting or retrying for each forward target.",
    );
    for (target, depth) in &snapshot.forward {
        out.sample(
            "openflume_forward_queue_depth",
            &[("target", target.as_str())],
            *depth,
        );
    }
    out.text
}

fn sources(out: &mut Exposition, snapshot: &Snapshot) {
    let sources = &snapshot.metrics.sources;
    out.family(
        "openflume_source_status",
        "gauge",
        "1 for the source's current status, 0 for the others (idle, connecting, connected, \
         reconnecting, disconnected, failed).",
    );
    for source in sources {
        let Some(current) = source.status else {
            continue;
        };
        let name = source.source.as_str();
        state_set(out, "openflume_source_status", &[("source", name)], current);
    }
    out.family(
        "openflume_source_part_status",
        "gauge",
        "For a source with parts (a Discord gateway's shards, part=\"ID/TOTAL\"): 1 for the \
         part's current status, 0 for the others, as openflume_source_status.",
    );
    for (source, parts) in &snapshot.parts {
        for part in parts {
            state_set(
                out,
                "openflume_source_part_status",
                &[("source", source.as_str()), ("part", part.part.as_str())],
                part.status,
            );
        }
    }
    let counters: [(&str, &str, Counter); 4] = [
        (
            "openflume_source_events_total",
            "Events the source delivered into the firehose.",
            |s| s.events,
        ),
        (
            "openflume_source_reconnects_total",
            "Times the source went to reconnecting (a lost connection or a failed attempt).",
            |s| s.reconnects,
        ),
        (
            "openflume_source_drops_total",
            "Items of the source lost before a consumer had them (drop-policy streams, \
             shutdown).",
            |s| s.drops,
        ),
        (
            "openflume_source_rate_limit_waits_total",
            "Times the source waited for a rate limit.",
            |s| s.rate_limit_waits,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        for source in sources {
            out.sample(name, &[("source", source.source.as_str())], value(source));
        }
    }
    out.family(
        "openflume_source_heartbeat_rtt_seconds",
        "gauge",
        "The last heartbeat round trip (Discord), once one was measured.",
    );
    for source in sources {
        if let Some(rtt) = source.heartbeat_rtt {
            out.sample_f64(
                "openflume_source_heartbeat_rtt_seconds",
                &[("source", source.source.as_str())],
                rtt.as_secs_f64(),
            );
        }
    }
}

/// One series per known status under `labels`: 1 for `current`, 0 for the others.
fn state_set(out: &mut Exposition, name: &str, labels: &[(&str, &str)], current: Status) {
    for status in STATUSES {
        let mut labels = labels.to_vec();
        labels.push(("status", status.as_str()));
        out.sample(name, &labels, u64::from(status == current));
    }
    // A status newer than this list still shows as the current one.
    if !STATUSES.contains(&current) {
        let mut labels = labels.to_vec();
        labels.push(("status", current.as_str()));
        out.sample(name, &labels, 1);
    }
}

fn log(out: &mut Exposition, snapshot: &Snapshot) {
    let log = &snapshot.log;
    out.family(
        "openflume_log_last_event_id",
        "gauge",
        "The highest event id committed to the durable log.",
    );
    out.sample("openflume_log_last_event_id", &[], log.last_event_id);
    out.family(
        "openflume_log_items_total",
        "counter",
        "Items this process committed to the log.",
    );
    out.sample("openflume_log_items_total", &[], log.items);
    out.family(
        "openflume_log_commits_total",
        "counter",
        "Transactions (each one fsync) this process committed for appends.",
    );
    out.sample("openflume_log_commits_total", &[], log.commits);
    let name = "openflume_log_append_latency_seconds";
    out.family(
        name,
        "histogram",
        "Time from an append's call to its commit (fsynced), queue wait included.",
    );
    let latency = &log.append_latency;
    for (bound, count) in &latency.buckets {
        let le = bound.as_secs_f64().to_string();
        out.sample(&format!("{name}_bucket"), &[("le", le.as_str())], *count);
    }
    out.sample(&format!("{name}_bucket"), &[("le", "+Inf")], latency.count);
    out.sample_f64(&format!("{name}_sum"), &[], latency.sum.as_secs_f64());
    out.sample(&format!("{name}_count"), &[], latency.count);
}

/// A text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels);
        // Rust prints finite floats in plain decimal, which the format reads; the values here
        // are never infinite or NaN.
        let _ = writeln!(self.text, " {value}");
    }

    fn series(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.text.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
        }
        self.text.push('}');
    }
}

/// A label value as the format quotes it.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ops::{LogFigures, SubscriberReading};
    use crate::{Metrics, SourceMetrics, SourceStatus};
    use openflume_log::LatencyHistogram;
    use std::time::Duration;

    /// A snapshot with one source of each kind, a consumer and a forward target.
    fn snapshot() -> Snapshot {
        let source = |name: &str, status, events, rtt_ms: Option<u64>| SourceMetrics {
            source: name.into(),
            status,
            events,
            reconnects: 1,
            drops: 0,
            rate_limit_waits: 2,
            heartbeat_rtt: rtt_ms.map(Duration::from_millis),
        };
        Snapshot {
            instance_id: "openflume-test".into(),
            uptime: Duration::from_millis(1500),
            statuses: vec![SourceStatus {
                source: "discord".into(),
                status: Status::Connected,
                reason: None,
            }],
            parts: vec![(
                "discord".into(),
                vec![
                    crate::PartStatus {
                        part: "0/2".into(),
                        status: Status::Connected,
                        reason: None,
                    },
                    crate::PartStatus {
                        part: "1/2".into(),
                        status: Status::Reconnecting,
                        reason: Some("zombie".into()),
                    },
                ],
            )],
            metrics: Metrics {
                sources: vec![
                    source("discord", Some(Status::Connected), 12, Some(42)),
                    // A source only items name (the webhook ingress's events): no status.
                    source("slack", None, 3, None),
                ],
            },
            rates: vec![None, None],
            log: LogFigures {
                last_event_id: 40,
                items: 38,
                commits: 20,
                append_latency: LatencyHistogram {
                    buckets: vec![
                        (Duration::from_micros(500), 15),
                        (Duration::from_millis(1), 19),
                    ],
                    count: 20,
                    sum: Duration::from_millis(30),
                },
            },
            subscribers: vec![SubscriberReading {
                connection: 3,
                consumer: Some("tri\"age\\\n".into()),
                peer: None,
                connected: Duration::from_secs(1),
                position: Some(37),
                lag: Some(3),
            }],
            forward: vec![("ci".into(), 4)],
        }
    }

    #[test]
    fn the_exposition_text() {
        insta::assert_snapshot!(render(&snapshot()));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        let text = render(&snapshot());
        assert!(
            text.contains(
                r#"openflume_hub_subscriber_lag_events{connection="3",consumer="tri\"age\\\n"} 3"#
            ),
            "{text}"
        );
    }
}
