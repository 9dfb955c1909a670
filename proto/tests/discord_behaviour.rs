//! Behaviour of the Discord machines checked with assertions rather than snapshots: misuse,
//! session hand-over, heartbeat timing, send limits under a flood, zlib-stream re-feeding at every
//! split, identify spacing across shards, and robustness against arbitrary frames.

// Test helpers: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use flate2::{Compress, Compression, FlushCompress};
use openflume_proto::discord::{
    DiscordConfig, DiscordGateway, DiscordGatewayConfig, DiscordShard, ResumeState,
};
use openflume_proto::testing::Simulator;
use openflume_proto::{
    Bytes, ConnId, DeliveryId, Frame, Input, Machine, Millis, Misuse, Now, Output, Status,
    UnixMillis,
};

const TOKEN: &str = "MTIzNDU2.behaviour.token-Xy7";
const RESUME_URL: &str = "wss://gateway-us-east1-b.discord.gg";

fn config() -> DiscordConfig {
    DiscordConfig {
        gateway_url: Some("wss://gateway.discord.gg".into()),
        compress: false,
        os: "linux".into(),
        ..DiscordConfig::new(TOKEN)
    }
}

fn at(ms: u64) -> Now {
    Now {
        mono: Millis(ms),
        wall: UnixMillis(1_764_100_000_000 + ms as i64),
    }
}

/// `machine` under the simulator from time 0, deliveries confirmed by hand.
fn sim<M: Machine>(machine: M) -> Simulator<M> {
    Simulator::new(machine, at(0), false)
}

/// One input at `ms`, then the drain; the timers are the test's to fire.
fn step<M: Machine>(sim: &mut Simulator<M>, ms: u64, input: Input) -> Vec<Output> {
    sim.step_by_hand(Millis(ms), input).expect("no misuse")
}

/// Fires every deadline up to `until`, collecting `(time, output)`.
fn run_timers<M: Machine>(sim: &mut Simulator<M>, until: u64) -> Vec<(u64, Output)> {
    let mut out = Vec::new();
    while let Some(deadline) = sim.machine.poll_timeout() {
        if deadline.0 > until || sim.machine.is_finished() {
            break;
        }
        for output in step(sim, deadline.0, Input::Timer) {
            out.push((deadline.0, output));
        }
    }
    out
}

fn text(conn: u64, json: &str) -> Input {
    Input::Frame {
        conn: ConnId(conn),
        frame: Frame::Text(json.to_owned()),
        arrived: None,
    }
}

const HELLO: &str = r#"{"op":10,"d":{"heartbeat_interval":41250}}"#;

fn ready(s: u64) -> String {
    format!(
        r#"{{"t":"READY","s":{s},"op":0,"d":{{"session_id":"abc123","resume_gateway_url":"{RESUME_URL}","user":{{"id":"1"}}}}}}"#
    )
}

fn sent_texts(outputs: &[Output]) -> Vec<&str> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                frame: Frame::Text(t),
                ..
            } => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// A shard that is READY on connection 1 at t = 400.
fn ready_shard(config: DiscordConfig) -> Simulator<DiscordShard> {
    let mut shard = sim(DiscordShard::new(config, 7).unwrap());
    step(&mut shard, 0, Input::Start);
    step(&mut shard, 100, Input::Opened { conn: ConnId(1) });
    step(&mut shard, 150, text(1, HELLO));
    step(&mut shard, 400, text(1, &ready(1)));
    assert_eq!(shard.machine.status(), Status::Connected);
    shard
}

#[test]
fn misuse_is_an_error_and_nothing_else_is() {
    let mut shard = sim(DiscordShard::new(config(), 1).unwrap());
    assert_eq!(
        shard.step_by_hand(Millis(0), Input::Timer),
        Err(Misuse::NotStarted)
    );
    step(&mut shard, 0, Input::Start);
    assert_eq!(
        shard.step_by_hand(Millis(1), Input::Start),
        Err(Misuse::AlreadyStarted)
    );
    assert_eq!(
        shard.step_by_hand(
            Millis(1),
            Input::Delivered {
                delivery: DeliveryId(3)
            }
        ),
        Err(Misuse::UnknownDelivery(DeliveryId(3)))
    );
    // Remote faults and stale ids are never errors.
    step(&mut shard, 2, text(9, "garbage"));
    step(
        &mut shard,
        3,
        Input::Closed {
            conn: ConnId(9),
            code: Some(4004),
            reason: String::new(),
        },
    );
    assert_eq!(
        shard.machine.status(),
        Status::Connecting,
        "a stale 4004 is ignored"
    );
    step(
        &mut shard,
        4,
        Input::Shutdown {
            keep_session: false,
        },
    );
    assert!(shard.machine.is_finished());
    assert_eq!(shard.machine.poll_timeout(), None);
    assert_eq!(
        shard.step_by_hand(Millis(5), Input::Timer),
        Err(Misuse::Finished)
    );
    assert!(matches!(
        DiscordShard::new(DiscordConfig::new(""), 1),
        Err(Misuse::Config(_))
    ));
}

#[test]
fn keep_session_hands_over_to_the_next_run() {
    let mut shard = ready_shard(config());
    step(
        &mut shard,
        500,
        text(
            1,
            r#"{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{"channel_id":"5"}}"#,
        ),
    );
    let out = step(&mut shard, 600, Input::Shutdown { keep_session: true });
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { code: 4000, .. }))
    );
    step(
        &mut shard,
        650,
        Input::Closed {
            conn: ConnId(1),
            code: Some(4000),
            reason: String::new(),
        },
    );
    assert!(shard.machine.is_finished());
    assert_eq!(shard.machine.status(), Status::Disconnected);
    let state = shard.machine.session().expect("kept");
    assert_eq!(
        state,
        ResumeState {
            session_id: "abc123".into(),
            resume_gateway_url: RESUME_URL.into(),
            seq: 2
        }
    );
    assert!(!format!("{state:?}").contains("abc123"));

    // The next run resumes: straight to the resume URL, RESUME with seq 2.
    let mut next = sim(DiscordShard::new(
        DiscordConfig {
            resume: Some(state),
            ..config()
        },
        8,
    )
    .unwrap());
    let out = step(&mut next, 0, Input::Start);
    assert!(out.iter().any(|o| matches!(o, Output::Connect { url, .. }
        if url == "wss://gateway-us-east1-b.discord.gg/?v=10&encoding=json")));
    step(&mut next, 10, Input::Opened { conn: ConnId(1) });
    let out = step(&mut next, 20, text(1, HELLO));
    assert_eq!(
        sent_texts(&out),
        vec![format!(
            r#"{{"op":6,"d":{{"token":"{TOKEN}","session_id":"abc123","seq":2}}}}"#
        )]
    );
}

#[test]
fn clean_shutdown_ends_the_session() {
    let mut shard = ready_shard(config());
    let out = step(
        &mut shard,
        500,
        Input::Shutdown {
            keep_session: false,
        },
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Close { code: 1000, .. }))
    );
    assert_eq!(shard.machine.session(), None);
    // The server never answers: the close timeout finishes it.
    run_timers(&mut shard, 10_000);
    assert!(shard.machine.is_finished());
    assert_eq!(shard.machine.status(), Status::Disconnected);
}

#[test]
fn heartbeats_jitter_once_then_keep_the_interval_and_report_rtt() {
    for seed in 0..50 {
        let mut shard = sim(DiscordShard::new(config(), seed).unwrap());
        step(&mut shard, 0, Input::Start);
        step(&mut shard, 0, Input::Opened { conn: ConnId(1) });
        step(&mut shard, 0, text(1, HELLO));
        step(&mut shard, 0, text(1, &ready(1)));
        let mut beats = Vec::new();
        let mut now = 0;
        while beats.len() < 3 {
            let deadline = shard.machine.poll_timeout().unwrap().0;
            assert!(deadline < 200_000, "seed {seed}: beats {beats:?}");
            assert!(deadline >= now, "never a deadline in the past");
            now = deadline;
            for out in step(&mut shard, now, Input::Timer) {
                if let Output::Send {
                    frame: Frame::Text(t),
                    ..
                } = out
                    && t.starts_with(r#"{"op":1,"#)
                {
                    beats.push(now);
                }
            }
            if beats.last() == Some(&now) {
                step(&mut shard, now + 30, text(1, r#"{"op":11}"#));
                assert_eq!(shard.machine.heartbeat_rtt(), Some(30));
            }
        }
        assert!(beats[0] < 41_250, "seed {seed}: first beat at {}", beats[0]);
        assert_eq!(beats[1] - beats[0], 41_250);
        assert_eq!(beats[2] - beats[1], 41_250);
    }
}

#[test]
fn early_and_backwards_time_are_harmless() {
    let mut shard = ready_shard(config());
    let next = shard.machine.poll_timeout().unwrap();
    // Early timer: nothing happens.
    assert!(step(&mut shard, next.0 - 1, Input::Timer).is_empty());
    // Time going backwards is clamped: the due heartbeat still fires once.
    let out = step(&mut shard, next.0, Input::Timer);
    assert_eq!(sent_texts(&out), vec![r#"{"op":1,"d":1}"#]);
    assert!(step(&mut shard, 5, Input::Timer).is_empty());
    assert!(shard.machine.poll_timeout().unwrap() > next);
}

#[test]
fn an_op1_flood_never_breaks_120_sends_per_minute() {
    let mut shard = ready_shard(config());
    let mut sends: Vec<u64> = vec![150]; // the IDENTIFY
    let mut now = 400;
    // Five minutes of op 1 every 100 ms, each ACKed, with timers fired in between.
    while now < 300_000 {
        now += 100;
        for (t, out) in run_timers(&mut shard, now) {
            if matches!(out, Output::Send { .. }) {
                sends.push(t);
            }
        }
        for out in step(&mut shard, now, text(1, r#"{"op":1,"d":null}"#)) {
            if matches!(out, Output::Send { .. }) {
                sends.push(now);
            }
        }
        step(&mut shard, now + 1, text(1, r#"{"op":11}"#));
        now += 1;
    }
    assert_eq!(
        shard.machine.status(),
        Status::Connected,
        "no zombie, no close"
    );
    for (i, &start) in sends.iter().enumerate() {
        let in_window = sends[i..]
            .iter()
            .take_while(|&&t| t < start + 60_000)
            .count();
        assert!(
            in_window <= 120,
            "{in_window} sends in the minute from {start}"
        );
    }
    // The limiter is the cap, not a trickle: close to 117 per minute went out.
    assert!(sends.len() > 5 * 110, "{} sends", sends.len());
}

/// Payloads deflated as one zlib-stream with a sync flush after each.
fn zlib_stream(payloads: &[&str]) -> Vec<Vec<u8>> {
    let mut deflate = Compress::new(Compression::default(), true);
    payloads
        .iter()
        .map(|p| {
            let mut out = Vec::with_capacity(p.len() + 256);
            deflate
                .compress_vec(p.as_bytes(), &mut out, FlushCompress::Sync)
                .unwrap();
            assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
            out
        })
        .collect()
}

/// Emitted events and sent frames after feeding `messages` as binary frames.
fn replay_binary(messages: &[Vec<u8>]) -> Vec<String> {
    let mut shard = sim(DiscordShard::new(
        DiscordConfig {
            compress: true,
            ..config()
        },
        7,
    )
    .unwrap());
    step(&mut shard, 0, Input::Start);
    step(&mut shard, 1, Input::Opened { conn: ConnId(1) });
    let mut seen = Vec::new();
    for message in messages {
        for out in step(
            &mut shard,
            2,
            Input::Frame {
                conn: ConnId(1),
                frame: Frame::Binary(Bytes(message.clone())),
                arrived: None,
            },
        ) {
            match out {
                Output::Emit { event, .. } => seen.push(event.data.get().to_owned()),
                Output::Send { frame, .. } => seen.push(format!("{frame:?}")),
                Output::Log(log) if log.action == "inflate.error" => panic!("{}", log.message),
                _ => {}
            }
        }
    }
    seen
}

#[test]
fn zlib_stream_gives_the_same_result_however_it_is_split() {
    let message = r#"{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{"channel_id":"5","content":"hello"}}"#;
    let big = format!(
        r#"{{"t":"GUILD_CREATE","s":3,"op":0,"d":{{"members":"{}"}}}}"#,
        "x".repeat(3000)
    );
    let payloads = [HELLO, &ready(1) as &str, message, &big];
    let wire = zlib_stream(&payloads);
    let whole = replay_binary(&wire);
    assert_eq!(whole.len(), 1 + 3, "IDENTIFY + three events: {whole:?}");

    let stream: Vec<u8> = wire.concat();
    // Each payload split in two at every position.
    for split in 1..wire[1].len() {
        let mut messages = wire.clone();
        let second = messages[1].split_off(split);
        messages.insert(2, second);
        assert_eq!(replay_binary(&messages), whole, "READY split at {split}");
    }
    // One byte per frame.
    let bytes: Vec<Vec<u8>> = stream.iter().map(|&b| vec![b]).collect();
    assert_eq!(replay_binary(&bytes), whole);
}

#[test]
fn arbitrary_frames_never_panic() {
    let mut rng = fastrand::Rng::with_seed(42);
    let pieces = [
        "{",
        "}",
        "\"op\"",
        ":",
        "0",
        "1",
        "7",
        "9",
        "10",
        "11",
        "\"d\"",
        "\"t\"",
        "\"s\"",
        "null",
        "true",
        "[",
        "]",
        ",",
        "\"READY\"",
        "\"RESUMED\"",
        "{\"heartbeat_interval\":0}",
        "-1",
        "1e999",
        "\"\\u0000\"",
    ];
    for compress in [false, true] {
        let mut shard = ready_shard(DiscordConfig {
            compress,
            ..config()
        });
        let mut live = ConnId(1);
        for i in 0..3000u64 {
            let frame = if rng.bool() {
                let n = rng.usize(0..12);
                Frame::Text((0..n).map(|_| pieces[rng.usize(..pieces.len())]).collect())
            } else {
                let n = rng.usize(0..64);
                let mut bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                if rng.bool() {
                    bytes.extend_from_slice(&[0, 0, 0xff, 0xff]);
                }
                Frame::Binary(Bytes(bytes))
            };
            let now = 1_000 + i * 100;
            let mut outputs = step(
                &mut shard,
                now,
                Input::Frame {
                    conn: live,
                    frame,
                    arrived: None,
                },
            );
            outputs.extend(run_timers(&mut shard, now).into_iter().map(|(_, o)| o));
            for output in outputs {
                if let Output::Connect { conn, .. } = output {
                    live = conn;
                    step(&mut shard, now, Input::Opened { conn });
                }
            }
        }
        assert!(!shard.machine.is_finished(), "garbage is never fatal");
        assert!(
            live.0 > 1,
            "the garbage should have forced reconnects (compress {compress})"
        );
    }
}

#[test]
fn shards_of_one_gateway_share_identify_spacing() {
    let mut gateway = sim(DiscordGateway::new(
        DiscordGatewayConfig {
            // Two shards never get READY: a READY timeout within the 30 s run would add
            // reconnects this test does not count.
            shard: DiscordConfig {
                ready_timeout_ms: 60_000,
                ..config()
            },
            shard_count: Some(3),
            ..DiscordGatewayConfig::default()
        },
        7,
    )
    .unwrap());
    let out = step(&mut gateway, 0, Input::Start);
    let conns: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Connect { conn, .. } => Some(conn.0),
            _ => None,
        })
        .collect();
    assert_eq!(conns, vec![1, 2, 3]);
    let mut identifies = Vec::new();
    for conn in [3, 1, 2] {
        step(&mut gateway, 10, Input::Opened { conn: ConnId(conn) });
        for o in step(&mut gateway, 20, text(conn, HELLO)) {
            if let Output::Send {
                conn,
                frame: Frame::Text(t),
            } = o
                && t.contains(r#""op":2"#)
            {
                identifies.push((20, conn.0));
            }
        }
    }
    for (t, o) in run_timers(&mut gateway, 20_000) {
        if let Output::Send {
            conn,
            frame: Frame::Text(t2),
        } = o
            && t2.contains(r#""op":2"#)
        {
            identifies.push((t, conn.0));
        }
    }
    // The first HELLO (shard 2) identifies at once; the others wait their turn, 5 s apart.
    assert_eq!(identifies, vec![(20, 3), (5_020, 1), (10_020, 2)]);
    assert_eq!(gateway.machine.shards().len(), 3);

    // Reconnects keep ids unique: shard 1 loses its connection and gets id 2 + 3 = 5.
    step(&mut gateway, 20_100, text(2, &ready(1)));
    let out = step(
        &mut gateway,
        20_200,
        Input::Closed {
            conn: ConnId(2),
            code: None,
            reason: String::new(),
        },
    );
    assert!(out.iter().all(|o| !matches!(o, Output::Connect { .. })));
    let reconnect: Vec<u64> = run_timers(&mut gateway, 30_000)
        .into_iter()
        .filter_map(|(_, o)| match o {
            Output::Connect { conn, .. } => Some(conn.0),
            _ => None,
        })
        .collect();
    assert_eq!(reconnect, vec![5]);
    assert_eq!(
        gateway
            .machine
            .sessions()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![1]
    );
}
