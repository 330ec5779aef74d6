//! The little JSON the page needs: tracking params read into a [`Value`] (members in their
//! own order), and the clipboard and export documents written indented.
//!
//! Hand-written rather than serde + serde_json for the wasm's size: the page reads a handful
//! of fields from one small object and writes a few documents, which does not need a
//! generic (de)serialiser.

use std::fmt::Write as _;

/// Nesting deeper than this is refused (as serde_json does), so a hostile param cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 128;

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A number as it was written (or formatted), so integers of any size survive.
    Number(String),
    String(String),
    Array(Vec<Value>),
    /// Members in their order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// `text` as one JSON value (surrounding whitespace allowed); `None` if it is not JSON.
    pub fn parse(text: &str) -> Option<Value> {
        let mut parser = Parser { bytes: text.as_bytes(), at: 0 };
        let value = parser.value(0)?;
        parser.skip_whitespace();
        (parser.at == parser.bytes.len()).then_some(value)
    }

    /// An object's member `key` (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(name, _)| name == key).map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// An integral number that fits an `i64` (`1.0` and `1e3` are not).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(number) => number.parse().ok(),
            _ => None,
        }
    }

    /// Indented by two spaces per level, one member or element per line.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Value::Number(number) => out.push_str(number),
            Value::String(text) => write_string(out, text),
            Value::Array(items) => write_list(out, depth, b"[]", items.iter().map(|item| (None, item))),
            Value::Object(members) => {
                write_list(out, depth, b"{}", members.iter().map(|(name, value)| (Some(name.as_str()), value)))
            }
        }
    }
}

/// An object with members in this order.
pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(members.into_iter().map(|(name, value)| (name.to_owned(), value)).collect())
}

fn write_list<'a>(
    out: &mut String,
    depth: usize,
    brackets: &[u8; 2],
    items: impl ExactSizeIterator<Item = (Option<&'a str>, &'a Value)>,
) {
    out.push(char::from(brackets[0]));
    let empty = items.len() == 0;
    for (index, (name, value)) in items.enumerate() {
        out.push_str(if index == 0 { "\n" } else { ",\n" });
        indent(out, depth + 1);
        if let Some(name) = name {
            write_string(out, name);
            out.push_str(": ");
        }
        value.write(out, depth + 1);
    }
    if !empty {
        out.push('\n');
        indent(out, depth);
    }
    out.push(char::from(brackets[1]));
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(text)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Bool(value)
    }
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(number: $t) -> Value {
                Value::Number(number.to_string())
            }
        }
    )*};
}

from_integer!(i32, u32, i64, u64, usize);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while self.bytes.get(self.at).is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Consumes `byte` if it is next (after whitespace).
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn literal(&mut self, word: &str, value: Value) -> Option<Value> {
        let found = self.bytes[self.at..].starts_with(word.as_bytes());
        self.at += word.len();
        found.then_some(value)
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        self.skip_whitespace();
        match *self.bytes.get(self.at)? {
            b'n' => self.literal("null", Value::Null),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'[' | b'{' if depth >= MAX_DEPTH => None,
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        self.eat(b',').then_some(())?;
                    }
                }
                Some(Value::Array(items))
            }
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_whitespace();
                        let name = self.string()?;
                        self.eat(b':').then_some(())?;
                        members.push((name, self.value(depth + 1)?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.eat(b',').then_some(())?;
                    }
                }
                Some(Value::Object(members))
            }
            _ => self.number(),
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        self.at += usize::from(self.bytes.get(self.at) == Some(&b'-'));
        let int = self.digits();
        if int == 0 || (int > 1 && self.bytes[self.at - int] == b'0') {
            return None;
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            (self.digits() > 0).then_some(())?;
        }
        if matches!(self.bytes.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            self.at += usize::from(matches!(self.bytes.get(self.at), Some(b'+' | b'-')));
            (self.digits() > 0).then_some(())?;
        }
        // Only ASCII was consumed, so these are whole characters.
        Some(Value::Number(String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned()))
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// A string starting at the current `"`.
    fn string(&mut self) -> Option<String> {
        (self.bytes.get(self.at) == Some(&b'"')).then_some(())?;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let escaped = *self.bytes.get(self.at)?;
                    self.at += 1;
                    let c = match escaped {
                        b'"' | b'\\' | b'/' => char::from(escaped),
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                0..0x20 => return None,
                _ => out.push(byte),
            }
        }
    }

    /// The character of a `\u` escape (just past the `u`), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if !(0xd800..0xdc00).contains(&first) {
            return char::from_u32(first);
        }
        (self.bytes.get(self.at..self.at + 2)? == b"\\u").then_some(())?;
        self.at += 2;
        let second = self.hex4()?;
        (0xdc00..0xe000).contains(&second).then_some(())?;
        char::from_u32(0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let hex = std::str::from_utf8(self.bytes.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(hex, 16).ok().filter(|_| hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_serde_json_parses() {
        for text in [
            "null",
            " true ",
            "false",
            "0",
            "-12",
            "3.25e-2",
            "1E+9",
            r#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00""#,
            "[]",
            "[1, [2, []], {}]",
            r#"{"a": {"b": [true, null, "x"]}, "c": -0.5}"#,
            "\"é用\"",
        ] {
            let ours = Value::parse(text).unwrap_or_else(|| panic!("{text}"));
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            let written: serde_json::Value = serde_json::from_str(&ours.pretty()).unwrap();
            assert_eq!(written, theirs, "{text}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for text in [
            "",
            "nul",
            "tru",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "[1,]",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{a:1}",
            "\"abc",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "1 2",
            "[",
        ] {
            assert_eq!(Value::parse(text), None, "{text:?}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err(), "{text:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(Value::parse(&deep), None);
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(Value::parse(&ok).is_some());
    }

    #[test]
    fn keeps_member_order_and_big_integers() {
        let value = Value::parse(r#"{"z":1,"a":18446744073709551615,"m":"x"}"#).unwrap();
        let Value::Object(members) = &value else { panic!("not an object") };
        let names: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["z", "a", "m"]);
        assert_eq!(value.get("a"), Some(&Value::Number("18446744073709551615".into())));
        assert_eq!(value.get("a").and_then(Value::as_i64), None, "beyond i64");
        assert_eq!(value.get("z").and_then(Value::as_i64), Some(1));
        assert_eq!(value.get("m").and_then(Value::as_str), Some("x"));
        assert_eq!(value.get("missing"), None);
        assert_eq!(Value::parse("1.0").unwrap().as_i64(), None);
    }

    #[test]
    fn writes_indented_and_escaped() {
        let value = object([
            ("id", 7u64.into()),
            ("name", "a \"b\"\n\u{1}".into()),
            ("none", Option::<i64>::None.into()),
            ("ids", vec![1i64, 2].into()),
            ("empty", Value::Array(Vec::new())),
            ("nested", object([("ok", true.into())])),
        ]);
        let expected = "{\n  \"id\": 7,\n  \"name\": \"a \\\"b\\\"\\n\\u0001\",\n  \"none\": null,\n  \"ids\": [\n    1,\n    2\n  ],\n  \"empty\": [],\n  \"nested\": {\n    \"ok\": true\n  }\n}";
        assert_eq!(value.pretty(), expected);
        let reread: serde_json::Value = serde_json::from_str(&value.pretty()).unwrap();
        assert_eq!(reread["name"], "a \"b\"\n\u{1}");
        assert_eq!(Value::parse(&value.pretty()), Some(value));
    }
}
