//! The protobuf text format of `ArticleResponse`, as Python's `print(ret)` writes it.

use std::fmt::Write as _;

use reco_proto::seed::ArticleResponse;

pub fn article_response(r: &ArticleResponse) -> String {
    let mut out = String::new();
    if !r.exposure.is_empty() {
        let _ = writeln!(out, "exposure: {}", quote(&r.exposure));
    }
    if r.time_stamp != 0 {
        let _ = writeln!(out, "time_stamp: {}", r.time_stamp);
    }
    for a in &r.recommends {
        out.push_str("recommends {\n");
        if a.article_id != 0 {
            let _ = writeln!(out, "  article_id: {}", a.article_id);
        }
        if let Some(t) = &a.track {
            out.push_str("  track {\n");
            for (name, value) in [("click", &t.click), ("collect", &t.collect), ("share", &t.share), ("read", &t.read)]
            {
                if !value.is_empty() {
                    let _ = writeln!(out, "    {name}: {}", quote(value));
                }
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
    }
    out
}

/// A string literal with C escapes; bytes outside printable ASCII as octal, like Python's
/// protobuf does by default.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use reco_proto::seed::{Article, Track};

    use super::*;

    #[test]
    fn matches_python_text_format() {
        let r = ArticleResponse {
            exposure: "e\"x".into(),
            time_stamp: 0,
            recommends: vec![Article {
                article_id: 7,
                track: Some(Track { click: "c".into(), collect: String::new(), share: "用".into(), read: "r".into() }),
            }],
        };
        assert_eq!(
            article_response(&r),
            "exposure: \"e\\\"x\"\nrecommends {\n  article_id: 7\n  track {\n    click: \"c\"\n    share: \"\\347\\224\\250\"\n    read: \"r\"\n  }\n}\n"
        );
    }
}
