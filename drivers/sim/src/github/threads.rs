//! The notification threads: a fixed set of repositories, subjects and reasons, new threads
//! and new activity, and each rendered as GitHub renders it.

use super::{Github, State};
use crate::fake;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

/// A repository threads belong to.
pub(super) struct Repo {
    pub(super) id: u64,
    pub(super) owner: &'static str,
    pub(super) owner_id: u64,
    pub(super) owner_type: &'static str,
    pub(super) name: &'static str,
    pub(super) description: &'static str,
}

pub(super) const REPOS: &[Repo] = &[
    Repo {
        id: 812_340_001,
        owner: "openflume",
        owner_id: 170_000_001,
        owner_type: "Organization",
        name: "openflume",
        description: "One typed firehose of Discord, Slack, GitHub and cron events",
    },
    Repo {
        id: 812_340_002,
        owner: "octo-org",
        owner_id: 170_000_002,
        owner_type: "Organization",
        name: "deploy-tools",
        description: "Release automation",
    },
    Repo {
        id: 812_340_003,
        owner: "ada",
        owner_id: 170_000_003,
        owner_type: "User",
        name: "notes",
        description: "",
    },
];

pub(super) const SUBJECTS: &[(&str, &str)] = &[
    ("PullRequest", "Follow Link headers exactly as given"),
    ("Issue", "Heartbeat ACK timeout too tight on slow links"),
    ("PullRequest", "Reset the zlib context on every reconnect"),
    ("Release", "v0.4.0"),
    ("Issue", "Slack refresh leaves a five second gap"),
    ("Discussion", "Ideas for the next release"),
    ("CheckSuite", "CI workflow run failed for main branch"),
];

pub(super) const REASONS: &[&str] = &[
    "review_requested",
    "mention",
    "subscribed",
    "comment",
    "author",
    "assign",
    "state_change",
    "ci_activity",
    "team_mention",
];

pub(super) struct Thread {
    pub(super) id: u64,
    pub(super) unread: bool,
    pub(super) reason: &'static str,
    pub(super) updated_at: Timestamp,
    pub(super) last_read_at: Option<Timestamp>,
    pub(super) subject: usize,
    pub(super) number: u64,
    pub(super) comment: Option<u64>,
    pub(super) repo: usize,
}

impl State {
    /// Threads newest first (by `updated_at`, then id).
    pub(super) fn sorted(&self) -> Vec<&Thread> {
        let mut threads: Vec<&Thread> = self.threads.iter().collect();
        threads.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        threads
    }

    /// Adds a thread updated at `at`, dropping the oldest beyond `max`.
    pub(super) fn add_at(&mut self, at: Timestamp, max: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let rng = &mut self.rng;
        let subject = rng.usize(..SUBJECTS.len());
        let thread = Thread {
            id,
            unread: true,
            reason: REASONS
                .get(rng.usize(..REASONS.len()))
                .copied()
                .unwrap_or("subscribed"),
            updated_at: Timestamp::from_second(at.as_second()).unwrap_or(at),
            last_read_at: None,
            subject,
            number: rng.u64(1..2000),
            comment: rng.bool().then(|| rng.u64(2_000_000_000..3_000_000_000)),
            repo: rng.usize(..REPOS.len()),
        };
        if self.threads.len() >= max.max(1)
            && let Some(oldest) = self
                .threads
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| (t.updated_at, t.id))
                .map(|(index, _)| index)
        {
            self.threads.remove(oldest);
        }
        self.threads.push(thread);
        id
    }

    /// Moves `Last-Modified` for a change now, strictly forward at one-second resolution.
    pub(super) fn changed(&mut self, now: Timestamp) {
        let next = self
            .last_modified
            .as_second()
            .saturating_add(1)
            .max(now.as_second());
        self.last_modified = Timestamp::from_second(next).unwrap_or(now);
    }
}

impl Github {
    pub(super) fn render(&self, thread: &Thread) -> Value {
        let base = &self.base;
        let repo = REPOS.get(thread.repo).unwrap_or(&REPOS[0]);
        let (kind, title) = SUBJECTS.get(thread.subject).copied().unwrap_or(SUBJECTS[0]);
        let full_name = format!("{}/{}", repo.owner, repo.name);
        let repo_api = format!("{base}/repos/{full_name}");
        let subject_url = match kind {
            "PullRequest" => Some(format!("{repo_api}/pulls/{}", thread.number)),
            "Issue" => Some(format!("{repo_api}/issues/{}", thread.number)),
            "Release" => Some(format!("{repo_api}/releases/{}", thread.number)),
            // GitHub gives no API URL for these.
            _ => None,
        };
        let latest_comment_url = match (&subject_url, thread.comment) {
            (Some(_), Some(comment)) => Some(format!("{repo_api}/issues/comments/{comment}")),
            (url, None) => url.clone(),
            (None, Some(_)) => None,
        };
        let id = thread.id.to_string();
        json!({
            "id": id,
            "repository": repository(base, repo),
            "subject": {
                "title": title,
                "url": subject_url,
                "latest_comment_url": latest_comment_url,
                "type": kind,
            },
            "reason": thread.reason,
            "unread": thread.unread,
            "updated_at": fake::github_time(thread.updated_at),
            "last_read_at": thread.last_read_at.map(fake::github_time),
            "url": format!("{base}/notifications/threads/{id}"),
            "subscription_url": format!("{base}/notifications/threads/{id}/subscription"),
        })
    }
}

/// A minimal repository object with GitHub's URL templates.
pub(super) fn repository(base: &str, repo: &Repo) -> Value {
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let api = format!("{base}/repos/{full_name}");
    let user = format!("{base}/users/{}", repo.owner);
    let mut owner = Map::new();
    for (key, value) in [
        ("login", json!(repo.owner)),
        ("id", json!(repo.owner_id)),
        (
            "node_id",
            json!(format!("O_kgDO{:08}", repo.owner_id % 100_000_000)),
        ),
        (
            "avatar_url",
            json!(format!(
                "https://avatars.githubusercontent.com/u/{}?v=4",
                repo.owner_id
            )),
        ),
        ("gravatar_id", json!("")),
        ("url", json!(user)),
        (
            "html_url",
            json!(format!("https://github.com/{}", repo.owner)),
        ),
        ("followers_url", json!(format!("{user}/followers"))),
        (
            "following_url",
            json!(format!("{user}/following{{/other_user}}")),
        ),
        ("gists_url", json!(format!("{user}/gists{{/gist_id}}"))),
        (
            "starred_url",
            json!(format!("{user}/starred{{/owner}}{{/repo}}")),
        ),
        ("subscriptions_url", json!(format!("{user}/subscriptions"))),
        ("organizations_url", json!(format!("{user}/orgs"))),
        ("repos_url", json!(format!("{user}/repos"))),
        ("events_url", json!(format!("{user}/events{{/privacy}}"))),
        (
            "received_events_url",
            json!(format!("{user}/received_events")),
        ),
        ("type", json!(repo.owner_type)),
        ("user_view_type", json!("public")),
        ("site_admin", json!(false)),
    ] {
        owner.insert(key.to_owned(), value);
    }
    let mut object = Map::new();
    for (key, value) in [
        ("id", json!(repo.id)),
        (
            "node_id",
            json!(format!("R_kgDO{:08}", repo.id % 100_000_000)),
        ),
        ("name", json!(repo.name)),
        ("full_name", json!(full_name)),
        ("private", json!(false)),
        ("owner", Value::Object(owner)),
        ("html_url", json!(format!("https://github.com/{full_name}"))),
        (
            "description",
            if repo.description.is_empty() {
                Value::Null
            } else {
                json!(repo.description)
            },
        ),
        ("fork", json!(false)),
        ("url", json!(api)),
    ] {
        object.insert(key.to_owned(), value);
    }
    for (key, suffix) in [
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ] {
        object.insert(key.to_owned(), json!(format!("{api}{suffix}")));
    }
    Value::Object(object)
}
