//! `serve --forward` over a Redis Stream (`serve --sink redis://…/STREAM`): the forwarding
//! targets' [`ForwardStore`], with the same guarantees as over the SQLite log (see
//! [`crate::forward`]).
//!
//! - **Events**: read through `serve`'s [`RedisHub`] (its follower wakes a target when the
//!   stream grows, its shared connection and [`xrange`] read), with `XRANGE (AFTER + COUNT N`.
//!   Every entry is read and the target's filter applied here (a stream has no index to ask);
//!   the body sent is the entry's line, `{"event_id":"1764100000000-0",…}` as `openflume
//!   consume` prints it, and `webhook-id` is the stream id.
//! - **States**: the hash `STREAM:forward`, one field per target URL, its [`TargetState`] as JSON
//!   (stream ids as strings), written with `HSET` before the next request goes out.
//! - **The forwarder's own logs** (`forward.retry`, `forward.gave_up`, `forward.disabled`) are
//!   appended to the stream with `XADD … MAXLEN ~ N` (`--redis-maxlen`), as the sink appends,
//!   so hub clients and `consume` see them as they see them in the SQLite log.
//!
//! **Counting what waits** (`/metrics`' queue depth). A stream id is no count, but Redis counts
//! the entries ever added to a stream (`XINFO STREAM`'s `entries-added`, Redis 7 and later). A
//! read that reaches the stream's end runs in one transaction with `XINFO STREAM`, so the count
//! at its end is exact; a full page adds what it read; a target's start counts the entries after
//! its cursor once ([`COUNT_SCRIPT`]). Before Redis 7 only the events read are counted.
//!
//! One `serve` should forward to a given URL from a given stream: two instances with the same
//! `--forward` would both deliver every event and share one state.

use super::entries::{Entry, parse_entries, text};
use super::hub::{RedisHub, xrange};
use super::{RedisError, RedisTarget};
use crate::cli::hub_client::HubStore;
use crate::forward::{Count, ForwardStore, Page, StoreError};
use ::redis::Value;
use openflume_log::{Filter, Record};
use openflume_proto::hub::StreamId;
use openflume_proto::outbox::{Pending, TargetState};
use openflume_proto::{Item, Log};
use serde::Deserialize;
use std::sync::Arc;

/// How many entries were ever added to the stream `KEYS[1]` up to and including `ARGV[1]` (all
/// of them without `ARGV[1]`): `entries-added` less the entries after it, counted a page at a
/// time inside Redis (only ids leave the page). `0` for no stream; nil before Redis 7, whose
/// `XINFO` has no `entries-added`.
const COUNT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local added
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then added = info[i + 1] end
end
if not added then return false end
if not ARGV[1] then return added end
local after, from = 0, '(' .. ARGV[1]
while true do
  local page = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 512)
  if #page == 0 then break end
  after = after + #page
  from = '(' .. page[#page][1]
end
return added - after
";

/// The forwarding targets' store over `serve`'s stream.
pub(crate) struct RedisForward {
    hub: Arc<RedisHub>,
    /// `--redis-maxlen`: the forwarder's logs trim the stream as the sink's appends do.
    max_len: u64,
}

impl RedisForward {
    /// The store over the stream `hub` follows.
    pub(crate) fn new(hub: Arc<RedisHub>, max_len: u64) -> RedisForward {
        RedisForward { hub, max_len }
    }

    fn target(&self) -> &RedisTarget {
        self.hub.target()
    }

    /// [`COUNT_SCRIPT`] up to `position` (or all); `None` when Redis cannot count or fails.
    async fn count(&self, position: Option<StreamId>) -> Option<u64> {
        let mut eval = ::redis::cmd("EVAL");
        eval.arg(COUNT_SCRIPT).arg(1).arg(self.target().stream());
        if let Some(position) = position {
            eval.arg(position.to_string());
        }
        match self.hub.query("EVAL", &eval).await {
            Ok(Value::Int(count)) => u64::try_from(count).ok(),
            _ => None,
        }
    }
}

/// What the forwarder looks at in an entry's item: whether it is an event, and what filters see.
#[derive(Deserialize)]
struct ItemHead {
    kind: String,
    #[serde(default)]
    event: Option<EventHead>,
}

#[derive(Deserialize)]
struct EventHead {
    source: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The entry as a delivery, if it is an event `filter` passes.
fn pending(entry: &Entry, filter: &Filter) -> Option<Pending<StreamId>> {
    let head = serde_json::from_str::<ItemHead>(entry.json.as_deref()?).ok()?;
    let event = head.event.filter(|_| head.kind == "event")?;
    if !filter.passes(&event.source, &event.kind) {
        return None;
    }
    Some(Pending {
        event_id: entry.id,
        body: entry.line()?,
    })
}

/// The last id and the count of entries ever added, from an `XINFO STREAM` reply (a flat array
/// in RESP2, a map in RESP3); no count before Redis 7.
fn stream_info(reply: &Value) -> Option<(StreamId, u64)> {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|pair| Some((pair.first()?, pair.get(1)?)))
            .collect(),
        Value::Map(map) => map.iter().map(|(name, value)| (name, value)).collect(),
        _ => return None,
    };
    let field = |wanted: &str| {
        pairs
            .iter()
            .find(|(name, _)| text(name).as_deref() == Some(wanted))
            .map(|(_, value)| *value)
    };
    let last = text(field("last-generated-id")?)?.parse().ok()?;
    let added = match field("entries-added")? {
        Value::Int(added) => u64::try_from(*added).ok()?,
        _ => return None,
    };
    Some((last, added))
}

impl ForwardStore for RedisForward {
    type Position = StreamId;

    fn committed(&self) -> StreamId {
        HubStore::committed(&*self.hub)
    }

    async fn committed_beyond(&self, after: StreamId) {
        HubStore::committed_beyond(&*self.hub, after).await;
    }

    async fn read(
        &self,
        after: StreamId,
        limit: usize,
        filter: &Filter,
    ) -> Result<Page<StreamId>, StoreError> {
        // The range and the stream's figures at one instant: a short page then ends exactly
        // where the count of entries added stands.
        let stream = self.target().stream();
        let horizon = HubStore::committed(&*self.hub);
        let mut read = ::redis::pipe();
        read.atomic().ignore_errors();
        read.add_command(xrange(stream, after, "+", limit));
        read.cmd("XINFO").arg("STREAM").arg(stream);
        let reply = self.hub.query_pipeline("XRANGE", &read).await?;
        let Value::Array(replies) = reply else {
            return Err(RedisError::Command {
                doing: "XRANGE",
                reason: "an unexpected reply to the read".to_owned(),
            }
            .into());
        };
        let range = replies.first().ok_or_else(|| RedisError::Command {
            doing: "XRANGE",
            reason: "no reply to the read".to_owned(),
        })?;
        if let Value::ServerError(error) = range {
            return Err(RedisError::Command {
                doing: "XRANGE",
                reason: error.to_string().chars().take(200).collect(),
            }
            .into());
        }
        let entries = parse_entries(range);
        // A stream that does not exist yet has no figures: nothing is read, nothing counted.
        let info = replies.get(1).and_then(stream_info);
        let read_count = entries.len() as u64;
        let last = entries.last().map(|entry| entry.id);
        let (up_to, count) = match (last, info) {
            // A full page: more may follow; the next read goes on after its last entry.
            (Some(last), _) if entries.len() >= limit => (last, Count::Past(read_count)),
            // The end of the stream, with its count.
            (_, Some((end, added))) => (end.max(after), Count::At(added)),
            // The end, without a count (before Redis 7).
            (last, None) => (
                last.unwrap_or(after).max(horizon).max(after),
                Count::Past(read_count),
            ),
        };
        let items = entries
            .iter()
            .filter_map(|entry| pending(entry, filter))
            .collect();
        Ok(Page {
            items,
            up_to,
            count,
        })
    }

    async fn state(&self, url: &str) -> Result<Option<TargetState<StreamId>>, StoreError> {
        let mut hget = ::redis::cmd("HGET");
        hget.arg(self.target().forward_key()).arg(url);
        let reply = self.hub.query("HGET", &hget).await?;
        let Some(json) = text(&reply) else {
            return Ok(None);
        };
        serde_json::from_str(&json).map(Some).map_err(|error| {
            RedisError::Command {
                doing: "HGET",
                reason: format!(
                    "a stored forward state this build cannot read (line {}, column {})",
                    error.line(),
                    error.column()
                ),
            }
            .into()
        })
    }

    async fn store_state(
        &self,
        url: &str,
        state: &TargetState<StreamId>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).map_err(|error| RedisError::Command {
            doing: "HSET",
            reason: error.to_string(),
        })?;
        let mut hset = ::redis::cmd("HSET");
        hset.arg(self.target().forward_key()).arg(url).arg(json);
        self.hub.query("HSET", &hset).await?;
        Ok(())
    }

    async fn append_log(&self, log: &Log) {
        let record = Record::from_item(&Item::Log(log.clone()));
        let mut xadd = ::redis::cmd("XADD");
        xadd.arg(self.target().stream())
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg(super::entries::ITEM_FIELD)
            .arg(record.json);
        // Lost if Redis is down: the state alone decides what is sent.
        let _ = self.hub.query("XADD", &xadd).await;
    }

    async fn count_at(&self, position: StreamId) -> Option<u64> {
        self.count(Some(position)).await
    }

    async fn count_committed(&self) -> Option<u64> {
        self.count(None).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn events_the_filter_passes_become_deliveries_with_their_stream_id() {
        let entry = |id: &str, json: &str| Entry {
            id: id.parse().unwrap(),
            json: Some(json.to_owned()),
        };
        let deploy = entry(
            "5-1",
            r#"{"kind":"event","event":{"source":"custom","type":"deploys","data":{}}}"#,
        );
        let build = entry(
            "5-2",
            r#"{"kind":"event","event":{"source":"custom","type":"builds","data":{}}}"#,
        );
        let log = entry(
            "5-3",
            r#"{"kind":"log","log":{"source":"custom","action":"deploys"}}"#,
        );
        let deploys = Filter {
            sources: None,
            types: Some(vec!["deploys".into()]),
        };
        let passed = pending(&deploy, &deploys).unwrap();
        assert_eq!(passed.event_id, "5-1".parse().unwrap());
        assert!(
            passed
                .body
                .starts_with(r#"{"event_id":"5-1","kind":"event""#)
        );
        assert_eq!(pending(&build, &deploys), None);
        assert_eq!(
            pending(&log, &Filter::default()),
            None,
            "logs are not forwarded"
        );
        let trimmed = Entry {
            id: "5-4".parse().unwrap(),
            json: None,
        };
        assert_eq!(pending(&trimmed, &Filter::default()), None);
    }

    #[test]
    fn stream_figures_read_from_both_protocols() {
        let resp2 = Value::Array(vec![
            bulk("length"),
            Value::Int(2),
            bulk("last-generated-id"),
            bulk("7-3"),
            bulk("entries-added"),
            Value::Int(9),
        ]);
        assert_eq!(stream_info(&resp2), Some(("7-3".parse().unwrap(), 9)));
        let resp3 = Value::Map(vec![
            (bulk("entries-added"), Value::Int(4)),
            (bulk("last-generated-id"), bulk("8-0")),
        ]);
        assert_eq!(stream_info(&resp3), Some(("8-0".parse().unwrap(), 4)));
        // Redis 6: no count.
        let old = Value::Array(vec![bulk("last-generated-id"), bulk("7-3")]);
        assert_eq!(stream_info(&old), None);
        assert_eq!(stream_info(&Value::Nil), None);
    }
}
