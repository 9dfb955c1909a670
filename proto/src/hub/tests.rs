//! The session's bounds against a client that misbehaves, each found by the `hub_session` fuzz
//! target (`fuzz/corpus/hub_session/` keeps the inputs).

use super::*;
use crate::UnixMillis;

fn at(ms: u64) -> Now {
    Now {
        mono: Millis(ms),
        wall: UnixMillis(1_764_100_000_000),
    }
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
