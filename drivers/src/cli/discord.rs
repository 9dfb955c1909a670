//! The Discord source of `listen` and `serve`: one shard (the default, and `--discord-shards
//! ID/1`), or a gateway running a range of a bot's shards (`--discord-shards FIRST-LAST/TOTAL`,
//! `ID/TOTAL`, `auto`; the deprecated `--discord-shard ID/COUNT` is `--discord-shards ID/COUNT`),
//! each starting from the sessions its cursors kept.
//!
//! A bot with one shard keeps its session under the cursor `discord`; with several, each shard
//! under `discord:ID/TOTAL` ([`Cursors::shard_key`]). A gateway takes the sessions of its range
//! of the same total; with `auto`, those of the one total all kept sessions agree on (the
//! gateway drops them if `/gateway/bot` now recommends another).

use super::args::{Compression, Shards, SourceArgs};
use super::flags::misuse_error;
use super::listen::report;
use super::{UsageError, filter};
use crate::redis::RedisIdentifyGate;
use crate::{IdentifyGate, Source};
use openflume_proto::discord::{
    DiscordConfig, DiscordGateway, DiscordGatewayConfig, DiscordShard, IdentifyQueue, ResumeState,
    ShardRange, TransportCompression,
};
use openflume_proto::{Checkpoint, Cursors, ReconnectPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The source name, and the prefix of its shards' cursor keys.
const SOURCE: &str = openflume_proto::discord::SOURCE;

/// Builds the Discord source the flags ask for; a flag that cannot work is a usage error
/// naming it.
pub(crate) fn source(
    token: &str,
    args: &SourceArgs,
    resume: &Cursors,
    reconnect: ReconnectPolicy,
) -> Result<Source, UsageError> {
    let mut config = DiscordConfig::new(token);
    if let Some(intents) = args.discord_intents {
        config.intents = intents;
    }
    config.events = args.discord_events.as_ref().map(|events| {
        filter::discord_events(events, |warning| report(format_args!("{warning}")))
            .into_iter()
            .collect()
    });
    (config.compress, config.compression) = match args.discord_compress {
        Compression::ZlibStream => (true, TransportCompression::ZlibStream),
        Compression::ZstdStream => (true, TransportCompression::ZstdStream),
        Compression::None => (false, TransportCompression::default()),
    };
    config.api_base = args.discord_api_url.trim_end_matches('/').to_owned();
    config.gateway_url = args.discord_gateway_url.clone();
    config.reconnect = reconnect;
    let gate = identify_gate(token, args)?;
    if gate.is_some() {
        config.identify_queue = IdentifyQueue::External;
    }
    let shards = match (args.discord_shards, args.discord_shard) {
        (Some(shards), _) => shards,
        (None, Some(shard)) => {
            report(format_args!(
                "--discord-shard is deprecated: use --discord-shards {}/{}",
                shard.id, shard.count
            ));
            Shards::Range {
                first: shard.id,
                last: shard.id,
                total: shard.count,
            }
        }
        (None, None) => Shards::Range {
            first: 0,
            last: 0,
            total: 1,
        },
    };
    match shards {
        // One shard of one: a plain shard, its session under `discord`, as ever.
        Shards::Range { total: 1, .. } => {
            if let Some(Checkpoint::DiscordSession(session)) = resume.get(SOURCE) {
                config.resume = Some(session.clone());
            }
            DiscordShard::new(config.clone(), 0).map_err(|e| misuse_error(SOURCE, e))?;
            Ok(with_gate(Source::discord(config), gate))
        }
        Shards::Range { first, last, total } => {
            let sessions = kept_sessions(resume);
            let gateway = DiscordGatewayConfig {
                shard: config,
                shard_count: Some(total),
                shard_range: Some(ShardRange { first, last }),
                resume: sessions.get(&total).cloned().unwrap_or_default(),
                resume_shard_count: None,
            };
            gateway_source(gateway).map(|source| with_gate(source, gate))
        }
        Shards::Auto => {
            if config.gateway_url.is_some() {
                return Err(UsageError::flag(
                    "--discord-shards",
                    "auto asks GET /gateway/bot for the count, which --discord-gateway-url skips: give RANGE/TOTAL",
                ));
            }
            let sessions = kept_sessions(resume);
            // Sessions of one total only: with several, none is sure to be the current layout.
            let (resume_shard_count, resume) = match sessions.into_iter().collect::<Vec<_>>()[..] {
                [(total, ref kept)] => (Some(total), kept.clone()),
                _ => (None, BTreeMap::new()),
            };
            let gateway = DiscordGatewayConfig {
                shard: config,
                shard_count: None,
                shard_range: None,
                resume,
                resume_shard_count,
            };
            gateway_source(gateway).map(|source| with_gate(source, gate))
        }
    }
}

/// The cross-process identify gate of `--redis`, its keys named by the bot
/// (the token's first part is the bot's id, not a secret), so every process of one bot shares
/// them and no other bot's.
fn identify_gate(
    token: &str,
    args: &SourceArgs,
) -> Result<Option<Arc<dyn IdentifyGate>>, UsageError> {
    let Some(url) = &args.redis else {
        return Ok(None);
    };
    let bot = token.split('.').next().unwrap_or_default();
    let gate = RedisIdentifyGate::new(url, format!("openflume:identify:{bot}"))
        .map_err(|error| UsageError::flag("--redis", error))?;
    Ok(Some(Arc::new(gate)))
}

fn with_gate(source: Source, gate: Option<Arc<dyn IdentifyGate>>) -> Source {
    match gate {
        Some(gate) => source.with_identify_gate(gate),
        None => source,
    }
}

fn gateway_source(config: DiscordGatewayConfig) -> Result<Source, UsageError> {
    DiscordGateway::new(config.clone(), 0).map_err(|e| misuse_error(SOURCE, e))?;
    Ok(Source::discord_gateway(config))
}

/// The shards' kept sessions, by total and then shard id.
fn kept_sessions(resume: &Cursors) -> BTreeMap<u32, BTreeMap<u32, ResumeState>> {
    let mut sessions: BTreeMap<u32, BTreeMap<u32, ResumeState>> = BTreeMap::new();
    for (key, checkpoint) in resume.iter() {
        if let (Some((id, total)), Checkpoint::DiscordSession(session)) =
            (Cursors::parse_shard_key(SOURCE, key), checkpoint)
        {
            sessions
                .entry(total)
                .or_default()
                .insert(id, session.clone());
        }
    }
    sessions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Checkpoint {
        Checkpoint::DiscordSession(ResumeState {
            session_id: id.into(),
            resume_gateway_url: "wss://r.example".into(),
            seq: 3,
        })
    }

    #[test]
    fn shard_cursors_are_grouped_by_total() {
        let mut resume = Cursors::default();
        resume.restore("discord", session("single"));
        resume.restore("discord:0/2", session("a"));
        resume.restore("discord:1/2", session("b"));
        resume.restore("discord:5/8", session("c"));
        resume.restore("discord:junk", session("d"));
        let kept = kept_sessions(&resume);
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [2, 8]);
        assert_eq!(kept[&2].len(), 2);
        assert_eq!(kept[&8][&5].session_id, "c");
    }
}
