//! `--sources` and `--types`: which events reach stdout, and `--discord-events` names checked.
//!
//! The filter runs in the stdout writer, not in the flume: a filtered-out event still travels
//! the back-pressure stream and is committed with the batch around it, so its Slack ack, GitHub
//! cursor or webhook 200 goes out as for a printed event. Nobody asked to hold it, so nothing
//! should be redelivered for it either. (`--discord-events` is different: it is the machine's own
//! filter, and the Gateway needs no acknowledgement.)

use super::UsageError;
use openflume_proto::Event;
use openflume_proto::discord::DISPATCH_NAMES;

/// The `source` of every event the command line can print.
pub(crate) const EVENT_SOURCES: &[&str] = &["discord", "slack", "github", "time", "custom"];

/// Which events are printed; case-insensitive on both fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EventFilter {
    /// Lower-case source names; `None` = every source.
    sources: Option<Vec<String>>,
    /// Type names; `None` = every type.
    types: Option<Vec<String>>,
}

impl EventFilter {
    /// The filter of `--sources` and `--types`; an unknown source is a usage error naming the
    /// known ones (types are open: custom webhooks name their own).
    pub(crate) fn new(
        sources: Option<&[String]>,
        types: Option<&[String]>,
    ) -> Result<EventFilter, UsageError> {
        let sources = match sources {
            None => None,
            Some(names) => {
                let mut wanted = Vec::new();
                for name in names_of(names) {
                    let name = name.to_ascii_lowercase();
                    if !EVENT_SOURCES.contains(&name.as_str()) {
                        return Err(UsageError::flag(
                            "--sources",
                            format!(
                                "unknown source {name:?}; known: {}",
                                EVENT_SOURCES.join(", ")
                            ),
                        ));
                    }
                    wanted.push(name);
                }
                Some(wanted)
            }
        };
        let types = types.map(|names| names_of(names).map(str::to_owned).collect());
        Ok(EventFilter { sources, types })
    }

    /// True when `event` is printed.
    pub(crate) fn wants(&self, event: &Event) -> bool {
        let any = |names: &Option<Vec<String>>, value: &str| {
            names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(value)))
        };
        any(&self.sources, &event.source) && any(&self.types, &event.event_type)
    }
}

/// The non-empty, trimmed names of a comma-separated list.
fn names_of(names: &[String]) -> impl Iterator<Item = &str> {
    names.iter().map(|n| n.trim()).filter(|n| !n.is_empty())
}

/// `--discord-events` in Discord's case (upper), with a warning for each name Discord does not
/// document: such a name would silently match nothing.
pub(crate) fn discord_events(names: &[String], warn: impl Fn(String)) -> Vec<String> {
    let names: Vec<String> = names_of(names).map(str::to_ascii_uppercase).collect();
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| !DISPATCH_NAMES.contains(name))
        .collect();
    if !unknown.is_empty() {
        warn(format!(
            "--discord-events: unknown dispatch name{} {} (matches nothing unless Discord added it); known: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", "),
            DISPATCH_NAMES.join(", ")
        ));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflume_proto::{RawJson, UnixMillis};

    fn event(source: &'static str, event_type: &'static str) -> Event {
        Event::new(source, event_type, RawJson::null(), UnixMillis(0))
    }

    fn list(text: &str) -> Vec<String> {
        text.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn filters_are_case_insensitive_and_combine() {
        let all = EventFilter::new(None, None).unwrap();
        assert!(all.wants(&event("slack", "events_api")));
        let sources = list("Discord, SLACK");
        let types = list("message_create,events_api");
        let both = EventFilter::new(Some(&sources), Some(&types)).unwrap();
        assert!(both.wants(&event("discord", "MESSAGE_CREATE")));
        assert!(both.wants(&event("slack", "events_api")));
        assert!(!both.wants(&event("discord", "READY")));
        assert!(!both.wants(&event("github", "notification")));
        let types_only = EventFilter::new(None, Some(&list("TICK"))).unwrap();
        assert!(types_only.wants(&event("time", "tick")));
        assert!(!types_only.wants(&event("custom", "deploys")));
    }

    #[test]
    fn an_unknown_source_is_a_usage_error_listing_the_known_ones() {
        let Err(UsageError(message)) = EventFilter::new(Some(&list("discord,discrod")), None)
        else {
            panic!("accepted an unknown source");
        };
        assert!(message.starts_with("--sources: "), "{message}");
        assert!(message.contains("\"discrod\""), "{message}");
        assert!(
            message.contains("discord, slack, github, time, custom"),
            "{message}"
        );
    }

    #[test]
    fn discord_event_names_are_upper_cased_and_unknown_ones_warned() {
        let warned = std::cell::RefCell::new(Vec::new());
        let names = discord_events(&list("message_create, Ready,TYPO,"), |w| {
            warned.borrow_mut().push(w)
        });
        assert_eq!(names, ["MESSAGE_CREATE", "READY", "TYPO"]);
        let warned = warned.into_inner();
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].contains("unknown dispatch name TYPO"),
            "{}",
            warned[0]
        );
        assert!(warned[0].contains("MESSAGE_CREATE"), "{}", warned[0]);
    }
}
