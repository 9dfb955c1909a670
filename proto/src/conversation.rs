//! Conversation keys: one stable string per conversation, the same whichever ingress (Socket Mode,
//! Gateway, notifications polling, a webhook later) saw the item, so a consumer can route and
//! group items by conversation without knowing each platform's shape. Items that belong to one
//! carry it as `meta.conversation_key`.
//!
//! The formats are versioned (`v1`) and stable: a change of shape gets a new version.
//!
//! | Platform | Key | When |
//! |---|---|---|
//! | Slack | `slack:v1:<team>:<channel>:<thread_ts or ts>` | an event with a channel and a `thread_ts` or `ts` |
//! | Slack | `slack:v1:<team>:<channel>` | a channel but no `thread_ts` nor `ts` (a slash command) |
//! | GitHub | `github:v1:owner:<owner>:repo:<repo>:issue:<n>` | an issue or a pull request (one number space, so both say `issue`) |
//! | Discord | `discord:v1:<guild_id or @me>:<channel_id>` | a dispatch with a `channel_id` (a thread is a channel of its own) |
//!
//! Ids are kept verbatim: nothing is lowercased or trimmed. So that a part can never be mistaken
//! for two, the only escaping is that `%` becomes `%25` and `:` becomes `%3A` inside a part (ids
//! of all three platforms contain neither, so real keys read exactly as the table says). An
//! empty part means there is no key.

use std::borrow::Cow;

/// A part of a key with `%` and `:` percent-escaped, so the `:` separators stay unambiguous.
fn part(text: &str) -> Cow<'_, str> {
    if !text.contains([':', '%']) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            ':' => escaped.push_str("%3A"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// The key of a Slack conversation: a thread (`thread` is its `thread_ts`, or the message's own
/// `ts`, which starts a thread), or the whole channel when `thread` is `None`. `None` when the
/// team or the channel is empty.
///
/// ```
/// use openflume_proto::conversation;
/// assert_eq!(
///     conversation::slack("T0TEAM", "C1", Some("1764100001.000100")).as_deref(),
///     Some("slack:v1:T0TEAM:C1:1764100001.000100")
/// );
/// assert_eq!(conversation::slack("T0TEAM", "C2", None).as_deref(), Some("slack:v1:T0TEAM:C2"));
/// assert_eq!(conversation::slack("", "C2", None), None);
/// // A ':' inside a part is escaped, so it cannot pass for a separator.
/// assert_eq!(conversation::slack("T:1", "C%", None).as_deref(), Some("slack:v1:T%3A1:C%25"));
/// ```
pub fn slack(team: &str, channel: &str, thread: Option<&str>) -> Option<String> {
    if team.is_empty() || channel.is_empty() {
        return None;
    }
    let mut key = format!("slack:v1:{}:{}", part(team), part(channel));
    if let Some(thread) = thread.filter(|t| !t.is_empty()) {
        key.push(':');
        key.push_str(&part(thread));
    }
    Some(key)
}

/// The key of a GitHub issue or pull request `number` in `owner/repo`.
///
/// ```
/// use openflume_proto::conversation;
/// assert_eq!(conversation::github("octo", "app", 42), "github:v1:owner:octo:repo:app:issue:42");
/// ```
pub fn github(owner: &str, repo: &str, number: u64) -> String {
    format!(
        "github:v1:owner:{}:repo:{}:issue:{number}",
        part(owner),
        part(repo)
    )
}

/// The key of the issue or pull request a notification's `subject.url` names
/// (`…/repos/OWNER/REPO/issues/N` or `…/pulls/N`, on api.github.com or an Enterprise
/// `…/api/v3`); `None` for any other subject (a release, a discussion, a commit).
///
/// ```
/// use openflume_proto::conversation;
/// let key = conversation::github_subject_url("https://api.github.com/repos/octo/app/pulls/42");
/// assert_eq!(key.as_deref(), Some("github:v1:owner:octo:repo:app:issue:42"));
/// assert_eq!(conversation::github_subject_url("https://api.github.com/repos/octo/app/releases/1"), None);
/// ```
pub fn github_subject_url(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let after = &path[path.find("/repos/")? + "/repos/".len()..];
    let mut segments = after.split('/');
    let (owner, repo, kind, number) = (
        segments.next()?,
        segments.next()?,
        segments.next()?,
        segments.next()?,
    );
    if segments.next().is_some_and(|rest| !rest.is_empty())
        || owner.is_empty()
        || repo.is_empty()
        || !matches!(kind, "issues" | "pulls")
        || !number.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(github(owner, repo, number.parse().ok()?))
}

/// The key of a Discord channel: `guild_id`, or `@me` for a direct message, then the channel.
/// `None` when the channel is empty.
///
/// ```
/// use openflume_proto::conversation;
/// assert_eq!(
///     conversation::discord(Some("1200000000000000001"), "1300000000000000001").as_deref(),
///     Some("discord:v1:1200000000000000001:1300000000000000001")
/// );
/// assert_eq!(conversation::discord(None, "13").as_deref(), Some("discord:v1:@me:13"));
/// ```
pub fn discord(guild_id: Option<&str>, channel_id: &str) -> Option<String> {
    if channel_id.is_empty() {
        return None;
    }
    let guild = guild_id.filter(|g| !g.is_empty()).unwrap_or("@me");
    Some(format!("discord:v1:{}:{}", part(guild), part(channel_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_subject_urls() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "https://api.github.com/repos/octo/app/issues/7",
                Some("github:v1:owner:octo:repo:app:issue:7"),
            ),
            (
                "https://api.github.com/repos/Octo-Org/My.App/pulls/42",
                Some("github:v1:owner:Octo-Org:repo:My.App:issue:42"),
            ),
            (
                "https://ghe.example/api/v3/repos/o/r/issues/1",
                Some("github:v1:owner:o:repo:r:issue:1"),
            ),
            (
                "https://api.github.com/repos/o/r/issues/1/",
                Some("github:v1:owner:o:repo:r:issue:1"),
            ),
            ("https://api.github.com/repos/o/r/issues/1/comments", None),
            ("https://api.github.com/repos/o/r/issues/x1", None),
            ("https://api.github.com/repos/o/r/issues/", None),
            ("https://api.github.com/repos/o/r/commits/abc", None),
            ("https://api.github.com/repos//r/issues/1", None),
            (
                "https://api.github.com/repos/o/r/issues/99999999999999999999999",
                None,
            ),
            ("", None),
        ];
        for (url, expected) in cases {
            assert_eq!(github_subject_url(url).as_deref(), *expected, "{url}");
        }
    }

    #[test]
    fn parts_cannot_run_together() {
        // Without escaping these two would both read "slack:v1:T:a:b".
        assert_ne!(slack("T", "a:b", None), slack("T", "a", Some("b")));
        assert_eq!(part("100%:x"), "100%25%3Ax");
        assert_eq!(discord(Some(""), "1").as_deref(), Some("discord:v1:@me:1"));
        assert_eq!(discord(Some("1"), ""), None);
    }
}
