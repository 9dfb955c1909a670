//! The Discord simulator against a plain client.

use super::*;
use crate::testkit::{http, json, next_json, next_message, send_json, within, ws_connect};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use openflume_proto::HttpRequest;
use serde_json::{Value, json};

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
            HttpRequest::new("GET", &url).header("Authorization", format!("Bot {}", sim.token())),
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
            let refused = http(HttpRequest::new("GET", &url).header("Authorization", auth)).await;
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
fn zstd_stream_messages_are_one_payload_each() {
    smol::block_on(async {
        let sim = start(DiscordSimConfig::default()).await;
        let mut ws = ws_connect(&format!(
            "{}/?v=10&encoding=json&compress=zstd-stream",
            sim.gateway_url()
        ))
        .await;
        let mut decoder = openflume_proto::discord::ZstdStream::new(1 << 20).unwrap();
        let mut next = async |ws: &mut crate::testkit::Ws| -> Value {
            let Some(Message::Binary(bytes)) = next_message(ws).await else {
                panic!("expected a binary frame")
            };
            serde_json::from_slice(&decoder.push(&bytes).unwrap()).unwrap()
        };
        assert_eq!(next(&mut ws).await["op"], 10);
        send_json(&mut ws, identify(sim.token())).await;
        assert_eq!(next(&mut ws).await["t"], "READY");
        assert_eq!(next(&mut ws).await["t"], "GUILD_CREATE");
        sim.inject(DiscordAction::Messages(2));
        for seq in [3, 4] {
            assert_eq!(next(&mut ws).await["s"], seq);
        }
        assert_eq!(
            sim.records()
                .connections
                .last()
                .unwrap()
                .compress
                .as_deref(),
            Some("zstd-stream")
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
        sim.inject(DiscordAction::Fault(SocketFault::GarbageText));
        assert!(
            matches!(next_message(&mut ws).await, Some(Message::Text(t)) if serde_json::from_str::<Value>(t.as_str()).is_err())
        );
        sim.inject(DiscordAction::Fault(SocketFault::Oversized {
            bytes: 100_000,
        }));
        let Some(Message::Text(big)) = next_message(&mut ws).await else {
            panic!("expected text")
        };
        assert_eq!(big.len(), 100_000);
        sim.inject(DiscordAction::Fault(SocketFault::Close {
            code: 4009,
            reason: "Session timed out.".into(),
        }));
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
