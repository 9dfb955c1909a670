//! The Slack simulator against a plain client.

use super::*;
use crate::testkit::{Ws, http, json, next_json, next_message, send_json, ws_connect};
use async_tungstenite::tungstenite::{Bytes as WsBytes, Message};
use futures_lite::StreamExt;
use openflume_proto::HttpRequest;
use serde_json::{Value, json};

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
fn thread_replies_share_one_conversation() {
    smol::block_on(async {
        let sim = start(SlackSimConfig::default()).await;
        let (mut ws, _) = connect(&sim).await;
        let thread_ts = "1764100001.000100";
        let reached = sim.inject(SlackAction::ThreadReplies {
            channel: "C0SIMTHR01".to_owned(),
            thread_ts: thread_ts.to_owned(),
            count: 3,
        });
        assert_eq!(reached, 1);
        let mut event_ids = Vec::new();
        for _ in 0..3 {
            let envelope = next_json(&mut ws).await;
            assert_eq!(envelope["type"], "events_api");
            let event = &envelope["payload"]["event"];
            assert_eq!(
                (event["type"].as_str(), event["channel"].as_str()),
                (Some("message"), Some("C0SIMTHR01"))
            );
            assert_eq!(event["thread_ts"], thread_ts);
            assert!(event["ts"].is_string());
            // What openflume makes of it: the thread's key, the same for every reply.
            assert_eq!(
                openflume_proto::slack::conversation_key(
                    "events_api",
                    &envelope["payload"].to_string()
                )
                .as_deref(),
                Some("slack:v1:T0SIMTEAM1:C0SIMTHR01:1764100001.000100")
            );
            event_ids.push(envelope["payload"]["event_id"].as_str().unwrap().to_owned());
            ack(&mut ws, &envelope).await;
        }
        event_ids.dedup();
        assert_eq!(event_ids.len(), 3, "each reply is an event of its own");
        // A plain message is top-level: no thread_ts, its own ts starts a conversation.
        sim.inject(SlackAction::Messages(1));
        let top = next_json(&mut ws).await;
        assert!(top["payload"]["event"].get("thread_ts").is_none());
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
        sim.inject(SlackAction::Fault(SocketFault::GarbageText));
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
        let quiet = futures_lite::future::or(async { ws.next().await.map(|m| m.is_ok()) }, async {
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
