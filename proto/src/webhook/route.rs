//! Which channel a request head is for, judged before a byte of its body is read: the path
//! (404), the method (405), the content type (415) and the body limit (413).

use super::WebhookConfig;

/// A served endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channel {
    SlackEvents,
    SlackInteractions,
    SlackCommands,
    Github,
    /// The sender at this index of the configuration.
    Custom(usize),
}

/// Why a head is refused before its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType { expected: &'static str },
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

impl Channel {
    /// The path after the prefix, for logs.
    pub(crate) fn path(self, config: &WebhookConfig) -> String {
        match self {
            Channel::SlackEvents => "/channels/slack/events".into(),
            Channel::SlackInteractions => "/channels/slack/interactions".into(),
            Channel::SlackCommands => "/channels/slack/commands".into(),
            Channel::Github => "/channels/github/webhook".into(),
            Channel::Custom(index) => format!(
                "/channels/custom/{}",
                config.senders.get(index).map_or("", |s| s.name.as_str())
            ),
        }
    }

    pub(crate) fn body_limit(self, config: &WebhookConfig) -> usize {
        match self {
            Channel::SlackEvents | Channel::SlackInteractions | Channel::SlackCommands => {
                config.slack_body_limit
            }
            Channel::Github => config.github_body_limit,
            Channel::Custom(_) => config.custom_body_limit,
        }
    }

    /// Checks the `Content-Type` (its media type, parameters aside).
    fn accepts(self, content_type: Option<&str>) -> Result<(), Refusal> {
        let media = content_type
            .and_then(|value| value.split(';').next())
            .map(|media| media.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let is_json =
            media == JSON || (media.starts_with("application/") && media.ends_with("+json"));
        let (ok, expected) = match self {
            Channel::SlackEvents => (is_json, JSON),
            Channel::SlackInteractions | Channel::SlackCommands => (media == FORM, FORM),
            // GitHub sends either, as the hook is configured.
            Channel::Github => (
                is_json || media == FORM,
                "application/json or application/x-www-form-urlencoded",
            ),
            Channel::Custom(_) => (is_json, JSON),
        };
        if ok {
            Ok(())
        } else {
            Err(Refusal::UnsupportedMediaType { expected })
        }
    }
}

/// Whether `target` (its path, the query aside) is one of the paths handed off.
pub(crate) fn is_handoff(config: &WebhookConfig, target: &str) -> bool {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    config.handoff_paths.iter().any(|p| p == path)
}

/// The channel for a request head, or why it is refused.
pub(crate) fn route(
    config: &WebhookConfig,
    method: &str,
    target: &str,
    content_type: Option<&str>,
) -> Result<Channel, Refusal> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let path = path
        .strip_prefix(config.path_prefix.as_str())
        .ok_or(Refusal::NotFound)?;
    let channel = match path.trim_end_matches('/').split('/').collect::<Vec<_>>()[..] {
        ["", "channels", "slack", kind] if config.slack_signing_secret.is_some() => match kind {
            "events" => Channel::SlackEvents,
            "interactions" => Channel::SlackInteractions,
            "commands" => Channel::SlackCommands,
            _ => return Err(Refusal::NotFound),
        },
        ["", "channels", "github", "webhook"] if config.github_secret.is_some() => Channel::Github,
        ["", "channels", "custom", name] => config
            .senders
            .iter()
            .position(|sender| sender.name == name)
            .map(Channel::Custom)
            .ok_or(Refusal::NotFound)?,
        _ => return Err(Refusal::NotFound),
    };
    if method != "POST" {
        return Err(Refusal::MethodNotAllowed);
    }
    channel.accepts(content_type)?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::CustomSender;

    fn config() -> WebhookConfig {
        WebhookConfig {
            path_prefix: "/hooks".into(),
            slack_signing_secret: Some("s".into()),
            github_secret: None,
            senders: vec![CustomSender {
                name: "deploys".into(),
                secret: "x".into(),
            }],
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn routes_by_path_then_method_then_media_type() {
        let c = config();
        let json = Some("application/json; charset=utf-8");
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            route(&c, "POST", "/hooks/channels/slack/events", json),
            Ok(Channel::SlackEvents)
        );
        assert_eq!(
            route(&c, "POST", "/hooks/channels/slack/commands?x=1", form),
            Ok(Channel::SlackCommands)
        );
        assert_eq!(
            route(
                &c,
                "POST",
                "/hooks/channels/custom/deploys",
                Some("application/cloudevents+json")
            ),
            Ok(Channel::Custom(0))
        );
        for (target, method) in [
            ("/channels/slack/events", "POST"),         // outside the prefix
            ("/hooks/channels/slack", "POST"),          // a channel alone
            ("/hooks/channels/github/webhook", "POST"), // no GitHub secret
            ("/hooks/channels/custom/other", "GET"),    // unknown sender, whatever the method
            ("/hooks/channels/slack/events/extra", "POST"),
        ] {
            assert_eq!(
                route(&c, method, target, json),
                Err(Refusal::NotFound),
                "{target}"
            );
        }
        assert_eq!(
            route(&c, "GET", "/hooks/channels/slack/events", json),
            Err(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            route(&c, "POST", "/hooks/channels/slack/interactions", json),
            Err(Refusal::UnsupportedMediaType { expected: FORM })
        );
        assert_eq!(
            route(&c, "POST", "/hooks/channels/slack/events", None),
            Err(Refusal::UnsupportedMediaType { expected: JSON })
        );
    }
}
