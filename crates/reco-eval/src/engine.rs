//! The full engine as a [`Scorer`]: MIND news become engine articles, and the replay's
//! feedback becomes the engine's observations, so `reco eval` measures the very code that
//! serves feeds.
//!
//! MIND has no article ids, channels or publish times; [`map_news`] derives them:
//! - id: the number that ends the news id (`N12345` -> 12345) when it is below
//!   [`HASHED_BASE`]; otherwise, or when a lexicographically smaller news id already took that
//!   number (`N01` and `N1`), a stable hash of the id moved into `HASHED_BASE..`, probing
//!   upwards on collision. News are visited in id order, so the mapping depends only on the
//!   set of news, never on file order.
//! - channel: one per category, numbered from 1 in category order (news without a category
//!   share one); channel 0 is the engine's 推荐.
//! - keywords: the category and the subcategory (the empty ones left out); title and summary
//!   from the title and the abstract.
//! - publish time: the first time the news appears in the impression log, as a candidate or
//!   in a history (the log's first time for news it never mentions). A candidate is scored at
//!   or after that time, so its age is never negative and never learned from the future.
//! - news the log mentions without a `news.tsv` row (real exports often lack most rows) are
//!   articles too, without content: no title, no keywords, the channel of news without a
//!   category. The engine ranks them by behaviour alone (exposures, clicks, co-engagement,
//!   recency), as it does online for articles with sparse metadata.

use std::collections::BTreeSet;

use reco_engine::model::{Action, Article, ArticleId, ChannelId};
use reco_engine::store::{MemStore, Sources, Store};
use reco_engine::text::hash_str;
use reco_engine::{Engine, EngineConfig, Observation};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::EvalError;
use crate::mind::{Impression, News, NewsId};
use crate::scorer::{Event, Feedback, Scorer};

/// Ids from hashes start here; numeric ids at or above it are hashed too.
pub const HASHED_BASE: ArticleId = 1 << 40;

/// The tracking secret of the offline engine: it signs nothing anyone sees.
const SECRET: &[u8] = b"reco-eval offline engine secret";

/// MIND news as engine articles, with the id of each.
#[derive(Clone, Debug, Default)]
pub struct ArticleMap {
    pub articles: Vec<Article>,
    pub ids: FxHashMap<NewsId, ArticleId>,
    /// Categories in channel order: channel `i + 1` is `categories[i]`.
    pub categories: Vec<String>,
    /// News whose id was hashed (not numeric, too large, or its number taken).
    pub hashed: usize,
    /// Articles made for ids the log mentions without a `news.tsv` row.
    pub without_content: usize,
}

/// The number that ends `id`, if everything after its leading non-digits is a digit.
fn natural_id(id: &str) -> Option<ArticleId> {
    let digits = id.trim_start_matches(|c: char| !c.is_ascii_digit());
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<ArticleId>().ok().filter(|&n| n < HASHED_BASE)
}

fn hashed_id(id: &str) -> ArticleId {
    let span = (ArticleId::MAX - HASHED_BASE) as u64;
    HASHED_BASE + (hash_str(b'n', id) % span) as ArticleId
}

/// Gives each news id (in order, without repeats) its natural id if still free, then each of
/// the others `hash(id)`, probing upwards (wrapping to [`HASHED_BASE`]) past taken ids.
/// Returns the ids and how many were hashed.
fn assign_ids<'a>(
    news: impl Iterator<Item = &'a NewsId> + Clone,
    hash: impl Fn(&str) -> ArticleId,
) -> (FxHashMap<NewsId, ArticleId>, usize) {
    let mut ids: FxHashMap<NewsId, ArticleId> = FxHashMap::default();
    let mut taken: FxHashSet<ArticleId> = FxHashSet::default();
    for n in news.clone() {
        if let Some(id) = natural_id(n.as_str())
            && taken.insert(id)
        {
            ids.insert(n.clone(), id);
        }
    }
    let mut hashed = 0;
    for n in news {
        if ids.contains_key(n) {
            continue;
        }
        let mut id = hash(n.as_str());
        while !taken.insert(id) {
            id = if id == ArticleId::MAX { HASHED_BASE } else { id + 1 };
        }
        ids.insert(n.clone(), id);
        hashed += 1;
    }
    (ids, hashed)
}

/// Maps `news` to engine articles (see the module doc); `impressions` give publish times.
pub fn map_news(news: &[News], impressions: &[Impression]) -> ArticleMap {
    let mut first_seen: FxHashMap<&str, i64> = FxHashMap::default();
    for imp in impressions {
        let mentioned = imp.history.iter().chain(imp.candidates.iter().map(|c| &c.news));
        for id in mentioned {
            let t = first_seen.entry(id.as_str()).or_insert(imp.time_ms);
            *t = (*t).min(imp.time_ms);
        }
    }
    let log_start = impressions.iter().map(|i| i.time_ms).min().unwrap_or(0);

    let described: FxHashSet<&str> = news.iter().map(|n| n.id.as_str()).collect();
    let mut bare: Vec<&NewsId> = impressions
        .iter()
        .flat_map(|imp| imp.history.iter().chain(imp.candidates.iter().map(|c| &c.news)))
        .filter(|id| !described.contains(id.as_str()))
        .collect();
    bare.sort();
    bare.dedup();
    let mut categories: BTreeSet<String> = news.iter().map(|n| n.category.trim().to_owned()).collect();
    if !bare.is_empty() {
        // Articles without content share the channel of news without a category.
        categories.insert(String::new());
    }
    let categories: Vec<String> = categories.into_iter().collect();
    let channel_of = |category: &str| -> ChannelId {
        let i = categories.binary_search_by(|c| c.as_str().cmp(category.trim())).unwrap_or(0);
        ChannelId::try_from(i + 1).unwrap_or(ChannelId::MAX)
    };

    let mut order: Vec<&News> = news.iter().collect();
    order.sort_by(|a, b| a.id.cmp(&b.id));
    order.dedup_by(|a, b| a.id == b.id);
    // Ids over described and bare news together, in one id order: the mapping depends only on
    // the set of ids.
    let mut every: Vec<&NewsId> = order.iter().map(|n| &n.id).chain(bare.iter().copied()).collect();
    every.sort();
    let (ids, hashed) = assign_ids(every.into_iter(), hashed_id);

    let mut articles: Vec<Article> = order
        .iter()
        .map(|n| {
            let mut keywords: Vec<String> = Vec::with_capacity(2);
            for k in [n.category.trim(), n.subcategory.trim()] {
                if !k.is_empty() && !keywords.iter().any(|have| have == k) {
                    keywords.push(k.to_owned());
                }
            }
            Article {
                id: ids[&n.id],
                channel_id: channel_of(&n.category),
                title: n.title.clone(),
                author: String::new(),
                publish_time: first_seen.get(n.id.as_str()).copied().unwrap_or(log_start),
                keywords,
                summary: n.abstract_text.clone(),
                cover: String::new(),
            }
        })
        .collect();
    let bare_channel = channel_of("");
    articles.extend(bare.iter().map(|id| Article {
        id: ids[*id],
        channel_id: bare_channel,
        title: String::new(),
        author: String::new(),
        publish_time: first_seen.get(id.as_str()).copied().unwrap_or(log_start),
        keywords: Vec::new(),
        summary: String::new(),
        cover: String::new(),
    }));
    ArticleMap { articles, ids, categories, hashed, without_content: bare.len() }
}

/// The engine over an in-memory store, fed by the replay: `scorer=reco`.
pub struct RecoScorer {
    name: String,
    engine: Engine<MemStore>,
    ids: FxHashMap<NewsId, ArticleId>,
    scratch: Vec<ArticleId>,
}

impl RecoScorer {
    /// An engine whose catalog is `map`'s articles, with nothing learned yet. Articles never
    /// age out: a replay's candidates are the log's impressions, whatever their age.
    pub fn new(map: ArticleMap, config: EngineConfig) -> Result<Self, EvalError> {
        let config = EngineConfig { max_article_age_ms: i64::MAX, ..config };
        let store = MemStore::new();
        store.upsert_articles(&map.articles).map_err(reco_engine::EngineError::from)?;
        let engine = Engine::new(store, SECRET, config)?;
        Ok(Self { name: "reco".into(), engine, ids: map.ids, scratch: Vec::new() })
    }

    /// The same scorer printed as `scorer=<name>` (`reco` by default), to tell engines with
    /// different configurations apart in one run.
    pub fn named(self, name: impl Into<String>) -> Self {
        Self { name: name.into(), ..self }
    }

    pub fn engine(&self) -> &Engine<MemStore> {
        &self.engine
    }
}

impl Scorer for RecoScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, user: &str, time_ms: i64, candidates: &[NewsId]) -> Vec<f64> {
        self.scratch.clear();
        // An id outside the catalog (none, when the replay and the map share one news.tsv)
        // gets an id the catalog lacks, which the engine scores -inf.
        self.scratch.extend(candidates.iter().map(|id| self.ids.get(id).copied().unwrap_or(-1)));
        self.engine.score_for(user, &self.scratch, time_ms)
    }

    fn observe(&mut self, event: &Event<'_>) {
        let Some(&article) = self.ids.get(event.news) else { return };
        let (action, prior) = match event.kind {
            Feedback::History => (Action::Click, true),
            Feedback::Exposure => (Action::Exposure, false),
            Feedback::Click => (Action::Click, false),
        };
        self.engine.observe(&Observation {
            user: event.user,
            article,
            action,
            time_ms: event.time_ms,
            read_ms: 0,
            position: event.position,
            sources: Sources::default(),
            prior,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mind::{parse_behaviors, parse_news};

    fn news(text: &str) -> Vec<News> {
        let parsed = parse_news(text);
        assert_eq!(parsed.skipped, []);
        parsed.records
    }

    #[test]
    fn numeric_ids_are_kept_and_collisions_hashed_deterministically() {
        // N01 and N1 both end in 1: the smaller id string (N01) keeps it, N1 is hashed.
        // M7 keeps 7; "abc" and a 20-digit number are hashed.
        let text = "N1\tnews\tnewsus\tA\n\
                    N01\tnews\tnewsus\tB\n\
                    M7\tsports\tsoccer\tC\n\
                    abc\tsports\tsoccer\tD\n\
                    N99999999999999999999\tsports\tsoccer\tE\n";
        let map = map_news(&news(text), &[]);
        let id = |n: &str| map.ids[n];
        assert_eq!((id("N01"), id("M7")), (1, 7));
        for n in ["N1", "abc", "N99999999999999999999"] {
            assert!(id(n) >= HASHED_BASE, "{n} -> {}", id(n));
        }
        assert_eq!(map.hashed, 3);
        let distinct: BTreeSet<ArticleId> = map.ids.values().copied().collect();
        assert_eq!(distinct.len(), 5);
        // The same set of news in another order maps the same way.
        let mut reversed: Vec<&str> = text.lines().collect();
        reversed.reverse();
        let again = map_news(&news(&reversed.join("\n")), &[]);
        assert_eq!(again.ids, map.ids);
        assert_eq!(again.articles, map.articles);
    }

    #[test]
    fn hash_collisions_probe_to_the_next_free_id() {
        let ids: Vec<NewsId> = ["a", "b", "c", "N5"].into_iter().map(NewsId::from).collect();
        // Every hash lands on the top id: the first takes it, the next wrap to the range start.
        let (map, hashed) = assign_ids(ids.iter(), |_| ArticleId::MAX);
        assert_eq!((map["a"], map["b"], map["c"], map["N5"]), (ArticleId::MAX, HASHED_BASE, HASHED_BASE + 1, 5));
        assert_eq!(hashed, 3);
        // A hash landing on a natural id moves past it.
        let (map, _) = assign_ids(ids.iter(), |_| 5);
        assert_eq!((map["a"], map["b"], map["c"]), (6, 7, 8));
    }

    #[test]
    fn fields_channels_keywords_and_publish_times() {
        // N3 has only four columns and an empty subcategory; N4 has no category.
        let text = "N1\tsports\tsoccer\tGoal!\tThe abstract\thttps://x\t[]\t[]\n\
                    N2\tnews\tnewsworld\tWorld news\n\
                    N3\tnews\t\tOnly a title\n\
                    N4\t\tlost\tNo category\n\
                    N5\tnews\tnews\tSame words\n";
        let behaviors = "1\tU1\t11/15/2019 9:00:00 AM\tN2\tN1-1 N3-0\n\
                         2\tU2\t11/15/2019 8:00:00 AM\t\tN3-1 N9-0\n";
        let impressions = parse_behaviors(behaviors).records;
        let map = map_news(&news(text), &impressions);
        assert_eq!(map.categories, ["", "news", "sports"]);
        let by = |n: &str| map.articles.iter().find(|a| a.id == map.ids[n]).unwrap();
        let (n1, n2, n3, n4, n5) = (by("N1"), by("N2"), by("N3"), by("N4"), by("N5"));
        assert_eq!((n1.channel_id, n2.channel_id, n4.channel_id), (3, 2, 1));
        assert_eq!(n1.keywords, ["sports", "soccer"]);
        assert_eq!(n3.keywords, ["news"]);
        assert_eq!(n4.keywords, ["lost"]);
        assert_eq!(n5.keywords, ["news"]);
        assert_eq!((n1.title.as_str(), n1.summary.as_str()), ("Goal!", "The abstract"));
        assert_eq!((n3.summary.as_str(), n3.author.as_str(), n3.cover.as_str()), ("", "", ""));
        let (eight, nine) = (impressions[1].time_ms, impressions[0].time_ms);
        // N3 is first seen at 8:00 although its 9:00 line comes first; N2 only in a history;
        // N4 and N5 never: the log's start.
        assert_eq!((n1.publish_time, n2.publish_time, n3.publish_time), (nine, nine, eight));
        assert_eq!((n4.publish_time, n5.publish_time), (eight, eight));
        // N9 has no row: an article without content, in the channel of news without category.
        let n9 = by("N9");
        assert_eq!((n9.title.as_str(), n9.keywords.len(), n9.channel_id, n9.publish_time), ("", 0, 1, eight));
        assert_eq!(map.without_content, 1);
    }

    #[test]
    fn the_scorer_learns_through_the_engine() {
        let text = "N1\tsports\tsoccer\tGoal\nN2\tnews\tnewsworld\tElection\n";
        let map = map_news(&news(text), &[]);
        let mut reco = RecoScorer::new(map, EngineConfig::default()).unwrap();
        let (n1, n2, unknown) = (NewsId::from("N1"), NewsId::from("N2"), NewsId::from("N9"));
        let t = 1_573_808_122_000;
        let before = reco.score("U1", t, &[n1.clone(), n2.clone(), unknown.clone()]);
        assert_eq!(before[2], f64::NEG_INFINITY);
        for (i, user) in ["U2", "U3", "U4", "U5"].into_iter().enumerate() {
            let t = t + i as i64 * 1000;
            for (pos, id) in [&n1, &n2].into_iter().enumerate() {
                let position = Some(pos as u32);
                reco.observe(&Event { user, news: id, time_ms: t, kind: Feedback::Exposure, position });
            }
            reco.observe(&Event { user, news: &n1, time_ms: t, kind: Feedback::Click, position: Some(0) });
            reco.observe(&Event { user, news: &unknown, time_ms: t, kind: Feedback::Click, position: Some(2) });
        }
        let after = reco.score("U1", t + 3_600_000, &[n1, n2]);
        assert!(after[0] > after[1], "{after:?}");
        assert!(reco.engine().learner_summary().contains("users=4"), "{}", reco.engine().learner_summary());
    }
}
