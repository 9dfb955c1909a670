//! Which items a subscriber wants: by source, by type and by conversation. An omitted list means
//! everything, an empty list means nothing; an item must pass every list given.

use crate::Item;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A subscriber's subscriptions.
///
/// ```
/// use openflume_proto::hub::Filter;
/// use openflume_proto::{Event, Item, RawJson, UnixMillis};
/// let mut event = Event::new("slack", "events_api", RawJson::null(), UnixMillis(0));
/// event.meta.insert("conversation_key".into(), "slack:v1:T:C:1.2".into());
/// let item = Item::Event(event);
/// assert!(Filter::default().matches(&item));
/// let slack_only = Filter { sources: Some(vec!["slack".into()]), ..Filter::default() };
/// assert!(slack_only.matches(&item));
/// let nothing = Filter { types: Some(vec![]), ..Filter::default() };
/// assert!(!nothing.matches(&item));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Item sources (`discord`, `slack`, `webhooks`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// Event types (`MESSAGE_CREATE`, `events_api`, …); `log` stands for every log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// Conversation keys (`meta.conversation_key`); logs have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_keys: Option<Vec<String>>,
}

/// An item's type as filters name it (`log` for every log) and its conversation key.
pub(crate) fn keys(item: &Item) -> (&str, Option<&str>) {
    match item {
        Item::Event(event) => (
            event.event_type.as_str(),
            event.meta.get("conversation_key").map(String::as_str),
        ),
        Item::Log(_) => ("log", None),
    }
}

fn passes(list: &Option<Vec<String>>, value: Option<&str>) -> bool {
    match list {
        None => true,
        Some(list) => value.is_some_and(|v| list.iter().any(|l| l == v)),
    }
}

impl Filter {
    /// Whether `item` is wanted.
    ///
    /// ```
    /// use openflume_proto::hub::Filter;
    /// use openflume_proto::{Item, Level, Log, UnixMillis};
    /// let log = Item::Log(Log::new(Level::Info, "discord", "status", "up", UnixMillis(0)));
    /// let logs = Filter { types: Some(vec!["log".into()]), ..Filter::default() };
    /// assert!(logs.matches(&log));
    /// ```
    pub fn matches(&self, item: &Item) -> bool {
        let (kind, key) = keys(item);
        self.matches_keys(item.source(), kind, key)
    }

    /// Whether an item with these keys is wanted: [`matches`](Self::matches) for an item whose
    /// keys were taken out once (a [`RenderedItem`](super::RenderedItem) shared by sessions).
    ///
    /// ```
    /// use openflume_proto::hub::Filter;
    /// let slack_only = Filter { sources: Some(vec!["slack".into()]), ..Filter::default() };
    /// assert!(slack_only.matches_keys("slack", "events_api", Some("slack:v1:T:C:1.2")));
    /// assert!(!slack_only.matches_keys("discord", "MESSAGE_CREATE", None));
    /// ```
    pub fn matches_keys(&self, source: &str, kind: &str, conversation_key: Option<&str>) -> bool {
        passes(&self.sources, Some(source))
            && passes(&self.types, Some(kind))
            && passes(&self.conversation_keys, conversation_key)
    }

    /// Adds every value of `more` (a list given where this one has none stays "everything").
    /// Lists can hold thousands of values from a client: looked up in a set, not scanned.
    pub(crate) fn extend(&mut self, more: Filter) {
        for (mine, theirs) in [
            (&mut self.sources, more.sources),
            (&mut self.types, more.types),
            (&mut self.conversation_keys, more.conversation_keys),
        ] {
            if let (Some(mine), Some(theirs)) = (mine.as_mut(), theirs) {
                let mut known: HashSet<String> = mine.iter().cloned().collect();
                for value in theirs {
                    if known.insert(value.clone()) {
                        mine.push(value);
                    }
                }
            }
        }
    }

    /// Removes every value of `less`; removing from "everything" is refused by the caller.
    pub(crate) fn remove(&mut self, less: &Filter) {
        for (mine, theirs) in [
            (&mut self.sources, &less.sources),
            (&mut self.types, &less.types),
            (&mut self.conversation_keys, &less.conversation_keys),
        ] {
            if let (Some(mine), Some(theirs)) = (mine.as_mut(), theirs) {
                let gone: HashSet<&str> = theirs.iter().map(String::as_str).collect();
                mine.retain(|value| !gone.contains(value.as_str()));
            }
        }
    }

    /// The lists' size as JSON carries them at least (each value, its quotes and a comma), so
    /// subscriptions grown by `subscribe` can be held to what one frame carries.
    pub(crate) fn size(&self) -> usize {
        [&self.sources, &self.types, &self.conversation_keys]
            .into_iter()
            .flatten()
            .flatten()
            .map(|value| value.len() + 3)
            .sum()
    }

    /// True when `less` names a list this filter does not have (it means "everything"), so
    /// nothing can be taken out of it.
    pub(crate) fn cannot_remove(&self, less: &Filter) -> Option<&'static str> {
        [
            ("sources", &self.sources, &less.sources),
            ("types", &self.types, &less.types),
            (
                "conversation_keys",
                &self.conversation_keys,
                &less.conversation_keys,
            ),
        ]
        .into_iter()
        .find(|(_, mine, theirs)| mine.is_none() && theirs.is_some())
        .map(|(name, _, _)| name)
    }
}
