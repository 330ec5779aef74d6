//! Text features of articles: tokens from keywords and titles, and an inverted index over them.
//!
//! A token is a keyword as given (`k:` namespace), a character bigram of a CJK run in the title,
//! or a lower-cased ASCII word of the title (`t:` namespace). Bigrams need no dictionary and
//! work for any Chinese text; keywords carry the editor's topics. Tokens are hashed to `u64`
//! with a fixed function (see [`hash_str`]), so learned state keyed by them stays valid across
//! builds and restarts.

use std::sync::Arc;

use imbl::OrdMap;

use crate::catalog::{Newest, SharedMap};
use crate::model::{Article, ArticleId, ChannelId};

/// A hashed token.
pub type Token = u64;

/// One token of an article, with the text it came from (for explanations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedToken {
    pub token: Token,
    pub text: String,
    pub keyword: bool,
}

/// FNV-1a 64 of `bytes` after a namespace byte, then a final avalanche: stable across builds.
pub const fn hash_str(namespace: u8, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ namespace as u64;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    mix(h)
}

/// splitmix64's finaliser.
pub const fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const KEYWORD: u8 = b'k';
const TITLE: u8 = b't';

/// The token of a keyword (the topic unit of dislikes and affinities).
pub fn keyword_token(keyword: &str) -> Token {
    hash_str(KEYWORD, keyword.trim())
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Every token of `article`, keywords first, without repeats.
pub fn named_tokens(article: &Article) -> Vec<NamedToken> {
    let mut out: Vec<NamedToken> = Vec::new();
    let mut push = |text: String, keyword: bool| {
        let token = hash_str(if keyword { KEYWORD } else { TITLE }, &text);
        if !text.is_empty() && !out.iter().any(|t| t.token == token) {
            out.push(NamedToken { token, text, keyword });
        }
    };
    for k in &article.keywords {
        push(k.trim().to_owned(), true);
    }
    let chars: Vec<char> = article.title.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_cjk(c) {
            let start = i;
            while i < chars.len() && is_cjk(chars[i]) {
                i += 1;
            }
            let run = &chars[start..i];
            if run.len() == 1 {
                push(run[0].to_string(), false);
            }
            for pair in run.windows(2) {
                push(pair.iter().collect(), false);
            }
        } else if c.is_alphanumeric() {
            let start = i;
            while i < chars.len() && chars[i].is_alphanumeric() && !is_cjk(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().flat_map(|c| c.to_lowercase()).collect();
            // Single letters and bare numbers say nothing about the topic.
            if word.chars().count() >= 2 && !word.chars().all(|c| c.is_ascii_digit()) {
                push(word, false);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The hashed tokens of `article`.
pub fn tokens(article: &Article) -> Vec<Token> {
    named_tokens(article).into_iter().map(|t| t.token).collect()
}

/// Per article its tokens (keywords first, then title tokens by rarity), and per token the
/// articles that have it, newest first, with their channels (so a channel feed filters
/// postings without a catalog lookup). A clone shares its maps (see the catalog's).
#[derive(Clone, Debug, Default)]
pub struct TextIndex {
    by_article: SharedMap<ArticleId, Arc<[Token]>>,
    postings: SharedMap<Token, OrdMap<Newest, ChannelId>>,
    /// Per token, how many indexed articles have it (kept or not).
    df: SharedMap<Token, u32>,
    articles: usize,
}

/// Title tokens kept per article beyond its keywords (the rarest ones).
const TITLE_TOKENS: usize = 4;

impl TextIndex {
    /// Counts `article`'s tokens in the document frequencies without indexing it (a catalog
    /// built at once counts every article first, so the rarest title tokens are chosen over
    /// the whole set).
    pub(crate) fn count(&mut self, article: &Article) {
        for t in named_tokens(article) {
            *self.df.get_or_default(t.token) += 1;
        }
    }

    /// Indexes `article`; `count`: add its tokens to the frequencies first (an article
    /// published later is ranked against the frequencies of the moment).
    pub(crate) fn insert(&mut self, article: &Article, count: bool) {
        if count {
            self.count(article);
        }
        let (keywords, mut title): (Vec<NamedToken>, Vec<NamedToken>) =
            named_tokens(article).into_iter().partition(|t| t.keyword);
        title.sort_by_key(|t| (self.df.get(&t.token).copied().unwrap_or(0), t.token));
        title.truncate(TITLE_TOKENS);
        let kept: Arc<[Token]> = keywords.iter().chain(&title).map(|t| t.token).collect();
        let key = Newest::of(article);
        for &t in kept.iter() {
            self.postings.get_or_default(t).insert(key, article.channel_id);
        }
        self.by_article.insert(article.id, kept);
        self.articles += 1;
    }

    /// Merges the maps' deltas (after building the index at once).
    pub(crate) fn merge(&mut self) {
        self.by_article.merge();
        self.postings.merge();
        self.df.merge();
    }

    /// Takes an indexed `article` out, frequencies included.
    pub(crate) fn remove(&mut self, article: &Article) {
        let Some(kept) = self.by_article.remove(&article.id) else { return };
        let key = Newest::of(article);
        for t in kept.iter() {
            if let Some(list) = self.postings.get_mut(t) {
                list.remove(&key);
                if list.is_empty() {
                    self.postings.remove(t);
                }
            }
        }
        for t in named_tokens(article) {
            if let Some(n) = self.df.get_mut(&t.token) {
                *n -= 1;
                if *n == 0 {
                    self.df.remove(&t.token);
                }
            }
        }
        self.articles -= 1;
    }

    /// The kept tokens of an article: its keywords, then its rarest title tokens.
    pub fn tokens(&self, id: ArticleId) -> &[Token] {
        self.by_article.get(&id).map_or(&[], |t| t)
    }

    /// Articles that have `token`, newest first, with their channels.
    pub fn postings(&self, token: Token) -> impl Iterator<Item = (ArticleId, ChannelId)> + '_ {
        self.postings.get(&token).into_iter().flat_map(|list| list.iter().map(|(k, c)| (k.id(), *c)))
    }

    /// `ln(N / df)` over the kept tokens, 0 for an unknown token.
    pub fn idf(&self, token: Token) -> f32 {
        let df = self.postings.get(&token).map_or(0, OrdMap::len);
        if df == 0 { 0.0 } else { (self.articles as f32 / df as f32).ln().max(0.0) }
    }

    /// Indexed articles.
    pub fn len(&self) -> usize {
        self.articles
    }

    pub fn is_empty(&self) -> bool {
        self.articles == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn article(id: i64, title: &str, keywords: &[&str]) -> Article {
        Article {
            id,
            channel_id: 1,
            title: title.to_owned(),
            author: String::new(),
            publish_time: id,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            summary: String::new(),
            cover: String::new(),
        }
    }

    #[test]
    fn chinese_titles_give_bigrams_and_ascii_words() {
        let a = article(1, "深入理解Rust所有权 2024", &["Rust", "内存"]);
        let texts: Vec<String> = named_tokens(&a).into_iter().map(|t| t.text).collect();
        assert_eq!(texts, ["Rust", "内存", "深入", "入理", "理解", "rust", "所有", "有权"]);
        assert_ne!(keyword_token("Rust"), hash_str(TITLE, "rust"), "keywords and title words are apart");
    }

    #[test]
    fn hashes_are_stable() {
        // Learned state is keyed by these: a change here invalidates every stored model.
        assert_eq!(hash_str(b'k', "足球"), hash_str(b'k', "足球"));
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
    }

    #[test]
    fn postings_are_newest_first_and_idf_favours_rare_tokens() {
        let catalog = Catalog::new(vec![
            article(1, "足球新闻", &["足球"]),
            article(2, "足球比赛", &["足球"]),
            article(3, "篮球比赛", &["篮球"]),
        ]);
        let index = catalog.text();
        assert_eq!(index.postings(keyword_token("足球")).collect::<Vec<_>>(), [(2, 1), (1, 1)]);
        assert!(index.idf(keyword_token("篮球")) > index.idf(keyword_token("足球")));
        assert_eq!(index.idf(keyword_token("网球")), 0.0);
        assert_eq!(index.tokens(3)[0], keyword_token("篮球"), "keywords come first");
    }
}
