//! `serve`'s status page: `/` (HTML), `/status.js` (its script) and `/status.json` (what the
//! script polls), all from the binary. No external resource, and a Content-Security-Policy
//! that allows none: the page is for an operator's browser on the same host or behind the
//! same token as the hub.
//!
//! The page polls `/status.json` every two seconds (statuses, rates, subscribers, forward
//! targets) and follows the hub at `/ws` for the last items, live: it says hello after the
//! log's last id minus a backlog, and after the last id it saw when it reconnects. A browser
//! cannot put a bearer token on a WebSocket, so with a token the page (opened as
//! `/#token=…`: a fragment never leaves the browser) offers it as a WebSocket subprotocol
//! (see [`hub_client::token_from_protocols`](super::hub_client::token_from_protocols)) and
//! sends it as `Authorization` to `/status.json`.
//!
//! Item text is put in the page with `textContent` only: event payloads come from outside.

use super::ops::Snapshot;
use serde_json::json;

/// The page.
pub(crate) const HTML: &str = include_str!("status/page.html");
/// Its script.
pub(crate) const SCRIPT: &str = include_str!("status/page.js");

/// The policy sent with the page: its own script and `/status.json`/`/ws` on the same origin,
/// inline styles, nothing else.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The body of `/status.json`.
pub(crate) fn status_json(snapshot: &Snapshot) -> String {
    let sources: Vec<serde_json::Value> = snapshot
        .metrics
        .sources
        .iter()
        .zip(
            snapshot
                .rates
                .iter()
                .copied()
                .chain(std::iter::repeat(None)),
        )
        .map(|(source, rate)| {
            let reason = snapshot
                .statuses
                .iter()
                .find(|s| s.source == source.source)
                .and_then(|s| s.reason.clone());
            json!({
                "source": source.source,
                "status": source.status.map(|s| s.as_str()),
                "reason": reason,
                "events_total": source.events,
                "events_per_second": rate,
                "reconnects_total": source.reconnects,
                "drops_total": source.drops,
                "rate_limit_waits_total": source.rate_limit_waits,
                "heartbeat_rtt_seconds": source.heartbeat_rtt.map(|d| d.as_secs_f64()),
                "parts": snapshot
                    .parts
                    .iter()
                    .find(|(name, _)| *name == source.source)
                    .map(|(_, parts)| parts),
            })
        })
        .collect();
    let subscribers: Vec<serde_json::Value> = snapshot
        .subscribers
        .iter()
        .map(|s| {
            json!({
                "connection": s.connection,
                "consumer": s.consumer,
                "peer": s.peer.map(|p| p.to_string()),
                "connected_seconds": s.connected.as_secs(),
                "position": s.position,
                "lag_events": s.lag,
            })
        })
        .collect();
    let forward: Vec<serde_json::Value> = snapshot
        .forward
        .iter()
        .map(|(target, depth)| json!({ "target": target, "queue_depth": depth }))
        .collect();
    let log = &snapshot.log;
    let latency = &log.append_latency;
    json!({
        "instance_id": snapshot.instance_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": snapshot.uptime.as_secs(),
        "log": {
            "last_event_id": log.last_event_id,
            "items_total": log.items,
            "append_latency_seconds": {
                "count": latency.count,
                "sum": latency.sum.as_secs_f64(),
            },
        },
        "sources": sources,
        "subscribers": subscribers,
        "forward_targets": forward,
    })
    .to_string()
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ops::SubscriberReading;
    use crate::{Metrics, SourceMetrics, SourceStatus};
    use openflume_proto::Status;
    use std::time::Duration;

    #[test]
    fn status_json_joins_statuses_rates_and_counters() {
        let snapshot = Snapshot {
            statuses: vec![SourceStatus {
                source: "slack".into(),
                status: Status::Reconnecting,
                reason: Some("HTTP 502".into()),
            }],
            metrics: Metrics {
                sources: vec![SourceMetrics {
                    source: "slack".into(),
                    status: Some(Status::Reconnecting),
                    events: 9,
                    reconnects: 2,
                    drops: 0,
                    rate_limit_waits: 1,
                    heartbeat_rtt: None,
                }],
            },
            rates: vec![Some(0.5)],
            subscribers: vec![SubscriberReading {
                connection: 1,
                consumer: None,
                peer: None,
                connected: Duration::from_secs(4),
                position: None,
                lag: None,
            }],
            forward: vec![("ci".into(), 2)],
            ..Snapshot::default()
        };
        let value: serde_json::Value = serde_json::from_str(&status_json(&snapshot)).unwrap();
        let slack = &value["sources"][0];
        assert_eq!(
            slack["parts"],
            serde_json::Value::Null,
            "slack has no parts"
        );
        assert_eq!(slack["status"], "reconnecting");
        assert_eq!(slack["reason"], "HTTP 502");
        assert_eq!(slack["events_per_second"], 0.5);
        assert_eq!(slack["reconnects_total"], 2);
        assert_eq!(
            value["subscribers"][0]["lag_events"],
            serde_json::Value::Null
        );
        assert_eq!(value["forward_targets"][0]["queue_depth"], 2);
    }

    /// The page loads nothing from elsewhere, and puts item text in with `textContent` only.
    #[test]
    fn the_page_is_self_contained() {
        for asset in [HTML, SCRIPT] {
            assert!(!asset.contains("http://") && !asset.contains("https://"));
            assert!(!asset.contains("innerHTML") && !asset.contains("outerHTML"));
            assert!(!asset.contains("eval("));
        }
        assert!(HTML.contains(r#"<script src="/status.js""#));
    }
}
