//! Behaviour of the Slack machine asserted directly, input by input.

// Test helpers panic to fail the test; clippy's in-test allowance covers only #[test] fns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::slack::{
    DEDUP_TTL_MS, DRAIN_TIMEOUT_MS, FATAL_ERRORS, SlackConfig, SlackMachine,
};
use openflume_proto::testing::Simulator;
use openflume_proto::{
    ConnId, DeliveryId, Frame, HttpResponse, Input, Machine, Millis, Misuse, Now, Output, ReqId,
    Status, UnixMillis,
};

const APP_TOKEN: &str = "xapp-1-A0TEST-1-DISTINCTIVEAPPTOKEN";
const BOT_TOKEN: &str = "xoxb-1-DISTINCTIVEBOTTOKEN";

struct Harness {
    sim: Simulator<SlackMachine>,
}

impl Harness {
    fn new(config: SlackConfig) -> Harness {
        let start = Now {
            mono: Millis(0),
            wall: UnixMillis(1_764_100_000_000),
        };
        // Deliveries are confirmed by hand, as the tests decide.
        let machine = SlackMachine::new(config, 1).unwrap();
        Harness {
            sim: Simulator::new(machine, start, false),
        }
    }

    fn started(config: SlackConfig) -> (Harness, Vec<Output>) {
        let mut h = Harness::new(config);
        let out = h.feed(0, Input::Start);
        (h, out)
    }

    fn try_feed(&mut self, at: u64, input: Input) -> Result<Vec<Output>, Misuse> {
        // Timers fire only when a test feeds `Input::Timer` itself.
        let out = self.sim.step_by_hand(Millis(at), input)?;
        for output in &out {
            let debug = format!("{output:?}");
            assert!(!debug.contains("DISTINCTIVE"), "token in {debug}");
        }
        Ok(out)
    }

    fn feed(&mut self, at: u64, input: Input) -> Vec<Output> {
        self.try_feed(at, input).unwrap()
    }

    fn text(&mut self, at: u64, conn: u64, text: &str) -> Vec<Output> {
        self.feed(
            at,
            Input::Frame {
                conn: ConnId(conn),
                frame: Frame::Text(text.to_owned()),
                arrived: None,
            },
        )
    }

    fn url(&mut self, at: u64, req: u64, ticket: &str) -> Vec<Output> {
        let body = format!(
            r#"{{"ok":true,"url":"wss://wss-primary.slack.com/link/?ticket={ticket}&app_id=A1"}}"#
        );
        self.feed(at, response(req, 200, &body))
    }

    /// URL for `req`, open and hello as `conn`.
    fn connect(&mut self, at: u64, req: u64, conn: u64) {
        self.url(at, req, &format!("t{conn}"));
        self.feed(at, Input::Opened { conn: ConnId(conn) });
        self.text(at, conn, r#"{"type":"hello","num_connections":1}"#);
    }
}

fn response(req: u64, status: u16, body: &str) -> Input {
    Input::Response {
        req: ReqId(req),
        response: HttpResponse {
            status,
            headers: vec![],
            body: body.into(),
        },
    }
}

fn envelope(envelope_id: &str, event_id: &str) -> String {
    format!(
        r#"{{"envelope_id":"{envelope_id}","type":"events_api","payload":{{"event_id":"{event_id}","event":{{"type":"message"}}}}}}"#
    )
}

fn requests(out: &[Output]) -> Vec<(ReqId, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Request { req, request } => Some((*req, request.url.clone())),
            _ => None,
        })
        .collect()
}

fn emits(out: &[Output]) -> Vec<DeliveryId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Emit { confirm, .. } => *confirm,
            _ => None,
        })
        .collect()
}

fn sends(out: &[Output]) -> Vec<(ConnId, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                conn,
                frame: Frame::Text(text),
            } => Some((*conn, text.clone())),
            _ => None,
        })
        .collect()
}

fn closes(out: &[Output]) -> Vec<ConnId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Close { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

fn failed_reason(out: &[Output]) -> Option<String> {
    out.iter().find_map(|o| match o {
        Output::Status(change) if change.to == Status::Failed => change.reason.clone(),
        _ => None,
    })
}

#[test]
fn misuse_is_an_error_and_nothing_else_is() {
    let err = SlackMachine::new(SlackConfig::new("xoxb-1-DISTINCTIVE"), 0).err();
    assert!(matches!(&err, Some(Misuse::Config(msg)) if !msg.to_string().contains("DISTINCTIVE")));

    let mut h = Harness::new(SlackConfig::new(APP_TOKEN));
    assert_eq!(h.try_feed(0, Input::Timer), Err(Misuse::NotStarted));
    h.feed(0, Input::Start);
    assert_eq!(h.try_feed(1, Input::Start), Err(Misuse::AlreadyStarted));
    assert_eq!(
        h.try_feed(
            2,
            Input::Delivered {
                delivery: DeliveryId(1)
            }
        ),
        Err(Misuse::UnknownDelivery(DeliveryId(1)))
    );
    // Remote nonsense is never an error.
    for input in [
        response(77, 500, ""),
        Input::Closed {
            conn: ConnId(5),
            code: None,
            reason: String::new(),
        },
        Input::Frame {
            conn: ConnId(5),
            frame: Frame::Binary(vec![0xff].into()),
            arrived: None,
        },
    ] {
        assert!(h.try_feed(3, input).is_ok());
    }
    h.feed(4, Input::Shutdown { keep_session: true });
    assert!(h.sim.machine.is_finished());
    assert_eq!(h.sim.machine.status(), Status::Disconnected);
    assert_eq!(h.sim.machine.poll_timeout(), None);
    assert_eq!(h.try_feed(5, Input::Timer), Err(Misuse::Finished));
}

#[test]
fn every_fatal_code_fails_the_source_for_both_calls() {
    for code in FATAL_ERRORS {
        let body = format!(r#"{{"ok":false,"error":"{code}"}}"#);

        let (mut h, out) = Harness::started(SlackConfig::new(APP_TOKEN));
        assert_eq!(requests(&out).len(), 1);
        let out = h.feed(10, response(1, 200, &body));
        let reason = failed_reason(&out).unwrap_or_else(|| panic!("{code}: not failed"));
        assert!(
            reason.contains(code) && reason.contains("app-level token"),
            "{reason}"
        );
        assert!(requests(&out).is_empty());
        assert!(h.sim.machine.is_finished());

        let config = SlackConfig::new(APP_TOKEN).with_bot_token(BOT_TOKEN);
        let (mut h, out) = Harness::started(config);
        assert!(requests(&out)[0].1.ends_with("/auth.test"));
        let out = h.feed(10, response(1, 200, &body));
        let reason = failed_reason(&out).unwrap_or_else(|| panic!("{code}: not failed"));
        assert!(
            reason.contains(code) && reason.contains("bot token"),
            "{reason}"
        );
        assert!(
            requests(&out).is_empty(),
            "no connection after a bad bot token"
        );
        assert_eq!(h.sim.machine.status(), Status::Failed);
    }
}

#[test]
fn ack_waits_for_delivery_and_uses_the_receiving_connection() {
    let config = SlackConfig {
        connections: 2,
        ..SlackConfig::new(APP_TOKEN)
    };
    let (mut h, out) = Harness::started(config);
    assert_eq!(requests(&out).len(), 2);
    h.connect(10, 1, 1);
    h.connect(20, 2, 2);

    let out = h.text(100, 2, &envelope("env-1", "Ev1"));
    let deliveries = emits(&out);
    assert_eq!(deliveries.len(), 1);
    assert!(sends(&out).is_empty(), "no ack before delivery");

    // The same event on the other connection before the consumers hold it: not emitted, and
    // not acked either until the original is confirmed.
    let out = h.text(110, 1, &envelope("env-1b", "Ev1"));
    assert!(emits(&out).is_empty());
    assert!(sends(&out).is_empty(), "no ack for a copy before delivery");

    let out = h.feed(
        120,
        Input::Delivered {
            delivery: deliveries[0],
        },
    );
    assert_eq!(
        sends(&out),
        vec![
            (ConnId(2), r#"{"envelope_id":"env-1"}"#.to_owned()),
            (ConnId(1), r#"{"envelope_id":"env-1b"}"#.to_owned())
        ]
    );
    // Confirming twice sends nothing more.
    let out = h.feed(
        130,
        Input::Delivered {
            delivery: deliveries[0],
        },
    );
    assert!(sends(&out).is_empty());
}

#[test]
fn rotation_keeps_receiving_until_the_replacement_said_hello() {
    let (mut h, _) = Harness::started(SlackConfig::new(APP_TOKEN));
    h.connect(10, 1, 1);
    assert_eq!(h.sim.machine.status(), Status::Connected);

    let out = h.text(1000, 1, r#"{"type":"disconnect","reason":"warning"}"#);
    let fresh = requests(&out);
    assert_eq!(
        fresh.len(),
        1,
        "a fresh apps.connections.open for the replacement"
    );
    assert!(closes(&out).is_empty());

    // Between the warning and the replacement's hello the old connection stays and serves.
    let overlap = [
        h.url(1100, 2, "t2"),
        h.feed(1200, Input::Opened { conn: ConnId(2) }),
        h.text(1300, 1, &envelope("env-2", "Ev2")),
    ];
    assert_eq!(
        emits(&overlap[2]).len(),
        1,
        "the old connection still delivers"
    );
    for out in &overlap {
        assert!(closes(out).is_empty(), "old connection closed too early");
        assert!(
            !out.iter().any(|o| matches!(o, Output::Status(_))),
            "status changed during the overlap"
        );
    }
    assert_eq!(h.sim.machine.status(), Status::Connected);
    let out = h.text(1400, 2, r#"{"type":"hello"}"#);
    assert!(closes(&out).is_empty(), "the old connection drains");
    assert_eq!(h.sim.machine.status(), Status::Connected);
    // The new one carries envelopes, and so does the old one until Slack closes it: acked on it.
    assert_eq!(emits(&h.text(1500, 2, &envelope("env-3", "Ev3"))).len(), 1);
    let out = h.text(1600, 1, &envelope("env-4", "Ev4"));
    let delivery = emits(&out)[0];
    let out = h.feed(1700, Input::Delivered { delivery });
    assert_eq!(
        sends(&out),
        vec![(ConnId(1), r#"{"envelope_id":"env-4"}"#.to_owned())]
    );
    // Slack closes it: nothing to close, no timer left for it, its frames are stale from now on.
    let out = h.feed(
        5000,
        Input::Closed {
            conn: ConnId(1),
            code: Some(1000),
            reason: String::new(),
        },
    );
    assert!(closes(&out).is_empty());
    assert_eq!(h.sim.machine.status(), Status::Connected);
    let out = h.feed(1400 + DRAIN_TIMEOUT_MS, Input::Timer);
    assert!(closes(&out).is_empty());
    assert!(emits(&h.text(11_500, 1, &envelope("env-5", "Ev5"))).is_empty());
}

#[test]
fn a_replaced_connection_slack_keeps_open_is_closed_after_the_drain_timeout() {
    let (mut h, _) = Harness::started(SlackConfig::new(APP_TOKEN));
    h.connect(10, 1, 1);
    h.text(
        1000,
        1,
        r#"{"type":"disconnect","reason":"refresh_requested"}"#,
    );
    h.connect(1100, 2, 2);
    assert!(closes(&h.feed(1100 + DRAIN_TIMEOUT_MS - 1, Input::Timer)).is_empty());
    let out = h.feed(1100 + DRAIN_TIMEOUT_MS, Input::Timer);
    assert_eq!(closes(&out), vec![ConnId(1)]);
    // In flight when we closed: emitted (not lost), but no ack may follow our close frame.
    let out = h.text(11_200, 1, &envelope("env-1", "Ev1"));
    let delivery = emits(&out)[0];
    let out = h.feed(11_200, Input::Delivered { delivery });
    assert!(sends(&out).is_empty());
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Log(log) if log.action == "ack.orphaned"))
    );
    // Its redelivery on the new connection is acked there and not emitted again.
    let out = h.text(11_300, 2, &envelope("env-1b", "Ev1"));
    assert!(emits(&out).is_empty());
    assert_eq!(
        sends(&out),
        vec![(ConnId(2), r#"{"envelope_id":"env-1b"}"#.to_owned())]
    );
    // The transport's close report is expected and changes nothing.
    let out = h.feed(
        11_400,
        Input::Closed {
            conn: ConnId(1),
            code: Some(1000),
            reason: String::new(),
        },
    );
    assert!(out.iter().all(|o| matches!(o, Output::Log(_))));
    assert_eq!(h.sim.machine.status(), Status::Connected);
}

#[test]
fn every_connection_gets_its_own_fresh_url() {
    let config = SlackConfig {
        connections: 10,
        ..SlackConfig::new(APP_TOKEN)
    };
    let (mut h, out) = Harness::started(config);
    let reqs = requests(&out);
    assert_eq!(reqs.len(), 10);
    let mut urls = Vec::new();
    for (i, (req, _)) in reqs.iter().enumerate() {
        let out = h.url(10, req.0, &format!("ticket{i}"));
        for o in out {
            if let Output::Connect { url, .. } = o {
                urls.push(url);
            }
        }
    }
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 10);
    // Nothing more is requested while all ten are connecting.
    assert!(requests(&h.feed(20, Input::Timer)).is_empty());
}

#[test]
fn duplicates_are_remembered_for_the_whole_ttl() {
    let config = SlackConfig {
        // Long enough that liveness never interferes over 16 minutes of silence.
        ping_interval_ms: 3_600_000,
        ..SlackConfig::new(APP_TOKEN)
    };
    let (mut h, _) = Harness::started(config);
    h.connect(10, 1, 1);
    assert_eq!(emits(&h.text(100, 1, &envelope("e1", "Ev1"))).len(), 1);
    const { assert!(DEDUP_TTL_MS >= 600_000, "at least ten minutes") };
    let later = 100 + DEDUP_TTL_MS - 1;
    assert!(emits(&h.text(later, 1, &envelope("e2", "Ev1"))).is_empty());
    let expired = 100 + DEDUP_TTL_MS;
    assert_eq!(emits(&h.text(expired, 1, &envelope("e3", "Ev1"))).len(), 1);
}

#[test]
fn early_timers_and_backwards_time_change_nothing() {
    let (mut h, _) = Harness::started(SlackConfig::new(APP_TOKEN));
    h.connect(10, 1, 1);
    let deadline = h.sim.machine.poll_timeout().unwrap();
    assert_eq!(
        deadline,
        Millis(10_010),
        "first ping one interval after open"
    );
    assert!(h.feed(5_000, Input::Timer).is_empty());
    // A pong stamped in the past must not pull the silence deadline back.
    h.feed(
        1,
        Input::Frame {
            conn: ConnId(1),
            frame: Frame::Pong(Default::default()),
            arrived: None,
        },
    );
    assert_eq!(h.sim.machine.poll_timeout(), Some(deadline));
    let out = h.feed(deadline.0, Input::Timer);
    assert!(matches!(
        out.as_slice(),
        [Output::Send {
            frame: Frame::Ping(_),
            ..
        }]
    ));
    // The pong (at clamped time 5 000) keeps it alive until 35 000.
    assert!(closes(&h.feed(34_999, Input::Timer)).is_empty());
    assert_eq!(h.sim.machine.status(), Status::Connected);
    let out = h.feed(35_000, Input::Timer);
    assert_eq!(requests(&out).len(), 1, "stale: replacement requested");
    assert_eq!(h.sim.machine.status(), Status::Reconnecting);
}

#[test]
fn too_many_websockets_waits_long_before_the_next_url() {
    let (mut h, _) = Harness::started(SlackConfig::new(APP_TOKEN));
    h.connect(10, 1, 1);
    let out = h.text(
        100,
        1,
        r#"{"type":"disconnect","reason":"too_many_websockets"}"#,
    );
    assert_eq!(closes(&out), vec![ConnId(1)]);
    assert!(requests(&out).is_empty());
    let out = h.feed(
        150,
        Input::Closed {
            conn: ConnId(1),
            code: Some(1000),
            reason: String::new(),
        },
    );
    assert!(closes(&out).is_empty() && requests(&out).is_empty());
    let wait = h.sim.machine.poll_timeout().unwrap().0 - 100;
    assert!((60_000..=90_000).contains(&wait), "{wait}");
    assert!(requests(&h.feed(100 + wait - 1, Input::Timer)).is_empty());
    assert_eq!(requests(&h.feed(100 + wait, Input::Timer)).len(), 1);
}
