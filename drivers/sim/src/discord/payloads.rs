//! What the Gateway sends, shaped as Discord's: the envelopes, and realistic READY,
//! GUILD_CREATE and MESSAGE_CREATE data from a fixed set of guilds, channels and authors.

use super::{Discord, State};
use crate::fake;
use jiff::Timestamp;
use serde_json::json;

pub(super) struct Guild {
    pub(super) id: u64,
    pub(super) channels: [u64; 2],
    pub(super) role: u64,
}

/// A Gateway envelope for a dispatch, keys in Discord's order.
pub(super) fn dispatch(event: &str, seq: u64, data: &str) -> String {
    format!(r#"{{"t":"{event}","s":{seq},"op":0,"d":{data}}}"#)
}

/// RESUMED's `d`.
pub(super) const RESUMED_DATA: &str = r#"{"_trace":["[\"gateway-sim-1\",{\"micros\":900}]"]}"#;

/// A non-dispatch envelope.
pub(super) fn control(op: u8, data: &str) -> String {
    format!(r#"{{"t":null,"s":null,"op":{op},"d":{data}}}"#)
}

impl Discord {
    /// A realistic MESSAGE_CREATE `d` (~1.2 KB) and the guild it belongs to.
    pub(super) fn message_create(&self, state: &mut State) -> (u64, String) {
        const AUTHORS: &[(&str, &str)] = &[
            ("ada", "Ada"),
            ("grace.h", "Grace"),
            ("linus_t", "Linus"),
            ("margaret", "Margaret H."),
        ];
        let now = Timestamp::now();
        state.increment += 1;
        let id = fake::snowflake(now, state.increment).max(state.last_message_id + 1);
        state.last_message_id = id;
        let rng = &mut state.rng;
        let guild = self.guilds.get(rng.usize(..self.guilds.len().max(1)));
        let (guild_id, channel_id, role_id) = match guild {
            Some(g) => (
                g.id,
                g.channels.get(rng.usize(..2)).copied().unwrap_or(g.id),
                g.role,
            ),
            None => (0, id, 0),
        };
        let (username, global_name) = AUTHORS
            .get(rng.usize(..AUTHORS.len()))
            .copied()
            .unwrap_or(("ada", "Ada"));
        let author_id = self
            .author_ids
            .get(rng.usize(..self.author_ids.len()))
            .copied()
            .unwrap_or(id);
        let content = serde_json::to_string(fake::text(rng)).unwrap_or_else(|_| "\"\"".to_owned());
        let embed = serde_json::to_string(fake::text(rng)).unwrap_or_else(|_| "\"\"".to_owned());
        let avatar = fake::hex(rng, 32);
        let nonce = id.wrapping_sub(rng.u64(..1_000_000));
        let timestamp = fake::discord_time(now);
        let guild_field = if guild_id == 0 {
            String::new()
        } else {
            format!(r#","guild_id":"{guild_id}""#)
        };
        let data = format!(
            concat!(
                r#"{{"type":0,"tts":false,"timestamp":"{timestamp}","pinned":false,"nonce":"{nonce}","#,
                r#""mentions":[],"mention_roles":[],"mention_everyone":false,"#,
                r#""member":{{"roles":["{role_id}"],"premium_since":null,"pending":false,"nick":null,"mute":false,"#,
                r#""joined_at":"2024-03-02T10:11:12.123000+00:00","flags":0,"deaf":false,"#,
                r#""communication_disabled_until":null,"banner":null,"avatar":null}},"#,
                r#""id":"{id}","flags":0,"embeds":[{{"type":"rich","title":"Build report","description":{embed},"#,
                r#""color":5793266,"fields":[{{"name":"Status","value":"passed","inline":true}},"#,
                r#"{{"name":"Duration","value":"3m 12s","inline":true}}],"footer":{{"text":"openflume sim"}}}}],"#,
                r#""edited_timestamp":null,"content":{content},"components":[],"channel_type":0,"#,
                r#""channel_id":"{channel_id}","author":{{"username":"{username}","public_flags":0,"#,
                r#""primary_guild":null,"id":"{author_id}","global_name":"{global_name}","discriminator":"0","#,
                r#""collectibles":null,"clan":null,"avatar_decoration_data":null,"avatar":"{avatar}"}},"#,
                r#""attachments":[]{guild_field}}}"#
            ),
            timestamp = timestamp,
            nonce = nonce,
            role_id = role_id,
            id = id,
            embed = embed,
            content = content,
            channel_id = channel_id,
            username = username,
            author_id = author_id,
            global_name = global_name,
            avatar = avatar,
            guild_field = guild_field,
        );
        (guild_id, data)
    }

    pub(super) fn ready_data(&self, session_id: &str, shard: Option<[u64; 2]>) -> String {
        let mut data = json!({
            "v": 10,
            "user_settings": {},
            "user": {
                "verified": true, "username": "openflume-sim", "mfa_enabled": false,
                "id": self.bot_user_id.to_string(), "global_name": null, "flags": 0, "email": null,
                "discriminator": "0", "bot": true, "avatar": null
            },
            "session_type": "normal",
            "session_id": session_id,
            "resume_gateway_url": self.resume_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": self.guilds.iter().map(|g| json!({"unavailable": true, "id": g.id.to_string()})).collect::<Vec<_>>(),
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["rotterdam", "madrid", "milan", "bucharest", "stockholm"],
            "auth": {},
            "application": {"id": self.application_id.to_string(), "flags": 8_953_856},
            "_trace": ["[\"gateway-sim-1\",{\"micros\":1200,\"calls\":[\"id_created\",{\"micros\":400}]}]"]
        });
        if let (Some(shard), Some(object)) = (shard, data.as_object_mut()) {
            object.insert("shard".to_owned(), json!(shard));
        }
        data.to_string()
    }

    pub(super) fn guild_create_data(&self, guild: &Guild) -> String {
        let joined = fake::discord_time(self.joined_at);
        json!({
            "id": guild.id.to_string(), "name": "openflume sim", "icon": null, "description": null,
            "unavailable": false, "member_count": 42, "large": false, "joined_at": joined,
            "owner_id": self.bot_user_id.to_string(), "preferred_locale": "en-US", "premium_tier": 0,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "mfa_level": 0, "nsfw_level": 0, "afk_channel_id": null, "afk_timeout": 300,
            "system_channel_id": guild.channels[0].to_string(), "features": [],
            "channels": [
                {"id": guild.channels[0].to_string(), "type": 0, "name": "general", "position": 0,
                 "topic": null, "nsfw": false, "last_message_id": null, "permission_overwrites": [],
                 "rate_limit_per_user": 0, "parent_id": null, "flags": 0},
                {"id": guild.channels[1].to_string(), "type": 0, "name": "deploys", "position": 1,
                 "topic": "CI and deploy reports", "nsfw": false, "last_message_id": null,
                 "permission_overwrites": [], "rate_limit_per_user": 0, "parent_id": null, "flags": 0}
            ],
            "roles": [{"id": guild.role.to_string(), "name": "@everyone", "permissions": "2248473465835073",
                       "position": 0, "color": 0, "hoist": false, "managed": false, "mentionable": false,
                       "icon": null, "unicode_emoji": null, "flags": 0}],
            "members": [], "presences": [], "voice_states": [], "threads": [], "stage_instances": [],
            "guild_scheduled_events": [], "emojis": [], "stickers": [], "soundboard_sounds": []
        })
        .to_string()
    }
}
