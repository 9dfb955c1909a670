//! `openflume sim`'s control language: one command a line on stdin, so a user can rehearse their
//! bot's recovery from the shell (`discord zombie`, `slack refresh`, `github 502`) without
//! writing Rust.

use openflume_sim::{
    DisconnectReason, DiscordAction, GithubAction, HttpFault, SlackAction, SocketFault,
};

/// One command for one simulator.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Command {
    Discord(DiscordAction),
    Slack(SlackAction),
    Github(GithubAction),
    Help,
}

/// The command list, written once for `help` on stdin and for `openflume sim --help`.
macro_rules! commands {
    () => {
        "  discord messages N | drop | zombie | heartbeat | reconnect | invalid-session [resumable]
  discord close CODE | garbage | http STATUS
  slack messages N | command | interactive | refresh | warning | drop | silent | duplicate
  slack close CODE | garbage | http STATUS
  github notifications N | http STATUS | rate-limit
  github STATUS (the next poll answers it, e.g. github 502)
"
    };
}

/// What `help` on stdin prints.
pub(crate) const HELP: &str = concat!("commands (one a line on stdin):\n", commands!(), "  help");

/// The end of `openflume sim --help`.
pub(crate) const AFTER_HELP: &str = concat!(
    "stdout: each simulator's URL, then the environment that points `openflume listen` at \
     them. stderr: each client that connects, and what each control line did.\n\n\
     Control lines on stdin, one a line (`help` lists them):\n",
    commands!(),
    "\nExit status: 0 after SIGINT or SIGTERM (stdin's end does not stop it), 2 for a usage \
     error."
);

fn number<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, String> {
    word.and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("expected {what}"))
}

fn http(status: Option<&str>) -> Result<HttpFault, String> {
    let status: u16 = number(status, "an HTTP status (e.g. 502)")?;
    if !(100..=599).contains(&status) {
        return Err(format!("{status} is not an HTTP status"));
    }
    Ok(HttpFault::Status {
        status,
        retry_after: (status == 429 || status == 503).then_some(1),
    })
}

fn socket(verb: &str, rest: Option<&str>) -> Result<Option<SocketFault>, String> {
    Ok(match verb {
        "close" => Some(SocketFault::Close {
            code: number(rest, "a close code (e.g. 4000)")?,
            reason: "closed from the sim's stdin".into(),
        }),
        "garbage" => Some(SocketFault::GarbageText),
        _ => None,
    })
}

/// Parses one line; blank lines and `#` comments are `Ok(None)`.
pub(crate) fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.split('#').next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let Some(service) = words.next() else {
        return Ok(None);
    };
    let verb = words.next().unwrap_or_default();
    let arg = words.next();
    let unknown = || format!("unknown command {:?} (`help` lists them)", line.trim());
    let command = match service {
        "help" => Command::Help,
        "discord" => Command::Discord(match verb {
            "messages" => DiscordAction::Messages(number(arg, "a count")?),
            "drop" => DiscordAction::DropConnection,
            "zombie" => DiscordAction::StopHeartbeatAcks,
            "heartbeat" => DiscordAction::RequestHeartbeat,
            "reconnect" => DiscordAction::Reconnect,
            "invalid-session" => DiscordAction::InvalidSession {
                resumable: arg == Some("resumable"),
            },
            "http" => DiscordAction::Http {
                fault: http(arg)?,
                times: 1,
            },
            other => DiscordAction::Fault(socket(other, arg)?.ok_or_else(unknown)?),
        }),
        "slack" => Command::Slack(match verb {
            "messages" => SlackAction::Messages(number(arg, "a count")?),
            "command" => SlackAction::SlashCommand,
            "interactive" => SlackAction::Interactive,
            "refresh" => SlackAction::Disconnect(DisconnectReason::RefreshRequested),
            "warning" => SlackAction::Disconnect(DisconnectReason::Warning),
            "drop" => SlackAction::DropConnection,
            "silent" => SlackAction::Silent,
            "duplicate" => SlackAction::Duplicate {
                new_envelope_id: true,
            },
            "http" => SlackAction::Http {
                fault: http(arg)?,
                times: 1,
            },
            other => SlackAction::Fault(socket(other, arg)?.ok_or_else(unknown)?),
        }),
        "github" => Command::Github(match verb {
            "notifications" => GithubAction::Notifications(number(arg, "a count")?),
            "rate-limit" => GithubAction::ExhaustRateLimit,
            "http" => GithubAction::Http {
                fault: http(arg)?,
                times: 1,
            },
            status if status.parse::<u16>().is_ok() => GithubAction::Http {
                fault: http(Some(status))?,
                times: 1,
            },
            _ => return Err(unknown()),
        }),
        _ => return Err(unknown()),
    };
    Ok(Some(command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_commands_parse() {
        assert_eq!(
            parse("discord zombie"),
            Ok(Some(Command::Discord(DiscordAction::StopHeartbeatAcks)))
        );
        assert_eq!(
            parse("  slack refresh  # a routine one"),
            Ok(Some(Command::Slack(SlackAction::Disconnect(
                DisconnectReason::RefreshRequested
            ))))
        );
        assert_eq!(
            parse("github 502"),
            Ok(Some(Command::Github(GithubAction::Http {
                fault: HttpFault::Status {
                    status: 502,
                    retry_after: None
                },
                times: 1
            })))
        );
        assert_eq!(
            parse("discord close 4000"),
            Ok(Some(Command::Discord(DiscordAction::Fault(
                SocketFault::Close {
                    code: 4000,
                    reason: "closed from the sim's stdin".into()
                }
            ))))
        );
        assert_eq!(parse("# nothing"), Ok(None));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("help"), Ok(Some(Command::Help)));
    }

    #[test]
    fn mistakes_say_what_was_expected() {
        assert_eq!(
            parse("discord messages many"),
            Err("expected a count".into())
        );
        assert!(parse("github 999").is_err_and(|e| e.contains("not an HTTP status")));
        assert!(parse("gitlab 502").is_err_and(|e| e.contains("`help` lists them")));
        assert!(parse("slack close").is_err_and(|e| e.contains("close code")));
    }
}
