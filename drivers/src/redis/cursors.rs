//! The sources' cursors in Redis: a hash `STREAM:cursors` (one field per source, its checkpoint
//! as JSON), written in the transaction of the items they cover and read back at start, so a
//! process started anywhere (another machine, an empty data directory) resumes where the kept
//! items end.

use super::{RedisError, RedisTarget};
use ::redis::Value;
use openflume_proto::{Checkpoint, Cursors};

/// Reads every stored cursor of `target`'s stream; one this build cannot read (written by a
/// newer one) is left out, and its source starts as on a first start.
pub(crate) async fn load_cursors(target: &RedisTarget) -> Result<Cursors, RedisError> {
    let client = target.client()?;
    let mut conn = super::connect(&client).await?;
    let reply: Value = ::redis::cmd("HGETALL")
        .arg(target.cursors_key())
        .query_async(&mut conn)
        .await
        .map_err(|e| RedisError::command("HGETALL", &e))?;
    let mut cursors = Cursors::default();
    for (source, json) in pairs(&reply) {
        if let Ok(checkpoint) = serde_json::from_str::<Checkpoint>(&json) {
            cursors.restore(source, checkpoint);
        }
    }
    Ok(cursors)
}

/// The hash fields of changed cursors.
pub(crate) fn cursor_fields(changed: Vec<(String, Checkpoint)>) -> Vec<(String, String)> {
    changed
        .into_iter()
        .filter_map(|(source, checkpoint)| Some((source, serde_json::to_string(&checkpoint).ok()?)))
        .collect()
}

/// The field/value pairs of an `HGETALL` reply (an array in RESP2, a map in RESP3).
fn pairs(reply: &Value) -> Vec<(String, String)> {
    let text = super::entries::text;
    match reply {
        Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first()?)?, text(pair.get(1)?)?)))
            .collect(),
        Value::Map(map) => map
            .iter()
            .filter_map(|(name, value)| Some((text(name)?, text(value)?)))
            .collect(),
        _ => Vec::new(),
    }
}
