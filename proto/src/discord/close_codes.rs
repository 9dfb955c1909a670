//! What to do when the Gateway closes the connection: one pure table from close code to action.
//!
//! Kept apart from the machine so the whole policy reads (and is tested) as a table. It follows the
//! "Gateway Close Event Codes" table of Discord's Opcodes and Status Codes page, and fixes the
//! known mistakes of other clients: 4007 and 4009 ("start a new session") never get a doomed
//! RESUME, and 4008 (rate limited) keeps the session instead of spending an IDENTIFY.

/// The action a close calls for.
///
/// ```
/// use openflume_proto::discord::{close_action, CloseAction};
/// assert_eq!(close_action(Some(4000)).action, CloseAction::Resume);
/// assert_eq!(close_action(Some(4009)).action, CloseAction::NewSession);
/// assert_eq!(close_action(Some(4004)).action, CloseAction::Fatal);
/// assert_eq!(close_action(None).action, CloseAction::Resume);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseAction {
    /// Reconnect and RESUME when a resumable session exists (IDENTIFY otherwise).
    Resume,
    /// Forget the session, reconnect and IDENTIFY.
    NewSession,
    /// Stop for good: retrying cannot succeed without a change of configuration.
    Fatal,
}

/// A close code's action and its cause in words, for logs and status reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseVerdict {
    /// What to do.
    pub action: CloseAction,
    /// Why, in words a user can act on.
    pub cause: &'static str,
}

/// Classifies a close received from the Gateway. `None` means the transport dropped without a
/// close frame, which keeps the session resumable.
///
/// Server 1000/1001 and unknown codes resume: a RESUME that the server refuses comes back as
/// op 9 `false`, which the machine answers with a fresh IDENTIFY, so nothing is lost by trying.
///
/// ```
/// use openflume_proto::discord::close_action;
/// assert_eq!(close_action(Some(4014)).cause, "disallowed intents: enable the privileged intents in the Developer Portal or remove them from the configuration");
/// ```
pub fn close_action(code: Option<u16>) -> CloseVerdict {
    use CloseAction::{Fatal, NewSession, Resume};
    let (action, cause) = match code {
        None => (Resume, "connection lost without a close frame"),
        Some(1000) => (Resume, "server closed normally"),
        Some(1001) => (Resume, "server going away"),
        Some(4000) => (Resume, "unknown error"),
        Some(4001) => (
            Resume,
            "unknown opcode or invalid payload sent (a client bug)",
        ),
        Some(4002) => (Resume, "decode error: invalid payload sent (a client bug)"),
        Some(4003) => (NewSession, "not authenticated"),
        Some(4004) => (Fatal, "authentication failed: the bot token is invalid"),
        Some(4005) => (Resume, "already authenticated (a client bug)"),
        Some(4007) => (NewSession, "invalid sequence on resume"),
        Some(4008) => (Resume, "rate limited: too many payloads sent"),
        Some(4009) => (NewSession, "session timed out"),
        Some(4010) => (Fatal, "invalid shard: check the shard id and count"),
        Some(4011) => (
            Fatal,
            "sharding required: too many guilds for this shard count",
        ),
        Some(4012) => (Fatal, "invalid API version"),
        Some(4013) => (Fatal, "invalid intents: the intents value is not valid"),
        Some(4014) => (
            Fatal,
            "disallowed intents: enable the privileged intents in the Developer Portal or remove them from the configuration",
        ),
        Some(_) => (Resume, "unexpected close code"),
    };
    CloseVerdict { action, cause }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CloseAction::{Fatal, NewSession, Resume};

    #[test]
    fn every_documented_code_maps_to_its_action() {
        let table: &[(Option<u16>, CloseAction)] = &[
            (None, Resume),
            (Some(1000), Resume),
            (Some(1001), Resume),
            (Some(1006), Resume),
            (Some(1011), Resume),
            (Some(4000), Resume),
            (Some(4001), Resume),
            (Some(4002), Resume),
            (Some(4003), NewSession),
            (Some(4004), Fatal),
            (Some(4005), Resume),
            (Some(4006), Resume),
            (Some(4007), NewSession),
            (Some(4008), Resume),
            (Some(4009), NewSession),
            (Some(4010), Fatal),
            (Some(4011), Fatal),
            (Some(4012), Fatal),
            (Some(4013), Fatal),
            (Some(4014), Fatal),
            (Some(4015), Resume),
            (Some(u16::MAX), Resume),
        ];
        for &(code, expected) in table {
            assert_eq!(close_action(code).action, expected, "code {code:?}");
        }
    }

    #[test]
    fn fatal_causes_say_what_to_fix() {
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            let verdict = close_action(Some(code));
            assert_eq!(verdict.action, Fatal);
            assert!(verdict.cause.len() > 15, "{code}: {}", verdict.cause);
        }
        assert!(close_action(Some(4004)).cause.contains("token"));
        assert!(close_action(Some(4011)).cause.contains("shard"));
    }
}
