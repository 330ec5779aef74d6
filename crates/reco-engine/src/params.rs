//! Tracking params: the `track.click/collect/share/read` and `exposure` strings.
//!
//! Each is compact JSON with toutiao's keys (`action`, `userId`, `articleId`,
//! `algorithmCombine`) plus `channelId`, `position` (cards only), `requestId`, `ts` (the batch's
//! time) and `sig`: HMAC-SHA256 with the server secret, truncated to 128 bits, base64url, over
//! the fields in a fixed binary layout. A card's four params differ only in `action` and are all
//! handed out together, so they share one MAC over everything but the action (one HMAC per card
//! instead of four); the exposure's MAC covers its action and id list. So every param the server
//! accepts is, field for field, one it minted. An event's identity is its MAC plus its action.
//! Params are a pure function of the stored batch, so a history read hands out the very strings
//! first served.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::model::{Action, ArticleId, ChannelId};
use crate::store::EventKey;

const SIG_BYTES: usize = 16;
/// Longer strings are refused before decoding.
pub const MAX_PARAM_LEN: usize = 64 * 1024;

/// The decoded content of a param, without its signature.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackParam {
    pub action: Action,
    pub user_id: String,
    /// One id for card actions, the batch's ids for an exposure.
    pub article_ids: Vec<ArticleId>,
    pub algorithm_combine: String,
    pub channel_id: ChannelId,
    /// 0-based position in the batch; `None` for an exposure.
    pub position: Option<u32>,
    pub request_id: u64,
    /// The batch's time (ms).
    pub ts: i64,
}

/// A param whose signature checked out.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub param: TrackParam,
    /// Identity for deduplication: the same param always has the same key.
    pub key: EventKey,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("param is empty")]
    Empty,
    #[error("param is longer than {MAX_PARAM_LEN} bytes")]
    TooLong,
    #[error("param is not valid tracking JSON: {0}")]
    BadJson(String),
    #[error("param has a bad signature")]
    BadSignature,
}

/// Mints and checks params with one server secret.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        Self { mac: Hmac::new_from_slice(secret).expect("HMAC takes keys of any length") }
    }

    /// The four params of a card (`Action::TRACKED` order); `p.action` is ignored.
    pub fn mint_card(&self, p: &TrackParam) -> [String; 4] {
        let sig = self.sign(p, false);
        // Everything after the action is the same for the four: written once, after the
        // first one's action, and copied.
        let mut first = String::with_capacity(256);
        push_action(&mut first, Action::TRACKED[0]);
        let start = first.len();
        write_fields(p, false, &mut first);
        push_sig(&mut first, &sig);
        let rest = &first[start..];
        let mut out = Action::TRACKED.map(|action| {
            if action == Action::TRACKED[0] {
                return String::new();
            }
            let mut out = String::with_capacity(rest.len() + 24);
            push_action(&mut out, action);
            out.push_str(rest);
            out
        });
        out[0] = first;
        out
    }

    /// One signed param: an exposure, or a single card action.
    pub fn mint(&self, p: &TrackParam) -> String {
        let mut out = String::with_capacity(200);
        let exposure = p.action == Action::Exposure;
        push_action(&mut out, p.action);
        write_fields(p, exposure, &mut out);
        push_sig(&mut out, &self.sign(p, exposure));
        out
    }

    /// Decodes `text` and checks that this server minted it.
    pub fn verify(&self, text: &str) -> Result<Verified, ParamError> {
        let (param, sig) = decode(text)?;
        self.mac_of(&param, param.action == Action::Exposure)
            .verify_truncated_left(&sig)
            .map_err(|_| ParamError::BadSignature)?;
        let mut key = [0; SIG_BYTES];
        key[..SIG_BYTES - 1].copy_from_slice(&sig[..SIG_BYTES - 1]);
        key[SIG_BYTES - 1] = param.action as u8;
        Ok(Verified { param, key: EventKey(key) })
    }

    fn sign(&self, p: &TrackParam, exposure: bool) -> [u8; SIG_BYTES] {
        let full = self.mac_of(p, exposure).finalize().into_bytes();
        let mut sig = [0; SIG_BYTES];
        sig.copy_from_slice(&full[..SIG_BYTES]);
        sig
    }

    /// The MAC state over `p` in the signed layout: a version tag, then the fields,
    /// length-prefixed where their length varies. Card actions are not part of it; whether it is
    /// an exposure is.
    fn mac_of(&self, p: &TrackParam, exposure: bool) -> Hmac<Sha256> {
        // Fed piece by piece: the MAC buffers its blocks itself.
        let mut mac = self.mac.clone();
        mac.update(b"reco-track-1");
        mac.update(&[if exposure { Action::Exposure as u8 } else { 0xff }]);
        for field in [p.user_id.as_bytes(), p.algorithm_combine.as_bytes()] {
            mac.update(&(field.len() as u32).to_le_bytes());
            mac.update(field);
        }
        mac.update(&p.channel_id.to_le_bytes());
        mac.update(&p.position.unwrap_or(u32::MAX).to_le_bytes());
        mac.update(&p.request_id.to_le_bytes());
        mac.update(&p.ts.to_le_bytes());
        mac.update(&(p.article_ids.len() as u32).to_le_bytes());
        for id in &p.article_ids {
            mac.update(&id.to_le_bytes());
        }
        mac
    }
}

fn push_action(out: &mut String, action: Action) {
    out.push_str("{\"action\":\"");
    out.push_str(action.as_str());
    out.push_str("\",");
}

fn push_sig(out: &mut String, sig: &[u8; SIG_BYTES]) {
    out.push_str(",\"sig\":\"");
    URL_SAFE_NO_PAD.encode_string(sig, out);
    out.push_str("\"}");
}

/// Decodes a param without checking its signature (for display); returns it and the raw signature.
pub fn decode(text: &str) -> Result<(TrackParam, [u8; SIG_BYTES]), ParamError> {
    if text.is_empty() {
        return Err(ParamError::Empty);
    }
    if text.len() > MAX_PARAM_LEN {
        return Err(ParamError::TooLong);
    }
    let wire: Wire = serde_json::from_str(text).map_err(|e| ParamError::BadJson(e.to_string()))?;
    let article_ids = match (wire.action, wire.article_id) {
        (Action::Exposure, WireIds::Many(ids)) => ids,
        (Action::Exposure, WireIds::One(_)) => return Err(bad("an exposure carries a list of articleId")),
        (_, WireIds::One(id)) => vec![id],
        (_, WireIds::Many(_)) => return Err(bad("a card action carries one articleId")),
    };
    if (wire.action == Action::Exposure) != wire.position.is_none() {
        return Err(bad("position is required on card actions and absent on exposures"));
    }
    let request_id = u64::from_str_radix(&wire.request_id, 16).map_err(|_| bad("requestId is not hex"))?;
    let sig_bytes = URL_SAFE_NO_PAD.decode(wire.sig.as_bytes()).map_err(|_| bad("sig is not base64url"))?;
    let sig: [u8; SIG_BYTES] = sig_bytes.try_into().map_err(|_| bad("sig has the wrong length"))?;
    let param = TrackParam {
        action: wire.action,
        user_id: wire.user_id,
        article_ids,
        algorithm_combine: wire.algorithm_combine,
        channel_id: wire.channel_id,
        position: wire.position,
        request_id,
        ts: wire.ts,
    };
    Ok((param, sig))
}

fn bad(msg: &str) -> ParamError {
    ParamError::BadJson(msg.to_owned())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    action: Action,
    user_id: String,
    article_id: WireIds,
    algorithm_combine: String,
    channel_id: ChannelId,
    #[serde(default)]
    position: Option<u32>,
    request_id: String,
    ts: i64,
    sig: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireIds {
    One(ArticleId),
    Many(Vec<ArticleId>),
}

/// The JSON fields of `p` after the action, up to (not including) `,"sig":...}`.
fn write_fields(p: &TrackParam, exposure: bool, out: &mut String) {
    out.push_str("\"userId\":");
    push_json_str(out, &p.user_id);
    out.push_str(",\"articleId\":");
    let mut num = itoa::Buffer::new();
    if exposure {
        out.push('[');
        for (i, id) in p.article_ids.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(num.format(*id));
        }
        out.push(']');
    } else {
        out.push_str(num.format(p.article_ids.first().copied().unwrap_or_default()));
    }
    out.push_str(",\"algorithmCombine\":");
    push_json_str(out, &p.algorithm_combine);
    out.push_str(",\"channelId\":");
    out.push_str(num.format(p.channel_id));
    if let Some(pos) = p.position {
        out.push_str(",\"position\":");
        out.push_str(num.format(pos));
    }
    out.push_str(",\"requestId\":\"");
    push_hex16(out, p.request_id);
    out.push_str("\",\"ts\":");
    out.push_str(num.format(p.ts));
}

/// `{:016x}` without the formatting machinery.
fn push_hex16(out: &mut String, x: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 16];
    for (i, d) in hex.iter_mut().enumerate() {
        *d = DIGITS[(x >> (60 - 4 * i)) as usize & 0xf];
    }
    out.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
}

fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(action: Action) -> TrackParam {
        TrackParam {
            action,
            user_id: "u-1".into(),
            article_ids: vec![42],
            algorithm_combine: "v1:fresh+hot".into(),
            channel_id: 18,
            position: Some(3),
            request_id: 0xabc,
            ts: 1_763_900_000_000,
        }
    }

    /// The exact strings of one build: params stay valid across builds (a client may hold
    /// one for 30 days), so neither the JSON nor the signed layout may change unnoticed.
    #[test]
    fn params_are_byte_for_byte_those_of_earlier_builds() {
        let s = Signer::new(b"golden-secret");
        let p = TrackParam {
            action: Action::Exposure,
            user_id: "用户\"7".into(),
            article_ids: vec![3, 1_000_000_007, -2],
            algorithm_combine: "v2.b0".into(),
            channel_id: 13,
            position: None,
            request_id: 0x00ab_cdef_0123_4567,
            ts: 1_763_900_000_123,
        };
        assert_eq!(
            s.mint(&p),
            r#"{"action":"exposure","userId":"用户\"7","articleId":[3,1000000007,-2],"algorithmCombine":"v2.b0","channelId":13,"requestId":"00abcdef01234567","ts":1763900000123,"sig":"eYsL3VSKC7SrZcI9wZn9xg"}"#
        );
        let card = TrackParam {
            action: Action::Click,
            article_ids: vec![1_000_000_007],
            algorithm_combine: "v2.b0:fresh+hot".into(),
            position: Some(1),
            ..p
        };
        let rest = r#""userId":"用户\"7","articleId":1000000007,"algorithmCombine":"v2.b0:fresh+hot","channelId":13,"position":1,"requestId":"00abcdef01234567","ts":1763900000123,"sig":"BhllLE-tOkLPv25AK6Hoaw"}"#;
        let want = ["click", "collect", "share", "read"].map(|a| format!(r#"{{"action":"{a}",{rest}"#));
        assert_eq!(s.mint_card(&card), want);
    }

    #[test]
    fn minted_params_verify_and_decode_back() {
        let s = Signer::new(b"secret");
        for action in Action::TRACKED {
            let text = s.mint(&card(action));
            let v = s.verify(&text).unwrap();
            assert_eq!(v.param, card(action));
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["action"], action.as_str());
            assert_eq!(json["userId"], "u-1");
            assert_eq!(json["articleId"], 42);
            assert_eq!(json["algorithmCombine"], "v1:fresh+hot");
        }
        let exposure =
            TrackParam { action: Action::Exposure, article_ids: vec![1, 2, 3], position: None, ..card(Action::Click) };
        let text = s.mint(&exposure);
        assert!(text.contains("\"articleId\":[1,2,3]"), "{text}");
        assert_eq!(s.verify(&text).unwrap().param, exposure);
    }

    #[test]
    fn a_card_mints_the_same_strings_as_single_mints() {
        let s = Signer::new(b"secret");
        let card_params = s.mint_card(&card(Action::Click));
        for (text, action) in card_params.iter().zip(Action::TRACKED) {
            assert_eq!(text, &s.mint(&card(action)));
        }
    }

    #[test]
    fn each_action_has_its_own_key() {
        let s = Signer::new(b"secret");
        let keys: std::collections::HashSet<_> =
            Action::TRACKED.iter().map(|a| s.verify(&s.mint(&card(*a))).unwrap().key).collect();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn user_ids_with_quotes_and_unicode_round_trip() {
        let s = Signer::new(b"k");
        let p = TrackParam { user_id: "用户\"\\\n1".into(), ..card(Action::Share) };
        assert_eq!(s.verify(&s.mint(&p)).unwrap().param, p);
    }

    #[test]
    fn forged_and_mangled_params_are_refused() {
        let s = Signer::new(b"secret");
        let text = s.mint(&card(Action::Click));
        let forged = text.replace("\"articleId\":42", "\"articleId\":43");
        assert_eq!(s.verify(&forged), Err(ParamError::BadSignature));
        // Another action of the same card is exactly the param minted for it...
        let swapped = text.replace("\"click\"", "\"share\"");
        assert_eq!(swapped, s.mint(&card(Action::Share)));
        // ...but a card param never passes for an exposure.
        let exposure = text.replace("\"click\"", "\"exposure\"").replace("\"articleId\":42", "\"articleId\":[42]");
        let exposure = exposure.replace(",\"position\":3", "");
        assert_eq!(s.verify(&exposure), Err(ParamError::BadSignature));
        assert_eq!(Signer::new(b"other").verify(&text), Err(ParamError::BadSignature));
        assert!(matches!(s.verify("click param 1"), Err(ParamError::BadJson(_))));
        assert_eq!(s.verify(""), Err(ParamError::Empty));
        let extra = text.replacen('{', "{\"x\":1,", 1);
        assert!(matches!(s.verify(&extra), Err(ParamError::BadJson(_))));
        let list_on_card = text.replace("\"articleId\":42", "\"articleId\":[42]");
        assert!(matches!(s.verify(&list_on_card), Err(ParamError::BadJson(_))));
    }
}
