//! Cursors: what each source needs to carry on after a restart, kept beside what it delivered.
//!
//! A cursor is folded from the items a consumer holds for good ([`Cursors::observe`]) and from the
//! checkpoints machines emit for state that no item shows ([`Output::Checkpoint`]: GitHub's
//! validators and the notifications recorded without being emitted at bootstrap). The fold runs
//! where the items are held: in the durable log's transaction that stores them, or after stdout
//! took them. So a stored cursor never covers an item that was not kept, and a restart that
//! starts from it loses nothing:
//!
//! | source | cursor | after a restart |
//! |---|---|---|
//! | Discord | session id, resume URL (from READY) and the `seq` of the last event, per shard | resumes each session; Discord replays what came after `seq` |
//! | GitHub | validators and the seen `(thread, updated_at)` keys | polls with the validators; what changed while down is news, nothing else |
//! | Slack | event ids of the last 15 minutes | a redelivery of a kept event is acknowledged, not emitted again |
//! | cron | each schedule's last fire time | catches up by [`CatchUp`] |
//! | webhooks | GitHub and custom deliveries of the last days | a sender's redelivery of a kept event is answered 200, not emitted again |
//!
//! A bot with several shards has a session per shard: its events carry `meta.shard` =
//! `"ID/COUNT"`, and each shard's cursor is kept under a key of its own,
//! [`Cursors::shard_key`] (`discord:3/8`), beside the plain `discord` of a bot with one shard. So
//! processes that run disjoint shard ranges into one store never overwrite each other's
//! sessions, and a range moved to another process finds its shards' sessions by key.
//!
//! [`Output::Checkpoint`]: crate::Output::Checkpoint

use crate::{Event, Item, UnixMillis};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A source's state worth keeping across runs: stored as JSON, read back into its configuration
/// (`DiscordConfig::resume`, `GithubConfig::resume`, `SlackConfig::resume`, `CronConfig::last_fire`).
///
/// ```
/// use openflume_proto::Checkpoint;
/// use openflume_proto::discord::ResumeState;
/// let session = ResumeState {
///     session_id: "9f3c".into(),
///     resume_gateway_url: "wss://gateway-us-east1-b.discord.gg".into(),
///     seq: 42,
/// };
/// let checkpoint = Checkpoint::DiscordSession(session);
/// // Serialisable, to be stored; Debug hides the session id.
/// assert!(serde_json::to_string(&checkpoint).unwrap().contains("\"seq\":42"));
/// assert!(!format!("{checkpoint:?}").contains("9f3c"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Checkpoint {
    /// A Discord session to resume (`DiscordConfig::resume`), within Discord's resume window:
    /// a bot's one shard under the key `discord`, or one shard of several under
    /// [`Cursors::shard_key`].
    #[cfg(feature = "discord")]
    DiscordSession(crate::discord::ResumeState),
    /// The sessions of a [`DiscordGateway`](crate::discord::DiscordGateway)'s shards, as it left
    /// them at a shutdown that kept them (`DiscordGatewayConfig::resume`): what
    /// [`Machine::checkpoint`](crate::Machine::checkpoint) gives for a gateway. Stored cursors
    /// keep each shard under its own key instead.
    #[cfg(feature = "discord")]
    DiscordShards(DiscordShardsCursor),
    /// GitHub's validators and seen notifications (`GithubConfig::resume`).
    Github(GithubCursor),
    /// Slack's recent event ids (`SlackConfig::resume`).
    Slack(SlackCursor),
    /// The cron schedules' last fires (`CronConfig::last_fire`).
    Cron(CronCursor),
    /// The webhook ingress's recent GitHub and custom deliveries (`WebhookConfig::resume`).
    Webhooks(WebhookCursor),
}

/// The resumable sessions of a bot's shards, by shard id, all under one shard count.
///
/// ```
/// use openflume_proto::DiscordShardsCursor;
/// let cursor: DiscordShardsCursor = serde_json::from_str(
///     r#"{"shard_count":8,"sessions":{"3":{"session_id":"s3","resume_gateway_url":"wss://r.example","seq":9}}}"#,
/// ).unwrap();
/// assert_eq!(cursor.sessions[&3].seq, 9);
/// ```
#[cfg(feature = "discord")]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscordShardsCursor {
    /// The bot's shard count the sessions were made under.
    pub shard_count: u32,
    /// Each shard's session, by shard id.
    pub sessions: BTreeMap<u32, crate::discord::ResumeState>,
}

/// Where the GitHub poller stands: the validators of its last complete cycle, and the
/// notifications it already emitted or recorded, oldest first.
///
/// ```
/// use openflume_proto::GithubCursor;
/// let cursor: GithubCursor = serde_json::from_str(
///     r#"{"last_modified":"Thu, 01 Jan 2026 00:00:00 GMT","seen":[["1","2026-01-01T00:00:00Z"]]}"#,
/// ).unwrap();
/// assert_eq!(cursor.etag, None);
/// assert_eq!(cursor.seen.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GithubCursor {
    /// `Last-Modified` of page 1, sent back as `If-Modified-Since`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// `ETag` of page 1, sent back as `If-None-Match`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `(thread id, updated_at)` of each notification already handled, oldest first; at most
    /// [`GithubCursor::MAX_SEEN`].
    pub seen: Vec<(String, String)>,
}

impl GithubCursor {
    /// The most keys kept: ten full polls of 10 pages of 50, well past what one listing shows.
    pub const MAX_SEEN: usize = 5_000;

    fn remember(&mut self, key: (String, String)) {
        // Recent keys are at the end, where a repeat is most likely.
        if self.seen.iter().rev().any(|seen| *seen == key) {
            return;
        }
        if self.seen.len() >= Self::MAX_SEEN {
            self.seen.remove(0);
        }
        self.seen.push(key);
    }
}

/// The Slack event ids handed on recently, oldest first, with when each was received.
///
/// ```
/// use openflume_proto::{SlackCursor, UnixMillis};
/// let cursor: SlackCursor = serde_json::from_str(r#"{"recent":[["Ev1",1764000000000]]}"#).unwrap();
/// assert_eq!(cursor.recent[0], ("Ev1".to_owned(), UnixMillis(1_764_000_000_000)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlackCursor {
    /// `(event_id, receivedAt)`, at most [`SlackCursor::MAX_IDS`], none older than
    /// [`SlackCursor::MAX_AGE_MS`] before the newest.
    pub recent: VecDeque<(String, UnixMillis)>,
}

impl SlackCursor {
    /// Enough for every envelope that can be unacknowledged at a crash, and Slack's retries.
    pub const MAX_IDS: usize = 1_000;
    /// Slack redelivers within minutes (at once, after about 1 and about 5): 15 covers it.
    pub const MAX_AGE_MS: i64 = 15 * 60 * 1000;

    fn remember(&mut self, id: &str, at: UnixMillis) {
        remember_recent(&mut self.recent, id, at, Self::MAX_IDS, Self::MAX_AGE_MS);
    }
}

/// The webhook deliveries handed on recently (their
/// [`redelivery_key`](crate::webhook::redelivery_key): `github:…`, `custom:…`), oldest first.
/// Slack's Events API deliveries are in the [`SlackCursor`] (by `event_id`, as Socket Mode's).
///
/// ```
/// use openflume_proto::{UnixMillis, WebhookCursor};
/// let cursor: WebhookCursor = serde_json::from_str(r#"{"recent":[["github:72d3",1764000000000]]}"#).unwrap();
/// assert_eq!(cursor.recent[0].0, "github:72d3");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookCursor {
    /// `(redelivery key, receivedAt)`, at most [`WebhookCursor::MAX_IDS`], none older than
    /// [`WebhookCursor::MAX_AGE_MS`] before the newest.
    pub recent: VecDeque<(String, UnixMillis)>,
}

impl WebhookCursor {
    /// Deliveries kept: far more than can be in flight at a crash.
    pub const MAX_IDS: usize = 1_000;
    /// Senders retry for up to a day or more (Standard Webhooks schedules run about 27 h).
    pub const MAX_AGE_MS: i64 = 3 * 24 * 3600 * 1000;

    fn remember(&mut self, key: &str, at: UnixMillis) {
        remember_recent(&mut self.recent, key, at, Self::MAX_IDS, Self::MAX_AGE_MS);
    }
}

/// Appends `id` unless it is there, then forgets the oldest past `max_ids` or `max_age_ms`.
fn remember_recent(
    recent: &mut VecDeque<(String, UnixMillis)>,
    id: &str,
    at: UnixMillis,
    max_ids: usize,
    max_age_ms: i64,
) {
    if recent.iter().rev().any(|(seen, _)| seen == id) {
        return;
    }
    recent.push_back((id.to_owned(), at));
    while recent.len() > max_ids
        || recent
            .front()
            .is_some_and(|(_, first)| at.0.saturating_sub(first.0) > max_age_ms)
    {
        recent.pop_front();
    }
}

/// Each cron schedule's last fire time (Unix ms), by [`CronCursor::key`].
///
/// ```
/// use openflume_proto::CronCursor;
/// let mut cursor = CronCursor::default();
/// cursor.last_fire.insert(CronCursor::key("tick", "*/5 * * * *"), 1_764_000_000_000);
/// assert_eq!(cursor.last_fire["tick */5 * * * *"], 1_764_000_000_000);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CronCursor {
    /// Last fire time by schedule key.
    pub last_fire: BTreeMap<String, i64>,
}

impl CronCursor {
    /// A schedule's key: its event type and expression (several schedules share the source `time`).
    pub fn key(event_type: &str, expression: &str) -> String {
        format!("{event_type} {expression}")
    }
}

/// What a cron schedule does at start with the fire times it missed while the process was down,
/// counted from its stored last fire and at most 24 hours back.
///
/// ```
/// use openflume_proto::CatchUp;
/// assert_eq!("all".parse::<CatchUp>(), Ok(CatchUp::All));
/// assert_eq!(CatchUp::default(), CatchUp::Last);
/// assert_eq!(CatchUp::Off.to_string(), "off");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Fire nothing missed; the next fire is the next scheduled time.
    Off,
    /// Fire once, for the latest missed time (as after a suspended laptop).
    #[default]
    Last,
    /// Fire every missed time, oldest first.
    All,
}

impl CatchUp {
    /// How far back a catch-up looks.
    pub const WINDOW_MS: i64 = 24 * 3600 * 1000;
}

impl std::fmt::Display for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CatchUp::Off => "off",
            CatchUp::Last => "last",
            CatchUp::All => "all",
        })
    }
}

impl std::str::FromStr for CatchUp {
    type Err = String;
    fn from_str(text: &str) -> Result<CatchUp, String> {
        match text {
            "off" => Ok(CatchUp::Off),
            "last" => Ok(CatchUp::Last),
            "all" => Ok(CatchUp::All),
            other => Err(format!("{other:?} is not off, last or all")),
        }
    }
}

/// Every source's cursor, folded from held items and machines' checkpoints, with a note of which
/// changed since they were last taken for storage.
///
/// ```
/// use openflume_proto::{Checkpoint, Cursors, Event, Item, RawJson, UnixMillis};
/// let mut cursors = Cursors::default();
/// let mut event = Event::new("slack", "events_api", RawJson::null(), UnixMillis(1_000));
/// event.meta.insert("event_id".into(), "Ev1".into());
/// cursors.observe(&Item::Event(event));
/// let changed = cursors.take_changed();
/// assert!(matches!(&changed[..], [(source, Checkpoint::Slack(_))] if source == "slack"));
/// assert!(cursors.take_changed().is_empty()); // nothing new since
/// ```
#[derive(Clone, Debug, Default)]
pub struct Cursors {
    by_source: BTreeMap<String, Checkpoint>,
    changed: BTreeSet<String>,
}

impl Cursors {
    /// Starts from a stored cursor (not marked changed).
    pub fn restore(&mut self, source: impl Into<String>, checkpoint: Checkpoint) {
        self.by_source.insert(source.into(), checkpoint);
    }

    /// The cursor of `source`, if any.
    pub fn get(&self, source: &str) -> Option<&Checkpoint> {
        self.by_source.get(source)
    }

    /// Every cursor with its key, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Checkpoint)> {
        self.by_source
            .iter()
            .map(|(key, checkpoint)| (key.as_str(), checkpoint))
    }

    /// The key of one shard's cursor: `source`, a colon, and the shard's `meta.shard`
    /// (`"ID/COUNT"`).
    ///
    /// ```
    /// use openflume_proto::Cursors;
    /// assert_eq!(Cursors::shard_key("discord", "3/8"), "discord:3/8");
    /// assert_eq!(Cursors::parse_shard_key("discord", "discord:3/8"), Some((3, 8)));
    /// assert_eq!(Cursors::parse_shard_key("discord", "discord"), None);
    /// ```
    pub fn shard_key(source: &str, shard: &str) -> String {
        format!("{source}:{shard}")
    }

    /// `(shard id, shard count)` of a [`shard_key`](Self::shard_key) of `source`.
    pub fn parse_shard_key(source: &str, key: &str) -> Option<(u32, u32)> {
        let shard = key.strip_prefix(source)?.strip_prefix(':')?;
        parse_shard(shard)
    }

    /// A machine's checkpoint (`Output::Checkpoint`) replaces its source's cursor.
    pub fn apply(&mut self, source: &str, checkpoint: Checkpoint) {
        self.by_source.insert(source.to_owned(), checkpoint);
        self.changed.insert(source.to_owned());
    }

    /// Folds one held item into its source's cursor. Only events move cursors; each is
    /// recognised by the meta its machine stamps (a Discord `seq`, a GitHub `thread_id` and
    /// `updated_at`, a Slack `event_id`, a cron `fired_at`).
    pub fn observe(&mut self, item: &Item) {
        let Item::Event(event) = item else {
            return;
        };
        // A webhook delivery's key is the ingress's to keep, whatever source the event is of.
        let webhook_key = event
            .meta
            .contains_key("delivery_id")
            .then(|| crate::webhook::redelivery_key(event))
            .flatten();
        let (owner, folded) = match webhook_key {
            Some(key) => {
                let owner = crate::webhook::SOURCE;
                (
                    Cow::Borrowed(owner),
                    fold_delivery(self.by_source.get_mut(owner), &key, event),
                )
            }
            None => {
                let owner = match event.meta.get("shard").filter(|s| parse_shard(s).is_some()) {
                    Some(shard) => Cow::Owned(Cursors::shard_key(&event.source, shard)),
                    None => Cow::Borrowed(event.source.as_ref()),
                };
                let folded = fold(self.by_source.get_mut(owner.as_ref()), event);
                (owner, folded)
            }
        };
        let owner = owner.as_ref();
        let changed = match folded {
            Fold::Unchanged => false,
            Fold::Updated => true,
            Fold::New(checkpoint) => {
                self.by_source.insert(owner.to_owned(), checkpoint);
                true
            }
        };
        if changed && !self.changed.contains(owner) {
            self.changed.insert(owner.to_owned());
        }
    }

    /// The cursors that changed since the last call, for storage.
    pub fn take_changed(&mut self) -> Vec<(String, Checkpoint)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|source| {
                let checkpoint = self.by_source.get(&source)?.clone();
                Some((source, checkpoint))
            })
            .collect()
    }
}

/// `(id, count)` of a `meta.shard` (`"ID/COUNT"`, id below count).
fn parse_shard(shard: &str) -> Option<(u32, u32)> {
    let (id, count) = shard.split_once('/')?;
    let (id, count) = (id.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
    (id < count).then_some((id, count))
}

enum Fold {
    Unchanged,
    Updated,
    New(Checkpoint),
}

fn fold(current: Option<&mut Checkpoint>, event: &Event) -> Fold {
    let meta = |key: &str| event.meta.get(key).map(String::as_str);
    #[cfg(feature = "discord")]
    if let Some(seq) = meta("seq").and_then(|s| s.parse::<u64>().ok()) {
        return fold_discord(current, event, seq);
    }
    if let (Some(thread), Some(updated)) = (meta("thread_id"), meta("updated_at")) {
        let key = (thread.to_owned(), updated.to_owned());
        return match current {
            Some(Checkpoint::Github(cursor)) => {
                cursor.remember(key);
                Fold::Updated
            }
            _ => {
                let mut cursor = GithubCursor::default();
                cursor.remember(key);
                Fold::New(Checkpoint::Github(cursor))
            }
        };
    }
    if let Some(id) = meta("event_id") {
        return match current {
            Some(Checkpoint::Slack(cursor)) => {
                cursor.remember(id, event.received_at);
                Fold::Updated
            }
            _ => {
                let mut cursor = SlackCursor::default();
                cursor.remember(id, event.received_at);
                Fold::New(Checkpoint::Slack(cursor))
            }
        };
    }
    if let (Some(cron), Some(fired)) = (
        meta("cron"),
        meta("fired_at").and_then(|f| f.parse::<i64>().ok()),
    ) {
        let key = CronCursor::key(&event.event_type, cron);
        return match current {
            Some(Checkpoint::Cron(cursor)) => {
                cursor.last_fire.insert(key, fired);
                Fold::Updated
            }
            _ => {
                let mut cursor = CronCursor::default();
                cursor.last_fire.insert(key, fired);
                Fold::New(Checkpoint::Cron(cursor))
            }
        };
    }
    Fold::Unchanged
}

fn fold_delivery(current: Option<&mut Checkpoint>, key: &str, event: &Event) -> Fold {
    match current {
        Some(Checkpoint::Webhooks(cursor)) => {
            cursor.remember(key, event.received_at);
            Fold::Updated
        }
        _ => {
            let mut cursor = WebhookCursor::default();
            cursor.remember(key, event.received_at);
            Fold::New(Checkpoint::Webhooks(cursor))
        }
    }
}

/// READY starts a session (its data names it); every later dispatch moves its `seq`.
#[cfg(feature = "discord")]
fn fold_discord(current: Option<&mut Checkpoint>, event: &Event, seq: u64) -> Fold {
    if event.event_type == "READY" {
        #[derive(Deserialize)]
        struct Ready {
            session_id: String,
            resume_gateway_url: String,
        }
        if let Ok(ready) = serde_json::from_str::<Ready>(event.data.get()) {
            return Fold::New(Checkpoint::DiscordSession(crate::discord::ResumeState {
                session_id: ready.session_id,
                resume_gateway_url: ready.resume_gateway_url,
                seq,
            }));
        }
    }
    match current {
        Some(Checkpoint::DiscordSession(session)) if session.seq != seq => {
            session.seq = seq;
            Fold::Updated
        }
        _ => Fold::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawJson;

    fn event(source: &'static str, kind: &str, data: &str, meta: &[(&'static str, &str)]) -> Item {
        let mut event = Event::new(
            source,
            kind,
            RawJson::from_str(data).unwrap(),
            UnixMillis(0),
        );
        for (key, value) in meta {
            event.meta.insert((*key).into(), (*value).to_owned());
        }
        Item::Event(event)
    }

    #[cfg(feature = "discord")]
    #[test]
    fn discord_ready_starts_a_session_and_dispatches_move_its_seq() {
        let mut cursors = Cursors::default();
        // A dispatch before any READY (a resumed session not stored): nothing to move.
        cursors.observe(&event("discord", "MESSAGE_CREATE", "{}", &[("seq", "3")]));
        assert!(cursors.take_changed().is_empty());
        let ready = r#"{"session_id":"s1","resume_gateway_url":"wss://r.example","user":{}}"#;
        cursors.observe(&event("discord", "READY", ready, &[("seq", "1")]));
        cursors.observe(&event("discord", "GUILD_CREATE", "{}", &[("seq", "2")]));
        let changed = cursors.take_changed();
        let [(_, Checkpoint::DiscordSession(session))] = &changed[..] else {
            panic!("{changed:?}");
        };
        assert_eq!(
            (session.session_id.as_str(), session.seq),
            ("s1", 2),
            "the seq of the last held event"
        );
        assert_eq!(session.resume_gateway_url, "wss://r.example");
    }

    #[cfg(feature = "discord")]
    #[test]
    fn each_shard_keeps_its_own_session() {
        let mut cursors = Cursors::default();
        let ready =
            |id: &str| format!(r#"{{"session_id":"{id}","resume_gateway_url":"wss://r.example"}}"#);
        cursors.observe(&event(
            "discord",
            "READY",
            &ready("s0"),
            &[("seq", "1"), ("shard", "0/2")],
        ));
        cursors.observe(&event(
            "discord",
            "READY",
            &ready("s1"),
            &[("seq", "1"), ("shard", "1/2")],
        ));
        cursors.observe(&event(
            "discord",
            "MESSAGE_CREATE",
            "{}",
            &[("seq", "5"), ("shard", "1/2")],
        ));
        cursors.observe(&event(
            "discord",
            "MESSAGE_CREATE",
            "{}",
            &[("seq", "2"), ("shard", "0/2")],
        ));
        let mut changed = cursors.take_changed();
        changed.sort_by(|a, b| a.0.cmp(&b.0));
        let sessions: Vec<(&str, &str, u64)> = changed
            .iter()
            .map(|(key, checkpoint)| match checkpoint {
                Checkpoint::DiscordSession(s) => (key.as_str(), s.session_id.as_str(), s.seq),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            sessions,
            [("discord:0/2", "s0", 2), ("discord:1/2", "s1", 5)]
        );
        assert!(cursors.get("discord").is_none(), "no single-shard cursor");
        // A malformed shard falls back to the source's own key.
        cursors.observe(&event(
            "discord",
            "READY",
            &ready("x"),
            &[("seq", "1"), ("shard", "2/2")],
        ));
        assert!(cursors.get("discord").is_some());
    }

    #[test]
    fn github_keys_are_kept_once_and_bounded() {
        let mut cursors = Cursors::default();
        cursors.apply(
            "github",
            Checkpoint::Github(GithubCursor {
                etag: Some("W/\"1\"".into()),
                ..GithubCursor::default()
            }),
        );
        for _ in 0..2 {
            let meta = [("thread_id", "7"), ("updated_at", "2026-01-01T00:00:00Z")];
            cursors.observe(&event("github", "notification", "{}", &meta));
        }
        let Some(Checkpoint::Github(cursor)) = cursors.get("github") else {
            panic!()
        };
        assert_eq!(cursor.seen.len(), 1);
        assert_eq!(cursor.etag.as_deref(), Some("W/\"1\""), "validators kept");

        let mut big = GithubCursor::default();
        for n in 0..GithubCursor::MAX_SEEN + 5 {
            big.remember((n.to_string(), "t".into()));
        }
        assert_eq!(big.seen.len(), GithubCursor::MAX_SEEN);
        assert_eq!(big.seen[0].0, "5", "the oldest go first");
    }

    #[test]
    fn slack_ids_expire_by_count_and_age() {
        let mut cursor = SlackCursor::default();
        cursor.remember("old", UnixMillis(0));
        cursor.remember("new", UnixMillis(SlackCursor::MAX_AGE_MS + 1));
        assert_eq!(cursor.recent.len(), 1);
        for n in 0..SlackCursor::MAX_IDS + 1 {
            cursor.remember(&n.to_string(), UnixMillis(SlackCursor::MAX_AGE_MS + 2));
        }
        assert_eq!(cursor.recent.len(), SlackCursor::MAX_IDS);
    }

    #[test]
    fn cron_fires_are_kept_per_schedule() {
        let mut cursors = Cursors::default();
        let tick = |kind, cron, at| event("time", kind, "{}", &[("cron", cron), ("fired_at", at)]);
        cursors.observe(&tick("tick", "* * * * *", "60000"));
        cursors.observe(&tick("report", "0 9 * * *", "32400000"));
        cursors.observe(&tick("tick", "* * * * *", "120000"));
        let Some(Checkpoint::Cron(cursor)) = cursors.get("time") else {
            panic!()
        };
        assert_eq!(cursor.last_fire["tick * * * * *"], 120_000);
        assert_eq!(cursor.last_fire["report 0 9 * * *"], 32_400_000);
    }

    #[test]
    fn webhook_deliveries_are_the_ingress_s_to_keep() {
        let mut cursors = Cursors::default();
        cursors.observe(&event("github", "push", "{}", &[("delivery_id", "d1")]));
        cursors.observe(&event("custom", "deploys", "{}", &[("delivery_id", "m1")]));
        let Some(Checkpoint::Webhooks(cursor)) = cursors.get("webhooks") else {
            panic!("{:?}", cursors.take_changed())
        };
        let keys: Vec<&str> = cursor.recent.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["github:d1", "custom:deploys:m1"]);
        assert!(cursors.get("github").is_none(), "not a notification cursor");
    }

    #[test]
    fn logs_and_unknown_events_move_nothing() {
        let mut cursors = Cursors::default();
        cursors.observe(&event("custom", "x", "{}", &[]));
        let log = crate::Log::new(crate::Level::Info, "slack", "a", "b", UnixMillis(0));
        cursors.observe(&Item::Log(log));
        assert!(cursors.take_changed().is_empty());
    }
}
