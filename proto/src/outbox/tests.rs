//! What the outbox reports about a disabled target, found by the `outbox` fuzz target
//! (`fuzz/corpus/outbox/` keeps the input).

use super::*;
use crate::UnixMillis;

fn at(ms: u64) -> Now {
    Now {
        mono: Millis(ms),
        wall: UnixMillis(1_764_100_000_000 + ms as i64),
    }
}

fn outbox() -> Outbox {
    let config = OutboxConfig::new("https://hooks.example/in", "k");
    Outbox::new(config, 1).unwrap()
}

fn drain(outbox: &mut Outbox) -> Vec<OutboxOutput> {
    std::iter::from_fn(|| outbox.poll_output()).collect()
}

#[test]
fn a_disabled_target_counts_its_queue_from_its_cursor() {
    // Restarted disabled after event 5 with 22 committed: 17 ids wait (it reported 22, the
    // whole log, in openflume_forward_queue_depth).
    let mut restarted = outbox();
    let state = TargetState {
        delivered_through: 5,
        disabled: true,
        ..TargetState::default()
    };
    let start = OutboxInput::Start {
        state: Some(state),
        committed: 22,
    };
    restarted.handle_input(at(0), start).unwrap();
    assert!(restarted.is_finished());
    assert_eq!(restarted.queue_depth(), 17);

    // Disabled while running, with events read: the same count as after its restart.
    let mut running = outbox();
    let start = OutboxInput::Start {
        state: None,
        committed: 5,
    };
    running.handle_input(at(0), start).unwrap();
    running
        .handle_input(at(0), OutboxInput::Committed { last_id: 8 })
        .unwrap();
    drain(&mut running);
    let items = (6..=8)
        .map(|event_id| Pending {
            event_id,
            body: "{}".into(),
        })
        .collect();
    let read = OutboxInput::Read { items, up_to: 8 };
    running.handle_input(at(0), read).unwrap();
    let Some(req) = running.in_flight() else {
        panic!("{:?}", drain(&mut running));
    };
    let gone = OutboxInput::Response { req, status: 410 };
    running.handle_input(at(10), gone).unwrap();
    assert!(running.is_finished());
    assert_eq!(running.queue_depth(), 3);
}
