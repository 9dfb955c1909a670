//! The session's bounds against a client that misbehaves, found writing and running the
//! `hub_session` fuzz target (`fuzz/corpus/hub_session/` keeps inputs that reach each).

use super::*;
use crate::UnixMillis;

fn at(ms: u64) -> Now {
    Now {
        mono: Millis(ms),
        wall: UnixMillis(1_764_100_000_000),
    }
}

/// A session after a hello at the end of a log of `committed` ids.
fn streaming(config: HubConfig, committed: u64) -> HubSession {
    let mut session = HubSession::new(config);
    session.handle_input(at(0), HubInput::Start { committed });
    session.handle_input(at(0), HubInput::Text(r#"{"type":"hello"}"#.into()));
    drain(&mut session);
    session
}

fn drain(session: &mut HubSession) -> Vec<HubOutput> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

fn close_of(outputs: &[HubOutput]) -> Option<(u16, &str)> {
    outputs.iter().find_map(|out| match out {
        HubOutput::Close { code, reason } => Some((*code, reason.as_str())),
        _ => None,
    })
}

#[test]
fn a_close_reason_that_quotes_the_client_fits_a_close_frame() {
    let mut session = HubSession::new(HubConfig::new("i"));
    session.handle_input(at(0), HubInput::Start { committed: 0 });
    // serde_json's error names the unknown variant: 60 two-byte characters.
    let text = format!(r#"{{"type":"{}"}}"#, "é".repeat(60));
    session.handle_input(at(0), HubInput::Text(text));
    let outputs = drain(&mut session);
    let Some((1003, reason)) = close_of(&outputs) else {
        panic!("{outputs:?}");
    };
    assert!(reason.len() <= 123, "{} bytes: {reason}", reason.len());
    assert!(reason.starts_with("the first frame must be a hello: unknown variant `éé"));
}

/// Text frames a run of outputs queued.
fn sends(outputs: &[HubOutput]) -> usize {
    outputs
        .iter()
        .filter(|out| matches!(out, HubOutput::Send(_)))
        .count()
}

#[test]
fn a_client_that_asks_without_reading_is_closed_past_the_answers_bound() {
    let config = HubConfig {
        send_queue: 2,
        ..HubConfig::new("i")
    };
    let mut session = streaming(config, 0);
    let subscribe = r#"{"type":"subscribe","subscriptions":{"sources":["slack"]}}"#;
    // hello_ok is queued: 16 answers more fit beside the 2 frames of the send queue, no 18th.
    let mut queued = 1;
    for _ in 0..40 {
        session.handle_input(at(0), HubInput::Text(subscribe.into()));
        let outputs = drain(&mut session);
        queued += sends(&outputs);
        if let Some((code, reason)) = close_of(&outputs) {
            assert_eq!(code, 1008);
            assert_eq!(reason, "more than 16 answers unread; resume after event 0");
            assert_eq!(queued, 2 + MAX_QUEUED_ANSWERS);
            return;
        }
    }
    panic!("{queued} frames queued and never closed");
}

#[test]
fn a_read_in_flight_counts_against_the_answers_bound() {
    let config = HubConfig {
        send_queue: 4,
        page: 4,
        ..HubConfig::new("i")
    };
    let mut session = streaming(config, 0);
    session.handle_input(at(0), HubInput::Sent { frames: 1 });
    session.handle_input(at(0), HubInput::Committed { last_id: 9 });
    let read = drain(&mut session);
    assert!(
        matches!(read[..], [HubOutput::ReadLog { limit: 4, .. }]),
        "{read:?}"
    );
    // The read may bring 4 items: 16 answers meanwhile, then the 17th is refused.
    let subscribe = r#"{"type":"subscribe","subscriptions":{}}"#;
    for n in 1..=17 {
        session.handle_input(at(0), HubInput::Text(subscribe.into()));
        let outputs = drain(&mut session);
        assert_eq!(
            close_of(&outputs).is_some(),
            n == 17,
            "answer {n}: {outputs:?}"
        );
    }
}

#[test]
fn changes_waiting_for_a_point_ahead_are_bounded() {
    let mut session = streaming(HubConfig::new("i"), 5);
    for n in 0..40 {
        let since = 1000 + n;
        let text = format!(r#"{{"type":"subscribe","subscriptions":{{}},"since":{since}}}"#);
        session.handle_input(at(0), HubInput::Text(text));
        let outputs = drain(&mut session);
        // Written at once: only the waiting changes count.
        session.handle_input(at(0), HubInput::Sent { frames: 1 });
        if let Some((code, reason)) = close_of(&outputs) {
            assert_eq!(
                (code, reason),
                (1008, "more than 16 subscription changes waiting")
            );
            assert_eq!(n as usize, MAX_WAITING_CHANGES);
            return;
        }
    }
    panic!("never closed");
}

#[test]
fn subscriptions_cannot_grow_past_a_frame() {
    let config = HubConfig {
        max_frame_bytes: 100,
        ..HubConfig::new("i")
    };
    let mut session = HubSession::new(config);
    session.handle_input(at(0), HubInput::Start { committed: 0 });
    let hello = r#"{"type":"hello","subscriptions":{"conversation_keys":[]}}"#;
    session.handle_input(at(0), HubInput::Text(hello.into()));
    drain(&mut session);
    // Each key is 30 bytes, 33 as JSON carries it: three fit in 100, a fourth does not.
    for n in 0..4 {
        let text = format!(
            r#"{{"type":"subscribe","subscriptions":{{"conversation_keys":["key-{n:026}"]}}}}"#
        );
        session.handle_input(at(0), HubInput::Text(text));
        let outputs = drain(&mut session);
        session.handle_input(at(0), HubInput::Sent { frames: 1 });
        match close_of(&outputs) {
            None => assert!(n < 3, "{outputs:?}"),
            Some(close) => assert_eq!(
                (n, close),
                (3, (1008, "subscriptions larger than 100 bytes"))
            ),
        }
    }
    // Values already there cost nothing again.
    let mut filter = Filter {
        sources: Some(vec!["a".into(), "b".into()]),
        ..Filter::default()
    };
    filter.extend(Filter {
        sources: Some(vec!["b".into(), "c".into(), "c".into()]),
        ..Filter::default()
    });
    assert_eq!(
        filter.sources.as_deref(),
        Some(&["a", "b", "c"].map(String::from)[..])
    );
    assert_eq!(filter.size(), 12);
}
