//! Which machine a section builds, and its configuration's secrets: taken out (replaced by
//! placeholders) when a section is written, given back when it is replayed.

use super::{Header, MachineKind, RecordingError, Section};
use crate::webhook::{WebhookConfig, WebhookIngress};
use crate::{Machine, Misuse, Secret};

/// A built-in machine's configuration, as a source is built from it and a section records it.
///
/// ```
/// use openflume_proto::recording::{MachineConfig, MachineKind};
/// use openflume_proto::github::GithubConfig;
/// let config = MachineConfig::Github(GithubConfig::new("ghp_live_token_0123456789"));
/// assert_eq!(config.kind(), MachineKind::Github);
/// let (json, secrets) = config.redacted();
/// assert_eq!(json["token"], "${GITHUB_TOKEN}");
/// assert_eq!(secrets[0].0.expose(), "ghp_live_token_0123456789");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum MachineConfig {
    /// One Discord Gateway shard.
    #[cfg(feature = "discord")]
    Discord(crate::discord::DiscordConfig),
    /// Several shards of one Discord bot (a range of them).
    #[cfg(feature = "discord")]
    DiscordGateway(crate::discord::DiscordGatewayConfig),
    /// Slack Socket Mode.
    #[cfg(feature = "slack")]
    Slack(crate::slack::SlackConfig),
    /// The GitHub notifications poller.
    #[cfg(feature = "github")]
    Github(crate::github::GithubConfig),
    /// A cron schedule in a time zone.
    #[cfg(feature = "cron")]
    Cron {
        /// The schedule.
        config: crate::cron::CronConfig,
        /// Where it is evaluated.
        zone: jiff::tz::TimeZone,
    },
    /// The webhook ingress.
    Webhooks(WebhookConfig),
}

/// The text that stands for a secret in a recording: `${NAME}`, NAME being the environment
/// variable a replay reads it from (or `webhook:SENDER` for a custom sender's secret).
///
/// ```
/// use openflume_proto::recording::{placeholder, placeholder_name};
/// assert_eq!(placeholder("GITHUB_TOKEN"), "${GITHUB_TOKEN}");
/// assert_eq!(placeholder_name("${GITHUB_TOKEN}"), Some("GITHUB_TOKEN"));
/// assert_eq!(placeholder_name("ghp_x"), None);
/// ```
pub fn placeholder(name: &str) -> String {
    format!("${{{name}}}")
}

/// The name inside a [`placeholder`], if `text` is one.
///
/// ```
/// use openflume_proto::recording::placeholder_name;
/// assert_eq!(placeholder_name("${webhook:deploys}"), Some("webhook:deploys"));
/// ```
pub fn placeholder_name(text: &str) -> Option<&str> {
    text.strip_prefix("${")?.strip_suffix('}')
}

/// The placeholder name of a custom sender's secret.
fn sender_name(sender: &str) -> String {
    format!("webhook:{sender}")
}

/// One secret slot of a configuration: its placeholder name, whether a replay needs the real
/// value (a signing secret checks signatures; a token is only ever sent), and the slot.
struct Slot<'a> {
    name: String,
    required: bool,
    secret: &'a mut Secret,
}

impl MachineConfig {
    /// Which machine this builds.
    ///
    /// ```
    /// use openflume_proto::recording::{MachineConfig, MachineKind};
    /// let config = MachineConfig::Webhooks(Default::default());
    /// assert_eq!(config.kind(), MachineKind::Webhooks);
    /// ```
    pub fn kind(&self) -> MachineKind {
        match self {
            #[cfg(feature = "discord")]
            MachineConfig::Discord(_) => MachineKind::Discord,
            #[cfg(feature = "discord")]
            MachineConfig::DiscordGateway(_) => MachineKind::DiscordGateway,
            #[cfg(feature = "slack")]
            MachineConfig::Slack(_) => MachineKind::Slack,
            #[cfg(feature = "github")]
            MachineConfig::Github(_) => MachineKind::Github,
            #[cfg(feature = "cron")]
            MachineConfig::Cron { .. } => MachineKind::Cron,
            MachineConfig::Webhooks(_) => MachineKind::Webhooks,
        }
    }

    fn slots(&mut self) -> Vec<Slot<'_>> {
        fn slot<'a>(name: &str, required: bool, secret: &'a mut Secret) -> Slot<'a> {
            Slot {
                name: name.to_owned(),
                required,
                secret,
            }
        }
        match self {
            #[cfg(feature = "discord")]
            MachineConfig::Discord(config) => {
                vec![slot("DISCORD_BOT_TOKEN", false, &mut config.token)]
            }
            #[cfg(feature = "discord")]
            MachineConfig::DiscordGateway(config) => {
                vec![slot("DISCORD_BOT_TOKEN", false, &mut config.shard.token)]
            }
            #[cfg(feature = "slack")]
            MachineConfig::Slack(config) => {
                let mut slots = vec![slot("SLACK_APP_TOKEN", false, &mut config.app_token)];
                if let Some(bot) = config.bot_token.as_mut() {
                    slots.push(slot("SLACK_BOT_TOKEN", false, bot));
                }
                slots
            }
            #[cfg(feature = "github")]
            MachineConfig::Github(config) => vec![slot("GITHUB_TOKEN", false, &mut config.token)],
            #[cfg(feature = "cron")]
            MachineConfig::Cron { .. } => Vec::new(),
            MachineConfig::Webhooks(config) => {
                let mut slots = Vec::new();
                if let Some(secret) = config.slack_signing_secret.as_mut() {
                    slots.push(slot("SLACK_SIGNING_SECRET", true, secret));
                }
                if let Some(secret) = config.github_secret.as_mut() {
                    slots.push(slot("GITHUB_WEBHOOK_SECRET", true, secret));
                }
                for sender in &mut config.senders {
                    slots.push(Slot {
                        name: sender_name(&sender.name),
                        required: true,
                        secret: &mut sender.secret,
                    });
                }
                slots
            }
        }
    }

    /// The configuration as a section's `config`, every secret replaced by its
    /// [`placeholder`], and the secrets taken out with their placeholders (to scrub them from
    /// the inputs too). A cron schedule records its zone's name.
    ///
    /// ```
    /// use openflume_proto::recording::MachineConfig;
    /// use openflume_proto::webhook::{CustomSender, WebhookConfig};
    /// let config = MachineConfig::Webhooks(WebhookConfig {
    ///     senders: vec![CustomSender { name: "deploys".into(), secret: "s3cret-deploys-key".into() }],
    ///     ..WebhookConfig::default()
    /// });
    /// let (json, secrets) = config.redacted();
    /// assert_eq!(json["senders"][0]["secret"], "${webhook:deploys}");
    /// assert!(!json.to_string().contains("s3cret"));
    /// assert_eq!(secrets[0].1, "${webhook:deploys}");
    /// ```
    pub fn redacted(&self) -> (serde_json::Value, Vec<(Secret, String)>) {
        let mut copy = self.clone();
        let mut secrets = Vec::new();
        for slot in copy.slots() {
            let name = placeholder(&slot.name);
            let secret = std::mem::replace(slot.secret, Secret::new(name.clone()));
            if !secret.is_empty() {
                secrets.push((secret, name));
            }
        }
        let json = match &copy {
            #[cfg(feature = "discord")]
            MachineConfig::Discord(config) => serde_json::to_value(config),
            #[cfg(feature = "discord")]
            MachineConfig::DiscordGateway(config) => serde_json::to_value(config),
            #[cfg(feature = "slack")]
            MachineConfig::Slack(config) => serde_json::to_value(config),
            #[cfg(feature = "github")]
            MachineConfig::Github(config) => serde_json::to_value(config),
            #[cfg(feature = "cron")]
            MachineConfig::Cron { config, zone } => {
                let mut config = config.clone();
                // The machine labels its ticks with the same name either way.
                if config.zone.is_none() {
                    config.zone = zone.iana_name().map(str::to_owned);
                }
                serde_json::to_value(config)
            }
            MachineConfig::Webhooks(config) => serde_json::to_value(config),
        };
        // Configurations are plain data: serialising them cannot fail.
        (json.unwrap_or_default(), secrets)
    }

    /// The configuration a section records, secrets still as placeholders.
    ///
    /// ```
    /// use openflume_proto::recording::{MachineConfig, MachineKind, Recording};
    /// let recording = Recording::parse(r#"{"source":"time","machine":"cron","config":{"expression":"@daily","zone":"Europe/Paris"}}"#)?;
    /// let config = MachineConfig::from_section(&recording.sections[0])?;
    /// assert_eq!(config.kind(), MachineKind::Cron);
    /// # Ok::<(), openflume_proto::recording::RecordingError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecordingError::Config`] naming the section's line: no `machine`, a custom one, a
    /// machine this build leaves out (a feature), or a `config` that does not read.
    pub fn from_section(section: &Section) -> Result<MachineConfig, RecordingError> {
        let header: &Header = &section.header;
        let refuse = |reason: String| RecordingError::Config {
            line: section.line,
            source_name: section.source().to_owned(),
            reason,
        };
        let config = header.config.clone();
        let read = |error: serde_json::Error| refuse(format!("its config does not read: {error}"));
        match header.machine {
            None => Err(refuse(
                "the header does not name its machine (\"machine\": \"discord\", …)".into(),
            )),
            Some(MachineKind::Custom) => Err(refuse(
                "a custom machine: hand the replay a machine built for it".into(),
            )),
            #[cfg(feature = "discord")]
            Some(MachineKind::Discord) => Ok(MachineConfig::Discord(
                serde_json::from_value(config).map_err(read)?,
            )),
            #[cfg(feature = "discord")]
            Some(MachineKind::DiscordGateway) => Ok(MachineConfig::DiscordGateway(
                serde_json::from_value(config).map_err(read)?,
            )),
            #[cfg(feature = "slack")]
            Some(MachineKind::Slack) => Ok(MachineConfig::Slack(
                serde_json::from_value(config).map_err(read)?,
            )),
            #[cfg(feature = "github")]
            Some(MachineKind::Github) => Ok(MachineConfig::Github(
                serde_json::from_value(config).map_err(read)?,
            )),
            #[cfg(feature = "cron")]
            Some(MachineKind::Cron) => {
                let config: crate::cron::CronConfig =
                    serde_json::from_value(config).map_err(read)?;
                // A schedule recorded in a zone without a name ran in UTC or a fixed offset;
                // UTC is the honest fallback for a replay.
                let zone = match config.zone.as_deref() {
                    Some(name) => jiff::tz::TimeZone::get(name)
                        .map_err(|e| refuse(format!("unknown time zone {name:?}: {e}")))?,
                    None => jiff::tz::TimeZone::UTC,
                };
                Ok(MachineConfig::Cron { config, zone })
            }
            Some(MachineKind::Webhooks) => Ok(MachineConfig::Webhooks(
                serde_json::from_value(config).map_err(read)?,
            )),
            #[allow(unreachable_patterns)] // with every protocol feature on
            Some(other) => Err(refuse(format!(
                "this build of openflume-proto leaves out the {other:?} machine"
            ))),
        }
    }

    /// Puts back each secret `lookup` knows (asked by placeholder name: `DISCORD_BOT_TOKEN`,
    /// `webhook:deploys`, …) and returns the names of those a replay cannot do without that it
    /// did not know: signing secrets, which check the recorded signatures. A token left as its
    /// placeholder replays all the same (it is only ever sent).
    ///
    /// ```
    /// use openflume_proto::recording::MachineConfig;
    /// use openflume_proto::webhook::WebhookConfig;
    /// use openflume_proto::Secret;
    /// let mut config = MachineConfig::Webhooks(WebhookConfig {
    ///     github_secret: Some("${GITHUB_WEBHOOK_SECRET}".into()),
    ///     slack_signing_secret: Some("${SLACK_SIGNING_SECRET}".into()),
    ///     ..WebhookConfig::default()
    /// });
    /// let missing = config.resupply(|name| (name == "GITHUB_WEBHOOK_SECRET").then(|| Secret::new("gh-secret")));
    /// assert_eq!(missing, ["SLACK_SIGNING_SECRET"]);
    /// ```
    pub fn resupply(&mut self, mut lookup: impl FnMut(&str) -> Option<Secret>) -> Vec<String> {
        let mut missing = Vec::new();
        for slot in self.slots() {
            let Some(name) = placeholder_name(slot.secret.expose()).map(str::to_owned) else {
                continue;
            };
            match lookup(&name) {
                Some(secret) => *slot.secret = secret,
                None if slot.required => missing.push(name),
                None => {}
            }
        }
        missing
    }

    /// Builds the machine with `seed`.
    ///
    /// ```
    /// use openflume_proto::recording::MachineConfig;
    /// use openflume_proto::cron::CronConfig;
    /// use openflume_proto::Machine;
    /// let config = MachineConfig::Cron { config: CronConfig::new("@hourly"), zone: jiff::tz::TimeZone::UTC };
    /// assert_eq!(config.build(7)?.source(), "time");
    /// # Ok::<(), openflume_proto::Misuse>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The machine's [`Misuse`] for a configuration it refuses.
    pub fn build(self, seed: u64) -> Result<Box<dyn Machine + Send>, Misuse> {
        Ok(match self {
            #[cfg(feature = "discord")]
            MachineConfig::Discord(config) => {
                Box::new(crate::discord::DiscordShard::new(config, seed)?)
            }
            #[cfg(feature = "discord")]
            MachineConfig::DiscordGateway(config) => {
                Box::new(crate::discord::DiscordGateway::new(config, seed)?)
            }
            #[cfg(feature = "slack")]
            MachineConfig::Slack(config) => {
                Box::new(crate::slack::SlackMachine::new(config, seed)?)
            }
            #[cfg(feature = "github")]
            MachineConfig::Github(config) => {
                Box::new(crate::github::GithubMachine::new(config, seed)?)
            }
            #[cfg(feature = "cron")]
            MachineConfig::Cron { config, zone } => {
                Box::new(crate::cron::CronMachine::new(config, zone, seed)?)
            }
            MachineConfig::Webhooks(config) => {
                let _ = seed;
                Box::new(WebhookIngress::new(config)?)
            }
        })
    }
}
