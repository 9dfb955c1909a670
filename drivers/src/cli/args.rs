//! The command line, as clap types. `--help` is generated from these doc comments.

use super::output::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Listen to Discord, Slack, GitHub and cron, and print one merged firehose of events and logs
/// as JSON Lines (one item per line on stdout; diagnostics on stderr).
///
/// Exit codes: 0 after a clean stop (SIGINT/SIGTERM or --count reached), 1 when the sources
/// could not start or all failed (the reason is printed on stderr), 2 for a usage or
/// configuration error.
#[derive(Debug, Parser)]
#[command(
    name = "openflume",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Listen to the sources enabled by their credentials and print the firehose.
    Listen(Box<ListenArgs>),
    /// Cron expression tools.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Run the local simulators and listen to them: a live demo with no credentials and no network.
    Demo(DemoArgs),
    /// Run local simulators of Discord, Slack and GitHub for manual testing and print their URLs.
    Sim(SimArgs),
    /// Print a shell completion script, e.g. `openflume completions bash > ~/.local/share/bash-completion/completions/openflume`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `openflume man | man -l -`; `openflume man listen` for a
    /// subcommand's page.
    Man {
        /// The subcommand whose page to print (default: the top-level page).
        command: Option<String>,
    },
    /// Read the durable event log.
    #[command(subcommand)]
    Log(LogCommand),
    /// Run the sources into the durable log and serve the hub (/ws), the webhook channels and
    /// the health endpoints on one port.
    Serve(Box<ServeArgs>),
    /// Replay a recording (`listen --record FILE`): the same machines over the recorded inputs,
    /// printing the firehose the live run printed.
    Replay(Box<super::replay::ReplayArgs>),
    /// Print a Redis consumer group's items as JSON Lines, acknowledging each once written: one
    /// worker of the group (see `serve --sink redis://…`).
    Consume(ConsumeArgs),
}

/// `openflume consume`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each item is printed exactly as `listen` prints it, with a top-level \"event_id\" added first: the Redis stream id, a string such as \"1764100000000-0\". An entry is acknowledged (XACK) only after its line was flushed to stdout, so delivery is at least once: a consumer killed before its XACK leaves the entry pending, and after --claim-idle another member of the group claims it (XAUTOCLAIM) and prints it again. Readers that must not act twice key on event_id.

A missing group is created at the stream's first entry (XGROUP CREATE … 0 MKSTREAM): a new group reads everything the stream still holds. To start a group at the end instead, create it first: `redis-cli XGROUP CREATE STREAM GROUP $ MKSTREAM`.

Exit status: 0 after SIGINT or SIGTERM, or when stdout's reader goes away; 1 when Redis kept failing for 30 s (or stdout cannot be written); 2 for a usage error."
)]
pub(crate) struct ConsumeArgs {
    /// The Redis server: redis://[USER:PASSWORD@]HOST[:PORT][/DB].
    #[arg(long, value_name = "URL", env = "OPENFLUME_REDIS")]
    pub(crate) redis: String,
    /// The stream's key (what `serve --sink redis://HOST/STREAM` appends to).
    #[arg(long, value_name = "S")]
    pub(crate) stream: String,
    /// The consumer group: its members share the stream, each entry going to one of them.
    #[arg(long, value_name = "G")]
    pub(crate) group: String,
    /// This member's name in the group. Default: HOSTNAME-PID, a new member each run; give a
    /// stable name to have a restart print its own unacknowledged entries first.
    #[arg(long, value_name = "NAME")]
    pub(crate) consumer: Option<String>,
    /// Claim entries another member has held unacknowledged this long (a dead worker's), e.g.
    /// 30s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(crate) claim_idle: std::time::Duration,
}

/// `openflume serve`.
#[derive(Debug, Args)]
#[command(
    mut_arg("http", |arg| arg
        .default_value("127.0.0.1:8787")
        .help("Serve on this address: PORT or HOST:PORT (a bare port, or no host, binds \
               127.0.0.1). The status page (/), /healthz, /readyz, /metrics and /ws (the hub) \
               are always served; each webhook channel when its secret is set. A non-loopback \
               address needs a hub token.")),
    after_help = "Every item is appended to the durable log in --data (with --sink redis://…, to a Redis Stream instead); an event is acknowledged upstream (a Slack ack, a GitHub cursor, a webhook's 200) only once its append is committed. Nothing is printed on stdout; read the log with `openflume log tail` or the hub.

The hub: connect to ws://ADDR/ws with `Authorization: Bearer TOKEN` (when a token is set), send {\"type\":\"hello\",\"after_event_id\":N} (or \"consumer\":\"NAME\"), and receive {\"type\":\"item\",\"event_id\":…,\"item\":…} frames: the replay from the log, then live items, with no gap and no duplicate.

Operations: http://ADDR/ is a status page (sources, rates, the last events live, hub subscribers, forward targets; with a token, open http://ADDR/#token=TOKEN), /metrics is in the Prometheus text format, /status.json is what the page reads. With a token, /metrics and /status.json want it as a bearer token too; /healthz and /readyz never do.

Exit status: 0 after SIGINT or SIGTERM (hub clients are closed with 1001); 1 when the log cannot be opened or the port cannot be bound; 2 for a usage error (a non-loopback --http without a hub token among them)."
)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) source: SourceArgs,
    /// The data directory that holds the log (log.sqlite). Default: $XDG_DATA_HOME/openflume, or
    /// ~/.local/share/openflume when XDG_DATA_HOME is not set.
    #[arg(
        long,
        value_name = "DIR",
        env = "OPENFLUME_DATA",
        help_heading = "Serve"
    )]
    pub(crate) data: Option<std::path::PathBuf>,
    /// A file holding the bearer token hub clients must send (one trailing newline is trimmed);
    /// or set OPENFLUME_HUB_TOKEN. Without one, only a loopback address is served.
    #[arg(
        long,
        value_name = "FILE",
        env = "OPENFLUME_HUB_TOKEN_FILE",
        help_heading = "Serve"
    )]
    pub(crate) token_file: Option<std::path::PathBuf>,
    /// Delete the log's items received longer ago than this (e.g. 7d, 24h), oldest first; at
    /// most once a second. Default: kept for ever. Named consumers behind it miss what it deletes
    /// (a warn log says so).
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_duration,
        env = "OPENFLUME_RETENTION_AGE",
        help_heading = "Serve"
    )]
    pub(crate) retention_age: Option<std::time::Duration>,
    /// Delete the log's oldest items while the database holds more than this (e.g. 10G, 512M,
    /// 1000000 bytes), down to 90% of it; the file keeps its size and reuses the pages. The
    /// database's own tables take about 0.5 MB (64 KiB pages) whatever it holds, so a limit
    /// below a few MB keeps few items. Default: no limit.
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = parse_size,
        env = "OPENFLUME_RETENTION_SIZE",
        help_heading = "Serve"
    )]
    pub(crate) retention_size: Option<u64>,
    /// Lowest log level appended to the log (logs below it are dropped at the source).
    #[arg(
        long,
        value_enum,
        default_value = "info",
        env = "OPENFLUME_LOG_LEVEL",
        help_heading = "Serve"
    )]
    pub(crate) log_level: LogLevel,
    /// POST every event to URL as it is logged, signed (repeatable; OPENFLUME_FORWARD holds one
    /// target). The HMAC secret comes from the environment variable named by secret=, or from
    /// OPENFLUME_FORWARD_SECRET; a secret starting with whsec_ is a Standard Webhooks key (base64
    /// after the prefix), any other is used as its bytes. sources= and types= keep only the
    /// events of these sources and types ('+' between names). Delivery is in order per target,
    /// at least once: a failure is retried with backoff until a 2xx or --forward-max-age, and a
    /// 410 disables the target for good. Each target's state (its cursor and retries) is kept
    /// beside the log: in --data, or with --sink redis://…/STREAM in the hash STREAM:forward,
    /// where webhook-id is the event's stream id.
    #[arg(
        long,
        value_name = "URL[,secret=ENV_VAR][,sources=S1+S2][,types=T1+T2]",
        value_parser = parse_forward,
        env = "OPENFLUME_FORWARD",
        help_heading = "Forward"
    )]
    pub(crate) forward: Vec<ForwardSpec>,
    #[command(flatten)]
    pub(crate) redis_sink: super::redis_sink::RedisSinkArgs,
    /// Give up a delivery still failing this long after its first attempt (e.g. 24h, 90m, 2d),
    /// with an error log, and go on with the next event.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "24h",
        value_parser = parse_duration,
        env = "OPENFLUME_FORWARD_MAX_AGE",
        help_heading = "Forward"
    )]
    pub(crate) forward_max_age: std::time::Duration,
    /// Serve the bundled simulators of Discord, Slack and GitHub (and a cron tick every
    /// minute) instead of real services: no credentials, no network. The source flags are
    /// ignored; --http and the hub token still apply. The log goes to a temporary directory
    /// removed at exit, unless --data is given.
    #[arg(long, help_heading = "Serve")]
    pub(crate) demo: bool,
}

/// `--forward URL[,secret=ENV_VAR][,sources=S1+S2][,types=T1+T2]`, before the secret is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ForwardSpec {
    /// The target (a comma in it must be written %2C).
    pub(crate) url: String,
    /// The environment variable holding the secret; `None` for OPENFLUME_FORWARD_SECRET.
    pub(crate) secret_var: Option<String>,
    /// Only events of these sources (lowercase, as items name them).
    pub(crate) sources: Option<Vec<String>>,
    /// Only events of these types (exact).
    pub(crate) types: Option<Vec<String>>,
}

pub(crate) fn parse_forward(text: &str) -> Result<ForwardSpec, String> {
    let mut parts = text.split(',');
    let url = parts.next().unwrap_or_default().trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "expected URL[,secret=ENV_VAR][,sources=S1+S2][,types=T1+T2] with an http:// or \
             https:// URL, got {text:?}"
        ));
    }
    let mut spec = ForwardSpec {
        url: url.to_owned(),
        secret_var: None,
        sources: None,
        types: None,
    };
    for part in parts {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let (key, value) = (key.trim(), value.trim());
        let names = || -> Result<Vec<String>, String> {
            let names: Vec<String> = value
                .split('+')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            if names.is_empty() {
                return Err(format!("{key}= needs at least one name"));
            }
            Ok(names)
        };
        let twice = |key: &str| format!("{key}= is given twice");
        match key {
            "secret" if value.is_empty() => return Err("secret= needs a variable name".into()),
            "secret" if spec.secret_var.is_some() => return Err(twice(key)),
            "secret" => spec.secret_var = Some(value.to_owned()),
            "sources" if spec.sources.is_some() => return Err(twice(key)),
            "sources" => {
                spec.sources = Some(names()?.iter().map(|s| s.to_ascii_lowercase()).collect());
            }
            "types" if spec.types.is_some() => return Err(twice(key)),
            "types" => spec.types = Some(names()?),
            _ => {
                return Err(format!(
                    "unknown option {part:?} (expected secret=ENV_VAR, sources=S1+S2 or \
                     types=T1+T2; a comma in the URL is written %2C)"
                ));
            }
        }
    }
    Ok(spec)
}

/// A size in bytes: a number, optionally with K, M, G or T (powers of 1024, `B` or `iB` after
/// it allowed); above zero.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let number = upper.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match number.chars().last() {
        Some('K') => (&number[..number.len() - 1], 10),
        Some('M') => (&number[..number.len() - 1], 20),
        Some('G') => (&number[..number.len() - 1], 30),
        Some('T') => (&number[..number.len() - 1], 40),
        _ => (number, 0),
    };
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{trimmed:?} is not a size (e.g. 10G, 512M, 1000000)"))?;
    match value.checked_mul(1 << shift) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        Some(_) => Err(format!("the size must be above zero, got {trimmed:?}")),
        None => Err(format!("{trimmed:?} is too large")),
    }
}

/// A duration such as `24h`, `90m`, `2d`, `1h30m` or ISO 8601's `PT24H` (a day is 24 hours);
/// above zero.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let refused = || format!("expected a duration such as 24h, 90m, 2d or 1h30m, got {text:?}");
    let span: jiff::Span = text.trim().parse().map_err(|_| refused())?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| refused())?;
    match std::time::Duration::try_from(duration) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("the duration must be above zero, got {text:?}")),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum LogCommand {
    /// Print the log's items as JSON Lines: each item exactly as `listen` prints it, with a
    /// top-level "event_id" added. Works while another process appends.
    ///
    /// Exit codes: 0 once everything was printed (or stdout's reader left), 1 when the log cannot
    /// be read (the reason on stderr), 2 for a usage error.
    Tail(TailArgs),
}

/// `openflume log tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The data directory that holds the log (log.sqlite). Default: $XDG_DATA_HOME/openflume, or
    /// ~/.local/share/openflume when XDG_DATA_HOME is not set.
    #[arg(long, value_name = "DIR", env = "OPENFLUME_DATA")]
    pub(crate) data: Option<std::path::PathBuf>,
    /// Print only items with an event_id above this one.
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub(crate) after: u64,
    /// Keep running and print items as they are appended.
    #[arg(long)]
    pub(crate) follow: bool,
    /// Print only items of this source (repeatable).
    #[arg(long = "source", value_name = "S")]
    pub(crate) sources: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CronCommand {
    /// Print the next fire times of a cron expression, one RFC 3339 instant per line.
    Next {
        /// The expression: 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily.
        expr: String,
        /// Start after this instant (RFC 3339, e.g. 2025-11-02T01:40:00-05:00). Default: now.
        #[arg(long)]
        after: Option<String>,
        /// How many fire times to print.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// IANA time zone to evaluate in (e.g. America/New_York). Default: the local zone.
        #[arg(long)]
        tz: Option<String>,
    },
}

/// Log levels for `--log-level`, plus `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

/// Discord transport compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Compression {
    /// zlib-stream transport compression (less bandwidth).
    ZlibStream,
    /// zstd-stream transport compression (smaller still, and cheaper to decompress).
    ZstdStream,
    /// Plain JSON text frames.
    None,
}

/// What the GitHub poller does with notifications that exist when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Bootstrap {
    /// Record them without emitting; emit only what arrives later.
    Skip,
    /// Emit them as events.
    Emit,
}

/// A Discord shard: `ID/COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) id: u32,
    pub(crate) count: u32,
}

/// `--discord-shards`: a range of a total, or the count `/gateway/bot` recommends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shards {
    /// `auto`: every shard of the recommended count.
    Auto,
    /// `FIRST-LAST/TOTAL` or `ID/TOTAL`.
    Range { first: u32, last: u32, total: u32 },
}

pub(crate) fn parse_shards(text: &str) -> Result<Shards, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Shards::Auto);
    }
    let (range, total) = text.split_once('/').ok_or_else(|| {
        format!("expected FIRST-LAST/TOTAL, ID/TOTAL or auto (e.g. 0-15/64), got {text:?}")
    })?;
    let number = |what: &str, value: &str| {
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("{what} {value:?} is not a number"))
    };
    let total = number("shard total", total)?;
    let (first, last) = match range.split_once('-') {
        Some((first, last)) => (number("first shard", first)?, number("last shard", last)?),
        None => {
            let id = number("shard id", range)?;
            (id, id)
        }
    };
    if first > last {
        return Err(format!(
            "the range must not run backwards (got {first}-{last})"
        ));
    }
    if total == 0 || last >= total {
        return Err(format!(
            "shard ids must be below the total (got {range}/{total})"
        ));
    }
    Ok(Shards::Range { first, last, total })
}

pub(crate) fn parse_shard(text: &str) -> Result<Shard, String> {
    let (id, count) = text
        .split_once('/')
        .ok_or_else(|| format!("expected ID/COUNT (e.g. 0/1), got {text:?}"))?;
    let id: u32 = id
        .trim()
        .parse()
        .map_err(|_| format!("shard id {id:?} is not a number"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("shard count {count:?} is not a number"))?;
    if count == 0 || id >= count {
        return Err(format!(
            "shard id must be below the shard count (got {id}/{count})"
        ));
    }
    Ok(Shard { id, count })
}

/// `--http`: PORT, HOST:PORT, or :PORT (no host means 127.0.0.1).
pub(crate) fn parse_http_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text.trim();
    let with_host = match text.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None if text.bytes().all(|b| b.is_ascii_digit()) => format!("127.0.0.1:{text}"),
        None => text.to_owned(),
    };
    with_host.parse().map_err(|_| {
        format!("expected PORT or HOST:PORT (e.g. 8787 or 0.0.0.0:8787), got {text:?}")
    })
}

/// `--webhook NAME=ENV_VAR`.
pub(crate) fn parse_webhook(text: &str) -> Result<(String, String), String> {
    let (name, var) = text.split_once('=').ok_or_else(|| {
        format!("expected NAME=ENV_VAR (e.g. deploys=DEPLOY_SECRET), got {text:?}")
    })?;
    let (name, var) = (name.trim(), var.trim());
    if name.is_empty() || var.is_empty() {
        return Err(format!("expected NAME=ENV_VAR, got {text:?}"));
    }
    Ok((name.to_owned(), var.to_owned()))
}

/// `openflume listen`: a source is enabled by giving its credentials.
///
/// Prefer the environment variables for tokens: flags are visible to other users in the process list.
#[derive(Debug, Args)]
#[command(
    after_help = "Sources are enabled by credentials: DISCORD_BOT_TOKEN, SLACK_APP_TOKEN, GITHUB_TOKEN (or the matching flags), --cron, or --http with a webhook secret. Each secret can come from a file instead: DISCORD_BOT_TOKEN_FILE, SLACK_APP_TOKEN_FILE, SLACK_BOT_TOKEN_FILE, GITHUB_TOKEN_FILE, SLACK_SIGNING_SECRET_FILE, GITHUB_WEBHOOK_SECRET_FILE (one trailing newline is trimmed; setting both a variable and its _FILE is a usage error). Secrets are never printed. Every other flag can be set from the OPENFLUME_… variable shown beside it.

Flags under a source's heading (Discord, Slack, GitHub, Webhooks, Time) apply to that source only: one given while its source is not enabled is warned about on stderr, and so is a flag that does nothing for an enabled source.

Items are printed as they happen, from the first status log on. Nothing is dropped: a slow reader slows the sources down (heartbeats and pings still go out), and a Slack envelope is acknowledged, or a GitHub cursor advanced, only once its line was written to stdout. With --sink redis://…/STREAM every item is appended to the Redis Stream first, with the sources' cursors, and printed once Redis has it; an acknowledgement then waits for the append, and the sources start from the cursors in Redis.

Exit status: 0 after SIGINT, SIGTERM or SIGHUP (a second SIGINT exits 130 at once), after --count events, or when stdout's reader went away; 1 when the start failed, every source failed, or stdout could not be written (the reason is on stderr); 2 for a usage error."
)]
pub(crate) struct ListenArgs {
    #[command(flatten)]
    pub(crate) source: SourceArgs,

    /// Keep the sources' cursors in DIR (log.sqlite), stored once the items they cover are
    /// written to stdout, and start from them: a Discord session is resumed, GitHub
    /// notifications that came while stopped are printed, Slack redeliveries are not printed
    /// twice, and --cron catches up. Without it, each start is a first start.
    #[arg(
        long,
        value_name = "DIR",
        env = "OPENFLUME_DATA",
        help_heading = "Durability"
    )]
    pub(crate) data: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) redis_sink: super::redis_sink::RedisSinkArgs,

    /// Only print events from these sources (case-insensitive, comma-separated): discord, slack,
    /// github, time, custom. The others are still acknowledged upstream (a Slack ack, a GitHub
    /// cursor, a webhook's 200) as if printed: nobody asked to hold them.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "SOURCES",
        env = "OPENFLUME_SOURCES",
        help_heading = "Filters"
    )]
    pub(crate) sources: Option<Vec<String>>,
    /// Only print events of these types (case-insensitive, comma-separated, e.g.
    /// MESSAGE_CREATE,events_api,notification,tick). Filtered-out events are acknowledged like
    /// --sources says. Logs are not filtered: see --logs and --log-level.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "TYPES",
        env = "OPENFLUME_TYPES",
        help_heading = "Filters"
    )]
    pub(crate) types: Option<Vec<String>>,

    /// Where logs go: stdout (beside the events, as the item format documents), stderr (JSON
    /// Lines, or pretty lines with --format pretty), or off. Events always go to stdout.
    #[arg(
        long,
        value_enum,
        default_value = "stdout",
        env = "OPENFLUME_LOGS",
        help_heading = "Output"
    )]
    pub(crate) logs: LogRoute,
    /// Lowest log level printed (logs below it are dropped at the source).
    #[arg(
        long,
        value_enum,
        default_value = "info",
        env = "OPENFLUME_LOG_LEVEL",
        help_heading = "Output"
    )]
    pub(crate) log_level: LogLevel,
    /// Output format. Default: pretty on a terminal, json otherwise.
    #[arg(long, value_enum, env = "OPENFLUME_FORMAT", help_heading = "Output")]
    pub(crate) format: Option<Format>,
    /// Colour in pretty output: auto (only on a terminal, and only when NO_COLOR is unset),
    /// always, or never.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        env = "OPENFLUME_COLOR",
        help_heading = "Output"
    )]
    pub(crate) color: ColorChoice,
    /// Exit 0 after this many printed events (every printed event counts, READY included;
    /// filtered-out events do not).
    #[arg(long, env = "OPENFLUME_COUNT", help_heading = "Output")]
    pub(crate) count: Option<u64>,

    /// Record every input the sources receive into FILE, for `openflume replay FILE`, `openflume
    /// sim --replay FILE` or a test fixture. Secrets are replaced by placeholders (tokens,
    /// signing secrets, Slack tickets, Authorization headers); the contents of messages are
    /// kept unless --record-drop-content.
    #[arg(
        long,
        value_name = "FILE",
        env = "OPENFLUME_RECORD",
        help_heading = "Record"
    )]
    pub(crate) record: Option<std::path::PathBuf>,
    /// With --record: empty the message contents (Discord content, Slack text, GitHub
    /// notification titles), keeping the structure. Webhook request bodies are kept: their
    /// signatures cover them.
    #[arg(
        long,
        requires = "record",
        env = "OPENFLUME_RECORD_DROP_CONTENT",
        help_heading = "Record"
    )]
    pub(crate) record_drop_content: bool,
}

/// The source flags `listen` and `serve` share: credentials, each source's settings, the
/// webhook ingress, reconnects, the start and the network.
#[derive(Debug, Args)]
pub(crate) struct SourceArgs {
    /// Discord bot token (prefer the environment variable, or DISCORD_BOT_TOKEN_FILE).
    #[arg(
        long,
        env = "DISCORD_BOT_TOKEN",
        hide_env_values = true,
        help_heading = "Discord"
    )]
    pub(crate) discord_token: Option<String>,
    /// Gateway intents: names (case-insensitive, comma-separated, e.g.
    /// GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT) or a bitmask. Default: GUILDS, GUILD_MESSAGES,
    /// DIRECT_MESSAGES, MESSAGE_CONTENT (37377).
    #[arg(long, value_name = "NAMES|BITS", value_parser = parse_intents, env = "OPENFLUME_DISCORD_INTENTS", help_heading = "Discord")]
    pub(crate) discord_intents: Option<u64>,
    /// Shards to run in this process: FIRST-LAST/TOTAL (e.g. 0-15/64, one process per range,
    /// all with the bot's TOTAL), ID/TOTAL for one, or auto for every shard of the count
    /// GET /gateway/bot recommends. Events carry meta.shard = "ID/TOTAL" (when TOTAL > 1).
    /// Default: one shard, 0/1.
    #[arg(long, value_name = "RANGE/TOTAL|auto", value_parser = parse_shards, env = "OPENFLUME_DISCORD_SHARDS", help_heading = "Discord")]
    pub(crate) discord_shards: Option<Shards>,
    /// Deprecated: the same as --discord-shards ID/COUNT.
    #[arg(long, value_name = "ID/COUNT", value_parser = parse_shard, conflicts_with = "discord_shards", env = "OPENFLUME_DISCORD_SHARD", help_heading = "Discord")]
    pub(crate) discord_shard: Option<Shard>,
    /// Send this bot's IDENTIFYs through a queue in this Redis server
    /// (redis://[USER:PASSWORD@]HOST[:PORT][/DB]) shared by every process given the same one:
    /// one per max_concurrency bucket per 5 s across all of them, and none past the daily
    /// session_start_limit of GET /gateway/bot, counted once for all of them (a shard waits for
    /// the refill, with a warning, when it is spent). Without it, each process paces and counts
    /// only its own shards; processes with disjoint --discord-shards ranges of one bot should
    /// share one. The variable's earlier name,
    /// OPENFLUME_DISCORD_IDENTIFY_REDIS, is still read (deprecated).
    #[arg(
        long = "redis",
        visible_alias = "discord-identify-redis",
        value_name = "URL",
        env = "OPENFLUME_REDIS",
        help_heading = "Discord"
    )]
    pub(crate) redis: Option<String>,
    /// Only receive these dispatch types (case-insensitive, comma-separated, e.g.
    /// MESSAGE_CREATE,READY); the others are dropped in the machine. Unknown names are warned
    /// about.
    #[arg(
        long,
        value_delimiter = ',',
        env = "OPENFLUME_DISCORD_EVENTS",
        help_heading = "Discord"
    )]
    pub(crate) discord_events: Option<Vec<String>>,
    /// Transport compression.
    #[arg(
        long,
        value_enum,
        default_value = "zlib-stream",
        env = "OPENFLUME_DISCORD_COMPRESS",
        help_heading = "Discord"
    )]
    pub(crate) discord_compress: Compression,
    /// Discord REST API base.
    #[arg(
        long,
        env = "OPENFLUME_DISCORD_API_URL",
        default_value = "https://discord.com/api/v10",
        help_heading = "Discord"
    )]
    pub(crate) discord_api_url: String,
    /// Gateway URL to connect to directly (skips GET /gateway/bot).
    #[arg(long, env = "OPENFLUME_DISCORD_GATEWAY_URL", help_heading = "Discord")]
    pub(crate) discord_gateway_url: Option<String>,

    /// Slack app-level token, xapp-… (prefer the environment variable, or SLACK_APP_TOKEN_FILE).
    #[arg(
        long,
        env = "SLACK_APP_TOKEN",
        hide_env_values = true,
        help_heading = "Slack"
    )]
    pub(crate) slack_app_token: Option<String>,
    /// Slack bot token, xoxb-…, used once for auth.test (team and bot ids in event meta; or
    /// SLACK_BOT_TOKEN_FILE).
    #[arg(
        long,
        env = "SLACK_BOT_TOKEN",
        hide_env_values = true,
        help_heading = "Slack"
    )]
    pub(crate) slack_bot_token: Option<String>,
    /// Parallel Socket Mode connections (1-10).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=10), env = "OPENFLUME_SLACK_CONNECTIONS", help_heading = "Slack")]
    pub(crate) slack_connections: u8,
    /// Seconds between WebSocket pings; a connection silent for 3 intervals is replaced.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600), env = "OPENFLUME_SLACK_PING_INTERVAL", help_heading = "Slack")]
    pub(crate) slack_ping_interval: u64,
    /// Slack Web API base.
    #[arg(
        long,
        env = "OPENFLUME_SLACK_API_URL",
        default_value = "https://slack.com/api",
        help_heading = "Slack"
    )]
    pub(crate) slack_api_url: String,

    /// GitHub token (prefer the environment variable, or GITHUB_TOKEN_FILE).
    #[arg(
        long,
        env = "GITHUB_TOKEN",
        hide_env_values = true,
        help_heading = "GitHub"
    )]
    pub(crate) github_token: Option<String>,
    /// Seconds between notification polls (minimum 1; GitHub's X-Poll-Interval can raise it).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400), env = "OPENFLUME_GITHUB_INTERVAL", help_heading = "GitHub")]
    pub(crate) github_interval: u64,
    /// Notifications present at start: skip (record only) or emit.
    #[arg(
        long,
        value_enum,
        default_value = "skip",
        env = "OPENFLUME_GITHUB_BOOTSTRAP",
        help_heading = "GitHub"
    )]
    pub(crate) github_bootstrap: Bootstrap,
    /// Only notifications in which you are directly participating or mentioned.
    #[arg(long, env = "OPENFLUME_GITHUB_PARTICIPATING", help_heading = "GitHub")]
    pub(crate) github_participating: bool,
    /// GitHub REST API base.
    #[arg(
        long,
        env = "OPENFLUME_GITHUB_API_URL",
        default_value = "https://api.github.com",
        help_heading = "GitHub"
    )]
    pub(crate) github_api_url: String,

    /// Serve the verified webhook ingress on this address: PORT or HOST:PORT (a bare port, or
    /// no host, binds 127.0.0.1). Needs at least one secret: SLACK_SIGNING_SECRET,
    /// GITHUB_WEBHOOK_SECRET or --webhook. Each request is answered 200 only once its event is
    /// written to stdout.
    #[arg(long, value_name = "ADDR", value_parser = parse_http_addr, env = "OPENFLUME_HTTP", help_heading = "Webhooks")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// Serve the channels under this path (e.g. /hooks serves /hooks/channels/…).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "",
        hide_default_value = true,
        env = "OPENFLUME_HTTP_PREFIX",
        help_heading = "Webhooks"
    )]
    pub(crate) http_prefix: String,
    /// Slack signing secret: serves /channels/slack/{events,interactions,commands} (prefer the
    /// environment variable, or SLACK_SIGNING_SECRET_FILE).
    #[arg(
        long,
        env = "SLACK_SIGNING_SECRET",
        hide_env_values = true,
        help_heading = "Webhooks"
    )]
    pub(crate) slack_signing_secret: Option<String>,
    /// GitHub webhook secret: serves /channels/github/webhook (prefer the environment variable,
    /// or GITHUB_WEBHOOK_SECRET_FILE).
    #[arg(
        long,
        env = "GITHUB_WEBHOOK_SECRET",
        hide_env_values = true,
        help_heading = "Webhooks"
    )]
    pub(crate) github_webhook_secret: Option<String>,
    /// A custom sender NAME whose secret is in the environment variable ENV_VAR (repeatable):
    /// serves /channels/custom/NAME, signed with X-Signature-256 (sha256=HEX) or Standard
    /// Webhooks headers; its events have source `custom` and type NAME.
    #[arg(long, value_name = "NAME=ENV_VAR", value_parser = parse_webhook, env = "OPENFLUME_WEBHOOK", help_heading = "Webhooks")]
    pub(crate) webhook: Vec<(String, String)>,

    /// A cron schedule that emits a `tick` event (repeatable), e.g. --cron '*/5 * * * *'. Named
    /// with NAME=EXPR, its events have type NAME: --cron 'daily-report=0 9 * * mon-fri' (NAME is
    /// a-z, 0-9, '-' and '_', and not itself a cron field).
    #[arg(
        long,
        value_name = "[NAME=]EXPR",
        env = "OPENFLUME_CRON",
        help_heading = "Time"
    )]
    pub(crate) cron: Vec<String>,
    /// IANA time zone for --cron (default: the local zone).
    #[arg(long, env = "OPENFLUME_TZ", help_heading = "Time")]
    pub(crate) tz: Option<String>,
    /// With a data directory (--data), what a start does with the fire times each --cron missed
    /// while openflume was stopped, at most 24 hours back: off (none), last (fire once, for the
    /// latest) or all (each, oldest first). Caught-up ticks carry meta.catch_up = "true".
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "last",
        value_parser = ["off", "last", "all"],
        env = "OPENFLUME_CRON_CATCH_UP",
        help_heading = "Time"
    )]
    pub(crate) cron_catch_up: String,

    /// Give up after this many consecutive failed reconnects or polls (default: never).
    #[arg(
        long,
        env = "OPENFLUME_RECONNECT_MAX_ATTEMPTS",
        help_heading = "Reconnect"
    )]
    pub(crate) reconnect_max_attempts: Option<u32>,
    /// First reconnect delay bound, ms (at least 250: lower values are raised to it). Discord
    /// and Slack only: GitHub backs off by its own rules (Retry-After, X-Poll-Interval).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), env = "OPENFLUME_RECONNECT_BASE_MS", help_heading = "Reconnect")]
    pub(crate) reconnect_base_ms: u64,
    /// Largest reconnect delay, ms (at least 250). Discord and Slack only.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..), env = "OPENFLUME_RECONNECT_MAX_MS", help_heading = "Reconnect")]
    pub(crate) reconnect_max_ms: u64,

    /// How long to wait for every source's first connection, in seconds. A source failing for
    /// good (a bad token) fails the start at once; one still retrying fails it when this runs out.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400), env = "OPENFLUME_START_TIMEOUT", help_heading = "Start")]
    pub(crate) start_timeout: u64,
    /// Keep the healthy sources running when others fail at start or never connect; the start
    /// then fails only when no source connected. A failed source stays visible in its error log
    /// and its status (failed, or reconnecting while it retries).
    #[arg(long, env = "OPENFLUME_ALLOW_PARTIAL", help_heading = "Start")]
    pub(crate) allow_partial: bool,

    /// Also trust the certificates in this PEM file (one or more) as TLS roots, besides the
    /// bundled roots and the OS trust store: a corporate or self-hosted CA. Proxies come from
    /// HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
    #[arg(
        long,
        value_name = "FILE",
        env = "OPENFLUME_CA_CERT",
        help_heading = "Network"
    )]
    pub(crate) ca_cert: Option<std::path::PathBuf>,
}

/// Where `--logs` sends log items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogRoute {
    /// Beside the events, on stdout.
    Stdout,
    /// On stderr, in the output format.
    Stderr,
    /// Nowhere.
    Off,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colour on a terminal when NO_COLOR is unset.
    Auto,
    /// Always colour pretty output.
    Always,
    /// Never colour.
    Never,
}

/// `--discord-intents`: a bitmask, or intent names from Discord's table (case-insensitive,
/// separated by commas or `|`).
pub(crate) fn parse_intents(text: &str) -> Result<u64, String> {
    use openflume_proto::discord::intents;
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("intents bitmask {text:?} is too large"));
    }
    let mut bits = 0;
    for name in text.split([',', '|']).map(str::trim) {
        // The names Discord used before renaming these two.
        let name = match name.to_ascii_uppercase().as_str() {
            "GUILD_BANS" => "GUILD_MODERATION".to_owned(),
            "GUILD_EMOJIS_AND_STICKERS" => "GUILD_EXPRESSIONS".to_owned(),
            other => other.to_owned(),
        };
        let Some((_, bit)) = intents::NAMED.iter().find(|(known, _)| *known == name) else {
            let known: Vec<&str> = intents::NAMED.iter().map(|(known, _)| *known).collect();
            return Err(format!(
                "unknown intent {name:?}; known: {} (or a number)",
                known.join(", ")
            ));
        };
        bits |= bit;
    }
    Ok(bits)
}

/// `openflume demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Output format. Default: pretty on a terminal, json otherwise.
    #[arg(long, value_enum, env = "OPENFLUME_FORMAT")]
    pub(crate) format: Option<Format>,
    /// Exit 0 after this many events.
    #[arg(long, env = "OPENFLUME_COUNT")]
    pub(crate) count: Option<u64>,
    /// Lowest log level printed.
    #[arg(long, value_enum, default_value = "info", env = "OPENFLUME_LOG_LEVEL")]
    pub(crate) log_level: LogLevel,
    /// Where logs go: stdout, stderr or off.
    #[arg(long, value_enum, default_value = "stdout", env = "OPENFLUME_LOGS")]
    pub(crate) logs: LogRoute,
    /// Colour in pretty output: auto (a terminal, NO_COLOR unset), always, or never.
    #[arg(long, value_enum, default_value = "auto", env = "OPENFLUME_COLOR")]
    pub(crate) color: ColorChoice,
}

/// `openflume sim`.
#[derive(Debug, Args)]
#[command(after_help = super::sim_control::AFTER_HELP)]
pub(crate) struct SimArgs {
    /// Address to listen on. Anything but loopback must be asked for explicitly.
    #[arg(long, default_value = "127.0.0.1", env = "OPENFLUME_SIM_BIND")]
    pub(crate) bind: std::net::IpAddr,
    /// Events per second each simulator sends once a client is connected (above 0, at most
    /// 20000).
    #[arg(long, default_value_t = 1.0, env = "OPENFLUME_SIM_RATE")]
    pub(crate) rate: f64,
    /// Serve a recording (`openflume listen --record FILE`) instead: each recorded Discord,
    /// Slack and GitHub source gets a simulator that plays back what the service sent (frames
    /// in order on each recorded connection, answering the client's frames as recorded;
    /// HTTP responses in order per path). --rate and stdin's faults do not apply.
    #[arg(long, value_name = "FILE", env = "OPENFLUME_SIM_REPLAY")]
    pub(crate) replay: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_the_rest() {
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("2kb"), Ok(2048));
        for bad in ["", "0", "ten", "-1G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    /// Every `listen` flag can be set from the environment, and `--help` shows the variable.
    #[test]
    fn every_listen_flag_has_an_environment_variable() {
        let cli = Cli::command();
        let listen = cli.find_subcommand("listen").unwrap();
        for arg in listen.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let env = arg.get_env().and_then(|e| e.to_str());
            assert!(env.is_some(), "--{long} has no environment variable");
            assert!(!arg.is_hide_env_set(), "--{long} hides its variable");
        }
    }

    #[test]
    fn intents_by_name_or_number() {
        assert_eq!(parse_intents("37377"), Ok(37377));
        assert_eq!(
            parse_intents("guilds,GUILD_MESSAGES, direct_messages|Message_Content"),
            Ok(37377)
        );
        assert_eq!(parse_intents("guild_bans"), Ok(1 << 2));
        let unknown = parse_intents("GUILDS,GUILD_TYPO").unwrap_err();
        assert!(unknown.contains("\"GUILD_TYPO\""), "{unknown}");
        assert!(unknown.contains("GUILD_PRESENCES"), "{unknown}");
        assert!(parse_intents("").is_err());
        assert!(parse_intents("99999999999999999999999").is_err());
    }

    #[test]
    fn shards_parsing() {
        let range = |first, last, total| Ok(Shards::Range { first, last, total });
        assert_eq!(parse_shards("0-15/64"), range(0, 15, 64));
        assert_eq!(parse_shards("3/64"), range(3, 3, 64));
        assert_eq!(parse_shards(" AUTO "), Ok(Shards::Auto));
        for bad in ["15-0/64", "0-64/64", "0/0", "x/4", "0-15", "1-x/4", ""] {
            assert!(parse_shards(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_parsing() {
        assert_eq!(parse_shard("1/4"), Ok(Shard { id: 1, count: 4 }));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("0/0").is_err());
        assert!(parse_shard("x/1").is_err());
        assert!(parse_shard("1").is_err());
    }

    #[test]
    fn forward_targets_and_their_options() {
        let spec = parse_forward(
            "https://hooks.example/in?a=1,secret=HOOK_SECRET,sources=Slack+github,types=events_api",
        )
        .unwrap();
        assert_eq!(
            spec,
            ForwardSpec {
                url: "https://hooks.example/in?a=1".into(),
                secret_var: Some("HOOK_SECRET".into()),
                sources: Some(vec!["slack".into(), "github".into()]),
                types: Some(vec!["events_api".into()]),
            }
        );
        let bare = parse_forward("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (bare.secret_var, bare.sources, bare.types),
            (None, None, None)
        );
        for bad in [
            "hooks.example/in",
            "ftp://hooks.example/in",
            "http://h/,secret=",
            "http://h/,sources=",
            "http://h/,sources=a,sources=b",
            "http://h/,color=red",
            "http://h/?a=1,2",
        ] {
            assert!(parse_forward(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let secs = |text: &str| parse_duration(text).map(|d| d.as_secs());
        assert_eq!(secs("24h"), Ok(86_400));
        assert_eq!(secs("2d"), Ok(172_800));
        assert_eq!(secs("1h30m"), Ok(5_400));
        assert_eq!(secs("PT90S"), Ok(90));
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        for bad in ["", "24", "0s", "-5s", "1mo", "soon"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_addresses_default_to_loopback() {
        let addr = |text: &str| parse_http_addr(text).map(|a| a.to_string());
        assert_eq!(addr("8787").as_deref(), Ok("127.0.0.1:8787"));
        assert_eq!(addr(":0").as_deref(), Ok("127.0.0.1:0"));
        assert_eq!(addr("0.0.0.0:80").as_deref(), Ok("0.0.0.0:80"));
        assert_eq!(addr("[::1]:9").as_deref(), Ok("[::1]:9"));
        assert!(parse_http_addr("localhost").is_err());
        assert_eq!(
            parse_webhook("deploys=DEPLOY_SECRET"),
            Ok(("deploys".into(), "DEPLOY_SECRET".into()))
        );
        assert!(parse_webhook("deploys").is_err());
        assert!(parse_webhook("=X").is_err());
    }
}
