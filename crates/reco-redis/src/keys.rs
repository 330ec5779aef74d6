//! The key names, built for Redis Cluster: every key carries a hash tag (the part between the
//! first `{` and the next `}`), and keys that one script or transaction touches share it, so
//! they live in one slot (one node).
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<p>{u:<hex user>}:b` | sorted set | the user's kept batches, every channel |
//! | `<p>{u:<hex user>}:t` | set | the user's trimmed ids, every channel |
//! | `<p>{u:<hex user>}:r` | set | the user's read set |
//! | `<p>{ev}:keys:<day>` | set | the keys of the events stored that day (dedup), expiring |
//! | `<p>{ev}:seq` | string | the last event sequence number |
//! | `<p>{ev}:log` | stream | the event log, entry ids `<seq>-0`, trimmed behind checkpoints |
//! | `<p>{ev}:trimmed` | string | the number up to which the log was trimmed |
//! | `<p>{ev}:counters` | hash | article id → its counters |
//! | `<p>{cat}:articles` | hash | article id → the article |
//! | `<p>{cat}:retracted` | hash | article id → its retraction |
//! | `<p>{cat}:seq` | string | the number of the last catalog change |
//! | `<p>{cat}:changes` | stream | the latest catalog changes, entry ids `<seq>-0`, field `ids` |
//! | `<p>{meta}` | hash | meta key → value |
//!
//! `<p>` is the configured prefix; it may not hold `{` or `}`, which would move the tag.

use reco_engine::model::ChannelId;

/// The names of every key a store with one prefix uses.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

/// The three keys of one user, all in the slot of the tag `{u:<hex user>}`.
///
/// The user id is hex-encoded (its UTF-8 bytes, two lower-case digits each) inside the tag:
/// ids come from clients and may hold `{`, `}` or anything else, and a raw `}` would end the tag
/// early, putting every user whose id starts like `a}...` in the slot of `{u:a}`. Hex keeps the
/// tag to `[0-9a-f]`, one per user, at twice the id's length (ids are at most 256 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserKeys {
    /// A sorted set whose members all have score 0, so Redis orders them by their bytes: each
    /// member is `channel (4 bytes) | time (8 bytes) | batch` (see `codec::encode_member`), with
    /// channel and time in an order-preserving big-endian form, so a channel's batches form one
    /// lexicographic range in time order (`ZRANGEBYLEX`), and one `ZRANGE 0 -1` reads every
    /// channel's history.
    pub batches: String,
    /// A set of `channel (4 bytes) | article id (8 bytes, little-endian)`: the ids of the
    /// batches that fell off history per channel ([`reco_engine::store::ChannelHistory::trimmed`]).
    /// With the ids of the kept batches it makes the served set, the never-repeat rule.
    pub trimmed: String,
    /// A set of article ids (8 bytes, little-endian) the user read or disliked.
    pub read: String,
}

/// The keys of the event side, all in the slot of the tag `{ev}`, so that storing a report is
/// one atomic script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventKeys {
    /// Before the day number (days since the Unix epoch, UTC): a set of the 16-byte keys of
    /// the events stored that day. A key in the set of any day of the dedup window is a
    /// duplicate; each set expires once the window has passed it.
    pub keys_of_day: String,
    /// The sequence number of the newest logged event (`INCR`ed per new event).
    pub seq: String,
    /// A stream with one entry per event, id `<seq>-0`, field `e`: the event.
    pub log: String,
    /// The number up to which the log was trimmed (0 or absent: whole).
    pub trimmed: String,
    /// A hash from the decimal article id to its 64-byte counters.
    pub counters: String,
}

/// The catalog's keys, in the slot of the tag `{cat}`, so that a change (an upsert clears
/// retractions) and its entry in the change log are one script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogKeys {
    /// A hash from the decimal article id to the article as JSON.
    pub articles: String,
    /// A hash from the decimal article id to its retraction as JSON.
    pub retracted: String,
    /// The number of the newest catalog change (`INCR`ed per upsert or retract call).
    pub seq: String,
    /// A stream with one entry per change, id `<seq>-0`, field `ids`: the changed article ids
    /// (8 bytes little-endian each); trimmed to the latest
    /// [`reco_engine::store::CATALOG_LOG_CALLS`] entries.
    pub changes: String,
}

impl Keys {
    /// Keys under `prefix`; `None` when it holds `{` or `}`.
    pub fn new(prefix: &str) -> Option<Self> {
        (!prefix.contains(['{', '}'])).then(|| Self { prefix: prefix.to_owned() })
    }

    pub fn user(&self, user: &str) -> UserKeys {
        let mut tag = String::with_capacity(self.prefix.len() + 4 + 2 * user.len() + 1);
        tag.push_str(&self.prefix);
        tag.push_str("{u:");
        for byte in user.bytes() {
            tag.push(char::from(HEX[usize::from(byte >> 4)]));
            tag.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        tag.push('}');
        UserKeys { batches: format!("{tag}:b"), trimmed: format!("{tag}:t"), read: format!("{tag}:r") }
    }

    pub fn events(&self) -> EventKeys {
        let p = &self.prefix;
        EventKeys {
            keys_of_day: format!("{p}{{ev}}:keys:"),
            seq: format!("{p}{{ev}}:seq"),
            log: format!("{p}{{ev}}:log"),
            trimmed: format!("{p}{{ev}}:trimmed"),
            counters: format!("{p}{{ev}}:counters"),
        }
    }

    pub fn catalog(&self) -> CatalogKeys {
        let p = &self.prefix;
        CatalogKeys {
            articles: format!("{p}{{cat}}:articles"),
            retracted: format!("{p}{{cat}}:retracted"),
            seq: format!("{p}{{cat}}:seq"),
            changes: format!("{p}{{cat}}:changes"),
        }
    }

    /// The meta hash.
    pub fn meta(&self) -> String {
        format!("{}{{meta}}", self.prefix)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A channel as 4 bytes whose byte order is the numeric order (the sign bit flipped, big-endian).
pub(crate) fn channel_bytes(channel: ChannelId) -> [u8; 4] {
    ((channel as u32) ^ (1 << 31)).to_be_bytes()
}

pub(crate) fn channel_from_bytes(bytes: [u8; 4]) -> ChannelId {
    (u32::from_be_bytes(bytes) ^ (1 << 31)) as ChannelId
}

/// A batch time as 8 bytes whose byte order is the numeric order.
pub(crate) fn time_bytes(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn time_from_bytes(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_keep_the_numeric_order_and_round_trip() {
        let channels = [ChannelId::MIN, -1, 0, 1, 25, ChannelId::MAX];
        for w in channels.windows(2) {
            assert!(channel_bytes(w[0]) < channel_bytes(w[1]), "{} before {}", w[0], w[1]);
        }
        assert!(channels.iter().all(|&c| channel_from_bytes(channel_bytes(c)) == c));
        let times = [i64::MIN, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(time_bytes(w[0]) < time_bytes(w[1]), "{} before {}", w[0], w[1]);
        }
        assert!(times.iter().all(|&t| time_from_bytes(time_bytes(t)) == t));
    }

    #[test]
    fn user_ids_are_hex_inside_the_tag() {
        let keys = Keys::new("p:").unwrap();
        let user = keys.user("a}{é");
        assert_eq!(user.batches, "p:{u:617d7bc3a9}:b");
        assert_eq!(user.trimmed, "p:{u:617d7bc3a9}:t");
        assert_eq!(user.read, "p:{u:617d7bc3a9}:r");
        assert_eq!(keys.user("").read, "p:{u:}:r");
        assert_eq!(keys.events().log, "p:{ev}:log");
        assert_eq!(keys.catalog().retracted, "p:{cat}:retracted");
        assert_eq!(keys.meta(), "p:{meta}");
        assert!(Keys::new("a{b").is_none() && Keys::new("}").is_none(), "a brace in the prefix would move the tag");
    }
}
