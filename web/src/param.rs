//! Tracking params as `user_recommend` serves them: decoding, pretty-printing, and the
//! signature check that the server reports through `Tracking.Verify`.
//!
//! A param is compact JSON signed by the server. The page cannot check the signature
//! itself (the key is the server's), so [`Check`] only ever comes from `Verify`. Its
//! `algorithmCombine` names the ranking algorithm, the user's A/B bucket and the candidate
//! sources that proposed the article; [`Combine`] reads it.

use crate::json::Value;

/// What a tracking param records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Exposure,
    Click,
    Collect,
    Share,
    Read,
    /// "Not interested" (不感兴趣): sent with a card's click param, flagged as a dislike.
    Dislike,
}

impl Action {
    /// Every action, in the order the event log offers them as filters.
    pub const ALL: [Action; 6] =
        [Action::Exposure, Action::Click, Action::Collect, Action::Share, Action::Read, Action::Dislike];
    /// The actions a card carries a param for, in the order of the seed's `Track` message.
    pub const CARD: [Action; 4] = [Action::Click, Action::Collect, Action::Share, Action::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Exposure => "exposure",
            Action::Click => "click",
            Action::Collect => "collect",
            Action::Share => "share",
            Action::Read => "read",
            Action::Dislike => "dislike",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

/// The fields of a param that the page reads (its JSON names are camelCase: `userId`,
/// `articleId`, ...). Anything else stays visible in the pretty-printed and raw forms.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    pub action: String,
    pub user_id: String,
    pub article_id: ArticleRef,
    pub algorithm_combine: Option<String>,
    pub channel_id: Option<i32>,
    pub position: Option<u32>,
    pub request_id: Option<String>,
    pub ts: Option<i64>,
}

impl Payload {
    /// The fields read from a param's JSON: `action` and `articleId` are required, the
    /// others may be missing or null; a field of the wrong type is an error.
    pub fn read(raw: &str) -> Result<Payload, String> {
        let value = Value::parse(raw).ok_or("not JSON")?;
        if !matches!(value, Value::Object(_)) {
            return Err("not a JSON object".into());
        }
        let field = |name: &str| value.get(name).filter(|field| **field != Value::Null);
        let wrong = |name: &str, what: &str| format!("{name} is not {what}");
        let text = |name: &str| {
            field(name)
                .map(|field| field.as_str().map(str::to_owned).ok_or_else(|| wrong(name, "a string")))
                .transpose()
        };
        let integer =
            |name: &str| field(name).map(|field| field.as_i64().ok_or_else(|| wrong(name, "an integer"))).transpose();
        fn narrow<T: TryFrom<i64>>(name: &str, value: Option<i64>) -> Result<Option<T>, String> {
            value.map(|value| T::try_from(value).map_err(|_| format!("{name} is not in range"))).transpose()
        }
        let article_id = match field("articleId").ok_or("no articleId")? {
            Value::Array(items) => ArticleRef::Many(
                items
                    .iter()
                    .map(|item| item.as_i64().ok_or_else(|| wrong("articleId", "integers")))
                    .collect::<Result<_, _>>()?,
            ),
            one => ArticleRef::One(one.as_i64().ok_or_else(|| wrong("articleId", "an integer"))?),
        };
        Ok(Payload {
            action: text("action")?.ok_or("no action")?,
            user_id: text("userId")?.unwrap_or_default(),
            article_id,
            algorithm_combine: text("algorithmCombine")?,
            channel_id: narrow("channelId", integer("channelId")?)?,
            position: narrow("position", integer("position")?)?,
            request_id: text("requestId")?,
            ts: integer("ts")?,
        })
    }
}

/// One article for click/collect/share/read, the whole batch for an exposure.
#[derive(Clone, Debug, PartialEq)]
pub enum ArticleRef {
    One(i64),
    Many(Vec<i64>),
}

impl ArticleRef {
    pub fn ids(&self) -> Vec<i64> {
        match self {
            ArticleRef::One(id) => vec![*id],
            ArticleRef::Many(ids) => ids.clone(),
        }
    }
}

/// What the server said about a param's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `Verify` has not answered yet.
    Pending,
    Valid,
    Invalid(String),
    /// `Verify` could not be asked; the param may still be fine.
    Unchecked(String),
}

/// A tracking param, decoded once when it arrives.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub raw: String,
    pub payload: Result<Payload, String>,
    /// Indented JSON in the param's own key order, or the raw string when it is not JSON.
    pub pretty: String,
    pub check: Check,
}

impl Param {
    pub fn new(raw: String) -> Param {
        let payload = Payload::read(&raw);
        let pretty = pretty_json(&raw).unwrap_or_else(|| raw.clone());
        Param { raw, payload, pretty, check: Check::Pending }
    }

    pub fn with_check(mut self, check: Check) -> Param {
        self.check = check;
        self
    }

    pub fn action(&self) -> Option<Action> {
        self.payload.as_ref().ok().and_then(|payload| Action::parse(&payload.action))
    }

    pub fn article_ids(&self) -> Vec<i64> {
        self.payload.as_ref().map(|payload| payload.article_id.ids()).unwrap_or_default()
    }

    pub fn user_id(&self) -> Option<&str> {
        self.payload.as_ref().ok().map(|payload| payload.user_id.as_str())
    }

    /// `algorithmCombine` as served, when the param has one.
    pub fn algorithm_combine(&self) -> Option<&str> {
        self.payload.as_ref().ok()?.algorithm_combine.as_deref()
    }
}

/// `algorithmCombine` read: `v2.b0:fresh+similar` is algorithm `v2`, A/B bucket 0, sources
/// `fresh` and `similar`; an exposure's `v2.b0` names no sources; the older `v1:fresh+hot`
/// has no bucket. Anything else is not a `Combine` (the page then shows the string as is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combine {
    pub algorithm: String,
    pub bucket: Option<u32>,
    pub sources: Vec<String>,
}

impl Combine {
    pub fn parse(raw: &str) -> Option<Combine> {
        let (head, sources) = match raw.split_once(':') {
            Some((head, list)) => (head, split_sources(list)?),
            None => (raw, Vec::new()),
        };
        let (algorithm, bucket) = match head.split_once('.') {
            Some((algorithm, bucket)) => (algorithm, Some(number(bucket.strip_prefix('b')?)?)),
            None => (head, None),
        };
        is_name(algorithm).then(|| Combine { algorithm: algorithm.to_owned(), bucket, sources })
    }
}

/// Source names joined by `+` (`fresh+similar`), or `None` when any of them is not a name.
pub fn split_sources(list: &str) -> Option<Vec<String>> {
    list.split('+').map(|name| is_name(name).then(|| name.to_owned())).collect()
}

/// Letters, digits, `_` and `-`, at least one.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Decimal digits only (`str::parse` would also take a sign).
fn number(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Re-indents valid JSON without reordering keys (serde_json's `Value` would sort them).
/// Arrays of scalars stay on one line. Returns `None` when `raw` is not JSON.
pub fn pretty_json(raw: &str) -> Option<String> {
    Value::parse(raw)?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut inline_depth = None;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'"' => {
                let end = string_end(bytes, i);
                out.extend_from_slice(&bytes[i..end]);
                i = end;
                continue;
            }
            b'{' | b'[' => {
                let close = if byte == b'{' { b'}' } else { b']' };
                out.push(byte);
                let next = skip_whitespace(bytes, i + 1);
                if bytes.get(next) == Some(&close) {
                    out.push(close);
                    i = next + 1;
                    continue;
                }
                depth += 1;
                if inline_depth.is_none() {
                    if byte == b'[' && is_flat_array(bytes, i) {
                        inline_depth = Some(depth);
                    } else {
                        newline(&mut out, depth);
                    }
                }
            }
            b'}' | b']' => {
                if inline_depth == Some(depth) {
                    inline_depth = None;
                } else if inline_depth.is_none() {
                    newline(&mut out, depth - 1);
                }
                depth -= 1;
                out.push(byte);
            }
            b',' => {
                out.push(b',');
                if inline_depth.is_some() {
                    out.push(b' ');
                } else {
                    newline(&mut out, depth);
                }
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => out.push(byte),
        }
        i += 1;
    }
    // Only ASCII bytes were inserted, and strings were copied whole: still UTF-8.
    String::from_utf8(out).ok()
}

/// Index just past the closing quote of the string that opens at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Whether the array opening at `start` holds no objects or arrays.
fn is_flat_array(bytes: &[u8], start: usize) -> bool {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i),
            b'{' | b'[' => return false,
            b']' => return true,
            _ => i += 1,
        }
    }
    false
}

fn newline(out: &mut Vec<u8>, depth: usize) {
    out.push(b'\n');
    out.resize(out.len() + depth * 2, b' ');
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLICK: &str = r#"{"action":"click","userId":"u1","articleId":123,"algorithmCombine":"v1:fresh+hot","channelId":1,"position":0,"requestId":"k3j2h4g5f6","ts":1763900000000,"sig":"abcdefghijklmnopqrstuv"}"#;
    const EXPOSURE: &str =
        r#"{"action":"exposure","userId":"u1","articleId":[5,6,7],"channelId":0,"requestId":"r","ts":1,"sig":"s"}"#;

    #[test]
    fn decodes_a_click_param() {
        let param = Param::new(CLICK.to_owned());
        assert_eq!(param.action(), Some(Action::Click));
        assert_eq!(param.article_ids(), vec![123]);
        assert_eq!(param.user_id(), Some("u1"));
        let payload = param.payload.unwrap();
        assert_eq!(payload.position, Some(0));
        assert_eq!(payload.channel_id, Some(1));
        assert_eq!(payload.request_id.as_deref(), Some("k3j2h4g5f6"));
        assert_eq!(param.check, Check::Pending);
    }

    #[test]
    fn decodes_an_exposure_param_with_many_ids() {
        let param = Param::new(EXPOSURE.to_owned());
        assert_eq!(param.action(), Some(Action::Exposure));
        assert_eq!(param.article_ids(), vec![5, 6, 7]);
        assert_eq!(param.payload.unwrap().position, None);
    }

    #[test]
    fn keeps_a_param_that_is_not_json_visible() {
        let param = Param::new("not json".to_owned());
        assert!(param.payload.is_err());
        assert_eq!(param.action(), None);
        assert!(param.article_ids().is_empty());
        assert_eq!(param.pretty, "not json");
    }

    #[test]
    fn reads_fields_by_their_json_names_and_types() {
        let payload = Payload::read(r#"{"action":"read","articleId":9,"userId":null,"position":null}"#).unwrap();
        assert_eq!((payload.action.as_str(), payload.user_id.as_str()), ("read", ""));
        assert_eq!((payload.article_id, payload.position, payload.ts), (ArticleRef::One(9), None, None));
        for (raw, error) in [
            (r#"{"articleId":1}"#, "no action"),
            (r#"{"action":"click"}"#, "no articleId"),
            (r#"{"action":1,"articleId":1}"#, "action is not a string"),
            (r#"{"action":"click","articleId":"1"}"#, "articleId is not an integer"),
            (r#"{"action":"click","articleId":[1,"2"]}"#, "articleId is not integers"),
            (r#"{"action":"click","articleId":1,"position":-1}"#, "position is not in range"),
            (r#"{"action":"click","articleId":1,"channelId":1.5}"#, "channelId is not an integer"),
            (r#"{"action":"click","articleId":1,"requestId":7}"#, "requestId is not a string"),
            ("[1]", "not a JSON object"),
            ("{", "not JSON"),
        ] {
            assert_eq!(Payload::read(raw), Err(error.to_owned()), "{raw}");
        }
    }

    #[test]
    fn unknown_action_decodes_but_has_no_action() {
        let param = Param::new(r#"{"action":"like","articleId":1}"#.to_owned());
        assert!(param.payload.is_ok());
        assert_eq!(param.action(), None);
    }

    #[test]
    fn pretty_json_keeps_key_order_and_indents() {
        let pretty = pretty_json(CLICK).unwrap();
        let keys: Vec<&str> = pretty
            .lines()
            .filter_map(|line| line.trim().strip_prefix('"'))
            .map(|rest| rest.split('"').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["action", "userId", "articleId", "algorithmCombine", "channelId", "position", "requestId", "ts", "sig"]
        );
        assert!(pretty.starts_with("{\n  \"action\": \"click\",\n"));
        assert!(pretty.ends_with("\n}"));
        // The same JSON, only re-spaced.
        let reparsed: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(reparsed, serde_json::from_str::<serde_json::Value>(CLICK).unwrap());
    }

    #[test]
    fn pretty_json_keeps_flat_arrays_on_one_line() {
        let pretty = pretty_json(EXPOSURE).unwrap();
        assert!(pretty.contains("\"articleId\": [5, 6, 7],\n"), "{pretty}");
    }

    #[test]
    fn pretty_json_handles_nesting_escapes_and_empties() {
        let raw = r#"{"a":{"b":[{"c":"x,\"y\"}"}],"e":{},"f":[]},"g":"é"}"#;
        let pretty = pretty_json(raw).unwrap();
        let expected = "{\n  \"a\": {\n    \"b\": [\n      {\n        \"c\": \"x,\\\"y\\\"}\"\n      }\n    ],\n    \"e\": {},\n    \"f\": []\n  },\n  \"g\": \"é\"\n}";
        assert_eq!(pretty, expected);
    }

    #[test]
    fn pretty_json_rejects_what_is_not_json() {
        assert_eq!(pretty_json("{\"a\":"), None);
        assert_eq!(pretty_json(""), None);
    }

    #[test]
    fn reads_algorithm_combine_from_a_param() {
        let param = Param::new(CLICK.replace("v1:fresh+hot", "v2.b1:fresh+similar"));
        assert_eq!(param.algorithm_combine(), Some("v2.b1:fresh+similar"));
        assert_eq!(Param::new(EXPOSURE.to_owned()).algorithm_combine(), None);
        assert_eq!(Param::new("not json".to_owned()).algorithm_combine(), None);
    }

    #[test]
    fn parses_bucketed_combines() {
        let combine = Combine::parse("v2.b0:fresh+similar").unwrap();
        assert_eq!(combine.algorithm, "v2");
        assert_eq!(combine.bucket, Some(0));
        assert_eq!(combine.sources, ["fresh", "similar"]);
        let all = Combine::parse("v2.b13:fresh+hot+similar+coengaged+affinity+explore").unwrap();
        assert_eq!(all.bucket, Some(13));
        assert_eq!(all.sources.len(), 6);
    }

    #[test]
    fn parses_an_exposure_combine_without_sources() {
        let combine = Combine::parse("v2.b3").unwrap();
        assert_eq!((combine.algorithm.as_str(), combine.bucket), ("v2", Some(3)));
        assert!(combine.sources.is_empty());
    }

    #[test]
    fn parses_the_old_format_without_a_bucket() {
        let combine = Combine::parse("v1:fresh+hot").unwrap();
        assert_eq!((combine.algorithm.as_str(), combine.bucket), ("v1", None));
        assert_eq!(combine.sources, ["fresh", "hot"]);
        assert_eq!(Combine::parse("v1").unwrap().sources, Vec::<String>::new());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for raw in [
            "",
            ":fresh",
            "v2.b0:",
            "v2.b0:fresh++hot",
            "v2.b0:fresh+",
            "v2.bx:fresh",
            "v2.b:fresh",
            "v2.b+1:fresh",
            "v2.b-1",
            "v2.0:fresh",
            "v2.b0.b1:fresh",
            "v2 b0:fresh",
            "v2.b0:fresh:hot",
            "v2.b0:新鲜",
            "v2.b99999999999:fresh",
        ] {
            assert_eq!(Combine::parse(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn splits_source_lists() {
        assert_eq!(split_sources("fresh+similar"), Some(vec!["fresh".to_owned(), "similar".to_owned()]));
        assert_eq!(split_sources("explore"), Some(vec!["explore".to_owned()]));
        assert_eq!(split_sources(""), None);
        assert_eq!(split_sources("a+"), None);
    }

    #[test]
    fn action_names_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("Click"), None);
    }
}
